//! Real handshakes over loopback, both sides ours: every PeerAuthentication mode, every
//! DestinationRule TLS mode, and every verification failure.

mod common;

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use mesh_tls::*;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TD: &str = "cluster.local";

fn ca() -> MeshCa {
    MeshCa::self_signed(TD).unwrap()
}

/// A rustls client presenting exactly `cert` (which may be expired etc.), verifying the
/// server with our verifier.
fn raw_client(cert: &WorkloadCert, bundle: &TrustBundle, check: ServerCheck) -> OutboundTlsRaw {
    let verifier = MeshServerCertVerifier::new(bundle, check).unwrap();
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
        .unwrap();
    OutboundTlsRaw(Arc::new(cfg))
}

struct OutboundTlsRaw(Arc<ClientConfig>);

impl OutboundTlsRaw {
    async fn roundtrip(&self, addr: std::net::SocketAddr) -> io::Result<String> {
        let tcp = TcpStream::connect(addr).await?;
        let tls = tokio_rustls::TlsConnector::from(self.0.clone())
            .connect("svc.example".try_into().unwrap(), tcp)
            .await?;
        let mut s = BufReader::new(tls);
        ask(&mut s, "ping").await
    }
}

/// A STRICT server presenting exactly `cert`.
fn raw_server(cert: &WorkloadCert, bundle: &TrustBundle, policy: PeerPolicy) -> InboundTls {
    let verifier = MeshClientCertVerifier::new(bundle, policy).unwrap();
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
        .unwrap();
    InboundTls::new(PeerAuthnMode::Strict, Some(Arc::new(cfg))).unwrap()
}

fn issue_at(ca: &MeshCa, id: &Identity, from: SystemTime, ttl: Duration) -> WorkloadCert {
    let mut req = CertRequest::new(id.clone());
    req.valid_from = Some(from);
    req.ttl = ttl;
    ca.issue_request(&req).unwrap()
}

fn server_err(r: AcceptResult) -> VerifyError {
    let e = r.expect_err("server should have refused the client");
    VerifyError::from_io(&e).unwrap_or_else(|| panic!("not a verification error: {e:?}"))
}

#[tokio::test]
async fn strict_mutual_tls_both_identities_seen() {
    let ca = ca();
    let sid = id(TD, "default", "httpbin");
    let cid = id(TD, "default", "sleep");
    let mut server = echo_server(strict(&creds(&ca, &sid, &[]))).await;
    let client = istio_mutual(&creds(&ca, &cid, &[]), std::slice::from_ref(&sid));

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = client.connect(tcp).await.unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(PeerIdentity::of(conn).unwrap().identity(), &sid);
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]), "server prefers h2");
    let mut s = BufReader::new(tls);
    assert_eq!(
        ask(&mut s, "ping").await.unwrap(),
        "cluster.local/ns/default/sa/sleep ping"
    );
    let peer = server.next().await.unwrap().expect("mTLS peer identity");
    assert_eq!(peer.principal(), "cluster.local/ns/default/sa/sleep");
    assert_eq!(peer.namespace(), "default");
    assert_eq!(peer.service_account(), "sleep");
}

#[tokio::test]
async fn strict_refuses_plaintext_with_a_reset_not_http() {
    let ca = ca();
    let mut server = echo_server(strict(&creds(&ca, &id(TD, "a", "server"), &[]))).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .unwrap();
    // reset, without any answer (not even a TLS alert)
    let e = n.expect_err("the connection is reset");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    assert!(buf.is_empty(), "{buf:?}");
    let e = server.next().await.unwrap_err();
    assert!(
        VerifyError::from_io(&e).is_none(),
        "not a certificate failure: {e}"
    );
}

#[tokio::test]
async fn strict_refuses_a_client_without_certificate() {
    let ca = ca();
    let sid = id(TD, "a", "server");
    let mut server = echo_server(strict(&creds(&ca, &sid, &[]))).await;
    // SIMPLE TLS, trusting the mesh root, checking the server's SPIFFE ID, no client cert
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root-cert.pem");
    std::fs::write(&root, ca.trust_bundle().to_pem()).unwrap();
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::Simple,
        ca_certificates: Some(root),
        subject_alt_names: vec![sid.to_string()],
        ..Default::default()
    };
    let dest = Destination {
        host: "server.a",
        port: 80,
        subset: None,
        service_accounts: &[],
    };
    let out = client_config(&settings, &dest, &ClientContext::default())
        .unwrap()
        .unwrap();
    assert!(tls_roundtrip(&out, server.addr).await.is_err());
    assert_eq!(
        server_err(server.next().await),
        VerifyError::NoClientCertificate
    );
}

