//! The route table: which VirtualService and route a request takes, and what it does
//! (spec §1.4-§1.7, §2).
//!
//! # Using it on the request path
//!
//! ```
//! use mesh_core::mesh::Mesh;
//! use mesh_core::route::HttpRequestAttrs;
//!
//! let mesh = Mesh::from_yaml(r#"
//! apiVersion: v1
//! kind: Service
//! metadata: {name: reviews, namespace: default}
//! spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
//! ---
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: reviews, namespace: default}
//! spec:
//!   hosts: [reviews]
//!   http:
//!   - match: [{headers: {end-user: {exact: jason}}}]
//!     route: [{destination: {host: reviews, subset: v2}}]
//!   - route: [{destination: {host: reviews, subset: v1}}]
//! ---
//! apiVersion: networking.istio.io/v1
//! kind: DestinationRule
//! metadata: {name: reviews}
//! spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
//! "#).unwrap();
//! let snap = mesh.snapshot(); // load once per request
//! let mut headers = http::HeaderMap::new();
//! headers.insert("end-user", "jason".parse().unwrap());
//! let attrs = HttpRequestAttrs::new("default", "reviews:9080", "/reviews/0", &headers);
//! let d = snap.route_http(&attrs);
//! assert_eq!(d.virtual_service_name(), Some("default/reviews"));
//! assert_eq!(d.route_index(), Some(0));
//! assert_eq!(d.destinations()[0].subset.as_deref(), Some("v2"));
//! ```
//!
//! Decisions borrow from the snapshot: on a hit nothing is allocated (host names are found in
//! hash maps with a stack buffer for short-name expansion; regexes and header names were
//! compiled when the snapshot was built). The decision names the VirtualService and route,
//! carries the weighted destinations (pick one with [`RouteDecision::pick`] and a random
//! number) and every action; [`RouteDecision::status`] says when the mesh answers itself
//! (404 no route, redirect, direct response, an abort that always fires).
//!
//! Mesh traffic sees only the VirtualServices its client's `Sidecar` imports for the port
//! ([`crate::sidecar`]); [`Snapshot::route_http`](crate::snapshot::Snapshot::route_http)
//! finds the Sidecar, [`RouteTable::route_http_scoped`] takes it from the caller.
//!
//! As istiod builds sidecar virtual hosts, a mesh VirtualService applies to HTTP traffic
//! only while the static pre-filters (`port`, `sourceLabels`, `sourceNamespace`, match
//! `gateways`) leave it a route for the client and port, else the service keeps its default
//! route; and only on port 80 or a port of a registry service its hosts cover. On gateways
//! the route configurations are istiod's (`buildGatewayHTTPRouteConfig`): one per
//! TLS-terminating HTTPS server, one for all plain HTTP servers on a port; a VirtualService
//! bound to a server's Gateway gives virtual hosts for `NamesForNamespace(server.hosts,
//! vs.namespace) ∩ vs.hosts`; the request takes the most specific virtual host, where the
//! VirtualServices are merged in server then load order and catch-all routes go last
//! (istiod `SortVHostRoutes`); a gateway has no default route (404).
//!
//! A host no service of the client's has (none visible, or none its Sidecar imports) is
//! routed by a VirtualService only on port 80, or on a port where the VirtualService routes
//! such a service as its most specific VirtualService (istiod's `selectVirtualServices`,
//! `mostSpecificWildcardVsIndex`), and
//! not through a wildcard host that covers services on the port
//! (`separateVSHostsAndServices`: those services get the routes, the wildcard itself no
//! virtual host).
//!
//! Deliberate simplification: several mesh-bound VirtualServices for one host (undefined in
//! Istio) resolve to the one in the client's namespace, else the first loaded.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::authz::RequestAuth;
use crate::gateway::is_http_protocol;
use crate::model::{self, ConfigObject, Labels, Spec};
use crate::names::{kube_expansion, split_authority, ExportTo, HostBuf, HostMap, MeshOptions};
use crate::registry::Registry;
use crate::sidecar::SidecarScope;

pub mod actions;
pub(crate) mod format;
mod gateway_tls;
mod matcher;
mod timeouts;

pub use actions::{
    apply_route_and_destination, pick, AbortStatus, DirectResponse, Fault, HeaderContext,
    HeaderOpList, HeaderOps, HeaderTemplate, HeaderVar, HttpAction, Mirror, PerMillion, Redirect,
    RetryPolicy, Rewrite, WeightedDestination, DEFAULT_RETRY_ON,
};
pub use gateway_tls::{GatewayTlsChain, SniRank};
pub use matcher::{jwt_claim_path, StrMatcher};
pub(crate) use matcher::{re2_regex, MatchBlock};
use matcher::{RegexCache, ReqView};
pub use timeouts::{grpc_timeout, grpc_timeout_value, is_grpc, Timeouts};

static EMPTY_LABELS: Labels = Labels::new();

/// Resolves a gateway reference the way istiod does (§1.7): `mesh` stays, `name` and
/// `./name` take the VirtualService's namespace, `ns/name` stays, legacy
/// `name.ns.svc.cluster.local` becomes `ns/name`.
///
/// # Examples
///
/// ```
/// use mesh_core::route::resolve_gateway_name;
///
/// assert_eq!(resolve_gateway_name("bookinfo-gateway", "default"), "default/bookinfo-gateway");
/// assert_eq!(resolve_gateway_name("istio-system/ingress", "default"), "istio-system/ingress");
/// assert_eq!(resolve_gateway_name("./ingress", "bookinfo"), "bookinfo/ingress");
/// assert_eq!(resolve_gateway_name("ingress.istio-system.svc.cluster.local", "x"), "istio-system/ingress");
/// assert_eq!(resolve_gateway_name("mesh", "default"), "mesh");
/// ```
pub fn resolve_gateway_name(g: &str, vs_ns: &str) -> String {
    if g == "mesh" {
        return g.to_owned();
    }
    if let Some((ns, name)) = g.split_once('/') {
        let ns = if ns == "." { vs_ns } else { ns };
        return format!("{ns}/{name}");
    }
    let mut parts = g.split('.');
    match (parts.next(), parts.next()) {
        (Some(name), Some(ns)) => format!("{ns}/{name}"),
        _ => format!("{vs_ns}/{g}"),
    }
}

/// The attributes of an HTTP request that routing reads, all borrowed.
///
/// Build one with [`HttpRequestAttrs::new`] (a GET from a namespace) or
/// [`HttpRequestAttrs::from_parts`] (a real request), then refine it with the `with_*`
/// methods.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Labels;
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - match: [{method: {exact: POST}, sourceLabels: {app: productpage}}]
///     route: [{destination: {host: reviews, subset: v2}}]
///   - route: [{destination: {host: reviews, subset: v1}}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let productpage: Labels = [("app".to_string(), "productpage".to_string())].into();
/// let attrs = HttpRequestAttrs::new("default", "reviews:9080", "/reviews/0?full=1", &h)
///     .with_method("POST")
///     .with_source_labels(&productpage);
/// assert_eq!((attrs.path, attrs.query), ("/reviews/0", Some("full=1")));
/// assert_eq!(snap.route_http(&attrs).route_index(), Some(0));
/// // the same request from a workload without the label takes the second route
/// let attrs = HttpRequestAttrs::new("default", "reviews:9080", "/reviews/0", &h).with_method("POST");
/// assert_eq!(snap.route_http(&attrs).route_index(), Some(1));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HttpRequestAttrs<'a> {
    /// The client's namespace.
    pub client_namespace: &'a str,
    /// The client workload's labels (for `sourceLabels`).
    pub source_labels: &'a Labels,
    /// `None` for mesh (sidecar) traffic. At a gateway, the route configuration the request
    /// is routed by, as istiod names them (pilot `gatewayRDSRouteName`):
    /// `https.<port>.<portName>.<name>.<ns>`, the one TLS-terminating HTTPS server the
    /// connection's SNI chose ([`crate::gateway::https_route_name`]); `http.<port>`, the
    /// plain HTTP servers on the port of every Gateway whose selector matches
    /// `source_labels`, merged ([`crate::gateway::http_route_name`]); or Gateways
    /// `ns/name[,ns/name..]`: their plain HTTP servers on the port, merged, else (a port of
    /// HTTPS servers) the HTTPS server the host would be the SNI of. VirtualServices
    /// must be exported to `client_namespace`, the gateway workload's namespace.
    pub gateway: Option<&'a str>,
    /// `:authority` / Host as sent (port included if sent).
    pub authority: &'a str,
    /// Destination port (the listener / service port). 0: from the authority, else the
    /// scheme's default.
    pub port: u16,
    /// Method.
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    /// Query string without `?`.
    pub query: Option<&'a str>,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The JWT the gateway verified (RequestAuthentication), for `@request.auth.claims..`
    /// matches; `None` for mesh traffic and for a request without a token, which matches no
    /// claim condition.
    pub request_auth: Option<&'a RequestAuth>,
}

impl<'a> HttpRequestAttrs<'a> {
    /// The request as the route matchers see it, on `port`.
    fn view(&self, port: u16) -> ReqView<'_> {
        ReqView {
            path: self.path,
            query: self.query,
            method: self.method,
            authority: self.authority,
            scheme: self.scheme,
            headers: self.headers,
            port,
            client_ns: self.client_namespace,
            source_labels: self.source_labels,
            gateway: self.gateway,
            request_auth: self.request_auth,
        }
    }

    /// A GET over http from `client_namespace` with no source labels; `path` may carry a
    /// query string (`/a?b=1`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let h = http::HeaderMap::new();
    /// let attrs = HttpRequestAttrs::new("bookinfo", "reviews:9080", "/reviews/0?x=1", &h);
    /// assert_eq!((attrs.method, attrs.scheme), ("GET", "http"));
    /// assert_eq!((attrs.path, attrs.query), ("/reviews/0", Some("x=1")));
    /// assert_eq!(attrs.port, 0); // taken from the authority when routing
    /// assert!(attrs.source_labels.is_empty() && attrs.gateway.is_none());
    /// ```
    pub fn new(
        client_namespace: &'a str,
        authority: &'a str,
        path: &'a str,
        headers: &'a http::HeaderMap,
    ) -> Self {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        HttpRequestAttrs {
            client_namespace,
            source_labels: &EMPTY_LABELS,
            gateway: None,
            authority,
            port: 0,
            method: "GET",
            path,
            query,
            scheme: "http",
            headers,
            request_auth: None,
        }
    }

    /// From request parts: authority from the URI or the Host header, path, query, method,
    /// scheme (default `http`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let req = http::Request::put("http://ratings:9080/ratings/0?v=2")
    ///     .header("end-user", "jason")
    ///     .body(())
    ///     .unwrap();
    /// let (parts, ()) = req.into_parts();
    /// let attrs = HttpRequestAttrs::from_parts("default", &parts);
    /// assert_eq!(attrs.authority, "ratings:9080");
    /// assert_eq!((attrs.method, attrs.path, attrs.query), ("PUT", "/ratings/0", Some("v=2")));
    /// assert_eq!(attrs.effective_port(), 9080);
    ///
    /// // origin-form requests (`GET /path` with a Host header) use the Host header
    /// let req = http::Request::get("/productpage").header("host", "bookinfo.example.com").body(()).unwrap();
    /// let (parts, ()) = req.into_parts();
    /// let attrs = HttpRequestAttrs::from_parts("default", &parts);
    /// assert_eq!(attrs.authority, "bookinfo.example.com");
    /// assert_eq!(attrs.effective_port(), 80);
    /// ```
    pub fn from_parts(client_namespace: &'a str, parts: &'a http::request::Parts) -> Self {
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("");
        HttpRequestAttrs {
            client_namespace,
            source_labels: &EMPTY_LABELS,
            gateway: None,
            authority,
            port: parts.uri.port_u16().unwrap_or(0),
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            scheme: parts.uri.scheme_str().unwrap_or("http"),
            headers: &parts.headers,
            request_auth: None,
        }
    }

    /// Sets the source labels.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{sourceLabels: {version: canary}}]
    ///     route: [{destination: {host: reviews, subset: v2}}]
    ///   - route: [{destination: {host: reviews, subset: v1}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let canary: Labels = [("version".to_string(), "canary".to_string())].into();
    /// let attrs = HttpRequestAttrs::new("default", "reviews", "/", &h).with_source_labels(&canary);
    /// assert_eq!(snap.route_http(&attrs).destinations()[0].subset.as_deref(), Some("v2"));
    /// ```
    pub fn with_source_labels(mut self, labels: &'a Labels) -> Self {
        self.source_labels = labels;
        self
    }

    /// Routes at a gateway: as Gateway `ns/name` (or a list, or a route configuration name:
    /// see [`HttpRequestAttrs::gateway`]).
    ///
    /// Gateway routing uses the VirtualServices bound to the Gateway, exported to the
    /// client (gateway workload) namespace, for the names where a server host admitting
    /// their namespace and one of their hosts meet (the narrower of the two), on the port.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: bookinfo-gateway, namespace: default}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers:
    ///   - port: {number: 8080, name: http, protocol: HTTP}
    ///     hosts: [bookinfo.example.com]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: bookinfo, namespace: default}
    /// spec:
    ///   hosts: [bookinfo.example.com]
    ///   gateways: [bookinfo-gateway]
    ///   http:
    ///   - match: [{uri: {exact: /productpage}}, {uri: {prefix: /static}}]
    ///     route: [{destination: {host: productpage, port: {number: 9080}}}]
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let at_gateway = |authority, path| {
    ///     let attrs = HttpRequestAttrs::new("istio-system", authority, path, &h)
    ///         .with_gateway(Some("default/bookinfo-gateway"))
    ///         .with_port(8080);
    ///     let d = snap.route_http(&attrs);
    ///     (d.status(), d.destinations().first().map(|w| w.host.to_string()))
    /// };
    /// assert_eq!(
    ///     at_gateway("bookinfo.example.com", "/productpage"),
    ///     (None, Some("productpage.default.svc.cluster.local".to_string()))
    /// );
    /// assert_eq!(at_gateway("bookinfo.example.com", "/admin"), (Some(404), None));
    /// assert_eq!(at_gateway("other.example.com", "/productpage"), (Some(404), None));
    /// ```
    pub fn with_gateway(mut self, gateway: Option<&'a str>) -> Self {
        self.gateway = gateway;
        self
    }

    /// Sets the JWT the gateway verified, for JWT claim based routing (Istio's
    /// `@request.auth.claims.<claim>` and `@request.auth.claims[a][b]` keys in `headers` and
    /// `withoutHeaders` of gateway-bound VirtualServices). A string claim matches the value;
    /// a list claim matches when any element does; a request without a token matches no
    /// `headers` claim condition and every `withoutHeaders` one.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::RequestAuth;
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: httpbin-gateway, namespace: foo}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: httpbin, namespace: foo}
    /// spec:
    ///   hosts: ['*']
    ///   gateways: [httpbin-gateway]
    ///   http:
    ///   - match: [{uri: {prefix: /headers}, headers: {'@request.auth.claims.groups': {exact: group1}}}]
    ///     route: [{destination: {host: httpbin, subset: v2}}]
    ///   - route: [{destination: {host: httpbin, subset: v1}}]
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let subset = |auth: Option<&RequestAuth>| {
    ///     let attrs = HttpRequestAttrs::new("istio-system", "httpbin.example.com", "/headers", &h)
    ///         .with_gateway(Some("foo/httpbin-gateway"))
    ///         .with_request_auth(auth);
    ///     snap.route_http(&attrs).destinations()[0].subset.as_deref().map(str::to_owned)
    /// };
    /// let group1 = RequestAuth::from_claims(serde_json::json!({"groups": ["group1", "group2"]}));
    /// let group2 = RequestAuth::from_claims(serde_json::json!({"groups": "group2"}));
    /// assert_eq!(subset(Some(&group1)).as_deref(), Some("v2"));
    /// assert_eq!(subset(Some(&group2)).as_deref(), Some("v1"));
    /// assert_eq!(subset(None).as_deref(), Some("v1")); // no token
    /// ```
    pub fn with_request_auth(mut self, auth: Option<&'a RequestAuth>) -> Self {
        self.request_auth = auth;
        self
    }

    /// Sets the method.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings}
    /// spec:
    ///   hosts: [ratings]
    ///   http:
    ///   - match: [{method: {exact: DELETE}}]
    ///     directResponse: {status: 405}
    ///   - route: [{destination: {host: ratings}}]
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let attrs = HttpRequestAttrs::new("default", "ratings", "/ratings/1", &h);
    /// assert_eq!(snap.route_http(&attrs.with_method("DELETE")).status(), Some(405));
    /// assert_eq!(snap.route_http(&attrs).status(), None); // GET is forwarded
    /// ```
    pub fn with_method(mut self, method: &'a str) -> Self {
        self.method = method;
        self
    }

    /// Sets the destination port.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: ratings, namespace: default}
    /// spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings}
    /// spec:
    ///   hosts: [ratings]
    ///   http:
    ///   - match: [{port: 9080}]
    ///     route: [{destination: {host: ratings}}]
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let attrs = HttpRequestAttrs::new("default", "ratings", "/", &h);
    /// assert_eq!(attrs.effective_port(), 80); // no port in the authority
    /// // on port 80 the VirtualService keeps no route: the default route applies
    /// assert_eq!(snap.route_http(&attrs).virtual_service_name(), None);
    /// assert_eq!(snap.route_http(&attrs.with_port(9080)).route_index(), Some(0));
    /// ```
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the scheme.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: web}
    /// spec: {hosts: [web.example.com], ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}], resolution: DNS}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: web}
    /// spec:
    ///   hosts: [web.example.com]
    ///   http:
    ///   - match: [{scheme: {exact: http}}]
    ///     redirect: {scheme: https}
    ///   - route: [{destination: {host: web.example.com}}]
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let attrs = HttpRequestAttrs::new("default", "web.example.com", "/", &h);
    /// assert_eq!(snap.route_http(&attrs).status(), Some(301)); // http: redirected
    /// let tls = attrs.with_scheme("https");
    /// assert_eq!(tls.effective_port(), 443);
    /// assert_eq!(snap.route_http(&tls).route_index(), Some(1));
    /// ```
    pub fn with_scheme(mut self, scheme: &'a str) -> Self {
        self.scheme = scheme;
        self
    }

    /// The effective destination port.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let h = http::HeaderMap::new();
    /// let a = HttpRequestAttrs::new("default", "reviews:9080", "/", &h);
    /// assert_eq!(a.effective_port(), 9080); // from the authority
    /// assert_eq!(a.with_port(15001).effective_port(), 15001); // the listener's port wins
    /// let a = HttpRequestAttrs::new("default", "api.example.com", "/", &h);
    /// assert_eq!(a.effective_port(), 80);
    /// assert_eq!(a.with_scheme("https").effective_port(), 443);
    /// ```
    pub fn effective_port(&self) -> u16 {
        if self.port != 0 {
            return self.port;
        }
        split_authority(self.authority)
            .1
            .unwrap_or(if self.scheme == "https" { 443 } else { 80 })
    }
}

