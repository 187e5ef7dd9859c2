//! A MUTUAL gateway server's extra client-certificate checks, as Envoy applies Istio's
//! `subjectAltNames`, `verifyCertificateSpki` and `verifyCertificateHash`: a client whose
//! certificate chains to the CA but fails them gets no connection. The expected hashes
//! are computed with `openssl` and `sha256sum`, not with the gateway's code (skipped with
//! a note when openssl is missing).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use mesh_core::mesh::Mesh;
use mesh_tls::rustls;
use mesh_tls::{Credential, Identity, MeshCa};
use mesh_tower::gateway::{GatewayError, GatewayServer};
use tokio::net::TcpListener;

mod secrets_support;
use secrets_support::Secrets;

fn have_openssl() -> bool {
    Command::new("openssl").arg("version").output().is_ok()
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The SHA-256 of a PEM certificate's DER, hex in Istio's colon form (`DF:6F:...`).
fn cert_hash(dir: &Path, pem_file: &str) -> String {
    let hex = sh(
        dir,
        &format!("openssl x509 -in {pem_file} -outform DER | sha256sum | cut -d' ' -f1"),
    );
    hex.as_bytes()
        .chunks(2)
        .map(|p| std::str::from_utf8(p).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// The base64 SHA-256 of a PEM certificate's SubjectPublicKeyInfo (Envoy's documented
/// recipe).
fn spki_hash(dir: &Path, pem_file: &str) -> String {
    sh(
        dir,
        &format!(
            "openssl x509 -in {pem_file} -noout -pubkey | openssl pkey -pubin -outform DER \
             | openssl dgst -sha256 -binary | openssl enc -base64"
        ),
    )
}

const HOSTS: [&str; 3] = ["san.example.com", "hash.example.com", "spki.example.com"];

fn gateway_yaml(hash: &str, spki: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https-san, protocol: HTTPS}}
    hosts: [san.example.com]
    tls:
      mode: MUTUAL
      credentialName: gw-cred
      subjectAltNames: [spiffe://cluster.local/ns/default/sa/sleep]
  - port: {{number: 443, name: https-hash, protocol: HTTPS}}
    hosts: [hash.example.com]
    tls:
      mode: MUTUAL
      credentialName: gw-cred
      verifyCertificateHash: ["{hash}"]
  - port: {{number: 443, name: https-spki, protocol: HTTPS}}
    hosts: [spki.example.com]
    tls:
      mode: MUTUAL
      credentialName: gw-cred
      verifyCertificateSpki: ["{spki}"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: direct, namespace: istio-system}}
spec:
  hosts: [san.example.com, hash.example.com, spki.example.com]
  gateways: [gw]
  http:
  - directResponse: {{status: 200, body: {{string: "through"}}}}
"#
    )
}

/// GET over TLS to the gateway with SNI `host` and a client certificate: the status, or
/// `None` when the handshake (or the first read) fails.
async fn get(gw: SocketAddr, ca: &MeshCa, host: &str, client: &(String, String)) -> Option<u16> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca.trust_bundle().certs() {
        roots.add(c.clone()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            mesh_tls::certs_from_pem("client", client.0.as_bytes()).unwrap(),
            mesh_tls::key_from_pem("client", client.1.as_bytes()).unwrap(),
        )
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap(),
            tcp,
        )
        .await
        .ok()?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    // TLS 1.3: a client certificate refused by the server surfaces on the first read
    let resp = tx.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some(status)
}

