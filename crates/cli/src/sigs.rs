//! Signed-request commands: sign and check.

use std::path::Path;

use serde::Serialize;
use vouch_httpsig::{
    AgentKind, Algorithm, Component, DIRECTORY_MEDIA_TYPE, DigestAlgorithm, DigestRule,
    RequestView, ResponseView, SignatureAgent, SignatureSpec, SigningKey, Verifier, VerifyPolicy,
    VerifyingKey, WEB_BOT_AUTH_TAG, content_digest, directory_spec, ed25519_thumbprint,
    envoys_spec, mcp_spec, random_nonce, sep2752_spec, signature_agent_value,
    verify_content_digest, web_bot_auth_spec,
};
use vouch_keys::signature_agent_value as inline_signature_agent_value;

use crate::cli::{CheckArgs, DigestArg, DirectoryArgs, Profile, SignArgs};
use crate::failure::{Failure, Output};
use crate::input::{self, json, read_input, unix_now};
use crate::raw::{RawRequest, RawResponse};

const CONTENT_DIGEST: http::HeaderName = http::HeaderName::from_static("content-digest");
const SIGNATURE_INPUT: http::HeaderName = http::HeaderName::from_static("signature-input");
const SIGNATURE_AGENT: http::HeaderName = http::HeaderName::from_static("signature-agent");

/// How far in the future `created` may be, as in the MCP profile.
const FUTURE_SKEW: u64 = 30;

/// How far in the future `created` may be under SEP-2752 (§2.2).
const SEP2752_FUTURE_SKEW: u64 = 60;

/// A failed signature check: the reason and its stable code.
fn rejected(e: vouch_httpsig::Error) -> Failure {
    Failure::rejected(format_args!("{e} ({})", e.code()))
}

fn parse_request(arg: &str) -> Result<RawRequest, Failure> {
    RawRequest::parse(&read_input(arg)?).map_err(Failure::usage)
}

fn view<'a>(request: &'a RawRequest, scheme: &'a str) -> RequestView<'a> {
    RequestView::from_parts(
        request.method(),
        request.target(),
        request.headers(),
        request.body(),
    )
    .with_scheme(scheme)
    .with_authority(request.host())
}

fn signing_key(path: &Path) -> Result<SigningKey, Failure> {
    let key = input::private_key(path)?;
    SigningKey::ed25519_from_seed(key.seed()).map_err(|e| Failure::usage(format!("key: {e}")))
}

/// True when a `Signature-Input` of the request already has a member named `label`.
fn label_taken(request: &RawRequest, label: &str) -> bool {
    request
        .headers()
        .get_all(SIGNATURE_INPUT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|member| member.trim_start().split('=').next() == Some(label))
}

/// The keyid to sign with: --keyid, or for the sep2752 profile the key's JWK thumbprint (which
/// --keyid, if given, must be).
fn signing_keyid(args: &SignArgs, key: &SigningKey, sep2752: bool) -> Result<String, Failure> {
    if !sep2752 {
        return args.keyid.clone().ok_or_else(|| {
            Failure::usage("--keyid is required (but for --profile web-bot-auth and sep2752)")
        });
    }
    let thumbprint = key
        .verifying_key()
        .ok()
        .and_then(|k| k.jwk_thumbprint())
        .ok_or_else(|| Failure::usage("--profile sep2752: the key has no JWK thumbprint"))?;
    match &args.keyid {
        Some(k) if *k != thumbprint => Err(Failure::usage(format!(
            "--profile sep2752: the keyid must be the key's JWK thumbprint {thumbprint:?}, not {k:?}"
        ))),
        _ => Ok(thumbprint),
    }
}