/// Identity of a compiled VirtualService.
///
/// # Examples
///
/// ```
/// use mesh_core::names::ExportTo;
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews, namespace: bookinfo}
/// spec:
///   hosts: [reviews]
///   exportTo: [.]
///   http: [{route: [{destination: {host: reviews}}]}]
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("bookinfo", "reviews", "/", &h));
/// let vs = d.virtual_service.unwrap();
/// assert_eq!(&*vs.name, "bookinfo/reviews");
/// assert_eq!(&*vs.hosts[0], "reviews.bookinfo.svc.cluster.local");
/// assert_eq!(&*vs.gateways[0], "mesh"); // no `gateways`: sidecars only
/// assert_eq!(vs.export_to, ExportTo::Namespaces(vec!["bookinfo".into()].into()));
/// // not exported: another namespace does not see it
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews.bookinfo", "/", &h));
/// assert!(d.virtual_service.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct VirtualServiceInfo {
    /// `ns/name`.
    pub name: Arc<str>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Resolved hosts.
    pub hosts: Box<[Arc<str>]>,
    /// Resolved gateways (`mesh`, `ns/name`).
    pub gateways: Box<[Box<str>]>,
    /// Visibility.
    pub export_to: ExportTo,
}

/// A compiled HTTP route (a delegate's routes are flattened into their root's).
///
/// # Examples
///
/// ```
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: bookinfo}
/// spec:
///   hosts: [bookinfo.example.com]
///   http:
///   - name: reviews
///     match: [{uri: {prefix: /reviews}}]
///     delegate: {name: reviews-routes}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews-routes}
/// spec:
///   http:
///   - name: v2
///     match: [{uri: {prefix: /reviews/v2}}]
///     route: [{destination: {host: reviews, subset: v2}}]
///   - name: v1
///     route: [{destination: {host: reviews, subset: v1}}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "bookinfo.example.com", "/reviews/v2/1", &h));
/// let rule = d.rule.unwrap();
/// assert_eq!(rule.index, 0); // the root's route
/// assert_eq!(rule.name.as_deref(), Some("reviews-v2"));
/// assert_eq!(rule.delegate.as_ref().map(|(vs, i)| (&**vs, *i)), Some(("default/reviews-routes", 0)));
/// assert_eq!(rule.action.destinations[0].subset.as_deref(), Some("v2"));
/// ```
#[derive(Debug, Clone)]
pub struct HttpRule {
    /// Index of the route in the (root) VirtualService's `http` list.
    pub index: usize,
    /// Route name.
    pub name: Option<Box<str>>,
    /// For delegated routes: the delegate VirtualService and the route's index in it.
    pub delegate: Option<(Arc<str>, usize)>,
    matches: Box<[MatchBlock]>,
    /// What the route does.
    pub action: HttpAction,
}

#[derive(Debug, Clone)]
struct L4Match {
    sni: Box<[Box<str>]>,
    subnets: Box<[IpNet]>,
    port: Option<u16>,
    source_labels: Labels,
    source_ns: Option<Box<str>>,
    gateways: Option<Box<[Box<str>]>>,
}

impl L4Match {
    /// istiod: `matchTCP` / `matchTLS` on sidecars (gateways, port, source labels and
    /// namespace, all AND-ed; unlike HTTP, `gateways` does not switch `sourceLabels` off),
    /// `l4SingleMatch` on gateways (port and gateway only: the source predicates and the
    /// subnets do not apply there).
    fn ok(&self, a: &L4Attrs<'_>) -> bool {
        if !self.ok_but_sni(a) {
            return false;
        }
        if !self.sni.is_empty() {
            // `*` makes a chain without server names (pilot `toFilterChainMatch`), which
            // also takes a ClientHello without SNI
            let Some(sni) = a.sni else {
                return self.sni.iter().any(|h| &**h == "*");
            };
            return self.sni.iter().any(|h| sni_matches(h, sni));
        }
        true
    }

    /// [`L4Match::ok`] but for `sniHosts`: whether istiod builds this match's filter chain
    /// for the client at all.
    fn ok_but_sni(&self, a: &L4Attrs<'_>) -> bool {
        if self.port.is_some_and(|p| p != a.port) {
            return false;
        }
        if let Some(g) = &self.gateways {
            let ctx = a.gateway.unwrap_or("mesh");
            if !g.iter().any(|g| &**g == ctx) {
                return false;
            }
        }
        if a.gateway.is_none() {
            if self
                .source_ns
                .as_deref()
                .is_some_and(|n| n != a.client_namespace)
            {
                return false;
            }
            if !crate::names::labels_match(&self.source_labels, a.source_labels) {
                return false;
            }
        }
        if a.gateway.is_none()
            && !self.subnets.is_empty()
            && !a
                .destination_ip
                .is_some_and(|ip| self.subnets.iter().any(|n| n.contains(&ip)))
        {
            return false;
        }
        true
    }
}

impl L4Match {
    /// How specifically this match's `destinationSubnets` fit the destination address, as
    /// Envoy's filter chain match ranks destination ranges (the longest prefix): its
    /// longest subnet holding the address, plus one; 0 without subnets (any address) or at
    /// a gateway (where they do not apply).
    fn subnet_specificity(&self, a: &L4Attrs<'_>) -> u16 {
        match a.destination_ip {
            Some(ip) if a.gateway.is_none() => self
                .subnets
                .iter()
                .filter(|n| n.contains(&ip))
                .map(|n| u16::from(n.prefix_len()) + 1)
                .max()
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// How specifically this match's `sniHosts` fit `sni`: (2, length) for an exact name,
    /// (1, suffix length) for a wildcard, (0, 0) without names.
    fn sni_specificity(&self, sni: &str) -> (u8, usize) {
        self.sni
            .iter()
            .filter(|h| sni_matches(h, sni))
            .map(|h| match h.strip_prefix('*') {
                Some(suffix) => (1, suffix.len()),
                None => (2, h.len()),
            })
            .max()
            .unwrap_or((0, 0))
    }
}

fn sni_matches(pattern: &str, sni: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            sni.len() >= suffix.len()
                && sni.as_bytes()[sni.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        }
        None => pattern.eq_ignore_ascii_case(sni),
    }
}

/// A compiled TLS or TCP route.
#[derive(Debug, Clone)]
pub(crate) struct L4Rule {
    /// Index in the VirtualService's `tls` / `tcp` list.
    pub index: usize,
    matches: Box<[L4Match]>,
    /// Weighted destinations.
    pub destinations: Box<[WeightedDestination]>,
}

#[derive(Debug)]
struct CompiledVs {
    info: VirtualServiceInfo,
    is_delegate: bool,
    http: Vec<HttpRule>,
    tls: Box<[L4Rule]>,
    tcp: Box<[L4Rule]>,
    /// True when static pre-filters can leave the VirtualService without an HTTP route for
    /// some client or port: no HTTP routes at all, or every route has matches and every
    /// match block a `port`, `sourceLabels`, `sourceNamespace` or `gateways` filter.
    may_vanish: bool,
    /// Ports (sorted) of the registry services the hosts cover whose protocol is HTTP,
    /// sniffed, TLS or HTTPS (not opaque TCP or UDP): besides port 80, the only ports on
    /// which the VirtualService applies to HTTP traffic.
    service_ports: Box<[u16]>,
}

impl CompiledVs {
    /// Whether a sidecar routes this request with this VirtualService, as istiod builds
    /// sidecar virtual hosts (`buildSidecarVirtualHostsForVirtualService`): only on an HTTP
    /// (or sniffed) port of a registry service its hosts cover (a TLS port counts too: the
    /// mesh client sees the request; docs, where we differ), or on port 80 (istiod's
    /// special case: route configuration `80` sees only the services declaring port 80,
    /// so a VirtualService whose services declare none gets a virtual host there), and
    /// only when it keeps a route ([`Self::keeps_a_route`]).
    #[inline]
    fn applies_to_http(&self, view: &ReqView<'_>) -> bool {
        (view.port == 80 || self.service_ports.contains(&view.port)) && self.keeps_a_route(view)
    }

    /// True when at least one HTTP route survives the static pre-filters for this client
    /// and port: istiod drops the match blocks that fail them (`translateRoute` returns
    /// nil) and builds no virtual host for a VirtualService left without routes, so the
    /// service keeps its default route (spec §2.2, §2.3 step 3). Only VirtualServices whose
    /// every route has such filters are scanned.
    #[inline]
    fn keeps_a_route(&self, view: &ReqView<'_>) -> bool {
        !self.may_vanish
            || self
                .http
                .iter()
                .any(|r| r.matches.iter().any(|b| b.static_ok(view)))
    }
}

/// A server host `[ns/]name`: the namespace filter (`None`: any namespace) and the name.
type ServerHost = (Option<Box<str>>, Box<str>);

#[derive(Debug, Clone)]
struct GatewayServerHosts {
    port: u16,
    hosts: Vec<ServerHost>,
}

/// One Gateway, for routing.
#[derive(Debug, Default)]
struct GatewayRoutes {
    /// Its position in [`RouteTable::gateway_meta`].
    id: u32,
    servers: Vec<GatewayServerHosts>,
    /// Ports of its plain HTTP servers (their virtual hosts are in
    /// [`RouteTable::http_routes`]).
    http_ports: Vec<u16>,
    /// Its TLS-terminating HTTPS servers: (port, route configuration name).
    https: Vec<(u16, Box<str>)>,
    /// For `tls` and `tcp` routes: VS host → (vs index, ports of servers admitting that host)
    index: HostMap<Vec<(u32, Box<[u16]>)>>,
}

/// A Gateway's name and selector.
#[derive(Debug)]
struct GatewayMeta {
    name: Box<str>,
    selector: Option<Labels>,
}

/// No VirtualService: the virtual host an `httpsRedirect` server makes for its own hosts.
const NO_VS: u32 = u32::MAX;

/// What one server contributes to a gateway virtual host (istiod
/// `buildGatewayHTTPRouteConfig`): the routes of VirtualService `vs` as bound through
/// Gateway `gateway`, or (`vs == NO_VS`) only its `httpsRedirect`.
#[derive(Debug, Clone, Copy)]
struct VhostEntry {
    vs: u32,
    gateway: u32,
    /// The server has `httpsRedirect` (Envoy `require_tls: ALL` on the virtual host).
    require_tls: bool,
}

/// A gateway HTTP route configuration: virtual host name (a server host ∩ VirtualService
/// host) → what each server contributes, in server then VirtualService order.
type GatewayVhosts = HostMap<Vec<VhostEntry>>;

/// The route configuration of one TLS-terminating HTTPS server
/// (`https.<port>.<portName>.<gateway>.<namespace>`).
#[derive(Debug, Default)]
struct HttpsServerRoutes {
    hosts: Vec<ServerHost>,
    vhosts: GatewayVhosts,
}

/// Which Gateways' contributions a route configuration takes.
#[derive(Debug, Clone, Copy)]
enum GatewayScope<'s> {
    /// All (one server's configuration).
    All,
    /// Gateways whose selector matches the gateway workload's labels (`http.<port>`).
    Selecting(&'s Labels),
    /// These Gateways (comma-separated `ns/name`s).
    Listed(&'s str),
}

/// The compiled routing configuration.
///
/// Usually reached through a [`Snapshot`](crate::snapshot::Snapshot), whose `route_*`
/// methods pass it the registry and options.
///
/// # Examples
///
/// ```
/// use mesh_core::names::MeshOptions;
/// use mesh_core::route::{HttpRequestAttrs, RouteTable};
/// use mesh_core::snapshot::Snapshot;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http: [{route: [{destination: {host: ratings, subset: v1}}]}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: ratings}
/// spec: {host: ratings, subsets: [{name: v1, labels: {version: v1}}]}
/// ", "ratings.yaml");
/// let opts = MeshOptions::default();
/// let table = RouteTable::build(&loaded.objects, &opts);
/// assert_eq!(table.len(), 1);
/// assert!(table.errors.is_empty());
///
/// let snap = Snapshot::build(&loaded.objects, opts.clone()); // for its registry
/// let h = http::HeaderMap::new();
/// let d = table.route_http(snap.registry(), &opts, &HttpRequestAttrs::new("default", "ratings", "/", &h));
/// assert_eq!(d.destinations()[0].subset.as_deref(), Some("v1"));
/// ```
#[derive(Debug, Default)]
pub struct RouteTable {
    vss: Vec<CompiledVs>,
    /// The retry policy of a service's default route (MeshConfig `defaultHttpRetryPolicy`;
    /// `None`: Istio's default).
    default_retries: Option<Box<RetryPolicy>>,
    mesh: HostMap<Vec<u32>>,
    gateways: HashMap<Box<str>, GatewayRoutes>,
    /// Every Gateway, by [`GatewayRoutes::id`].
    gateway_meta: Vec<GatewayMeta>,
    /// `http.<port>`: the plain HTTP servers of every Gateway on the port, merged as
    /// istiod merges them for a gateway workload (`MergeGateways`); a request sees the
    /// contributions of the Gateways that select its workload.
    http_routes: HashMap<u16, GatewayVhosts>,
    /// `https.<port>.<portName>.<gateway>.<namespace>`: one route configuration per
    /// TLS-terminating HTTPS server.
    https_routes: HashMap<Box<str>, HttpsServerRoutes>,
    /// Some mesh VirtualService has `tls` routes (an `https` request looks for them only
    /// then).
    mesh_tls_routes: bool,
    /// Problems met while compiling (bad regexes, missing delegates): each disables only the
    /// condition or route concerned (a condition that cannot compile never matches).
    pub errors: Vec<String>,
}

/// What happens to the request.
///
/// # Examples
///
/// ```
/// use mesh_core::route::{HttpRequestAttrs, RouteOutcome};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: httpbin}
/// spec:
///   hosts: [httpbin]
///   http:
///   - match: [{uri: {prefix: /old}}]
///     redirect: {uri: /new, redirectCode: 302}
///   - match: [{uri: {prefix: /maintenance}}]
///     directResponse: {status: 503, body: {string: "down for maintenance"}}
///   - match: [{uri: {prefix: /api}}]
///     route: [{destination: {host: httpbin}}]
/// "#).unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let outcome = |path| snap.route_http(&HttpRequestAttrs::new("default", "httpbin", path, &h)).outcome;
/// assert!(matches!(outcome("/old/page"), RouteOutcome::Redirect(r) if r.code == 302));
/// assert!(matches!(outcome("/maintenance"), RouteOutcome::DirectResponse(d) if d.status == 503));
/// assert_eq!(outcome("/api/get"), RouteOutcome::Forward);
/// assert_eq!(outcome("/"), RouteOutcome::NoRoute);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOutcome<'a> {
    /// Forward to the destinations.
    Forward,
    /// A VirtualService exists but no route matched: 404, empty body (Envoy NR).
    NoRoute,
    /// Answered with a redirect.
    Redirect(&'a Redirect),
    /// Answered with a fixed response.
    DirectResponse(&'a DirectResponse),
}

/// The routing decision for an HTTP request.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - {destination: {host: reviews, subset: v1}, weight: 75}
///     - {destination: {host: reviews, subset: v3}, weight: 25}
///     timeout: 5s
///     retries: {attempts: 3, perTryTimeout: 2s}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v3, labels: {version: v3}}]}
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews:9080", "/reviews/0", &h));
/// assert_eq!(d.virtual_service_name(), Some("default/reviews"));
/// assert_eq!(d.route_index(), Some(0));
/// assert_eq!(d.status(), None); // forwarded
/// assert_eq!(d.timeout(), Some(Duration::from_secs(5)));
/// assert_eq!(d.retries().attempts, 3);
/// assert_eq!(d.retries().per_try_timeout, Some(Duration::from_secs(2)));
/// // pick with a uniform random number: 0..75 of every 100 go to v1
/// let subset = |r| d.pick(r).unwrap().subset.as_deref().unwrap().to_owned();
/// assert_eq!((subset(74), subset(75), subset(199)), ("v1".into(), "v3".into(), "v3".into()));
/// ```
#[derive(Debug, Clone)]
pub struct RouteDecision<'a> {
    /// The requested host as an FQDN (after short-name expansion).
    pub host: Cow<'a, str>,
    /// The VirtualService that applied.
    pub virtual_service: Option<&'a VirtualServiceInfo>,
    /// The matched route.
    pub rule: Option<&'a HttpRule>,
    /// The outcome.
    pub outcome: RouteOutcome<'a>,
    /// The `name` of the match condition that matched, if it has one (see
    /// [`RouteDecision::route_name`]).
    pub match_name: Option<&'a str>,
    /// Length of the path prefix the matched `uri` condition covered (for `rewrite.uri`
    /// and `redirect.prefixRewrite`).
    pub prefix_len: usize,
    destinations: Cow<'a, [WeightedDestination]>,
    /// The retry policy when no route matched (the service's default route).
    default_retries: &'a RetryPolicy,
    /// Index of the VirtualService's `tls` route that decided an `https` request of mesh
    /// traffic (the application's own TLS, which a sidecar routes by its SNI and port, as
    /// a connection: no `http` route, retry, timeout or header operation applies).
    pub tls_route: Option<usize>,
    /// Index of the VirtualService's `tcp` route that decided a request to a port its
    /// service declares TCP (see [`RouteDecision::opaque`]).
    pub tcp_route: Option<usize>,
    /// The request went to a port its service declares TCP (`TCP`, `MONGO`, `MYSQL`,
    /// `REDIS`): a sidecar proxies its bytes as a connection, by the `tcp` routes
    /// ([`RouteDecision::tcp_route`]) or to the service itself; no `http` route, retry,
    /// timeout or header operation applies.
    pub opaque: bool,
}

impl<'a> RouteDecision<'a> {
    /// The name istiod gives the Envoy route that decided (the access log's
    /// `%ROUTE_NAME%`): the route's `name`, then `.<name>` of the match condition that
    /// matched when it has one; `None` without a named route or match.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - name: v2
    ///     match: [{name: jason, headers: {end-user: {exact: jason}}}, {uri: {prefix: /v2}}]
    ///     route: [{destination: {host: reviews}}]
    ///   - route: [{destination: {host: reviews}}]
    /// ").unwrap().snapshot();
    /// let route = |user: &str, path| {
    ///     let mut h = http::HeaderMap::new();
    ///     h.insert("end-user", user.parse().unwrap());
    ///     let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", path, &h));
    ///     d.route_name().map(|n| n.into_owned())
    /// };
    /// assert_eq!(route("jason", "/").as_deref(), Some("v2.jason"));
    /// assert_eq!(route("kim", "/v2/1").as_deref(), Some("v2"));
    /// assert_eq!(route("kim", "/"), None);
    /// ```
    pub fn route_name(&self) -> Option<Cow<'a, str>> {
        let rule = self.rule?.name.as_deref();
        match (rule, self.match_name) {
            (r, Some(m)) => Some(Cow::Owned(format!("{}.{m}", r.unwrap_or("")))),
            (Some(r), None) => Some(Cow::Borrowed(r)),
            (None, None) => None,
        }
    }

    /// `ns/name` of the VirtualService.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{uri: {prefix: /v2}}]
    ///     route: [{destination: {host: reviews, subset: v2}}]
    ///     timeout: 3s
    ///   - route: [{destination: {host: reviews, subset: v1}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let route = |path| snap.route_http(&HttpRequestAttrs::new("bookinfo", "reviews", path, &h));
    /// assert_eq!(route("/v2/reviews").virtual_service_name(), Some("bookinfo/reviews"));
    /// // no VirtualService for ratings: routed to the service itself
    /// let d = snap.route_http(&HttpRequestAttrs::new("bookinfo", "ratings", "/", &h));
    /// assert_eq!(d.virtual_service_name(), None);
    /// assert_eq!(&*d.destinations()[0].host, "ratings.bookinfo.svc.cluster.local");
    /// ```
    pub fn virtual_service_name(&self) -> Option<&'a str> {
        self.virtual_service.map(|v| &*v.name)
    }

