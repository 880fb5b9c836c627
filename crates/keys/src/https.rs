//! Resolving URL keyids over HTTPS, with the guards a server needs before it fetches anything an
//! attacker named.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use reqwest::Url;
use serde_json::Value;
use vouch_token::PublicKey;

use crate::format::{check_public, from_did_key, jwk_thumbprint, parse_public_unchecked};
use crate::resolve::{IdentityRule, KeyResolver, ResolveError, ResolveFuture, ResolvedKey};

/// Settings of an [`HttpsResolver`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpsConfig {
    /// Allow `http://` keyids (for loopback tests only). Default: false.
    pub allow_http: bool,
    /// Allow loopback, private, link-local (cloud metadata), CGNAT and other non-public
    /// addresses. Default: false.
    pub allow_private_addresses: bool,
    /// Whole-request timeout. Default: 5 s.
    pub timeout: Duration,
    /// Largest key document read. Default: 64 KiB.
    pub max_body_bytes: usize,
    /// Which hosts may speak for which address domains. Default: same registrable domain.
    pub identity_rule: IdentityRule,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private_addresses: false,
            timeout: Duration::from_secs(5),
            max_body_bytes: 64 * 1024,
            identity_rule: IdentityRule::default(),
        }
    }
}

impl HttpsConfig {
    /// For tests against a server on this machine: plain http and loopback allowed.
    pub fn loopback_testing() -> Self {
        Self {
            allow_http: true,
            allow_private_addresses: true,
            ..Self::default()
        }
    }

    /// Sets the identity rule.
    #[must_use]
    pub fn identity_rule(mut self, rule: IdentityRule) -> Self {
        self.identity_rule = rule;
        self
    }

    /// Sets the timeout and the body cap.
    #[must_use]
    pub fn limits(mut self, timeout: Duration, max_body_bytes: usize) -> Self {
        self.timeout = timeout;
        self.max_body_bytes = max_body_bytes;
        self
    }
}

/// True for addresses a key fetch may never reach unless private addresses are allowed:
/// unspecified, loopback, private (RFC 1918, ULA), link-local (incl. 169.254.169.254 cloud
/// metadata), CGNAT, benchmarking, multicast, broadcast, documentation, and IPv4 mapped into
/// IPv6 with any of those.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_non_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
        }
    }
}

/// reqwest's DNS hook: resolves, and hands over only addresses that pass the policy, so the
/// connection goes to a checked address even if the name's records change in between.
#[derive(Debug, Clone, Copy)]
struct CheckedDns {
    allow_private: bool,
}

impl reqwest::dns::Resolve for CheckedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = checked_addresses(&host, allow_private)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

async fn checked_addresses(
    host: &str,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| ResolveError::Fetch(format!("cannot resolve {host}: {e}")))?
        .collect();
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| allow_private || !is_non_public(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(ResolveError::Refused(format!(
            "{host} resolves to no public address"
        )));
    }
    Ok(allowed)
}

/// Resolves keyids that are URLs: fetches the document and reads the key from it.
///
/// Documents understood: a DID document with a JWK verification method; `{"public_key": PEM}`;
/// a JWK; a JWKS, including the HTTP Message Signatures Directory of web-bot-auth. A URL
/// fragment selects a key (by JWK thumbprint, `kid`, or DID verification method id); without
/// one a document must hold exactly one Ed25519 key. Keyids that are bare JWK thumbprints are
/// looked up in the directories given with [`HttpsResolver::with_directory`]; `did:key` keyids
/// carry their key and are read without a fetch; other keyids are [`ResolveError::Unknown`].
///
/// Before any fetch: the identity rule for address-style keyids, https only, and the target
/// addresses checked. No redirects are followed; the request has a timeout and the body a cap.
#[derive(Debug, Clone)]
pub struct HttpsResolver {
    client: reqwest::Client,
    config: Arc<HttpsConfig>,
    directories: Vec<Url>,
}

