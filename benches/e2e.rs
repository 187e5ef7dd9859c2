//! End-to-end load benchmark: the same tiny HTTP app and the same load generator, on
//! loopback, in one run, through three stacks:
//!
//! - **a** `bare`: hyper on both sides with rustls mutual TLS (stock webpki verifiers,
//!   certificates from mesh-tls's CA with a DNS SAN): the limit;
//! - **b** `mesh`: the same app behind the full mesh stack on both sides (see
//!   [`mesh_setup`]);
//! - **c** `sidecars`: the plain app and the plain client with two nginx processes between
//!   them, as a sidecar pair would be: client -> nginx "outbound sidecar" (plaintext in,
//!   mTLS out with a client certificate from the mesh CA) -> nginx "inbound sidecar" (mTLS
//!   in, client certificate verified, plaintext out) -> app. nginx runs as child processes
//!   with configs generated from `benches/e2e/*.conf.tmpl` in a temp dir; when nginx is
//!   missing, (c) is skipped with the reason.
//!
//! Two more put the mesh hop on HTTP/2: **b2** is b with MeshConfig `h2UpgradePolicy:
//! UPGRADE` (the mesh client multiplexes every request onto one HTTP/2 connection to the
//! server), and **a2** its baseline, a's bare server with a client speaking HTTP/2 over one
//! connection. b2/a2 compares the same wire protocol; b2/a is printed too, but it compares
//! an HTTP/2 hop with an HTTP/1.1 one. b-in and b-out (see [`Sides`]) mesh one side only.
//!
//! Load: `E2E_CONNECTIONS` (default 32) keep-alive HTTP/1.1 connections, each driven by
//! one task in a closed loop (send, read the whole response, repeat), for `E2E_WARMUP_SECS`
//! (default 2) of warm-up and then `E2E_SECS` (default 10; 0 skips this phase) of
//! measurement per setup. Latencies go into a log-linear histogram preallocated per connection (64 buckets per power of two,
//! < 1.6 % error), merged at the end: recording a latency never allocates.
//!
//! Then the latency at a fixed rate, as Istio measures its sidecars (fortio at 1,000
//! requests a second over a few connections, the latency's percentiles against the same
//! client and server without sidecars): `E2E_RATE` (default 1000; 0 skips the phase) requests
//! a second in total over `E2E_RATE_CONNECTIONS` (default 16) connections, each sending on
//! its own schedule (the schedules evenly staggered; a request answered after its next slot
//! makes the next go at once, as wrk2 and fortio do), for `E2E_RATE_SECS` (default 10) per
//! setup. At saturation every setup's p99 is mostly its queue (connections over
//! throughput), so the p99 ratio there is the throughput ratio again; at a rate every setup
//! carries, the p99 is what each request's path adds.
//!
//! Rounds: every setup is started and checked first, then measured in `E2E_ROUNDS`
//! (default 5) rounds, each setup once per round for its share of the warm-up and the
//! measured time (0.4 s and 2 s by default), the setups taking turns in an order that moves
//! by one each round. A shared host's speed drifts by 10 to 30 % over minutes; the setups
//! of one round are measured seconds apart, so each round's b/a compares them under the
//! same conditions, and the verdicts read the median of the rounds' ratios (the whole run's
//! ratio is printed beside it).
//!
//! Cores: the load generator, the app, and (a, b) the TLS/mesh stacks all run in this
//! process on one multi-thread tokio runtime with `E2E_THREADS` (default 2) workers, the
//! machine's core count, so every setup shares the same cores with its load generator. In
//! (c) the two nginx sidecars get one worker process each: two cores in total, the same
//! number the mesh stack gets (the runtime's workers), and they compete for the same
//! machine cores with the app and the load generator, as sidecars on a node do.
//!
//! Besides req/s and p50/p99/p99.9, the table gives the CPU time per request of every
//! process involved (this one plus the nginx processes), from `/proc`, which shows the
//! cost of each architecture independently of how the scheduler shared the cores.
//!
//! Allocator: the process uses mimalloc for every setup, as production Rust services and
//! proxies use a thread-caching allocator; glibc's malloc takes an arena lock when one
//! thread frees what another allocated, which a client and server sharing two cores do
//! all the time. `RUSTFLAGS="--cfg e2e_system_alloc"` measures with glibc's malloc.
//!
//! Run: `scripts/bench-e2e` (installs nginx when missing), or `cargo bench --bench e2e`;
//! `cargo bench --bench e2e -- a c` runs only the named setups.

// The process's allocator, the same for every setup: mimalloc, as production Rust services
// and proxies use a thread-caching allocator (Linkerd's proxy jemalloc, Envoy tcmalloc).
// `RUSTFLAGS="--cfg e2e_system_alloc"` measures with the system's (glibc) malloc instead.
#[cfg(not(e2e_system_alloc))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ALLOCATOR: &str = if cfg!(e2e_system_alloc) {
    "system (glibc) malloc"
} else {
    "mimalloc"
};

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_core::model::Labels;
use mesh_core::registry::Workload;
use mesh_tls::rustls::client::WebPkiServerVerifier;
use mesh_tls::rustls::pki_types::ServerName;
use mesh_tls::rustls::server::WebPkiClientVerifier;
use mesh_tls::rustls::{ClientConfig, ServerConfig};
use mesh_tls::tokio_rustls::{TlsAcceptor, TlsConnector};
use mesh_tls::{
    provider, Identity, MeshCa, WorkloadCert, WorkloadCredentials, DEFAULT_WORKLOAD_TTL,
};
use mesh_tower::inbound::{MeshServer, ServerBody};
use mesh_tower::metrics::IstioMetrics;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use mesh_tower::trace::TraceConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The app's whole response body.
const BODY: &[u8] = b"hello from inmesh\n";
/// The DNS SAN of the bench certificates (what stock verifiers and nginx check).
const SERVER_NAME: &str = "localhost";
const TRUST_DOMAIN: &str = "cluster.local";

// ---------------------------------------------------------------------------------------
// options

struct Options {
    connections: usize,
    warmup: Duration,
    duration: Duration,
    threads: usize,
    /// Rounds: every setup is measured once per round, the setups taking turns, and the
    /// warm-up and measured time are split evenly over the rounds.
    rounds: usize,
    /// The fixed-rate phase: `rate` requests a second in total (0: no such phase) over
    /// `rate_connections` connections, for `rate_duration` per setup (split over the
    /// rounds, as the saturation phase's time is).
    rate: u64,
    rate_connections: usize,
    rate_duration: Duration,
    only: Vec<String>,
    /// Smoke run (not under `cargo bench`): any error or empty setup fails the run.
    quick: bool,
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("e2e: {name}={v:?} is not a number; using {default}");
            default
        }),
        Err(_) => default,
    }
}