    /// Index of the matched route in the VirtualService's `http` list.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{uri: {prefix: /v2}}]
    ///     route: [{destination: {host: reviews, subset: v2}}]
    ///     timeout: 3s
    ///   - route: [{destination: {host: reviews, subset: v1}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let route = |path| snap.route_http(&HttpRequestAttrs::new("bookinfo", "reviews", path, &h));
    /// assert_eq!(route("/v2/reviews").route_index(), Some(0));
    /// assert_eq!(route("/reviews").route_index(), Some(1));
    /// ```
    pub fn route_index(&self) -> Option<usize> {
        self.rule.map(|r| r.index)
    }

    /// The matched route's action.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{uri: {prefix: /v2}}]
    ///     route: [{destination: {host: reviews, subset: v2}}]
    ///     timeout: 3s
    ///   - route: [{destination: {host: reviews, subset: v1}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let route = |path| snap.route_http(&HttpRequestAttrs::new("bookinfo", "reviews", path, &h));
    /// let d = route("/v2/reviews");
    /// assert_eq!(d.action().unwrap().timeout, Some(std::time::Duration::from_secs(3)));
    /// let none = snap.route_http(&HttpRequestAttrs::new("bookinfo", "ratings", "/", &h));
    /// assert!(none.action().is_none()); // no VirtualService, no route
    /// ```
    pub fn action(&self) -> Option<&'a HttpAction> {
        self.rule.map(|r| &r.action)
    }

    /// Weighted destinations (empty when the mesh answers itself).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{uri: {prefix: /v2}}]
    ///     route: [{destination: {host: reviews, subset: v2}}]
    ///     timeout: 3s
    ///   - route: [{destination: {host: reviews, subset: v1}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let route = |path| snap.route_http(&HttpRequestAttrs::new("bookinfo", "reviews", path, &h));
    /// let d = route("/reviews");
    /// assert_eq!(d.destinations().len(), 1);
    /// assert_eq!(&*d.destinations()[0].host, "reviews.bookinfo.svc.cluster.local");
    /// assert_eq!(d.destinations()[0].subset.as_deref(), Some("v1"));
    /// ```
    pub fn destinations(&self) -> &[WeightedDestination] {
        match self.outcome {
            RouteOutcome::Forward => &self.destinations,
            _ => &[],
        }
    }

    /// Picks a destination with a uniform random number.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - route:
    ///     - {destination: {host: reviews, subset: v1}, weight: 90}
    ///     - {destination: {host: reviews, subset: v2}, weight: 10}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
    /// // the caller supplies the randomness; any 1000 consecutive numbers split 900/100
    /// let v2 = (5000..6000u64)
    ///     .filter(|r| d.pick(*r).unwrap().subset.as_deref() == Some("v2"))
    ///     .count();
    /// assert_eq!(v2, 100);
    /// ```
    pub fn pick(&self, random: u64) -> Option<&WeightedDestination> {
        pick(self.destinations(), random)
    }

    /// The status when the mesh answers itself: 404 (no route), the redirect code, the
    /// direct response status, or an abort that always fires.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: details}
    /// spec:
    ///   hosts: [details]
    ///   http:
    ///   - match: [{headers: {end-user: {exact: jason}}}]
    ///     fault: {abort: {httpStatus: 555, percentage: {value: 100}}}
    ///     route: [{destination: {host: details}}]
    ///   - match: [{headers: {end-user: {exact: mary}}}]
    ///     fault: {abort: {httpStatus: 500, percentage: {value: 50}}}
    ///     route: [{destination: {host: details}}]
    /// ").unwrap().snapshot();
    /// let status = |user: &str| {
    ///     let mut h = http::HeaderMap::new();
    ///     h.insert("end-user", user.parse().unwrap());
    ///     snap.route_http(&HttpRequestAttrs::new("default", "details", "/", &h)).status()
    /// };
    /// assert_eq!(status("jason"), Some(555)); // the abort always fires
    /// assert_eq!(status("mary"), None); // it fires only sometimes: decide per request
    /// assert_eq!(status("bob"), Some(404)); // no route
    /// ```
    pub fn status(&self) -> Option<u16> {
        match self.outcome {
            RouteOutcome::NoRoute => Some(404),
            RouteOutcome::Redirect(r) => Some(r.code),
            RouteOutcome::DirectResponse(d) => Some(d.status),
            RouteOutcome::Forward => match self.action()?.fault.as_ref()?.abort {
                Some((AbortStatus::Http(s), share)) if share.0 >= 1_000_000 => Some(s),
                Some((AbortStatus::Grpc(_), share)) if share.0 >= 1_000_000 => Some(200),
                _ => None,
            },
        }
    }

    /// The retry policy in force: the route's; without a route, the default route's (the
    /// mesh's `defaultHttpRetryPolicy`, else Istio's default).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{uri: {prefix: /v2}}]
    ///     route: [{destination: {host: reviews, subset: v2}}]
    ///     timeout: 3s
    ///   - route: [{destination: {host: reviews, subset: v1}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let route = |path| snap.route_http(&HttpRequestAttrs::new("bookinfo", "reviews", path, &h));
    /// // no `retries` on the route: Istio's default policy
    /// assert_eq!(route("/reviews").retries().attempts, 2);
    /// assert_eq!(route("/reviews").retries(), mesh_core::route::RetryPolicy::istio_default());
    /// ```
    pub fn retries(&self) -> &'a RetryPolicy {
        self.action()
            .map(|a| &a.retries)
            .unwrap_or(self.default_retries)
    }

    /// The route timeout (`None`: disabled).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{uri: {prefix: /v2}}]
    ///     route: [{destination: {host: reviews, subset: v2}}]
    ///     timeout: 3s
    ///   - route: [{destination: {host: reviews, subset: v1}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let route = |path| snap.route_http(&HttpRequestAttrs::new("bookinfo", "reviews", path, &h));
    /// assert_eq!(route("/v2/reviews").timeout(), Some(std::time::Duration::from_secs(3)));
    /// assert_eq!(route("/reviews").timeout(), None); // disabled, as in Istio
    /// ```
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.action().and_then(|a| a.timeout)
    }
}

/// Attributes of a TLS or TCP connection.
///
/// # Examples
///
/// ```
/// use mesh_core::route::L4Attrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: db}
/// spec:
///   hosts: [db.internal]
///   addresses: [10.20.0.0/16]
///   ports: [{number: 5432, name: tcp, protocol: TCP}]
///   resolution: NONE
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: db-by-subnet}
/// spec:
///   hosts: [db.internal]
///   tcp:
///   - match: [{destinationSubnets: [10.20.1.0/24], port: 5432}]
///     route: [{destination: {host: db-replica.internal, port: {number: 5432}}}]
/// ").unwrap().snapshot();
/// // the ServiceEntry's range owns the address; the route's subnet matches it
/// let to = |ip: &str| L4Attrs {
///     destination_ip: Some(ip.parse().unwrap()),
///     ..L4Attrs::new("default", 5432)
/// };
/// assert_eq!(to("10.20.1.2").gateway, None); // mesh traffic
/// let d = snap.route_tcp(&to("10.20.1.2"));
/// assert_eq!(d.route_index, Some(0));
/// assert_eq!(&*d.destinations[0].host, "db-replica.internal");
/// // outside the route's subnet: the service itself
/// assert_eq!(&*snap.route_tcp(&to("10.20.9.9")).destinations[0].host, "db.internal");
/// // an address no service owns: passed through, whatever subnet a route names
/// assert!(snap.route_tcp(&to("10.30.0.1")).virtual_service.is_none());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct L4Attrs<'a> {
    /// The client's namespace.
    pub client_namespace: &'a str,
    /// The client's labels.
    pub source_labels: &'a Labels,
    /// Gateway `ns/name`, or `None` for mesh traffic.
    pub gateway: Option<&'a str>,
    /// Original destination IP.
    pub destination_ip: Option<IpAddr>,
    /// Destination port.
    pub port: u16,
    /// TLS SNI.
    pub sni: Option<&'a str>,
}

impl<'a> L4Attrs<'a> {
    /// Mesh traffic from `client_namespace` to `port`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::L4Attrs;
    ///
    /// let attrs = L4Attrs::new("default", 5432);
    /// assert_eq!((attrs.client_namespace, attrs.port), ("default", 5432));
    /// assert!(attrs.gateway.is_none() && attrs.sni.is_none() && attrs.destination_ip.is_none());
    /// ```
    pub fn new(client_namespace: &'a str, port: u16) -> Self {
        L4Attrs {
            client_namespace,
            source_labels: &EMPTY_LABELS,
            gateway: None,
            destination_ip: None,
            port,
            sni: None,
        }
    }
}

/// The routing decision for a TLS (by SNI) or TCP connection.
///
/// # Examples
///
/// ```
/// use mesh_core::route::L4Attrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: wikipedia}
/// spec:
///   hosts: ['*.wikipedia.org']
///   tls:
///   - match: [{port: 443, sniHosts: ['*.wikipedia.org']}]
///     route:
///     - {destination: {host: en.wikipedia.org}, weight: 50}
///     - {destination: {host: de.wikipedia.org}, weight: 50}
/// ").unwrap().snapshot();
/// let attrs = L4Attrs { sni: Some("fr.wikipedia.org"), ..L4Attrs::new("default", 443) };
/// let d = snap.route_tls(&attrs);
/// assert_eq!(d.host, "fr.wikipedia.org");
/// assert_eq!(d.virtual_service.map(|v| &*v.name), Some("default/wikipedia"));
/// assert_eq!(d.pick(0).map(|w| &*w.host), Some("en.wikipedia.org"));
/// assert_eq!(d.pick(50).map(|w| &*w.host), Some("de.wikipedia.org"));
/// ```
#[derive(Debug, Clone)]
pub struct L4Decision<'a> {
    /// The destination host (SNI, the service found by address, or the IP).
    pub host: Cow<'a, str>,
    /// The VirtualService that applied.
    pub virtual_service: Option<&'a VirtualServiceInfo>,
    /// Index of the matched `tls` / `tcp` route.
    pub route_index: Option<usize>,
    /// Weighted destinations.
    pub destinations: Cow<'a, [WeightedDestination]>,
    /// No filter chain of the service takes the connection: its VirtualServices' `tls`
    /// routes match other server names (istiod then builds no chain to the service's own
    /// cluster, `buildSidecarOutboundTLSFilterChainOpts`), so the listener's passthrough
    /// chain does: under `ALLOW_ANY` to the original destination (the service's address),
    /// without the mesh's mTLS; under `REGISTRY_ONLY` closed. `destinations` is then the
    /// service.
    pub passthrough: bool,
}

impl L4Decision<'_> {
    /// Picks a destination.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::L4Attrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: db}
    /// spec:
    ///   hosts: [db.internal]
    ///   tcp:
    ///   - route:
    ///     - {destination: {host: db-primary.internal}, weight: 80}
    ///     - {destination: {host: db-replica.internal}, weight: 20}
    /// ").unwrap().snapshot();
    /// let d = snap.route_tcp(&L4Attrs { sni: Some("db.internal"), ..L4Attrs::new("default", 5432) });
    /// assert_eq!(d.pick(79).map(|w| &*w.host), Some("db-primary.internal"));
    /// assert_eq!(d.pick(80).map(|w| &*w.host), Some("db-replica.internal"));
    /// ```
    pub fn pick(&self, random: u64) -> Option<&WeightedDestination> {
        pick(&self.destinations, random)
    }
}

/// A Gateway server host `[ns/]name`, lowercased: `*/` and no namespace admit every
/// namespace, `./` the Gateway's (pilot `sanitizeServerHostNamespace`).
fn server_host(h: &str, gateway_ns: &str) -> ServerHost {
    match h.split_once('/') {
        Some(("*", d)) => (None, d.to_ascii_lowercase().into()),
        Some((".", d)) => (Some(gateway_ns.into()), d.to_ascii_lowercase().into()),
        Some((n, d)) => (Some(n.into()), d.to_ascii_lowercase().into()),
        None => (None, h.to_ascii_lowercase().into()),
    }
}