impl HttpsResolver {
    /// A resolver with `config`, verifying servers against the Mozilla root store (rustls on
    /// ring).
    ///
    /// # Errors
    ///
    /// [`ResolveError::Fetch`] if the HTTP client cannot be built.
    pub fn new(config: HttpsConfig) -> Result<Self, ResolveError> {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ResolveError::Fetch(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(CheckedDns {
                allow_private: config.allow_private_addresses,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .https_only(!config.allow_http)
            .build()
            .map_err(|e| ResolveError::Fetch(format!("http client: {e}")))?;
        Ok(Self {
            client,
            config: Arc::new(config),
            directories: Vec::new(),
        })
    }

    /// Also resolves bare JWK-thumbprint keyids from this HTTP Message Signatures Directory.
    ///
    /// # Errors
    ///
    /// [`ResolveError::Refused`] if `url` is not a URL.
    pub fn with_directory(mut self, url: &str) -> Result<Self, ResolveError> {
        let url =
            Url::parse(url).map_err(|e| ResolveError::Refused(format!("directory url: {e}")))?;
        self.directories.push(url);
        Ok(self)
    }

    async fn fetch(&self, url: &Url) -> Result<Value, ResolveError> {
        let (_, body) = self
            .fetch_bytes(
                url,
                "application/json, application/jwk+json, application/jwk-set+json, application/did+json",
            )
            .await?;
        serde_json::from_slice(&body)
            .map_err(|e| ResolveError::Fetch(format!("{url}: not JSON: {e}")))
    }

    /// GETs `url` under every guard (scheme, addresses, no redirects, timeout, body cap) and
    /// returns its `Content-Type` and body.
    pub(crate) async fn fetch_bytes(
        &self,
        url: &Url,
        accept: &'static str,
    ) -> Result<(Option<String>, Vec<u8>), ResolveError> {
        match url.scheme() {
            "https" => {}
            "http" if self.config.allow_http => {}
            other => return Err(ResolveError::Refused(format!("scheme {other} not allowed"))),
        }
        let host = url
            .host_str()
            .ok_or_else(|| ResolveError::Refused("url has no host".into()))?;
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        match literal {
            Ok(ip) if !self.config.allow_private_addresses && is_non_public(ip) => {
                return Err(ResolveError::Refused(format!("address {ip} is not public")));
            }
            Ok(_) => {}
            Err(_) => {
                checked_addresses(host, self.config.allow_private_addresses).await?;
            }
        }
        let mut url = url.clone();
        url.set_fragment(None);
        let mut response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| ResolveError::Fetch(format!("{url}: {}", error_chain(&e))))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(ResolveError::Refused(format!(
                "{url}: redirect refused ({status})"
            )));
        }
        if !status.is_success() {
            return Err(ResolveError::Fetch(format!("{url}: status {status}")));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let cap = self.config.max_body_bytes;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(ResolveError::Fetch(format!(
                "{url}: document larger than {cap} bytes"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ResolveError::Fetch(format!("{url}: {}", error_chain(&e))))?
        {
            if body.len() + chunk.len() > cap {
                return Err(ResolveError::Fetch(format!(
                    "{url}: document larger than {cap} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((content_type, body))
    }

    async fn lookup(&self, keyid: &str) -> Result<ResolvedKey, ResolveError> {
        self.config.identity_rule.check(keyid)?;
        if keyid.starts_with("did:key:") {
            // Self-describing: the key is in the identifier, nothing to fetch.
            return from_did_key(keyid)
                .map_err(|e| ResolveError::Refused(e.to_string()))
                .and_then(|k| ResolvedKey::ed25519(&k));
        }
        if let Ok(url) = Url::parse(keyid)
            && matches!(url.scheme(), "https" | "http")
        {
            let doc = self.fetch(&url).await?;
            return key_from_document(&doc, url.fragment()).and_then(|k| ResolvedKey::ed25519(&k));
        }
        if is_thumbprint(keyid) {
            for dir in &self.directories {
                let doc = self.fetch(dir).await?;
                match key_from_document(&doc, Some(keyid)) {
                    Ok(k) => return ResolvedKey::ed25519(&k),
                    // The keyid names a weak key in this directory: refused, not looked for
                    // elsewhere.
                    Err(refused @ ResolveError::Refused(_)) => return Err(refused),
                    Err(_) => {}
                }
            }
        }
        Err(ResolveError::Unknown)
    }
}

impl KeyResolver for HttpsResolver {
    fn resolve<'a>(&'a self, keyid: &'a str) -> ResolveFuture<'a> {
        Box::pin(self.lookup(keyid))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

pub(crate) fn is_thumbprint(s: &str) -> bool {
    s.len() == 43 && Base64UrlUnpadded::decode_vec(s).is_ok_and(|b| b.len() == 32)
}

pub(crate) fn jwk_key(jwk: &Value) -> Option<PublicKey> {
    if jwk.get("kty")?.as_str()? != "OKP" || jwk.get("crv")?.as_str()? != "Ed25519" {
        return None;
    }
    // Weak keys stay candidates, so that a keyid selecting one is refused as such.
    parse_public_unchecked(&jwk.to_string()).ok()
}

/// Reads the Ed25519 key a fetched document holds; `selector` (the URL fragment, or a thumbprint)
/// picks one of several. A weak key (see [`ResolvedKey::ed25519`]) is refused.
///
/// # Errors
///
/// [`ResolveError::Fetch`] when the document holds no matching key, or several and no selector;
/// [`ResolveError::Refused`] when the key it holds, or the one selected, is weak.
pub fn key_from_document(doc: &Value, selector: Option<&str>) -> Result<PublicKey, ResolveError> {
    key_in_document(doc, selector)
        .and_then(|k| check_public(&k).map(|_| k).map_err(ResolveError::Refused))
}

fn key_in_document(doc: &Value, selector: Option<&str>) -> Result<PublicKey, ResolveError> {
    let bad = |why: &str| ResolveError::Fetch(why.to_owned());
    // {"public_key": PEM}
    if let Some(pem) = doc.get("public_key").and_then(Value::as_str) {
        return parse_public_unchecked(pem).map_err(|e| ResolveError::Fetch(e.to_string()));
    }
    // A single JWK.
    if doc.get("kty").is_some() {
        return jwk_key(doc).ok_or_else(|| bad("JWK is not an Ed25519 key"));
    }
    // Candidates with their selectors: a JWKS (incl. the signatures directory) or a DID document.
    let mut candidates: Vec<(Vec<String>, PublicKey)> = Vec::new();
    if let Some(keys) = doc.get("keys").and_then(Value::as_array) {
        for jwk in keys {
            if let Some(k) = jwk_key(jwk) {
                let mut names = vec![jwk_thumbprint(&k)];
                names.extend(jwk.get("kid").and_then(Value::as_str).map(str::to_owned));
                candidates.push((names, k));
            }
        }
    } else if let Some(methods) = doc.get("verificationMethod").and_then(Value::as_array) {
        for m in methods {
            if let Some(k) = m.get("publicKeyJwk").and_then(jwk_key) {
                let mut names = vec![jwk_thumbprint(&k)];
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    names.push(id.to_owned());
                    names.extend(id.rsplit_once('#').map(|(_, f)| f.to_owned()));
                }
                candidates.push((names, k));
            }
        }
    } else {
        return Err(bad(
            "document is not a JWK, JWKS, DID document or {\"public_key\": PEM}",
        ));
    }
    match selector {
        Some(sel) => candidates
            .into_iter()
            .find(|(names, _)| names.iter().any(|n| n == sel))
            .map(|(_, k)| k)
            .ok_or_else(|| bad("no key in the document matches the keyid")),
        None => match candidates.as_slice() {
            [(_, k)] => Ok(*k),
            [] => Err(bad("document holds no Ed25519 key")),
            _ => Err(bad(
                "document holds several keys and the keyid selects none",
            )),
        },
    }
}
