//! `meshctl route URL`: explain offline where a request goes, as a sidecar (or a gateway)
//! would route it: the VirtualService and route that match, the weighted destinations and
//! every action, or the mesh's own answer (404, redirect, direct response, abort).
//!
//! With `--output json` exactly one JSON object is printed on stdout:
//! `{"host", "virtual_service", "route", "status", "destinations": [{"host", "subset",
//! "port", "weight", "headers", "authority"}], ...}` plus the actions (`rewrite`,
//! `redirect`, `direct_response`, `timeout`, `retries`, `fault`, `mirrors`, `headers`). A
//! destination's `headers` are its own operations (a lone destination's apply after the
//! route's `headers`); its `authority` is the Host its requests carry when the route
//! changes it: `rewrite.authority`, else a `host` the route's header operations set, else
//! one the destination's set (for a lone destination that is the route's `rewrite`, as
//! istiod builds it). `timeout` (and the retries'
//! `per_try_timeout`) is this request's, as Envoy's router works it out: a gRPC request's
//! `grpc-timeout` within the route's; `route_timeout` is the route's own. Mesh traffic is routed as the
//! client workload (`--namespace`, `--source-labels`) sees it through its `Sidecar`:
//! `sidecar` names the Sidecar that applies, `not_imported` the VirtualService for the host
//! that it does not import (the request then takes the default route),
//! `unused_virtual_services` those covering a host no service the client sees has that
//! istiod would not use on the request's port (port 80 only, or a port of a service another
//! of their hosts names), and a destination's
//! `imported` is false for a service it does not import, neither by its egress hosts nor as
//! the destination of a VirtualService it imports (the mesh client answers 502). At a
//! `--gateway`, `--claims '{"groups": ["group1"]}'` routes as a request whose verified JWT
//! has those claims (`@request.auth.claims..` matches; `claims` echoes them).
//! `--gateway` takes every Gateway the gateway workload implements (`NS/A,NS/B`): their
//! plain HTTP servers on a port share one route configuration, as istiod merges them. An
//! `https` URL is routed by the TLS-terminating HTTPS server its SNI reaches (`--sni`, by
//! default the URL's host), and only by that server's hosts, whatever the Host header says.
//! `tcp://HOST:PORT` explains a TCP connection by the VirtualServices' `tcp` routes, and
//! `tls://SNI:PORT` a TLS one by their `tls` routes, as mesh traffic or at a `--gateway`
//! (its TCP servers; for TLS, the filter chain the SNI reaches as the gateway picks it: a
//! PASSTHROUGH server's `tls` routes by `sniHosts`, a TLS-terminating `TLS` server's `tcp`
//! route, an AUTO_PASSTHROUGH server's `outbound_` destination; `--sni ""` for a client
//! that sends none); the JSON then has `protocol`, `host`, `port`, `virtual_service`,
//! `route` (of kind `route_kind`), `filter_chain` (at a gateway, which chain took it) and
//! the `destinations` with their Envoy `cluster`.
//! Exit status 0 when a decision was made, 2 on a usage error or a config that cannot
//! be loaded.

use std::path::PathBuf;
use std::process::ExitCode;

use mesh_core::authz::RequestAuth;
use mesh_core::diag::Diagnostic;
use mesh_core::load::{LoadOptions, Loader};
use mesh_core::meshconfig::MeshConfig;
use mesh_core::model::{Labels, OutboundMode};
use mesh_core::names::MeshOptions;
use mesh_core::route::{
    AbortStatus, HeaderOpList, HttpRequestAttrs, RetryPolicy, RouteDecision, RouteOutcome,
    WeightedDestination,
};
use mesh_core::sidecar::SidecarScope;
use mesh_core::snapshot::Snapshot;
use serde_json::{json, Value};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// A short human explanation.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `meshctl route`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The request URL (`http://reviews:9080/reviews/0`).
    #[arg(value_name = "URL")]
    url: String,
    /// Config file or directory (repeatable; `-f` as with kubectl).
    #[arg(
        long = "config",
        short = 'c',
        visible_alias = "filename",
        visible_short_alias = 'f',
        value_name = "PATH",
        required = true
    )]
    config: Vec<PathBuf>,
    /// The client's namespace.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Request method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// Request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The client workload's labels `k=v,k=v` (for `sourceLabels`).
    #[arg(long, value_name = "K=V,...")]
    source_labels: Option<String>,
    /// Route as the gateway workload implementing these Gateways (`NS/NAME`,
    /// comma-separated; `NAME` is in `--namespace`) instead of as mesh traffic;
    /// `--namespace` is then the gateway workload's namespace.
    #[arg(long, value_name = "NS/NAME[,..]")]
    gateway: Option<String>,
    /// The TLS server name the client sends to the `--gateway` (an `https` URL): it picks
    /// the HTTPS server, whose hosts alone route the request. Default: the URL's host.
    #[arg(long, value_name = "NAME", requires = "gateway")]
    sni: Option<String>,
    /// The verified JWT's claims, a JSON object (`'{"groups": ["group1"]}'`), for JWT claim
    /// based routing (`@request.auth.claims..` matches) at the `--gateway`; without it the
    /// request carries no token.
    #[arg(long, value_name = "JSON", requires = "gateway")]
    claims: Option<String>,
    /// Namespace given to config objects without one.
    #[arg(long, default_value = "default")]
    config_namespace: String,
    /// The mesh's MeshConfig (trust domain, root namespace, extension providers, default
    /// retry policy, default exportTo).
    #[arg(long, value_name = "FILE")]
    mesh_config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
}

/// Loads the config for `route`/`authz`: load errors are fatal (printed, `Err`); validation
/// errors are printed as warnings (Istio would reject such config; we still explain it).
/// The snapshot takes the MeshConfig's options (trust domain, root namespace, extension
/// providers, default retry policy and exportTo, ...) when there is one.
pub(crate) fn load_snapshot(
    paths: &[PathBuf],
    config_ns: &str,
    mesh_config: Option<&MeshConfig>,
) -> Result<Snapshot, ExitCode> {
    load_config(paths, config_ns, mesh_config).map(|(snap, _)| snap)
}

/// [`load_snapshot`], with the objects it was built from (Kubernetes Services and pods as
/// written, which the snapshot keeps only as its registry sees them).
pub(crate) fn load_config(
    paths: &[PathBuf],
    config_ns: &str,
    mesh_config: Option<&MeshConfig>,
) -> Result<(Snapshot, Vec<mesh_core::model::ConfigObject>), ExitCode> {
    let loader = Loader::new(LoadOptions {
        default_namespace: config_ns.to_owned(),
        ..LoadOptions::default()
    });
    let loaded = match crate::validate::load_inputs(&loader, paths) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
    };
    if loaded.has_errors() {
        for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
            eprintln!("{}", loaded.sources.render(d));
        }
        eprintln!("error: the configuration cannot be loaded");
        return Err(ExitCode::from(2));
    }
    let invalid: Vec<Diagnostic> = mesh_core::validate::validate_all(&loaded.objects)
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    for d in &invalid {
        eprintln!("{}", loaded.sources.render(d));
    }
    if !invalid.is_empty() {
        eprintln!(
            "warning: Istio would reject this configuration ({} error(s)); explaining it anyway",
            invalid.len()
        );
    }
    let opts = MeshOptions {
        default_namespace: config_ns.to_owned(),
        ..mesh_config.map_or_else(MeshOptions::default, MeshOptions::from_mesh_config)
    };
    let snap = Snapshot::build(&loaded.objects, opts);
    for e in snap.compile_errors() {
        eprintln!("warning: {e}");
    }
    Ok((snap, loaded.objects))
}

/// Parses `k=v,k=v`.
pub(crate) fn parse_labels(s: Option<&str>) -> Result<Labels, String> {
    let mut out = Labels::new();
    for kv in s
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("label {kv:?} is not k=v"))?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// Parses `Name: value` headers.
pub(crate) fn parse_headers(hs: &[String]) -> Result<http::HeaderMap, String> {
    let mut out = http::HeaderMap::new();
    for h in hs {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("header {h:?} is not `Name: value`"))?;
        let name = http::header::HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("invalid header name {k:?}"))?;
        let value = http::HeaderValue::from_str(v.trim())
            .map_err(|_| format!("invalid header value {v:?}"))?;
        out.append(name, value);
    }
    Ok(out)
}

