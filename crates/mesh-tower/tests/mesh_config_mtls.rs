//! MeshConfig's mesh-wide connection knobs over real loopback connections:
//! `enableAutoMtls: false` leaves mutual TLS to DestinationRules (a STRICT server then
//! refuses the client's plaintext), `meshMTLS.minProtocolVersion: TLSV1_3` makes a mesh
//! server refuse a TLS 1.2 client that has a good mesh certificate, and `h2UpgradePolicy:
//! UPGRADE` sends a declared HTTP port's requests over HTTP/2 unless a DestinationRule
//! says `DO_NOT_UPGRADE`.

mod outbound_support;

use std::sync::Arc;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tls::rustls;
use mesh_tls::{Identity, MeshServerCertVerifier, PeerPolicy, ServerCheck};
use mesh_tower::inbound::MeshServer;
use outbound_support::*;
use tokio::net::{TcpListener, TcpStream};

const ISTIO_MUTUAL: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec: {host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}\n---\n";

#[tokio::test]
async fn without_auto_mtls_only_a_destination_rule_sends_mutual_tls() {
    let pki = Pki::new();
    let config = MeshConfig::from_yaml("enableAutoMtls: false").unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    reload(&mesh, &service_yaml("reviews", "default"));
    let server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let c = client(&mesh, &pki, "default", "productpage");
    // plaintext to a STRICT server: reset, 503
    let (st, _, _, _) = send(&c, get("http://reviews:9080/")).await;
    assert_eq!(st, 503);
    assert_eq!(server.hits(), 0);

    // the DestinationRule asks for ISTIO_MUTUAL: mutual TLS, as the mesh identity
    reload(
        &mesh,
        &format!("{ISTIO_MUTUAL}{}", service_yaml("reviews", "default")),
    );
    let (st, by, _, _) = send(&c, get("http://reviews:9080/")).await;
    assert_eq!((st, by.as_str()), (200, "reviews-v1"));
    assert_eq!(
        server.peers.lock().unwrap().as_slice(),
        ["cluster.local/ns/default/sa/productpage"]
    );

    // Istio's default: auto mTLS without any DestinationRule
    let mesh = self::mesh(&service_yaml("reviews", "default"));
    let server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let c = client(&mesh, &pki, "default", "productpage");
    assert_eq!(send(&c, get("http://reviews:9080/")).await.0, 200);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn mesh_wide_h2_upgrade_unless_a_destination_rule_says_otherwise() {
    let pki = Pki::new();
    let config = MeshConfig::from_yaml("h2UpgradePolicy: UPGRADE").unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    // the Service's port is named `http`: protocol HTTP, upgraded
    reload(&mesh, &service_yaml("reviews", "default"));
    let server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let c = client(&mesh, &pki, "default", "productpage");
    for _ in 0..3 {
        let (st, by, _, h) = send(&c, get("http://reviews:9080/")).await;
        assert_eq!((st, by.as_str()), (200, "reviews-v1"));
        assert_eq!(h["x-seen-version"], "HTTP/2.0");
    }
    // over mutual TLS, as the mesh identity
    assert_eq!(
        server.peers.lock().unwrap()[0],
        "cluster.local/ns/default/sa/productpage"
    );

    // a DestinationRule's DO_NOT_UPGRADE wins over the mesh's UPGRADE
    reload(
        &mesh,
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec: {{host: reviews, trafficPolicy: {{connectionPool: {{http: {{h2UpgradePolicy: DO_NOT_UPGRADE}}}}}}}}\n---\n{}",
            service_yaml("reviews", "default")
        ),
    );
    let (st, _, _, h) = send(&c, get("http://reviews:9080/")).await;
    assert_eq!(st, 200);
    assert_eq!(h["x-seen-version"], "HTTP/1.1");

    // Istio's default, DO_NOT_UPGRADE: HTTP/1.1
    let mesh = self::mesh(&service_yaml("reviews", "default"));
    let _server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let c = client(&mesh, &pki, "default", "productpage");
    let (_, _, _, h) = send(&c, get("http://reviews:9080/")).await;
    assert_eq!(h["x-seen-version"], "HTTP/1.1");
}

/// A mesh server on a mesh whose MeshConfig says `meshMTLS.minProtocolVersion`.
async fn mesh_server(pki: &Pki, mesh_config: &str) -> std::net::SocketAddr {
    let config = MeshConfig::from_yaml(mesh_config).unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    reload(
        &mesh,
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: default}\nspec: {mtls: {mode: STRICT}}\n",
    );
    let labels = [("app".to_string(), "reviews".to_string())].into();
    let server = MeshServer::builder(
        mesh,
        "default",
        "reviews",
        labels,
        pki.creds("default", "reviews"),
    )
    .build()
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { server.serve(listener, app).await });
    addr
}

/// A TLS handshake from a rustls client speaking only `version`, with a good mesh
/// certificate for `default/productpage`.
async fn handshake(
    pki: &Pki,
    addr: std::net::SocketAddr,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<rustls::ProtocolVersion, std::io::Error> {
    let me = Identity::new("cluster.local", "default", "productpage").unwrap();
    let cert = pki.ca.issue(&me, Duration::from_secs(3600), &[]).unwrap();
    let server = Identity::new("cluster.local", "default", "reviews").unwrap();
    let verifier = MeshServerCertVerifier::new(
        pki.ca.trust_bundle(),
        ServerCheck::Spiffe(PeerPolicy::trust_domain("cluster.local").allow_only([server])),
    )
    .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
        .unwrap();
    let tcp = TcpStream::connect(addr).await?;
    let tls = mesh_tls::tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("reviews".try_into().unwrap(), tcp)
        .await?;
    Ok(tls.get_ref().1.protocol_version().unwrap())
}

#[tokio::test]
async fn mesh_mtls_tls13_only_refuses_a_tls12_client() {
    let pki = Pki::new();
    let only13 = mesh_server(&pki, "meshMTLS: {minProtocolVersion: TLSV1_3}").await;
    assert!(handshake(&pki, only13, &rustls::version::TLS12)
        .await
        .is_err());
    assert_eq!(
        handshake(&pki, only13, &rustls::version::TLS13)
            .await
            .unwrap(),
        rustls::ProtocolVersion::TLSv1_3
    );
    // Istio's default minimum is TLS 1.2
    let default = mesh_server(&pki, "meshMTLS: {minProtocolVersion: TLSV1_2}").await;
    assert_eq!(
        handshake(&pki, default, &rustls::version::TLS12)
            .await
            .unwrap(),
        rustls::ProtocolVersion::TLSv1_2
    );
}
