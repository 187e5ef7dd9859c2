//! Trace propagation through a real inbound server that calls a real upstream, and the
//! access log events of those requests.

use mesh_core::meshconfig::{TracePropagation, Tracing};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_tower::accesslog::{AccessLogLayer, TARGET};
use mesh_tower::envoy::LocalReply;
use mesh_tower::trace::{self, PropagateTraceLayer, TraceConfig, TraceContext};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

async fn serve<S, B>(svc: S) -> SocketAddr
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The upstream: echoes the trace headers it received, one per line.
async fn echo_trace_headers<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut out = String::new();
    for name in [
        "traceparent",
        "tracestate",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-request-id",
    ] {
        if let Some(v) = req.headers().get(name) {
            out.push_str(&format!("{name}={}\n", v.to_str().unwrap()));
        }
    }
    Ok(Response::new(Full::new(Bytes::from(out))))
}

fn parse_lines(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Captures access-log events as field maps.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

struct Visitor<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Visitor(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

#[tokio::test]
async fn trace_flows_from_inbound_to_outbound_and_requests_are_logged() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let upstream = serve(ServiceBuilder::new().service_fn(echo_trace_headers)).await;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // W3C and B3, as Zipkin with `traceContextOption: USE_B3_WITH_W3C_PROPAGATION`
    let both = TraceConfig::from_mesh(&Tracing {
        enabled: true,
        propagation: TracePropagation::B3AndW3c,
        ..Tracing::default()
    });
    // The application's outbound client, wrapped by the outbound propagation layer.
    let outbound = ServiceBuilder::new()
        .layer(PropagateTraceLayer::outbound(both))
        .service_fn(move |req: Request<Full<Bytes>>| {
            let client = client.clone();
            async move { client.request(req).await }
        });

    let frontend = ServiceBuilder::new()
        .layer(AccessLogLayer::inbound())
        .layer(PropagateTraceLayer::inbound(TraceConfig {
            sampling_percent: 100.0,
            ..both
        }))
        .service_fn(move |req: Request<_>| {
            let outbound = outbound.clone();
            async move {
                if req.uri().path() == "/missing" {
                    return Ok::<_, Infallible>(
                        LocalReply::NoRoute.to_response::<Full<Bytes>>(false),
                    );
                }
                let mine = req.extensions().get::<TraceContext>().cloned().unwrap();
                assert_eq!(trace::current().as_ref(), Some(&mine), "task-local context");
                // The application does not copy any header: the layer carries the trace on.
                let up = Request::get(format!("http://{upstream}/"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = outbound.oneshot(up).await.unwrap();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let mut text = String::from_utf8(body.to_vec()).unwrap();
                text.push_str(&format!("frontend_trace={}\n", mine.trace_id_hex()));
                text.push_str(&format!("frontend_span={:016x}\n", mine.span_id));
                text.push_str(&format!(
                    "frontend_request_id={}\n",
                    mine.request_id.as_ref().unwrap().to_str().unwrap()
                ));
                Ok(Response::new(Full::new(Bytes::from(text))))
            }
        });
    let frontend_addr = serve(frontend).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    // 1. The caller sends W3C context and a request id.
    let req = Request::get(format!("http://{frontend_addr}/api"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("tracestate", "congo=t61rcWkgMzE")
        .header("x-request-id", "req-1")
        .header("user-agent", "test-agent")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let seen = parse_lines(std::str::from_utf8(&body).unwrap());
    let frontend_span = &seen["frontend_span"];
    assert_eq!(seen["frontend_trace"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(seen["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let tp = &seen["traceparent"];
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(tp.ends_with("-01"), "sampled decision kept: {tp}");
    assert_eq!(
        &seen["x-b3-parentspanid"], frontend_span,
        "upstream's parent is the frontend span"
    );
    assert_ne!(&seen["x-b3-spanid"], frontend_span);
    assert_eq!(seen["tracestate"], "congo=t61rcWkgMzE");
    assert_eq!(seen["x-request-id"], "req-1");
    assert_eq!(seen["frontend_request_id"], "req-1");

    // 2. No context at all: the frontend starts a trace and a request id, the upstream
    //    shares both.
    let resp = client
        .request(
            Request::get(format!("http://{frontend_addr}/api"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let seen = parse_lines(std::str::from_utf8(&body).unwrap());
    assert_eq!(seen["x-b3-traceid"], seen["frontend_trace"]);
    assert_eq!(seen["x-b3-parentspanid"], seen["frontend_span"]);
    assert_eq!(seen["x-request-id"], seen["frontend_request_id"]);
    assert_eq!(seen["x-request-id"].len(), 36, "a UUID");
    assert_eq!(seen["x-b3-sampled"], "1", "sampling 100% for new traces");

    // 3. A local reply is logged with its flag and details.
    let resp = client
        .request(
            Request::get(format!("http://{frontend_addr}/missing"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    resp.into_body().collect().await.unwrap();

    let events = capture.0.lock().unwrap().clone();
    assert_eq!(events.len(), 3, "{events:#?}");
    let first = &events[0];
    assert_eq!(first["direction"], "inbound");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/api");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["response_code"], "200");
    assert_eq!(first["response_flags"], "-");
    assert_eq!(first["response_code_details"], "via_upstream");
    assert_eq!(first["request_id"], "req-1");
    assert_eq!(first["user_agent"], "test-agent");
    assert_eq!(first["bytes_sent"], body_len_of_first(first));
    let message = &first["message"];
    assert!(
        message.contains("\"GET /api HTTP/1.1\" 200 - via_upstream"),
        "{message}"
    );
    assert!(message.contains("\"test-agent\" \"req-1\""), "{message}");
    let missing = &events[2];
    assert_eq!(missing["response_code"], "404");
    assert_eq!(missing["response_flags"], "NR");
    assert_eq!(missing["response_code_details"], "route_not_found");
    assert!(missing["message"].contains("404 NR route_not_found"));
}

/// The first response's body length, as logged (checked to be a positive number).
fn body_len_of_first(fields: &BTreeMap<String, String>) -> String {
    let n: u64 = fields["bytes_sent"].parse().unwrap();
    assert!(n > 100, "the echoed headers: {n}");
    n.to_string()
}
