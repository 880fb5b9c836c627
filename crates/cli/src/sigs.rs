//! Signed-request commands: sign and check.

use std::path::Path;

use serde::Serialize;
use vouch_httpsig::{
    Algorithm, Component, DigestAlgorithm, DigestRule, RequestView, ResponseView, SignatureSpec,
    SigningKey, Verifier, VerifyPolicy, VerifyingKey, content_digest, envoys_spec, mcp_spec,
    random_nonce, verify_content_digest,
};

use crate::cli::{CheckArgs, DigestArg, Profile, SignArgs};
use crate::failure::{Failure, Output};
use crate::input::{self, json, read_input, unix_now};
use crate::raw::{RawRequest, RawResponse};

const CONTENT_DIGEST: http::HeaderName = http::HeaderName::from_static("content-digest");
const SIGNATURE_INPUT: http::HeaderName = http::HeaderName::from_static("signature-input");

/// How far in the future `created` may be, as in the MCP profile.
const FUTURE_SKEW: u64 = 30;

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
    let label = args.label.as_deref().unwrap_or("sig1");
    if label_taken(&request, label) {
        return Err(Failure::usage(format!(
            "the request already has a signature labelled {label:?}; choose another --label"
        )));
    }
    let created = args.created.unwrap_or_else(unix_now);
    let scheme = args.scheme.as_str();
    let covered: Vec<Component> = match (&args.components, args.profile) {
        (Some(list), _) => {
            Component::parse_list(list).map_err(|e| Failure::usage(format!("--components: {e}")))?
        }
        (None, Profile::Mcp) => mcp_spec(&view(&request, scheme), &key, &args.keyid, None, created)
            .map_err(Failure::usage)?
            .components()
            .to_vec(),
        (None, Profile::Envoys) => envoys_spec(&args.keyid, created)
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
    let with_alg =
        args.alg.is_some() || (args.components.is_none() && args.profile == Profile::Mcp);
    let envoys_order = args.components.is_none() && args.profile == Profile::Envoys;
    if envoys_order {
        // The envoys client's parameter order: keyid first.
        spec = spec.keyid(&args.keyid);
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
        spec = spec.keyid(&args.keyid);
    }
    if let Some(t) = &args.tag {
        spec = spec.tag(t);
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
}

pub(crate) fn check(args: &CheckArgs) -> Output {
    let alg = args
        .alg
        .as_deref()
        .map(|a| {
            Algorithm::from_name(a).ok_or_else(|| Failure::usage(format!("unknown --alg {a:?}")))
        })
        .transpose()?;
    let key = verifying_key(&args.pubkey, alg)?;
    match (&args.answered, &args.request_label) {
        (Some(answered), _) => return check_response(args, &key, answered),
        (None, Some(_)) => return Err(Failure::usage("--request-label needs --request")),
        (None, None) => {}
    }
    let request = parse_request(&args.request)?;
    let mut policy = VerifyPolicy::mcp()
        .window(args.max_age, FUTURE_SKEW)
        .required_params(true, true, args.require_nonce)
        .algorithms(&[key.algorithm()]);
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
    let now = args.now.unwrap_or_else(unix_now);
    let message = view(&request, args.scheme.as_str());

    // A Content-Digest must match the body whether or not the signature covers it.
    let digests: Vec<&[u8]> = request
        .headers()
        .get_all(CONTENT_DIGEST)
        .iter()
        .map(http::HeaderValue::as_bytes)
        .collect();
    if !digests.is_empty() {
        verify_content_digest(
            &digests.join(&b", "[..]),
            request.body(),
            &[DigestAlgorithm::Sha256, DigestAlgorithm::Sha512],
        )
        .map_err(|e| Failure::rejected(format!("content-digest: {e} ({})", e.code())))?;
    }

    let prepared = Verifier::new(policy)
        .prepare(message, now)
        .map_err(rejected)?;
    if let Some(want) = &args.keyid
        && prepared.keyid() != Some(want.as_str())
    {
        return Err(Failure::rejected(format!(
            "the signature's keyid is {:?}, not {want:?} (keyid_mismatch)",
            prepared.keyid().unwrap_or_default()
        )));
    }
    let verified = prepared.verify(&key).map_err(rejected)?;
    print_verified(&verified)
}

/// `check --request`: the positional file is a response to the request in `answered`.
fn check_response(args: &CheckArgs, key: &VerifyingKey, answered: &str) -> Output {
    let request = parse_request(answered)?;
    let response = RawResponse::parse(&read_input(&args.request)?)
        .map_err(|e| Failure::usage(format!("not a raw HTTP/1.1 response: {}", e.0)))?;
    let mut policy = VerifyPolicy::mcp_response(args.request_label.as_deref().unwrap_or("sig1"))
        .window(args.max_age, FUTURE_SKEW)
        .required_params(true, true, args.require_nonce)
        .algorithms(&[key.algorithm()]);
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
    let now = args.now.unwrap_or_else(unix_now);
    // The request as the client sent it: only what `;req` components read is used.
    let sent = view(&request, args.scheme.as_str());
    let message = ResponseView::from_parts(response.status(), response.headers(), response.body())
        .with_request(sent);
    let digests: Vec<&[u8]> = response
        .headers()
        .get_all(CONTENT_DIGEST)
        .iter()
        .map(http::HeaderValue::as_bytes)
        .collect();
    if !digests.is_empty() {
        verify_content_digest(
            &digests.join(&b", "[..]),
            response.body(),
            &[DigestAlgorithm::Sha256, DigestAlgorithm::Sha512],
        )
        .map_err(|e| Failure::rejected(format!("content-digest: {e} ({})", e.code())))?;
    }
    let prepared = Verifier::new(policy)
        .prepare(message, now)
        .map_err(rejected)?;
    if let Some(want) = &args.keyid
        && prepared.keyid() != Some(want.as_str())
    {
        return Err(Failure::rejected(format!(
            "the signature's keyid is {:?}, not {want:?} (keyid_mismatch)",
            prepared.keyid().unwrap_or_default()
        )));
    }
    let verified = prepared.verify(key).map_err(rejected)?;
    print_verified(&verified)
}

fn print_verified(verified: &vouch_httpsig::Verified) -> Output {
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
    })
}