impl Options {
    fn from_env() -> Self {
        // cargo bench passes `--bench`; anything else not starting with '-' names a setup
        let only = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        Options {
            connections: env_num("E2E_CONNECTIONS", 32).max(1) as usize,
            warmup: Duration::from_secs(env_num("E2E_WARMUP_SECS", 2)),
            // 0: no saturation phase (the fixed-rate phase alone)
            duration: Duration::from_secs(env_num("E2E_SECS", 10)),
            threads: env_num("E2E_THREADS", 2).max(1) as usize,
            rounds: env_num("E2E_ROUNDS", 5).max(1) as usize,
            rate: env_num("E2E_RATE", 1000),
            rate_connections: env_num("E2E_RATE_CONNECTIONS", 16).max(1) as usize,
            rate_duration: Duration::from_secs(env_num("E2E_RATE_SECS", 10).max(1)),
            only,
            quick: false,
        }
    }

    fn wants(&self, key: &str, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == key || o == name)
    }
}

// ---------------------------------------------------------------------------------------
// latency histogram: log-linear, preallocated, no allocation per record

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize) * SUB + SUB;

struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 2 * SUB as u64 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        let shift = e - SUB_BITS;
        shift as usize * SUB + (v >> shift) as usize
    }

    /// The middle of bucket `i`'s value range.
    fn value(i: usize) -> u64 {
        if i < 2 * SUB {
            return i as u64;
        }
        let shift = (i / SUB - 1) as u32;
        let m = (i - shift as usize * SUB) as u64;
        (m << shift) + (1u64 << shift) / 2
    }

    fn record(&mut self, nanos: u64) {
        self.counts[Self::index(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(Self::value(i).min(self.max));
            }
        }
        Duration::from_nanos(self.max)
    }
}

// ---------------------------------------------------------------------------------------
// the app and the bare servers

fn app_response() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(BODY)))
}

async fn serve_conn<I>(io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(|_req: Request<Incoming>| async { Ok::<_, Infallible>(app_response()) });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// Accepts plaintext (the app of setup c) or rustls mTLS (setup a) connections until
/// aborted; dropping the returned task's `JoinSet` ends every connection.
async fn serve_bare(listener: TcpListener, tls: Option<TlsAcceptor>) {
    let mut conns = JoinSet::new();
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("e2e: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match &tls {
            None => {
                conns.spawn(serve_conn(tcp));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(stream) => serve_conn(stream).await,
                        Err(e) => eprintln!("e2e: bare server handshake: {e}"),
                    }
                });
            }
        }
        while conns.try_join_next().is_some() {}
    }
}

// ---------------------------------------------------------------------------------------
// certificates

struct Pki {
    ca: MeshCa,
    server_id: Identity,
    client_id: Identity,
    server: WorkloadCert,
    client: WorkloadCert,
}

impl Pki {
    fn new() -> Result<Self, BoxError> {
        let ca = MeshCa::self_signed(TRUST_DOMAIN)?;
        let server_id = Identity::new(TRUST_DOMAIN, "default", "httpbin")?;
        let client_id = Identity::new(TRUST_DOMAIN, "default", "sleep")?;
        let server = ca.issue(&server_id, DEFAULT_WORKLOAD_TTL, &[SERVER_NAME])?;
        let client = ca.issue(&client_id, DEFAULT_WORKLOAD_TTL, &[SERVER_NAME])?;
        Ok(Pki {
            ca,
            server_id,
            client_id,
            server,
            client,
        })
    }

    /// Setup a's server: stock rustls with the stock client-certificate verifier.
    fn bare_server(&self) -> Result<TlsAcceptor, BoxError> {
        let roots = self.ca.trust_bundle().root_store().clone();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server.chain_der()?, self.server.key_der()?)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Setup a's client: stock rustls with the stock server-certificate verifier.
    fn bare_client(&self) -> Result<TlsConnector, BoxError> {
        self.bare_client_alpn(b"http/1.1")
    }

    /// A bare client offering one ALPN protocol (`h2` for setup a2).
    fn bare_client_alpn(&self, alpn: &[u8]) -> Result<TlsConnector, BoxError> {
        let roots = self.ca.trust_bundle().root_store().clone();
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider()).build()?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(self.client.chain_der()?, self.client.key_der()?)?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

// ---------------------------------------------------------------------------------------
// the load generator

/// How the load generator reaches the app.
enum Target {
    /// HTTP/1.1 over plain TCP (setup c: to the outbound sidecar).
    Plain { addr: SocketAddr },
    /// HTTP/1.1 over rustls mTLS (setup a).
    Tls {
        addr: SocketAddr,
        connector: TlsConnector,
        name: ServerName<'static>,
    },
    /// HTTP/2 over rustls mTLS (setup a2): one connection, every load-generator task
    /// holding a clone of its sender, as the mesh client's pool shares one HTTP/2
    /// connection per endpoint.
    TlsH2 {
        sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    },
    /// The mesh client (setup b): it routes, balances and pools connections itself; each
    /// load-generator task holds a clone.
    Mesh { client: MeshClient },
}

/// One load-generator connection (for the mesh: one client handle).
enum Conn {
    Http1(SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
    Mesh(MeshClient),
}

/// The URL the mesh client is asked for: a plain `http://` request to the service name, as
/// an application would write it; the mesh upgrades it to mTLS.
const MESH_URL: &str = "http://httpbin:8000/";

impl Target {
    async fn connect(&self) -> Result<Conn, BoxError> {
        let addr = match self {
            Target::Plain { addr } | Target::Tls { addr, .. } => *addr,
            Target::Mesh { client } => return Ok(Conn::Mesh(client.clone())),
            Target::TlsH2 { sender } => return Ok(Conn::Http2(sender.clone())),
        };
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let sender = match self {
            Target::Tls {
                connector, name, ..
            } => {
                let tls = connector.connect(name.clone(), tcp).await?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                sender
            }
            _ => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        Ok(Conn::Http1(sender))
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        self.request_with(http::Method::GET)
    }

    fn request_with(&self, method: http::Method) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.method_mut() = method;
        match self {
            Target::Mesh { .. } => *req.uri_mut() = http::Uri::from_static(MESH_URL),
            // HTTP/2 carries the authority in the request's `:authority`, not a Host header
            Target::TlsH2 { .. } => *req.uri_mut() = http::Uri::from_static("https://localhost/"),
            _ => {
                *req.uri_mut() = http::Uri::from_static("/");
                req.headers_mut()
                    .insert(header::HOST, header::HeaderValue::from_static(SERVER_NAME));
            }
        }
        req
    }
}

async fn drain<B>(body: B) -> Result<(), BoxError>
where
    B: hyper::body::Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        frame.map_err(Into::into)?;
    }
    Ok(())
}

impl Conn {
    /// Sends one request and reads the whole response; returns its status.
    async fn send(&mut self, req: Request<Empty<Bytes>>) -> Result<StatusCode, BoxError> {
        match self {
            Conn::Http1(sender) => {
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                drain(resp.into_body()).await?;
                Ok(status)
            }
            Conn::Http2(sender) => {
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                drain(resp.into_body()).await?;
                Ok(status)
            }
            Conn::Mesh(client) => {
                let resp = client.request(req).await?;
                let status = resp.status();
                drain(resp.into_body()).await?;
                Ok(status)
            }
        }
    }