pub(crate) fn sign(args: &SignArgs) -> Output {
    let key = signing_key(&args.key)?;
    let mut request = parse_request(&args.request)?;
    let digest = match args.digest {
        DigestArg::Sha256 => Some(DigestAlgorithm::Sha256),
        DigestArg::Sha512 => Some(DigestAlgorithm::Sha512),
        DigestArg::None => None,
    };
    if let Some(alg) = digest {
        let value = content_digest(request.body(), &[alg]);
        request.remove(&CONTENT_DIGEST);
        request
            .append("Content-Digest", &value)
            .map_err(Failure::usage)?;
    }
    if args.inline_signature_agent {
        let public = input::private_key(&args.key)?.public_key();
        request.remove(&SIGNATURE_AGENT);
        request
            .append("Signature-Agent", &inline_signature_agent_value(&[public]))
            .map_err(Failure::usage)?;
    }
    let label = args.label.as_deref().unwrap_or("sig1");
    if label_taken(&request, label) {
        return Err(Failure::usage(format!(
            "the request already has a signature labelled {label:?}; choose another --label"
        )));
    }
    let created = args.created.unwrap_or_else(unix_now);
    let scheme = args.scheme.as_str();
    if let Some(url) = &args.signature_agent {
        let mut line = signature_agent_value(label, url, AgentKind::Directory)
            .map_err(|e| Failure::usage(format!("--signature-agent: {e}")))?;
        if args.legacy_signature_agent {
            // The same sf-string, without the member key.
            line = line
                .split_once('=')
                .map(|(_, v)| v.to_owned())
                .unwrap_or(line);
        }
        request
            .append("Signature-Agent", &line)
            .map_err(Failure::usage)?;
    }
    if args.profile == Profile::WebBotAuth && args.components.is_none() {
        return sign_web_bot_auth(args, &key, request, label, created);
    }
    let sep2752 = args.components.is_none() && args.profile == Profile::Sep2752;
    let keyid = match (&args.keyid, args.profile) {
        // web-bot-auth with --components: the key's thumbprint, as the profile wants.
        (None, Profile::WebBotAuth) => key
            .verifying_key()
            .and_then(|k| ed25519_thumbprint(&k))
            .map_err(|e| Failure::usage(format!("key: {e}")))?,
        _ => signing_keyid(args, &key, sep2752)?,
    };
    let keyid = keyid.as_str();
    let covered: Vec<Component> = match (&args.components, args.profile) {
        (Some(list), _) => {
            Component::parse_list(list).map_err(|e| Failure::usage(format!("--components: {e}")))?
        }
        (None, Profile::Mcp | Profile::WebBotAuth) => {
            mcp_spec(&view(&request, scheme), &key, keyid, None, created)
                .map_err(Failure::usage)?
                .components()
                .to_vec()
        }
        (None, Profile::Envoys) => envoys_spec(keyid, created)
            .map_err(Failure::usage)?
            .components()
            .to_vec(),
        (None, Profile::Sep2752) => sep2752_spec(&view(&request, scheme), &key, None, created)
            .map_err(Failure::usage)?
            .components()
            .to_vec(),
    };
    let mut spec = covered
        .into_iter()
        .fold(SignatureSpec::new(label), SignatureSpec::cover);
    let nonce = match (&args.nonce, &args.components) {
        (Some(n), _) => Some(n.clone()),
        (None, None) => Some(random_nonce().map_err(Failure::usage)?),
        (None, Some(_)) => None,
    };
    // SEP-2752 forbids alg: not even --alg adds it.
    let with_alg = !sep2752
        && (args.alg.is_some() || (args.components.is_none() && args.profile == Profile::Mcp));
    let envoys_order = args.components.is_none() && args.profile == Profile::Envoys;
    if envoys_order {
        // The envoys client's parameter order: keyid first.
        spec = spec.keyid(keyid);
    }
    spec = spec.created(created);
    if let Some(e) = args.expires {
        spec = spec.expires(e);
    }
    if let Some(n) = nonce {
        spec = spec.nonce(n);
    }
    if with_alg {
        spec = spec.alg(&key);
    }
    if !envoys_order {
        spec = spec.keyid(keyid);
    }
    match (&args.tag, sep2752) {
        (Some(t), _) => spec = spec.tag(t),
        // SEP-2752 §2.2: on first contact the tag is the keyid.
        (None, true) => spec = spec.tag(keyid),
        (None, false) => {}
    }
    let signature = vouch_httpsig::sign(view(&request, scheme), &spec, &key)
        .map_err(|e| Failure::usage(format!("cannot sign: {e}")))?;
    request
        .append("Signature-Input", &signature.input_member())
        .map_err(Failure::usage)?;
    request
        .append("Signature", &signature.signature_member())
        .map_err(Failure::usage)?;
    Ok(request.to_bytes())
}

/// How long a Web Bot Auth signature made by `vouch sign` lives unless --expires says.
const WEB_BOT_AUTH_LIFETIME: u64 = 300;

