//! keygen and pubkey in every format, and pin reset.

use crate::support::{Scratch, vector};

#[test]
fn keygen_writes_a_private_key_and_prints_its_public_half() {
    let s = Scratch::new();
    let mut seen = Vec::new();
    for (format, file, marker) in [
        ("pem", "k.pem", "-----BEGIN PRIVATE KEY-----"),
        ("jwk", "k.jwk", "\"d\""),
        ("hex", "k.json", "\"private_key\""),
    ] {
        let public = s.run(&["keygen", "--out", file, "--format", format]).ok();
        let public = public.trim();
        assert_eq!(public.len(), 64, "{public}");
        assert!(public.bytes().all(|b| b.is_ascii_hexdigit()));
        let content = std::fs::read_to_string(s.path(file)).unwrap();
        assert!(content.contains(marker), "{format}: {content}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(s.path(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{format}");
        }
        // pubkey reads it back to the same key.
        assert_eq!(s.run(&["pubkey", "--key", file]).ok().trim(), public);
        seen.push(public.to_owned());
        // Never overwrites.
        s.run(&["keygen", "--out", file]).usage(file);
        assert_eq!(std::fs::read_to_string(s.path(file)).unwrap(), content);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "every key is new");

    // The default file name, and `-` for stdout (the public half then goes to stderr).
    let public = s.run(&["keygen"]).ok();
    assert!(s.path("vouch.key").is_file());
    assert_eq!(s.run(&["pubkey", "--key", "vouch.key"]).ok(), public);
    let run = s.run(&["keygen", "--out", "-"]);
    let pem = run.ok();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = s.write("stdout.pem", &pem);
    assert_eq!(s.run(&["pubkey", "--key", &key]).ok(), run.stderr);
}

#[test]
fn pubkey_converts_between_formats() {
    let s = Scratch::new();
    let hex = s.keygen("k.pem");
    let pem = s.run(&["pubkey", "--key", "k.pem", "--format", "pem"]).ok();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let jwk = s
        .run(&["pubkey", "--key", "k.pem", "--format", "jwk"])
        .json();
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    // Each public form reads back to the same key.
    for (name, text) in [
        ("p.pem", pem),
        ("p.jwk", jwk.to_string()),
        ("p.hex", hex.clone()),
    ] {
        let file = s.write(name, text);
        assert_eq!(s.run(&["pubkey", "--key", &file]).ok().trim(), hex);
    }
    // The RFC 9421 test key (PKCS#8 v1), and its SPKI public key.
    let rfc = s
        .run(&["pubkey", "--key", &vector("rfc9421-ed25519.pem")])
        .ok();
    let rfc_pub = s
        .run(&["pubkey", "--key", &vector("rfc9421-ed25519.pub.pem")])
        .ok();
    assert_eq!(rfc, rfc_pub);
    assert_eq!(
        rfc.trim(),
        "26b40b8f93fff3d897112f7ebc582b232dbd72517d082fe83cfb30ddce43d1bb"
    );
}

#[test]
fn private_key_formats_mint_alike() {
    // MCPVault's JSON key file, PKCS#8 v1 and v2 PEM and a private JWK are read as private keys.
    let s = Scratch::new();
    let seed = "9f8362f87a484a954e6e740c5b4c0e84229139a20aa8ab56ff66586f6a7d29c5";
    let public = "26b40b8f93fff3d897112f7ebc582b232dbd72517d082fe83cfb30ddce43d1bb";
    let json_key = s.write(
        "mcpvault.json",
        format!(r#"{{"private_key": "{seed}", "public_key": "{public}"}}"#),
    );
    let rfc =
        vouch_keys::load_private(std::path::Path::new(&vector("rfc9421-ed25519.pem"))).unwrap();
    let v2 = s.write(
        "v2.pem",
        vouch_keys::encode_private(&rfc, vouch_keys::KeyFormat::PemV2).as_bytes(),
    );
    assert_ne!(
        std::fs::read_to_string(&v2).unwrap(),
        std::fs::read_to_string(vector("rfc9421-ed25519.pem")).unwrap(),
        "v2 is another encoding of the same key"
    );
    let jwk = s.write(
        "private.jwk",
        vouch_keys::encode_private(&rfc, vouch_keys::KeyFormat::Jwk).as_bytes(),
    );
    for key in [
        json_key.as_str(),
        &vector("rfc9421-ed25519.pem"),
        v2.as_str(),
        jwk.as_str(),
    ] {
        let token = s.run(&["mint", "--key", key]).ok();
        s.run(&["verify", "--token", token.trim(), "--pubkey", public])
            .ok();
    }
    // A public key cannot mint.
    s.run(&["mint", "--key", &vector("rfc9421-ed25519.pub.pem")])
        .usage("private key");
    // Bare hex is refused as a private key: it could be either half.
    let bare = s.write("bare.hex", seed);
    s.run(&["mint", "--key", &bare]).usage("ambiguous");
}

#[test]
fn pin_reset_removes_one_pin() {
    let s = Scratch::new();
    let store = s.write(
        "pins.json",
        r#"{"https://agents.example/a": "fp-a", "https://agents.example/b": "fp-b"}"#,
    );
    let reset_a = || {
        s.run(&[
            "pin",
            "reset",
            "--store",
            &store,
            "https://agents.example/a",
        ])
        .json()
    };
    let out = reset_a();
    assert_eq!(out["identity"], "https://agents.example/a");
    assert_eq!(out["was_pinned"], true);
    let left: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&store).unwrap()).unwrap();
    assert_eq!(
        left,
        serde_json::json!({"https://agents.example/b": "fp-b"})
    );
    // Again: nothing to remove, and the file is unchanged.
    let out = reset_a();
    assert_eq!(out["was_pinned"], false);
    // A missing or corrupt store is an error, never an empty store.
    s.run(&["pin", "reset", "--store", "nope.json", "x"])
        .usage("no such pin store");
    let corrupt = s.write("corrupt.json", "[1, 2]");
    s.run(&["pin", "reset", "--store", &corrupt, "x"])
        .usage("corrupt.json");
}
