//! Reading what the command line points at: tokens, keys and request files, all bounded.

use std::io::Read as _;
use std::path::Path;

use vouch_keys::{load_private, load_public, parse_public};
use vouch_token::{KeyPair, PublicKey, Token};

use crate::failure::Failure;

/// The most any input (stdin or a file) may hold.
pub(crate) const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a file, or stdin for `-`, refusing more than [`MAX_INPUT_BYTES`].
pub(crate) fn read_input(arg: &str) -> Result<Vec<u8>, Failure> {
    let (name, reader): (&str, Box<dyn std::io::Read>) = if arg == "-" {
        ("stdin", Box::new(std::io::stdin().lock()))
    } else {
        let file = std::fs::File::open(arg).map_err(|e| Failure::usage(format!("{arg}: {e}")))?;
        (arg, Box::new(file))
    };
    let mut out = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Failure::usage(format!("{name}: {e}")))?;
    if out.len() as u64 > MAX_INPUT_BYTES {
        return Err(Failure::usage(format!(
            "{name}: larger than {MAX_INPUT_BYTES} bytes"
        )));
    }
    Ok(out)
}

/// A token given on the command line, or on stdin for `-`.
pub(crate) fn token(arg: &str) -> Result<Token, Failure> {
    let text = if arg == "-" {
        String::from_utf8(read_input("-")?)
            .map_err(|_| Failure::usage("stdin: the token is not text"))?
    } else {
        arg.to_owned()
    };
    Token::from_base64(text.trim()).map_err(|e| Failure::usage(format!("not a vouch token: {e}")))
}

/// A public key given as text (hex, did:key) or as a key file in any format vouch reads.
pub(crate) fn public_key(arg: &str) -> Result<PublicKey, Failure> {
    if let Ok(key) = parse_public(arg) {
        return Ok(key);
    }
    load_public(Path::new(arg)).map_err(|e| Failure::usage(format!("public key: {e}")))
}

/// A private key file in any format vouch reads.
pub(crate) fn private_key(path: &Path) -> Result<KeyPair, Failure> {
    load_private(path).map_err(|e| Failure::usage(format!("private key: {e}")))
}

/// The current Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serializes `value` as pretty JSON with a final newline.
pub(crate) fn json(value: &impl serde::Serialize) -> Result<Vec<u8>, Failure> {
    let mut out = serde_json::to_vec_pretty(value)
        .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))?;
    out.push(b'\n');
    Ok(out)
}
