//! Web Bot Auth (draft-ietf-webbotauth-httpsig-protocol, which includes the HTTP Message
//! Signatures Directory): the `Signature-Agent` header, the signing profile, and the directory
//! response's own signature.
//!
//! A Web Bot Auth request carries `Signature-Agent: sig1="https://agent.example"` (a dictionary
//! whose members are `https` URLs with an optional `type` parameter), and a signature tagged
//! `web-bot-auth` whose `keyid` is the JWK SHA-256 thumbprint of the signing key and which
//! covers `@authority` and the member, as `"signature-agent";key="sig1"`. The verifier fetches
//! the key set the member names (for `type=directory`, the default, the origin's
//! `/.well-known/http-message-signatures-directory`) and picks the key by thumbprint.
//!
//! [`VerifyPolicy::web_bot_auth`](crate::VerifyPolicy::web_bot_auth) checks all of this from the
//! head, and parses the covered member into a [`SignatureAgent`] before any key is looked up:
//! nothing is fetched for a request whose signature does not cover the URL it names.

use ring::digest::{SHA256, digest};

use base64ct::{Base64UrlUnpadded, Encoding};
use sfv::{BareItem, ListEntry};

use crate::alg::{Algorithm, SigningKey, VerifyingKey};
use crate::component::Component;
use crate::error::Error;
use crate::message::RequestView;
use crate::params::combined;
use crate::sf;
use crate::sign::SignatureSpec;

/// The `tag` of a Web Bot Auth request signature.
pub const WEB_BOT_AUTH_TAG: &str = "web-bot-auth";
/// The `tag` of the signature a directory server puts on its own response.
pub const DIRECTORY_TAG: &str = "http-message-signatures-directory";
/// The header naming where the signer's keys are published.
pub const SIGNATURE_AGENT_HEADER: &str = "signature-agent";
/// The well-known path of an HTTP Message Signatures Directory.
pub const DIRECTORY_PATH: &str = "/.well-known/http-message-signatures-directory";
/// The media type a directory at [`DIRECTORY_PATH`] must be served with.
pub const DIRECTORY_MEDIA_TYPE: &str = "application/http-message-signatures-directory+json";
/// The longest `expires - created` accepted, in seconds: the draft recommends an expiry of no
/// more than 24 hours (draft-ietf-webbotauth-httpsig-protocol, "Generating HTTP Message
/// Signature").
pub const MAX_LIFETIME: u64 = 86_400;

const SIGNATURE_AGENT: http::HeaderName = http::HeaderName::from_static(SIGNATURE_AGENT_HEADER);

/// How a `Signature-Agent` member resolves to keys (its `type` parameter).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    /// `type=directory` (the default): the value is an origin, and the keys are at its
    /// [`DIRECTORY_PATH`], served as [`DIRECTORY_MEDIA_TYPE`].
    Directory,
    /// `type=jwks_uri`: the value is the URL of a JWK Set.
    JwksUri,
}

impl AgentKind {
    /// The `type` parameter's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::JwksUri => "jwks_uri",
        }
    }
}

/// The `Signature-Agent` member a verified-to-be-covered signature names: where its key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureAgent {
    member: String,
    value: String,
    kind: AgentKind,
    fetch_url: String,
    identifier: String,
}

impl SignatureAgent {
    /// The dictionary member's key (the `key` parameter the signature covers it with).
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The member's value, as sent.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// How the value resolves to keys.
    pub fn kind(&self) -> AgentKind {
        self.kind
    }

    /// The URL to fetch the key set from: the directory's well-known URL for
    /// [`AgentKind::Directory`], the value itself (host lowercased, default port dropped) for
    /// [`AgentKind::JwksUri`].
    pub fn fetch_url(&self) -> &str {
        &self.fetch_url
    }

    /// The identifier a verified request is attributed to: the fetched URL without its query
    /// (the draft's "The Signature-Agent URL is the identifier").
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// Reads `value` as a member of kind `kind`, as the verifier does.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] unless `value` is an `https` URL with a host and no user
    /// information nor fragment; for [`AgentKind::Directory`], also unless it is an origin (no
    /// path but `/`, no query).
    pub fn parse(member: &str, value: &str, kind: AgentKind) -> Result<Self, Error> {
        let bad = Error::Malformed;
        if value.contains('#') {
            return Err(bad("signature-agent url has a fragment"));
        }
        let uri: http::Uri = value
            .parse()
            .map_err(|_| bad("signature-agent value is not a url"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("signature-agent url is not https"));
        }
        let authority = uri
            .authority()
            .ok_or(bad("signature-agent url has no host"))?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(bad("signature-agent url has user information or no host"));
        }
        let host = authority.host().to_ascii_lowercase();
        let normalized = match authority.port_u16() {
            Some(443) | None => host,
            Some(port) => format!("{host}:{port}"),
        };
        let path = uri.path();
        let (fetch_url, identifier) = match kind {
            AgentKind::Directory => {
                if !matches!(path, "" | "/") || uri.query().is_some() {
                    return Err(bad("signature-agent directory value is not an origin"));
                }
                let url = format!("https://{normalized}{DIRECTORY_PATH}");
                (url.clone(), url)
            }
            AgentKind::JwksUri => {
                let path = if path.is_empty() { "/" } else { path };
                let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
                (
                    format!("https://{normalized}{path}{query}"),
                    format!("https://{normalized}{path}"),
                )
            }
        };
        Ok(Self {
            member: member.to_owned(),
            value: value.to_owned(),
            kind,
            fetch_url,
            identifier,
        })
    }
}