#[tokio::test]
async fn server_side_failures_are_distinct() {
    let ca = ca();
    let other_ca = ca_other();
    let sid = id(TD, "a", "server");
    let server_creds = creds(&ca, &sid, &[]);
    let bundle = ca.trust_bundle().clone();
    let check = ServerCheck::Spiffe(PeerPolicy::trust_domain(TD));
    let now = SystemTime::now();
    let cid = id(TD, "default", "sleep");

    // (client certificate, server policy, expected kind)
    let cases: Vec<(&str, WorkloadCert, PeerPolicy, &str)> = vec![
        (
            "expired",
            issue_at(
                &ca,
                &cid,
                now - Duration::from_secs(7200),
                Duration::from_secs(3600),
            ),
            PeerPolicy::trust_domain(TD),
            "expired",
        ),
        (
            "not yet valid",
            issue_at(
                &ca,
                &cid,
                now + Duration::from_secs(3600),
                Duration::from_secs(3600),
            ),
            PeerPolicy::trust_domain(TD),
            "not_yet_valid",
        ),
        (
            "unknown issuer",
            other_ca.issue(&cid, DEFAULT_WORKLOAD_TTL, &[]).unwrap(),
            PeerPolicy::trust_domain(TD),
            "unknown_issuer",
        ),
        (
            "wrong trust domain",
            ca.issue(
                &id("evil.org", "default", "sleep"),
                DEFAULT_WORKLOAD_TTL,
                &[],
            )
            .unwrap(),
            PeerPolicy::trust_domain(TD),
            "wrong_trust_domain",
        ),
        (
            "identity not allowed",
            ca.issue(&id(TD, "default", "intruder"), DEFAULT_WORKLOAD_TTL, &[])
                .unwrap(),
            PeerPolicy::trust_domain(TD).allow_only([cid.clone()]),
            "identity_not_allowed",
        ),
        (
            "allowed",
            ca.issue(&cid, DEFAULT_WORKLOAD_TTL, &[]).unwrap(),
            PeerPolicy::trust_domain(TD).allow_only([cid.clone()]),
            "ok",
        ),
    ];
    for (name, cert, policy, want) in cases {
        let inbound =
            InboundTls::from_credentials(PeerAuthnMode::Strict, &server_creds, Some(policy))
                .unwrap();
        let mut server = echo_server(inbound).await;
        let client = raw_client(&cert, &bundle, check.clone());
        let rt = client.roundtrip(server.addr).await;
        let got = server.next().await;
        if want == "ok" {
            assert!(rt.is_ok(), "{name}: {rt:?}");
            assert!(got.is_ok(), "{name}");
            continue;
        }
        assert!(rt.is_err(), "{name}: the client must not get an answer");
        let err = server_err(got);
        assert_eq!(err.kind(), want, "{name}: {err}");
        let msg = err.to_string();
        match want {
            "expired" | "not_yet_valid" => assert!(msg.contains(cid.as_uri()), "{name}: {msg}"),
            "unknown_issuer" => assert!(msg.contains("Root CA"), "{name}: {msg}"),
            "wrong_trust_domain" => assert!(msg.contains("evil.org") && msg.contains(TD), "{msg}"),
            "identity_not_allowed" => {
                assert!(
                    msg.contains("intruder") && msg.contains("sa/sleep"),
                    "{msg}"
                )
            }
            _ => {}
        }
    }
}

fn ca_other() -> MeshCa {
    MeshCa::self_signed(TD).unwrap()
}

#[tokio::test]
async fn client_side_failures_are_distinct() {
    let ca = ca();
    let other_ca = ca_other();
    let sid = id(TD, "default", "httpbin");
    let cid = id(TD, "default", "sleep");
    let client_creds = creds(&ca, &cid, &[]);
    let now = SystemTime::now();
    let cases: Vec<(&str, WorkloadCert, Vec<Identity>, &str)> = vec![
        (
            "ok",
            ca.issue(&sid, DEFAULT_WORKLOAD_TTL, &[]).unwrap(),
            vec![sid.clone()],
            "ok",
        ),
        (
            "expired",
            issue_at(
                &ca,
                &sid,
                now - Duration::from_secs(7200),
                Duration::from_secs(3600),
            ),
            vec![sid.clone()],
            "expired",
        ),
        (
            "not yet valid",
            issue_at(
                &ca,
                &sid,
                now + Duration::from_secs(600),
                Duration::from_secs(3600),
            ),
            vec![sid.clone()],
            "not_yet_valid",
        ),
        (
            "unknown issuer",
            other_ca.issue(&sid, DEFAULT_WORKLOAD_TTL, &[]).unwrap(),
            vec![sid.clone()],
            "unknown_issuer",
        ),
        (
            "wrong trust domain",
            ca.issue(
                &id("evil.org", "default", "httpbin"),
                DEFAULT_WORKLOAD_TTL,
                &[],
            )
            .unwrap(),
            vec![sid.clone()],
            "wrong_trust_domain",
        ),
        (
            // no service accounts known: istiod gives Envoy no SAN matcher, the chain
            // to the mesh roots decides
            "unknown service accounts",
            ca.issue(
                &id("evil.org", "default", "httpbin"),
                DEFAULT_WORKLOAD_TTL,
                &[],
            )
            .unwrap(),
            vec![],
            "ok",
        ),
        (
            "identity not allowed",
            ca.issue(&id(TD, "default", "impostor"), DEFAULT_WORKLOAD_TTL, &[])
                .unwrap(),
            vec![sid.clone()],
            "identity_not_allowed",
        ),
    ];
    for (name, server_cert, accounts, want) in cases {
        let inbound = raw_server(
            &server_cert,
            ca.trust_bundle(),
            PeerPolicy::trust_domain(TD),
        );
        let mut server = echo_server(inbound).await;
        let client = istio_mutual(&client_creds, &accounts);
        let rt = tls_roundtrip(&client, server.addr).await;
        if want == "ok" {
            assert_eq!(rt.unwrap(), "cluster.local/ns/default/sa/sleep ping");
            continue;
        }
        let e = rt.expect_err(name);
        let v = VerifyError::from_io(&e).unwrap_or_else(|| panic!("{name}: {e:?}"));
        assert_eq!(v.kind(), want, "{name}: {v}");
        // the server saw the client abort the handshake
        assert!(server.next().await.is_err(), "{name}");
        if want == "identity_not_allowed" {
            let m = v.to_string();
            assert!(m.contains("impostor") && m.contains("sa/httpbin"), "{m}");
        }
    }
}