/// `vouch sign --profile web-bot-auth` (without --components).
fn sign_web_bot_auth(
    args: &SignArgs,
    key: &SigningKey,
    mut request: RawRequest,
    label: &str,
    created: u64,
) -> Output {
    let thumbprint = key
        .verifying_key()
        .and_then(|k| ed25519_thumbprint(&k))
        .map_err(|e| Failure::usage(format!("key: {e}")))?;
    if let Some(keyid) = &args.keyid
        && *keyid != thumbprint
    {
        return Err(Failure::usage(format!(
            "--keyid {keyid:?} is not the key's JWK thumbprint {thumbprint:?}, which web-bot-auth requires"
        )));
    }
    if !request.headers().contains_key("signature-agent") {
        return Err(Failure::usage(
            "web-bot-auth needs a Signature-Agent: give --signature-agent URL",
        ));
    }
    let expires = args
        .expires
        .unwrap_or_else(|| created.saturating_add(WEB_BOT_AUTH_LIFETIME));
    let scheme = args.scheme.as_str();
    let profile = web_bot_auth_spec(&view(&request, scheme), key, Some(label), created, expires)
        .map_err(|e| Failure::usage(format!("cannot sign: {e}")))?;
    let nonce = match &args.nonce {
        Some(n) => n.clone(),
        None => random_nonce().map_err(Failure::usage)?,
    };
    let whole_field = Component::new("signature-agent").map_err(Failure::usage)?;
    let spec = profile
        .components()
        .iter()
        .map(|c| {
            if args.legacy_signature_agent && c.name() == "signature-agent" {
                whole_field.clone()
            } else {
                c.clone()
            }
        })
        .fold(SignatureSpec::new(label), SignatureSpec::cover)
        .created(created)
        .expires(expires)
        .keyid(&thumbprint)
        .alg(key)
        .nonce(nonce)
        .tag(args.tag.as_deref().unwrap_or(WEB_BOT_AUTH_TAG));
    let signature = vouch_httpsig::sign(view(&request, scheme), &spec, key)
        .map_err(|e| Failure::usage(format!("cannot sign: {e}")))?;
    request
        .append("Signature-Input", &signature.input_member())
        .map_err(Failure::usage)?;
    request
        .append("Signature", &signature.signature_member())
        .map_err(Failure::usage)?;
    Ok(request.to_bytes())
}

/// The key `check` verifies with: Ed25519 in any format vouch reads, or an RSA or ECDSA PEM.
fn verifying_key(arg: &str, alg: Option<Algorithm>) -> Result<VerifyingKey, Failure> {
    let key = match input::public_key(arg) {
        Ok(ed25519) => VerifyingKey::try_ed25519(*ed25519.as_bytes())
            .map_err(|e| Failure::usage(format!("public key: {arg}: {e}")))?,
        Err(ed25519_error) => {
            let text = std::fs::read_to_string(arg).map_err(|_| ed25519_error)?;
            if !text.trim_start().starts_with("-----BEGIN") {
                return Err(Failure::usage(format!(
                    "public key: {arg}: not a key vouch reads"
                )));
            }
            VerifyingKey::from_pem(&text, alg)
                .map_err(|e| Failure::usage(format!("public key: {arg}: {e}")))?
        }
    };
    if let Some(alg) = alg
        && alg != key.algorithm()
    {
        return Err(Failure::usage(format!(
            "--alg {alg} does not fit the key, which is {}",
            key.algorithm()
        )));
    }
    Ok(key)
}

/// What `check` prints: who signed, and what the signature covers.
#[derive(Serialize)]
struct CheckOutput<'a> {
    keyid: Option<&'a str>,
    label: &'a str,
    alg: &'a str,
    created: Option<u64>,
    expires: Option<u64>,
    nonce: Option<&'a str>,
    tag: Option<&'a str>,
    covered: Vec<String>,
    /// Web Bot Auth: the identifier the request is attributed to (the key set's URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    signature_agent: Option<&'a str>,
}

