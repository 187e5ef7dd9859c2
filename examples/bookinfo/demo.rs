//! The bookinfo demo's logic, shared by `examples/bookinfo.rs` (which prints the report)
//! and `tests/examples.rs` (which checks that what it prints is true).
//!
//! Istio's bookinfo in one process: productpage, details, reviews v1/v2/v3 and ratings are
//! axum `Router`s served by `MeshServer`s on loopback ports, each with its own SPIFFE
//! identity and a certificate from an in-process `MeshCa` (kept fresh by a
//! `CertManager`). Every call between them goes through a `MeshClient`: VirtualService
//! routing, DestinationRule subsets, mTLS with the server's identity checked, Istio
//! metrics. The config is the plain Istio YAML in `examples/bookinfo/`.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use inmesh::core::mesh::Mesh;
use inmesh::core::names::MeshOptions;
use inmesh::core::registry::Workload;
use inmesh::tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
use inmesh::tower::inbound::MeshServer;
use inmesh::tower::metrics::{serve_metrics, IstioMetrics};
use inmesh::tower::outbound::{ClientWorkload, MeshClient};
use serde_json::{json, Value};
use tokio::net::TcpListener;

type BoxError = Box<dyn Error + Send + Sync>;

const TRUST_DOMAIN: &str = "cluster.local";
const NS: &str = "default";

/// The directory holding the demo's Istio YAML.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bookinfo")
}

/// What the demo measured.
#[derive(Debug)]
pub struct Report {
    /// Requests to /productpage without a user, and which reviews version answered each.
    pub anonymous: BTreeMap<String, u32>,
    /// Requests to /productpage as user jason, and which reviews version answered each.
    pub jason: BTreeMap<String, u32>,
    /// The direct call to reviews from another identity.
    pub denied: Denied,
    /// Where the Prometheus endpoint listens.
    pub metrics_addr: SocketAddr,
    /// `istio_requests_total` lines scraped from it (reviews, as the server reports).
    pub metrics_lines: Vec<String>,
    /// How long the request phase took.
    pub elapsed: Duration,
}

/// The direct call to reviews from an identity the policy refuses.
#[derive(Debug)]
pub struct Denied {
    /// The caller's SPIFFE principal.
    pub caller: String,
    /// The status the caller received.
    pub status: u16,
    /// The body the caller received.
    pub body: String,
    /// The deciding policy (`ns/name`) as the reviews server logged it.
    pub policy: Option<String>,
}

impl Report {
    /// The share of `version` among the anonymous requests, in percent.
    pub fn anonymous_share(&self, version: &str) -> f64 {
        share(&self.anonymous, version)
    }
}

fn share(counts: &BTreeMap<String, u32>, version: &str) -> f64 {
    let total: u32 = counts.values().sum();
    if total == 0 {
        return 0.0;
    }
    f64::from(counts.get(version).copied().unwrap_or(0)) * 100.0 / f64::from(total)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u32 = self.anonymous.values().sum();
        let split: Vec<String> = self
            .anonymous
            .iter()
            .map(|(v, n)| format!("{v} {n} ({:.1}%)", self.anonymous_share(v)))
            .collect();
        writeln!(
            f,
            "traffic split  {total} requests to /productpage: reviews {}  (VirtualService reviews: 80% v1 / 20% v3)",
            split.join(", ")
        )?;
        let jason: u32 = self.jason.values().sum();
        let versions: Vec<&str> = self.jason.keys().map(String::as_str).collect();
        let all_v2 = versions == ["v2"];
        writeln!(
            f,
            "jason          {jason} requests with end-user: jason -> reviews {}{}",
            versions.join(", "),
            if all_v2 {
                "  (all of them on v2, as routed)"
            } else {
                "  (NOT all on v2!)"
            }
        )?;
        let d = &self.denied;
        writeln!(
            f,
            "authorization  {} -> reviews: {} {:?}, denied by AuthorizationPolicy {}",
            d.caller,
            d.status,
            d.body,
            d.policy.as_deref().unwrap_or("(none named)")
        )?;
        writeln!(
            f,
            "metrics        http://{}/stats/prometheus (also /metrics; --serve keeps it up), e.g.:",
            self.metrics_addr
        )?;
        for l in &self.metrics_lines {
            writeln!(f, "  {}", abbreviate(l))?;
        }
        write!(f, "done in {:.2?}", self.elapsed)
    }
}

/// The labels of an `istio_requests_total` line a reader looks for first; the others (24
/// in all) are shown as `…` (the endpoint serves them all).
const SHOWN_LABELS: [&str; 5] = [
    "reporter",
    "source_workload",
    "destination_workload",
    "response_code",
    "connection_security_policy",
];