/// A destination: its host, subset, port and weight, and its own header operations
/// (`headers`: `request` and `response` `set`/`add`/`remove`, null without any).
/// The host of a request's authority, without a port.
fn authority_host(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => authority,
    }
}

fn dest_json(d: &WeightedDestination) -> Value {
    json!({
        "host": &*d.host,
        "subset": d.subset.as_deref(),
        "port": d.port,
        "weight": d.weight,
        "headers": d.headers.as_deref().map_or(Value::Null, header_ops_json),
    })
}

/// Request and response header operations; null when there are none.
fn header_ops_json(h: &mesh_core::route::HeaderOps) -> Value {
    if h.request.is_empty() && h.response.is_empty() {
        return Value::Null;
    }
    json!({"request": ops_json(&h.request), "response": ops_json(&h.response)})
}

/// The `host` (or `:authority`) a header operation list sets: istiod makes it a host
/// rewrite (`TranslateHeadersOperations`' authority), never a second Host header.
fn host_op(o: &HeaderOpList) -> Option<&str> {
    o.set
        .iter()
        .chain(o.add.iter())
        .rev()
        .find(|(n, _)| *n == http::header::HOST)
        .and_then(|(_, v)| v.to_str().ok())
}

fn ops_json(o: &HeaderOpList) -> Value {
    let pairs = |v: &[(http::HeaderName, http::HeaderValue)]| -> Value {
        v.iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
            .collect::<serde_json::Map<String, Value>>()
            .into()
    };
    json!({
        "set": pairs(&o.set),
        "add": pairs(&o.add),
        "remove": o.remove.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
    })
}

fn secs(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

struct Request<'a> {
    scheme: &'a str,
    authority: &'a str,
    port: u16,
    /// The port was written in the request (not the scheme's default).
    explicit_port: bool,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a http::HeaderMap,
}

/// The client's Sidecar, for mesh traffic.
struct Scope<'a> {
    sidecar: Option<&'a SidecarScope>,
    /// The VirtualService the request would take without the Sidecar, when that one does
    /// not import it.
    not_imported: Option<&'a str>,
    /// VirtualServices covering the host that route nothing here because no service the
    /// client sees has the host (istiod: port 80 only, or a port of a service they cover).
    unused: Vec<&'a str>,
}