/// The `Signature-Agent` member the signature labelled `label` covers, read from the head.
///
/// The signature must cover exactly one member as `"signature-agent";key="<member>"` (or,
/// covering several, one keyed to its own label); the field must be a dictionary naming no
/// member twice (so two field lines that both name it are refused); the member must be a
/// String with at most one `type` parameter, `directory` (or absent) or `jwks_uri`.
///
/// With `legacy`, a signature covering the whole field (`"signature-agent"`, no parameter) over a
/// field that is one String item (the form earlier drafts defined, which the draft lets a
/// verifier accept) is read as a dictionary whose one member is keyed by the signature's label.
pub(crate) fn covered_agent(
    headers: &http::HeaderMap,
    label: &str,
    components: &[Component],
    max_bytes: usize,
    legacy: bool,
) -> Result<SignatureAgent, Error> {
    let covered: Vec<&Component> = components
        .iter()
        .filter(|c| c.name() == SIGNATURE_AGENT_HEADER)
        .collect();
    let chosen = match covered.as_slice() {
        [] => {
            return Err(Error::MissingComponent(
                "\"signature-agent\";key=...".to_owned(),
            ));
        }
        [one] => *one,
        several => several
            .iter()
            .find(|c| c.string_param("key") == Some(label))
            .copied()
            .ok_or(Error::Malformed(
                "signature covers several signature-agent members, none keyed to its label",
            ))?,
    };
    let Some(member) = chosen.string_param("key") else {
        if legacy && chosen.params().is_empty() {
            return legacy_agent(headers, label, chosen, max_bytes);
        }
        return Err(Error::Malformed(
            "signature-agent must be covered as one dictionary member (;key=\"...\")",
        ));
    };
    if chosen.params().len() != 1 {
        return Err(Error::Malformed(
            "signature-agent covered with parameters besides key",
        ));
    }
    let value = combined(headers, &SIGNATURE_AGENT, max_bytes)?
        .ok_or_else(|| Error::ComponentUnavailable(chosen.to_string()))?;
    let parsed = sf::dictionary(&value)
        .map_err(|_| Error::Malformed("signature-agent is not a dictionary"))?;
    if parsed.repeats().name {
        return Err(Error::Malformed("signature-agent names a member twice"));
    }
    if parsed.repeats_of(member).any_param() {
        return Err(Error::Malformed(
            "signature-agent member names a parameter twice",
        ));
    }
    let entry = parsed
        .dict
        .get(member)
        .ok_or_else(|| Error::ComponentUnavailable(chosen.to_string()))?;
    let ListEntry::Item(item) = entry else {
        return Err(Error::Malformed("signature-agent member is not a string"));
    };
    let BareItem::String(url) = &item.bare_item else {
        return Err(Error::Malformed("signature-agent member is not a string"));
    };
    let kind = match item.params.get("type") {
        None => AgentKind::Directory,
        Some(BareItem::Token(t)) if t.as_str() == "directory" => AgentKind::Directory,
        Some(BareItem::Token(t)) if t.as_str() == "jwks_uri" => AgentKind::JwksUri,
        Some(BareItem::Token(_)) => return Err(Error::Unsupported("signature-agent type")),
        Some(_) => return Err(Error::Malformed("signature-agent type is not a token")),
    };
    SignatureAgent::parse(member, url.as_str(), kind)
}

/// The legacy form: the whole field, one String item with no parameter.
fn legacy_agent(
    headers: &http::HeaderMap,
    label: &str,
    chosen: &Component,
    max_bytes: usize,
) -> Result<SignatureAgent, Error> {
    let value = combined(headers, &SIGNATURE_AGENT, max_bytes)?
        .ok_or_else(|| Error::ComponentUnavailable(chosen.to_string()))?;
    let item: sfv::Item = sfv::Parser::new(&value)
        .parse_item()
        .map_err(|_| Error::Malformed("legacy signature-agent is not one string"))?;
    let BareItem::String(url) = &item.bare_item else {
        return Err(Error::Malformed("legacy signature-agent is not one string"));
    };
    if !item.params.is_empty() {
        return Err(Error::Malformed("legacy signature-agent has parameters"));
    }
    SignatureAgent::parse(label, url.as_str(), AgentKind::Directory)
}