/// `name{a="1",b="2",…} value` with only [`SHOWN_LABELS`] spelled out, in their order in
/// the line; a line that is not a labelled sample is returned as it is.
fn abbreviate(line: &str) -> String {
    let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else {
        return line.to_owned();
    };
    let mut out = String::from(&line[..=open]);
    // label values here are names, codes and SPIFFE ids: no `",` inside a value
    for pair in line[open + 1..close].split("\",") {
        let name = pair.split('=').next().unwrap_or_default();
        if SHOWN_LABELS.contains(&name) {
            if !out.ends_with('{') {
                out.push(',');
            }
            out.push_str(pair.trim_end_matches('"'));
            out.push('"');
        } else if !out.ends_with('…') {
            if !out.ends_with('{') {
                out.push(',');
            }
            out.push('…');
        }
    }
    out.push_str(&line[close..]);
    out
}

// -------------------------------------------------------------------------------------
// Capturing the deciding policy from the servers' authorization log.

/// A `tracing` layer that keeps the authorization denials the mesh servers log
/// (target `inmesh::authz`): the deciding policy and the caller's principal.
#[derive(Clone, Debug, Default)]
pub struct DenialLog {
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl DenialLog {
    /// The denials logged so far: (policy `ns/name`, principal).
    pub fn denials(&self) -> Vec<(String, String)> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[derive(Default)]
struct DenialFields {
    denied: bool,
    policy: String,
    principal: String,
}

impl tracing::field::Visit for DenialFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "policy" => self.policy = value.to_owned(),
            "principal" => self.principal = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.denied = format!("{value:?}") == "RBAC: access denied";
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DenialLog {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != inmesh::tower::authz::TARGET {
            return;
        }
        let mut f = DenialFields::default();
        event.record(&mut f);
        if f.denied
            && let Ok(mut v) = self.seen.lock()
        {
            v.push((f.policy, f.principal));
        }
    }
}

// -------------------------------------------------------------------------------------
// The workloads.

/// The in-process mesh: config, CA and one metrics registry for every workload.
struct Bookinfo {
    mesh: Mesh,
    ca: Arc<MeshCa>,
    metrics: Arc<IstioMetrics>,
    managers: Vec<CertManager>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Bookinfo {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Bookinfo {
    /// A certificate (renewed at half life) for service account `sa`.
    async fn identity(
        &mut self,
        sa: &str,
    ) -> Result<Arc<inmesh::tls::WorkloadCredentials>, BoxError> {
        let id = Identity::new(TRUST_DOMAIN, NS, sa)?;
        let source = Arc::new(CaSource::new(Arc::clone(&self.ca)));
        let m = CertManager::start(id, source, RotationOptions::default()).await?;
        let creds = Arc::clone(m.credentials());
        self.managers.push(m);
        Ok(creds)
    }

    /// A mesh client for workload `name` (app, version) running as `sa`.
    async fn client(
        &mut self,
        name: &str,
        app: &str,
        version: &str,
        sa: &str,
    ) -> Result<MeshClient, BoxError> {
        let me = ClientWorkload::new(name, NS, sa)
            .with_label("app", app)
            .with_label("version", version);
        let creds = self.identity(sa).await?;
        Ok(MeshClient::builder(self.mesh.clone(), me)
            .credentials(creds)
            .metrics(Arc::clone(&self.metrics))
            .build())
    }

    /// Serves `app` as the workload `<app>-<version>` of service `<app>` on a loopback
    /// port, and registers it as that service's endpoint.
    async fn serve(
        &mut self,
        app: &str,
        version: &str,
        sa: &str,
        router: Router,
    ) -> Result<(), BoxError> {
        let name = format!("{app}-{version}");
        let labels: BTreeMap<String, String> = [
            ("app".to_owned(), app.to_owned()),
            ("version".to_owned(), version.to_owned()),
        ]
        .into();
        let creds = self.identity(sa).await?;
        let server = MeshServer::builder(self.mesh.clone(), NS, sa, labels.clone(), creds)
            .workload_name(name.as_str())
            .service_host(format!("{app}.{NS}.svc.cluster.local"))
            .metrics(Arc::clone(&self.metrics))
            .port(9080)
            .build()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = server.serve(listener, router).await {
                eprintln!("{name}: server stopped: {e}");
            }
        }));
        self.mesh.register(Workload {
            name: format!("{app}-{version}"),
            namespace: NS.to_owned(),
            service_account: sa.to_owned(),
            labels,
            address: addr.ip(),
            ports: [("http".to_owned(), addr.port())].into(),
            locality: None,
            weight: 0,
        });
        Ok(())
    }
}

/// Sends a GET through the mesh and reads the JSON answer.
async fn get_json(
    client: &MeshClient,
    uri: &str,
    user: Option<&str>,
) -> Result<(u16, Value), BoxError> {
    let mut req = http::Request::get(uri);
    if let Some(u) = user {
        req = req.header("end-user", u);
    }
    let resp = client.request(req.body(Empty::<Bytes>::new())?).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, value))
}