    /// One request with its body collected, for the checks before measuring.
    async fn fetch(&mut self, req: Request<Empty<Bytes>>) -> Result<(StatusCode, Bytes), BoxError> {
        match self {
            Conn::Http1(sender) => {
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                Ok((status, resp.into_body().collect().await?.to_bytes()))
            }
            Conn::Http2(sender) => {
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                Ok((status, resp.into_body().collect().await?.to_bytes()))
            }
            Conn::Mesh(client) => {
                let resp = client.request(req).await?;
                let status = resp.status();
                Ok((status, resp.into_body().collect().await?.to_bytes()))
            }
        }
    }
}

/// What one load-generator connection saw during the measured window.
struct Tally {
    hist: Histogram,
    non_ok: u64,
    errors: u64,
    /// Fixed rate only: requests sent more than one interval after their slot (the setup
    /// did not keep up with the rate).
    late: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            hist: Histogram::new(),
            non_ok: 0,
            errors: 0,
            late: 0,
        }
    }

    /// The connection to send on: `conn`, or a new one (`None` after a failed connect,
    /// counted, and 10 ms later).
    async fn connection<'c>(
        &mut self,
        target: &Target,
        conn: &'c mut Option<Conn>,
    ) -> Option<&'c mut Conn> {
        if conn.is_none() {
            match target.connect().await {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    if self.errors == 0 {
                        eprintln!("e2e: connect: {e}");
                    }
                    self.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        conn.as_mut()
    }

    /// Records one request sent at `t0` and answered (`res`) at `t1`, if `counted`; drops
    /// the connection after an error.
    fn note(
        &mut self,
        res: Result<StatusCode, BoxError>,
        t0: Instant,
        t1: Instant,
        counted: bool,
        conn: &mut Option<Conn>,
    ) {
        match res {
            Ok(StatusCode::OK) => {
                if counted {
                    self.hist.record((t1 - t0).as_nanos() as u64);
                }
            }
            Ok(status) => {
                if self.non_ok == 0 {
                    eprintln!("e2e: unexpected status {status}");
                }
                self.non_ok += u64::from(counted);
            }
            Err(e) => {
                if self.errors == 0 {
                    eprintln!("e2e: request: {e}");
                }
                self.errors += u64::from(counted);
                *conn = None;
            }
        }
    }
}

/// One connection of the saturating load: sends its next request as soon as the last is
/// answered, until `end`.
async fn drive_one(target: Arc<Target>, measure_from: Instant, end: Instant) -> Tally {
    let mut tally = Tally::new();
    let mut conn = None;
    while Instant::now() < end {
        let Some(c) = tally.connection(&target, &mut conn).await else {
            continue;
        };
        let req = target.request();
        let t0 = Instant::now();
        let res = c.send(req).await;
        let t1 = Instant::now();
        tally.note(res, t0, t1, t0 >= measure_from && t1 <= end, &mut conn);
    }
    tally
}

/// One connection of the fixed-rate load: sends a request at `first`, then one every
/// `interval` (at once when the last answer came after the next slot, as wrk2 and fortio
/// do), until `end`. A latency is counted from the request's send, not from its slot: the
/// runtime's timer wakes up to a millisecond after a slot, which is not the setup's time;
/// a send more than one interval after its slot is counted as late instead.
async fn drive_paced(
    target: Arc<Target>,
    measure_from: Instant,
    end: Instant,
    first: Instant,
    interval: Duration,
) -> Tally {
    let mut tally = Tally::new();
    let mut conn = None;
    let mut slot = first;
    while slot < end {
        tokio::time::sleep_until(slot.into()).await;
        let Some(c) = tally.connection(&target, &mut conn).await else {
            // (this slot is lost, counted as an error)
            slot += interval;
            continue;
        };
        let req = target.request();
        let t0 = Instant::now();
        let res = c.send(req).await;
        let t1 = Instant::now();
        let counted = slot >= measure_from && t1 <= end;
        if counted && t0 > slot + interval {
            tally.late += 1;
        }
        tally.note(res, t0, t1, counted, &mut conn);
        slot += interval;
    }
    tally
}

/// CPU time (user + system) of a process and its threads, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    // after "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt
    // cmajflt utime stime
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks(),
    ))
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The processes whose CPU time a setup costs: this one, plus the nginx masters and their
/// workers.
fn cpu_of(pids: &[u32]) -> Duration {
    let mut all: Vec<u32> = pids.to_vec();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_ascii_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid.is_some_and(|p| pids[1..].contains(&p)) {
                all.push(pid);
            }
        }
    }
    all.iter().filter_map(|&p| cpu_time(p)).sum()
}

struct Stats {
    requests: u64,
    rps: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    cpu_per_req: Option<Duration>,
    non_ok: u64,
    errors: u64,
    /// Fixed rate only: requests sent more than one interval late.
    late: u64,
    /// Each round's throughput and p99, in round order.
    rounds: Vec<(f64, Duration)>,
}