#[tokio::test]
async fn spiffe_only_server_cert_is_accepted_by_istio_mutual() {
    // The server cert has no DNS SAN at all: rustls's stock verifier would refuse it.
    let ca = ca();
    let sid = id(TD, "default", "httpbin");
    let server_cert = ca.issue(&sid, DEFAULT_WORKLOAD_TTL, &[]).unwrap();
    let server = echo_server(raw_server(
        &server_cert,
        ca.trust_bundle(),
        PeerPolicy::trust_domain(TD),
    ))
    .await;
    let client = istio_mutual(&creds(&ca, &id(TD, "default", "sleep"), &[]), &[]);
    assert!(tls_roundtrip(&client, server.addr).await.is_ok());
    assert_eq!(
        client.server_name().to_str(),
        "outbound_.8080_._.svc.default.svc.cluster.local"
    );
}

#[tokio::test]
async fn permissive_serves_mtls_and_plaintext_on_one_port() {
    let ca = ca();
    let sid = id(TD, "a", "server");
    let server_creds = creds(&ca, &sid, &[]);
    let inbound =
        InboundTls::from_credentials(PeerAuthnMode::Permissive, &server_creds, None).unwrap();
    let mut server = echo_server(inbound).await;

    assert_eq!(
        plain_roundtrip(server.addr).await.unwrap(),
        "plaintext ping"
    );
    assert_eq!(
        server.next().await.unwrap(),
        None,
        "plaintext carries no identity"
    );

    let client = istio_mutual(&creds(&ca, &id(TD, "b", "client"), &[]), &[sid]);
    assert_eq!(
        tls_roundtrip(&client, server.addr).await.unwrap(),
        "cluster.local/ns/b/sa/client ping"
    );
    assert_eq!(
        server.next().await.unwrap().unwrap().principal(),
        "cluster.local/ns/b/sa/client"
    );

    // TLS from a client outside the mesh is still refused on the TLS side
    let stranger = ca_other();
    let bad = raw_client(
        &stranger
            .issue(&id(TD, "b", "client"), DEFAULT_WORKLOAD_TTL, &[])
            .unwrap(),
        ca.trust_bundle(),
        ServerCheck::Spiffe(PeerPolicy::trust_domain(TD)),
    );
    assert!(bad.roundtrip(server.addr).await.is_err());
    assert_eq!(server_err(server.next().await).kind(), "unknown_issuer");
}

#[tokio::test]
async fn permissive_detection_timeout_treats_silence_as_plaintext() {
    let ca = ca();
    let inbound = InboundTls::from_credentials(
        PeerAuthnMode::Permissive,
        &creds(&ca, &id(TD, "a", "s"), &[]),
        None,
    )
    .unwrap()
    .with_detection_timeout(Some(Duration::from_millis(100)));
    let mut server = echo_server(inbound).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    // say nothing: after the timeout the server treats it as plaintext
    assert_eq!(server.next().await.unwrap(), None);
    let mut s = BufReader::new(tcp);
    assert_eq!(ask(&mut s, "late").await.unwrap(), "plaintext late");
}

#[tokio::test]
async fn disable_is_plaintext_only() {
    let ca = ca();
    let inbound = InboundTls::from_credentials(
        PeerAuthnMode::Disable,
        &creds(&ca, &id(TD, "a", "s"), &[]),
        None,
    )
    .unwrap();
    let mut server = echo_server(inbound).await;
    assert_eq!(
        plain_roundtrip(server.addr).await.unwrap(),
        "plaintext ping"
    );
    assert_eq!(server.next().await.unwrap(), None);
    // a TLS client gets no TLS server
    let client = istio_mutual(&creds(&ca, &id(TD, "b", "c"), &[]), &[]);
    let r = tokio::time::timeout(Duration::from_secs(5), tls_roundtrip(&client, server.addr))
        .await
        .unwrap();
    assert!(r.is_err());
    // and DISABLE needs no config
    assert!(InboundTls::new(PeerAuthnMode::Disable, None).is_ok());
    assert!(InboundTls::new(PeerAuthnMode::Strict, None).is_err());
}

#[tokio::test]
async fn alpn_istio_values_accepted() {
    let ca = ca();
    let server = echo_server(strict(&creds(&ca, &id(TD, "a", "s"), &[]))).await;
    let cid = id(TD, "b", "c");
    let c = creds(&ca, &cid, &[]);
    // a sidecar-like client offering only Istio's values
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::IstioMutual,
        ..Default::default()
    };
    let dest = Destination {
        host: "s.a.svc.cluster.local",
        port: 80,
        subset: Some("v1"),
        service_accounts: &[],
    };
    let ctx = ClientContext {
        workload: Some(&c),
        credentials: None,
        alpn: Alpn::None,
        opaque: false,
    };
    let out = client_config(&settings, &dest, &ctx).unwrap().unwrap();
    assert_eq!(
        out.config().alpn_protocols,
        vec![b"istio-peer-exchange".to_vec(), b"istio".to_vec()]
    );
    let tls = out
        .connect(TcpStream::connect(server.addr).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"istio-peer-exchange"[..])
    );
    // HTTP/1.1 only
    let ctx = ClientContext {
        alpn: Alpn::Http1,
        ..ctx
    };
    let out = client_config(&settings, &dest, &ctx).unwrap().unwrap();
    let tls = out
        .connect(TcpStream::connect(server.addr).await.unwrap())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