/// The decision as JSON. `client_ns` and `client_labels` (`--source-labels`) are the
/// client's: the DestinationRule that applies is the one its proxy gets (istiod's
/// `SidecarScope.DestinationRule`: a rule whose `workloadSelector` matches it first).
fn to_json(
    d: &RouteDecision<'_>,
    r: &Request<'_>,
    snap: &Snapshot,
    client_ns: &str,
    client_labels: &Labels,
    scope: &Scope<'_>,
) -> Value {
    let act = d.action();
    let mut o = serde_json::Map::new();
    o.insert("host".into(), json!(&*d.host));
    o.insert("virtual_service".into(), json!(d.virtual_service_name()));
    o.insert("sidecar".into(), json!(scope.sidecar.map(|s| s.name())));
    o.insert("not_imported".into(), json!(scope.not_imported));
    o.insert("unused_virtual_services".into(), json!(scope.unused));
    o.insert("route".into(), json!(d.route_index()));
    // an `https` request is the application's TLS: routed by a `tls` route when one matches
    o.insert("tls_route".into(), json!(d.tls_route));
    // a port the service declares TCP: a connection, routed by a `tcp` route when one matches
    o.insert("opaque_tcp".into(), json!(d.opaque));
    o.insert("tcp_route".into(), json!(d.tcp_route));
    o.insert("route_name".into(), json!(d.route_name()));
    o.insert(
        "delegate".into(),
        d.rule
            .and_then(|r| r.delegate.as_ref())
            .map(|(vs, i)| json!({"virtual_service": &**vs, "route": i}))
            .unwrap_or(Value::Null),
    );
    o.insert("status".into(), json!(d.status()));
    o.insert("port".into(), json!(r.port));
    // the mesh client's outbound traffic policy (its Sidecar's, else MeshConfig's), and
    // under ALLOW_ANY the Sidecar's egress proxy, whose cluster takes what has none
    let allow_any = scope
        .sidecar
        .and_then(|sc| sc.outbound_traffic_policy())
        .unwrap_or(snap.options().outbound_traffic_policy)
        != OutboundMode::RegistryOnly;
    // (as the mesh client: the proxy's host as written, its port or 0; a cluster when a
    // service of exactly that host is imported, declares the port and has the subset)
    let egress_cluster = scope
        .sidecar
        .and_then(|sc| sc.egress_proxy().map(|ep| (sc, ep)))
        .filter(|_| allow_any)
        .map(|(sc, ep)| {
            let port = ep
                .port
                .as_ref()
                .and_then(|p| u16::try_from(p.number).ok())
                .unwrap_or(0);
            let svc = (port != 0)
                .then(|| {
                    snap.registry().service_where(&ep.host, client_ns, |s| {
                        *s.hostname == *ep.host
                            && sc.imports(client_ns, &s.namespace, &s.hostname, port)
                    })
                })
                .flatten()
                .filter(|s| *s.hostname == *ep.host);
            let policy = snap.traffic_policy_for(
                &ep.host,
                ep.subset.as_deref(),
                port,
                client_ns,
                Some(client_labels),
            );
            let found = svc.is_some_and(|s| {
                (s.ports.is_empty() || s.port(port).is_some()) && policy.subset_found
            });
            let name = format!(
                "outbound|{port}|{}|{}",
                ep.subset.as_deref().unwrap_or(""),
                ep.host
            );
            let rule = policy.destination_rule.map(|d| d.name.to_string());
            (name, found, port, rule, policy.subset_found)
        });
    // the original destination: the port the request wrote, else its scheme's
    let original_port = match (r.explicit_port, r.scheme) {
        (true, _) => r.port,
        (false, "https") => 443,
        (false, _) => 80,
    };
    let mut no_retries = false;
    let dests: Vec<Value> = d
        .destinations()
        .iter()
        .map(|w| {
            let mut v = dest_json(w);
            // as the mesh client: the default route keeps a port written in the request
            let port = if d.virtual_service.is_none() && w.port.is_none() && r.explicit_port {
                r.port
            } else {
                snap.destination_port(w, client_ns, r.port)
            };
            let p = snap.traffic_policy_for(
                &w.host,
                w.subset.as_deref(),
                port,
                client_ns,
                Some(client_labels),
            );
            v["destination_rule"] = json!(p.destination_rule.map(|d| &*d.name));
            v["subset_defined"] = json!(p.subset_found);
            v["target_port"] = json!(port);
            if let Some(sc) = scope.sidecar {
                // as the mesh client checks it: services in the registry only
                let reg = snap.registry();
                let imported = reg.service(&w.host, client_ns).is_none()
                    || reg
                        .service_where(&w.host, client_ns, |s| {
                            sc.imports(client_ns, &s.namespace, &s.hostname, port)
                        })
                        .is_some();
                v["imported"] = json!(imported);
            }
            // without a route naming it, a destination Envoy has no cluster for (not in
            // the registry, a port it does not declare, not imported) is passed through to
            // the request's host and port under ALLOW_ANY, black-holed under REGISTRY_ONLY
            if d.virtual_service.is_none() && d.status().is_none() {
                // as the mesh client: with a Sidecar, the copy of a duplicated host its
                // egress imports
                let svc =
                    snap.registry()
                        .service_for_client(&w.host, client_ns, scope.sidecar, port);
                let no_cluster = match svc {
                    None => true,
                    Some(svc) => {
                        (!svc.ports.is_empty() && svc.port(port).is_none())
                            || v["imported"] == json!(false)
                    }
                };
                if no_cluster {
                    // (passed through, or black-holed: a direct response; neither retries)
                    no_retries = true;
                    let host = authority_host(r.authority);
                    v["original_destination"] = json!(format!("{host}:{original_port}"));
                    match &egress_cluster {
                        Some((name, found, port, rule, subset_found)) => {
                            // where the traffic goes: the proxy's cluster and policy
                            v["cluster"] = json!(name);
                            v["egress_proxy"] = json!(true);
                            v["cluster_found"] = json!(found);
                            v["target_port"] = json!(port);
                            v["destination_rule"] = json!(rule);
                            v["subset_defined"] = json!(subset_found);
                        }
                        None if allow_any => v["cluster"] = json!("PassthroughCluster"),
                        None => {
                            v["cluster"] = json!("BlackHoleCluster");
                            v["black_hole_reason"] = json!("registry_only");
                        }
                    }
                }
            }
            // resolution NONE: the original destination, its port replaced by the
            // ServiceEntry port's targetPort (Istio 1.22+ `PassthroughTargetPorts`)
            if v["original_destination"].is_null()
                && let Some(t) = snap
                    .registry()
                    .service_for_client(&w.host, client_ns, scope.sidecar, port)
                    .filter(|s| {
                        s.resolution == mesh_core::model::Resolution::None
                            && s.origin == mesh_core::registry::ServiceOrigin::ServiceEntry
                    })
                    .and_then(|s| s.port(port)?.target_port)
            {
                let host = authority_host(r.authority);
                v["original_destination"] = json!(format!("{host}:{t}"));
                v["port_override"] = json!(t);
            }
            // a destination a route names is the cluster `outbound|port|subset|host` of that
            // very host, if a service declares it (and the port): else 503 NC
            if d.virtual_service.is_some() {
                let found = snap
                    .registry()
                    .service(&w.host, client_ns)
                    .filter(|s| *s.hostname == *w.host)
                    .is_some_and(|s| s.ports.is_empty() || s.port(port).is_some());
                v["routed_cluster_found"] = json!(found);
                if !found {
                    v["cluster"] = json!(w.cluster_name(port));
                }
            }
            v
        })
        .collect();
    // the Host the upstream request carries, as istiod builds the route (route.go): the
    // route's `rewrite.authority`, else a `host`/`:authority` its header operations set;
    // else, for a lone destination (processDestination), one its own operations set
    // (the route's host rewrite then); a weighted destination's own is its entry's
    // (processWeightedDestination), which the route's host rewrite still overrides in Envoy
    let route_authority = act.and_then(|a| {
        a.rewrite
            .as_ref()
            .and_then(|rw| rw.authority.as_deref())
            .or_else(|| host_op(&a.headers.request))
    });
    fn dest_authority(w: &WeightedDestination) -> Option<&str> {
        w.headers.as_deref().and_then(|h| host_op(&h.request))
    }
    // (istiod: a route naming one destination; a zero weight's dropped one still counts)
    let lone = !act.is_some_and(|a| a.weighted);
    o.insert("weighted".into(), json!(!lone));
    let route_authority = route_authority.or_else(|| {
        lone.then(|| d.destinations().first().and_then(dest_authority))
            .flatten()
    });
    let mut dests = dests;
    for (v, w) in dests.iter_mut().zip(d.destinations()) {
        v["authority"] = json!(route_authority.or_else(|| dest_authority(w)));
    }
    o.insert("destinations".into(), dests.into());
    let uri = act
        .and_then(|a| a.rewrite.as_ref())
        .and_then(|rw| rw.path(r.path, d.prefix_len))
        // (Envoy rewrites the path and keeps the query)
        .map(|p| match r.query {
            Some(q) => format!("{p}?{q}"),
            None => p.to_string(),
        });
    // istiod's translateRoute gives a redirect or direct response no route action: no
    // rewrite, timeout, retries nor mirrors apply to it
    let forwards = !matches!(
        d.outcome,
        RouteOutcome::Redirect(_) | RouteOutcome::DirectResponse(_)
    );
    let rewrite = (forwards
        && (act.is_some_and(|a| a.rewrite.is_some()) || route_authority.is_some()))
    .then(|| json!({"uri": uri, "authority": route_authority}));
    o.insert("rewrite".into(), rewrite.unwrap_or(Value::Null));
    o.insert(
        "redirect".into(),
        match d.outcome {
            RouteOutcome::Redirect(rd) => json!({
                "code": rd.code,
                "location": rd.location(r.scheme, r.authority, r.port, r.path, r.query, d.prefix_len),
            }),
            _ => Value::Null,
        },
    );
    o.insert(
        "direct_response".into(),
        match d.outcome {
            RouteOutcome::DirectResponse(dr) => json!({
                "status": dr.status,
                "body": dr.body.as_deref().map(|b| String::from_utf8_lossy(b).into_owned()),
            }),
            _ => Value::Null,
        },
    );
    // the passthrough route has no retry policy, and the black hole answers itself
    let rt = if no_retries || !forwards {
        RetryPolicy::disabled()
    } else {
        d.retries()
    };
    // the timeouts Envoy's router gives this very request: a gRPC request's `grpc-timeout`
    // within the route's
    // (none for a connection: a TCP port's or a `tls` route's, which no router reads)
    let grpc = mesh_core::route::is_grpc(r.headers);
    let t = if d.opaque || d.tls_route.is_some() || !forwards {
        mesh_core::route::Timeouts::default()
    } else {
        mesh_core::route::Timeouts::for_request(d.timeout(), rt.per_try_timeout, grpc, r.headers)
    };
    o.insert("timeout".into(), json!(t.global.map(secs)));
    o.insert(
        "route_timeout".into(),
        json!(d.timeout().filter(|_| forwards).map(secs)),
    );
    o.insert(
        "retries".into(),
        json!({
            "attempts": rt.attempts,
            "per_try_timeout": t.per_try.map(secs),
            "retry_on": (!rt.retry_on.is_empty()).then_some(&*rt.retry_on),
            "retriable_status_codes": &*rt.retriable_status_codes,
        }),
    );
    let fault = act.and_then(|a| a.fault.as_ref()).map(|f| {
        json!({
            "delay": f.delay.map(|(d, p)| json!({"fixed_delay": secs(d), "percentage": p.percent()})),
            "abort": f.abort.map(|(s, p)| match s {
                AbortStatus::Http(c) => json!({"http_status": c, "percentage": p.percent()}),
                AbortStatus::Grpc(c) => json!({"grpc_status": c, "percentage": p.percent()}),
            }),
        })
    });
    o.insert("fault".into(), fault.unwrap_or(Value::Null));
    let mirrors: Vec<Value> = act
        .filter(|_| forwards)
        .map(|a| {
            a.mirrors
                .iter()
                .map(|m| {
                    let mut v = dest_json(&m.destination);
                    v.as_object_mut().map(|o| o.remove("weight"));
                    v["percentage"] = json!(m.share.percent());
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    o.insert("mirrors".into(), mirrors.into());
    o.insert(
        "headers".into(),
        act.map_or(Value::Null, |a| header_ops_json(&a.headers)),
    );
    Value::Object(o)
}

/// What the route's `corsPolicy` does with this request (null without one).
fn cors_json(d: &mesh_core::route::RouteDecision<'_>, method: &str, h: &http::HeaderMap) -> Value {
    use mesh_core::cors::CorsVerdict;
    let Some(cors) = d.action().and_then(|a| a.cors.as_deref()) else {
        return Value::Null;
    };
    let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let origin = text("origin");
    let request_method = text("access-control-request-method");
    let verdict = cors.evaluate(method, origin, request_method);
    let o = origin.unwrap_or("");
    let (what, headers): (&str, Vec<(&str, &str)>) = match verdict {
        CorsVerdict::NotCors => ("not a CORS request (no Origin)", Vec::new()),
        CorsVerdict::NotAllowed => (
            "origin not allowed: forwarded, answer untouched",
            Vec::new(),
        ),
        CorsVerdict::Allowed => (
            "origin allowed: forwarded, the answer gets these headers",
            cors.response_headers(verdict, o).collect(),
        ),
        CorsVerdict::Preflight { .. } => (
            "preflight answered here: 200 with these headers",
            cors.preflight_headers(
                verdict,
                o,
                request_method.unwrap_or(""),
                text("access-control-request-headers"),
            )
            .collect(),
        ),
    };
    let headers: serde_json::Map<String, Value> = headers
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    json!({"verdict": what, "headers": headers, "forwarded": verdict.forwards()})
}

fn to_text(v: &Value, method: &str, url: &str, ns: &str, gateway: Option<&str>) -> String {
    let mut s = format!(
        "{method} {url} from {}\n",
        match gateway {
            Some(g) => format!("gateway {g}"),
            None => format!("namespace {ns}"),
        }
    );
    if v["claims"].is_object() {
        s.push_str(&format!(
            "with a verified JWT whose claims are {}\n",
            v["claims"]
        ));
    }
    s.push_str(&format!("host: {}\n", v["host"].as_str().unwrap_or("")));
    if let Some(p) = v["normalized_path"].as_str() {
        s.push_str(&format!(
            "path: {p} after Envoy's normalization (what routes match and the upstream receives)\n"
        ));
    }
    if let Some(sc) = v["sidecar"].as_str() {
        s.push_str(&format!("Sidecar {sc} applies to the client"));
        match v["not_imported"].as_str() {
            Some(vs) => s.push_str(&format!(
                ": it does not import VirtualService {vs} (egress hosts), so it does not apply\n"
            )),
            None => s.push('\n'),
        }
    }
    match (v["virtual_service"].as_str(), v["route"].as_u64()) {
        (Some(vs), _) if v["tcp_route"].is_u64() => s.push_str(&format!(
            "VirtualService {vs}, tcp route {} matched: the service declares this port TCP, so the request is a connection to a sidecar (no http route, retry or timeout applies)\n",
            v["tcp_route"]
        )),
        (None, _) if v["opaque_tcp"] == json!(true) => s.push_str(
            "the service declares this port TCP: the request is a connection to a sidecar, sent to the service (no tcp route matches; no http route, retry or timeout applies)\n",
        ),
        (Some(vs), _) if v["tls_route"].is_u64() => s.push_str(&format!(
            "VirtualService {vs}, tls route {} matched: the request is the application's TLS, routed by its SNI and port (no http route, retry or timeout applies)\n",
            v["tls_route"]
        )),
        (None, _) if gateway.is_some() => s.push_str(
            "no VirtualService bound to the gateway applies to this host and port\n",
        ),
        (None, _) => {
            s.push_str("no VirtualService applies: the request goes to the host itself\n");
            if let Some(unused) = v["unused_virtual_services"].as_array().filter(|u| !u.is_empty()) {
                let names: Vec<&str> = unused.iter().filter_map(|n| n.as_str()).collect();
                s.push_str(&format!(
                    "  VirtualService {} covers the host, but no Service or ServiceEntry the client sees has it on this port: istiod uses a VirtualService for such a host on port 80 only, or on a port of a service another of its hosts names (and never through a wildcard host that covers services on the port); load the host's Service or ServiceEntry\n",
                    names.join(", ")
                ));
            }
        }
        (Some(vs), Some(i)) => {
            s.push_str(&format!("VirtualService {vs}, http route {i} matched"));
            if let Some(n) = v["route_name"].as_str() {
                s.push_str(&format!(" ({n})"));
            }
            if let Some(dv) = v["delegate"]["virtual_service"].as_str() {
                s.push_str(&format!(
                    ", delegated to {dv} route {}",
                    v["delegate"]["route"]
                ));
            }
            s.push('\n');
        }
        (Some(vs), None) => s.push_str(&format!("VirtualService {vs}: no route matches\n")),
    }
    if let Some(st) = v["status"].as_u64() {
        let why = if !v["redirect"].is_null() {
            format!(
                "redirect to {}",
                v["redirect"]["location"].as_str().unwrap_or("")
            )
        } else if !v["direct_response"].is_null() {
            "direct response".to_owned()
        } else if v["route"].is_null() {
            "no route (Envoy NR)".to_owned()
        } else {
            "fault injection abort".to_owned()
        };
        s.push_str(&format!("the mesh answers {st}: {why}\n"));
    }
    let dests = v["destinations"].as_array().cloned().unwrap_or_default();
    let total: u64 = dests
        .iter()
        .map(|d| d["weight"].as_u64().unwrap_or(0))
        .sum();
    for d in &dests {
        let w = d["weight"].as_u64().unwrap_or(0);
        s.push_str(&format!(
            "-> {}{}{} {:.1}%",
            d["host"].as_str().unwrap_or(""),
            d["subset"]
                .as_str()
                .map(|x| format!(" subset {x}"))
                .unwrap_or_default(),
            d["port"]
                .as_u64()
                .map(|p| format!(" port {p}"))
                .unwrap_or_default(),
            if total == 0 {
                0.0
            } else {
                w as f64 * 100.0 / total as f64
            },
        ));
        if d["routed_cluster_found"] == json!(false) {
            s.push_str(&format!(
                " (no cluster {}: no service of exactly that host declares the port, Envoy answers 503 NC)",
                d["cluster"].as_str().unwrap_or("")
            ));
        } else if d["subset_defined"] == json!(false) {
            match d["destination_rule"].as_str() {
                // the client's namespace's rule shadows the service's own (first hit wins)
                Some(dr) => s.push_str(&format!(
                    " (DestinationRule {dr}, the one that applies to this client, does not define this subset: Envoy answers 503)"
                )),
                None => {
                    s.push_str(" (no DestinationRule defines this subset: Envoy answers 503)")
                }
            }
        }
        match d["cluster"].as_str() {
            _ if d["routed_cluster_found"] == json!(false) => {}
            Some("PassthroughCluster") => s.push_str(&format!(
                " (no cluster: ALLOW_ANY passes it through to {}, as the application sent it)",
                d["original_destination"].as_str().unwrap_or("")
            )),
            Some(c) if d["egress_proxy"] == json!(true) => s.push_str(&if d["cluster_found"]
                == json!(true)
            {
                format!(" (no cluster: the Sidecar's egressProxy takes it, {c}, Host kept)")
            } else {
                format!(" (no cluster: the Sidecar's egressProxy {c} is no cluster either: 503 NC)")
            }),
            Some(_) if d["imported"] == json!(false) => {
                s.push_str(" (the Sidecar does not import this service; REGISTRY_ONLY: 502)")
            }
            Some(_) if url.starts_with("https://") => s.push_str(
                " (no cluster; REGISTRY_ONLY: Envoy's BlackHoleCluster resets the application's TLS connection, the mesh client answers 502)",
            ),
            Some(_) => s.push_str(" (no cluster; REGISTRY_ONLY: the mesh answers 502)"),
            None if d["imported"] == json!(false) => {
                s.push_str(" (the Sidecar does not import this service: 502)")
            }
            None if d["port_override"].is_u64() => s.push_str(&format!(
                " (resolution NONE: to the address the application asked for, on the ServiceEntry's targetPort: {})",
                d["original_destination"].as_str().unwrap_or("")
            )),
            None => {}
        }
        s.push('\n');
        // its own header operations: a lone destination's follow the route's (its `set`
        // wins), a weighted one's are its entry's, for the requests sent to it
        let whose = if v["weighted"] != json!(true) {
            "after the route's"
        } else {
            "this destination's"
        };
        for dir in ["request", "response"] {
            if let Some(t) = ops_text(&d["headers"][dir]) {
                s.push_str(&format!("   {dir} headers ({whose}): {t}\n"));
            }
        }
        if let Some(a) = d["authority"].as_str().filter(|a| {
            v["weighted"] == json!(true) && Some(*a) != v["rewrite"]["authority"].as_str()
        }) {
            s.push_str(&format!("   authority rewritten to {a}\n"));
        }
    }
    for dir in ["request", "response"] {
        if let Some(t) = ops_text(&v["headers"][dir]) {
            s.push_str(&format!("{dir} headers: {t}\n"));
        }
    }
    if let Some(u) = v["rewrite"]["uri"].as_str() {
        s.push_str(&format!("rewrite path to {u}\n"));
    }
    if let Some(a) = v["rewrite"]["authority"].as_str() {
        s.push_str(&format!("rewrite authority to {a}\n"));
    }
    if !v["fault"].is_null() {
        s.push_str(&format!("fault: {}\n", v["fault"]));
    }
    for m in v["mirrors"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "mirror {}% to {}{}{}\n",
            m["percentage"],
            m["host"].as_str().unwrap_or(""),
            m["subset"]
                .as_str()
                .map(|x| format!(" subset {x}"))
                .unwrap_or_default(),
            m["port"]
                .as_u64()
                .map(|p| format!(" port {p}"))
                .unwrap_or_default(),
        ));
    }
    if let Some(c) = v["cors"].as_object() {
        s.push_str(&format!("cors: {}\n", c["verdict"].as_str().unwrap_or("")));
        for (k, val) in c["headers"].as_object().into_iter().flatten() {
            s.push_str(&format!("  {k}: {}\n", val.as_str().unwrap_or("")));
        }
    }
    if v["status"].is_null() || v["fault"].is_object() {
        let retries = match v["retries"]["attempts"].as_u64() {
            Some(0) | None => "none".to_owned(),
            Some(n) => format!(
                "{n} on {}",
                v["retries"]["retry_on"].as_str().unwrap_or("-")
            ),
        };
        let timeout = v["timeout"].as_str().unwrap_or("none");
        let route_timeout = v["route_timeout"].as_str().unwrap_or("none");
        let timeout = if timeout == route_timeout {
            timeout.to_owned()
        } else {
            // a gRPC caller's deadline within the route's
            format!("{timeout} (this request's; the route's: {route_timeout})")
        };
        s.push_str(&format!("timeout: {timeout}; retries: {retries}\n"));
    }
    s
}

/// Header operations (`ops_json`) in a line: `set a: 1; add b: 2; remove c`, in the order
/// Envoy applies them; `host` left out (the authority rewrite says it). `None` when empty.
fn ops_text(ops: &Value) -> Option<String> {
    let mut parts: Vec<String> = ops["remove"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| format!("remove {}", n.as_str().unwrap_or("")))
        .collect();
    for verb in ["set", "add"] {
        for (k, val) in ops[verb].as_object().into_iter().flatten() {
            if k != "host" {
                parts.push(format!("{verb} {k}: {}", val.as_str().unwrap_or("")));
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `--claims`: a JSON object, the verified token's claims.
fn parse_claims(s: &str) -> Result<RequestAuth, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(RequestAuth::from_claims(v)),
        Ok(_) => Err(format!("--claims {s:?}: expected a JSON object")),
        Err(e) => Err(format!("--claims {s:?}: {e}")),
    }
}

pub(crate) fn run(args: Args) -> ExitCode {
    if let Some(rest) = args
        .url
        .strip_prefix("tcp://")
        .map(|r| ("tcp", r))
        .or_else(|| args.url.strip_prefix("tls://").map(|r| ("tls", r)))
    {
        return run_l4(&args, rest.0, rest.1);
    }
    let raw = if args.url.contains("://") {
        args.url.clone()
    } else {
        format!("http://{}", args.url)
    };
    let uri: http::Uri = match raw.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: invalid URL {:?}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    let (labels, mut headers) = match (
        parse_labels(args.source_labels.as_deref()),
        parse_headers(&args.headers),
    ) {
        (Ok(l), Ok(h)) => (l, h),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let claims = match args.claims.as_deref().map(parse_claims).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(authority) = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(uri.authority().map(|a| a.as_str()))
        .map(str::to_owned)
    else {
        eprintln!("error: the URL has no host");
        return ExitCode::from(2);
    };
    let authority = authority.as_str();
    let mesh_config = match crate::mesh_config::load(args.mesh_config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let snap = match load_snapshot(&args.config, &args.config_namespace, mesh_config.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let scheme = uri.scheme_str().unwrap_or("http");
    // as the mesh client does: the URL's port, else the only port of the service the host
    // names (mesh traffic), else the scheme's
    let port = uri.port_u16().unwrap_or_else(|| {
        let default = if scheme == "https" { 443 } else { 80 };
        match args.gateway.as_deref() {
            None | Some("mesh") => snap
                .default_port(uri.host().unwrap_or(authority), &args.namespace)
                .unwrap_or(default),
            Some(_) => default,
        }
    });
    // x-forwarded-proto as the connection manager writes it before routing: a sidecar's
    // `http` when the application sent none (its hop to the sidecar is plaintext); a
    // gateway's, the connection's scheme, a client's kept only behind trusted proxies
    let xfp = http::header::HeaderName::from_static("x-forwarded-proto");
    match args.gateway.as_deref() {
        None | Some("mesh") => {
            if scheme == "http" && !headers.contains_key(&xfp) {
                headers.insert(xfp, http::HeaderValue::from_static("http"));
            }
        }
        Some(_) => {
            if snap.options().num_trusted_proxies == 0 || !headers.contains_key(&xfp) {
                let own = if scheme == "https" { "https" } else { "http" };
                headers.insert(xfp, http::HeaderValue::from_static(own));
            }
        }
    }
    let sni = (scheme == "https").then(|| args.sni.as_deref().or(uri.host()));
    let gateway = gateway_attr(&snap, args.gateway.as_deref(), &args.namespace, sni, port);
    // before any request: a port none of the Gateways' servers listens on refuses the
    // connection, and a TLS ClientHello whose SNI no server's hosts take is closed in the
    // handshake (Envoy: no filter chain, NR `filter_chain_not_found`)
    // a plain URL to a port whose servers all proxy TCP (`TCP`, `MONGO`, ...): no HTTP
    // there, the connection follows the `tcp` routes
    if scheme == "http"
        && let Some((_, at_port)) = gateway_servers_at(&snap, &args, port)
    {
        let tcp = |p: &str| {
            !matches!(
                p.to_ascii_uppercase().as_str(),
                "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTPS" | "TLS"
            )
        };
        if !at_port.is_empty() && at_port.iter().all(|s| tcp(&s.server.port.protocol)) {
            if args.output == Output::Text {
                println!(
                    "port {port} of the gateway is a TCP server: {} is proxied as a TCP connection",
                    args.url
                );
            }
            let host = uri.host().unwrap_or(authority);
            return run_l4(&args, "tcp", &format!("{host}:{port}"));
        }
    }
    if let Some(refusal) = gateway_refusal(&snap, &args, port, scheme == "https", sni.flatten()) {
        match args.output {
            Output::Json => println!(
                "{}",
                json!({"host": authority, "port": port, "status": null, "connection": refusal.0, "reason": refusal.1})
            ),
            Output::Text => println!(
                "{} {} from gateway {}\n{}",
                args.method,
                args.url,
                args.gateway.as_deref().unwrap_or(""),
                refusal.1
            ),
        }
        return ExitCode::SUCCESS;
    }
    // an `https` URL whose SNI reaches no TLS-terminating server of the gateway, but a
    // PASSTHROUGH one's `tls` route: the gateway forwards the client's TLS by its SNI
    if let (Some(Some(name)), Some(_)) = (sni, &gateway) {
        let chain = gateway_chain(&snap, &args, port, Some(name)).flatten();
        let terminates_http = chain.as_ref().is_some_and(|c| {
            c.route.is_none() && c.server.server.port.protocol.eq_ignore_ascii_case("HTTPS")
        });
        if chain.is_some() && !terminates_http {
            if args.output == Output::Text {
                println!(
                    "{} reaches a filter chain that does not route HTTP (a PASSTHROUGH or TLS server): routed as a connection",
                    args.url
                );
            }
            return run_l4(&args, "tls", &format!("{name}:{port}"));
        }
    }
    // every connection manager istiod builds (the sidecar's outbound one, a gateway's)
    // normalizes the path before routing (MeshConfig pathNormalization, BASE by default):
    // routes match, and the upstream receives, the normalized path; `%00` is a 400
    let path = match snap.options().path_normalization.normalize(uri.path()) {
        Ok(p) => p,
        Err(_) => {
            let reason = "the path holds `%00`: Envoy refuses it with 400 (path_normalization_failed) before routing";
            match args.output {
                Output::Json => println!(
                    "{}",
                    json!({"host": authority, "port": port, "status": 400, "reason": reason})
                ),
                Output::Text => println!("{} {}\n{reason}", args.method, args.url),
            }
            return ExitCode::SUCCESS;
        }
    };
    let attrs = HttpRequestAttrs {
        client_namespace: &args.namespace,
        source_labels: &labels,
        gateway: gateway.as_deref(),
        authority,
        port,
        method: &args.method,
        path: &path,
        query: uri.query(),
        scheme,
        headers: &headers,
        // a gateway routes on the token it verified; mesh traffic has none
        request_auth: claims.as_ref().filter(|_| gateway.is_some()),
    };
    // a plain HTTP request to a gateway server with `httpsRedirect`: Envoy's `require_tls`
    // answers 301 to the https URL before any route
    if scheme == "http" && snap.routes().gateway_requires_tls(&attrs) == Some(true) {
        // (Envoy's `createSslRedirectPath`: the Host header as sent, port and all)
        let location = format!(
            "https://{authority}{}",
            uri.path_and_query().map_or("/", |pq| pq.as_str())
        );
        let v = json!({
            "host": authority,
            "port": port,
            "status": 301,
            "redirect": {"location": location, "https_redirect": true},
            "virtual_service": null,
            "destinations": [],
        });
        match args.output {
            Output::Json => println!("{v}"),
            Output::Text => println!(
                "{} {} from gateway {}\nthe gateway server's `tls.httpsRedirect` applies to host {authority}: the gateway answers 301, redirect to {location}",
                args.method,
                args.url,
                args.gateway.as_deref().unwrap_or("")
            ),
        }
        return ExitCode::SUCCESS;
    }
    let d = snap.route_http(&attrs);
    // Sidecars scope mesh traffic only; name the VirtualService one hides
    let sidecar = match attrs.gateway {
        Some(_) => None,
        None => snap.sidecar_for(&args.namespace, &labels),
    };
    let not_imported = sidecar.and_then(|_| {
        let all = snap
            .routes()
            .route_http(snap.registry(), snap.options(), &attrs);
        all.virtual_service_name()
            .filter(|vs| d.virtual_service_name() != Some(*vs))
    });
    // a host no service of the client's has: name the VirtualServices that cover it but
    // that istiod would not use on this port
    let unused = match (d.virtual_service_name(), attrs.gateway, not_imported) {
        (None, None, None)
            if snap
                .registry()
                .service_for_client(&d.host, &args.namespace, sidecar, port)
                .is_none() =>
        {
            let mut names: Vec<&str> = snap
                .routes()
                .mesh_virtual_services_covering(&d.host, &args.namespace)
                .map(|vs| &*vs.name)
                .collect();
            names.dedup();
            names
        }
        _ => Vec::new(),
    };
    let scope = Scope {
        sidecar,
        not_imported,
        unused,
    };
    let req = Request {
        scheme,
        authority,
        port,
        explicit_port: gateway.is_none() && uri.port_u16().is_some(),
        path: &path,
        query: uri.query(),
        headers: &headers,
    };
    let mut v = to_json(&d, &req, &snap, &args.namespace, &labels, &scope);
    v["cors"] = cors_json(&d, &args.method, &headers);
    if path != uri.path() {
        v["normalized_path"] = json!(&*path);
    }
    if let Some(a) = attrs.request_auth {
        v["claims"] = a.claims.clone();
    }
    match args.output {
        Output::Json => println!("{v}"),
        Output::Text => print!(
            "{}",
            to_text(
                &v,
                &args.method,
                &args.url,
                &args.namespace,
                args.gateway.as_deref()
            )
        ),
    }
    ExitCode::SUCCESS
}

/// `meshctl route tcp://HOST:PORT` (VirtualService `tcp` routes) or `tls://SNI:PORT` (`tls`
/// routes by SNI; `--sni` overrides the URL's host): where a connection goes, as
/// `MeshClient::connect` (mesh traffic) or a gateway's TCP / TLS PASSTHROUGH server
/// routes it.
fn run_l4(args: &Args, protocol: &str, target: &str) -> ExitCode {
    let (host, port) = match target.trim_end_matches('/').rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h.trim_start_matches('[').trim_end_matches(']'), Some(p)),
            Err(_) => {
                eprintln!("error: invalid port in {:?}", args.url);
                return ExitCode::from(2);
            }
        },
        None => (target.trim_end_matches('/'), None),
    };
    if host.is_empty() {
        eprintln!("error: the URL has no host");
        return ExitCode::from(2);
    }
    let labels = match parse_labels(args.source_labels.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mesh_config = match crate::mesh_config::load(args.mesh_config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let snap = match load_snapshot(&args.config, &args.config_namespace, mesh_config.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let ns = args.namespace.as_str();
    let gateway = gateway_attr(&snap, args.gateway.as_deref(), ns, None, 0);
    let explicit_port = port.is_some();
    let port = match port.or_else(|| snap.default_port(host, ns)) {
        Some(p) => p,
        None => {
            eprintln!(
                "error: {:?} has no port, and no service of that name has exactly one",
                args.url
            );
            return ExitCode::from(2);
        }
    };
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    let sni = args
        .sni
        .clone()
        .unwrap_or_else(|| host.to_ascii_lowercase());
    // mesh traffic names the service as the mesh client resolves it
    let name = match (ip, &gateway) {
        (None, None) => Some(
            snap.resolve_service(host, ns)
                .map_or_else(|| host.to_ascii_lowercase(), |s| s.hostname.to_string()),
        ),
        (None, Some(_)) => Some(sni.clone()),
        (Some(_), _) => None,
    };
    let mut attrs = mesh_core::route::L4Attrs::new(ns, port);
    attrs.source_labels = &labels;
    // the address a sidecar would see the application dial: the IP it was given, else (mesh
    // traffic to a name) the service's own address (its cluster IP, a ServiceEntry's
    // `addresses`), for `destinationSubnets`, as the mesh client does
    attrs.destination_ip = ip.or_else(|| {
        gateway.is_none().then_some(())?;
        snap.resolve_service(host, ns)?
            .addresses
            .first()
            .filter(|n| n.prefix_len() == n.max_prefix_len())
            .map(|n| n.addr())
    });
    attrs.sni = if protocol == "tls" {
        Some(&sni)
    } else {
        name.as_deref()
    };
    // mesh TLS to a service: its VirtualServices (a short name's too), by the SNI as sent
    let service_host = match (ip, &gateway) {
        (None, None) if protocol == "tls" => snap
            .resolve_service(host, ns)
            .filter(|s| !s.hostname.starts_with('*'))
            .map(|s| s.hostname.to_string()),
        _ => None,
    };
    // at a gateway, a TLS connection reaches one filter chain of the port's servers
    // (`--sni ""`: a client that sends none)
    let chain = match (&gateway, protocol) {
        (Some(_), "tls") => {
            attrs.sni = (!sni.is_empty()).then_some(sni.as_str());
            gateway_chain(&snap, args, port, attrs.sni)
        }
        _ => None,
    };
    let mut note: Option<String> = None;
    let mut auto_passthrough = false;
    // the kind of VirtualService route that applies (`tcp` on a TLS-terminating server)
    let mut route_kind = protocol;
    let d = match (&service_host, chain) {
        (Some(h), _) => snap.route_tls_to(&attrs, h),
        (None, Some(None)) => {
            note = Some(format!(
                "no filter chain of the gateway on port {port} takes the SNI {sni:?}: the connection is closed during the TLS handshake"
            ));
            closed_l4(&sni)
        }
        (None, Some(Some(c))) => {
            let mode = c
                .server
                .server
                .tls
                .as_ref()
                .map(|t| t.mode)
                .unwrap_or_default();
            let server = format!(
                "server {} ({}) of Gateway {}",
                c.server.index, c.server.server.port.name, c.server.gateway
            );
            match (mode, c.route) {
                (_, Some(d)) => {
                    note = Some(format!(
                        "{server}: PASSTHROUGH, by the VirtualServices' sniHosts"
                    ));
                    d
                }
                (mesh_core::model::ServerTlsMode::AutoPassthrough, None) => {
                    auto_passthrough = true;
                    note = Some(format!(
                        "{server}: AUTO_PASSTHROUGH, to the service the SNI names, for a client offering an Istio mTLS ALPN (istio, istio-peer-exchange, istio-http/1.0, istio-http/1.1, istio-h2); others are closed"
                    ));
                    sni_dnat_l4(&sni)
                }
                _ if c.server.server.port.protocol.eq_ignore_ascii_case("HTTPS") => {
                    note = Some(format!(
                        "{server} terminates TLS and routes HTTP: ask with an https:// URL"
                    ));
                    closed_l4(&sni)
                }
                _ => {
                    note = Some(format!(
                        "{server} terminates TLS: its one filter chain takes the tcp route of the first VirtualService bound to it whose hosts overlap the server's"
                    ));
                    route_kind = "tcp";
                    let a = mesh_core::route::L4Attrs {
                        gateway: Some(c.server.gateway),
                        ..attrs
                    };
                    snap.routes().gateway_server_tcp_route(&a, c.server.index)
                }
            }
        }
        (None, None) => route_l4(&snap, gateway.as_deref(), attrs, protocol == "tls"),
    };
    // what has no cluster and no route naming it: passed through to the host and port
    // asked for under ALLOW_ANY (Istio's default), black-holed under REGISTRY_ONLY, as
    // `MeshClient::connect` does (a gateway routes by its VirtualServices only)
    let allow_any = gateway.is_none()
        && snap
            .sidecar_for(ns, &labels)
            .and_then(|sc| sc.outbound_traffic_policy())
            .unwrap_or(snap.options().outbound_traffic_policy)
            != OutboundMode::RegistryOnly;
    let dests: Vec<Value> = d
        .destinations
        .iter()
        .map(|w| {
            let mut v = dest_json(w);
            // (a port the URL names is the connection's, as `MeshClient::connect` keeps it)
            let target_port = if explicit_port && d.virtual_service.is_none() {
                w.port.unwrap_or(port)
            } else {
                snap.destination_port(w, ns, port)
            };
            // (the DestinationRule the client's proxy gets: `--source-labels` for a
            // `workloadSelector`)
            let p = snap.traffic_policy_for(
                &w.host,
                w.subset.as_deref(),
                target_port,
                ns,
                Some(&labels),
            );
            let found = snap.registry().service(&w.host, ns);
            let known = found.is_some();
            v["destination_rule"] = json!(p.destination_rule.map(|d| &*d.name));
            v["subset_defined"] = json!(p.subset_found);
            v["target_port"] = json!(target_port);
            v["cluster"] = json!(w.cluster_name(target_port));
            // no route: the service's own cluster, named by its host as written (a
            // wildcard ServiceEntry's `outbound|443||*.example.com`)
            if let Some(s) = found.filter(|s| d.virtual_service.is_none() && *s.hostname != *w.host)
            {
                v["cluster"] = json!(format!(
                    "outbound|{target_port}|{}|{}",
                    w.subset.as_deref().unwrap_or(""),
                    s.hostname
                ));
            }
            v["in_registry"] = json!(known);
            // as `MeshClient::connect`: with a Sidecar, the copy of the host it imports; a
            // service it does not import, or a port the service does not declare, is no
            // cluster of the client's
            let sidecar = if gateway.is_none() {
                snap.sidecar_for(ns, &labels)
            } else {
                None
            };
            let svc = snap
                .registry()
                .service_for_client(&w.host, ns, sidecar, target_port);
            if let (Some(sc), Some(s)) = (sidecar, svc) {
                v["imported"] = json!(sc.imports(ns, &s.namespace, &s.hostname, target_port));
            }
            let undeclared =
                svc.is_some_and(|s| !s.ports.is_empty() && s.port(target_port).is_none());
            if d.virtual_service.is_none()
                && (!known || undeclared || v["imported"] == json!(false))
            {
                v["cluster"] = json!(if allow_any {
                    "PassthroughCluster"
                } else {
                    "BlackHoleCluster"
                });
            }
            v
        })
        .collect();
    let v = json!({
        "protocol": protocol,
        "host": &*d.host,
        "port": port,
        "virtual_service": d.virtual_service.map(|vs| &*vs.name),
        "route": d.route_index,
        "destinations": dests,
        "filter_chain": note,
        "route_kind": route_kind,
        "passthrough_chain": d.passthrough,
    });
    match args.output {
        Output::Json => println!("{v}"),
        Output::Text => {
            let from = match args.gateway.as_deref() {
                Some(g) => format!("gateway {g}"),
                None => format!("namespace {ns}"),
            };
            let mut s = format!(
                "{} connection to {target} from {from}\nhost: {}\n",
                protocol.to_ascii_uppercase(),
                d.host
            );
            if let Some(n) = &note {
                s.push_str(n);
                s.push('\n');
            }
            match (d.virtual_service, d.route_index) {
                (Some(vs), Some(i)) => s.push_str(&format!(
                    "VirtualService {}, {route_kind} route {i} matched\n",
                    vs.name
                )),
                _ if auto_passthrough => s.push_str(
                    "no VirtualService: the bytes go untouched to an endpoint of that service\n",
                ),
                _ if gateway.is_some() => {
                    s.push_str("no VirtualService route: the gateway closes the connection\n")
                }
                _ if d.passthrough => s.push_str(
                    "no tls route of the service's VirtualServices matches this SNI (they name \
                     others), so no filter chain of the service takes it: the passthrough chain \
                     does (ALLOW_ANY: to the host asked for, without the mesh's mTLS; \
                     REGISTRY_ONLY: closed)\n",
                ),
                _ => s.push_str(
                    "no VirtualService applies: the connection goes to the host itself\n",
                ),
            }
            let total: u64 = d.destinations.iter().map(|w| u64::from(w.weight)).sum();
            for dv in &dests {
                let w = dv["weight"].as_u64().unwrap_or(0);
                s.push_str(&format!(
                    "-> {}{} port {} {:.1}% ({})",
                    dv["host"].as_str().unwrap_or(""),
                    dv["subset"]
                        .as_str()
                        .map(|x| format!(" subset {x}"))
                        .unwrap_or_default(),
                    dv["target_port"],
                    if total == 0 {
                        100.0
                    } else {
                        w as f64 * 100.0 / total as f64
                    },
                    dv["cluster"].as_str().unwrap_or(""),
                ));
                if dv["subset_defined"] == json!(false) {
                    s.push_str(
                        " (no DestinationRule defines this subset: the connection is closed, NC)",
                    );
                } else if matches!(
                    dv["cluster"].as_str(),
                    Some("PassthroughCluster" | "BlackHoleCluster")
                ) {
                    let why = if dv["in_registry"] == json!(false) {
                        "not in the registry"
                    } else if dv["imported"] == json!(false) {
                        "the client's Sidecar does not import it"
                    } else {
                        "the service does not declare this port"
                    };
                    s.push_str(&if dv["cluster"] == json!("PassthroughCluster") {
                        format!(
                            " ({why}: ALLOW_ANY passes it through to the host and port asked for)"
                        )
                    } else {
                        format!(" ({why}: REGISTRY_ONLY closes the connection)")
                    });
                } else if dv["in_registry"] == json!(false) {
                    s.push_str(" (no such service: no cluster, the connection is closed)");
                }
                s.push('\n');
            }
            print!("{s}");
        }
    }
    ExitCode::SUCCESS
}

/// The filter chain a ClientHello with `sni` reaches on `port` of the `--gateway`
/// Gateways (the runtime's own choice, [`RouteTable::gateway_tls_chain`]): `None` for mesh
/// traffic or Gateways not among the loaded files, `Some(None)` when no chain takes it.
///
/// [`RouteTable::gateway_tls_chain`]: mesh_core::route::RouteTable::gateway_tls_chain
fn gateway_chain<'s>(
    snap: &'s Snapshot,
    args: &Args,
    port: u16,
    sni: Option<&str>,
) -> Option<Option<mesh_core::route::GatewayTlsChain<'s, 's>>> {
    let (servers, _) = gateway_servers_at(snap, args, port)?;
    let mut attrs = mesh_core::route::L4Attrs::new(&args.namespace, port);
    attrs.sni = sni;
    Some(snap.routes().gateway_tls_chain(servers, &attrs))
}

/// A TLS connection the gateway closes: no route, no destination.
fn closed_l4(sni: &str) -> mesh_core::route::L4Decision<'static> {
    mesh_core::route::L4Decision {
        host: std::borrow::Cow::Owned(sni.to_owned()),
        virtual_service: None,
        route_index: None,
        destinations: std::borrow::Cow::Owned(Vec::new()),
        passthrough: false,
    }
}

/// An AUTO_PASSTHROUGH connection: to the service, port and subset its SNI names.
fn sni_dnat_l4(sni: &str) -> mesh_core::route::L4Decision<'static> {
    let mut d = closed_l4(sni);
    if let Some((port, subset, host)) = mesh_core::gateway::parse_sni_dnat(sni) {
        d.destinations = std::borrow::Cow::Owned(vec![WeightedDestination {
            host: host.into(),
            subset: subset.map(Into::into),
            port: Some(port),
            weight: 100,
            headers: None,
        }]);
    }
    d
}

/// The servers of the `--gateway` Gateways, and those on `port`; `None` for mesh traffic
/// or Gateways not among the loaded files.
fn gateway_servers_at<'s>(
    snap: &'s Snapshot,
    args: &Args,
    port: u16,
) -> Option<(
    Vec<mesh_core::gateway::GatewayServer<'s>>,
    Vec<mesh_core::gateway::GatewayServer<'s>>,
)> {
    let list = args.gateway.as_deref().filter(|g| *g != "mesh")?;
    let names = gateway_attr(snap, Some(list), &args.namespace, None, port)?;
    let names: Vec<&str> = names.split(',').collect();
    let servers = snap.gateway_servers_named(&names);
    if servers.is_empty() {
        return None;
    }
    let at_port = servers
        .iter()
        .filter(|s| s.server.port.number == u32::from(port))
        .copied()
        .collect();
    Some((servers, at_port))
}

/// Why a gateway (`--gateway`) takes no request on `port` at all: `("refused", why)` when
/// none of its Gateways has a server on the port, `("closed", why)` when the request's
/// scheme is not the port's (plaintext to servers that all take TLS, TLS to plain HTTP
/// servers), or it is TLS (`https`, `sni`) and no TLS server on the port lists a host the
/// SNI fits. `None` when it does, or when the Gateways are not among the loaded files.
fn gateway_refusal(
    snap: &Snapshot,
    args: &Args,
    port: u16,
    https: bool,
    sni: Option<&str>,
) -> Option<(&'static str, String)> {
    let (servers, at_port) = gateway_servers_at(snap, args, port)?;
    if at_port.is_empty() {
        let ports: std::collections::BTreeSet<u32> =
            servers.iter().map(|s| s.server.port.number).collect();
        return Some((
            "refused",
            format!(
                "no server of the gateway listens on port {port} (its ports: {}): the connection is refused",
                ports
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let tls = |p: &str| matches!(p.to_ascii_uppercase().as_str(), "HTTPS" | "TLS");
    if !https {
        // every filter chain on the port expects a ClientHello: by the SNI of their
        // `server_names` none takes a plaintext connection, and a `*` one's handshake fails
        if at_port.iter().all(|s| tls(&s.server.port.protocol)) {
            return Some((
                "closed",
                format!(
                    "the gateway's servers on port {port} all take TLS: a plaintext request reaches none of their filter chains (no SNI), or fails the TLS handshake of a `*` one; the gateway closes the connection before any request"
                ),
            ));
        }
        return None;
    }
    if !at_port.iter().any(|s| tls(&s.server.port.protocol)) {
        // plain HTTP servers only: the ClientHello reaches the HTTP codec
        return Some((
            "closed",
            format!(
                "port {port} of the gateway serves plain HTTP: the TLS ClientHello is no HTTP request, so Envoy's codec answers 400 (http1.codec_error) and closes the connection; the TLS handshake fails"
            ),
        ));
    }
    let sni = sni?;
    if gateway_chain(snap, args, port, Some(sni)).is_some_and(|c| c.is_some()) {
        return None;
    }
    Some((
        "closed",
        format!(
            "no filter chain of the gateway on port {port} takes the SNI {sni}: the gateway closes the connection during the TLS handshake (NR filter_chain_not_found), before any request"
        ),
    ))
}

/// A TLS (`tls`) or TCP connection's route, as mesh traffic (`gateways` `None`) or at a
/// gateway workload implementing the Gateways `gateways` (comma-separated): the first of
/// them with a route for it.
fn route_l4<'s, 'a>(
    snap: &'s Snapshot,
    gateways: Option<&'a str>,
    mut attrs: mesh_core::route::L4Attrs<'a>,
    tls: bool,
) -> mesh_core::route::L4Decision<'s> {
    let route = |attrs: &mesh_core::route::L4Attrs<'_>| {
        if tls {
            snap.route_tls(attrs)
        } else {
            snap.route_tcp(attrs)
        }
    };
    let Some(list) = gateways else {
        return route(&attrs);
    };
    let mut first = None;
    for g in list.split(',') {
        attrs.gateway = Some(g);
        let d = route(&attrs);
        if d.virtual_service.is_some() {
            return d;
        }
        first.get_or_insert(d);
    }
    first.unwrap_or_else(|| route(&attrs))
}

/// What `--gateway` routes as ([`HttpRequestAttrs::gateway`]): `None` for mesh traffic;
/// the Gateways (`NAME` is `<namespace>/NAME`), comma-separated; or, for TLS (`tls` is
/// `Some(sni)`), the route configuration of the HTTPS server that SNI reaches.
fn gateway_attr(
    snap: &Snapshot,
    gateway: Option<&str>,
    namespace: &str,
    tls: Option<Option<&str>>,
    port: u16,
) -> Option<String> {
    let list = match gateway {
        None | Some("mesh") => return None,
        Some(list) => list,
    };
    let names = list
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| match g.contains('/') {
            true => g.to_owned(),
            false => format!("{namespace}/{g}"),
        })
        .collect::<Vec<_>>()
        .join(",");
    // TLS terminated by the server the SNI picks: its route configuration alone
    let https = tls
        .and_then(|sni| snap.routes().gateway_https_route(&names, port, sni))
        .map(str::to_owned);
    Some(https.unwrap_or(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_names_and_the_sni_server() {
        let snap = mesh_core::mesh::Mesh::from_yaml(
            "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  servers:
  - port: {number: 443, name: https-secure, protocol: HTTPS}
    hosts: [secure.example.com]
    tls: {mode: MUTUAL, credentialName: secure-cred}
  - port: {number: 443, name: https-public, protocol: HTTPS}
    hosts: [public.example.com]
    tls: {mode: SIMPLE, credentialName: public-cred}
",
        )
        .unwrap()
        .snapshot();
        let attr = |g, tls, port| gateway_attr(&snap, g, "istio-system", tls, port);
        assert_eq!(attr(None, None, 80), None);
        assert_eq!(attr(Some("mesh"), None, 80), None);
        assert_eq!(
            attr(Some("gw, team-b/gw-b"), None, 80).as_deref(),
            Some("istio-system/gw,team-b/gw-b")
        );
        assert_eq!(
            attr(Some("gw"), Some(Some("public.example.com")), 443).as_deref(),
            Some("https.443.https-public.gw.istio-system")
        );
        // an SNI no server takes: the Gateway names (the host then picks the server)
        assert_eq!(
            attr(Some("gw"), Some(Some("other.example.com")), 443).as_deref(),
            Some("istio-system/gw")
        );
    }
}
