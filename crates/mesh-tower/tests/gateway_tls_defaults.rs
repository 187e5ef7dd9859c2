//! MeshConfig `tlsDefaults` on gateway servers that terminate TLS, as istiod applies them
//! (`applyDownstreamTLSDefaults`, then the server's own settings field by field), checked
//! with real TLS clients over loopback: the lowest version, the TLS 1.2 cipher suites and
//! the key-exchange groups of a server that sets none; a server's own setting wins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tls::{rustls, Credential, Identity, MeshCa};
use mesh_tower::gateway::GatewayServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod secrets_support;
use secrets_support::Secrets;

const MESH_CONFIG: &str = "
tlsDefaults:
  minProtocolVersion: TLSV1_3
  cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]
  ecdhCurves: [P-256]
";

/// Three `TLS` servers for `db.example.com` proxying to an echo backend: 8443 sets nothing
/// of its own, 7443 its own lowest version, 9443 its own lowest version and cipher suite.
fn config(backend: SocketAddr) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8443, name: tls-defaults, protocol: TLS}}
    hosts: [db.example.com]
    tls: {{mode: SIMPLE, credentialName: db}}
  - port: {{number: 7443, name: tls-own-version, protocol: TLS}}
    hosts: [db.example.com]
    tls: {{mode: SIMPLE, credentialName: db, minProtocolVersion: TLSV1_2}}
  - port: {{number: 9443, name: tls-own, protocol: TLS}}
    hosts: [db.example.com]
    tls:
      mode: SIMPLE
      credentialName: db
      minProtocolVersion: TLSV1_2
      cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: istio-system}}
spec:
  hosts: [db.example.com]
  gateways: [gw]
  tcp: [{{route: [{{destination: {{host: db.default.svc.cluster.local, port: {{number: 5432}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]
",
        backend.port()
    )
}

async fn echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// What a client offers.
struct Offer {
    versions: &'static [&'static rustls::SupportedProtocolVersion],
    suite: Option<rustls::CipherSuite>,
    group: Option<rustls::NamedGroup>,
}

const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A TLS connection to `addr` with `offer`; `Ok` once a byte went to the backend and back.
async fn connect(addr: SocketAddr, ca: &MeshCa, offer: &Offer) -> Result<(), String> {
    let mut provider = (*mesh_tls::provider()).clone();
    if let Some(s) = offer.suite {
        provider.cipher_suites.retain(|c| c.suite() == s);
    }
    if let Some(g) = offer.group {
        provider.kx_groups.retain(|k| k.name() == g);
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(offer.versions)
        .unwrap()
        .with_root_certificates(ca.trust_bundle().root_store().clone())
        .with_no_client_auth();
    let work = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from("db.example.com").unwrap(),
                tcp,
            )
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "timed out".to_owned())?
}

#[tokio::test]
async fn tls_defaults_apply_where_the_server_sets_nothing() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "istio-system", "gw").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["db.example.com"])
        .unwrap();
    let mut secrets = Secrets::default();
    secrets.0.insert(
        "db".into(),
        Credential {
            cert_chain_pem: Some(cert.chain_pem().to_owned()),
            key_pem: Some(cert.key_pem().to_owned()),
            crl_pem: None,
            ca_pem: None,
        },
    );
    let mesh = Mesh::with_mesh_config(&MeshConfig::from_yaml(MESH_CONFIG).unwrap());
    let loaded = mesh_core::load::load_str(&config(echo_backend().await), "gw.yaml");
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    mesh.reload_loaded(loaded).unwrap();
    let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    let mut builder =
        GatewayServer::builder(mesh, "istio-system", labels).credentials(Arc::new(secrets));
    for port in [7443, 8443, 9443] {
        builder = builder.listener(port, TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let gw = builder.start().await.unwrap();
    let (defaults, own) = (gw.local_addr(8443).unwrap(), gw.local_addr(9443).unwrap());

    use rustls::{CipherSuite as S, NamedGroup as G};
    let tls13 = Offer {
        versions: TLS13,
        suite: None,
        group: None,
    };
    // the defaults' lowest version, TLS 1.3, and key exchange, P-256 only
    assert_eq!(connect(defaults, &ca, &tls13).await, Ok(()));
    let tls12 = |suite| Offer {
        versions: TLS12,
        suite: Some(suite),
        group: None,
    };
    let aes256 = S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384;
    let aes128 = S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
    assert!(connect(defaults, &ca, &tls12(aes256)).await.is_err());
    let x25519 = Offer {
        versions: TLS13,
        suite: None,
        group: Some(G::X25519),
    };
    assert!(connect(defaults, &ca, &x25519).await.is_err());
    let p256 = Offer {
        versions: TLS13,
        suite: None,
        group: Some(G::secp256r1),
    };
    assert_eq!(connect(defaults, &ca, &p256).await, Ok(()));

    // the server's own lowest version wins, the defaults' suites stay
    let own_version = gw.local_addr(7443).unwrap();
    assert_eq!(connect(own_version, &ca, &tls12(aes256)).await, Ok(()));
    assert!(connect(own_version, &ca, &tls12(aes128)).await.is_err());

    // the server's own lowest version and suites win; the defaults' curves still apply
    assert_eq!(connect(own, &ca, &tls12(aes128)).await, Ok(()));
    assert!(connect(own, &ca, &tls12(aes256)).await.is_err());
    assert!(connect(own, &ca, &x25519).await.is_err());
}