/// SIMPLE and MUTUAL origination: files, credentialName, SNI and subjectAltNames.
#[tokio::test]
async fn simple_and_mutual_origination() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root-cert.pem");
    std::fs::write(&root, ca.trust_bundle().to_pem()).unwrap();
    // an "external" server with a DNS name, which does not require client certs
    let sid = id(TD, "ext", "api");
    let scert = ca
        .issue(
            &sid,
            DEFAULT_WORKLOAD_TTL,
            &["api.example.com", "localhost"],
        )
        .unwrap();
    let server = tls_server(&scert).await;
    let dest = API;
    let ctx = ClientContext::default();

    let simple = |f: &dyn Fn(&mut ClientTlsSettings)| {
        let mut s = ClientTlsSettings {
            mode: ClientTlsMode::Simple,
            ca_certificates: Some(root.clone()),
            ..Default::default()
        };
        f(&mut s);
        s
    };
    // host name verification against dest.host
    let out = client_config(&simple(&|_| {}), &dest, &ctx)
        .unwrap()
        .unwrap();
    assert_eq!(out.server_name().to_str(), "api.example.com");
    // the server closes the connection after failing to find an identity, but the TLS
    // handshake itself succeeds from the client's side
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    out.connect(tcp)
        .await
        .expect("SIMPLE handshake with hostname verification");
    // an `sni` the cert does not have: istiod turns auto SAN validation off when `sni` is
    // set, so without `subjectAltNames` the chain alone decides (Envoy sends the SNI and
    // checks no name)
    let out = client_config(
        &simple(&|s| s.sni = Some("other.example.com".into())),
        &dest,
        &ctx,
    )
    .unwrap()
    .unwrap();
    assert_eq!(out.server_name().to_str(), "other.example.com");
    out.connect(TcpStream::connect(server.addr).await.unwrap())
        .await
        .expect("sni without subjectAltNames: the chain alone");
    // with subjectAltNames too, they decide
    let out = client_config(
        &simple(&|s| {
            s.sni = Some("other.example.com".into());
            s.subject_alt_names = vec!["other.example.com".into()];
        }),
        &dest,
        &ctx,
    )
    .unwrap()
    .unwrap();
    assert!(out
        .connect(TcpStream::connect(server.addr).await.unwrap())
        .await
        .is_err());
    // subjectAltNames: SPIFFE URI or DNS SAN match, whatever the SNI
    for (sans, ok) in [
        (vec![sid.to_string()], true),
        (vec!["localhost".to_string()], true),
        (
            vec!["spiffe://cluster.local/ns/ext/sa/other".to_string()],
            false,
        ),
    ] {
        let out = client_config(
            &simple(&|s| {
                s.subject_alt_names = sans.clone();
                s.sni = Some("whatever.internal".into())
            }),
            &dest,
            &ctx,
        )
        .unwrap()
        .unwrap();
        let r = out
            .connect(TcpStream::connect(server.addr).await.unwrap())
            .await;
        assert_eq!(r.is_ok(), ok, "{sans:?}: {r:?}");
        if !ok {
            let v = VerifyError::from_io(&r.unwrap_err()).unwrap();
            assert_eq!(v.kind(), "identity_not_allowed");
        }
    }
    // a CA that did not sign the server
    let other_root = dir.path().join("other.pem");
    std::fs::write(&other_root, ca_other().trust_bundle().to_pem()).unwrap();
    let out = client_config(
        &simple(&|s| s.ca_certificates = Some(other_root.clone())),
        &dest,
        &ctx,
    )
    .unwrap()
    .unwrap();
    let e = out
        .connect(TcpStream::connect(server.addr).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(VerifyError::from_io(&e).unwrap().kind(), "unknown_issuer");
    // insecureSkipVerify accepts it
    let out = client_config(
        &ClientTlsSettings {
            mode: ClientTlsMode::Simple,
            insecure_skip_verify: true,
            ..Default::default()
        },
        &dest,
        &ctx,
    )
    .unwrap()
    .unwrap();
    out.connect(TcpStream::connect(server.addr).await.unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn mutual_with_files_and_credential_name_through_a_strict_server() {
    let ca = ca();
    let sid = id(TD, "ext", "api");
    let server_creds = creds(&ca, &sid, &["api.example.com"]);
    let mut server = echo_server(strict(&server_creds)).await;
    let dir = tempfile::tempdir().unwrap();
    let cid = id(TD, "egress", "client");
    let client_cert = ca.issue(&cid, DEFAULT_WORKLOAD_TTL, &[]).unwrap();
    client_cert.write_dir(dir.path().join("files")).unwrap();
    let dest = API;

    // files
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::Mutual,
        client_certificate: Some(dir.path().join("files/cert-chain.pem")),
        private_key: Some(dir.path().join("files/key.pem")),
        ca_certificates: Some(dir.path().join("files/root-cert.pem")),
        ..Default::default()
    };
    let out = client_config(&settings, &dest, &ClientContext::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        tls_roundtrip(&out, server.addr).await.unwrap(),
        "cluster.local/ns/egress/sa/client ping"
    );
    assert_eq!(server.next().await.unwrap().unwrap().identity(), &cid);

    // credentialName through a directory of secrets (tls.crt / tls.key / ca.crt)
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("client-credential")).unwrap();
    std::fs::write(
        secrets.join("client-credential/tls.crt"),
        client_cert.chain_pem(),
    )
    .unwrap();
    std::fs::write(
        secrets.join("client-credential/tls.key"),
        client_cert.key_pem(),
    )
    .unwrap();
    std::fs::write(
        secrets.join("client-credential/ca.crt"),
        client_cert.root_pem(),
    )
    .unwrap();
    let lookup = DirCredentials::new(&secrets);
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::Mutual,
        credential_name: Some("client-credential".into()),
        sni: Some("api.example.com".into()),
        ..Default::default()
    };
    let ctx = ClientContext {
        workload: None,
        credentials: Some(&lookup),
        alpn: Alpn::Http1,
        opaque: false,
    };
    let out = client_config(&settings, &dest, &ctx).unwrap().unwrap();
    assert_eq!(
        tls_roundtrip(&out, server.addr).await.unwrap(),
        "cluster.local/ns/egress/sa/client ping"
    );
    assert!(server.next().await.unwrap().is_some());

    // mismatched key and certificate: refused when the config is built
    let other = ca.issue(&cid, DEFAULT_WORKLOAD_TTL, &[]).unwrap();
    std::fs::write(dir.path().join("files/key.pem"), other.key_pem()).unwrap();
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::Mutual,
        client_certificate: Some(dir.path().join("files/cert-chain.pem")),
        private_key: Some(dir.path().join("files/key.pem")),
        ca_certificates: Some(dir.path().join("files/root-cert.pem")),
        ..Default::default()
    };
    let e = client_config(&settings, &dest, &ClientContext::default()).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    // unknown credential
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::Mutual,
        credential_name: Some("nope".into()),
        ..Default::default()
    };
    assert!(client_config(&settings, &dest, &ctx).is_err());
    // a credential without roots is refused, never verified against the platform's roots
    // (istiod's SDS sends no validation context for it)
    std::fs::remove_file(secrets.join("client-credential/ca.crt")).unwrap();
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::Simple,
        credential_name: Some("client-credential".into()),
        ..Default::default()
    };
    let e = client_config(&settings, &dest, &ctx).unwrap_err();
    assert!(e.to_string().contains("has no CA certificate"), "{e}");
}

