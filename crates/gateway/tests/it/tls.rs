//! `https://` upstreams: the gateway speaks TLS to the upstream and verifies its certificate.

use std::sync::Arc;

use http::StatusCode;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use vouch_gateway::Gateway;

use crate::{
    Upstream, assert_status, error_code, gateway, message, send, signed, text, token, upstream_app,
};

const CA: &[u8] = include_bytes!("tls/ca.pem");
const CERT: &[u8] = include_bytes!("tls/upstream.pem");
const KEY: &[u8] = include_bytes!("tls/upstream.key");

/// The test upstream's routes served over TLS (HTTP/1.1) on 127.0.0.1, with a certificate for
/// 127.0.0.1 issued by the test CA.
async fn tls_upstream() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = Upstream {
        addr: Some(listener.local_addr().unwrap()),
        ..Upstream::default()
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(CERT).unwrap()],
        PrivateKeyDer::from_pem_slice(KEY).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = upstream_app(&up);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A handshake the gateway refuses ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    up
}

fn https_url(up: &Upstream) -> String {
    format!("https://{}/mcp", up.addr.unwrap())
}

fn test_ca() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CA).unwrap())
        .unwrap();
    roots
}

#[tokio::test]
async fn an_https_upstream_with_a_trusted_certificate_gets_the_call() {
    let up = tls_upstream().await;
    let gw = gateway(&https_url(&up), |g: Gateway| {
        g.upstream_roots(test_ca()).unwrap()
    })
    .await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    let body = text(response).await;
    assert!(body.contains(r#""ok":true"#), "{body}");
    assert_eq!(up.calls(), 1);
    assert_eq!(up.last_head()["x-vouch-keyid"], crate::AGENT);
}

#[tokio::test]
async fn an_https_upstream_whose_certificate_is_not_trusted_is_never_sent_the_request() {
    let up = tls_upstream().await;
    // The default roots (the web PKI) do not include the test CA.
    let gw = gateway(&https_url(&up), |g| g).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(response).await, "upstream_unavailable");
    assert_eq!(up.calls(), 0);
}