/// Istio's `host.NamesForNamespace(server.Hosts, ns).Intersection(vs.Hosts)`: for each
/// server host admitting namespace `ns` and each VirtualService host, the narrower of the
/// two when one covers the other (`*.example.com` ∩ `*` = `*.example.com`,
/// `*.example.com` ∩ `a.example.com` = `a.example.com`), without duplicates.
fn intersect_hosts(
    server: &[ServerHost],
    ns: &str,
    vs_hosts: &[Arc<str>],
    out: &mut Vec<Box<str>>,
) {
    for (filter, s) in server {
        if filter.as_deref().is_some_and(|n| n != ns) {
            continue;
        }
        for v in vs_hosts {
            let v = v.to_ascii_lowercase();
            let h: &str = if model::host::subset_of(s, &v) {
                s
            } else if model::host::subset_of(&v, s) {
                &v
            } else {
                continue;
            };
            if !out.iter().any(|o| &**o == h) {
                out.push(h.into());
            }
        }
    }
}

/// Adds a server's contribution to a virtual host; the same VirtualService through the
/// same Gateway twice (two servers admitting the host) adds no routes, only its
/// `httpsRedirect`.
fn add_vhost_entry(list: &mut Vec<VhostEntry>, e: VhostEntry) {
    match list
        .iter_mut()
        .find(|x| x.vs == e.vs && x.gateway == e.gateway)
    {
        Some(x) => x.require_tls |= e.require_tls,
        None => list.push(e),
    }
}

/// How well a server host (lowercase) matches an SNI or host (lowercase), as Envoy picks a
/// filter chain by server name: exact beats the longest `*.suffix`, which beats `*`.
fn sni_score(pattern: &str, host: &str) -> Option<usize> {
    if pattern == "*" {
        return Some(0);
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            (host.len() > suffix.len() && host.ends_with(suffix)).then_some(suffix.len())
        }
        None => (pattern == host).then_some(usize::MAX),
    }
}

/// The address an application's sidecar would see it dial for `service`: its own (a
/// cluster IP, a ServiceEntry's single address), for `destinationSubnets`.
fn single_address(service: &crate::registry::Service) -> Option<std::net::IpAddr> {
    service
        .addresses
        .first()
        .filter(|n| n.prefix_len() == n.max_prefix_len())
        .map(|n| n.addr())
}

/// A service port whose traffic is TLS a sidecar routes by SNI (`TLS`, `HTTPS`).
fn is_tls_protocol(p: &str) -> bool {
    matches!(p, "TLS" | "HTTPS")
}

/// A service port a sidecar proxies as opaque bytes (a `tcp_proxy` filter chain, no HTTP
/// route configuration): `TCP`, `MONGO`, `MYSQL`, `REDIS` (upper case). Unlike the
/// registry's `is_tcp_protocol` (the ports with a `0.0.0.0` TCP listener), a sniffed or
/// unknown protocol is not: a sidecar detects HTTP there and routes it as HTTP.
fn is_opaque_tcp(p: &str) -> bool {
    matches!(p, "TCP" | "MONGO" | "MYSQL" | "REDIS")
}