pub(crate) fn check(args: &CheckArgs) -> Output {
    if args.profile == Profile::WebBotAuth {
        return check_web_bot_auth(args);
    }
    if args.directory.is_some() {
        return Err(Failure::usage("--directory is for --profile web-bot-auth"));
    }
    let pubkey = args
        .pubkey
        .as_deref()
        .ok_or_else(|| Failure::usage("--pubkey is required (but under --profile web-bot-auth)"))?;
    let alg = check_alg(args)?;
    let key = verifying_key(pubkey, alg)?;
    match (&args.answered, &args.request_label) {
        (Some(answered), _) => return check_response(args, &key, answered),
        (None, Some(_)) => return Err(Failure::usage("--request-label needs --request")),
        (None, None) => {}
    }
    let request = parse_request(&args.request)?;
    let profile = args.profile;
    let max_age = args.max_age.unwrap_or(300);
    let mut policy = match profile {
        Profile::Envoys => VerifyPolicy::envoys()
            .window(max_age, FUTURE_SKEW)
            .required_params(true, true, args.require_nonce),
        // SEP-2752 requires a nonce whatever --require-nonce says, and allows 60 s of skew.
        Profile::Sep2752 => VerifyPolicy::sep2752().window(max_age, SEP2752_FUTURE_SKEW),
        _ => VerifyPolicy::mcp()
            .window(max_age, FUTURE_SKEW)
            .required_params(true, true, args.require_nonce),
    };
    // The key's algorithm only; for sep2752, only if the SEP allows it.
    let algorithms: Vec<Algorithm> = match profile {
        Profile::Sep2752 => policy
            .allowed_algorithms()
            .iter()
            .copied()
            .filter(|a| *a == key.algorithm())
            .collect(),
        _ => vec![key.algorithm()],
    };
    policy = policy.algorithms(&algorithms);
    policy = overrides(policy, args)?;
    let now = args.now.unwrap_or_else(unix_now);
    let message = view(&request, args.scheme.as_str());
    check_digests(request.headers(), request.body())?;
    let prepared = Verifier::new(policy)
        .prepare(message, now)
        .map_err(rejected)?;
    check_keyid(args, prepared.keyid())?;
    let verified = prepared.verify(&key).map_err(rejected)?;
    report(&verified)
}

fn check_alg(args: &CheckArgs) -> Result<Option<Algorithm>, Failure> {
    args.alg
        .as_deref()
        .map(|a| {
            Algorithm::from_name(a).ok_or_else(|| Failure::usage(format!("unknown --alg {a:?}")))
        })
        .transpose()
}

/// The `--require` and `--label` overrides of a profile's policy.
fn overrides(mut policy: VerifyPolicy, args: &CheckArgs) -> Result<VerifyPolicy, Failure> {
    if let Some(list) = &args.require {
        let required =
            Component::parse_list(list).map_err(|e| Failure::usage(format!("--require: {e}")))?;
        policy = policy
            .require_exactly(required)
            .digest_rule(DigestRule::WhenCovered);
    }
    if let Some(label) = &args.label {
        policy = policy.label(label.clone());
    }
    Ok(policy)
}

/// A Content-Digest must match the body whether or not the signature covers it.
fn check_digests(headers: &http::HeaderMap, body: &[u8]) -> Result<(), Failure> {
    let digests: Vec<&[u8]> = headers
        .get_all(CONTENT_DIGEST)
        .iter()
        .map(http::HeaderValue::as_bytes)
        .collect();
    if !digests.is_empty() {
        verify_content_digest(
            &digests.join(&b", "[..]),
            body,
            &[DigestAlgorithm::Sha256, DigestAlgorithm::Sha512],
        )
        .map_err(|e| Failure::rejected(format!("content-digest: {e} ({})", e.code())))?;
    }
    Ok(())
}

fn check_keyid(args: &CheckArgs, keyid: Option<&str>) -> Result<(), Failure> {
    if let Some(want) = &args.keyid
        && keyid != Some(want.as_str())
    {
        return Err(Failure::rejected(format!(
            "the signature's keyid is {:?}, not {want:?} (keyid_mismatch)",
            keyid.unwrap_or_default()
        )));
    }
    Ok(())
}

/// `check --request`: the positional file is a response to the request in `answered`.
fn check_response(args: &CheckArgs, key: &VerifyingKey, answered: &str) -> Output {
    let request = parse_request(answered)?;
    let response = RawResponse::parse(&read_input(&args.request)?)
        .map_err(|e| Failure::usage(format!("not a raw HTTP/1.1 response: {}", e.0)))?;
    let mut policy = VerifyPolicy::mcp_response(args.request_label.as_deref().unwrap_or("sig1"))
        .window(args.max_age.unwrap_or(300), FUTURE_SKEW)
        .required_params(true, true, args.require_nonce)
        .algorithms(&[key.algorithm()]);
    policy = overrides(policy, args)?;
    let now = args.now.unwrap_or_else(unix_now);
    // The request as the client sent it: only what `;req` components read is used.
    let sent = view(&request, args.scheme.as_str());
    let message = ResponseView::from_parts(response.status(), response.headers(), response.body())
        .with_request(sent);
    check_digests(response.headers(), response.body())?;
    let prepared = Verifier::new(policy)
        .prepare(message, now)
        .map_err(rejected)?;
    check_keyid(args, prepared.keyid())?;
    let verified = prepared.verify(key).map_err(rejected)?;
    report(&verified)
}

