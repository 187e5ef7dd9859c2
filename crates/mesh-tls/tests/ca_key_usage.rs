//! A chain through a CA certificate whose key usage lacks `keyCertSign` is refused, as
//! Envoy's BoringSSL refuses it ("key usage does not include certificate signing"), on a
//! mesh server (the client's chain), on a mesh client (the server's chain) and when such a
//! CA is plugged in; webpki alone does not check an issuer's key usage.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use mesh_tls::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

const TD: &str = "cluster.local";

fn ca_params(cn: &str, usages: Vec<KeyUsagePurpose>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Istio");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = usages;
    p.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
    p.not_after = (SystemTime::now() + Duration::from_secs(86_400)).into();
    p
}

/// A root (PEM) and its key; an intermediate CA with `intermediate_usages` below it, and
/// below that a workload chain (leaf for `sa` in namespace `b`, then the intermediate) and
/// a signing CA.
struct Pki {
    root_pem: String,
    root_key: String,
    chain_pem: String,
    leaf_key: String,
    intermediate_pem: String,
    /// A CA signed by the intermediate (a plug-in CA's `ca-cert.pem`), and its key.
    signing_pem: String,
    signing_key: String,
}

fn pki(intermediate_usages: Vec<KeyUsagePurpose>, sa: &str) -> Pki {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params(
        "Root CA",
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
    );
    let root = root_params.self_signed(&root_key).unwrap();
    let root_pem = root.pem();
    let root_issuer = Issuer::new(
        root_params,
        KeyPair::from_pem(&root_key.serialize_pem()).unwrap(),
    );
    let int_key = KeyPair::generate().unwrap();
    let int_params = ca_params("Intermediate CA", intermediate_usages);
    let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    let signing_key = KeyPair::generate().unwrap();
    let signing = ca_params(
        "Istio CA",
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
    )
    .signed_by(&signing_key, &int_issuer)
    .unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![
        SanType::URI(format!("spiffe://{TD}/ns/b/sa/{sa}").try_into().unwrap()),
        SanType::DnsName("api.example.com".try_into().unwrap()),
    ];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = (SystemTime::now() - Duration::from_secs(60)).into();
    p.not_after = (SystemTime::now() + Duration::from_secs(3600)).into();
    let leaf = p.signed_by(&leaf_key, &int_issuer).unwrap();
    Pki {
        root_pem,
        root_key: root_key.serialize_pem(),
        chain_pem: format!("{}{}", leaf.pem(), int.pem()),
        leaf_key: leaf_key.serialize_pem(),
        intermediate_pem: int.pem(),
        signing_pem: signing.pem(),
        signing_key: signing_key.serialize_pem(),
    }
}

/// The root of `pki` as a mesh CA issuing directly: credentials for `b/server` trusting it.
fn root_ca(pki: &Pki) -> MeshCa {
    MeshCa::from_plugin_pem(
        pki.root_pem.as_bytes(),
        pki.root_key.as_bytes(),
        pki.root_pem.as_bytes(),
        None,
        TD,
    )
    .unwrap()
}

fn chain_creds(pki: &Pki) -> std::sync::Arc<WorkloadCredentials> {
    let cert = WorkloadCert::from_pem(&pki.chain_pem, &pki.leaf_key, &pki.root_pem).unwrap();
    WorkloadCredentials::new(cert).unwrap()
}

fn refused_for_key_usage(e: &std::io::Error) {
    let v = VerifyError::from_io(e).unwrap_or_else(|| panic!("not a verification error: {e}"));
    assert_eq!(v.kind(), "invalid_certificate", "{v}");
    assert!(v.to_string().contains("keyCertSign"), "{v}");
}

#[tokio::test]
async fn a_server_refuses_a_client_chain_through_a_ca_without_key_cert_sign() {
    for (usages, ok) in [
        (vec![KeyUsagePurpose::DigitalSignature], false),
        (
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            true,
        ),
        // no key usage at all: any use, as RFC 5280 and BoringSSL read it
        (vec![], true),
    ] {
        let pki = pki(usages.clone(), "client");
        let ca = root_ca(&pki);
        let server_id = id(TD, "b", "server");
        let mut server = echo_server(strict(&creds(&ca, &server_id, &[]))).await;
        let client = istio_mutual(&chain_creds(&pki), &[server_id]);
        let got = tls_roundtrip(&client, server.addr).await;
        let seen = server.next().await;
        if ok {
            assert_eq!(
                got.unwrap(),
                "cluster.local/ns/b/sa/client ping",
                "{usages:?}"
            );
            assert!(seen.is_ok(), "{usages:?}");
        } else {
            assert!(got.is_err(), "{usages:?}");
            refused_for_key_usage(&seen.unwrap_err());
        }
    }
}

#[tokio::test]
async fn a_client_refuses_a_server_chain_through_a_ca_without_key_cert_sign() {
    let pki = pki(vec![KeyUsagePurpose::DigitalSignature], "server");
    let ca = root_ca(&pki);
    let _server = echo_server(strict(&chain_creds(&pki))).await;
    let client = istio_mutual(&creds(&ca, &id(TD, "b", "client"), &[]), &[]);
    let e = tls_roundtrip(&client, _server.addr).await.unwrap_err();
    refused_for_key_usage(&e);
}

#[test]
fn a_plugged_in_chain_through_a_ca_without_key_cert_sign_is_refused() {
    for (usages, ok) in [
        (vec![KeyUsagePurpose::DigitalSignature], false),
        (vec![KeyUsagePurpose::KeyCertSign], true),
    ] {
        let pki = pki(usages.clone(), "x");
        // Istio's layout: the signing CA, then the CAs above it, then the root
        let chain = format!(
            "{}{}{}",
            pki.signing_pem, pki.intermediate_pem, pki.root_pem
        );
        let plugged = MeshCa::from_plugin_pem(
            pki.signing_pem.as_bytes(),
            pki.signing_key.as_bytes(),
            pki.root_pem.as_bytes(),
            Some(chain.as_bytes()),
            TD,
        );
        match plugged {
            Ok(_) => assert!(ok, "{usages:?} accepted"),
            Err(e) => {
                assert!(!ok, "{usages:?}: {e}");
                let e = e.to_string();
                assert!(
                    e.contains("cert-chain.pem") && e.contains("keyCertSign"),
                    "{e}"
                );
            }
        }
    }
}

/// DestinationRule `SIMPLE` with `caCertificates` and no `subjectAltNames` (the stock
/// verifier with the host's name checked) refuses such a server chain too.
#[tokio::test]
async fn a_simple_origination_refuses_a_server_chain_through_a_ca_without_key_cert_sign() {
    for (usages, ok) in [
        (vec![KeyUsagePurpose::DigitalSignature], false),
        (vec![KeyUsagePurpose::KeyCertSign], true),
    ] {
        let pki = pki(usages.clone(), "server");
        let server = echo_server(strict(&chain_creds(&pki))).await;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root-cert.pem");
        std::fs::write(&root, &pki.root_pem).unwrap();
        let settings = ClientTlsSettings {
            mode: ClientTlsMode::Simple,
            ca_certificates: Some(root),
            ..Default::default()
        };
        let dest = Destination {
            host: "api.example.com",
            port: 443,
            subset: None,
            service_accounts: &[],
        };
        let out = client_config(&settings, &dest, &ClientContext::default())
            .unwrap()
            .unwrap();
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        match out.connect(tcp).await {
            Ok(_) => assert!(ok, "{usages:?} accepted"),
            Err(e) => {
                assert!(!ok, "{usages:?}: {e}");
                refused_for_key_usage(&e);
            }
        }
    }
}