#[tokio::test]
async fn trust_domain_aliases() {
    let ca = ca();
    let sid = id(TD, "a", "server");
    let server_cert = ca.issue(&sid, DEFAULT_WORKLOAD_TTL, &[]).unwrap();
    let server_creds = WorkloadCredentials::with_trust(server_cert, None, &["old.td"]).unwrap();
    let mut server = echo_server(strict(&server_creds)).await;
    let bundle = ca.trust_bundle().clone();
    let check = ServerCheck::Spiffe(PeerPolicy::trust_domain(TD));
    let old = raw_client(
        &ca.issue(&id("old.td", "b", "c"), DEFAULT_WORKLOAD_TTL, &[])
            .unwrap(),
        &bundle,
        check.clone(),
    );
    assert_eq!(
        old.roundtrip(server.addr).await.unwrap(),
        "old.td/ns/b/sa/c ping"
    );
    assert!(server.next().await.is_ok());
    let other = raw_client(
        &ca.issue(&id("other.td", "b", "c"), DEFAULT_WORKLOAD_TTL, &[])
            .unwrap(),
        &bundle,
        check,
    );
    assert!(other.roundtrip(server.addr).await.is_err());
    assert_eq!(server_err(server.next().await).kind(), "wrong_trust_domain");
}

#[tokio::test]
async fn several_roots_in_the_bundle() {
    let ca1 = ca();
    let ca2 = ca_other();
    let sid = id(TD, "a", "server");
    let both = ca1.trust_bundle().merged(ca2.trust_bundle()).unwrap();
    let server_creds = WorkloadCredentials::with_trust(
        ca1.issue(&sid, DEFAULT_WORKLOAD_TTL, &[]).unwrap(),
        Some(&both),
        &[],
    )
    .unwrap();
    let mut server = echo_server(strict(&server_creds)).await;
    for (i, ca) in [&ca1, &ca2].into_iter().enumerate() {
        let c = raw_client(
            &ca.issue(&id(TD, "b", &format!("c{i}")), DEFAULT_WORKLOAD_TTL, &[])
                .unwrap(),
            &both,
            ServerCheck::Spiffe(PeerPolicy::trust_domain(TD)),
        );
        assert!(c.roundtrip(server.addr).await.is_ok(), "root {i}");
        assert!(server.next().await.is_ok());
    }
}