fn passthrough(host: Cow<'_, str>) -> Cow<'_, [WeightedDestination]> {
    Cow::Owned(vec![WeightedDestination {
        host: Arc::from(&*host),
        subset: None,
        port: None,
        weight: 100,
        headers: None,
    }])
}

impl RouteTable {
    /// Compiles every VirtualService (and the Gateways' server hosts).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::route::RouteTable;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings}
    /// spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}]}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: bad-regex}
    /// spec: {hosts: [details], http: [{match: [{uri: {regex: '(unclosed'}}], route: [{destination: {host: details}}]}]}
    /// ", "vs.yaml");
    /// let table = RouteTable::build(&loaded.objects, &MeshOptions::default());
    /// assert_eq!(table.len(), 2);
    /// // what cannot be compiled is reported, not a panic
    /// assert_eq!(table.errors.len(), 1);
    /// ```
    pub fn build(objects: &[ConfigObject], opts: &MeshOptions) -> RouteTable {
        let services = crate::registry::ServiceDefs::build(objects, opts);
        Self::build_with_services(objects, opts, &services)
    }

    /// [`RouteTable::build`] with the service definitions already compiled (they say on
    /// which ports a VirtualService applies).
    pub(crate) fn build_with_services(
        objects: &[ConfigObject],
        opts: &MeshOptions,
        services: &crate::registry::ServiceDefs,
    ) -> RouteTable {
        let mut t = RouteTable::default();
        let mut cache = RegexCache::default();
        let default_retries = match &opts.default_http_retry_policy {
            Some(r) => RetryPolicy::compile(Some(r), &mut cache),
            None => RetryPolicy::istio_default().clone(),
        };
        // raw http routes by VS key, for delegation
        let mut raw: HashMap<String, (usize, &model::VirtualService)> = HashMap::new();
        let mut pending: Vec<(usize, &ConfigObject, &model::VirtualService)> = Vec::new();
        for o in objects {
            let Spec::VirtualService(vs) = &o.spec else {
                continue;
            };
            let ns = &o.metadata.namespace;
            let name: Arc<str> = o.key().into();
            let mut errors: Vec<String> = Vec::new();
            let resolve = |h: &str| opts.resolve_host(h, ns);
            let hosts: Box<[Arc<str>]> = vs.hosts.iter().map(|h| resolve(h).into()).collect();
            let gateways: Box<[Box<str>]> = if vs.gateways.is_empty() {
                Box::new(["mesh".into()])
            } else {
                vs.gateways
                    .iter()
                    .map(|g| resolve_gateway_name(g, ns).into())
                    .collect()
            };
            let mut l4 = |matches: Vec<L4Match>, index, dests: &[model::RouteDestination]| L4Rule {
                index,
                matches: matches.into(),
                destinations: actions::compile_destinations(
                    dests.iter().map(|d| (&d.destination, d.weight, None)),
                    &resolve,
                    &mut cache,
                    &mut Vec::new(),
                ),
            };
            let gw_list = |g: &[String]| {
                (!g.is_empty()).then(|| {
                    g.iter()
                        .map(|g| resolve_gateway_name(g, ns).into())
                        .collect::<Box<[Box<str>]>>()
                })
            };
            let subnets = |v: &[String]| -> Box<[IpNet]> {
                v.iter()
                    .filter_map(|s| {
                        s.parse::<IpNet>()
                            .ok()
                            .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
                    })
                    .collect()
            };
            let tls = vs
                .tls
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let m = r
                        .matches
                        .iter()
                        .map(|m| L4Match {
                            sni: m
                                .sni_hosts
                                .iter()
                                .map(|s| s.to_ascii_lowercase().into())
                                .collect(),
                            subnets: subnets(&m.destination_subnets),
                            port: m
                                .port
                                .filter(|&p| p != 0)
                                .and_then(|p| u16::try_from(p).ok()),
                            source_labels: m.source_labels.clone(),
                            source_ns: m
                                .source_namespace
                                .as_deref()
                                .filter(|s| !s.is_empty())
                                .map(Into::into),
                            gateways: gw_list(&m.gateways),
                        })
                        .collect();
                    l4(m, i, &r.route)
                })
                .collect();
            let tcp = vs
                .tcp
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let m = r
                        .matches
                        .iter()
                        .map(|m| L4Match {
                            sni: Box::new([]),
                            subnets: subnets(&m.destination_subnets),
                            port: m
                                .port
                                .filter(|&p| p != 0)
                                .and_then(|p| u16::try_from(p).ok()),
                            source_labels: m.source_labels.clone(),
                            source_ns: m
                                .source_namespace
                                .as_deref()
                                .filter(|s| !s.is_empty())
                                .map(Into::into),
                            gateways: gw_list(&m.gateways),
                        })
                        .collect();
                    l4(m, i, &r.route)
                })
                .collect();
            let idx = t.vss.len();
            t.vss.push(CompiledVs {
                info: VirtualServiceInfo {
                    name: name.clone(),
                    namespace: ns.as_str().into(),
                    hosts,
                    gateways,
                    export_to: ExportTo::compile_or_default(
                        &vs.export_to,
                        ns,
                        &opts.default_virtual_service_export_to,
                    ),
                },
                is_delegate: vs.hosts.is_empty(),
                http: Vec::new(),
                tls,
                tcp,
                may_vanish: false,
                service_ports: Box::new([]),
            });
            raw.insert(o.key(), (idx, vs));
            pending.push((idx, o, vs));
            t.errors
                .extend(errors.drain(..).map(|e| format!("{name}: {e}")));
        }
        // HTTP routes, with delegates flattened into their roots
        for (idx, o, vs) in pending {
            let ns = &o.metadata.namespace;
            let vs_name = t.vss[idx].info.name.clone();
            let mut errors = Vec::new();
            let mut rules = Vec::new();
            for (i, r) in vs.http.iter().enumerate() {
                if let Some(d) = &r.delegate {
                    // (an empty namespace is unset to istiod: the root's)
                    let dns = d
                        .namespace
                        .as_deref()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(ns);
                    let key = format!("{dns}/{}", d.name);
                    let Some((didx, dvs)) = raw.get(&key).copied() else {
                        errors.push(format!(
                            "route {i}: delegate VirtualService {key} not found"
                        ));
                        continue;
                    };
                    if !dvs.hosts.is_empty() || !t.vss[didx].info.export_to.visible_to(ns) {
                        errors.push(format!(
                            "route {i}: {key} is not a delegate VirtualService visible to {ns}"
                        ));
                        continue;
                    }
                    let dname = t.vss[didx].info.name.clone();
                    // istiod resolves every VirtualService's short names in its own namespace
                    // before merging (push_context initVirtualServices), so what a delegate
                    // inherits from the root (a mirror) keeps the root's namespace
                    let root = resolve_root_for_delegate(r, ns, opts);
                    let root_matches = resolved_match_gateways(&r.matches, ns);
                    for (j, dr) in dvs.http.iter().enumerate() {
                        let dmatches = resolved_match_gateways(&dr.matches, dns);
                        let Some(merged_matches) = merge_match_requests(&root_matches, &dmatches)
                        else {
                            // istiod's mergeHTTPRoute drops a conflicting delegate route
                            continue;
                        };
                        let mut merged = dr.clone();
                        inherit(&mut merged, &root);
                        if let Some(code) = unsupported_redirect(&merged) {
                            errors.push(format!(
                                "route {i} (delegate {dname} route {j}): redirect code {code} is not supported by Envoy: the route is dropped"
                            ));
                            continue;
                        }
                        let blocks: Vec<MatchBlock> = merged_matches
                            .iter()
                            .map(|m| MatchBlock::compile(m, dns, &mut cache, &mut errors))
                            .collect();
                        let dresolve = |h: &str| opts.resolve_host(h, dns);
                        rules.push(HttpRule {
                            index: i,
                            name: merged.name.as_deref().map(Into::into),
                            delegate: Some((dname.clone(), j)),
                            matches: blocks.into(),
                            action: HttpAction::compile(
                                &merged,
                                &dresolve,
                                &default_retries,
                                &mut cache,
                                &mut errors,
                            ),
                        });
                    }
                    continue;
                }
                if let Some(code) = unsupported_redirect(r) {
                    errors.push(format!(
                        "route {i}: redirect code {code} is not supported by Envoy: the route is dropped"
                    ));
                    continue;
                }
                let root_blocks: Vec<MatchBlock> = r
                    .matches
                    .iter()
                    .map(|m| MatchBlock::compile(m, ns, &mut cache, &mut errors))
                    .collect();
                let resolve = |h: &str| opts.resolve_host(h, ns);
                rules.push(HttpRule {
                    index: i,
                    name: r.name.as_deref().map(Into::into),
                    delegate: None,
                    matches: root_blocks.into(),
                    action: HttpAction::compile(
                        r,
                        &resolve,
                        &default_retries,
                        &mut cache,
                        &mut errors,
                    ),
                });
            }
            rules.shrink_to_fit();
            // a root's bad match is compiled once per delegate route: report it once
            let mut seen = HashSet::new();
            errors.retain(|e| seen.insert(e.clone()));
            for b in rules.iter_mut().flat_map(|r| r.matches.iter_mut()) {
                b.catch_all = b.is_catch_all();
            }
            let vs = &mut t.vss[idx];
            vs.may_vanish = rules.iter().all(|r| {
                !r.matches.is_empty() && r.matches.iter().all(|b| b.statically_filtered())
            });
            vs.http = rules;
            t.errors
                .extend(errors.into_iter().map(|e| format!("{vs_name}: {e}")));
        }
        // gateways' server hosts
        for o in objects {
            let Spec::Gateway(gw) = &o.spec else { continue };
            let ns = &o.metadata.namespace;
            let id = t.gateway_meta.len() as u32;
            t.gateway_meta.push(GatewayMeta {
                name: o.key().into(),
                selector: gw.selector.clone(),
            });
            let servers = gw
                .servers
                .iter()
                .map(|s| GatewayServerHosts {
                    port: u16::try_from(s.port.number).unwrap_or(0),
                    hosts: s.hosts.iter().map(|h| server_host(h, ns)).collect(),
                })
                .collect();
            t.gateways.insert(
                o.key().into(),
                GatewayRoutes {
                    id,
                    servers,
                    ..GatewayRoutes::default()
                },
            );
        }
        t.build_gateway_http(objects);
        // the registry ports each VirtualService's hosts cover (exact or wildcard)
        for vs in t.vss.iter_mut().filter(|v| !v.is_delegate) {
            let mut ports: Vec<u16> = services
                .services()
                .filter(|svc| {
                    vs.info
                        .hosts
                        .iter()
                        .any(|h| model::host::subset_of(&svc.hostname, h))
                })
                .flat_map(|svc| {
                    // (istiod's `serviceByPort`: the ports whose protocol `IsHTTPOrSniffed`;
                    // and TLS ones, where the mesh client routes an `https` request no `tls`
                    // route takes by `http` routes: where we differ, docs)
                    svc.ports
                        .iter()
                        .filter(|p| !is_opaque_tcp(&p.protocol) && &*p.protocol != "UDP")
                        .map(|p| p.number)
                })
                .collect();
            ports.sort_unstable();
            ports.dedup();
            vs.service_ports = ports.into();
        }
        if opts.default_http_retry_policy.is_some() {
            t.default_retries = Some(Box::new(default_retries));
        }
        // indexes
        for (i, vs) in t.vss.iter().enumerate() {
            if vs.is_delegate {
                continue;
            }
            for g in vs.info.gateways.iter() {
                if &**g == "mesh" {
                    for h in vs.info.hosts.iter() {
                        t.mesh.entry(h).push(i as u32);
                    }
                    continue;
                }
                // exportTo is checked per request, against the gateway workload's namespace
                let Some(gr) = t.gateways.get_mut(&**g) else {
                    continue;
                };
                for h in vs.info.hosts.iter() {
                    let ports: Vec<u16> = gr
                        .servers
                        .iter()
                        .filter(|s| {
                            s.hosts.iter().any(|(nsf, sh)| {
                                nsf.as_deref().is_none_or(|n| n == &*vs.info.namespace)
                                    && (&**sh == "*" || model::host::matches(sh, h))
                            })
                        })
                        .map(|s| s.port)
                        .collect();
                    if !ports.is_empty() {
                        gr.index.entry(h).push((i as u32, ports.into()));
                    }
                }
            }
        }
        t.mesh.finish();
        t.mesh_tls_routes = t.vss.iter().any(|vs| !vs.tls.is_empty());
        for g in t.gateways.values_mut() {
            g.index.finish();
        }
        t
    }

    /// The gateway HTTP route configurations, as istiod's `buildGatewayHTTPRouteConfig`
    /// builds them: for each HTTP server (plain HTTP, or HTTPS terminating TLS) and each
    /// VirtualService bound to its Gateway, a virtual host for every name in
    /// `NamesForNamespace(server.hosts, vs.namespace) ∩ vs.hosts` (`host.Names.Intersection`:
    /// of two names where one covers the other, the narrower); an `httpsRedirect` server
    /// adds its own hosts. Plain HTTP servers on a port share one configuration
    /// (`http.<port>`); each HTTPS server has its own
    /// (`https.<port>.<portName>.<gateway>.<namespace>`, pilot `gatewayRDSRouteName`), so a
    /// request reaches only the virtual hosts of the server its SNI chose.
    fn build_gateway_http(&mut self, objects: &[ConfigObject]) {
        // VirtualServices by Gateway, in load order
        let mut bound: HashMap<&str, Vec<u32>> = HashMap::new();
        for (i, vs) in self.vss.iter().enumerate().filter(|(_, v)| !v.is_delegate) {
            for g in vs.info.gateways.iter().filter(|g| &***g != "mesh") {
                let list = bound.entry(&**g).or_default();
                if list.last() != Some(&(i as u32)) {
                    list.push(i as u32);
                }
            }
        }
        let mut http_routes: HashMap<u16, GatewayVhosts> = HashMap::new();
        let mut https_routes: HashMap<Box<str>, HttpsServerRoutes> = HashMap::new();
        let mut hosts_buf: Vec<Box<str>> = Vec::new();
        for o in objects {
            let Spec::Gateway(gw) = &o.spec else { continue };
            let key = o.key();
            let Some(gr) = self.gateways.get_mut(key.as_str()) else {
                continue;
            };
            for (s, parsed) in gw.servers.iter().zip(&gr.servers) {
                let port = parsed.port;
                let proto = s.port.protocol.to_ascii_uppercase();
                let redirect = s.tls.as_ref().is_some_and(|t| t.https_redirect);
                let vhosts = if is_http_protocol(&proto) {
                    if !gr.http_ports.contains(&port) {
                        gr.http_ports.push(port);
                    }
                    http_routes.entry(port).or_default()
                } else if proto == "HTTPS"
                    && s.tls.as_ref().is_some_and(|t| {
                        !matches!(
                            t.mode,
                            model::ServerTlsMode::Passthrough
                                | model::ServerTlsMode::AutoPassthrough
                        )
                    })
                {
                    let name = crate::gateway::https_route_name(s.port.number, &s.port.name, &key);
                    gr.https.push((port, name.as_str().into()));
                    let routes = https_routes.entry(name.into()).or_default();
                    routes.hosts = parsed.hosts.clone();
                    &mut routes.vhosts
                } else {
                    continue;
                };
                for &i in bound.get(key.as_str()).into_iter().flatten() {
                    let vs = &self.vss[i as usize];
                    hosts_buf.clear();
                    intersect_hosts(
                        &parsed.hosts,
                        &vs.info.namespace,
                        &vs.info.hosts,
                        &mut hosts_buf,
                    );
                    for h in &hosts_buf {
                        add_vhost_entry(
                            vhosts.entry(h),
                            VhostEntry {
                                vs: i,
                                gateway: gr.id,
                                require_tls: redirect,
                            },
                        );
                    }
                }
                if redirect {
                    // istiod adds a virtual host for each server host as written (after
                    // `sanitizeServerHostNamespace`): a namespace-qualified one is a domain
                    // no Host header matches
                    for (_, h) in parsed.hosts.iter().filter(|(n, _)| n.is_none()) {
                        add_vhost_entry(
                            vhosts.entry(h),
                            VhostEntry {
                                vs: NO_VS,
                                gateway: gr.id,
                                require_tls: true,
                            },
                        );
                    }
                }
            }
        }
        for v in http_routes.values_mut() {
            v.finish();
        }
        for r in https_routes.values_mut() {
            r.vhosts.finish();
        }
        self.http_routes = http_routes;
        self.https_routes = https_routes;
    }

    /// Number of VirtualServices compiled.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::route::RouteTable;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews}
    /// ", "config.yaml");
    /// assert_eq!(RouteTable::build(&loaded.objects, &MeshOptions::default()).len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.vss.len()
    }

    /// True when there are none.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::route::RouteTable;
    ///
    /// assert!(RouteTable::build(&[], &MeshOptions::default()).is_empty());
    /// assert!(RouteTable::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.vss.is_empty()
    }

    /// The VirtualServices bound to the mesh and visible from `client_ns` whose hosts cover
    /// `host` (exactly first, then by wildcard, most specific first), whether or not they
    /// route a given request: to explain one that none routed.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: legacy, namespace: default}
    /// spec:
    ///   hosts: [legacy.corp.example]
    ///   http: [{directResponse: {status: 418}}]
    /// ").unwrap().snapshot();
    /// // no service has the host: istiod uses the VirtualService on port 80 only
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "legacy.corp.example:8080", "/", &h));
    /// assert_eq!(d.virtual_service_name(), None);
    /// let covering: Vec<_> = snap
    ///     .routes()
    ///     .mesh_virtual_services_covering("legacy.corp.example", "default")
    ///     .map(|vs| &*vs.name)
    ///     .collect();
    /// assert_eq!(covering, ["default/legacy"]);
    /// ```
    pub fn mesh_virtual_services_covering<'s>(
        &'s self,
        host: &'s str,
        client_ns: &'s str,
    ) -> impl Iterator<Item = &'s VirtualServiceInfo> + 's {
        self.mesh
            .all_matching(host)
            .flat_map(|list| list.iter())
            .map(|&i| &self.vss[i as usize].info)
            .filter(move |info| info.export_to.visible_to(client_ns))
    }

    /// The VirtualServices bound to the mesh (sidecars), by index, without delegates (their
    /// routes are flattened into their roots'): what a Sidecar's egress listener can import.
    pub(crate) fn mesh_virtual_services(
        &self,
    ) -> impl Iterator<Item = (usize, &VirtualServiceInfo)> + '_ {
        self.vss.iter().enumerate().filter_map(|(i, vs)| {
            (!vs.is_delegate && vs.info.gateways.iter().any(|g| &**g == "mesh"))
                .then_some((i, &vs.info))
        })
    }

    /// Calls `f` with the host (resolved) and port (as written) of every destination the
    /// routes of VirtualService `vs` send to for clients of `client_ns`: HTTP routes and
    /// their mirrors, TLS and TCP routes (istiod's `virtualServiceDestinations`). As istiod
    /// does, an HTTP route whose matches name source namespaces, none of them the client's,
    /// is left out.
    pub(crate) fn for_each_destination<'a>(
        &'a self,
        vs: usize,
        client_ns: &str,
        mut f: impl FnMut(&'a str, Option<u16>),
    ) {
        let Some(vs) = self.vss.get(vs) else { return };
        for r in &vs.http {
            let mut named = r
                .matches
                .iter()
                .filter(|b| !b.source_namespaces.is_empty())
                .peekable();
            if named.peek().is_some()
                && !named.any(|b| b.source_namespaces.iter().all(|n| **n == *client_ns))
            {
                continue;
            }
            for d in r.action.destinations.iter() {
                f(&d.host, d.port);
            }
            for m in r.action.mirrors.iter() {
                f(&m.destination.host, m.destination.port);
            }
        }
        for r in vs.tls.iter().chain(vs.tcp.iter()) {
            for d in r.destinations.iter() {
                f(&d.host, d.port);
            }
        }
    }

    /// The mesh VirtualService for a concrete host as seen from `client_ns` on `port`,
    /// among those its Sidecar (if any) imports.
    /// `usable` leaves out VirtualServices that do not apply to this traffic.
    #[inline]
    fn mesh_vs(
        &self,
        host: &str,
        client_ns: &str,
        sidecar: Option<&SidecarScope>,
        port: u16,
        usable: impl Fn(&CompiledVs) -> bool,
    ) -> Option<&CompiledVs> {
        // istiod's `SelectVirtualServices` order: private to the client's namespace, then
        // exported to it by name, then public, each in config order; the first claims the
        // host (a public one in the client's own namespace has no precedence)
        let group = |vs: &CompiledVs| match &vs.info.export_to {
            crate::names::ExportTo::Namespaces(ns)
                if ns.len() == 1
                    && *ns[0] == *vs.info.namespace
                    && *vs.info.namespace == *client_ns =>
            {
                0u8
            }
            crate::names::ExportTo::Namespaces(_) => 1,
            _ => 2,
        };
        for list in self.mesh.all_matching(host) {
            let mut best: Option<(u8, u32)> = None;
            for &i in list {
                let vs = &self.vss[i as usize];
                if !vs.info.export_to.visible_to(client_ns) || !usable(vs) {
                    continue;
                }
                if let Some(sc) = sidecar
                    && !sc.imports_virtual_service(
                        client_ns,
                        &vs.info.namespace,
                        &vs.info.hosts,
                        port,
                    )
                {
                    continue;
                }
                let key = (group(vs), i);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
            if let Some((_, i)) = best {
                return Some(&self.vss[i as usize]);
            }
        }
        None
    }

    /// Routes an HTTP request.
    ///
    /// See [`Snapshot::route_http`](crate::snapshot::Snapshot::route_http), which passes
    /// the snapshot's registry and options, for more examples.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: ratings, namespace: default}
    /// spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings}
    /// spec: {hosts: [ratings], http: [{match: [{uri: {prefix: /ratings}}], route: [{destination: {host: ratings}}]}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let attrs = HttpRequestAttrs::new("default", "ratings.default.svc.cluster.local:9080", "/ratings/1", &h);
    /// let d = snap.routes().route_http(snap.registry(), snap.options(), &attrs);
    /// assert_eq!(d.route_index(), Some(0));
    /// ```
    pub fn route_http<'a>(
        &'a self,
        registry: &'a Registry,
        opts: &MeshOptions,
        a: &HttpRequestAttrs<'_>,
    ) -> RouteDecision<'a> {
        self.route_http_scoped(registry, opts, a, None)
    }

    /// Routes an HTTP request from a client whose `Sidecar` is `sidecar`: only the
    /// VirtualServices its egress listener for the port imports apply (see
    /// [`SidecarScope::imports_virtual_service`]); with `None`, every VirtualService
    /// exported to the client's namespace, as [`RouteTable::route_http`]. Gateway
    /// routing ignores it.
    ///
    /// [`Snapshot::route_http`](crate::snapshot::Snapshot::route_http) looks the Sidecar up
    /// itself; a caller that already holds the client's scope passes it here instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec:
    ///   hosts: [reviews.bookinfo.svc.cluster.local]
    ///   http: [{route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: v2}}]}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: default, namespace: shop}
    /// spec: {egress: [{hosts: ["./*"]}]}
    /// "#).unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let attrs = HttpRequestAttrs::new("shop", "reviews.bookinfo.svc.cluster.local:9080", "/", &h);
    /// let scope = snap.sidecar_for("shop", &Default::default());
    /// let d = snap.routes().route_http_scoped(snap.registry(), snap.options(), &attrs, scope);
    /// assert_eq!(d.virtual_service_name(), None); // bookinfo's VirtualService is not imported
    /// let d = snap.routes().route_http_scoped(snap.registry(), snap.options(), &attrs, None);
    /// assert_eq!(d.virtual_service_name(), Some("bookinfo/reviews"));
    /// ```
    pub fn route_http_scoped<'a>(
        &'a self,
        registry: &'a Registry,
        opts: &MeshOptions,
        a: &HttpRequestAttrs<'_>,
        sidecar: Option<&SidecarScope>,
    ) -> RouteDecision<'a> {
        self.route_http_as(registry, opts, a, sidecar, None)
    }

    /// [`RouteTable::route_http_scoped`], the host of the request taken as `alias_target`
    /// when it is given (an `ExternalName` alias's target): the request, its `:authority`
    /// included, is otherwise matched as it is.
    fn route_http_as<'a>(
        &'a self,
        registry: &'a Registry,
        opts: &MeshOptions,
        a: &HttpRequestAttrs<'_>,
        sidecar: Option<&SidecarScope>,
        alias_target: Option<&str>,
    ) -> RouteDecision<'a> {
        let port = a.effective_port();
        let view = a.view(port);
        let (raw_host, _) = split_authority(a.authority);
        let raw_host = alias_target.unwrap_or(raw_host);
        let mut lit = HostBuf::new();
        let fits = lit.push_lower(raw_host);
        let lit = if fits { lit.as_str() } else { raw_host };

        if let Some(gw) = a.gateway {
            return self.route_gateway(gw, lit, &view);
        }
        // an absolute name (`reviews.ns.svc.cluster.local.`): istiod lists each service's
        // hostname with its trailing dot among the domains of its virtual host
        // (`GenerateAltVirtualHosts`, `PILOT_ENABLE_ABSOLUTE_FQDN_VHOST_DOMAIN`, on by
        // default), its short names without; so the name is taken without the dot and never
        // expanded
        let (lit, absolute) = crate::names::absolute_name(lit);
        // the name as written, else its Kubernetes expansion (worked out only when needed);
        // a VirtualService host counts only where that VirtualService applies
        let applies = |vs: &CompiledVs| vs.applies_to_http(&view);
        let known = |h: &str| {
            registry.has_host(h)
                || self
                    .mesh
                    .get_exact(h)
                    .is_some_and(|l| l.iter().any(|&i| applies(&self.vss[i as usize])))
        };
        let mut exp = HostBuf::new();
        let lit_known = known(lit);
        let has_exp = !lit_known
            && !absolute
            && kube_expansion(lit, a.client_namespace, &opts.domain_suffix, &mut exp);
        let fqdn: &str = if lit_known {
            lit
        } else if has_exp && (!lit.contains('.') || known(exp.as_str())) {
            exp.as_str()
        } else {
            lit
        };
        // a pod of a headless Service by its own name (`web-0.db.ns.svc.cluster.local`,
        // StatefulSets): istiod lists `*.<name>` for each name of such a Service among the
        // domains of its virtual host, more specific than any other wildcard covering the
        // pod, so the Service's routes decide it (looked up for unknown names only)
        let fqdn: &str = if lit_known || fqdn != lit {
            fqdn
        } else {
            registry
                .headless_service_of_pod(lit, a.client_namespace, &opts.domain_suffix)
                .map_or(fqdn, |s| &*s.hostname)
        };
        // a service's own address written as the host: istiod lists the VIP among the
        // domains of the service's virtual host (a name is looked up first; the parse runs
        // only for hosts that can be an address)
        let by_vip = if lit_known || fqdn != lit {
            None
        } else {
            crate::names::ip_literal(lit)
                .and_then(|ip| registry.service_by_vip(ip, port, a.client_namespace))
        };
        let fqdn: &str = by_vip.map_or(fqdn, |s| &*s.hostname);
        // with a Sidecar, the copy of the host its egress imports (a host defined in several
        // namespaces: istiod's `selectServices` keeps the imported one); else by precedence
        let service = registry.service_for_client(fqdn, a.client_namespace, sidecar, port);
        // A Kubernetes `ExternalName` Service whose target the client's registry knows is an
        // alias of it (istiod's alias mode, on by default since 1.21): the alias is one more
        // domain of the target's virtual hosts (HTTP) and server names (TLS), so the
        // request is routed as one to the target, its `:authority` unchanged. An unknown
        // target leaves the alias a DNS name dialed outside the mesh.
        if alias_target.is_none()
            && let Some(target) = service
                .and_then(|s| registry.alias_target(s, a.client_namespace, sidecar, port))
                // (on a port of the target's: the alias is a name of its virtual hosts on
                // that port, and nowhere else)
                .filter(|t| t.ports.is_empty() || t.port(port).is_some())
        {
            return self.route_http_as(registry, opts, a, sidecar, Some(&target.hostname));
        }
        // An `https` request is the application's own TLS: on a service port declared TLS or
        // HTTPS, a sidecar sees its ClientHello, not the request, and routes it as a
        // connection, by the `tls` routes of the service's VirtualServices (SNI, the host as
        // written, and port) when one matches [spec §2.7]. (Otherwise the mesh client, which
        // does see the request, routes it by `http` routes: docs, where we differ.)
        // A host the registry does not know (`en.wikipedia.org` under a ServiceEntry for
        // `www.wikipedia.org`) is routed by the `tls` routes of a VirtualService whose
        // hosts cover it (`*.wikipedia.org`) when one matches its SNI, as Envoy's filter
        // chains on that port match `server_names` by the wildcard, and as
        // `MeshClient::connect` routes it.
        if a.scheme == "https" && self.mesh_tls_routes {
            let tls_port = match service {
                Some(s) => s.port(port).is_some_and(|p| is_tls_protocol(&p.protocol)),
                None => true,
            };
            if let Some(d) = tls_port
                .then(|| {
                    let s = service.map(|s| &**s);
                    self.route_https_as_tls(registry, a, lit, fqdn, s, port, sidecar)
                })
                .flatten()
            {
                return d;
            }
        }
        // A port the service declares TCP (or MONGO, MYSQL, REDIS) has a TCP proxy at a
        // sidecar, no HTTP route configuration: the request's bytes are a connection, routed
        // by the `tcp` routes of the service's VirtualServices, else to the service itself;
        // no `http` route, retry, timeout or header operation applies.
        if let Some(s) = service.filter(|s| {
            (&*s.hostname == fqdn || s.hostname.starts_with('*'))
                && s.port(port).is_some_and(|p| is_opaque_tcp(&p.protocol))
        }) {
            return self.route_http_as_tcp(a, fqdn, s, port, sidecar);
        }
        let default_retries = self.default_retries();
        let mut found = if service.is_some_and(|s| &*s.hostname == fqdn) {
            // istiod ties a registry service to its most specific visible VirtualService by
            // host alone (`computeWildcardHostVirtualServiceIndex`); one left without a route
            // for this client and port leaves the service its default route, it does not
            // hand it to a less specific (wildcard) VirtualService
            self.mesh_vs(fqdn, a.client_namespace, sidecar, port, |_| true)
                .filter(|vs| applies(vs))
        } else {
            self.mesh_vs(fqdn, a.client_namespace, sidecar, port, applies)
        }
        .map(|vs| (vs, fqdn));
        if found.is_none() && service.is_none() {
            // The registry knows no service for the name, so no port list says where a
            // VirtualService for it applies (Istio would have no listener for the port):
            // it applies on every port, as long as it keeps a route.
            let other = match (has_exp, fqdn == lit) {
                (false, _) => None,
                (true, true) => Some(exp.as_str()),
                (true, false) => Some(lit),
            };
            found = [Some(fqdn), other].into_iter().flatten().find_map(|h| {
                self.mesh_vs(h, a.client_namespace, sidecar, port, |vs| {
                    vs.keeps_a_route(&view)
                })
                .map(|vs| (vs, h))
            });
        }
        // A host with no service of the client's (none visible, or with a Sidecar none it
        // imports) is routed by a VirtualService only through the virtual hosts istiod
        // builds from the VirtualService's own hosts on the request's port
        // (`BuildSidecarOutboundVirtualHosts`, `buildSidecarVirtualHostsForVirtualService`):
        // - `separateVSHostsAndServices`: a wildcard host (`*.foo.com`) that covers any
        //   service on the port is not a virtual host of its own (those services get their
        //   routes, from their most specific VirtualService), so a name under it that is
        //   not one of them is not routed by it;
        // - on any port but 80, the VirtualService's own hosts get virtual hosts only on
        //   the port of a service the VirtualService routes (its most specific one).
        if let Some((vs, h)) = found {
            let known = |s: &crate::registry::Service| match sidecar {
                Some(sc) => sc.imports(a.client_namespace, &s.namespace, &s.hostname, port),
                None => s.export_to.visible_to(a.client_namespace),
            };
            if !service.is_some_and(|s| known(s)) {
                // istiod's `servicesByName` for the port (HTTP or sniffed ports count for
                // the VirtualService's own services)
                let on_port = |s: &crate::registry::Service| s.port(port).is_some() && known(s);
                let covers =
                    |pattern: &str| registry.services_matching(pattern).any(|s| on_port(s));
                let own_host = vs.info.hosts.iter().any(|vh| {
                    if crate::model::host::is_wildcard(vh) {
                        crate::model::host::matches(vh, h) && !covers(vh)
                    } else {
                        **vh == *h
                    }
                });
                let routes_a_service = || {
                    vs.info.hosts.iter().any(|vh| {
                        registry.services_matching(vh).any(|s| {
                            on_port(s)
                                && s.port(port).is_some_and(|p| {
                                    p.protocol.is_empty() || is_http_protocol(&p.protocol)
                                })
                                && (!crate::model::host::is_wildcard(vh) && *s.hostname == **vh
                                    || crate::model::host::is_wildcard(vh)
                                        && self
                                            .mesh_vs(
                                                &s.hostname,
                                                a.client_namespace,
                                                sidecar,
                                                port,
                                                |_| true,
                                            )
                                            .is_some_and(|best| std::ptr::eq(best, vs)))
                        })
                    })
                };
                if !own_host || (port != 80 && !routes_a_service()) {
                    found = None;
                }
            }
        }
        let Some((vs, vs_host)) = found else {
            // the service's default route (istiod BuildDefaultHTTPOutboundRoute)
            return match service.filter(|s| &*s.hostname == fqdn) {
                Some(s) => RouteDecision {
                    host: Cow::Borrowed(&*s.hostname),
                    virtual_service: None,
                    rule: None,
                    outcome: RouteOutcome::Forward,
                    match_name: None,
                    prefix_len: 0,
                    destinations: Cow::Borrowed(&s.default_destinations),
                    default_retries,
                    tls_route: None,
                    tcp_route: None,
                    opaque: false,
                },
                None => {
                    let host: Cow<'a, str> = Cow::Owned(fqdn.to_owned());
                    RouteDecision {
                        destinations: passthrough(host.clone()),
                        host,
                        virtual_service: None,
                        rule: None,
                        outcome: RouteOutcome::Forward,
                        match_name: None,
                        prefix_len: 0,
                        default_retries,
                        tls_route: None,
                        tcp_route: None,
                        opaque: false,
                    }
                }
            };
        };
        let host = vs
            .info
            .hosts
            .iter()
            .find(|h| &***h == vs_host)
            .map(|h| Cow::Borrowed(&**h))
            .or_else(|| {
                service
                    .filter(|s| &*s.hostname == vs_host)
                    .map(|s| Cow::Borrowed(&*s.hostname))
            })
            .unwrap_or_else(|| Cow::Owned(vs_host.to_owned()));
        // a sidecar's virtual host holds one VirtualService's routes, in order: first match
        for rule in &vs.http {
            let hit = if rule.matches.is_empty() {
                Some((1.min(view.path.len()), None))
            } else {
                rule.matches
                    .iter()
                    .find_map(|m| m.matches(&view).map(|p| (p, Some(m))))
            };
            if let Some((prefix_len, matched)) = hit {
                return self.decide(host, vs, rule, matched, prefix_len);
            }
        }
        self.no_route(host, Some(vs))
    }

    /// The retry policy of a default route.
    fn default_retries(&self) -> &RetryPolicy {
        self.default_retries
            .as_deref()
            .unwrap_or_else(|| RetryPolicy::istio_default())
    }

    fn decide<'a>(
        &'a self,
        host: Cow<'a, str>,
        vs: &'a CompiledVs,
        rule: &'a HttpRule,
        matched: Option<&'a MatchBlock>,
        prefix_len: usize,
    ) -> RouteDecision<'a> {
        let act = &rule.action;
        let outcome = if let Some(r) = &act.redirect {
            RouteOutcome::Redirect(r)
        } else if let Some(d) = &act.direct_response {
            RouteOutcome::DirectResponse(d)
        } else {
            RouteOutcome::Forward
        };
        RouteDecision {
            host,
            virtual_service: Some(&vs.info),
            rule: Some(rule),
            outcome,
            match_name: matched.and_then(|m| m.name.as_deref()),
            prefix_len,
            destinations: Cow::Borrowed(&act.destinations),
            default_retries: self.default_retries(),
            tls_route: None,
            tcp_route: None,
            opaque: false,
        }
    }

    fn no_route<'a>(&'a self, host: Cow<'a, str>, vs: Option<&'a CompiledVs>) -> RouteDecision<'a> {
        RouteDecision {
            host,
            virtual_service: vs.map(|v| &v.info),
            rule: None,
            outcome: RouteOutcome::NoRoute,
            match_name: None,
            prefix_len: 0,
            destinations: Cow::Borrowed(&[]),
            default_retries: self.default_retries(),
            tls_route: None,
            tcp_route: None,
            opaque: false,
        }
    }

    /// A gateway's virtual host: the routes of every VirtualService contributing to it
    /// (`vss` yields them in order, each with the Gateway it is bound through), merged as
    /// istiod does. Each VirtualService contributes the match blocks the static pre-filters
    /// keep, up to its first catch-all (istiod `BuildHTTPRoutesForVirtualService` stops
    /// there); then `SortVHostRoutes` moves every catch-all after all other routes, keeping
    /// their order. First match wins over that order: the non-catch-all blocks are tried
    /// first, then the catch-alls.
    fn walk_gateway<'a, 'g, I>(
        &'a self,
        vss: impl Fn() -> I,
        host: Cow<'a, str>,
        view: &ReqView<'_>,
    ) -> RouteDecision<'a>
    where
        I: Iterator<Item = (&'a CompiledVs, &'g str)>,
    {
        for catch_alls in [false, true] {
            for (vs, gw) in vss() {
                // match `gateways` see the Gateway this VirtualService is bound through
                let view = &ReqView {
                    gateway: Some(gw),
                    ..*view
                };
                'vs: for rule in &vs.http {
                    if rule.matches.is_empty() {
                        if catch_alls {
                            return self.decide(host, vs, rule, None, 1.min(view.path.len()));
                        }
                        break 'vs;
                    }
                    for m in rule.matches.iter() {
                        if !m.static_ok(view) {
                            continue;
                        }
                        if m.catch_all != catch_alls {
                            if m.catch_all {
                                break 'vs;
                            }
                            continue;
                        }
                        if let Some(prefix_len) = m.matches(view) {
                            return self.decide(host, vs, rule, Some(m), prefix_len);
                        }
                        if m.catch_all {
                            break 'vs;
                        }
                    }
                }
            }
        }
        let first = vss().next().map(|(vs, _)| vs);
        self.no_route(host, first)
    }

    /// The HTTP route configuration a gateway request uses, from
    /// [`HttpRequestAttrs::gateway`]: an `https.<port>.<portName>.<name>.<ns>` server
    /// configuration; `http.<port>` (the plain HTTP servers of the Gateways selecting the
    /// workload); or `ns/name[,ns/name..]`: those Gateways' plain HTTP servers on the port,
    /// else (a port of TLS-terminating servers) the HTTPS server whose hosts best match the
    /// request's host, as the SNI a client sends for it would choose.
    fn gateway_http_config<'a, 's>(
        &'a self,
        gw: &'s str,
        host: &str,
        port: u16,
        labels: &'s Labels,
    ) -> Option<(&'a GatewayVhosts, GatewayScope<'s>)> {
        if !gw.contains('/') {
            if gw.starts_with("https.") {
                return self
                    .https_routes
                    .get(gw)
                    .map(|r| (&r.vhosts, GatewayScope::All));
            }
            if let Some(p) = gw.strip_prefix("http.") {
                let p: u16 = p.parse().ok()?;
                return self
                    .http_routes
                    .get(&p)
                    .map(|v| (v, GatewayScope::Selecting(labels)));
            }
        }
        let listed = || gw.split(',').filter_map(|g| self.gateways.get(g.trim()));
        if listed().any(|g| g.http_ports.contains(&port)) {
            return self
                .http_routes
                .get(&port)
                .map(|v| (v, GatewayScope::Listed(gw)));
        }
        let mut best: Option<(usize, &HttpsServerRoutes)> = None;
        for g in listed() {
            for (_, name) in g.https.iter().filter(|(p, _)| *p == port) {
                let Some(r) = self.https_routes.get(name) else {
                    continue;
                };
                let score = r.hosts.iter().filter_map(|(_, h)| sni_score(h, host)).max();
                if let Some(score) = score
                    && best.is_none_or(|(b, _)| score > b)
                {
                    best = Some((score, r));
                }
            }
        }
        best.map(|(_, r)| (&r.vhosts, GatewayScope::All))
    }

    /// Whether a virtual host contribution counts for this request: its Gateway is in
    /// scope, and its VirtualService is exported to the gateway workload's namespace
    /// (PushContext `VirtualServicesForGateway(proxyNamespace, gateway)`) and keeps a route
    /// after the static pre-filters (else istiod adds nothing for it).
    #[inline]
    fn vhost_entry_live(
        &self,
        e: &VhostEntry,
        scope: GatewayScope<'_>,
        view: &ReqView<'_>,
    ) -> bool {
        let meta = &self.gateway_meta[e.gateway as usize];
        let in_scope = match scope {
            GatewayScope::All => true,
            GatewayScope::Selecting(labels) => meta
                .selector
                .as_ref()
                .is_none_or(|s| crate::names::labels_match(s, labels)),
            GatewayScope::Listed(list) => list.split(',').any(|g| g.trim() == &*meta.name),
        };
        if !in_scope {
            return false;
        }
        if e.vs == NO_VS {
            return true;
        }
        let vs = &self.vss[e.vs as usize];
        vs.info.export_to.visible_to(view.client_ns)
            && vs.keeps_a_route(&ReqView {
                gateway: Some(&meta.name),
                ..*view
            })
    }

    /// The virtual host a gateway request lands on (Envoy: exact domain, then the longest
    /// wildcard): the contributions to it, or `None` (404).
    fn gateway_vhost<'a, 's>(
        &'a self,
        gw: &'s str,
        host: &str,
        view: &ReqView<'s>,
    ) -> Option<(&'a [VhostEntry], GatewayScope<'s>)> {
        let (vhosts, scope) = self.gateway_http_config(gw, host, view.port, view.source_labels)?;
        vhosts
            .all_matching(host)
            .find(|list| list.iter().any(|e| self.vhost_entry_live(e, scope, view)))
            .map(|list| (&**list, scope))
    }

    fn route_gateway<'a>(&'a self, gw: &str, host: &str, view: &ReqView<'_>) -> RouteDecision<'a> {
        let Some((list, scope)) = self.gateway_vhost(gw, host, view) else {
            return self.no_route(Cow::Owned(host.to_owned()), None);
        };
        let vss = || {
            list.iter()
                .filter(|e| e.vs != NO_VS && self.vhost_entry_live(e, scope, view))
                .map(|e| {
                    (
                        &self.vss[e.vs as usize],
                        &*self.gateway_meta[e.gateway as usize].name,
                    )
                })
        };
        self.walk_gateway(vss, Cow::Owned(host.to_owned()), view)
    }

    /// For a request at a gateway ([`HttpRequestAttrs::gateway`] set): `None` when no
    /// virtual host of its route configuration matches the host (Envoy answers 404),
    /// `Some(true)` when the virtual host requires TLS (a server's `httpsRedirect`: Envoy
    /// redirects a plain HTTP request to `https://`), `Some(false)` otherwise. `None` for
    /// mesh traffic.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: gw, namespace: istio-system}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers:
    ///   - port: {number: 80, name: http, protocol: HTTP}
    ///     hosts: [secure.example.com]
    ///     tls: {httpsRedirect: true}
    ///   - port: {number: 80, name: http-web, protocol: HTTP}
    ///     hosts: ['*.example.com']
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: web, namespace: default}
    /// spec:
    ///   hosts: [www.example.com]
    ///   gateways: [istio-system/gw]
    ///   http: [{route: [{destination: {host: web}}]}]
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let at = |host| HttpRequestAttrs::new("istio-system", host, "/", &h).with_gateway(Some("istio-system/gw"));
    /// assert_eq!(snap.routes().gateway_requires_tls(&at("secure.example.com")), Some(true));
    /// assert_eq!(snap.routes().gateway_requires_tls(&at("www.example.com")), Some(false));
    /// assert_eq!(snap.routes().gateway_requires_tls(&at("other.example.com")), None);
    /// ```
    pub fn gateway_requires_tls(&self, a: &HttpRequestAttrs<'_>) -> Option<bool> {
        let gw = a.gateway?;
        let view = a.view(a.effective_port());
        let (raw_host, _) = split_authority(a.authority);
        let mut lit = HostBuf::new();
        let host = if lit.push_lower(raw_host) {
            lit.as_str()
        } else {
            raw_host
        };
        let (list, scope) = self.gateway_vhost(gw, host, &view)?;
        Some(
            list.iter()
                .any(|e| e.require_tls && self.vhost_entry_live(e, scope, &view)),
        )
    }

    /// The route configuration name (`https.<port>.<portName>.<name>.<ns>`) of the
    /// TLS-terminating HTTPS server of these Gateways (`ns/name`, comma-separated) on `port`
    /// that a TLS client sending `sni` reaches: an exact server host first, then the
    /// longest wildcard, then `*`. Use it as [`HttpRequestAttrs::gateway`] to route as
    /// that server.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: gw, namespace: istio-system}
    /// spec:
    ///   servers:
    ///   - port: {number: 443, name: https-secure, protocol: HTTPS}
    ///     hosts: [secure.example.com]
    ///     tls: {mode: MUTUAL, credentialName: secure-cred}
    ///   - port: {number: 443, name: https-public, protocol: HTTPS}
    ///     hosts: ['*.example.com']
    ///     tls: {mode: SIMPLE, credentialName: public-cred}
    /// ").unwrap().snapshot();
    /// let routes = snap.routes();
    /// let route = |sni| routes.gateway_https_route("istio-system/gw", 443, sni);
    /// assert_eq!(route(Some("secure.example.com")), Some("https.443.https-secure.gw.istio-system"));
    /// assert_eq!(route(Some("www.example.com")), Some("https.443.https-public.gw.istio-system"));
    /// assert_eq!(route(Some("example.org")), None);
    /// ```
    pub fn gateway_https_route(
        &self,
        gateways: &str,
        port: u16,
        sni: Option<&str>,
    ) -> Option<&str> {
        let sni = sni.map(str::to_ascii_lowercase);
        let mut best: Option<(usize, &str)> = None;
        for g in gateways
            .split(',')
            .filter_map(|g| self.gateways.get(g.trim()))
        {
            for (_, name) in g.https.iter().filter(|(p, _)| *p == port) {
                let Some(r) = self.https_routes.get(name) else {
                    continue;
                };
                let score = r
                    .hosts
                    .iter()
                    .filter_map(|(_, h)| match &sni {
                        Some(sni) => sni_score(h, sni),
                        None => (&**h == "*").then_some(0),
                    })
                    .max();
                if let Some(score) = score
                    && best.is_none_or(|(b, _)| score > b)
                {
                    best = Some((score, name));
                }
            }
        }
        best.map(|(_, n)| n)
    }

    fn l4_candidates<'a>(
        &'a self,
        host: &str,
        a: &L4Attrs<'_>,
        sidecar: Option<&SidecarScope>,
    ) -> Vec<&'a CompiledVs> {
        match a.gateway {
            // Every VirtualService whose hosts match the service (istiod's
            // `getConfigsForHost` for a sidecar's TCP/TLS filter chains: unlike HTTP, where
            // one VirtualService claims a host, a wildcard one's `tcp` routes still apply
            // when a more specific one has none), in the order istiod's
            // `SelectVirtualServices` lists them: those private to the client's namespace,
            // then those exported to it by name, then public ones, each in config order.
            None => {
                let mut all: Vec<u32> = Vec::new();
                for list in self.mesh.all_matching(host) {
                    for &i in list {
                        let vs = &self.vss[i as usize];
                        let imported = sidecar.is_none_or(|sc| {
                            sc.imports_virtual_service(
                                a.client_namespace,
                                &vs.info.namespace,
                                &vs.info.hosts,
                                a.port,
                            )
                        });
                        if vs.info.export_to.visible_to(a.client_namespace) && imported {
                            all.push(i);
                        }
                    }
                }
                let group = |i: u32| {
                    let info = &self.vss[i as usize].info;
                    match &info.export_to {
                        crate::names::ExportTo::Namespaces(ns)
                            if ns.len() == 1
                                && *ns[0] == *info.namespace
                                && *info.namespace == *a.client_namespace =>
                        {
                            0
                        }
                        crate::names::ExportTo::Namespaces(_) => 1,
                        _ => 2,
                    }
                };
                all.sort_unstable_by_key(|&i| (group(i), i));
                all.dedup();
                all.into_iter().map(|i| &self.vss[i as usize]).collect()
            }
            Some(gw) => {
                let Some(g) = self.gateways.get(gw) else {
                    return Vec::new();
                };
                // exported to the gateway workload's namespace (VirtualServicesForGateway)
                let ok = |(i, p): &(u32, Box<[u16]>)| {
                    p.contains(&a.port)
                        && self.vss[*i as usize]
                            .info
                            .export_to
                            .visible_to(a.client_namespace)
                };
                if host.is_empty() {
                    // a TCP server: no SNI to pick by, so every VirtualService bound to
                    // the gateway on this port (istiod `buildGatewayNetworkFiltersFromTCPRoutes`:
                    // "since this is TCP, neither matters"), in istiod's order
                    let mut all: Vec<u32> = g
                        .index
                        .values()
                        .flatten()
                        .filter(|e| ok(e))
                        .map(|(i, _)| *i)
                        .collect();
                    all.sort_unstable();
                    all.dedup();
                    return all.into_iter().map(|i| &self.vss[i as usize]).collect();
                }
                g.index
                    .all_matching(host)
                    .find(|l| l.iter().any(ok))
                    .map(|l| {
                        l.iter()
                            .filter(|e| ok(e))
                            .map(|(i, _)| &self.vss[*i as usize])
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }

    /// Routes a TLS connection by SNI (`tls` routes).
    ///
    /// See [`Snapshot::route_tls`](crate::snapshot::Snapshot::route_tls) for an example.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::route::{L4Attrs, RouteTable};
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: api}
    /// spec:
    ///   hosts: [api.example.com]
    ///   tls:
    ///   - match: [{port: 443, sniHosts: [api.example.com]}]
    ///     route: [{destination: {host: api-backend.internal, port: {number: 8443}}}]
    /// ", "vs.yaml");
    /// let table = RouteTable::build(&loaded.objects, &MeshOptions::default());
    /// let d = table.route_tls(&L4Attrs { sni: Some("API.example.com"), ..L4Attrs::new("default", 443) });
    /// assert_eq!(d.route_index, Some(0));
    /// assert_eq!(d.destinations[0].port, Some(8443));
    /// // an SNI no VirtualService claims passes through to itself
    /// let other = table.route_tls(&L4Attrs { sni: Some("www.example.com"), ..L4Attrs::new("default", 443) });
    /// assert_eq!((other.route_index, &*other.destinations[0].host), (None, "www.example.com"));
    /// ```
    pub fn route_tls<'a>(&'a self, a: &L4Attrs<'_>) -> L4Decision<'a> {
        self.route_tls_scoped(a, None)
    }

    /// [`RouteTable::route_tls`] for a client whose `Sidecar` is `sidecar`.
    pub(crate) fn route_tls_scoped<'a>(
        &'a self,
        a: &L4Attrs<'_>,
        sidecar: Option<&SidecarScope>,
    ) -> L4Decision<'a> {
        self.route_tls_to_scoped(a, None, sidecar)
    }

    /// [`RouteTable::route_tls_scoped`] for a connection to the service `service_host` (its
    /// FQDN; `None`: the SNI's): its VirtualServices' `tls` routes, `sniHosts` matched
    /// against the SNI as sent (a short name `reviews` included).
    pub(crate) fn route_tls_to_scoped<'a>(
        &'a self,
        a: &L4Attrs<'_>,
        service_host: Option<&str>,
        sidecar: Option<&SidecarScope>,
    ) -> L4Decision<'a> {
        let sni = a.sni.unwrap_or("").to_ascii_lowercase();
        let host = service_host.map_or(sni.as_str(), |h| h);
        if let Some((vs, r)) = self.best_tls_route(host, &sni, a, sidecar) {
            return L4Decision {
                host: Cow::Owned(sni),
                virtual_service: Some(&vs.info),
                route_index: Some(r.index),
                destinations: Cow::Borrowed(&r.destinations),
                passthrough: false,
            };
        }
        // `tls` matches for other names on this port: no chain of the service's own, the
        // listener's passthrough chain takes it (a ClientHello whose SNI is not known here
        // is not judged)
        let other_names = service_host.is_some()
            && a.sni.is_some()
            && self.l4_candidates(host, a, sidecar).into_iter().any(|vs| {
                vs.tls
                    .iter()
                    .any(|r| r.matches.iter().any(|m| m.ok_but_sni(a)))
            });
        if let (true, Some(service)) = (other_names, service_host) {
            return L4Decision {
                destinations: passthrough(Cow::Owned(service.to_owned())),
                host: Cow::Owned(sni),
                virtual_service: None,
                route_index: None,
                passthrough: true,
            };
        }
        // no `tls` route: the service's own cluster (istiod's fallback filter chain on a
        // service's TLS port, `outbound|<port>||<service>`), else the name as sent
        let host: Cow<'_, str> = match service_host {
            Some(h) => Cow::Owned(h.to_owned()),
            None => Cow::Owned(sni),
        };
        L4Decision {
            destinations: passthrough(host.clone()),
            host,
            virtual_service: None,
            route_index: None,
            passthrough: false,
        }
    }

    /// The decision for an `https` request of mesh traffic to `service` (found for
    /// `fqdn`, the host `lit` as written) on a port it declares TLS or HTTPS, or to a host
    /// the registry does not know (`service` `None`): the `tls` route of its
    /// VirtualServices that matches the SNI (`lit`), if one does.
    #[allow(clippy::too_many_arguments)]
    fn route_https_as_tls<'a>(
        &'a self,
        registry: &Registry,
        a: &HttpRequestAttrs<'_>,
        lit: &str,
        fqdn: &str,
        service: Option<&crate::registry::Service>,
        port: u16,
        sidecar: Option<&SidecarScope>,
    ) -> Option<RouteDecision<'a>> {
        let l4 = L4Attrs {
            client_namespace: a.client_namespace,
            source_labels: a.source_labels,
            gateway: None,
            // the address the application's sidecar would see it dial: the service's own
            // (a cluster IP, a ServiceEntry's single address), for `destinationSubnets`
            destination_ip: service.and_then(single_address),
            port,
            sni: Some(lit),
        };
        let (vs, r) = self.best_tls_route(fqdn, lit, &l4, sidecar)?;
        // a host the registry does not know: only on a port where istiod builds the
        // VirtualService's SNI filter chains, one a service its hosts cover declares TLS
        if service.is_none()
            && !registry.services().any(|svc| {
                vs.info
                    .hosts
                    .iter()
                    .any(|h| model::host::subset_of(&svc.hostname, h))
                    && svc.port(port).is_some_and(|p| is_tls_protocol(&p.protocol))
            })
        {
            return None;
        }
        Some(RouteDecision {
            host: Cow::Owned(lit.to_owned()),
            virtual_service: Some(&vs.info),
            rule: None,
            outcome: RouteOutcome::Forward,
            match_name: None,
            prefix_len: 0,
            destinations: Cow::Borrowed(&r.destinations),
            // Envoy's TCP proxy retries nothing
            default_retries: RetryPolicy::disabled(),
            tls_route: Some(r.index),
            tcp_route: None,
            opaque: false,
        })
    }

    /// The decision for an HTTP request of mesh traffic to `service` on a port it declares
    /// TCP: the first `tcp` route of its VirtualServices that matches, else the service
    /// itself; retries off (Envoy's TCP proxy retries nothing).
    fn route_http_as_tcp<'a>(
        &'a self,
        a: &HttpRequestAttrs<'_>,
        fqdn: &str,
        service: &'a crate::registry::Service,
        port: u16,
        sidecar: Option<&SidecarScope>,
    ) -> RouteDecision<'a> {
        let l4 = L4Attrs {
            client_namespace: a.client_namespace,
            source_labels: a.source_labels,
            gateway: None,
            destination_ip: single_address(service),
            port,
            sni: None,
        };
        // a wildcard ServiceEntry's host (`*.example.com`): its cluster goes where the
        // request's host does, as its default route (the name as asked)
        let wildcard = *service.hostname != *fqdn;
        let host: Cow<'a, str> = match wildcard {
            true => Cow::Owned(fqdn.to_owned()),
            false => Cow::Borrowed(&*service.hostname),
        };
        let (virtual_service, tcp_route, destinations) =
            match self.tcp_rule(&service.hostname, &l4, sidecar) {
                Some((vs, r)) => (
                    Some(&vs.info),
                    Some(r.index),
                    Cow::Borrowed(&*r.destinations),
                ),
                None if wildcard => (None, None, passthrough(host.clone())),
                None => (None, None, Cow::Borrowed(&*service.default_destinations)),
            };
        RouteDecision {
            host,
            virtual_service,
            rule: None,
            outcome: RouteOutcome::Forward,
            match_name: None,
            prefix_len: 0,
            destinations,
            default_retries: RetryPolicy::disabled(),
            tls_route: None,
            tcp_route,
            opaque: true,
        }
    }

    /// The `tcp` route that takes a connection among the VirtualServices of `host`, as
    /// istiod's `buildSidecarOutboundTCPFilterChainOpts` lays them out and Envoy picks a
    /// filter chain: in order, each matching match with `destinationSubnets` is a chain of
    /// those ranges, until the first route without matches or matching match without
    /// subnets, the catch-all that ends the scan; Envoy takes the chain whose range holds
    /// the destination most specifically (the longest prefix; ties to the first), the
    /// catch-all when none does.
    fn tcp_rule<'a>(
        &'a self,
        host: &str,
        a: &L4Attrs<'_>,
        sidecar: Option<&SidecarScope>,
    ) -> Option<(&'a CompiledVs, &'a L4Rule)> {
        let mut best: Option<(u16, &CompiledVs, &L4Rule)> = None;
        for vs in self.l4_candidates(host, a, sidecar) {
            for r in vs.tcp.iter() {
                if r.matches.is_empty() {
                    return Some(best.map_or((vs, r), |(_, v, b)| (v, b)));
                }
                for m in r.matches.iter().filter(|m| m.ok(a)) {
                    let len = m.subnet_specificity(a);
                    if len == 0 {
                        return Some(best.map_or((vs, r), |(_, v, b)| (v, b)));
                    }
                    if best.as_ref().is_none_or(|(b, _, _)| len > *b) {
                        best = Some((len, vs, r));
                    }
                }
            }
        }
        best.map(|(_, vs, r)| (vs, r))
    }

    /// The `tls` route for `sni` among the VirtualServices of `host` (the service's name:
    /// a short SNI such as `reviews` finds the VirtualService of
    /// `reviews.<ns>.svc.cluster.local`, whose `sniHosts` are matched as written).
    fn best_tls_route<'a>(
        &'a self,
        host: &str,
        sni: &str,
        a: &L4Attrs<'_>,
        sidecar: Option<&SidecarScope>,
    ) -> Option<(&'a CompiledVs, &'a L4Rule)> {
        // Each match is a filter chain of its own, and Envoy picks the chain whose
        // destination range holds the address most specifically, then whose
        // `server_names` fit the SNI most specifically (exact, then the longest `*.`
        // suffix; a chain without names last), not the first in order; ties go to the
        // first.
        let mut best: Option<((u16, u8, usize), &CompiledVs, &L4Rule)> = None;
        for vs in self.l4_candidates(host, a, sidecar) {
            for r in vs.tls.iter() {
                for m in r.matches.iter().filter(|m| m.ok(a)) {
                    let (sni_kind, sni_len) = m.sni_specificity(sni);
                    let score = (m.subnet_specificity(a), sni_kind, sni_len);
                    if best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                        best = Some((score, vs, r));
                    }
                }
            }
        }
        best.map(|(_, vs, r)| (vs, r))
    }

    /// Routes a TCP connection by destination address and port (`tcp` routes).
    ///
    /// See [`Snapshot::route_tcp`](crate::snapshot::Snapshot::route_tcp) for an example.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::L4Attrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: db}
    /// spec:
    ///   hosts: [db.internal]
    ///   addresses: [240.240.0.1]
    ///   ports: [{number: 5432, name: tcp, protocol: TCP}]
    ///   resolution: STATIC
    ///   endpoints: [{address: 10.1.0.7}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: db}
    /// spec:
    ///   hosts: [db.internal]
    ///   tcp: [{route: [{destination: {host: db-replica.internal}}]}]
    /// ").unwrap().snapshot();
    /// let attrs = L4Attrs { destination_ip: Some("240.240.0.1".parse().unwrap()), ..L4Attrs::new("default", 5432) };
    /// // the address belongs to db.internal, whose VirtualService applies
    /// let d = snap.routes().route_tcp(snap.registry(), &attrs);
    /// assert_eq!(d.host, "db.internal");
    /// assert_eq!(&*d.destinations[0].host, "db-replica.internal");
    /// ```
    pub fn route_tcp<'a>(&'a self, registry: &'a Registry, a: &L4Attrs<'_>) -> L4Decision<'a> {
        self.route_tcp_scoped(registry, a, None)
    }

    /// [`RouteTable::route_tcp`] for a client whose `Sidecar` is `sidecar`.
    pub(crate) fn route_tcp_scoped<'a>(
        &'a self,
        registry: &'a Registry,
        a: &L4Attrs<'_>,
        sidecar: Option<&SidecarScope>,
    ) -> L4Decision<'a> {
        // (a gateway's TCP servers route by their VirtualServices alone: istiod builds
        // their filter chains without the registry)
        let service = a
            .destination_ip
            .filter(|_| a.gateway.is_none())
            .and_then(|ip| registry.service_by_address(ip, a.port, a.client_namespace));
        let host: Cow<'a, str> = match (service, a.sni) {
            (Some(s), _) => Cow::Borrowed(&*s.hostname),
            (None, Some(h)) => Cow::Owned(h.to_ascii_lowercase()),
            (None, None) => Cow::Owned(a.destination_ip.map(|i| i.to_string()).unwrap_or_default()),
        };
        // (an address no service owns has no listener of its own at a sidecar: it takes the
        // passthrough chain, whatever `destinationSubnets` a VirtualService names)
        if let Some((vs, r)) = self.tcp_rule(&host, a, sidecar) {
            return L4Decision {
                host,
                virtual_service: Some(&vs.info),
                route_index: Some(r.index),
                destinations: Cow::Borrowed(&r.destinations),
                passthrough: false,
            };
        }
        let destinations = match service {
            Some(s) => Cow::Borrowed(&*s.default_destinations),
            None => passthrough(host.clone()),
        };
        L4Decision {
            host,
            virtual_service: None,
            route_index: None,
            destinations,
            passthrough: false,
        }
    }
}