#[tokio::test]
async fn subject_alt_names_spki_and_hash_pin_client_certificates() {
    if !have_openssl() {
        eprintln!("skipped: openssl is needed to compute the expected hashes");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let issue = |sa: &str, dns: &[&str]| {
        let id = Identity::new("cluster.local", "default", sa).unwrap();
        let cert = ca.issue(&id, Duration::from_secs(3600), dns).unwrap();
        std::fs::write(dir.join(format!("{sa}.pem")), cert.chain_pem()).unwrap();
        (cert.chain_pem().to_owned(), cert.key_pem().to_owned())
    };
    let sleep = issue("sleep", &[]);
    let web = issue("web", &["web.example.com"]);
    // openssl reads the first certificate of the chain: the leaf
    let sleep_hash = cert_hash(dir, "sleep.pem");
    let web_spki = spki_hash(dir, "web.pem");

    let gw_id = Identity::new("cluster.local", "istio-system", "istio-ingressgateway").unwrap();
    let gw_cert = ca.issue(&gw_id, Duration::from_secs(3600), &HOSTS).unwrap();
    let mut secrets = Secrets::default();
    secrets.0.insert(
        "gw-cred".into(),
        Credential {
            cert_chain_pem: Some(gw_cert.chain_pem().to_owned()),
            key_pem: Some(gw_cert.key_pem().to_owned()),
            crl_pem: None,
            ca_pem: Some(ca.trust_bundle().to_pem()),
        },
    );
    let secrets = Arc::new(secrets);
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let mesh = Mesh::from_yaml(&gateway_yaml(&sleep_hash, &web_spki)).unwrap();
    let gw = GatewayServer::builder(mesh, "istio-system", labels.clone())
        .credentials(secrets.clone())
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(443).unwrap();

    // subjectAltNames: sleep's SPIFFE URI SAN passes, web (same CA) does not
    assert_eq!(get(addr, &ca, "san.example.com", &sleep).await, Some(200));
    assert_eq!(get(addr, &ca, "san.example.com", &web).await, None);
    // verifyCertificateHash: sleep's certificate only (colon-separated upper-case hex)
    assert_eq!(get(addr, &ca, "hash.example.com", &sleep).await, Some(200));
    assert_eq!(get(addr, &ca, "hash.example.com", &web).await, None);
    // verifyCertificateSpki: web's key only
    assert_eq!(get(addr, &ca, "spki.example.com", &web).await, Some(200));
    assert_eq!(get(addr, &ca, "spki.example.com", &sleep).await, None);

    // a pin that is not a SHA-256 in its encoding: the server is refused at start
    let bad = Mesh::from_yaml(&gateway_yaml(&sleep_hash, "not-base64!")).unwrap();
    let err = GatewayServer::builder(bad, "istio-system", labels)
        .credentials(secrets)
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GatewayError::Server { message, .. } if message.contains("verifyCertificateSpki")),
        "{err}"
    );
}

/// A MUTUAL server whose credential carries a CRL (`ca.crl`, a Kubernetes TLS secret's
/// key; `crl` in a generic one): a client certificate the CRL lists gets no connection,
/// the others do, as Envoy checks the credential's CRL. A CRL that cannot be read fails
/// closed: no client gets through.
#[tokio::test]
async fn a_credential_crl_refuses_revoked_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let issue = |sa: &str| {
        let id = Identity::new("cluster.local", "default", sa).unwrap();
        ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()
    };
    let (stolen, good) = (issue("stolen"), issue("sleep"));
    let pair = |c: &mesh_tls::WorkloadCert| (c.chain_pem().to_owned(), c.key_pem().to_owned());
    let gw_id = Identity::new("cluster.local", "istio-system", "istio-ingressgateway").unwrap();
    let gw_cert = ca
        .issue(&gw_id, Duration::from_secs(3600), &["crl.example.com"])
        .unwrap();
    let write_cred = |name: &str, crl: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tls.crt"), gw_cert.chain_pem()).unwrap();
        std::fs::write(d.join("tls.key"), gw_cert.key_pem()).unwrap();
        std::fs::write(d.join("ca.crt"), ca.trust_bundle().to_pem()).unwrap();
        std::fs::write(d.join("ca.crl"), crl).unwrap();
    };
    write_cred(
        "with-crl",
        &ca.revocation_list(&[&stolen], Duration::from_secs(3600))
            .unwrap(),
    );
    write_cred("bad-crl", "not a CRL");
    let yaml = |cred: &str| {
        format!(
            r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [crl.example.com]
    tls: {{mode: MUTUAL, credentialName: {cred}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: direct, namespace: istio-system}}
spec:
  hosts: [crl.example.com]
  gateways: [gw]
  http:
  - directResponse: {{status: 200, body: {{string: "through"}}}}
"#
        )
    };
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let start = |cred: &str, listener: TcpListener| {
        let mesh = Mesh::from_yaml(&yaml(cred)).unwrap();
        GatewayServer::builder(mesh, "istio-system", labels.clone())
            .credential_dir(tmp.path())
            .listener(443, listener)
            .start()
    };
    let listen = || TcpListener::bind("127.0.0.1:0");
    let gw = start("with-crl", listen().await.unwrap()).await.unwrap();
    let addr = gw.local_addr(443).unwrap();
    assert_eq!(
        get(addr, &ca, "crl.example.com", &pair(&good)).await,
        Some(200)
    );
    assert_eq!(
        get(addr, &ca, "crl.example.com", &pair(&stolen)).await,
        None,
        "a revoked certificate"
    );
    // a CRL that cannot be read: the server is refused, not served unchecked
    let err = start("bad-crl", listen().await.unwrap()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("credentialName \"bad-crl\" CRL: no X509 CRL block found"),
        "{err}"
    );
}

