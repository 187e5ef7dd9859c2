//! Certificate rotation under steady load: no request fails, open connections are not cut,
//! and new handshakes see the new certificate.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mesh_tls::*;
use tokio::io::BufReader;
use tokio::net::TcpStream;

const TD: &str = "cluster.local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_across_rotations_has_no_failures() {
    let ca = Arc::new(MeshCa::self_signed(TD).unwrap());
    let sid = id(TD, "default", "httpbin");
    let cid = id(TD, "default", "sleep");
    // Short certificates renewed early (30% of life, leaving a margin for a loaded CI
    // machine): several rotations in the test window. The default (half life) is
    // covered by the unit tests of the renewal time.
    let source =
        |ttl| -> Arc<dyn CertificateSource> { Arc::new(CaSource::new(ca.clone()).with_ttl(ttl)) };
    let early = || RotationOptions {
        renew_at_fraction: 0.3,
        ..Default::default()
    };
    let server = CertManager::start(sid.clone(), source(Duration::from_secs(4)), early())
        .await
        .unwrap();
    let client = CertManager::start(cid.clone(), source(Duration::from_secs(5)), early())
        .await
        .unwrap();
    // Configs are built once, before the load, and never rebuilt.
    let inbound =
        InboundTls::from_credentials(PeerAuthnMode::Strict, server.credentials(), None).unwrap();
    let srv = echo_server(inbound).await;
    let addr = srv.addr;
    let _srv = srv;
    let out = Arc::new(istio_mutual(
        client.credentials(),
        std::slice::from_ref(&sid),
    ));

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let server_certs = Arc::new(Mutex::new(HashSet::new()));
    let deadline = Instant::now() + Duration::from_secs(7);

    // Long-lived connections, opened before the first rotation, used throughout.
    let mut long_lived = Vec::new();
    for _ in 0..2 {
        let out = out.clone();
        let failed = failed.clone();
        long_lived.push(tokio::spawn(async move {
            let tls = out
                .connect(TcpStream::connect(addr).await.unwrap())
                .await
                .unwrap();
            let mut s = BufReader::new(tls);
            let mut n = 0u64;
            while Instant::now() < deadline {
                match ask(&mut s, "keepalive").await {
                    Ok(r) if r == "cluster.local/ns/default/sa/sleep keepalive" => n += 1,
                    other => {
                        eprintln!("long-lived connection failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        return n;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        }));
    }

    // New connections, back to back, from 4 tasks.
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (out, ok, failed, certs) = (
            out.clone(),
            ok.clone(),
            failed.clone(),
            server_certs.clone(),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let r = async {
                    let tls = out.connect(TcpStream::connect(addr).await?).await?;
                    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                    let mut s = BufReader::new(tls);
                    let reply = ask(&mut s, "ping").await?;
                    Ok::<_, std::io::Error>((leaf, reply))
                }
                .await;
                match r {
                    Ok((leaf, reply)) if reply == "cluster.local/ns/default/sa/sleep ping" => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        certs.lock().unwrap().insert(leaf.to_vec());
                    }
                    other => {
                        eprintln!("request failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let mut kept = 0;
    for l in long_lived {
        kept += l.await.unwrap();
    }
    let ok = ok.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    let distinct = server_certs.lock().unwrap().len();
    eprintln!(
        "rotation: {ok} requests ok, {failed} failed, {kept} keepalive round trips, server renewals {}, client renewals {}, distinct server certs seen {distinct}",
        server.credentials().renewals(),
        client.credentials().renewals()
    );
    assert_eq!(failed, 0, "no request may fail across rotations");
    assert!(ok > 50, "steady load: {ok}");
    assert!(server.credentials().renewals() >= 2, "server renewed");
    assert!(client.credentials().renewals() >= 2, "client renewed");
    assert!(
        distinct >= 3,
        "new handshakes saw the renewed server certificates: {distinct}"
    );
    assert!(kept > 100, "long-lived connections stayed up: {kept}");
}

#[tokio::test]
async fn failed_renewal_keeps_the_current_certificate() {
    #[derive(Debug)]
    struct Flaky {
        ca: MeshCa,
        calls: AtomicU64,
    }
    impl CertificateSource for Flaky {
        fn fetch<'a>(
            &'a self,
            identity: &'a Identity,
        ) -> BoxFuture<'a, Result<WorkloadCert, TlsError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::Relaxed);
                match n {
                    0 => self.ca.issue(identity, Duration::from_secs(2), &[]),
                    // a certificate for another identity must be refused
                    1 => self.ca.issue(
                        &Identity::new(TD, "evil", "evil").unwrap(),
                        Duration::from_secs(60),
                        &[],
                    ),
                    2 => Err(TlsError::Source("istiod unavailable".into())),
                    _ => self.ca.issue(identity, Duration::from_secs(60), &[]),
                }
            })
        }
    }
    let src = Arc::new(Flaky {
        ca: MeshCa::self_signed(TD).unwrap(),
        calls: AtomicU64::new(0),
    });
    let opts = RotationOptions {
        retry_min: Duration::from_millis(50),
        ..Default::default()
    };
    let sid = id(TD, "a", "b");
    let mgr = CertManager::start(sid.clone(), src.clone(), opts)
        .await
        .unwrap();
    let first = mgr.credentials().not_after();
    // renewal at ~1 s: wrong identity refused, then an error, then success
    let t0 = Instant::now();
    while mgr.credentials().renewals() == 0 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mgr.credentials().renewals(), 1);
    assert!(src.calls.load(Ordering::Relaxed) >= 4);
    assert_eq!(mgr.credentials().identity(), &sid);
    assert_eq!(mgr.credentials().current().identity(), &sid);
    assert!(mgr.credentials().not_after() > first);
    // manual rotation
    mgr.rotate_now().await.unwrap();
    assert_eq!(mgr.credentials().renewals(), 2);
}

/// A root rotation through a plug-in CA, as Istio documents it: the CA's `root-cert.pem`
/// first lists the new and the old root, then the new one alone. Once a renewed certificate
/// carries the new root alone, the workload stops trusting the old one: a STRICT server
/// refuses a peer still holding a certificate of the old root (Istio's agent replaces the
/// root it hands to Envoy with the CA's).
#[tokio::test]
async fn a_root_the_ca_no_longer_serves_stops_being_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let old = MeshCa::self_signed(TD).unwrap();
    let new = MeshCa::self_signed(TD).unwrap();
    new.write_dir(dir.path()).unwrap();
    let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
    let both = format!(
        "{}{}",
        new.trust_bundle().to_pem(),
        old.trust_bundle().to_pem()
    );
    let plugin = |roots: &[u8]| {
        MeshCa::from_plugin_pem(
            &read("ca-cert.pem"),
            &read("ca-key.pem"),
            roots,
            Some(&read("cert-chain.pem")),
            TD,
        )
        .unwrap()
    };
    let during = plugin(both.as_bytes());
    let after = plugin(&read("root-cert.pem"));
    let sid = id(TD, "a", "server");
    let creds =
        WorkloadCredentials::new(during.issue(&sid, Duration::from_secs(3600), &[]).unwrap())
            .unwrap();
    assert_eq!(creds.trust_bundle().certs().len(), 2);
    let mut server = echo_server(strict(&creds)).await;
    // a peer of the old root, trusting both
    let stale = WorkloadCredentials::with_trust(
        old.issue(&id(TD, "x", "stale"), Duration::from_secs(3600), &[])
            .unwrap(),
        Some(new.trust_bundle()),
        &[],
    )
    .unwrap();
    let out = istio_mutual(&stale, std::slice::from_ref(&sid));
    let reply = tls_roundtrip(&out, server.addr).await.unwrap();
    assert_eq!(reply, "cluster.local/ns/x/sa/stale ping");
    assert!(server.next().await.is_ok());

    creds
        .install(after.issue(&sid, Duration::from_secs(3600), &[]).unwrap())
        .unwrap();
    assert_eq!(creds.trust_bundle().certs(), new.trust_bundle().certs());
    let _ = tls_roundtrip(&out, server.addr).await;
    let refused = server
        .next()
        .await
        .expect_err("the old root is no longer trusted");
    assert!(
        VerifyError::from_io(&refused).is_some(),
        "a verification error: {refused}"
    );

    // extra roots given by the program stay trusted across renewals
    let pinned = WorkloadCredentials::with_trust(
        during.issue(&sid, Duration::from_secs(3600), &[]).unwrap(),
        Some(old.trust_bundle()),
        &[],
    )
    .unwrap();
    pinned
        .install(after.issue(&sid, Duration::from_secs(3600), &[]).unwrap())
        .unwrap();
    assert!(pinned.trust_bundle().contains_all(old.trust_bundle()));
    assert!(pinned.trust_bundle().contains_all(new.trust_bundle()));
}