/// istiod's `mergeHTTPRoute` (pilot/pkg/model/virtualservice.go) after the match merge
/// ([`merge_match_requests`]): the name becomes `root-delegate` (an empty name counts as
/// unset), and each of `rewrite`, `directResponse`, `timeout`, `retries`, `fault`,
/// `mirror`, `mirrorPercent`, `mirrorPercentage`, `corsPolicy`, `mirrors` and `headers` the
/// delegate leaves unset is the root's, whole (`headers` are not merged operation by
/// operation; an empty `headers: {}` is set). `route` and `redirect` are the delegate's
/// only (a root route with `delegate` has neither).
fn inherit(d: &mut model::HttpRoute, root: &model::HttpRoute) {
    let (rn, dn) = (
        root.name.as_deref().unwrap_or(""),
        d.name.as_deref().unwrap_or(""),
    );
    d.name = match (rn.is_empty(), dn.is_empty()) {
        (_, true) => root.name.clone(),
        (true, false) => d.name.take(),
        (false, false) => Some(format!("{rn}-{dn}")),
    };
    macro_rules! opt {
        ($($f:ident),*) => {$(
            if d.$f.is_none() { d.$f = root.$f.clone(); }
        )*};
    }
    opt!(
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percentage,
        mirror_percent,
        cors_policy,
        headers
    );
    if d.mirrors.is_empty() {
        d.mirrors = root.mirrors.clone();
    }
}