#[tokio::test]
async fn istio_sample_ca_and_workload_certs() {
    let Some(dir) = samples() else { return };
    // plug-in: the Istio sample intermediate (RSA) issues our workload certs
    let ca = MeshCa::from_plugin_dir(&dir, TD).unwrap();
    let sid = id(TD, "foo", "httpbin");
    let mut server = echo_server(strict(&creds(&ca, &sid, &[]))).await;
    let client = istio_mutual(
        &creds(&ca, &id(TD, "foo", "sleep"), &[]),
        std::slice::from_ref(&sid),
    );
    assert_eq!(
        tls_roundtrip(&client, server.addr).await.unwrap(),
        "cluster.local/ns/foo/sa/sleep ping"
    );
    assert!(server.next().await.unwrap().is_some());

    // Istio's own sample workload certificates (trust-domain-foo / trust-domain-bar, RSA,
    // leaf + intermediate), verified against Istio's bundles.
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    let foo = WorkloadCert::from_pem(
        &read("workload-foo-cert.pem"),
        &read("workload-foo-key.pem"),
        &read("workload-foo-root-certs.pem"),
    )
    .unwrap();
    let bar = WorkloadCert::from_pem(
        &read("workload-bar-cert.pem"),
        &read("workload-bar-key.pem"),
        &read("workload-bar-root-certs.pem"),
    )
    .unwrap();
    assert_eq!(foo.identity().principal(), "trust-domain-foo/ns/foo/sa/foo");
    assert_eq!(
        bar.identity().as_uri(),
        "spiffe://trust-domain-bar/ns/bar/sa/bar"
    );
    let foo_creds = WorkloadCredentials::new(foo.clone()).unwrap();
    let mut foo_server = echo_server(strict(&foo_creds)).await;
    // bar -> foo: trusted chain, but foo accepts only trust-domain-foo
    let bar_bundle = bar.trust_bundle().unwrap();
    let bar_client = raw_client(
        &bar,
        &bar_bundle,
        ServerCheck::Spiffe(PeerPolicy::trust_domain("trust-domain-foo")),
    );
    let trusted_by_foo = foo_creds.trust_bundle().contains_all(&bar_bundle);
    assert!(bar_client.roundtrip(foo_server.addr).await.is_err());
    let err = server_err(foo_server.next().await);
    if trusted_by_foo {
        assert_eq!(err.kind(), "wrong_trust_domain", "{err}");
    } else {
        assert!(
            matches!(err.kind(), "wrong_trust_domain" | "unknown_issuer"),
            "{err}"
        );
    }
    // foo -> foo: accepted, identity read from Istio's cert
    let foo_client = raw_client(
        &foo,
        &foo.trust_bundle().unwrap(),
        ServerCheck::Spiffe(PeerPolicy::trust_domain("trust-domain-foo")),
    );
    assert_eq!(
        foo_client.roundtrip(foo_server.addr).await.unwrap(),
        "trust-domain-foo/ns/foo/sa/foo ping"
    );
    // a foo server accepting the bar trust domain as an alias accepts bar
    let foo_alias =
        WorkloadCredentials::with_trust(foo, Some(&bar_bundle), &["trust-domain-bar"]).unwrap();
    let mut alias_server = echo_server(strict(&foo_alias)).await;
    let _ = foo_server.next().await;
    assert_eq!(
        bar_client.roundtrip(alias_server.addr).await.unwrap(),
        "trust-domain-bar/ns/bar/sa/bar ping"
    );
    assert!(alias_server.next().await.unwrap().is_some());
}

#[tokio::test]
async fn simple_without_ca_certificates_uses_os_roots() {
    let ca = ca();
    let server = echo_server(strict(&creds(&ca, &id(TD, "a", "s"), &["localhost"]))).await;
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::Simple,
        ..Default::default()
    };
    let dest = Destination {
        host: "localhost",
        port: 443,
        subset: None,
        service_accounts: &[],
    };
    let out = match client_config(&settings, &dest, &ClientContext::default()) {
        Ok(out) => out.unwrap(),
        Err(e) => {
            eprintln!("skipped: no OS root certificates on this machine: {e}");
            return;
        }
    };
    // the mesh root is not an OS root: refused as an unknown issuer
    let e = out
        .connect(TcpStream::connect(server.addr).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        VerifyError::from_io(&e).unwrap().kind(),
        "unknown_issuer",
        "{e}"
    );
}

#[tokio::test]
async fn two_spiffe_ids_in_one_certificate_are_refused() {
    // An X.509 SVID carries exactly one SPIFFE ID: a certificate with two is ambiguous and
    // refused, whatever the policy.
    use rcgen_free::two_uri_cert;
    let ca = ca();
    let server = creds(&ca, &id(TD, "a", "s"), &[]);
    let mut srv = echo_server(strict(&server)).await;
    let (chain, key) = two_uri_cert(&ca);
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(
            MeshServerCertVerifier::new(
                ca.trust_bundle(),
                ServerCheck::Spiffe(PeerPolicy::trust_domain(TD)),
            )
            .unwrap(),
        )
        .with_client_auth_cert(chain, key)
        .unwrap();
    assert!(OutboundTlsRaw(Arc::new(cfg))
        .roundtrip(srv.addr)
        .await
        .is_err());
    assert_eq!(server_err(srv.next().await).kind(), "no_spiffe_identity");
}

/// A certificate our CA would never issue (two SPIFFE IDs), made with rcgen directly from
/// the CA's files, as a third-party CA could.
mod rcgen_free {
    use super::*;