/// The `Signature-Agent` field value for one member: `member="url"` (with `;type=jwks_uri` for
/// that kind).
///
/// # Errors
///
/// [`Error::Malformed`] if `member` is not a dictionary key or `url` not an sf-string, or the
/// URL is not one a verifier accepts ([`SignatureAgent::parse`]).
pub fn signature_agent_value(member: &str, url: &str, kind: AgentKind) -> Result<String, Error> {
    SignatureAgent::parse(member, url, kind)?;
    let key = crate::component::key_of(member)?;
    let item = crate::component::string_item(url)?;
    let BareItem::String(s) = item else {
        return Err(Error::Malformed("signature-agent value"));
    };
    let mut out = format!("{}=\"{}\"", key.as_str(), s.as_str());
    if kind == AgentKind::JwksUri {
        out.push_str(";type=jwks_uri");
    }
    Ok(out)
}

/// The JWK SHA-256 thumbprint (RFC 7638, RFC 8037 Appendix A.3) of an Ed25519 key: the `keyid`
/// of a Web Bot Auth signature.
///
/// # Errors
///
/// [`Error::Unsupported`] for keys other than Ed25519.
pub fn ed25519_thumbprint(key: &VerifyingKey) -> Result<String, Error> {
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(Error::Unsupported("thumbprints of keys other than ed25519"));
    }
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        Base64UrlUnpadded::encode_string(key.public_bytes())
    );
    Ok(Base64UrlUnpadded::encode_string(
        digest(&SHA256, jwk.as_bytes()).as_ref(),
    ))
}

/// The [`SignatureSpec`] of a Web Bot Auth request: label `sig1`, covering `@authority`,
/// `@method`, `@path`, `@query` when the target has a query, `content-digest` when the request
/// carries one, and `"signature-agent";key="<agent_member>"` when given; parameters `created`,
/// `expires`, `keyid` (the key's thumbprint), `alg`, `nonce`, `tag="web-bot-auth"`.
///
/// The draft's minimum is `@authority` and the member; the method and path are added so that a
/// captured signature cannot be replayed against another resource of the same authority.
///
/// # Errors
///
/// [`Error::LifetimeTooLong`] if `expires - created` exceeds [`MAX_LIFETIME`] or is negative;
/// [`Error::Unsupported`] for a key other than Ed25519; as [`crate::random_nonce`].
pub fn web_bot_auth_spec(
    request: &RequestView<'_>,
    key: &SigningKey,
    agent_member: Option<&str>,
    created: u64,
    expires: u64,
) -> Result<SignatureSpec, Error> {
    if expires < created || expires - created > MAX_LIFETIME {
        return Err(Error::LifetimeTooLong);
    }
    let keyid = ed25519_thumbprint(&key.verifying_key()?)?;
    let mut spec = SignatureSpec::new("sig1").cover_names(&["@authority", "@method", "@path"])?;
    if request.uri.query().is_some() {
        spec = spec.cover(Component::new("@query")?);
    }
    if request.headers().contains_key("content-digest") {
        spec = spec.cover(Component::new("content-digest")?);
    }
    if let Some(member) = agent_member {
        spec = spec.cover(Component::dictionary_member(
            SIGNATURE_AGENT_HEADER,
            member,
        )?);
    }
    Ok(spec
        .created(created)
        .expires(expires)
        .keyid(keyid)
        .alg(key)
        .nonce(crate::sign::random_nonce()?)
        .tag(WEB_BOT_AUTH_TAG))
}

/// The [`SignatureSpec`] a directory server signs its response with (the draft's "Possession
/// Proof on the Directory Response"): label `binding<index>`, covering `"@authority";req` and
/// `content-digest`, parameters `created`, `expires`, `keyid` (the key's thumbprint) and
/// `tag="http-message-signatures-directory"`. The response must carry its Content-Digest.
///
/// # Errors
///
/// [`Error::LifetimeTooLong`] if `expires` is before `created`; [`Error::Unsupported`] for a
/// key other than Ed25519.
pub fn directory_spec(
    key: &SigningKey,
    index: usize,
    created: u64,
    expires: u64,
) -> Result<SignatureSpec, Error> {
    if expires < created {
        return Err(Error::LifetimeTooLong);
    }
    let keyid = ed25519_thumbprint(&key.verifying_key()?)?;
    let spec = Component::parse_list("\"@authority\";req \"content-digest\"")?
        .into_iter()
        .fold(
            SignatureSpec::new(format!("binding{index}")),
            SignatureSpec::cover,
        );
    Ok(spec
        .created(created)
        .expires(expires)
        .keyid(keyid)
        .tag(DIRECTORY_TAG))
}