fn report(verified: &vouch_httpsig::Verified) -> Output {
    json(&CheckOutput {
        keyid: verified.params.keyid.as_deref(),
        label: &verified.label,
        alg: verified.algorithm().name(),
        created: verified.params.created,
        expires: verified.params.expires,
        nonce: verified.params.nonce.as_deref(),
        tag: verified.params.tag.as_deref(),
        covered: verified
            .components()
            .iter()
            .map(ToString::to_string)
            .collect(),
        signature_agent: verified.signature_agent().map(SignatureAgent::identifier),
    })
}

/// `vouch check --profile web-bot-auth`: the policy from the head (tag, coverage, lifetime, the
/// Signature-Agent member), and only then the key: --pubkey, --directory, or the member's
/// directory fetched under the SSRF guards.
fn check_web_bot_auth(args: &CheckArgs) -> Output {
    let alg = check_alg(args)?;
    let given = args
        .pubkey
        .as_deref()
        .map(|k| verifying_key(k, alg))
        .transpose()?;
    let request = parse_request(&args.request)?;
    let mut policy =
        VerifyPolicy::web_bot_auth().legacy_signature_agent(args.legacy_signature_agent);
    if let Some(max_age) = args.max_age {
        policy = policy.window(max_age, FUTURE_SKEW);
    }
    if args.require_nonce {
        policy = policy.required_params(true, true, true);
    }
    if let Some(key) = &given {
        policy = policy.algorithms(&[key.algorithm()]);
    }
    if let Some(list) = &args.require {
        let required =
            Component::parse_list(list).map_err(|e| Failure::usage(format!("--require: {e}")))?;
        policy = policy.require_exactly(required);
    }
    if let Some(label) = &args.label {
        policy = policy.label(label.clone());
    }
    let now = args.now.unwrap_or_else(unix_now);
    check_digests(request.headers(), request.body())?;
    let prepared = Verifier::new(policy)
        .prepare(view(&request, args.scheme.as_str()), now)
        .map_err(rejected)?;
    check_keyid(args, prepared.keyid())?;
    let keyid = prepared.keyid().unwrap_or_default().to_owned();
    let agent = prepared
        .signature_agent()
        .cloned()
        .ok_or_else(|| Failure::rejected("no covered signature-agent (missing_component)"))?;
    let key = match (given, &args.directory) {
        (Some(key), _) => {
            // The keyid must be the key's thumbprint; vouch computes it for Ed25519 keys only.
            let Ok(thumbprint) = ed25519_thumbprint(&key) else {
                return Err(Failure::usage(
                    "--profile web-bot-auth checks Ed25519 keys (their JWK thumbprint is the keyid)",
                ));
            };
            if thumbprint != keyid {
                return Err(Failure::rejected(format!(
                    "the signature's keyid {keyid:?} is not the key's JWK thumbprint (keyid_mismatch)"
                )));
            }
            key
        }
        (None, Some(path)) => key_in_directory_file(path, &keyid)?,
        (None, None) => fetch_agent_key(&agent, &keyid)?,
    };
    let verified = prepared.verify(&key).map_err(rejected)?;
    report(&verified)
}

/// The Ed25519 key whose thumbprint is `keyid` in a JWK Set file; a key whose `kid` is not its
/// own thumbprint is refused.
fn key_in_directory_file(path: &Path, keyid: &str) -> Result<VerifyingKey, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("{}: not JSON: {e}", path.display())))?;
    let keys = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| Failure::usage(format!("{}: not a JWK Set", path.display())))?;
    for jwk in keys {
        let Ok(public) = vouch_keys::parse_public(&jwk.to_string()) else {
            continue;
        };
        if vouch_keys::jwk_thumbprint(&public) != keyid {
            continue;
        }
        if jwk
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|kid| kid != keyid)
        {
            return Err(Failure::rejected(
                "the directory labels the key with another kid than its thumbprint (key_refused)",
            ));
        }
        return VerifyingKey::try_ed25519(*public.as_bytes())
            .map_err(|e| Failure::rejected(format!("key: {e} (key_refused)")));
    }
    Err(Failure::rejected(format!(
        "no key in {} has the thumbprint {keyid:?} (unknown_key)",
        path.display()
    )))
}