    pub(super) fn two_uri_cert(
        ca: &MeshCa,
    ) -> (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        // Write the CA to disk and load its key with rcgen, as a plug-in user would.
        let dir = tempfile::tempdir().unwrap();
        ca.write_dir(dir.path()).unwrap();
        let ca_cert = std::fs::read_to_string(dir.path().join("ca-cert.pem")).unwrap();
        let ca_key = std::fs::read_to_string(dir.path().join("ca-key.pem")).unwrap();
        let key = rcgen::KeyPair::from_pem(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert, key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.subject_alt_names = vec![
            rcgen::SanType::URI("spiffe://cluster.local/ns/a/sa/one".try_into().unwrap()),
            rcgen::SanType::URI("spiffe://cluster.local/ns/a/sa/two".try_into().unwrap()),
        ];
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let cert = p.signed_by(&leaf_key, &issuer).unwrap();
        (
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
    }
}

/// A rustls client speaking TLS 1.2 only, checking the server is `server`, presenting
/// `cert` (or no certificate).
fn tls12_client(ca: &MeshCa, server: &Identity, cert: Option<&WorkloadCert>) -> OutboundTlsRaw {
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(
            MeshServerCertVerifier::new(
                ca.trust_bundle(),
                ServerCheck::Spiffe(PeerPolicy::trust_domain(TD).allow_only([server.clone()])),
            )
            .unwrap(),
        );
    let cfg = match cert {
        Some(c) => b
            .with_client_auth_cert(c.chain_der().unwrap(), c.key_der().unwrap())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    OutboundTlsRaw(Arc::new(cfg))
}

#[tokio::test]
async fn tls12_clients_work_and_fail_the_same_way() {
    let ca = ca();
    let sid = id(TD, "a", "server");
    let mut server = echo_server(strict(&creds(&ca, &sid, &[]))).await;
    let tls12 = |cert: Option<&WorkloadCert>| tls12_client(&ca, &sid, cert);
    let good = ca
        .issue(&id(TD, "b", "c"), DEFAULT_WORKLOAD_TTL, &[])
        .unwrap();
    assert_eq!(
        tls12(Some(&good)).roundtrip(server.addr).await.unwrap(),
        "cluster.local/ns/b/sa/c ping"
    );
    assert!(server.next().await.unwrap().is_some());
    assert!(tls12(None).roundtrip(server.addr).await.is_err());
    assert_eq!(
        server_err(server.next().await),
        VerifyError::NoClientCertificate
    );
    let evil = ca
        .issue(&id("evil.org", "b", "c"), DEFAULT_WORKLOAD_TTL, &[])
        .unwrap();
    assert!(tls12(Some(&evil)).roundtrip(server.addr).await.is_err());
    assert_eq!(server_err(server.next().await).kind(), "wrong_trust_domain");
}

/// MeshConfig `meshMTLS.minProtocolVersion: TLSV1_3` (servers only, as istiod applies it):
/// a mesh server refuses a TLS 1.2 client with a good certificate and speaks TLS 1.3 to the
/// mesh's own client.
#[tokio::test]
async fn a_tls13_only_mesh_server_refuses_tls12_clients() {
    let ca = ca();
    let sid = id(TD, "a", "server");
    let cid = id(TD, "b", "c");
    let server_creds = creds(&ca, &sid, &[]);
    let client_cert = ca.issue(&cid, DEFAULT_WORKLOAD_TTL, &[]).unwrap();
    let tls12 = tls12_client(&ca, &sid, Some(&client_cert));
    let only13 = InboundTls::new(
        PeerAuthnMode::Strict,
        Some(server_creds.server_config_versions(None, true).unwrap()),
    )
    .unwrap();
    let mut server = echo_server(only13).await;
    assert!(tls12.roundtrip(server.addr).await.is_err());
    assert!(server.next().await.is_err());
    // the mesh's own client speaks TLS 1.3 to it
    let client_creds = creds(&ca, &cid, &[]);
    let client = istio_mutual(&client_creds, std::slice::from_ref(&sid));
    let tls = client
        .connect(TcpStream::connect(server.addr).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    drop(tls);
}

/// `caCrl` on SIMPLE origination, as Envoy checks a CRL: a revoked server certificate, a
/// chain whose CA has no CRL among those given (another CA's), and a CRL past its
/// `nextUpdate` all fail the handshake; a CRL from the server's CA that does not list it
/// lets it through. Both verifiers check it: the stock one (host name) and the
/// `subjectAltNames` one.
#[tokio::test]
async fn simple_origination_checks_ca_crl() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root-cert.pem");
    std::fs::write(&root, ca.trust_bundle().to_pem()).unwrap();
    let sid = id(TD, "ext", "api");
    let scert = ca
        .issue(&sid, DEFAULT_WORKLOAD_TTL, &["api.example.com"])
        .unwrap();
    let other = ca
        .issue(&id(TD, "ext", "other"), DEFAULT_WORKLOAD_TTL, &[])
        .unwrap();
    let server = tls_server(&scert).await;
    let dest = API;
    let write = |name: &str, pem: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let hour = Duration::from_secs(3600);
    let good = write("good.crl", ca.revocation_list(&[&other], hour).unwrap());
    let revoked = write(
        "revoked.crl",
        ca.revocation_list(&[&other, &scert], hour).unwrap(),
    );
    // another CA's list: no CRL for the server's CA
    let foreign = write(
        "foreign.crl",
        MeshCa::self_signed("other.example")
            .unwrap()
            .revocation_list(&[], hour)
            .unwrap(),
    );
    // a list naming the server's CA as issuer, signed by another key
    let forged = write("forged.crl", ca_other().revocation_list(&[], hour).unwrap());
    let short = write(
        "short.crl",
        ca.revocation_list(&[], Duration::from_secs(1)).unwrap(),
    );
    let connect = |crl: &std::path::Path, sans: Vec<String>| {
        let settings = ClientTlsSettings {
            mode: ClientTlsMode::Simple,
            ca_certificates: Some(root.clone()),
            ca_crl: Some(crl.to_path_buf()),
            subject_alt_names: sans,
            ..Default::default()
        };
        let out = client_config(&settings, &dest, &ClientContext::default())
            .unwrap()
            .unwrap();
        let addr = server.addr;
        async move { out.connect(TcpStream::connect(addr).await.unwrap()).await }
    };
    for sans in [vec![], vec![sid.to_string()]] {
        let which = if sans.is_empty() { "host name" } else { "SANs" };
        connect(&good, sans.clone())
            .await
            .unwrap_or_else(|e| panic!("{which}: a CRL not listing the server: {e}"));
        let e = connect(&revoked, sans.clone()).await.unwrap_err();
        assert!(e.to_string().contains("evoked"), "{which}: {e}");
        let e = connect(&foreign, sans.clone()).await.unwrap_err();
        assert!(
            e.to_string().contains("UnknownRevocationStatus")
                || e.to_string().contains("revocation status unknown"),
            "{which}: {e}"
        );
        let e = connect(&forged, sans.clone()).await.unwrap_err();
        assert!(e.to_string().contains("BadSignature"), "{which}: {e}");
    }
    // past its nextUpdate
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for sans in [vec![], vec![sid.to_string()]] {
        let e = connect(&short, sans).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("certificate revocation list expired")
                || e.to_string().contains("revocation list has expired"),
            "{e}"
        );
    }
    // a caCrl that is not a CRL, or missing: the config is refused, nothing is sent
    for bad in [root.clone(), dir.path().join("missing.crl")] {
        let settings = ClientTlsSettings {
            mode: ClientTlsMode::Simple,
            ca_certificates: Some(root.clone()),
            ca_crl: Some(bad.clone()),
            ..Default::default()
        };
        assert!(
            client_config(&settings, &dest, &ClientContext::default()).is_err(),
            "{bad:?}"
        );
    }
}

/// `caCrl` checks the whole chain, as Envoy: with root -> intermediate (the CA that signs
/// the server), a list from the intermediate alone leaves the intermediate's status unknown
/// (refused); with the root's list too it passes; a root list revoking the intermediate
/// refuses the server though its own certificate is listed nowhere.
#[tokio::test]
async fn ca_crl_checks_every_certificate_of_the_chain() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
        DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
        SerialNumber,
    };
    let ca_params = |cn: &str| {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
        p.not_after = (SystemTime::now() + Duration::from_secs(86_400)).into();
        p
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("Root CA");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().unwrap();
    let mut int_params = ca_params("Intermediate CA");
    int_params.serial_number = Some(SerialNumber::from(0x1234_u64));
    let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let ca = MeshCa::from_plugin_pem(
        int.pem().as_bytes(),
        int_key.serialize_pem().as_bytes(),
        root.pem().as_bytes(),
        None,
        TD,
    )
    .unwrap();
    let root_list = |revoked: Vec<RevokedCertParams>| {
        CertificateRevocationListParams {
            this_update: (SystemTime::now() - Duration::from_secs(60)).into(),
            next_update: (SystemTime::now() + Duration::from_secs(3600)).into(),
            crl_number: SerialNumber::from(1_u64),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&root_issuer)
        .unwrap()
        .pem()
        .unwrap()
    };
    let int_revoked = RevokedCertParams {
        serial_number: SerialNumber::from(0x1234_u64),
        revocation_time: SystemTime::now().into(),
        reason_code: None,
        invalidity_date: None,
    };

    let scert = ca
        .issue(
            &id(TD, "ext", "api"),
            DEFAULT_WORKLOAD_TTL,
            &["api.example.com"],
        )
        .unwrap();
    assert_eq!(scert.chain_der().unwrap().len(), 2, "leaf and intermediate");
    let server = tls_server(&scert).await;
    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("root.pem");
    std::fs::write(&root_file, root.pem()).unwrap();
    let int_crl = ca.revocation_list(&[], Duration::from_secs(3600)).unwrap();
    let dest = API;
    for (name, crls, ok) in [
        ("intermediate's list only", int_crl.clone(), false),
        (
            "both lists",
            format!("{int_crl}{}", root_list(vec![])),
            true,
        ),
        (
            "the root revokes the intermediate",
            format!("{int_crl}{}", root_list(vec![int_revoked.clone()])),
            false,
        ),
    ] {
        let crl_file = dir.path().join("ca.crl");
        std::fs::write(&crl_file, crls).unwrap();
        for sans in [vec![], vec!["api.example.com".to_string()]] {
            let settings = ClientTlsSettings {
                mode: ClientTlsMode::Simple,
                ca_certificates: Some(root_file.clone()),
                ca_crl: Some(crl_file.clone()),
                subject_alt_names: sans.clone(),
                ..Default::default()
            };
            let out = client_config(&settings, &dest, &ClientContext::default())
                .unwrap()
                .unwrap();
            let r = out
                .connect(TcpStream::connect(server.addr).await.unwrap())
                .await;
            assert_eq!(r.is_ok(), ok, "{name}, SANs {sans:?}: {r:?}");
        }
    }
}

/// The "external" destination of the origination tests.
const API: Destination<'static> = Destination {
    host: "api.example.com",
    port: 443,
    subset: None,
    service_accounts: &[],
};

/// A plain TLS server (no client certificate asked) presenting `cert`: an InboundTls in
/// STRICT mode with a no-client-auth config, as an "external" server.
async fn tls_server(cert: &WorkloadCert) -> EchoServer {
    let server_cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
        .unwrap();
    echo_server(
        InboundTls::new(PeerAuthnMode::Strict, Some(Arc::new(server_cfg)))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await
}
