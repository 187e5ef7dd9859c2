//! A Gateway server's `cipherSuites` (Envoy's `tls_params.cipher_suites`): TLS 1.2 clients
//! get only the suites named; TLS 1.3 is not affected. Real handshakes on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use mesh_tls::rustls;
use mesh_tls::{Credential, Identity, MeshCa};
use mesh_tower::gateway::GatewayServer;
use tokio::net::TcpListener;

mod secrets_support;
use secrets_support::Secrets;

const GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls:
      mode: SIMPLE
      credentialName: shop-cred
      cipherSuites: ["[ECDHE-ECDSA-AES256-GCM-SHA384|ECDHE-ECDSA-CHACHA20-POLY1305]", ECDHE-RSA-AES256-GCM-SHA384, AES256-SHA]
  - port: {number: 443, name: https-legacy, protocol: HTTPS}
    hosts: [legacy.example.com]
    tls:
      mode: SIMPLE
      credentialName: shop-cred
      maxProtocolVersion: TLSV1_2
      cipherSuites: [NOT-A-CIPHER]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: istio-system}
spec:
  hosts: [shop.example.com, legacy.example.com]
  gateways: [gw]
  http: [{directResponse: {status: 200}}]
"#;

/// The suite negotiated by a client offering only `suites` (and `versions`), or `None`
/// when the handshake fails.
async fn negotiate(
    gw: SocketAddr,
    ca: &MeshCa,
    host: &'static str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: &[rustls::CipherSuite],
) -> Option<rustls::CipherSuite> {
    let mut provider = (*mesh_tls::provider()).clone();
    provider
        .cipher_suites
        .retain(|s| suites.is_empty() || suites.contains(&s.suite()));
    let mut roots = rustls::RootCertStore::empty();
    for c in ca.trust_bundle().certs() {
        roots.add(c.clone()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(rustls::pki_types::ServerName::try_from(host).unwrap(), tcp)
        .await
        .ok()?;
    tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite())
}

#[tokio::test]
async fn cipher_suites_limit_tls12_only() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "istio-system", "istio-ingressgateway").unwrap();
    // an ECDSA P-256 certificate: the ECDHE-ECDSA suites
    let cert = ca
        .issue(
            &id,
            Duration::from_secs(3600),
            &["shop.example.com", "legacy.example.com"],
        )
        .unwrap();
    let mut secrets = Secrets::default();
    secrets.0.insert(
        "shop-cred".into(),
        Credential {
            cert_chain_pem: Some(cert.chain_pem().to_owned()),
            key_pem: Some(cert.key_pem().to_owned()),
            crl_pem: None,
            ca_pem: None,
        },
    );
    let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    let gw = GatewayServer::builder(Mesh::from_yaml(GATEWAY).unwrap(), "istio-system", labels)
        .credentials(Arc::new(secrets))
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(443).unwrap();
    let tls12 = [&rustls::version::TLS12];
    use rustls::CipherSuite as C;

    // a suite named (inside the equal-preference group): negotiated
    assert_eq!(
        negotiate(
            addr,
            &ca,
            "shop.example.com",
            &tls12,
            &[C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
        )
        .await,
        Some(C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
    );
    assert_eq!(
        negotiate(
            addr,
            &ca,
            "shop.example.com",
            &tls12,
            &[C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]
        )
        .await,
        Some(C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
    );
    // a suite rustls has but the list does not name: refused
    assert_eq!(
        negotiate(
            addr,
            &ca,
            "shop.example.com",
            &tls12,
            &[C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
        )
        .await,
        None
    );
    // a list of names Envoy does not know is dropped, as istiod drops them: the defaults
    assert_eq!(
        negotiate(
            addr,
            &ca,
            "legacy.example.com",
            &tls12,
            &[C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
        )
        .await,
        Some(C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
    );
    // TLS 1.3 keeps its own suites
    assert_eq!(
        negotiate(
            addr,
            &ca,
            "shop.example.com",
            &[&rustls::version::TLS13],
            &[C::TLS13_AES_128_GCM_SHA256]
        )
        .await,
        Some(C::TLS13_AES_128_GCM_SHA256)
    );
}