/// The tasks a setup runs (its servers, a shared connection), aborted when dropped: when
/// the setup is dropped after its measurement, or by an early return while it is started.
#[derive(Default)]
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Tasks {
    fn spawn<F>(&mut self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::spawn(task);
        self.0.push(handle.abort_handle());
        handle
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// What a setup checks once measured (`Err` turns its row into the error).
type Check = Box<dyn FnOnce() -> Result<(), BoxError> + Send>;

/// A started setup: how the load generator reaches it, the processes besides this one
/// whose CPU it costs (nginx masters), its tasks, its check after the measurement, and
/// what else lives as long as it does (the nginx processes, stopped when dropped, and
/// their files).
struct Running {
    target: Arc<Target>,
    pids: Vec<u32>,
    /// Held for its `Drop`: the setup's tasks end with it.
    _tasks: Tasks,
    check: Option<Check>,
    /// Held for its `Drop`: the nginx processes stop, their files go.
    _keep: Option<Box<dyn std::any::Any + Send>>,
}

impl Running {
    fn new(target: Target, tasks: Tasks) -> Running {
        Running {
            target: Arc::new(target),
            pids: Vec::new(),
            _tasks: tasks,
            check: None,
            _keep: None,
        }
    }
}

/// One checked request before any load: a setup that does not answer 200 with the app's
/// body is broken, not slow.
async fn probe(target: &Target) -> Result<(), BoxError> {
    let mut probe = target.connect().await?;
    let (status, body) = probe.fetch(target.request()).await?;
    if status != StatusCode::OK || body != BODY {
        return Err(format!("probe request answered {status} {body:?}").into());
    }
    Ok(())
}

/// What one measured window of one setup saw.
struct Window {
    hist: Histogram,
    cpu: Option<Duration>,
    non_ok: u64,
    errors: u64,
    late: u64,
}

/// How the load generator drives a setup.
#[derive(Clone, Copy)]
enum Load {
    /// As fast as the setup answers: `connections` connections, each sending its next
    /// request when the last is answered (the throughput, and the latency at saturation).
    Saturate { connections: usize },
    /// `rate` requests a second in total over `connections` connections, each on its own
    /// schedule, the schedules evenly staggered (the latency a setup adds at a load it
    /// carries, as Istio measures its sidecars: fortio at 1,000 requests a second).
    Paced { connections: usize, rate: u64 },
}

/// Drives `run` with `load` for one round: `warmup`, then `measured`.
async fn measure(
    run: &Running,
    load: Load,
    warmup: Duration,
    measured: Duration,
) -> Result<Window, BoxError> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measured;
    let mut tasks = JoinSet::new();
    match load {
        Load::Saturate { connections } => {
            for _ in 0..connections {
                tasks.spawn(drive_one(run.target.clone(), measure_from, end));
            }
        }
        Load::Paced { connections, rate } => {
            let interval = Duration::from_secs_f64(connections as f64 / rate.max(1) as f64);
            for k in 0..connections {
                let first = start + interval * k as u32 / connections as u32;
                let target = run.target.clone();
                tasks.spawn(drive_paced(target, measure_from, end, first, interval));
            }
        }
    }
    let mut all_pids = vec![std::process::id()];
    all_pids.extend_from_slice(&run.pids);
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = cpu_of(&all_pids);
        tokio::time::sleep_until(end.into()).await;
        let after = cpu_of(&all_pids);
        after.checked_sub(before)
    });
    let mut window = Window {
        hist: Histogram::new(),
        cpu: None,
        non_ok: 0,
        errors: 0,
        late: 0,
    };
    while let Some(t) = tasks.join_next().await {
        let t = t?;
        window.hist.merge(&t.hist);
        window.non_ok += t.non_ok;
        window.errors += t.errors;
        window.late += t.late;
    }
    window.cpu = cpu.await?;
    Ok(window)
}

/// A setup's windows, merged.
struct Totals {
    hist: Histogram,
    cpu: Option<Duration>,
    non_ok: u64,
    errors: u64,
    late: u64,
    rounds: Vec<(f64, Duration)>,
}

impl Totals {
    fn new() -> Self {
        Totals {
            hist: Histogram::new(),
            cpu: Some(Duration::ZERO),
            non_ok: 0,
            errors: 0,
            late: 0,
            rounds: Vec::new(),
        }
    }

    fn add(&mut self, w: &Window, measured: Duration) {
        self.hist.merge(&w.hist);
        self.cpu = self.cpu.zip(w.cpu).map(|(a, b)| a + b);
        self.non_ok += w.non_ok;
        self.errors += w.errors;
        self.late += w.late;
        self.rounds.push((
            w.hist.total as f64 / measured.as_secs_f64(),
            w.hist.quantile(0.99),
        ));
    }

    fn stats(self, measured: Duration) -> Stats {
        let requests = self.hist.total;
        let secs = measured.as_secs_f64() * self.rounds.len() as f64;
        Stats {
            requests,
            rps: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            p50: self.hist.quantile(0.50),
            p90: self.hist.quantile(0.90),
            p99: self.hist.quantile(0.99),
            p999: self.hist.quantile(0.999),
            max: Duration::from_nanos(self.hist.max),
            cpu_per_req: self
                .cpu
                .filter(|_| requests > 0)
                .map(|c| c / requests as u32),
            non_ok: self.non_ok,
            errors: self.errors,
            late: self.late,
            rounds: self.rounds,
        }
    }
}

// ---------------------------------------------------------------------------------------
// setup a: bare hyper + rustls mTLS

async fn bare_setup(pki: &Pki) -> Result<Running, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut tasks = Tasks::default();
    tasks.spawn(serve_bare(listener, Some(pki.bare_server()?)));
    let target = Target::Tls {
        addr,
        connector: pki.bare_client()?,
        name: ServerName::try_from(SERVER_NAME)?,
    };
    probe(&target).await?;
    Ok(Running::new(target, tasks))
}

/// Setup a2: a's server, and a client speaking HTTP/2 over one rustls mTLS connection
/// shared by every load-generator task (the HTTP/2 limit, for b2).
async fn bare_h2_setup(pki: &Pki) -> Result<Running, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut tasks = Tasks::default();
    tasks.spawn(serve_bare(listener, Some(pki.bare_server()?)));
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = pki
        .bare_client_alpn(b"h2")?
        .connect(ServerName::try_from(SERVER_NAME)?, tcp)
        .await?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the bare server did not agree to h2".into());
    }
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await?;
    tasks.spawn(conn);
    let target = Target::TlsH2 { sender };
    probe(&target).await?;
    Ok(Running::new(target, tasks))
}

// ---------------------------------------------------------------------------------------
// setup c: a sidecar pair of nginx processes