/// The root route as its delegates inherit it: its mirror hosts resolved in the root's
/// namespace (istiod resolves short names per VirtualService before merging).
fn resolve_root_for_delegate(
    r: &model::HttpRoute,
    ns: &str,
    opts: &MeshOptions,
) -> model::HttpRoute {
    let mut root = r.clone();
    if let Some(m) = &mut root.mirror {
        m.host = opts.resolve_host(&m.host, ns);
    }
    for m in &mut root.mirrors {
        m.destination.host = opts.resolve_host(&m.destination.host, ns);
    }
    root
}

/// Matches with their `gateways` resolved in the VirtualService's namespace, as istiod's
/// `resolveVirtualServiceShortnames` does before comparing root and delegate matches.
fn resolved_match_gateways(
    matches: &[model::HttpMatchRequest],
    ns: &str,
) -> Vec<model::HttpMatchRequest> {
    let mut out = matches.to_vec();
    for g in out.iter_mut().flat_map(|m| m.gateways.iter_mut()) {
        *g = resolve_gateway_name(g, ns);
    }
    out
}

/// istiod's `mergeHTTPMatchRequests` (pilot/pkg/model/virtualservice.go): every delegate
/// match must find a root match it does not conflict with ([`match_conflict`]); each
/// such pair becomes one merged match (delegate-major order). `None` = conflict: istiod
/// drops the delegate route.
fn merge_match_requests(
    root: &[model::HttpMatchRequest],
    delegate: &[model::HttpMatchRequest],
) -> Option<Vec<model::HttpMatchRequest>> {
    if root.is_empty() {
        return Some(delegate.to_vec());
    }
    if delegate.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for leaf in delegate {
        let before = out.len();
        for rm in root.iter().filter(|rm| !match_conflict(rm, leaf)) {
            out.push(merge_match_request(rm, leaf));
        }
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

/// istiod's `mergeHTTPMatchRequest`: the delegate's fields win, unset ones come from the
/// root; maps are unions with the delegate's entries winning.
fn merge_match_request(
    root: &model::HttpMatchRequest,
    leaf: &model::HttpMatchRequest,
) -> model::HttpMatchRequest {
    let mut out = leaf.clone();
    let (rn, ln) = (
        root.name.as_deref().unwrap_or(""),
        leaf.name.as_deref().unwrap_or(""),
    );
    out.name = match (rn.is_empty(), ln.is_empty()) {
        (_, true) => root.name.clone(),
        (true, false) => leaf.name.clone(),
        (false, false) => Some(format!("{rn}-{ln}")),
    };
    macro_rules! opt {
        ($($f:ident),*) => {$(
            if out.$f.is_none() { out.$f = root.$f.clone(); }
        )*};
    }
    opt!(uri, scheme, method, authority);
    // istiod's `if out.Port == 0` / `if out.SourceNamespace == ""`: the proto3 zero values
    // are unset
    if out.port.is_none_or(|p| p == 0) {
        out.port = root.port;
    }
    if out.source_namespace.as_deref().is_none_or(str::is_empty) {
        out.source_namespace.clone_from(&root.source_namespace);
    }
    for (dst, src) in [
        (&mut out.headers, &root.headers),
        (&mut out.without_headers, &root.without_headers),
        (&mut out.query_params, &root.query_params),
    ] {
        for (k, v) in src {
            dst.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    for (k, v) in &root.source_labels {
        out.source_labels
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    out
}

/// istiod's `hasConflict`: true when the delegate match `leaf` is not within `root`.
fn match_conflict(root: &model::HttpMatchRequest, leaf: &model::HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs
        .iter()
        .any(|(r, l)| string_match_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    for (rmap, lmap) in [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ] {
        if lmap
            .iter()
            .any(|(k, l)| string_match_conflict(rmap.get(k), Some(l)))
        {
            return true;
        }
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    let port = |p: Option<u32>| p.filter(|&p| p > 0);
    if let (Some(a), Some(b)) = (port(root.port), port(leaf.port))
        && a != b
    {
        return true;
    }
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    if let Some(rns) = nonempty(&root.source_namespace)
        && nonempty(&leaf.source_namespace).as_deref() != Some(&*rns)
    {
        return true;
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
    {
        return true;
    }
    if !root.gateways.is_empty() && !leaf.gateways.is_empty() {
        if root.gateways.len() < leaf.gateways.len() {
            return true;
        }
        if leaf.gateways.iter().any(|g| !root.gateways.contains(g)) {
            return true;
        }
    }
    false
}

/// istiod's `stringMatchConflict`: only a leaf exact/prefix within a root exact/prefix is
/// compatible; any regex on both sides conflicts; an unset side never does.
fn string_match_conflict(
    root: Option<&model::StringMatch>,
    leaf: Option<&model::StringMatch>,
) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    // Go's getters read "" for an unset arm
    let get = |s: &Option<String>| s.as_deref().unwrap_or("").to_owned();
    let (r_exact, r_prefix, r_regex) = (get(&root.exact), get(&root.prefix), get(&root.regex));
    let (l_exact, l_prefix, l_regex) = (get(&leaf.exact), get(&leaf.prefix), get(&leaf.regex));
    if !r_regex.is_empty() && (!l_regex.is_empty() || !l_prefix.is_empty() || !l_exact.is_empty()) {
        return true;
    }
    if !l_regex.is_empty() && (!r_prefix.is_empty() || !r_exact.is_empty()) {
        return true;
    }
    if !r_exact.is_empty() {
        return !l_prefix.is_empty() || l_exact != r_exact;
    }
    if !r_prefix.is_empty() {
        if !l_prefix.is_empty() {
            return !l_prefix.starts_with(&r_prefix);
        }
        if !l_exact.is_empty() {
            return !l_exact.starts_with(&r_prefix);
        }
    }
    true
}

/// The redirect code of a route Envoy cannot take (any but 301, 302, 303, 307, 308).
/// istiod's `ApplyRedirect` leaves such a route without an action ("Redirect Code %d is not
/// yet supported"), which Envoy refuses: it rejects the whole route configuration of that
/// port and keeps its previous one. We drop the one route instead (the rest of the
/// VirtualService keeps working): a deliberate difference, warned by validation.
fn unsupported_redirect(r: &model::HttpRoute) -> Option<u32> {
    let code = r.redirect.as_ref()?.redirect_code?;
    // (0 is unset in proto3: istiod's `case 0, 301`)
    (!matches!(code, 0 | 301 | 302 | 303 | 307 | 308)).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service's own address as the host routes to the service (istiod lists the VIP
    /// among the domains of its virtual host), its VirtualService applying; an address
    /// inside a ServiceEntry's CIDR, or on a port the service does not declare, names no
    /// service.
    #[test]
    fn a_vip_host_routes_to_its_service() {
        let snap = crate::mesh::Mesh::from_yaml(
            "
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: range, namespace: default}
spec:
  hosts: [range.internal]
  addresses: [240.240.0.0/16, 'fd00::1']
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.7}]
",
        )
        .unwrap()
        .snapshot();
        let h = http::HeaderMap::new();
        let route = |authority: &str| {
            let a = HttpRequestAttrs::new("default", authority, "/", &h);
            let d = snap
                .routes()
                .route_http(snap.registry(), snap.options(), &a);
            let dest = d
                .destinations()
                .first()
                .map(|w| format!("{}/{}", w.host, w.subset.as_deref().unwrap_or("")));
            (d.virtual_service_name().map(str::to_owned), dest)
        };
        assert_eq!(
            route("10.96.0.10:9080"),
            (
                Some("default/reviews".to_owned()),
                Some("reviews.default.svc.cluster.local/v2".to_owned())
            )
        );
        assert_eq!(
            route("[fd00::1]"),
            (None, Some("range.internal/".to_owned()))
        );
        // not a service port, or inside a range only: passed through as written
        assert_eq!(
            route("10.96.0.10:80"),
            (None, Some("10.96.0.10/".to_owned()))
        );
        assert_eq!(
            route("240.240.1.1"),
            (None, Some("240.240.1.1/".to_owned()))
        );
    }

    /// TLS routes: the most specific SNI wins, as Envoy picks among filter chains.
    #[test]
    fn tls_routes_pick_the_most_specific_sni() {
        let snap = crate::mesh::Mesh::from_yaml(
            "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: ['*.example.com']
  tls:
  - match: [{port: 443, sniHosts: ['*.example.com']}]
    route: [{destination: {host: wildcard.internal}}]
  - match: [{port: 443, sniHosts: [api.example.com]}]
    route: [{destination: {host: api.internal}}]
",
        )
        .unwrap()
        .snapshot();
        let pick = |sni: &str| {
            let a = L4Attrs {
                sni: Some(sni),
                ..L4Attrs::new("default", 443)
            };
            snap.route_tls(&a).destinations[0].host.to_string()
        };
        assert_eq!(pick("api.example.com"), "api.internal");
        assert_eq!(pick("www.example.com"), "wildcard.internal");
    }

    /// L4 matches as istiod's `matchTCP` (sidecar: `gateways: [mesh]` does not switch
    /// `sourceLabels` off) and `l4SingleMatch` (gateway: port and gateway only).
    #[test]
    fn l4_match_source_predicates() {
        let snap = crate::mesh::Mesh::from_yaml(
            "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: foo}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 31400, name: tcp, protocol: TCP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: foo}
spec:
  hosts: [db.foo.svc.cluster.local]
  gateways: [mesh, gw]
  tcp:
  - match: [{gateways: [mesh], sourceLabels: {app: sleep}}]
    route: [{destination: {host: db-sleep}}]
  - match: [{gateways: [gw], port: 31400, sourceLabels: {app: nobody}, sourceNamespace: other}]
    route: [{destination: {host: db-ingress}}]
  - route: [{destination: {host: db-other}}]
",
        )
        .unwrap()
        .snapshot();
        let sleep: Labels = [("app".to_string(), "sleep".to_string())].into();
        let web: Labels = [("app".to_string(), "web".to_string())].into();
        let route = |labels: &Labels, gateway: Option<&str>, port: u16| {
            let mut a = L4Attrs::new("foo", port);
            a.source_labels = labels;
            a.gateway = gateway;
            a.sni = Some("db.foo.svc.cluster.local");
            let d = snap.route_tcp(&a);
            d.destinations[0].host.to_string()
        };
        assert_eq!(route(&sleep, None, 5432), "db-sleep.foo.svc.cluster.local");
        assert_eq!(
            route(&web, None, 5432),
            "db-other.foo.svc.cluster.local",
            "sourceLabels still apply"
        );
        // at the gateway, the source predicates do not apply; and a TCP server (no SNI)
        // takes the VirtualServices bound to it, whatever their hosts
        let mut a = L4Attrs::new("istio-system", 31400);
        a.gateway = Some("foo/gw");
        let d = snap.route_tcp(&a);
        assert_eq!(d.virtual_service.map(|v| &*v.name), Some("foo/db"));
        assert_eq!(&*d.destinations[0].host, "db-ingress.foo.svc.cluster.local");
    }

    /// `inherit` against istiod's `mergeHTTPRoute`, one row per `HTTPRoute` field: with the
    /// field set on the root only, the merged route has the root's value (inherited) or none
    /// (the delegate's only); with it set on both, the delegate's value wins.
    #[test]
    fn delegate_inherits_exactly_istiods_fields() {
        // every field of the model, so a new one needs a row below
        let model::HttpRoute {
            name: _,
            matches: _,
            route: _,
            redirect: _,
            direct_response: _,
            delegate: _,
            rewrite: _,
            timeout: _,
            retries: _,
            fault: _,
            mirror: _,
            mirrors: _,
            mirror_percent: _,
            mirror_percentage: _,
            cors_policy: _,
            headers: _,
        } = model::HttpRoute::default();
        let route = |v: serde_json::Value| -> model::HttpRoute {
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
        };
        let dest = |h: &str| serde_json::json!({"host": h});
        // (field, root's value, delegate's value, inherited)
        let table: Vec<(&str, serde_json::Value, serde_json::Value, bool)> = vec![
            // merged by merge_match_requests, never copied here
            (
                "match",
                serde_json::json!([{"uri": {"prefix": "/r"}}]),
                serde_json::json!([{"uri": {"prefix": "/r/d"}}]),
                false,
            ),
            (
                "route",
                serde_json::json!([{"destination": dest("r")}]),
                serde_json::json!([{"destination": dest("d")}]),
                false,
            ),
            (
                "redirect",
                serde_json::json!({"uri": "/r"}),
                serde_json::json!({"uri": "/d"}),
                false,
            ),
            (
                "delegate",
                serde_json::json!({"name": "r"}),
                serde_json::json!({"name": "d"}),
                false,
            ),
            (
                "directResponse",
                serde_json::json!({"status": 503}),
                serde_json::json!({"status": 200}),
                true,
            ),
            (
                "rewrite",
                serde_json::json!({"uri": "/r"}),
                serde_json::json!({"uri": "/d"}),
                true,
            ),
            (
                "timeout",
                serde_json::json!("5s"),
                serde_json::json!("1s"),
                true,
            ),
            (
                "retries",
                serde_json::json!({"attempts": 5}),
                serde_json::json!({"attempts": 1}),
                true,
            ),
            (
                "fault",
                serde_json::json!({"abort": {"httpStatus": 500}}),
                serde_json::json!({"abort": {"httpStatus": 503}}),
                true,
            ),
            ("mirror", dest("r"), dest("d"), true),
            (
                "mirrors",
                serde_json::json!([{"destination": dest("r")}]),
                serde_json::json!([{"destination": dest("d")}]),
                true,
            ),
            (
                "mirrorPercent",
                serde_json::json!(50),
                serde_json::json!(0),
                true,
            ),
            (
                "mirrorPercentage",
                serde_json::json!({"value": 50.0}),
                serde_json::json!({"value": 0.0}),
                true,
            ),
            (
                "corsPolicy",
                serde_json::json!({"allowOrigins": [{"exact": "https://r"}]}),
                serde_json::json!({"allowOrigins": [{"exact": "https://d"}]}),
                true,
            ),
            // whole: the root's request operations do not join the delegate's response ones
            (
                "headers",
                serde_json::json!({"request": {"set": {"x-r": "1"}}}),
                serde_json::json!({"response": {"set": {"x-d": "1"}}}),
                true,
            ),
            // set although empty (a non-nil message in Go)
            (
                "headers",
                serde_json::json!({"request": {"set": {"x-r": "1"}}}),
                serde_json::json!({}),
                true,
            ),
            (
                "rewrite",
                serde_json::json!({"uri": "/r"}),
                serde_json::json!({}),
                true,
            ),
        ];
        for (field, rootv, dv, inherited) in table {
            let root = route(serde_json::json!({ field: rootv }));
            let mut d = model::HttpRoute::default();
            inherit(&mut d, &root);
            let want = if inherited {
                root.clone()
            } else {
                model::HttpRoute::default()
            };
            assert_eq!(d, want, "{field} set on the root only");
            let mut d = route(serde_json::json!({ field: dv }));
            let want = d.clone();
            inherit(&mut d, &root);
            assert_eq!(d, want, "{field} set on both");
        }
        // an empty repeated field is unset in proto3: `mirrors: []` inherits
        let root = route(serde_json::json!({"mirrors": [{"destination": dest("r")}]}));
        let mut d = route(serde_json::json!({"mirrors": []}));
        inherit(&mut d, &root);
        assert_eq!(d.mirrors, root.mirrors);
        // every inherited field at once, each from the root
        let root = route(serde_json::json!({
            "name": "r", "delegate": {"name": "d"}, "directResponse": {"status": 503},
            "rewrite": {"uri": "/r"}, "timeout": "5s", "retries": {"attempts": 5},
            "fault": {"abort": {"httpStatus": 500}}, "mirror": dest("r"),
            "mirrors": [{"destination": dest("r")}], "mirrorPercent": 50,
            "mirrorPercentage": {"value": 50.0}, "corsPolicy": {"allowOrigins": [{"exact": "https://r"}]},
            "headers": {"request": {"set": {"x-r": "1"}}},
        }));
        let mut d = route(serde_json::json!({"route": [{"destination": dest("d")}]}));
        inherit(&mut d, &root);
        let mut want = root.clone();
        want.delegate = None;
        want.route = d.route.clone();
        assert_eq!(d, want);
        // names: `root-delegate`; an empty or missing one takes the other's
        let names = [
            (Some("r"), Some("d"), Some("r-d")),
            (Some("r"), None, Some("r")),
            (Some("r"), Some(""), Some("r")),
            (None, Some("d"), Some("d")),
            (Some(""), Some("d"), Some("d")),
            (None, None, None),
        ];
        for (rn, dn, want) in names {
            let root = model::HttpRoute {
                name: rn.map(Into::into),
                ..Default::default()
            };
            let mut d = model::HttpRoute {
                name: dn.map(Into::into),
                ..Default::default()
            };
            inherit(&mut d, &root);
            assert_eq!(d.name.as_deref(), want, "{rn:?} {dn:?}");
        }
    }

    #[test]
    fn gateway_names() {
        let table = [
            ("mesh", "ns", "mesh"),
            ("gw", "ns", "ns/gw"),
            ("./gw", "ns", "ns/gw"),
            ("other/gw", "ns", "other/gw"),
            ("gw.istio-system.svc.cluster.local", "ns", "istio-system/gw"),
        ];
        for (g, ns, want) in table {
            assert_eq!(resolve_gateway_name(g, ns), want, "{g}");
        }
    }

    #[test]
    fn sni_wildcards() {
        let table = [
            ("*.com", "foo.example.com", true),
            ("*.com", "example.com", true),
            ("*.wikipedia.org", "en.wikipedia.org", true),
            ("*.wikipedia.org", "wikipedia.org", false),
            ("a.com", "A.com", true),
            ("*", "x", true),
        ];
        for (p, s, want) in table {
            assert_eq!(sni_matches(p, s), want, "{p} {s}");
        }
    }
}