fn details_app() -> Router {
    Router::new().route(
        "/details/{id}",
        get(|UrlPath(id): UrlPath<u32>| async move {
            Json(json!({
                "id": id, "author": "William Shakespeare", "year": 1595, "type": "paperback",
                "pages": 200, "publisher": "PublisherA", "language": "English",
                "ISBN-10": "1234567890", "ISBN-13": "123-1234567890"
            }))
        }),
    )
}

fn ratings_app() -> Router {
    Router::new().route(
        "/ratings/{id}",
        get(|UrlPath(id): UrlPath<u32>| async move {
            Json(json!({"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}))
        }),
    )
}

/// reviews: v1 shows no stars, v2 black stars, v3 red stars (both ask ratings).
fn reviews_app(version: &'static str, ratings: Option<MeshClient>) -> Router {
    async fn reviews(
        State((version, ratings)): State<(&'static str, Option<MeshClient>)>,
        UrlPath(id): UrlPath<u32>,
    ) -> (http::StatusCode, Json<Value>) {
        let mut stars = [Value::Null, Value::Null];
        if let Some(client) = &ratings {
            let color = if version == "v2" { "black" } else { "red" };
            match get_json(client, &format!("http://ratings:9080/ratings/{id}"), None).await {
                Ok((200, r)) => {
                    for (i, who) in ["Reviewer1", "Reviewer2"].iter().enumerate() {
                        stars[i] = json!({"stars": r["ratings"][who], "color": color});
                    }
                }
                _ => {
                    let e = json!({"error": "Ratings service is currently unavailable"});
                    stars = [e.clone(), e];
                }
            }
        }
        let [r1, r2] = stars;
        let body = json!({
            "id": id,
            "podname": format!("reviews-{version}"),
            "reviews": [
                {"reviewer": "Reviewer1", "text": "An extremely entertaining play by Shakespeare.", "rating": r1},
                {"reviewer": "Reviewer2", "text": "Absolutely fun and entertaining.", "rating": r2},
            ]
        });
        (http::StatusCode::OK, Json(body))
    }
    Router::new()
        .route("/reviews/{id}", get(reviews))
        .with_state((version, ratings))
}

/// productpage: asks details and reviews (forwarding the `end-user` header, as bookinfo's
/// productpage does after a login) and tells which reviews version answered.
fn productpage_app(client: MeshClient) -> Router {
    async fn page(
        State(client): State<MeshClient>,
        headers: HeaderMap,
    ) -> (http::StatusCode, Json<Value>) {
        let user = headers.get("end-user").and_then(|v| v.to_str().ok());
        let (details, reviews) = tokio::join!(
            get_json(&client, "http://details:9080/details/0", user),
            get_json(&client, "http://reviews:9080/reviews/0", user),
        );
        match (details, reviews) {
            (Ok((200, details)), Ok((200, reviews))) => {
                let version = reviews["podname"]
                    .as_str()
                    .and_then(|p| p.strip_prefix("reviews-"))
                    .unwrap_or("unknown")
                    .to_owned();
                let body = json!({"user": user, "details": details, "reviews": reviews, "reviews_version": version});
                (http::StatusCode::OK, Json(body))
            }
            (d, r) => {
                let status = |x: &Result<(u16, Value), BoxError>| match x {
                    Ok((s, _)) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                let body =
                    json!({"error": format!("details: {}, reviews: {}", status(&d), status(&r))});
                (http::StatusCode::BAD_GATEWAY, Json(body))
            }
        }
    }
    Router::new()
        .route("/productpage", get(page))
        .with_state(client)
}

/// Starts bookinfo, drives `requests` anonymous requests and a tenth as many as jason to
/// /productpage (`concurrency` at a time), makes the refused call, and scrapes the metrics.
///
/// The deciding policy of the refused call is read from `denials`, which must be a layer
/// of the `tracing` subscriber in force while this runs.
pub async fn run(requests: u32, concurrency: u32, denials: &DenialLog) -> Result<Report, BoxError> {
    let mesh = Mesh::from_paths([config_dir()], MeshOptions::default())?;
    let mut bi = Bookinfo {
        mesh,
        ca: Arc::new(MeshCa::self_signed(TRUST_DOMAIN)?),
        metrics: Arc::new(IstioMetrics::new()),
        managers: Vec::new(),
        tasks: Vec::new(),
    };

    // the workloads
    bi.serve("details", "v1", "bookinfo-details", details_app())
        .await?;
    bi.serve("ratings", "v1", "bookinfo-ratings", ratings_app())
        .await?;
    bi.serve("reviews", "v1", "bookinfo-reviews", reviews_app("v1", None))
        .await?;
    for v in ["v2", "v3"] {
        let ratings = bi
            .client(&format!("reviews-{v}"), "reviews", v, "bookinfo-reviews")
            .await?;
        bi.serve(
            "reviews",
            v,
            "bookinfo-reviews",
            reviews_app(v, Some(ratings)),
        )
        .await?;
    }
    let pp = bi
        .client(
            "productpage-v1",
            "productpage",
            "v1",
            "bookinfo-productpage",
        )
        .await?;
    bi.serve(
        "productpage",
        "v1",
        "bookinfo-productpage",
        productpage_app(pp),
    )
    .await?;

    // the metrics endpoint (the sidecar's :15090/stats/prometheus)
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await?;
    let metrics_addr = metrics_listener.local_addr()?;
    bi.tasks.push(tokio::spawn(serve_metrics(
        metrics_listener,
        Arc::clone(&bi.metrics),
    )));

    // the user, entering through the ingress gateway's identity
    let user = ClientWorkload::new(
        "istio-ingressgateway",
        "istio-system",
        "istio-ingressgateway-service-account",
    )
    .with_label("app", "istio-ingressgateway");
    let id = Identity::new(
        TRUST_DOMAIN,
        "istio-system",
        "istio-ingressgateway-service-account",
    )?;
    let m = CertManager::start(
        id,
        Arc::new(CaSource::new(Arc::clone(&bi.ca))),
        RotationOptions::default(),
    )
    .await?;
    let browser = MeshClient::builder(bi.mesh.clone(), user)
        .credentials(Arc::clone(m.credentials()))
        .metrics(Arc::clone(&bi.metrics))
        .build();
    bi.managers.push(m);

    let started = Instant::now();
    let anonymous = drive(&browser, requests, concurrency, None).await?;
    let jason = drive(&browser, requests.div_ceil(10), concurrency, Some("jason")).await?;

    // a direct call to reviews from ratings' identity: refused by the reviews server
    let intruder = bi
        .client("ratings-v1", "ratings", "v1", "bookinfo-ratings")
        .await?;
    let (status, body) = get_json(&intruder, "http://reviews:9080/reviews/0", None).await?;
    let caller = format!("{TRUST_DOMAIN}/ns/{NS}/sa/bookinfo-ratings");
    let policy = denials
        .denials()
        .into_iter()
        .find(|(_, principal)| *principal == caller)
        .map(|(policy, _)| policy);
    let denied = Denied {
        caller: format!("spiffe://{caller}"),
        status,
        body: body
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string()),
        policy,
    };
    let elapsed = started.elapsed();

    let metrics_lines = scrape(metrics_addr).await?;
    Ok(Report {
        anonymous,
        jason,
        denied,
        metrics_addr,
        metrics_lines,
        elapsed,
    })
}

/// `n` GETs of /productpage, `concurrency` at a time; counts the reviews version of each.
async fn drive(
    client: &MeshClient,
    n: u32,
    concurrency: u32,
    user: Option<&'static str>,
) -> Result<BTreeMap<String, u32>, BoxError> {
    let mut set = tokio::task::JoinSet::new();
    let concurrency = concurrency.clamp(1, n.max(1));
    for w in 0..concurrency {
        let client = client.clone();
        // spread n over the workers
        let share = n / concurrency + u32::from(w < n % concurrency);
        set.spawn(async move {
            let mut counts = BTreeMap::<String, u32>::new();
            for _ in 0..share {
                let (status, page) = get_json(
                    &client,
                    "http://productpage.default.svc.cluster.local:9080/productpage",
                    user,
                )
                .await?;
                if status != 200 {
                    return Err(format!("/productpage answered {status}: {page}").into());
                }
                let v = page["reviews_version"].as_str().unwrap_or("unknown");
                *counts.entry(v.to_owned()).or_default() += 1;
            }
            Ok::<_, BoxError>(counts)
        });
    }
    let mut total = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        for (v, n) in r?? {
            *total.entry(v).or_default() += n;
        }
    }
    Ok(total)
}

/// Scrapes the endpoint over plain HTTP and keeps the reviews servers'
/// `istio_requests_total` lines (one allowed, one denied when present).
async fn scrape(addr: SocketAddr) -> Result<Vec<String>, BoxError> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}/stats/prometheus").parse()?;
    let resp = client.get(uri).await?;
    if resp.status() != 200 {
        return Err(format!("metrics endpoint answered {}", resp.status()).into());
    }
    let text = String::from_utf8(resp.into_body().collect().await?.to_bytes().to_vec())?;
    let reviews = |code: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains("reporter=\"destination\"")
                    && l.contains("destination_app=\"reviews\"")
                    && l.contains(&format!("response_code=\"{code}\""))
            })
            .max_by_key(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .map(str::to_owned)
    };
    Ok(reviews("200").into_iter().chain(reviews("403")).collect())
}