/// A running nginx, stopped (SIGTERM, then SIGKILL) when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(bin: &Path, dir: PathBuf, conf: String, port: u16) -> Result<Self, BoxError> {
        std::fs::create_dir_all(&dir)?;
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut nginx = Nginx { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = nginx.child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut e) = nginx.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut stderr);
                }
                return Err(format!(
                    "nginx exited ({status}): {}{}",
                    stderr.trim(),
                    nginx.error_log()
                )
                .into());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                return Err(format!("nginx did not listen on {port}{}", nginx.error_log()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn error_log(&self) -> String {
        match std::fs::read_to_string(self.dir.join("error.log")) {
            Ok(log) if !log.trim().is_empty() => format!("\n  error.log: {}", log.trim()),
            _ => String::new(),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its worker; SIGKILL only if it does not exit
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_nginx() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("E2E_NGINX") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn render(template: &str, dir: &Path, listen: u16, upstream: u16) -> String {
    template
        .replace("@DIR@", &dir.display().to_string())
        .replace("@LISTEN_PORT@", &listen.to_string())
        .replace("@UPSTREAM_PORT@", &upstream.to_string())
        .replace("@SERVER_NAME@", SERVER_NAME)
}

const OUTBOUND_TMPL: &str = include_str!("e2e/outbound.conf.tmpl");
const INBOUND_TMPL: &str = include_str!("e2e/inbound.conf.tmpl");

async fn sidecar_setup(pki: &Pki, nginx: &Path) -> Result<Running, BoxError> {
    let tmp = tempfile::tempdir()?;
    let out_dir = tmp.path().join("outbound");
    let in_dir = tmp.path().join("inbound");
    for dir in [&out_dir, &in_dir] {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("root-cert.pem"), pki.server.root_pem())?;
    }
    std::fs::write(out_dir.join("client-chain.pem"), pki.client.chain_pem())?;
    std::fs::write(out_dir.join("client-key.pem"), pki.client.key_pem())?;
    std::fs::write(in_dir.join("server-chain.pem"), pki.server.chain_pem())?;
    std::fs::write(in_dir.join("server-key.pem"), pki.server.key_pem())?;

    let app = TcpListener::bind("127.0.0.1:0").await?;
    let app_port = app.local_addr()?.port();
    let mut tasks = Tasks::default();
    tasks.spawn(serve_bare(app, None));
    let in_port = free_port()?;
    let out_port = free_port()?;
    let inbound = Nginx::start(
        nginx,
        in_dir.clone(),
        render(INBOUND_TMPL, &in_dir, in_port, app_port),
        in_port,
    )?;
    let outbound = Nginx::start(
        nginx,
        out_dir.clone(),
        render(OUTBOUND_TMPL, &out_dir, out_port, in_port),
        out_port,
    )?;
    let target = Target::Plain {
        addr: SocketAddr::from(([127, 0, 0, 1], out_port)),
    };
    if let Err(e) = probe(&target).await {
        return Err(format!("{e}{}{}", inbound.error_log(), outbound.error_log()).into());
    }
    let mut running = Running::new(target, tasks);
    running.pids = vec![inbound.pid(), outbound.pid()];
    running._keep = Some(Box::new((outbound, inbound, tmp)));
    Ok(running)
}

// ---------------------------------------------------------------------------------------
// report

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// The table of one phase; `late` adds the column of late sends (the fixed-rate phase).
fn print_table(rows: &[(&str, &str, Result<Stats, String>)], late: bool) {
    println!(
        "{:<6} {:<34} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>10} {:>7}{}",
        "",
        "setup",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "CPU us/req",
        "errors",
        if late { "    late" } else { "" }
    );
    for (key, name, r) in rows {
        match r {
            Ok(s) => println!(
                "{:<6} {:<34} {:>10.0} {:>8} {:>8} {:>8} {:>9} {:>8} {:>10} {:>7}{}",
                key,
                name,
                s.rps,
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.p999),
                ms(s.max),
                s.cpu_per_req
                    .map(|c| format!("{:.1}", c.as_secs_f64() * 1e6))
                    .unwrap_or_else(|| "-".into()),
                s.errors + s.non_ok,
                if late {
                    format!(" {:>7}", s.late)
                } else {
                    String::new()
                }
            ),
            Err(why) => println!("{key:<6} {name:<34} skipped: {why}"),
        }
    }
}

/// `num`'s throughput and p99 over `den`'s: for the whole run, and round by round (both
/// measured in the same round, a few seconds apart).
struct Ratio {
    throughput: f64,
    p99: f64,
    rounds: Vec<(f64, f64)>,
}

impl Ratio {
    /// The median of the rounds' ratios (throughput, p99): what the verdicts read, as a
    /// round's ratio compares two setups measured under the same host conditions.
    fn median(&self) -> (f64, f64) {
        let mid = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            match v.len() {
                0 => f64::NAN,
                n if n % 2 == 1 => v[n / 2],
                n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
            }
        };
        (
            mid(self.rounds.iter().map(|r| r.0).collect()),
            mid(self.rounds.iter().map(|r| r.1).collect()),
        )
    }

    fn per_round(&self, pick: fn(&(f64, f64)) -> f64) -> String {
        let all: Vec<String> = self
            .rounds
            .iter()
            .map(|r| format!("{:.3}", pick(r)))
            .collect();
        all.join(" ")
    }
}

fn ratio(rows: &[(&str, &str, Result<Stats, String>)], num: &str, den: &str) -> Option<Ratio> {
    let get = |k: &str| {
        rows.iter()
            .find(|(key, _, _)| *key == k)
            .and_then(|(_, _, r)| r.as_ref().ok())
    };
    let (n, d) = (get(num)?, get(den)?);
    let p99 = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    Some(Ratio {
        throughput: n.rps / d.rps,
        p99: p99(n.p99, d.p99),
        rounds: n
            .rounds
            .iter()
            .zip(&d.rounds)
            .map(|(a, b)| (a.0 / b.0, p99(a.1, b.1)))
            .collect(),
    })
}

fn print_ratios(rows: &[(&str, &str, Result<Stats, String>)]) {
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    // the issue's targets, judged on the median of the rounds' ratios
    let targeted = |num: &str, den: &str, min_tp: f64, max_p99: Option<f64>| {
        let Some(r) = ratio(rows, num, den) else {
            println!("{num}/{den}: not available ({num} or {den} did not run)");
            return;
        };
        let (tp, p99) = r.median();
        println!(
            "{num}/{den} throughput {tp:.3} = median of rounds [{}] (whole run {:.3}); \
             target >= {min_tp:.2}: {}",
            r.per_round(|x| x.0),
            r.throughput,
            verdict(tp >= min_tp)
        );
        let target = max_p99.map_or(String::new(), |m| {
            format!("; target <= {m:.2}: {}", verdict(p99 <= m))
        });
        println!(
            "{num}/{den} p99        {p99:.3} = median of rounds [{}] (whole run {:.3}){target}",
            r.per_round(|x| x.1),
            r.p99,
        );
    };
    targeted("b", "a", 0.90, Some(1.20));
    targeted("b", "c", 2.0, None);
    // the HTTP/2 hop against the HTTP/2 limit (same wire protocol), and against a
    let plain = |num: &str, den: &str, what: &str| {
        if let Some(r) = ratio(rows, num, den) {
            let (tp, p99) = r.median();
            println!("{num}/{den} throughput {tp:.3}, p99 {p99:.3} (medians of the rounds){what}");
        }
    };
    plain("b2", "a2", " (both HTTP/2 on the wire)");
    plain("b2", "a", " (the mesh's HTTP/2 hop against bare HTTP/1.1)");
    plain("c", "a", "");
}

/// The fixed-rate phase's latency ratios: b/a against the issue's p99 target, judged on the
/// median of the rounds' ratios as at saturation; b/c and c/a beside it.
fn print_paced_ratios(rows: &[(&str, &str, Result<Stats, String>)], rate: u64) {
    println!();
    let get = |k: &str| {
        rows.iter()
            .find(|(key, _, _)| *key == k)
            .and_then(|(_, _, r)| r.as_ref().ok())
    };
    let of = |n: Duration, d: Duration| n.as_secs_f64() / d.as_secs_f64();
    for (num, den, target) in [("b", "a", Some(1.20)), ("b", "c", None), ("c", "a", None)] {
        let (Some(r), Some(n), Some(d)) = (ratio(rows, num, den), get(num), get(den)) else {
            if target.is_some() {
                println!("{num}/{den} at {rate} req/s: not available ({num} or {den} did not run)");
            }
            continue;
        };
        let (_, p99) = r.median();
        let verdict = target.map_or(String::new(), |m| {
            let v = if p99 <= m { "met" } else { "MISSED" };
            format!("; target <= {m:.2}: {v}")
        });
        println!(
            "{num}/{den} at {rate} req/s: p50 {:.3}, p90 {:.3} (whole run); p99 {p99:.3} = \
             median of rounds [{}] (whole run {:.3}){verdict}",
            of(n.p50, d.p50),
            of(n.p90, d.p90),
            r.per_round(|x| x.1),
            r.p99,
        );
    }
}

/// Measures every started setup with `load` in `rounds` rounds, each setup once per round
/// in an order that turns by one each round, so that the host's drift over the run reaches
/// every setup alike; each setup's windows merged (or why it failed).
async fn run_rounds(
    setups: &[(&str, &str, Result<Running, String>)],
    load: Load,
    warmup: Duration,
    measured: Duration,
    rounds: usize,
) -> Vec<Result<Totals, String>> {
    let live: Vec<usize> = (0..setups.len()).filter(|&i| setups[i].2.is_ok()).collect();
    let mut totals: Vec<Result<Totals, String>> =
        setups.iter().map(|_| Ok(Totals::new())).collect();
    for round in 0..rounds {
        let mut line = format!("e2e: round {}/{rounds}:", round + 1);
        for turn in 0..live.len() {
            let i = live[(turn + round) % live.len()];
            let (key, _, Ok(running)) = &setups[i] else {
                continue;
            };
            let Ok(total) = &mut totals[i] else {
                continue;
            };
            match measure(running, load, warmup, measured).await {
                Ok(w) => {
                    total.add(&w, measured);
                    let rps = w.hist.total as f64 / measured.as_secs_f64();
                    match load {
                        Load::Saturate { .. } => line.push_str(&format!(" {key} {rps:.0} req/s")),
                        Load::Paced { .. } => {
                            line.push_str(&format!(" {key} p99 {} ms", ms(w.hist.quantile(0.99))))
                        }
                    }
                }
                Err(e) => totals[i] = Err(format!("round {}: {e}", round + 1)),
            }
        }
        println!("{line}");
    }
    totals
}

async fn run(opts: Options) -> Result<(), BoxError> {
    let pki = Pki::new()?;
    let rounds = opts.rounds;
    let warmup = opts.warmup / rounds as u32;
    let measured = opts.duration / rounds as u32;
    println!(
        "e2e: {} keep-alive HTTP/1.1 connections, {rounds} rounds taking the setups in turn, \
         each {warmup:?} warm-up + {measured:?} measured per setup, {} runtime worker threads \
         on {} cores",
        opts.connections,
        opts.threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    // every setup is started (and checked) first, then measured in rounds
    let mut setups: Vec<(&str, &str, Result<Running, String>)> = Vec::new();
    let started = |r: Result<Running, BoxError>| r.map_err(|e| e.to_string());
    if opts.wants("a", "bare") {
        println!("e2e: a: bare hyper + rustls mTLS ...");
        setups.push((
            "a",
            "bare hyper + rustls mTLS",
            started(bare_setup(&pki).await),
        ));
    }
    if opts.wants("a2", "bare-h2") {
        println!("e2e: a2: bare hyper + rustls mTLS, HTTP/2 over one connection ...");
        let r = started(bare_h2_setup(&pki).await);
        setups.push(("a2", "bare hyper + rustls mTLS, HTTP/2", r));
    }
    if opts.wants("b", "mesh") {
        println!("e2e: b: mesh stack on both sides ...");
        let r = started(mesh_setup(&pki, Sides::Both).await);
        setups.push(("b", "inmesh client + server", r));
    }
    if opts.wants("b2", "mesh-h2") {
        println!("e2e: b2: mesh stack on both sides, h2UpgradePolicy UPGRADE ...");
        let r = started(mesh_h2_setup(&pki).await);
        setups.push(("b2", "inmesh, HTTP/2 hop (h2 upgrade)", r));
    }
    // the split of b's cost: one side meshed, the other a's bare rustls peer
    if opts.wants("b-in", "inbound") {
        println!("e2e: b-in: bare client -> mesh server ...");
        let r = started(mesh_setup(&pki, Sides::InboundOnly).await);
        setups.push(("b-in", "bare client -> inmesh server", r));
    }
    if opts.wants("b-out", "outbound") {
        println!("e2e: b-out: mesh client -> bare server ...");
        let r = started(mesh_setup(&pki, Sides::OutboundOnly).await);
        setups.push(("b-out", "inmesh client -> bare server", r));
    }
    if opts.wants("c", "sidecars") {
        let result = match find_nginx() {
            None => Err("nginx not found (scripts/bench-e2e installs it with apt-get)".into()),
            Some(nginx) => {
                println!("e2e: c: nginx sidecar pair ({}) ...", nginx.display());
                started(sidecar_setup(&pki, &nginx).await)
            }
        };
        if let Err(why) = &result {
            println!("e2e: c skipped: {why}");
        }
        setups.push(("c", "nginx sidecar pair (2 workers)", result));
    }

    // the saturation phase, then the fixed-rate phase, each in rounds
    let saturate = Load::Saturate {
        connections: opts.connections,
    };
    let totals = if measured.is_zero() {
        setups
            .iter()
            .map(|_| Err("no saturation phase (E2E_SECS=0)".into()))
            .collect()
    } else {
        run_rounds(&setups, saturate, warmup, measured, rounds).await
    };
    let paced = Load::Paced {
        connections: opts.rate_connections,
        rate: opts.rate,
    };
    let rate_measured = opts.rate_duration / rounds as u32;
    let rate_totals = if opts.rate > 0 {
        println!(
            "e2e: fixed rate: {} req/s over {} connections, each setup {warmup:?} warm-up + \
             {rate_measured:?} measured per round",
            opts.rate, opts.rate_connections
        );
        Some(run_rounds(&setups, paced, warmup, rate_measured, rounds).await)
    } else {
        None
    };
    let mut rows: Vec<(&str, &str, Result<Stats, String>)> = Vec::new();
    let mut rate_rows: Vec<(&str, &str, Result<Stats, String>)> = Vec::new();
    let mut rate_totals = rate_totals.map(Vec::into_iter);
    for ((key, name, setup), total) in setups.into_iter().zip(totals) {
        let rate_total = rate_totals.as_mut().and_then(Iterator::next);
        let checked = match setup {
            Err(why) => Err(why),
            Ok(mut running) => {
                let checked = running.check.take().map_or(Ok(()), |check| check());
                drop(running);
                checked.map_err(|e| e.to_string())
            }
        };
        let stats =
            |t: Result<Totals, String>, m| checked.clone().and_then(|()| t.map(|t| t.stats(m)));
        if let Some(t) = rate_total {
            rate_rows.push((key, name, stats(t, rate_measured)));
        }
        rows.push((key, name, stats(total, measured)));
    }

    println!();
    println!("allocator: {ALLOCATOR} (the whole process, every setup)");
    println!(
        "saturation ({} connections, each sending as fast as it is answered):",
        opts.connections
    );
    print_table(&rows, false);
    if !rate_rows.is_empty() {
        println!();
        println!(
            "fixed rate ({} req/s over {} connections; late: sent more than one interval after \
             its slot):",
            opts.rate, opts.rate_connections
        );
        print_table(&rate_rows, true);
    }
    print_ratios(&rows);
    if !rate_rows.is_empty() {
        print_paced_ratios(&rate_rows, opts.rate);
    }
    if opts.quick {
        // smoke run: a setup that ran must have served requests without errors (a skipped
        // setup is reported above with its reason)
        for (key, _, r) in rows.iter().chain(&rate_rows) {
            if let Ok(s) = r
                && (s.requests == 0 || s.errors + s.non_ok > 0)
            {
                return Err(format!(
                    "setup {key}: {} requests, {} errors, {} non-200",
                    s.requests, s.errors, s.non_ok
                )
                .into());
            }
        }
        println!("e2e: smoke run passed");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// setup b: the mesh stack

/// The mesh config of setup b: Istio YAML (PeerAuthentication STRICT, an
/// AuthorizationPolicy allowing only the client's principal, a VirtualService routing to
/// subset v1, a DestinationRule with ISTIO_MUTUAL and LEAST_REQUEST, the Kubernetes Service).
const MESH_YAML: &str = include_str!("e2e/mesh.yaml");

/// Sum of `istio_requests_total` with `response_code="200"` in a metrics exposition.
fn requests_total_200(exposition: &str) -> u64 {
    exposition
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Registers the server workload (app httpbin, version v1) at `addr` in the registry.
fn register_httpbin(mesh: &Mesh, pki: &Pki, addr: SocketAddr) {
    mesh.register(Workload {
        name: "httpbin-v1".to_owned(),
        namespace: "default".to_owned(),
        service_account: pki.server_id.service_account().to_owned(),
        labels: httpbin_labels(),
        address: addr.ip(),
        ports: [("http".to_owned(), addr.port())].into(),
        locality: None,
        weight: 0,
    });
}

fn httpbin_labels() -> Labels {
    [
        ("app".to_owned(), "httpbin".to_owned()),
        ("version".to_owned(), "v1".to_owned()),
    ]
    .into()
}

/// The mesh server of setup b on a fresh loopback port, serving the app.
struct MeshSide {
    addr: SocketAddr,
    metrics: Arc<IstioMetrics>,
    /// Requests the app got over HTTP/2 (b2 checks its hop really is HTTP/2).
    h2_requests: Arc<std::sync::atomic::AtomicU64>,
}

async fn start_mesh_server(
    mesh: &Mesh,
    pki: &Pki,
    tasks: &mut Tasks,
) -> Result<MeshSide, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = MeshServer::builder(
        mesh.clone(),
        "default",
        pki.server_id.service_account(),
        httpbin_labels(),
        WorkloadCredentials::new(pki.server.clone())?,
    )
    .workload_name("httpbin-v1")
    .service_host("httpbin.default.svc.cluster.local")
    .port(8080)
    .trace(trace_config())
    .build()?;
    let metrics = server.metrics().clone();
    let h2_requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let h2 = Arc::clone(&h2_requests);
    let app = tower::service_fn(move |req: Request<ServerBody>| {
        if req.version() == http::Version::HTTP_2 {
            h2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        async { Ok::<_, Infallible>(app_response()) }
    });
    tasks.spawn(async move { server.serve(listener, app).await });
    Ok(MeshSide {
        addr,
        metrics,
        h2_requests,
    })
}

fn mesh_client(mesh: &Mesh, pki: &Pki) -> Result<MeshClient, BoxError> {
    let me = ClientWorkload::new("sleep", "default", pki.client_id.service_account())
        .with_label("app", "sleep");
    Ok(MeshClient::builder(mesh.clone(), me)
        .credentials(WorkloadCredentials::new(pki.client.clone())?)
        .trace(trace_config())
        .build())
}

/// The trace headers both mesh sides write: by default the mesh's own choice, no tracer
/// (Istio's default install since 1.22: only `x-request-id`); `E2E_TRACE=b3` a Zipkin
/// tracer, `E2E_TRACE=w3c+b3` Zipkin with `USE_B3_WITH_W3C_PROPAGATION`, `E2E_TRACE=w3c`
/// an `opentelemetry` provider (each with a server span of its own, as istiod configures
/// them).
fn trace_config() -> TraceConfig {
    use mesh_tower::trace::Formats;
    let zipkin = TraceConfig::default();
    match std::env::var("E2E_TRACE").as_deref() {
        Ok("none") | Err(_) => TraceConfig {
            formats: Formats::NONE,
            ..zipkin
        },
        Ok("b3") => zipkin,
        Ok("w3c+b3") => TraceConfig {
            formats: Formats {
                w3c: true,
                ..Formats::B3
            },
            ..zipkin
        },
        Ok("w3c") => TraceConfig {
            formats: Formats::W3C,
            ..zipkin
        },
        Ok(other) => {
            eprintln!("e2e: E2E_TRACE={other:?} is not none, b3, w3c or w3c+b3; using none");
            TraceConfig {
                formats: Formats::NONE,
                ..zipkin
            }
        }
    }
}

/// Which sides of setup b run the mesh stack.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sides {
    /// Mesh client and mesh server (setup b).
    Both,
    /// Bare rustls client (as in a) to the mesh server: the inbound stack's cost.
    InboundOnly,
    /// Mesh client to the bare rustls server (as in a): the outbound stack's cost.
    OutboundOnly,
}

/// Setup b: the app behind [`MeshServer`] (STRICT mTLS, authorization, metrics, access log,
/// trace context), called through [`MeshClient`] (routing, subset, least-request balancing,
/// ISTIO_MUTUAL origination with SPIFFE checks, metrics, trace context), both configured by
/// `benches/e2e/mesh.yaml` and sharing one [`Mesh`] as workloads of one program would.
/// `sides` replaces one side by a's bare rustls peer, to split the cost.
async fn mesh_setup(pki: &Pki, sides: Sides) -> Result<Running, BoxError> {
    mesh_setup_with(pki, sides, false).await
}

/// Setup b2: b with MeshConfig `h2UpgradePolicy: UPGRADE`, so the mesh hop is HTTP/2 (one
/// multiplexed connection, as Envoy and Linkerd's proxies talk to each other); the load
/// generator and the app still speak HTTP/1.1 semantics to the mesh.
async fn mesh_h2_setup(pki: &Pki) -> Result<Running, BoxError> {
    mesh_setup_with(pki, Sides::Both, true).await
}

async fn mesh_setup_with(pki: &Pki, sides: Sides, h2_upgrade: bool) -> Result<Running, BoxError> {
    let mesh = if h2_upgrade {
        let config = MeshConfig::from_yaml("h2UpgradePolicy: UPGRADE")?;
        let mesh = Mesh::with_mesh_config(&config);
        mesh.reload_loaded(mesh_core::load::load_str(MESH_YAML, "mesh.yaml"))?;
        mesh
    } else {
        Mesh::from_yaml(MESH_YAML)?
    };
    let mut tasks = Tasks::default();
    let server = if sides == Sides::OutboundOnly {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tasks.spawn(serve_bare(listener, Some(pki.bare_server()?)));
        register_httpbin(&mesh, pki, addr);
        None
    } else {
        let side = start_mesh_server(&mesh, pki, &mut tasks).await?;
        register_httpbin(&mesh, pki, side.addr);
        Some(side)
    };
    let client = mesh_client(&mesh, pki)?;
    let client_metrics = client.metrics().clone();
    let target = match (&server, sides) {
        (Some(side), Sides::InboundOnly) => Target::Tls {
            addr: side.addr,
            connector: pki.bare_client()?,
            name: ServerName::try_from(SERVER_NAME)?,
        },
        _ => Target::Mesh { client },
    };

    if let Some(side) = &server {
        // the stack must really be in force: a method the policy does not allow is denied
        // by the server's authorization (403 RBAC), and plaintext is refused (STRICT)
        let (status, body) = target
            .connect()
            .await?
            .fetch(target.request_with(http::Method::POST))
            .await?;
        if status != StatusCode::FORBIDDEN || !body.starts_with(b"RBAC: access denied") {
            return Err(format!(
                "POST should be denied by the AuthorizationPolicy: {status} {body:?}"
            )
            .into());
        }
        let plain = Target::Plain { addr: side.addr };
        let refused = match plain.connect().await {
            Err(_) => true,
            Ok(mut c) => c.fetch(plain.request()).await.is_err(),
        };
        if !refused {
            return Err("the mesh server answered plaintext under STRICT".into());
        }
    }

    probe(&target).await?;
    let mut running = Running::new(target, tasks);
    running.check = server.map(|side| -> Check {
        Box::new(move || {
            // b2 measures an HTTP/2 hop only if the hop was HTTP/2 (and b an HTTP/1.1 one)
            let h2 = side.h2_requests.load(std::sync::atomic::Ordering::Relaxed);
            if sides == Sides::Both && (h2 > 0) != h2_upgrade {
                return Err(format!(
                    "the mesh hop was not the protocol this setup measures: {h2} requests \
                     over HTTP/2 with h2UpgradePolicy {}",
                    if h2_upgrade { "UPGRADE" } else { "unset" }
                )
                .into());
            }
            if sides == Sides::Both {
                println!(
                    "e2e: {}: istio_requests_total 200s: server {} (reporter=destination), \
                     client {} (reporter=source)",
                    if h2_upgrade { "b2" } else { "b" },
                    requests_total_200(&side.metrics.render()),
                    requests_total_200(&client_metrics.render()),
                );
            }
            Ok(())
        })
    });
    Ok(running)
}

fn main() {
    let mut opts = Options::from_env();
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`, `--all-targets`)
    // this is a quick smoke run: self-checks, then every setup briefly, failing on errors
    if !std::env::args().any(|a| a == "--bench") {
        histogram_self_check();
        ratio_self_check();
        opts.quick = true;
        opts.warmup = Duration::ZERO;
        opts.duration = Duration::from_secs(1);
        opts.rounds = 2;
        opts.connections = opts.connections.min(4);
        opts.rate = opts.rate.min(200);
        opts.rate_connections = opts.rate_connections.min(4);
        opts.rate_duration = Duration::from_secs(1);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("e2e: cannot build the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(opts)) {
        eprintln!("e2e: {e}");
        std::process::exit(1);
    }
}

/// The histogram's own checks, run in quick mode: buckets never go backwards, every value
/// lands within 2 % of its bucket's value, quantiles come out where they should.
fn histogram_self_check() {
    let mut last = 0;
    for v in (0..200_000u64).chain([1 << 40, u64::MAX / 2, u64::MAX]) {
        let i = Histogram::index(v);
        assert!(i >= last, "histogram index must not decrease at {v}");
        assert!(i < BUCKETS, "{v} -> bucket {i} out of range");
        last = i;
        if v > 0 {
            let err = (Histogram::value(i) as f64 - v as f64).abs() / v as f64;
            assert!(
                err < 0.02,
                "{v} -> bucket {i} value {}",
                Histogram::value(i)
            );
        }
    }
    let mut h = Histogram::new();
    for v in 1..=1000u64 {
        h.record(v * 1000);
    }
    let p50 = h.quantile(0.5).as_nanos() as f64;
    let p99 = h.quantile(0.99).as_nanos() as f64;
    assert!((p50 / 500_000.0 - 1.0).abs() < 0.02, "p50 {p50}");
    assert!((p99 / 990_000.0 - 1.0).abs() < 0.02, "p99 {p99}");
    assert_eq!(h.quantile(1.0), Duration::from_micros(1000));
    let mut other = Histogram::new();
    other.record(5_000_000);
    h.merge(&other);
    assert_eq!(h.total, 1001);
    assert_eq!(h.quantile(1.0), Duration::from_millis(5));
    assert_eq!(Histogram::new().quantile(0.5), Duration::ZERO);
    println!("e2e: histogram self-check passed");
}

/// The ratios' own checks, run in quick mode: a round's ratio pairs the two setups of that
/// round, and the verdict's median is the middle one (the mean of the middle two).
fn ratio_self_check() {
    let stats = |rounds: &[(f64, u64)]| Stats {
        requests: 0,
        rps: rounds.iter().map(|r| r.0).sum::<f64>() / rounds.len() as f64,
        p50: Duration::ZERO,
        p90: Duration::ZERO,
        p99: Duration::from_micros(rounds.iter().map(|r| r.1).max().unwrap_or(0)),
        p999: Duration::ZERO,
        max: Duration::ZERO,
        cpu_per_req: None,
        non_ok: 0,
        errors: 0,
        late: 0,
        rounds: rounds
            .iter()
            .map(|&(rps, p99)| (rps, Duration::from_micros(p99)))
            .collect(),
    };
    let rows = vec![
        ("a", "", Ok(stats(&[(100.0, 10), (200.0, 10), (100.0, 20)]))),
        ("b", "", Ok(stats(&[(50.0, 20), (180.0, 10), (90.0, 40)]))),
        ("c", "", Err("skipped".to_owned())),
    ];
    let r = ratio(&rows, "b", "a").expect("a and b ran");
    assert_eq!(r.rounds, [(0.5, 2.0), (0.9, 1.0), (0.9, 2.0)]);
    assert_eq!(r.median(), (0.9, 2.0));
    assert!(ratio(&rows, "b", "c").is_none(), "c did not run");
    let even = Ratio {
        throughput: 0.0,
        p99: 0.0,
        rounds: vec![(0.4, 1.0), (0.8, 3.0)],
    };
    assert!((even.median().0 - 0.6).abs() < 1e-9 && (even.median().1 - 2.0).abs() < 1e-9);
    println!("e2e: ratio self-check passed");
}
