//! Full mutual-TLS handshakes per second, both sides in one process over in-memory buffers
//! (no sockets, no resumption: every iteration is a complete TLS 1.3 handshake with client
//! authentication), comparing:
//!
//! - `stock`: bare rustls with its stock webpki verifiers (`WebPkiClientVerifier`,
//!   `WebPkiServerVerifier`), certificates with a DNS SAN so the stock verifier accepts them;
//! - `mesh`: mesh-tls configs (`WorkloadCredentials::server_config`, ISTIO_MUTUAL
//!   `client_config`): the same chain checks plus the SPIFFE identity checks inside the
//!   handshake, certificates resolved through the rotation-aware resolvers;
//! - `mesh+peer`: `mesh` plus reading the client's `PeerIdentity` on the server, as the
//!   inbound stack does once per connection.
//!
//! Same certificates, same crypto provider (aws-lc-rs), same ALPN lists. After criterion's
//! own report, an interleaved run prints handshakes/s for each and the ratio mesh/stock.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use mesh_tls::rustls::client::WebPkiServerVerifier;
use mesh_tls::rustls::pki_types::ServerName;
use mesh_tls::rustls::server::WebPkiClientVerifier;
use mesh_tls::rustls::{self, ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use mesh_tls::*;

struct Setup {
    name: &'static str,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    sni: ServerName<'static>,
    peer_identity: bool,
}

fn setups() -> Vec<Setup> {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let sid = Identity::new("cluster.local", "default", "httpbin").unwrap();
    let cid = Identity::new("cluster.local", "default", "sleep").unwrap();
    let scert = ca
        .issue(&sid, DEFAULT_WORKLOAD_TTL, &["localhost"])
        .unwrap();
    let ccert = ca
        .issue(&cid, DEFAULT_WORKLOAD_TTL, &["localhost"])
        .unwrap();
    let roots = ca.trust_bundle().root_store().clone();
    let alpn_server: Vec<Vec<u8>> = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    let alpn_client: Vec<Vec<u8>> = [&b"istio-peer-exchange"[..], b"istio", b"h2", b"http/1.1"]
        .iter()
        .map(|p| p.to_vec())
        .collect();

    // bare rustls, stock verifiers
    let cv = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .unwrap();
    let mut stock_server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(cv)
        .with_single_cert(scert.chain_der().unwrap(), scert.key_der().unwrap())
        .unwrap();
    stock_server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    stock_server.send_tls13_tickets = 0;
    stock_server.alpn_protocols = alpn_server;
    let sv = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .unwrap();
    let mut stock_client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_webpki_verifier(sv)
        .with_client_auth_cert(ccert.chain_der().unwrap(), ccert.key_der().unwrap())
        .unwrap();
    stock_client.resumption = rustls::client::Resumption::disabled();
    stock_client.alpn_protocols = alpn_client;

    // mesh-tls
    let screds = WorkloadCredentials::new(scert).unwrap();
    let ccreds = WorkloadCredentials::new(ccert).unwrap();
    let mesh_server = screds.server_config(None).unwrap();
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::IstioMutual,
        ..Default::default()
    };
    let dest = Destination {
        host: "httpbin.default.svc.cluster.local",
        port: 8000,
        subset: None,
        service_accounts: std::slice::from_ref(&sid),
    };
    let ctx = ClientContext {
        workload: Some(&ccreds),
        credentials: None,
        alpn: Alpn::Http2AndHttp1,
        opaque: false,
    };
    let out = client_config(&settings, &dest, &ctx).unwrap().unwrap();
    assert_eq!(out.config().alpn_protocols, stock_client.alpn_protocols);

    let stock = Setup {
        name: "stock",
        client: Arc::new(stock_client),
        server: Arc::new(stock_server),
        sni: ServerName::try_from("localhost").unwrap(),
        peer_identity: false,
    };
    let mesh = |name, peer_identity| Setup {
        name,
        client: out.config().clone(),
        server: mesh_server.clone(),
        sni: out.server_name().clone(),
        peer_identity,
    };
    vec![stock, mesh("mesh", false), mesh("mesh+peer", true)]
}

fn pump(
    from: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    to: &mut dyn FnMut(&[u8]),
    buf: &mut Vec<u8>,
) -> bool {
    let mut moved = false;
    loop {
        buf.clear();
        if !from(buf) {
            return moved;
        }
        to(buf);
        moved = true;
    }
}

/// One complete handshake in memory. Panics if it fails.
fn handshake(s: &Setup, buf: &mut Vec<u8>) {
    let mut client = ClientConnection::new(s.client.clone(), s.sni.clone()).unwrap();
    let mut server = ServerConnection::new(s.server.clone()).unwrap();
    loop {
        let c2s = pump(
            &mut |b| client.wants_write() && client.write_tls(b).unwrap() > 0,
            &mut |mut b| {
                while !b.is_empty() {
                    server.read_tls(&mut b).unwrap();
                }
                server.process_new_packets().unwrap();
            },
            buf,
        );
        let s2c = pump(
            &mut |b| server.wants_write() && server.write_tls(b).unwrap() > 0,
            &mut |mut b| {
                while !b.is_empty() {
                    client.read_tls(&mut b).unwrap();
                }
                client.process_new_packets().unwrap();
            },
            buf,
        );
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        assert!(c2s || s2c, "{}: handshake stalled", s.name);
    }
    assert!(server.peer_certificates().is_some(), "mutual TLS");
    if s.peer_identity {
        black_box(PeerIdentity::of(&server).expect("SPIFFE peer"));
    }
}

fn rate(s: &Setup, n: u32, buf: &mut Vec<u8>) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        handshake(s, buf);
    }
    f64::from(n) / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let setups = setups();
    let mut buf = Vec::with_capacity(16 * 1024);
    for s in &setups {
        handshake(s, &mut buf); // both sides verify: fail fast if a setup is wrong
    }
    let test_mode = std::env::args().any(|a| a == "--test");

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    {
        let mut g = c.benchmark_group("mtls_handshake");
        for s in &setups {
            g.bench_function(s.name, |b| b.iter(|| handshake(s, &mut buf)));
        }
        g.finish();
    }
    c.final_summary();

    // Interleaved rounds, so machine load drifts hit every setup alike.
    let (rounds, per_round) = if test_mode { (1, 5) } else { (15, 200) };
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for _ in 0..rounds {
        for (i, s) in setups.iter().enumerate() {
            rates[i].push(rate(s, per_round, &mut buf));
        }
    }
    let med: Vec<f64> = rates.into_iter().map(median).collect();
    for (s, r) in setups.iter().zip(&med) {
        println!("tls_handshake {:<10} {:>9.0} full mTLS handshakes/s (median of {rounds} rounds x {per_round})", s.name, r);
    }
    println!(
        "tls_handshake ratio mesh/stock      = {:.3} (target >= 0.95)",
        med[1] / med[0]
    );
    println!(
        "tls_handshake ratio mesh+peer/stock = {:.3}",
        med[2] / med[0]
    );
}