/// A client chain through an intermediate CA whose key usage lacks `keyCertSign` gets no
/// connection from a MUTUAL server, as Envoy's BoringSSL refuses it (webpki alone would
/// take it); the same chain through a CA allowed to sign gets in.
#[tokio::test]
async fn a_client_chain_through_a_ca_without_key_cert_sign_is_refused() {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let ca_params = |cn: &str, usages: Vec<KeyUsagePurpose>| {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = usages;
        p
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("Root CA", vec![KeyUsagePurpose::KeyCertSign]);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_key_pem = root_key.serialize_pem();
    let root_issuer = Issuer::new(root_params, root_key);
    // a client chain (leaf, intermediate) through an intermediate with `usages`
    let client = |usages: Vec<KeyUsagePurpose>| {
        let int_key = KeyPair::generate().unwrap();
        let int_params = ca_params("Intermediate CA", usages);
        let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
        let int_issuer = Issuer::new(int_params, int_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(
            "spiffe://cluster.local/ns/default/sa/sleep"
                .try_into()
                .unwrap(),
        )];
        let leaf = p.signed_by(&leaf_key, &int_issuer).unwrap();
        (
            format!("{}{}", leaf.pem(), int.pem()),
            leaf_key.serialize_pem(),
        )
    };
    // the gateway's certificate from the same root
    let ca = MeshCa::from_plugin_pem(
        root.pem().as_bytes(),
        root_key_pem.as_bytes(),
        root.pem().as_bytes(),
        None,
        "cluster.local",
    )
    .unwrap();
    let gw_id = Identity::new("cluster.local", "istio-system", "istio-ingressgateway").unwrap();
    let gw_cert = ca
        .issue(&gw_id, Duration::from_secs(3600), &["ku.example.com"])
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("gw-cred");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("tls.crt"), gw_cert.chain_pem()).unwrap();
    std::fs::write(d.join("tls.key"), gw_cert.key_pem()).unwrap();
    std::fs::write(d.join("ca.crt"), root.pem()).unwrap();
    let mesh = Mesh::from_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [ku.example.com]
    tls: {mode: MUTUAL, credentialName: gw-cred}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct, namespace: istio-system}
spec:
  hosts: [ku.example.com]
  gateways: [gw]
  http:
  - directResponse: {status: 200, body: {string: "through"}}
"#,
    )
    .unwrap();
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let gw = GatewayServer::builder(mesh, "istio-system", labels)
        .credential_dir(tmp.path())
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(443).unwrap();
    let allowed = client(vec![KeyUsagePurpose::KeyCertSign]);
    assert_eq!(get(addr, &ca, "ku.example.com", &allowed).await, Some(200));
    let not_a_signer = client(vec![KeyUsagePurpose::DigitalSignature]);
    assert_eq!(get(addr, &ca, "ku.example.com", &not_a_signer).await, None);
}