#[cfg(feature = "gateway")]
fn fetch_agent_key(agent: &SignatureAgent, keyid: &str) -> Result<VerifyingKey, Failure> {
    use vouch_keys::{CacheConfig, DirectoryResolver, HttpsConfig};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("runtime: {e}")))?;
    let resolver = DirectoryResolver::new(HttpsConfig::default(), CacheConfig::default())
        .map_err(Failure::usage)?;
    let key = runtime
        .block_on(resolver.resolve_agent(agent, keyid))
        .map_err(|e| Failure::rejected(format!("{}: {e} (key_unavailable)", agent.fetch_url())))?;
    Ok(key.key().clone())
}

#[cfg(not(feature = "gateway"))]
fn fetch_agent_key(agent: &SignatureAgent, _keyid: &str) -> Result<VerifyingKey, Failure> {
    Err(Failure::usage(format!(
        "this vouch was built without network support: give --pubkey or --directory (the key set is at {})",
        agent.fetch_url()
    )))
}

/// `vouch directory`: the JWK Set of the given keys, and with --signature-agent the signed
/// response a directory server sends.
pub(crate) fn directory(args: &DirectoryArgs) -> Output {
    let keys = args
        .key
        .iter()
        .map(|p| input::private_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = std::collections::BTreeSet::new();
    let mut jwks = Vec::new();
    for key in &keys {
        let jwk = vouch_keys::public_jwk(&key.public_key());
        if !seen.insert(vouch_keys::jwk_thumbprint(&key.public_key())) {
            return Err(Failure::usage("the same key is given twice"));
        }
        jwks.push(jwk);
    }
    let body = serde_json::to_vec(&serde_json::json!({ "keys": jwks }))
        .map_err(|e| Failure::usage(format!("json: {e}")))?;
    let Some(url) = &args.signature_agent else {
        let mut out = body;
        out.push(b'\n');
        return Ok(out);
    };
    let agent = SignatureAgent::parse("directory", url, AgentKind::Directory)
        .map_err(|e| Failure::usage(format!("--signature-agent: {e}")))?;
    let uri: http::Uri = agent
        .fetch_url()
        .parse()
        .map_err(|_| Failure::usage("--signature-agent: not a url"))?;
    let created = args.created.unwrap_or_else(unix_now);
    let expires = args
        .expires
        .unwrap_or_else(|| created.saturating_add(vouch_httpsig::MAX_LIFETIME));
    let digest = content_digest(&body, &[DigestAlgorithm::Sha256]);
    let mut headers = http::HeaderMap::new();
    let value =
        |v: &str| http::HeaderValue::from_str(v).map_err(|_| Failure::usage("not a header value"));
    headers.insert(http::header::CONTENT_TYPE, value(DIRECTORY_MEDIA_TYPE)?);
    headers.insert(CONTENT_DIGEST, value(&digest)?);
    let method = http::Method::GET;
    let request_headers = http::HeaderMap::new();
    let fetch = RequestView::from_parts(&method, &uri, &request_headers, b"");
    let response =
        ResponseView::from_parts(http::StatusCode::OK, &headers, &body).with_request(fetch);
    let (mut inputs, mut signatures) = (Vec::new(), Vec::new());
    for (i, key) in keys.iter().enumerate() {
        let signer = SigningKey::ed25519_from_seed(key.seed())
            .map_err(|e| Failure::usage(format!("key: {e}")))?;
        let spec = directory_spec(&signer, i, created, expires)
            .map_err(|e| Failure::usage(format!("cannot sign: {e}")))?;
        let signature = vouch_httpsig::sign(response, &spec, &signer)
            .map_err(|e| Failure::usage(format!("cannot sign: {e}")))?;
        inputs.push(signature.input_member());
        signatures.push(signature.signature_member());
    }
    let mut out = format!(
        "Content-Type: {DIRECTORY_MEDIA_TYPE}\nContent-Digest: {digest}\nSignature-Input: {}\nSignature: {}\n\n",
        inputs.join(", "),
        signatures.join(", ")
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}
