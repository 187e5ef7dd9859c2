//! The ingress gateway: a workload that serves the `Gateway` servers whose selector
//! matches its labels (spec §5).
//!
//! [`GatewayServer`] listens on the ports of those servers (a test or a platform may map a
//! server port to any listener with [`GatewayBuilder::listener`]) and, per connection, on
//! the current snapshot:
//! - **plain HTTP servers** (`HTTP`, `HTTP2`, `GRPC`, `GRPC-WEB`): the server is chosen by
//!   the request's host among the port's servers; `tls.httpsRedirect` answers every request
//!   the authorization allows with a 301 to `https://` and the Host as sent (port
//!   included, as Envoy's `require_tls` redirect); otherwise the request is routed by the
//!   VirtualServices bound to that Gateway;
//! - **HTTPS / TLS servers**: the ClientHello is read *without consuming it* and the
//!   filter chain chosen by SNI among those istiod builds for the port's servers
//!   ([`RouteTable::gateway_tls_chain`](mesh_core::route::RouteTable::gateway_tls_chain)):
//!   a terminating server's hosts, a PASSTHROUGH server's VirtualService `sniHosts` (of
//!   every bound VirtualService whose hosts overlap the server's), an AUTO_PASSTHROUGH
//!   server's `outbound_` names; exact name over the longest `*.suffix` wildcard over `*`
//!   (a `*` chain also takes a client without SNI). Then by `tls.mode` (default
//!   PASSTHROUGH):
//!   - `SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`: TLS is terminated with the certificate of the
//!     server's `credentialName` from a [`CredentialLookup`] (by default
//!     [`DirCredentials`]: `<dir>/<name>/tls.crt`, `tls.key`, `ca.crt`, or a separate
//!     `<name>-cacert`), so each host gets its own certificate; HTTPS servers then route
//!     HTTP as above, TLS servers send the decrypted bytes where the `tcp` route of the
//!     first bound VirtualService whose hosts overlap the server's sends them, whatever
//!     the SNI (istiod builds one filter chain per server);
//!   - `ISTIO_MUTUAL`: TLS is terminated with the gateway's own mesh certificate
//!     ([`GatewayBuilder::workload_credentials`]) and the client must present one from the
//!     mesh (an egress gateway that sidecars reach with a DestinationRule's `ISTIO_MUTUAL`
//!     and `sni`); then as above, the client's SPIFFE identity being `source.principal`;
//!   - `PASSTHROUGH`: the connection is routed by SNI through the bound VirtualServices'
//!     `tls` routes and its bytes are spliced, unterminated, to the chosen endpoint;
//!   - `AUTO_PASSTHROUGH` (an east-west gateway): the SNI of a mesh client's mutual TLS,
//!     `outbound_.<port>_.<subset>_.<host>`, names the service, port and subset (the
//!     server's `hosts` select which services), and the bytes go to one of its endpoints
//!     untouched, with no VirtualService: the workload terminates the client's TLS; only
//!     a ClientHello offering one of Istio's mTLS ALPNs (`istio`, `istio-peer-exchange`,
//!     `istio-http/1.0`, `istio-http/1.1`, `istio-h2`) matches, as istiod's filter chains
//!     require, so a TLS client outside the mesh cannot reach a workload through it;
//! - **TCP servers** (`TCP`, and `MONGO`, `MYSQL`, `REDIS`, which Istio proxies as TCP):
//!   the connection is routed by the bound VirtualServices' `tcp` routes (by port).
//!
//! Every TCP, terminated TLS and PASSTHROUGH connection goes upstream through the gateway's
//! mesh client ([`MeshClient::connect`](crate::outbound::MeshClient::connect)): the
//! destination's load balancer, outlier detection and `maxConnections`, TLS origination
//! (auto mTLS with the gateway's workload certificate to mesh workloads, so a STRICT
//! workload takes it; a PASSTHROUGH connection's own TLS travels inside; an
//! AUTO_PASSTHROUGH connection gets none, its own being the workload's), counted in the
//! gateway's `istio_tcp_*` metrics.
//!
//! AuthorizationPolicies selecting the gateway's labels are enforced: per request for
//! HTTP (401 for a bad JWT, 403 `RBAC: access denied`, before routing and before an
//! httpsRedirect or a 404, as Envoy's filters run before its router), per connection for
//! PASSTHROUGH, terminated TLS and TCP servers (a denied connection is closed), with
//! `connection.sni` known and, on MUTUAL and OPTIONAL_MUTUAL servers, the client
//! certificate's SPIFFE identity as `source.principal` and `source.namespace`.
//!
//! As Istio's gateway (`forward_client_cert_details: SANITIZE_SET` unless MeshConfig's
//! `gatewayTopology.forwardClientCertDetails` or
//! [`GatewayBuilder::forward_client_cert_details`] says otherwise), a request's
//! `x-forwarded-client-cert` is removed, and on a connection whose client presented a
//! verified certificate it is set to Envoy's `By=..;Hash=..;Cert="..";Subject="..";URI=..;
//! DNS=..` for that certificate (the other modes as Envoy's `mutateXfccRequestHeader`).
//! Every response carries `server: istio-envoy` (MeshConfig `proxyHeaders.server`: another
//! value, or none: the upstream's is passed through).
//!
//! Routed HTTP requests are forwarded by the gateway's own outbound client (a
//! [`MeshClient`] of the gateway workload), so they get
//! everything a sidecar's outbound requests get, routed by the VirtualServices bound to the
//! Gateway: the DestinationRule's load balancer, connection pool limits and outlier
//! detection over the destination's endpoints (subset labels from the DestinationRule),
//! retries (Istio's defaults, the previous host avoided), timeouts, fault injection
//! (delay, abort), mirrors, `rewrite` (uri, authority) and header operations (route and
//! destination level, request and response), over pooled connections: in plaintext, or
//! with the DestinationRule's `tls` (SIMPLE, MUTUAL with a `credentialName` from the
//! gateway's [`CredentialLookup`], ISTIO_MUTUAL), or, without one, with Istio's auto mTLS
//! (ISTIO_MUTUAL to mesh workloads when the gateway has its own mesh identity,
//! [`GatewayBuilder::workload_credentials`]). The gateway writes `x-forwarded-proto` (a
//! client's is kept only behind `numTrustedProxies`, and then also decides
//! `httpsRedirect` and `scheme` matches) and `x-forwarded-for`, drops hop-by-hop headers
//! and, as Envoy does with every request it takes as an edge request, Envoy's internal
//! headers a client sent (`x-envoy-retry-on`, `x-envoy-max-retries`,
//! `x-envoy-upstream-rq-timeout-ms`, `x-envoy-internal`, ...), sets
//! `x-envoy-external-address` to the trusted client address, and propagates trace context
//! and `x-request-id` (a client's `x-request-id` is replaced by a new one, as Envoy does on
//! an edge request unless `preserve_external_request_id`, which istiod leaves off).
//!
//! WebSocket upgrades are forwarded, as Istio configures Envoy by default (HTTP/1.1
//! `Connection: upgrade` with `Upgrade: websocket`, on plain HTTP and terminated HTTPS
//! servers): the request is authorized and routed like any other (its `connection` and
//! `upgrade` headers kept, over an HTTP/1.1 connection to the endpoint), and when the
//! upstream answers `101 Switching Protocols` the gateway answers 101 too and then splices
//! the two upgraded connections, bytes both ways, until either side closes. Any other answer
//! (a 403 from the workload's authorization, a 200 from a server that ignores the upgrade,
//! Envoy's own 404, 503, 504) is returned as a normal response, and the downstream
//! connection stays plain HTTP. The route `timeout` and retries apply until the upstream's
//! response headers, not to the upgraded stream. As Envoy with Istio's `upgrade_configs`,
//! an `h2c` upgrade offer is dropped (the request is served as plain HTTP/1.1) and any other
//! upgrade protocol is refused with 403.
//! Envoy's local replies are reproduced: 426 `Upgrade Required` to an HTTP/1.0 request
//! (Istio leaves `accept_http_10` off), 404 when no VirtualService or route matches, 503
//! (NC) for an unknown destination or subset, 503 `no healthy upstream` without endpoints,
//! 503 `upstream connect error ...` when no endpoint can be reached after the retries, 504
//! `upstream request timeout`; VirtualService redirects and direct responses are answered
//! by the gateway.
//!
//! HTTP traffic is logged by the access log and counted in Istio's standard metrics as
//! Istio's gateway reports them (`reporter="source"`, the gateway as source workload, the
//! routed service as destination; [`GatewayServer::metrics`]).
//!
//! Settings we cannot honour fail loudly at [`GatewayBuilder::start`] (and reset the
//! connection if they appear in a later config): `ISTIO_MUTUAL` on a gateway without a
//! mesh identity ([`GatewayBuilder::workload_credentials`]),
//! certificate and CRL file paths (`caCrl`: a credential's `ca.crl` is checked), SPKI and
//! hash pins on ISTIO_MUTUAL, and
//! server protocols Istio does not proxy (`UDP`).
//!
//! Differences from Istio: the ports are those of the servers at start (a port added by a
//! later Gateway is not listened on until a restart); credentials are read when first
//! needed after each config change ([`GatewayServer::reload_credentials`] forces a
//! re-read, and also forgets the upstream connections, whose TLS configs may hold
//! `credentialName` certificates); WebSocket over HTTP/2
//! (extended CONNECT, RFC 8441) is not supported (HTTP/1.1 upgrades are); an upgraded
//! stream has no idle timeout; a client certificate gives a `source.principal` only when
//! its URI SAN is an Istio-shaped SPIFFE ID (`spiffe://<td>/ns/<ns>/sa/<sa>`): Envoy would
//! take any URI SAN (else the DNS SAN or subject), which only a `principals: ["*"]` rule
//! could match, since Istio writes every principal as `spiffe://` + the value.
//!
//! # Examples
//!
//! An HTTP server with `tls.httpsRedirect`: every request gets Envoy's 301 to `https://`.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use mesh_core::mesh::Mesh;
//! use mesh_tower::gateway::GatewayServer;
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mesh = Mesh::from_yaml("
//! apiVersion: networking.istio.io/v1
//! kind: Gateway
//! metadata: {name: bookinfo-gateway, namespace: default}
//! spec:
//!   selector: {istio: ingressgateway}
//!   servers:
//!   - port: {number: 80, name: http, protocol: HTTP}
//!     hosts: [bookinfo.example.com]
//!     tls: {httpsRedirect: true}
//! ")?;
//! let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
//! let gateway = GatewayServer::builder(mesh, "istio-system", labels)
//!     .listener(80, TcpListener::bind("127.0.0.1:0").await?)
//!     .start()
//!     .await?;
//! let addr = gateway.local_addr(80).unwrap();
//!
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
//! let req = http::Request::get(format!("http://{addr}/productpage"))
//!     .header("host", "bookinfo.example.com")
//!     .body(Empty::new())?;
//! let res = client.request(req).await?;
//! assert_eq!(res.status(), 301);
//! assert_eq!(res.headers()["location"], "https://bookinfo.example.com/productpage");
//! # Ok(()) }
//! ```

mod pinning;
mod sni;
pub(crate) use sni::{peek_client_hello, Peeked};
mod tls;
/// XFCC formatting, shared with the mesh server's inbound side.
pub(crate) mod xfcc;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, LOCATION, SERVER};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use mesh_core::gateway::{parse_sni_dnat, GatewayServer as ServerRef};
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::ForwardClientCertDetails;
use mesh_core::model::ServiceLocation;
use mesh_core::model::{Labels, ServerTlsMode};
use mesh_core::route::{HttpRequestAttrs, L4Attrs, WeightedDestination};
use mesh_core::snapshot::Snapshot;
use mesh_tls::{CredentialLookup, DirCredentials, PeerIdentity};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub use sni::{parse_client_hello, Hello};

use crate::accesslog::AccessLogLayer;
use crate::authz::AuthorizationLayer;
use crate::envoy::LocalReply;
use crate::inbound::{is_transient, ConnectionInfo, ConnectionInfoLayer};
use crate::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
use crate::outbound::UpgradeRequest;
use crate::outbound::{ClientWorkload, MeshClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body the gateway answers with.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::gateway::GatewayBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let body: GatewayBody = Full::new(Bytes::from("fault filter abort"))
///     .map_err(|never: Infallible| match never {})
///     .boxed_unsync();
/// assert_eq!(body.collect().await?.to_bytes(), "fault filter abort");
/// # Ok(()) }
/// ```
pub type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;
/// The request body the gateway forwards (counted by the access log and the metrics).
type UpstreamBody = crate::inbound::ServerBody;

/// Why a gateway could not start.
///
/// # Examples
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::gateway::{GatewayError, GatewayServer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A mesh with no Gateway at all.
/// let mesh = Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews, namespace: default}
/// spec:
///   hosts: [reviews]
///   http: [{route: [{destination: {host: reviews}}]}]
/// ")?;
/// let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
/// let err = GatewayServer::builder(mesh, "istio-system", labels).start().await.unwrap_err();
/// assert!(matches!(err, GatewayError::NoServers(_)));
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No Gateway server selects this workload's labels.
    #[error("no Gateway server selects a workload with labels {0:?}")]
    NoServers(Labels),
    /// A server asks for something the gateway does not support, or its credential is
    /// missing or invalid.
    #[error("Gateway {gateway} server {index} (port {port}): {message}")]
    Server {
        /// `ns/name` of the Gateway.
        gateway: String,
        /// Index of the server.
        index: usize,
        /// Its port.
        port: u32,
        /// What is wrong.
        message: String,
    },
    /// A port could not be bound.
    #[error("cannot listen on port {port}: {source}")]
    Bind {
        /// The server port.
        port: u16,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Builds a [`GatewayServer`]. See [`GatewayServer::builder`].
///
/// # Examples
///
/// [`start`](Self::start) checks every server first: here the HTTPS server's
/// `credentialName` has no certificate in the credential directory.
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::gateway::{GatewayError, GatewayServer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: mygateway, namespace: istio-system}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 443, name: https, protocol: HTTPS}
///     hosts: [httpbin.example.com]
///     tls: {mode: SIMPLE, credentialName: httpbin-credential}
/// ")?;
/// let credentials = tempfile::tempdir()?; // empty: no httpbin-credential/
/// let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
/// let err = GatewayServer::builder(mesh, "istio-system", labels)
///     .credential_dir(credentials.path())
///     .hello_timeout(std::time::Duration::from_secs(5))
///     .start()
///     .await
///     .unwrap_err();
/// let GatewayError::Server { gateway, port, message, .. } = err else { panic!("{err}") };
/// assert_eq!((gateway.as_str(), port), ("istio-system/mygateway", 443));
/// assert!(message.contains("httpbin-credential"), "{message}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GatewayBuilder {
    mesh: Mesh,
    namespace: String,
    labels: Labels,
    credentials: Arc<dyn CredentialLookup>,
    listeners: BTreeMap<u16, TcpListener>,
    bind: IpAddr,
    hello_timeout: Duration,
    drain_timeout: Duration,
    workload: Option<Arc<mesh_tls::WorkloadCredentials>>,
    metrics: Option<Arc<IstioMetrics>>,
    workload_name: String,
    cluster_id: Option<String>,
    num_trusted_proxies: Option<u32>,
    forward_client_cert_details: Option<ForwardClientCertDetails>,
}

impl GatewayBuilder {
    /// Looks `credentialName`s up in this store (default: [`DirCredentials`] over
    /// `./credentials`).
    ///
    /// # Examples
    ///
    /// Credentials kept in memory instead of files:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Credential, CredentialLookup, Identity, MeshCa, TlsError};
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::net::TcpListener;
    ///
    /// #[derive(Debug)]
    /// struct Secret(Credential);
    /// impl CredentialLookup for Secret {
    ///     fn lookup(&self, name: &str) -> Result<Credential, TlsError> {
    ///         match name {
    ///             "httpbin-credential" => Ok(self.0.clone()),
    ///             _ => Err(TlsError::Config(format!("no secret {name}"))),
    ///         }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("example.com")?;
    /// # let cert = ca.issue(&Identity::new("example.com", "default", "httpbin")?, Duration::from_secs(3600), &["httpbin.example.com"])?;
    /// # let mesh = Mesh::from_yaml("
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: mygateway, namespace: istio-system}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 443, name: https, protocol: HTTPS}
    /// #     hosts: [httpbin.example.com]
    /// #     tls: {mode: SIMPLE, credentialName: httpbin-credential}
    /// # ")?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let store = Secret(Credential {
    ///     cert_chain_pem: Some(cert.chain_pem().to_owned()),
    ///     key_pem: Some(cert.key_pem().to_owned()),
    ///     crl_pem: None,
    ///     ca_pem: None,
    /// });
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .credentials(Arc::new(store))
    ///     .listener(443, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?; // the credential was found and checked
    /// assert!(gateway.local_addr(443).is_some());
    /// # Ok(()) }
    /// ```
    pub fn credentials(mut self, store: Arc<dyn CredentialLookup>) -> Self {
        self.credentials = store;
        self
    }

    /// Looks `credentialName`s up as directories under `dir` ([`DirCredentials`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Identity, MeshCa};
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::net::TcpListener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("example.com")?;
    /// # let cert = ca.issue(&Identity::new("example.com", "default", "httpbin")?, Duration::from_secs(3600), &["httpbin.example.com"])?;
    /// # let mesh = Mesh::from_yaml("
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: mygateway, namespace: istio-system}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 443, name: https, protocol: HTTPS}
    /// #     hosts: [httpbin.example.com]
    /// #     tls: {mode: SIMPLE, credentialName: httpbin-credential}
    /// # ")?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// // <dir>/httpbin-credential/{tls.crt,tls.key}, as a kubernetes.io/tls secret.
    /// let dir = tempfile::tempdir()?;
    /// std::fs::create_dir(dir.path().join("httpbin-credential"))?;
    /// std::fs::write(dir.path().join("httpbin-credential/tls.crt"), cert.chain_pem())?;
    /// std::fs::write(dir.path().join("httpbin-credential/tls.key"), cert.key_pem())?;
    ///
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .credential_dir(dir.path())
    ///     .listener(443, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?;
    /// assert!(gateway.local_addr(443).is_some());
    /// # Ok(()) }
    /// ```
    pub fn credential_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.credentials(Arc::new(DirCredentials::new(dir.into())))
    }

    /// Serves Gateway server port `port` on `listener` instead of binding it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::net::TcpListener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let hello = r#"
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: hello-gateway, namespace: default}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 80, name: http, protocol: HTTP}
    /// #     hosts: ["*"]
    /// # ---
    /// # apiVersion: networking.istio.io/v1
    /// # kind: VirtualService
    /// # metadata: {name: hello, namespace: default}
    /// # spec:
    /// #   hosts: ["*"]
    /// #   gateways: [hello-gateway]
    /// #   http: [{directResponse: {status: 200, body: {string: hello}}}]
    /// # "#;
    /// # let mesh = Mesh::from_yaml(hello)?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .listener(80, listener) // Gateway server port 80, served on a free local port
    ///     .start()
    ///     .await?;
    /// assert_eq!(gateway.local_addr(80), Some(addr));
    /// # Ok(()) }
    /// ```
    pub fn listener(mut self, port: u16, listener: TcpListener) -> Self {
        self.listeners.insert(port, listener);
        self
    }

    /// The address to bind server ports on when a server has no `bind` (default
    /// `0.0.0.0`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::GatewayServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A free port for the Gateway server.
    /// let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// let mesh = Mesh::from_yaml(&format!("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {{name: local, namespace: default}}
    /// spec:
    ///   selector: {{istio: ingressgateway}}
    ///   servers:
    ///   - port: {{number: {port}, name: http, protocol: HTTP}}
    ///     hosts: ['*']
    /// "))?;
    /// let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .bind_address(Ipv4Addr::LOCALHOST.into())
    ///     .start()
    ///     .await?;
    /// assert_eq!(gateway.local_addr(port), Some((Ipv4Addr::LOCALHOST, port).into()));
    /// # Ok(()) }
    /// ```
    pub fn bind_address(mut self, ip: IpAddr) -> Self {
        self.bind = ip;
        self
    }

    /// The gateway's own mesh identity (Istio's `istio-ingressgateway-service-account`):
    /// with it, requests to mesh workloads use ISTIO_MUTUAL (Istio's auto mTLS) unless a
    /// DestinationRule says otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    /// use mesh_tower::gateway::GatewayServer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let hello = r#"
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: hello-gateway, namespace: default}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 80, name: http, protocol: HTTP}
    /// #     hosts: ["*"]
    /// # ---
    /// # apiVersion: networking.istio.io/v1
    /// # kind: VirtualService
    /// # metadata: {name: hello, namespace: default}
    /// # spec:
    /// #   hosts: ["*"]
    /// #   gateways: [hello-gateway]
    /// #   http: [{directResponse: {status: 200, body: {string: hello}}}]
    /// # "#;
    /// # let mesh = Mesh::from_yaml(hello)?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "istio-system", "istio-ingressgateway-service-account")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let builder = GatewayServer::builder(mesh, "istio-system", labels).workload_credentials(creds);
    /// assert!(format!("{builder:?}").contains("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"));
    /// # Ok(()) }
    /// ```
    pub fn workload_credentials(mut self, creds: Arc<mesh_tls::WorkloadCredentials>) -> Self {
        self.workload = Some(creds);
        self
    }

    /// Record Istio's standard metrics here (default: a new registry, see
    /// [`GatewayServer::metrics`]). The gateway reports as Istio's does: `reporter="source"`
    /// with itself as the source workload.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::GatewayServer;
    /// use mesh_tower::metrics::IstioMetrics;
    /// use tokio::net::TcpListener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let hello = r#"
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: hello-gateway, namespace: default}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 80, name: http, protocol: HTTP}
    /// #     hosts: ["*"]
    /// # ---
    /// # apiVersion: networking.istio.io/v1
    /// # kind: VirtualService
    /// # metadata: {name: hello, namespace: default}
    /// # spec:
    /// #   hosts: ["*"]
    /// #   gateways: [hello-gateway]
    /// #   http: [{directResponse: {status: 200, body: {string: hello}}}]
    /// # "#;
    /// # let mesh = Mesh::from_yaml(hello)?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .metrics(metrics.clone())
    ///     .listener(80, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let url = format!("http://{}/", gateway.local_addr(80).unwrap());
    /// assert_eq!(client.get(url.parse()?).await?.status(), 200);
    ///
    /// let text = metrics.render();
    /// assert!(text.contains("istio_requests_total{"), "{text}");
    /// assert!(text.contains(r#"reporter="source""#));
    /// # Ok(()) }
    /// ```
    pub fn metrics(mut self, metrics: Arc<IstioMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The gateway's workload name in metrics (default `istio-ingressgateway`).
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::net::TcpListener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let hello = r#"
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: hello-gateway, namespace: default}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 80, name: http, protocol: HTTP}
    /// #     hosts: ["*"]
    /// # ---
    /// # apiVersion: networking.istio.io/v1
    /// # kind: VirtualService
    /// # metadata: {name: hello, namespace: default}
    /// # spec:
    /// #   hosts: ["*"]
    /// #   gateways: [hello-gateway]
    /// #   http: [{directResponse: {status: 200, body: {string: hello}}}]
    /// # "#;
    /// # let mesh = Mesh::from_yaml(hello)?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .workload_name("public-gateway")
    ///     .listener(80, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?;
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let url = format!("http://{}/", gateway.local_addr(80).unwrap());
    /// client.get(url.parse()?).await?;
    /// assert!(gateway.metrics().render().contains(r#"source_workload="public-gateway""#));
    /// # Ok(()) }
    /// ```
    pub fn workload_name(mut self, name: impl Into<String>) -> Self {
        self.workload_name = name.into();
        self
    }

    /// How many proxies in front of the gateway are trusted to append to `X-Forwarded-For`
    /// (Istio's `gatewayTopology.numTrustedProxies`; default: the MeshConfig's
    /// `defaultConfig.gatewayTopology.numTrustedProxies`, else 0). AuthorizationPolicy's
    /// `remoteIpBlocks` and `remote.ip` then see the address that many hops from the right
    /// of `X-Forwarded-For` (Envoy's `xff_num_trusted_hops`); with 0, the connection's peer.
    ///
    /// # Examples
    ///
    /// Behind one load balancer that appends the client's address:
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::GatewayServer;
    ///
    /// let builder = GatewayServer::builder(Mesh::new(Default::default()), "istio-system", Default::default())
    ///     .num_trusted_proxies(1);
    /// # let _ = builder;
    /// ```
    pub fn num_trusted_proxies(mut self, proxies: u32) -> Self {
        self.num_trusted_proxies = Some(proxies);
        self
    }

    /// What the gateway does with a request's `x-forwarded-client-cert` (Istio's
    /// `gatewayTopology.forwardClientCertDetails`; default: the MeshConfig's
    /// `defaultConfig.gatewayTopology.forwardClientCertDetails`, else SANITIZE_SET), as
    /// Envoy's `mutateXfccRequestHeader`: on a connection without a verified client
    /// certificate (plaintext, SIMPLE) the header is removed in every mode but
    /// ALWAYS_FORWARD_ONLY.
    ///
    /// # Examples
    ///
    /// Behind a proxy that terminates the client's mutual TLS and sets the header itself:
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::meshconfig::ForwardClientCertDetails;
    /// use mesh_tower::gateway::GatewayServer;
    ///
    /// let builder = GatewayServer::builder(Mesh::new(Default::default()), "istio-system", Default::default())
    ///     .forward_client_cert_details(ForwardClientCertDetails::AlwaysForwardOnly);
    /// # let _ = builder;
    /// ```
    pub fn forward_client_cert_details(mut self, mode: ForwardClientCertDetails) -> Self {
        self.forward_client_cert_details = Some(mode);
        self
    }

    /// The gateway's cluster id (Istio's `CLUSTER_ID`), reported as `source_cluster` by its
    /// metrics (default `Kubernetes`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::GatewayServer;
    ///
    /// let builder = GatewayServer::builder(Mesh::new(Default::default()), "istio-system", Default::default())
    ///     .cluster_id("east");
    /// # let _ = builder;
    /// ```
    pub fn cluster_id(mut self, cluster: impl Into<String>) -> Self {
        self.cluster_id = Some(cluster.into());
        self
    }

    /// How long to wait for a TLS ClientHello (default 10 s).
    ///
    /// # Examples
    ///
    /// A client that opens a connection to a TLS port and sends nothing is dropped after the
    /// timeout:
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Identity, MeshCa};
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::io::AsyncReadExt;
    /// use tokio::net::{TcpListener, TcpStream};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("example.com")?;
    /// # let cert = ca.issue(&Identity::new("example.com", "default", "httpbin")?, Duration::from_secs(3600), &["httpbin.example.com"])?;
    /// # let mesh = Mesh::from_yaml("
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: mygateway, namespace: istio-system}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 443, name: https, protocol: HTTPS}
    /// #     hosts: [httpbin.example.com]
    /// #     tls: {mode: SIMPLE, credentialName: httpbin-credential}
    /// # ")?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::create_dir(dir.path().join("httpbin-credential"))?;
    /// # std::fs::write(dir.path().join("httpbin-credential/tls.crt"), cert.chain_pem())?;
    /// # std::fs::write(dir.path().join("httpbin-credential/tls.key"), cert.key_pem())?;
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .credential_dir(dir.path())
    ///     .hello_timeout(Duration::from_millis(100))
    ///     .listener(443, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?;
    /// let mut silent = TcpStream::connect(gateway.local_addr(443).unwrap()).await?;
    /// let mut buf = [0u8; 1];
    /// // The gateway closes the connection (EOF or reset) well before this guard.
    /// let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await?;
    /// assert!(matches!(read, Ok(0) | Err(_)));
    /// # Ok(()) }
    /// ```
    pub fn hello_timeout(mut self, timeout: Duration) -> Self {
        self.hello_timeout = timeout;
        self
    }

    /// How long the connections open when the gateway is dropped have to finish (default
    /// 5 s, Istio's `terminationDrainDuration`): they are asked to close (HTTP/1.1 after the
    /// current response, HTTP/2 with GOAWAY), and those still open after it are closed,
    /// TCP and TLS passthrough connections included.
    ///
    /// (While the gateway runs, an HTTP connection without an active request for the
    /// mesh's idle timeout is closed the same way: one hour, or MeshConfig
    /// `defaultConfig.proxyMetadata.ISTIO_META_IDLE_TIMEOUT`, see
    /// [`MeshOptions::idle_timeout`](mesh_core::names::MeshOptions::idle_timeout).)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// use tokio::net::{TcpListener, TcpStream};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: hello-gateway, namespace: istio-system}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: hello, namespace: default}
    /// spec:
    ///   hosts: ['*']
    ///   gateways: [istio-system/hello-gateway]
    ///   http: [{directResponse: {status: 200, body: {string: hello}}}]
    /// ")?;
    /// let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .drain_timeout(Duration::from_millis(200))
    ///     .listener(80, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?;
    /// // a keep-alive connection, idle after its answer
    /// let mut conn = TcpStream::connect(gateway.local_addr(80).unwrap()).await?;
    /// conn.write_all(b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n").await?;
    /// let mut buf = [0u8; 512];
    /// assert!(conn.read(&mut buf).await? > 0);
    ///
    /// drop(gateway);
    /// // the gateway closes it
    /// let mut rest = Vec::new();
    /// tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await??;
    /// # Ok(()) }
    /// ```
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Checks every server (protocol, TLS settings, credentials), binds the ports and
    /// starts serving.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::{GatewayError, GatewayServer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // UDP is not proxied (Istio's gateways don't either): refused at start, naming the
    /// // server.
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: dns-gateway, namespace: default}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers:
    ///   - port: {number: 5353, name: udp-dns, protocol: UDP}
    ///     hosts: ['*']
    /// ")?;
    /// let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let err = GatewayServer::builder(mesh, "istio-system", labels).start().await.unwrap_err();
    /// assert!(matches!(err, GatewayError::Server { port: 5353, .. }), "{err}");
    /// # Ok(()) }
    /// ```
    pub async fn start(mut self) -> Result<GatewayServer, GatewayError> {
        let snap = self.mesh.snapshot();
        let servers = snap.gateway_servers(&self.labels);
        if servers.is_empty() {
            return Err(GatewayError::NoServers(self.labels));
        }
        let cache = tls::ConfigCache::new();
        let mut ports = Vec::new();
        for s in &servers {
            let err = |message: String| GatewayError::Server {
                gateway: s.gateway.to_owned(),
                index: s.index,
                port: s.server.port.number,
                message,
            };
            let bind = match s.server.bind.as_deref() {
                None | Some("") => None,
                Some(b) if b.starts_with("unix://") => {
                    return Err(err(format!(
                        "bind {b:?}: Unix domain sockets are not supported"
                    )))
                }
                Some(b) => Some(
                    b.parse::<IpAddr>()
                        .map_err(|_| err(format!("bind {b:?} is not a valid IP")))?,
                ),
            };
            let port = u16::try_from(s.server.port.number)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err("port must be 1..65535".into()))?;
            match kind(s) {
                Kind::Http | Kind::Tcp => {}
                Kind::Tls { terminate, http } => {
                    let settings = s.server.tls.as_ref().ok_or_else(|| {
                        err("server must have TLS settings for HTTPS/TLS protocols".into())
                    })?;
                    tls::check_supported(settings).map_err(err)?;
                    if terminate {
                        cache
                            .get(snap.generation(), s.gateway, s.index, || {
                                tls::build_config(
                                    settings,
                                    &*self.credentials,
                                    self.workload.as_deref(),
                                    http,
                                    &snap.options().tls_defaults,
                                )
                            })
                            .map_err(err)?;
                    }
                }
                Kind::Unsupported => {
                    return Err(err(format!(
                        "protocol {:?} is not supported by this gateway (HTTP, HTTP2, GRPC, \
                         GRPC-WEB, HTTPS, TLS, TCP, MONGO, MYSQL and REDIS are)",
                        s.server.port.protocol
                    )))
                }
            }
            match ports.iter().find(|(p, _)| *p == port) {
                None => ports.push((port, bind)),
                Some((_, other)) if *other != bind => {
                    return Err(err(format!(
                        "servers on port {port} bind different addresses ({other:?} and \
                         {bind:?})"
                    )))
                }
                Some(_) => {}
            }
        }
        let metrics = self
            .metrics
            .clone()
            .unwrap_or_else(|| Arc::new(IstioMetrics::new()));
        let mut me = WorkloadInfo::from_labels(
            &self.workload_name,
            &self.namespace,
            self.workload.as_ref().map_or("", |w| w.identity().as_uri()),
            &self.labels,
        );
        if let Some(c) = &self.cluster_id {
            me.cluster.clone_from(c);
        }
        // The gateway's client: its own workload (for the source labels and auto mTLS with
        // its credentials), the credential store for DestinationRule `credentialName`s.
        let service_account = self.workload.as_ref().map_or_else(
            || self.workload_name.clone(),
            |w| w.identity().service_account().to_owned(),
        );
        let mut me_client =
            ClientWorkload::new(&self.workload_name, &self.namespace, &service_account);
        me_client.labels = self.labels.clone();
        me_client.cluster_id.clone_from(&self.cluster_id);
        let mut client = MeshClient::builder(self.mesh.clone(), me_client)
            .for_gateway()
            .credential_lookup(Arc::clone(&self.credentials))
            .metrics(Arc::clone(&metrics));
        if let Some(w) = &self.workload {
            client = client.credentials(Arc::clone(w));
        }
        let client = client.build();
        // CUSTOM policies' external authorizers are asked through the gateway's client
        let authz = AuthorizationLayer::new(
            self.mesh.clone(),
            self.namespace.as_str(),
            self.labels.clone(),
        )
        .with_ext_authz_client(client.clone());
        let num_trusted_proxies = self
            .num_trusted_proxies
            .unwrap_or(self.mesh.options().num_trusted_proxies);
        let authz = authz.for_gateway(num_trusted_proxies);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            stopped,
            access_log: AccessLogLayer::inbound().with_mesh_format(&self.mesh),
            metrics_layer: MetricsLayer::outbound(Arc::clone(&metrics), me),
            metrics,
            authz,
            mesh: self.mesh.clone(),
            namespace: self.namespace,
            labels: self.labels,
            credentials: self.credentials,
            workload: self.workload,
            cache,
            hello_timeout: self.hello_timeout,
            drain_timeout: self.drain_timeout,
            num_trusted_proxies,
            forward_client_cert_details: self
                .forward_client_cert_details
                .unwrap_or(self.mesh.options().forward_client_cert_details),
            server_header: self
                .mesh
                .options()
                .proxy_headers
                .server
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok()),
            client,
        });
        let mut addrs = BTreeMap::new();
        for (port, bind) in ports {
            let listener = match self.listeners.remove(&port) {
                Some(l) => l,
                None => TcpListener::bind((bind.unwrap_or(self.bind), port))
                    .await
                    .map_err(|source| GatewayError::Bind { port, source })?,
            };
            let addr = listener
                .local_addr()
                .map_err(|source| GatewayError::Bind { port, source })?;
            addrs.insert(port, addr);
            tokio::spawn(accept_loop(Arc::clone(&inner), listener, port));
        }
        Ok(GatewayServer { inner, addrs, stop })
    }
}

struct Inner {
    /// True once the gateway is dropped: its connections drain.
    stopped: tokio::sync::watch::Receiver<bool>,
    /// How long they have.
    drain_timeout: Duration,
    metrics: Arc<IstioMetrics>,
    authz: AuthorizationLayer,
    mesh: Mesh,
    namespace: String,
    labels: Labels,
    credentials: Arc<dyn CredentialLookup>,
    /// The gateway's mesh identity (ISTIO_MUTUAL servers present it).
    workload: Option<Arc<mesh_tls::WorkloadCredentials>>,
    cache: tls::ConfigCache,
    hello_timeout: Duration,
    /// `gatewayTopology.numTrustedProxies` (Envoy's `xff_num_trusted_hops`).
    num_trusted_proxies: u32,
    /// `gatewayTopology.forwardClientCertDetails`.
    forward_client_cert_details: ForwardClientCertDetails,
    /// The `server` header of every response (`proxyHeaders.server`: `istio-envoy` by
    /// default; `None`: the upstream's passes through).
    server_header: Option<HeaderValue>,
    /// The gateway's outbound side: the mesh client of its workload, which forwards every
    /// routed request (balancing, retries, pooled TLS origination).
    client: MeshClient,
    metrics_layer: MetricsLayer,
    /// The access log, in the MeshConfig's format.
    access_log: AccessLogLayer,
}

/// A running ingress gateway. Dropping it stops the listeners and drains the open
/// connections: they are asked to close and have [`GatewayBuilder::drain_timeout`] to
/// finish, then those left are closed.
///
/// # Examples
///
/// A gateway on loopback answering a VirtualService's `directResponse`:
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::gateway::GatewayServer;
/// use tokio::net::TcpListener;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::from_yaml(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: hello-gateway, namespace: default}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 80, name: http, protocol: HTTP}
///     hosts: ["*"]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: hello, namespace: default}
/// spec:
///   hosts: ["*"]
///   gateways: [hello-gateway]
///   http:
///   - match: [{uri: {exact: /hello}}]
///     directResponse:
///       status: 200
///       body: {string: "hello from the gateway"}
/// "#)?;
/// let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
/// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
///     .listener(80, TcpListener::bind("127.0.0.1:0").await?) // server port 80, any local port
///     .start()
///     .await?;
/// let addr = gateway.local_addr(80).unwrap();
///
/// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
/// let get = |path: &str| http::Request::get(format!("http://{addr}{path}")).body(Empty::new());
/// let hello = client.request(get("/hello")?).await?;
/// assert_eq!(hello.status(), 200);
/// assert_eq!(hello.into_body().collect().await?.to_bytes(), "hello from the gateway");
///
/// // No route matches: Envoy's 404.
/// assert_eq!(client.request(get("/other")?).await?.status(), 404);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GatewayServer {
    inner: Arc<Inner>,
    addrs: BTreeMap<u16, SocketAddr>,
    /// Tells the accept loops to stop and drain their connections (when dropped).
    stop: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("namespace", &self.namespace)
            .field("labels", &self.labels)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl GatewayServer {
    /// A gateway workload in `namespace` with these labels (e.g. `istio: ingressgateway`),
    /// following `mesh`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::{GatewayError, GatewayServer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let hello = r#"
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: hello-gateway, namespace: default}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 80, name: http, protocol: HTTP}
    /// #     hosts: ["*"]
    /// # ---
    /// # apiVersion: networking.istio.io/v1
    /// # kind: VirtualService
    /// # metadata: {name: hello, namespace: default}
    /// # spec:
    /// #   hosts: ["*"]
    /// #   gateways: [hello-gateway]
    /// #   http: [{directResponse: {status: 200, body: {string: hello}}}]
    /// # "#;
    /// # let mesh = Mesh::from_yaml(hello)?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// // Labels no Gateway selects: nothing to serve.
    /// let other = [("istio".to_string(), "egressgateway".to_string())].into();
    /// let err = GatewayServer::builder(mesh, "istio-system", other).start().await.unwrap_err();
    /// assert!(matches!(err, GatewayError::NoServers(_)));
    /// # Ok(()) }
    /// ```
    pub fn builder(mesh: Mesh, namespace: impl Into<String>, labels: Labels) -> GatewayBuilder {
        GatewayBuilder {
            mesh,
            namespace: namespace.into(),
            labels,
            credentials: Arc::new(DirCredentials::new("credentials")),
            listeners: BTreeMap::new(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            hello_timeout: Duration::from_secs(10),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            workload: None,
            metrics: None,
            workload_name: "istio-ingressgateway".into(),
            cluster_id: None,
            num_trusted_proxies: None,
            forward_client_cert_details: None,
        }
    }

    /// Where Gateway server port `port` is listening.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::net::TcpListener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let hello = r#"
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: hello-gateway, namespace: default}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 80, name: http, protocol: HTTP}
    /// #     hosts: ["*"]
    /// # ---
    /// # apiVersion: networking.istio.io/v1
    /// # kind: VirtualService
    /// # metadata: {name: hello, namespace: default}
    /// # spec:
    /// #   hosts: ["*"]
    /// #   gateways: [hello-gateway]
    /// #   http: [{directResponse: {status: 200, body: {string: hello}}}]
    /// # "#;
    /// # let mesh = Mesh::from_yaml(hello)?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .listener(80, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?;
    /// assert!(gateway.local_addr(80).unwrap().ip().is_loopback());
    /// assert_eq!(gateway.local_addr(443), None); // not a server port
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self, port: u16) -> Option<SocketAddr> {
        self.addrs.get(&port).copied()
    }

    /// The authorization layer the gateway applies (AuthorizationPolicies selecting its
    /// labels, RequestAuthentication, CUSTOM policies' external authorizers): e.g. to
    /// [`trust_jwks_roots`](AuthorizationLayer::trust_jwks_roots) of a private identity
    /// provider, or to see which policies are in force.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::MeshCa;
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::net::TcpListener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::from_yaml(r#"
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: web, namespace: istio-system}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: istio-system}
    /// spec:
    ///   selector: {matchLabels: {istio: ingressgateway}}
    ///   jwtRules: [{issuer: https://idp.corp.example, jwksUri: https://idp.corp.example/keys.json}]
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: require-jwt, namespace: istio-system}
    /// spec:
    ///   selector: {matchLabels: {istio: ingressgateway}}
    ///   rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]
    /// "#)?;
    /// let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .listener(80, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?;
    /// let authz = gateway.authorization();
    /// assert_eq!(authz.policies(), ["istio-system/require-jwt"]);
    /// let corp_ca = MeshCa::self_signed("corp.example")?; // the IdP's private CA
    /// authz.trust_jwks_roots(corp_ca.trust_bundle().clone());
    /// # Ok(()) }
    /// ```
    pub fn authorization(&self) -> &AuthorizationLayer {
        &self.inner.authz
    }

    /// The metrics the gateway records.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::net::TcpListener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let hello = r#"
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: hello-gateway, namespace: default}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 80, name: http, protocol: HTTP}
    /// #     hosts: ["*"]
    /// # ---
    /// # apiVersion: networking.istio.io/v1
    /// # kind: VirtualService
    /// # metadata: {name: hello, namespace: default}
    /// # spec:
    /// #   hosts: ["*"]
    /// #   gateways: [hello-gateway]
    /// #   http: [{directResponse: {status: 200, body: {string: hello}}}]
    /// # "#;
    /// # let mesh = Mesh::from_yaml(hello)?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .listener(80, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?;
    /// assert_eq!(gateway.metrics().render(), "# EOF\n"); // no request yet
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> &Arc<IstioMetrics> {
        &self.inner.metrics
    }

    /// Re-reads the credentials on the next connection (after a certificate changed); the
    /// upstream connections are forgotten too (the next request opens new ones, with the
    /// DestinationRules' `credentialName` certificates read again).
    ///
    /// # Examples
    ///
    /// After a certificate is renewed in the credential directory:
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Identity, MeshCa};
    /// use mesh_tower::gateway::GatewayServer;
    /// use tokio::net::TcpListener;
    /// # async fn served(addr: std::net::SocketAddr, ca: &MeshCa) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    /// #     let config = mesh_tls::rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
    /// #         .with_safe_default_protocol_versions()?
    /// #         .with_root_certificates(ca.trust_bundle().root_store().clone())
    /// #         .with_no_client_auth();
    /// #     let tcp = tokio::net::TcpStream::connect(addr).await?;
    /// #     let connector = mesh_tls::tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    /// #     let tls = connector.connect("httpbin.example.com".try_into()?, tcp).await?;
    /// #     Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("example.com")?;
    /// # let cert = ca.issue(&Identity::new("example.com", "default", "httpbin")?, Duration::from_secs(3600), &["httpbin.example.com"])?;
    /// # let mesh = Mesh::from_yaml("
    /// # apiVersion: networking.istio.io/v1
    /// # kind: Gateway
    /// # metadata: {name: mygateway, namespace: istio-system}
    /// # spec:
    /// #   selector: {istio: ingressgateway}
    /// #   servers:
    /// #   - port: {number: 443, name: https, protocol: HTTPS}
    /// #     hosts: [httpbin.example.com]
    /// #     tls: {mode: SIMPLE, credentialName: httpbin-credential}
    /// # ")?;
    /// # let labels: mesh_core::model::Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let dir = tempfile::tempdir()?;
    /// let secret = dir.path().join("httpbin-credential");
    /// std::fs::create_dir(&secret)?;
    /// std::fs::write(secret.join("tls.crt"), cert.chain_pem())?;
    /// std::fs::write(secret.join("tls.key"), cert.key_pem())?;
    /// let gateway = GatewayServer::builder(mesh, "istio-system", labels)
    ///     .credential_dir(dir.path())
    ///     .listener(443, TcpListener::bind("127.0.0.1:0").await?)
    ///     .start()
    ///     .await?;
    /// let addr = gateway.local_addr(443).unwrap();
    /// assert_eq!(served(addr, &ca).await?, cert.chain_der()?[0].as_ref());
    ///
    /// let renewed = ca.issue(&Identity::new("example.com", "default", "httpbin")?, Duration::from_secs(7200), &["httpbin.example.com"])?;
    /// std::fs::write(secret.join("tls.crt"), renewed.chain_pem())?;
    /// std::fs::write(secret.join("tls.key"), renewed.key_pem())?;
    /// gateway.reload_credentials(); // the next connection reads the new files
    /// assert_eq!(served(addr, &ca).await?, renewed.chain_der()?[0].as_ref());
    /// # Ok(()) }
    /// ```
    pub fn reload_credentials(&self) {
        self.inner.cache.clear();
        crate::outbound::forget_destinations(&self.inner.client);
    }
}

/// Stops the listeners and drains the open connections for up to the drain timeout, then
/// closes those left (the accept loops own the connections).
impl Drop for GatewayServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Completes once the gateway is dropped (`true` sent, or the sender gone).
async fn until_stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// How long connections open when a gateway is dropped have to finish: Istio's
/// `terminationDrainDuration` default.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Tls {
        terminate: bool,
        http: bool,
    },
    /// Opaque TCP (`TCP`, and the protocols Istio proxies as TCP: `MONGO`, `MYSQL`,
    /// `REDIS`), routed by the `tcp` routes.
    Tcp,
    Unsupported,
}

fn kind(s: &ServerRef<'_>) -> Kind {
    let p = s.server.port.protocol.to_ascii_uppercase();
    match p.as_str() {
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" => Kind::Http,
        "HTTPS" | "TLS" => {
            let mode = s.server.tls.as_ref().map(|t| t.mode).unwrap_or_default();
            Kind::Tls {
                terminate: !matches!(
                    mode,
                    ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
                ),
                http: p == "HTTPS",
            }
        }
        "TCP" | "MONGO" | "MYSQL" | "REDIS" => Kind::Tcp,
        _ => Kind::Unsupported,
    }
}

/// The ALPN protocols of Istio's mutual TLS (pilot `allIstioMtlsALPNs`): an
/// AUTO_PASSTHROUGH filter chain matches only a ClientHello offering one of them.
const ISTIO_MTLS_ALPNS: [&[u8]; 5] = [
    b"istio",
    b"istio-peer-exchange",
    b"istio-http/1.0",
    b"istio-http/1.1",
    b"istio-h2",
];

/// Whether a ClientHello's ALPN list offers one of [`ISTIO_MTLS_ALPNS`] (Envoy's
/// `application_protocols` filter chain match: any one offered protocol in the set).
pub(crate) fn offers_istio_mtls_alpn(alpn: &[Vec<u8>]) -> bool {
    alpn.iter()
        .any(|p| ISTIO_MTLS_ALPNS.contains(&p.as_slice()))
}

/// Accepts the connections of server port `port` until the gateway is dropped (`stop`),
/// then lets them finish for up to `drain` and closes those left. Each connection is a task
/// of this loop's, so none outlives the gateway by more than `drain`.
async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, port: u16) {
    let http_route: Arc<str> = mesh_core::gateway::http_route_name(port.into()).into();
    let mut conns = tokio::task::JoinSet::new();
    let (stop, drain) = (inner.stopped.clone(), inner.drain_timeout);
    let stopping = || until_stopped(stop.clone());
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    tracing::error!(port, error = %e, "gateway listener failed");
                    break;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            () = stopping() => break,
        };
        let inner = Arc::clone(&inner);
        let http_route = Arc::clone(&http_route);
        conns.spawn(async move {
            if let Err(e) = connection(inner, tcp, remote, port, http_route).await {
                tracing::debug!(port, %remote, error = %e, "gateway connection closed");
            }
        });
    }
    drop(listener);
    // (a listener that failed: its open connections go on until the gateway is dropped)
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = stopping() => break,
        }
    }
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::debug!(
            port,
            "gateway drain timeout: closing the remaining connections"
        );
        conns.shutdown().await;
    }
}

fn on_port(snap: &Snapshot, labels: &Labels, port: u16) -> Vec<(Kind, String, usize)> {
    snap.gateway_servers(labels)
        .into_iter()
        .filter(|s| s.server.port.number == u32::from(port))
        .map(|s| (kind(&s), s.gateway.to_owned(), s.index))
        .collect()
}

/// Per-connection context for HTTP requests.
#[derive(Clone, Debug)]
struct HttpCtx {
    port: u16,
    https: bool,
    /// The route configuration requests are routed by (pilot `gatewayRDSRouteName`):
    /// `http.<port>`, the plain HTTP servers on the port of every Gateway selecting this
    /// workload, merged; or `https.<port>.<portName>.<gateway>.<ns>`, only the server the
    /// connection's SNI chose.
    route: Arc<str>,
    conn: ConnectionInfo,
    /// The `x-forwarded-client-cert` of this connection's client certificate (MUTUAL,
    /// OPTIONAL_MUTUAL with a certificate); every request's own XFCC is replaced by it, or
    /// removed without one.
    xfcc: Option<HeaderValue>,
    /// The certificates' names, for header operators (`%DOWNSTREAM_PEER_URI_SAN%`, ...).
    tls_names: Option<Arc<crate::outbound::DownstreamTlsNames>>,
    /// The port's plain HTTP servers are of protocol `GRPC-WEB`: istiod adds Envoy's
    /// `grpc_web` filter to that listener (see `crate::grpc_web`).
    grpc_web: bool,
}

async fn connection(
    inner: Arc<Inner>,
    tcp: TcpStream,
    remote: SocketAddr,
    port: u16,
    http_route: Arc<str>,
) -> io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().ok();
    let snap = inner.mesh.snapshot();
    let servers = on_port(&snap, &inner.labels, port);
    let has_tls = servers.iter().any(|s| matches!(s.0, Kind::Tls { .. }));
    let has_http = servers.iter().any(|s| s.0 == Kind::Http);
    let conn = ConnectionInfo::new(None, port).with_addrs(Some(remote), local);
    // the listener's protocol is its first plain HTTP server's (istiod's merged server
    // ports keep the first server's protocol)
    let grpc_web = snap
        .gateway_servers(&inner.labels)
        .into_iter()
        .filter(|s| s.server.port.number == u32::from(port))
        .find(|s| kind(s) == Kind::Http)
        .is_some_and(|s| s.server.port.protocol.eq_ignore_ascii_case("GRPC-WEB"));
    let plain_ctx = HttpCtx {
        port,
        https: false,
        route: http_route,
        conn: conn.clone(),
        xfcc: None,
        tls_names: None,
        grpc_web,
    };
    if !has_tls {
        if has_http {
            return serve_http(inner, tcp, plain_ctx).await;
        }
        if servers.iter().any(|s| s.0 == Kind::Tcp) {
            // a TCP server: the `tcp` routes bound to the gateway, by port (Envoy's TCP
            // proxy; the RBAC network filter first)
            let gateway = servers
                .iter()
                .find(|s| s.0 == Kind::Tcp)
                .map(|s| s.1.clone())
                .unwrap_or_default();
            authorize_connection(&inner, &conn).await?;
            let mut attrs = L4Attrs::new(&inner.namespace, port);
            attrs.gateway = Some(&gateway);
            let d = snap.route_tcp(&attrs);
            let upstream = l4_connect_to(&inner, &snap, &gateway, &conn, &d, None).await?;
            return splice(tcp, upstream).await;
        }
        return Err(io::Error::other("no Gateway server on this port any more"));
    }
    let hello = match sni::peek_client_hello(&tcp, inner.hello_timeout).await? {
        sni::Peeked::Tls(h) => h,
        sni::Peeked::NotTls if has_http => return serve_http(inner, tcp, plain_ctx).await,
        sni::Peeked::NotTls | sni::Peeked::Incomplete => {
            return Err(io::Error::other("not a TLS ClientHello on a TLS port"))
        }
    };
    let istio_alpn = offers_istio_mtls_alpn(&hello.alpn);
    let hello_alpn = hello.alpn;
    let sni = hello.sni;
    // the filter chain the ClientHello reaches among the port's HTTPS and TLS servers:
    // a terminating server's hosts, a PASSTHROUGH server's VirtualService `sniHosts`, an
    // AUTO_PASSTHROUGH server's `outbound_` names, the most specific first
    let all = snap.gateway_servers(&inner.labels);
    let mut attrs = L4Attrs::new(&inner.namespace, port);
    attrs.sni = sni.as_deref();
    let Some(chain) = snap.routes().gateway_tls_chain(all.iter().copied(), &attrs) else {
        // no filter chain matches this SNI: Envoy closes the connection
        return Err(io::Error::other(format!(
            "no Gateway server for SNI {:?}",
            sni.as_deref().unwrap_or("")
        )));
    };
    let server = chain.server;
    let Kind::Tls { terminate, http } = kind(&server) else {
        return Err(io::Error::other("unreachable: not a TLS server"));
    };
    let gateway: Arc<str> = server.gateway.into();
    let index = server.index;
    let route: Arc<str> = mesh_core::gateway::https_route_name(
        server.server.port.number,
        &server.server.port.name,
        &gateway,
    )
    .into();
    let settings = server.server.tls.clone().unwrap_or_default();
    if !terminate {
        if settings.mode == ServerTlsMode::AutoPassthrough {
            // the chain's server name matched: without an Istio mTLS ALPN its
            // `application_protocols` do not, and Envoy tries no less specific chain
            if !istio_alpn {
                return Err(io::Error::other(format!(
                    "SNI {:?}: AUTO_PASSTHROUGH needs one of Istio's mTLS ALPNs",
                    sni.as_deref().unwrap_or("")
                )));
            }
            let conn = conn.with_tls(true, sni.as_deref());
            authorize_connection(&inner, &conn).await?;
            let upstream = sni_dnat_connect(&inner, &snap, &conn, sni.as_deref()).await?;
            return splice(tcp, upstream).await;
        }
        if settings.mode != ServerTlsMode::Passthrough {
            return Err(io::Error::other(format!(
                "TLS mode {:?} is not supported",
                settings.mode
            )));
        }
        let conn = conn.with_tls(true, sni.as_deref());
        authorize_connection(&inner, &conn).await?;
        let d = chain
            .route
            .ok_or_else(|| io::Error::other("PASSTHROUGH chain without a route"))?;
        let upstream = l4_connect_to(&inner, &snap, &gateway, &conn, &d, sni.as_deref()).await?;
        return splice(tcp, upstream).await;
    }
    let term = inner
        .cache
        .get(snap.generation(), &gateway, index, || {
            tls::build_config(
                &settings,
                &*inner.credentials,
                inner.workload.as_deref(),
                http,
                &snap.options().tls_defaults,
            )
        })
        .map_err(|e| {
            tracing::warn!(gateway = %gateway, index, error = %e, "cannot terminate TLS");
            io::Error::other(e)
        })?;
    let accept = TlsAcceptor::from(term.config_for(&hello_alpn)).accept(tcp);
    let stream = tokio::time::timeout(inner.hello_timeout, accept)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    // MUTUAL, OPTIONAL_MUTUAL: the client's verified certificate (rustls keeps none it did
    // not verify). Its SPIFFE identity is the connection's `source.principal`, as Envoy's
    // RBAC `authenticated` reads the peer certificate's URI SAN on any TLS listener.
    let client_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .filter(|c| !c.is_empty());
    let peer = client_cert.and_then(|c| PeerIdentity::from_certs(c).ok());
    let xfcc = client_cert
        .filter(|_| http)
        .and_then(|c| xfcc::header_value(&term.by, c[0].as_ref(), true));
    let conn = ConnectionInfo::new(peer, port)
        .with_addrs(Some(remote), local)
        .with_tls(true, sni.as_deref());
    if http {
        let join = |names: &[String]| (!names.is_empty()).then(|| names.join(",").into());
        let tls_names = crate::outbound::DownstreamTlsNames {
            peer_uri_san: client_cert.and_then(|c| join(&xfcc::uri_sans(c[0].as_ref()))),
            local_uri_san: join(&term.by),
            peer_subject: xfcc.as_ref().and_then(xfcc_subject),
        };
        let ctx = HttpCtx {
            port,
            https: true,
            route,
            conn,
            xfcc,
            tls_names: Some(Arc::new(tls_names)),
            grpc_web: false,
        };
        return serve_http(inner, stream, ctx).await;
    }
    authorize_connection(&inner, &conn).await?;
    // one filter chain per server: the `tcp` route of the first VirtualService bound to it
    // whose hosts overlap the server's, whatever the SNI
    let attrs = L4Attrs {
        gateway: Some(&gateway),
        ..attrs
    };
    let d = snap.routes().gateway_server_tcp_route(&attrs, index);
    let upstream = l4_connect_to(&inner, &snap, &gateway, &conn, &d, sni.as_deref()).await?;
    splice(stream, upstream).await
}

/// The `Subject="..."` of an XFCC value this gateway made: the client certificate's
/// subject as Envoy prints it for `%DOWNSTREAM_PEER_SUBJECT%` (RFC 2253, `"` and `\`
/// escaped with `\`); `None` when empty.
fn xfcc_subject(v: &HeaderValue) -> Option<Box<str>> {
    let v = v.to_str().ok()?;
    let rest = &v[v.find(";Subject=\"")? + ";Subject=\"".len()..];
    let mut escaped = false;
    let end = rest.char_indices().find_map(|(i, c)| {
        let end = c == '"' && !escaped;
        escaped = c == '\\' && !escaped;
        end.then_some(i)
    })?;
    (end > 0).then(|| rest[..end].into())
}

/// AuthorizationPolicies selecting the gateway, for a connection that is not HTTP: a
/// denied connection is closed (Envoy's RBAC network filter; a CUSTOM policy's gRPC
/// authorizer is asked first, Envoy's network ext_authz filter).
async fn authorize_connection(inner: &Inner, conn: &ConnectionInfo) -> io::Result<()> {
    let d = inner.authz.authorize_connection(conn).await;
    if d.allowed {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("RBAC: connection denied ({})", d.reason),
        ))
    }
}

/// Connects to where a TCP, PASSTHROUGH (`tls` route) or terminated TLS (`tcp` route)
/// connection's route `d` sends it, through the gateway's mesh client: the destination's
/// load balancer, outlier detection, `maxConnections` and TLS origination (auto mTLS to
/// mesh workloads, as Istio's gateway wraps even a passthrough connection in
/// ISTIO_MUTUAL), counted in the gateway's `istio_tcp_*` metrics. No route: closed.
async fn l4_connect_to(
    inner: &Inner,
    snap: &Snapshot,
    gateway: &str,
    conn: &ConnectionInfo,
    d: &mesh_core::route::L4Decision<'_>,
    sni: Option<&str>,
) -> io::Result<crate::tcp::MeshTcpStream> {
    if d.virtual_service.is_none() {
        return Err(io::Error::other(format!(
            "no VirtualService route for SNI {:?} on gateway {gateway}",
            sni.unwrap_or("")
        )));
    }
    let dest = d
        .pick(rand::random())
        .ok_or_else(|| io::Error::other("route without destinations"))?;
    let to = (sni.unwrap_or(""), conn.port());
    // weighted destinations: one TCP proxy, its timers from the first one's rule
    let first = (d.destinations.len() > 1)
        .then(|| d.destinations.first().map(|w| &*w.host))
        .flatten();
    connect_upstream(inner, snap, conn, dest, to, (sni, first), false).await
}

/// Connects a downstream connection's upstream side to `dest` through the gateway's mesh
/// client, as asked for `(host, port)` (logged with the downstream's addresses and SNI);
/// `raw`: no TLS of the gateway's (AUTO_PASSTHROUGH).
async fn connect_upstream(
    inner: &Inner,
    snap: &Snapshot,
    conn: &ConnectionInfo,
    dest: &WeightedDestination,
    (host, port): (&str, u16),
    (sni, first_host): (Option<&str>, Option<&str>),
    raw: bool,
) -> io::Result<crate::tcp::MeshTcpStream> {
    let target = format!("{host}:{port}");
    let to = crate::outbound::Routed {
        target: &target,
        host,
        port,
        routed: true,
        sidecar: false,
        log_downstream: Some((conn.addrs(), sni)),
        raw,
        passthrough_chain: false,
        first_host,
    };
    inner
        .client
        .connect_routed(snap, dest, to)
        .await
        .map_err(io::Error::other)
}

/// An `AUTO_PASSTHROUGH` server's connection: the SNI names the destination as Istio's
/// mTLS clients write it, `outbound_.<port>_.<subset>_.<host>`, and the connection goes
/// to an endpoint of that service port and subset with no VirtualService, its bytes (the
/// client's own mutual TLS, which the workload terminates) untouched: istiod's SNI-DNAT
/// listener and clusters (multi-network east-west gateways). Another SNI, or a service the
/// gateway does not know, is closed.
async fn sni_dnat_connect(
    inner: &Inner,
    snap: &Snapshot,
    conn: &ConnectionInfo,
    sni: Option<&str>,
) -> io::Result<crate::tcp::MeshTcpStream> {
    let sni = sni.unwrap_or("");
    let (port, subset, host) = parse_sni_dnat(sni).ok_or_else(|| {
        io::Error::other(format!(
            "SNI {sni:?} does not name a destination (outbound_.<port>_.<subset>_.<host>)"
        ))
    })?;
    // istiod builds SNI-DNAT clusters for the mesh's own services only (no MESH_EXTERNAL
    // ServiceEntry, and by their exact hostnames: a wildcard ServiceEntry host names none)
    let exposed = snap
        .registry()
        .service(host, &inner.namespace)
        .filter(|s| *s.hostname == *host && s.location == ServiceLocation::MeshInternal);
    if exposed.is_none() {
        return Err(io::Error::other(format!(
            "SNI {sni:?}: no mesh service {host} for this gateway"
        )));
    }
    let dest = WeightedDestination {
        host: host.into(),
        subset: subset.map(Into::into),
        port: Some(port),
        weight: 100,
        headers: None,
    };
    connect_upstream(
        inner,
        snap,
        conn,
        &dest,
        (host, port),
        (Some(sni), None),
        true,
    )
    .await
}

/// Splices the two sides until both have closed (a half-close is passed on).
async fn splice<S>(mut downstream: S, mut upstream: crate::tcp::MeshTcpStream) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await?;
    Ok(())
}

async fn serve_http<IO>(inner: Arc<Inner>, io: IO, ctx: HttpCtx) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let access_log = inner.access_log.clone();
    let metrics = inner.metrics_layer.clone();
    let stop = inner.stopped.clone();
    let idle_timeout = inner.mesh.options().idle_timeout;
    // the gateway reports as the source (itself): the client whose certificate it verified
    // is not the peer of its metrics, whose destination comes from the routed response
    let conn = ConnectionInfoLayer::new(ctx.conn.clone())
        .with_metrics_context(crate::metrics::MetricsContext::default());
    let svc = tower::service_fn(move |req: Request<UpstreamBody>| {
        let inner = Arc::clone(&inner);
        let ctx = ctx.clone();
        async move {
            let mut resp = handle(&inner, &ctx, req).await;
            // Istio's gateway connection manager: `server_name: istio-envoy` with Envoy's
            // default OVERWRITE transformation, on every response (local replies too);
            // MeshConfig `proxyHeaders.server` names another or none (PASS_THROUGH)
            if let Some(v) = &inner.server_header {
                resp.headers_mut().insert(SERVER, v.clone());
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let svc = tower::ServiceBuilder::new()
        .layer(conn)
        .map_request(|r: Request<Incoming>| r.map(crate::observe::ReplayBody::new))
        .layer(access_log)
        .layer(metrics)
        .service(svc);
    // with upgrades: a WebSocket upgrade the upstream accepted is spliced (see `handle`)
    let builder = crate::envoy::downstream_server();
    // Envoy's connection manager `idle_timeout`: closed after that long without an active
    // request
    let activity = crate::idle::Activity::new();
    let conn = builder.serve_connection_with_upgrades(
        TokioIo::new(io),
        crate::idle::Tracked::new(crate::in_place::InPlace::new(svc), Arc::clone(&activity)),
    );
    tokio::pin!(conn);
    let stopped = until_stopped(stop);
    tokio::pin!(stopped);
    // the gateway dropped: HTTP/1.1 closes after the current response, HTTP/2 sends GOAWAY;
    // the same when the connection has been idle too long
    tokio::select! {
        r = conn.as_mut() => r,
        () = &mut stopped => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = activity.idle_for(idle_timeout) => {
            tracing::debug!(?idle_timeout, "gateway: idle timeout, closing the connection");
            crate::idle::end_idle(&activity, conn, |c| c.graceful_shutdown(), stopped).await
        }
    }
    .map_err(io::Error::other)
}

/// Splices the downstream and upstream sides of an upgraded (WebSocket) stream once hyper
/// has handed both over, until either side closes: a side's end of stream is passed on as
/// the other's (half-close, as `copy_bidirectional` does); when a side fails (a reset, a
/// TLS peer closing without `close_notify`), both are closed, cleanly where they still
/// can be (TLS `close_notify`), before being dropped.
///
/// The gateway dropped (`stop`), the stream has `drain` to end, then both are closed: an
/// upgraded stream is no longer its connection's (hyper has handed it over), so the
/// connection's own drain does not reach it.
fn splice_upgraded(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    (stop, drain): (tokio::sync::watch::Receiver<bool>, Duration),
) {
    let splice = async move {
        let (down, up) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "gateway: upgrade not completed");
                return;
            }
        };
        let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(error = %e, "gateway: upgraded stream failed");
            let close = async {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut down).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut up).await;
            };
            let _ = tokio::time::timeout(UPGRADED_CLOSE_TIMEOUT, close).await;
        }
    };
    tokio::spawn(async move {
        let stopped = async {
            until_stopped(stop).await;
            tokio::time::sleep(drain).await;
        };
        tokio::select! {
            () = splice => {}
            () = stopped => {
                tracing::debug!("gateway dropped: an upgraded stream past the drain timeout closed");
            }
        }
    });
}

/// How long closing a failed upgraded stream's connections may take.
const UPGRADED_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

fn full(b: impl Into<Bytes>) -> GatewayBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed_unsync()
}

fn local(reply: &LocalReply, req_headers: &http::HeaderMap) -> Response<GatewayBody> {
    reply.to_response_with(crate::envoy::is_grpc(req_headers), full)
}

async fn handle(
    inner: &Inner,
    ctx: &HttpCtx,
    mut req: Request<UpstreamBody>,
) -> Response<GatewayBody> {
    // held across the forwarding below (the gateway's name is borrowed from it): an `Arc`,
    // not an arc-swap guard
    let snap = inner.mesh.snapshot();
    // The path normalized in the request (the snapshot's MeshConfig pathNormalization,
    // BASE by default), before routing, redirects and authorization, as Envoy's connection
    // manager does
    // HTTP/1.0 and 0.9: Istio leaves Envoy's `accept_http_10` off at gateways (gateway.go
    // `buildGatewayConnectionManager` sets it only with PILOT_HTTP10 or the proxy's HTTP10
    // metadata, here MeshConfig's `ISTIO_META_HTTP10`), so its HTTP/1 codec answers 426 and
    // closes the connection, before any filter or route
    if req.version() < http::Version::HTTP_11 && !snap.options().accept_http_10 {
        let mut r = local(&LocalReply::UpgradeRequired, req.headers());
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    if let Some(refused) = crate::inbound::hcm::missing_host(&req, full) {
        return refused;
    }
    let mode = snap.options().path_normalization;
    if let Err(refused) = crate::envoy::sanitize_request::<_, Bytes>(&mut req, mode) {
        return refused.map(full);
    }
    crate::envoy::absolute_form(&mut req, false);
    // forward_client_cert_details (SANITIZE_SET at Istio's gateways unless
    // gatewayTopology says otherwise), by the connection manager before any filter
    xfcc::mutate(
        req.headers_mut(),
        inner.forward_client_cert_details,
        ctx.xfcc.as_ref(),
    );
    // x-forwarded-proto as Envoy's connection manager writes it (mutateRequestHeaders, with
    // `use_remote_address` on every gateway): a client's value is kept only when trusted
    // proxies are in front (`xff_num_trusted_hops > 0`, numTrustedProxies), else it is the
    // connection's. The httpsRedirect (`require_tls`) and the `:scheme` that VirtualService
    // `scheme` matches read follow it.
    let (scheme, proto_is_https) =
        forwarded_proto(req.headers_mut(), ctx.https, inner.num_trusted_proxies);
    // every gateway request is an "edge" request for Envoy (`use_remote_address`, and no
    // address is internal without an `internal_address_config`, which istiod sets only
    // with ENABLE_HCM_INTERNAL_NETWORKS): Envoy's internal headers a client sent are
    // dropped and the trusted client address is written
    let client = crate::authz::XffMode::Gateway(inner.num_trusted_proxies)
        .client(req.headers(), ctx.conn.remote_addr().map(|a| a.ip()));
    clean_edge_request(
        req.headers_mut(),
        client,
        snap.options().proxy_headers.request_id,
    );
    // the access log (outside) logs the id the request goes on with, as Envoy's, whose
    // connection manager sets it before any filter
    if let (Some(late), Some(id)) = (
        req.extensions().get::<crate::accesslog::LateFacts>(),
        req.headers().get(crate::trace::X_REQUEST_ID),
    ) {
        late.set_request_id(id);
    }
    // HTTP/1.1 upgrades as Istio's Envoy takes them, before any filter: websocket goes on,
    // h2c is dropped, any other protocol refused
    let websocket = match crate::outbound::upgrade_of(req.headers()) {
        None => false,
        Some(UpgradeRequest::WebSocket) => true,
        Some(UpgradeRequest::H2c) => {
            crate::outbound::strip_h2c_upgrade(req.headers_mut());
            false
        }
        Some(UpgradeRequest::Other) => return crate::outbound::upgrade_failed(),
    };
    // What Envoy's connection manager does to a request before any filter (authorization
    // sees the result): hop-by-hop headers go (but a WebSocket upgrade's, normalized to
    // `connection: upgrade`).
    crate::envoy::remove_hop_by_hop(req.headers_mut(), websocket);
    if websocket {
        req.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // The downstream's address is added to `x-forwarded-for` as Envoy's `appendXff` does
    // before any filter (one value: the client's lines joined with `,`, then the peer);
    // authorization takes the client address trusted before (`TrustedClient`). The access
    // log reads the list as the connection manager left it, and the stream's remote
    // address as it inferred it from a trusted hop.
    let forwarded_for = ctx.conn.remote_addr().and_then(|r| {
        let mut xff: Vec<u8> = Vec::new();
        for v in req.headers().get_all("x-forwarded-for") {
            if !v.is_empty() {
                if !xff.is_empty() {
                    xff.push(b',');
                }
                xff.extend_from_slice(v.as_bytes());
            }
        }
        if !xff.is_empty() {
            xff.push(b',');
        }
        xff.extend_from_slice(r.ip().to_string().as_bytes());
        let v = HeaderValue::from_bytes(&xff).ok()?;
        if let Some(late) = req.extensions().get::<crate::accesslog::LateFacts>() {
            late.set_forwarded_for(&v);
            if let Some(ip) = client.filter(|ip| *ip != r.ip()) {
                late.set_remote(std::net::SocketAddr::new(ip, 0));
            }
        }
        Some(v)
    });
    if let Some(ip) = client {
        req.extensions_mut().insert(crate::authz::TrustedClient(ip));
    }
    if let Some(v) = forwarded_for {
        req.headers_mut().insert("x-forwarded-for", v);
    }
    // AuthorizationPolicies selecting the gateway workload, before routing (Envoy's
    // jwt_authn, ext_authz and RBAC filters run before the router, which answers the
    // httpsRedirect and "no route" local replies): ConnectionInfoLayer put the connection
    // in the extensions; a CUSTOM policy's external authorizer first (ext_authz)
    if let Some(wait) = inner.authz.jwks_wait() {
        wait.await;
    }
    let refused = match inner.authz.authorize::<_, Bytes>(&mut req) {
        Err(refused) => Err(refused),
        Ok(None) => Ok(None),
        Ok(Some(check)) => check.finish::<_, Bytes>(&mut req).await.map(Some),
    };
    let add_downstream = match refused {
        Ok(headers) => headers,
        Err(mut refused) => {
            // the route (and its cluster) was resolved before the filters ran: istio_stats
            // names the routed service as the destination of the 401/403
            if let Some(c) = denied_context(inner, ctx, &snap, &req) {
                refused.extensions_mut().insert(c);
            }
            return refused.map(full);
        }
    };
    let authority = crate::envoy::authority(&req).to_owned();
    // the router's own answers: no virtual host for the Host in the connection's route
    // configuration (404), or one that requires TLS (httpsRedirect: Envoy's `require_tls`)
    let vhost = {
        let (path, query) = req
            .uri()
            .path_and_query()
            .map_or(("/", None), |pq| (pq.path(), pq.query()));
        let attrs = HttpRequestAttrs {
            client_namespace: &inner.namespace,
            source_labels: &inner.labels,
            gateway: Some(&ctx.route),
            authority: &authority,
            port: ctx.port,
            method: req.method().as_str(),
            path,
            query,
            scheme,
            headers: req.headers(),
            request_auth: None,
        };
        snap.routes().gateway_requires_tls(&attrs)
    };
    let answer = match vhost {
        None => Some(local(&LocalReply::NoRoute, req.headers())),
        // Envoy (config_impl.cc): `SslRequirements::All && forwarded_proto != "https"`
        Some(true) if !proto_is_https => {
            // Envoy's `require_tls` redirect is a direct response entry of the route table
            let mut r = https_redirect(&req, &authority);
            r.extensions_mut().insert(crate::envoy::ResponseCodeDetails(
                crate::envoy::DIRECT_RESPONSE.to_owned(),
            ));
            Some(r)
        }
        Some(_) => None,
    };
    if let Some(mut r) = answer {
        // no cluster: istio_stats names the destination service by the Host header
        if let Some(c) = crate::outbound::host_context(&authority) {
            r.extensions_mut().insert(c);
        }
        // headersToDownstreamOnAllow: on every response the ext_authz filter encodes
        for (k, v) in add_downstream.iter().flatten() {
            r.headers_mut().append(k.clone(), v.clone());
        }
        return r;
    }
    // the downstream half of a WebSocket upgrade, completed only if the upstream accepts
    let downstream_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let headers = req.headers_mut();
    if !headers.contains_key(HOST)
        && let Ok(v) = HeaderValue::from_str(&authority)
    {
        headers.insert(HOST, v);
    }
    let via = crate::outbound::GatewayRoute {
        gateway: &ctx.route,
        port: ctx.port,
        scheme,
        conn: Some(&ctx.conn),
        client_ip: client,
        tls_names: ctx.tls_names.as_deref(),
    };
    // gRPC-Web on a GRPC-WEB server, after authorization and before the router
    let (req, grpc_web) = if ctx.grpc_web {
        crate::grpc_web::request(req)
    } else {
        (req.map(http_body_util::Either::Left), None)
    };
    let mut resp = crate::outbound::forward_from_gateway(&inner.client, req, via).await;
    // the upstream's hop-by-hop headers stop here (Envoy's `mutateResponseHeaders`): its
    // `connection: close` ends its own connection, not the client's (a 101's are the
    // upgrade's)
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        crate::envoy::remove_hop_by_hop(resp.headers_mut(), false);
    }
    if let Some(answer) = grpc_web {
        resp = crate::grpc_web::response(resp, answer).map(BodyExt::boxed);
    }
    // headersToDownstreamOnAllow
    for (k, v) in add_downstream.iter().flatten() {
        resp.headers_mut().append(k.clone(), v.clone());
    }
    if let Some(downstream) = downstream_upgrade {
        // a 101 from upstream: answer 101 and splice; anything else is a normal response
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            splice_upgraded(
                downstream,
                hyper::upgrade::on(&mut resp),
                (inner.stopped.clone(), inner.drain_timeout),
            );
        }
    }
    resp.map(|b| b.boxed_unsync())
}

/// The metrics context of a request the gateway's own authorization refused: the service
/// its route leads to.
fn denied_context<B>(
    inner: &Inner,
    ctx: &HttpCtx,
    snap: &Snapshot,
    req: &Request<B>,
) -> Option<crate::metrics::MetricsContext> {
    let authority = crate::envoy::authority(req);
    let (path, query) = req
        .uri()
        .path_and_query()
        .map_or(("/", None), |pq| (pq.path(), pq.query()));
    let attrs = HttpRequestAttrs {
        client_namespace: &inner.namespace,
        source_labels: &inner.labels,
        gateway: Some(&ctx.route),
        authority,
        port: ctx.port,
        method: req.method().as_str(),
        path,
        query,
        scheme: scheme_of(
            req.headers()
                .get(X_FORWARDED_PROTO)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            ctx.https,
        ),
        headers: req.headers(),
        request_auth: req.extensions().get::<mesh_core::authz::RequestAuth>(),
    };
    crate::outbound::routed_context(snap, &inner.namespace, &attrs)
}

/// The request headers Envoy's connection manager removes from an edge request
/// besides [`crate::envoy::CONTROL_HEADERS`] (`conn_manager_utility.cc`
/// `cleanInternalHeaders` for an edge request), so that a client outside the mesh cannot
/// steer retries, timeouts, tracing or stats.
const ENVOY_INTERNAL_HEADERS: [&str; 3] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
];

/// `x-envoy-external-address`.
const X_ENVOY_EXTERNAL_ADDRESS: HeaderName = HeaderName::from_static("x-envoy-external-address");

/// What Envoy's connection manager does to an edge request's headers (`mutateRequestHeaders`
/// with `use_remote_address`): [`ENVOY_INTERNAL_HEADERS`] are removed and
/// `x-envoy-external-address` is set to the trusted client address (`client`: the peer, or
/// with `numTrustedProxies` the address taken from `X-Forwarded-For`), replacing a
/// client's. With `new_request_id` (MeshConfig `proxyHeaders.requestId` not disabled: the
/// connection manager's `generate_request_id`), a client's `x-request-id` is replaced by a
/// new one: istiod leaves `preserve_external_request_id` off, so Envoy forces a new id on
/// an edge request.
fn clean_edge_request(headers: &mut http::HeaderMap, client: Option<IpAddr>, new_request_id: bool) {
    crate::envoy::remove_envoy_headers(
        headers,
        &[&crate::envoy::CONTROL_HEADERS, &ENVOY_INTERNAL_HEADERS],
    );
    headers.remove(X_ENVOY_EXTERNAL_ADDRESS);
    if new_request_id {
        headers.insert(
            crate::trace::X_REQUEST_ID,
            crate::trace::new_request_id(&mut rand::rng()),
        );
    }
    if let Some(ip) = client {
        // (the formatted address becomes the value's buffer: one allocation)
        if let Ok(v) = HeaderValue::try_from(ip.to_string()) {
            headers.insert(X_ENVOY_EXTERNAL_ADDRESS, v);
        }
    }
}

/// `x-forwarded-proto`.
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Sets a request's `x-forwarded-proto` as Envoy's connection manager does with
/// `use_remote_address` (`conn_manager_utility.cc` `mutateRequestHeaders`: "If the prior hop
/// is not a trusted proxy, overwrite any x-forwarded-proto value it set as untrusted"): the
/// client's value stays when `trusted_hops > 0` and it sent one, else the connection's
/// (`https` over TLS). Returns the request's scheme as it now follows from the header
/// ([`scheme_of`]), and whether the header is exactly `https` (Envoy's `require_tls`
/// test); allocates only to join a repeated header.
fn forwarded_proto(
    headers: &mut http::HeaderMap,
    https: bool,
    trusted_hops: u32,
) -> (&'static str, bool) {
    if trusted_hops > 0 {
        let mut values = headers.get_all(X_FORWARDED_PROTO).iter();
        if let Some(first) = values.next() {
            if values.next().is_none() {
                let v = first.to_str().unwrap_or("\u{fffd}");
                return (scheme_of(v, https), v == "https");
            }
            // a repeated header is one comma-joined value for Envoy (an inline header), so
            // `https` twice is `https,https`, not `https`
            let joined: Vec<&str> = headers
                .get_all(X_FORWARDED_PROTO)
                .iter()
                .map(|v| v.to_str().unwrap_or("\u{fffd}"))
                .collect();
            let v = joined.join(",");
            if let Ok(one) = HeaderValue::from_str(&v) {
                headers.insert(X_FORWARDED_PROTO, one);
                return (scheme_of(&v, https), v == "https");
            }
        }
    }
    let own = if https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(own));
    (own, https)
}

/// The request's `:scheme` as Envoy derives it for an HTTP/1 request (`Http::Utility::
/// getScheme`): `x-forwarded-proto` when it is `http` or `https` (any case), else the
/// connection's.
fn scheme_of(forwarded_proto: &str, https: bool) -> &'static str {
    if forwarded_proto.eq_ignore_ascii_case("https") {
        "https"
    } else if forwarded_proto.eq_ignore_ascii_case("http") {
        "http"
    } else if https {
        "https"
    } else {
        "http"
    }
}

/// `httpsRedirect`: 301 to `https://` with the Host as sent, port included (Envoy's
/// `Http::Utility::createSslRedirectPath`: `https://{Host}{:path}`; Istio strips no port
/// unless ISTIO_GATEWAY_STRIP_HOST_PORT is set, off by default).
/// A gRPC request gets it as Envoy's router sends every local reply to one
/// (`sendLocalReply`): 200 with `grpc-status` 2 (`httpToGrpcStatus(301)`: UNKNOWN), the
/// `location` kept.
fn https_redirect<B>(req: &Request<B>, authority: &str) -> Response<GatewayBody> {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{authority}{pq}");
    let mut r = redirect_response(StatusCode::MOVED_PERMANENTLY, &location);
    if crate::envoy::is_grpc(req.headers()) {
        *r.status_mut() = StatusCode::OK;
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from(crate::envoy::http_to_grpc_status(301)),
        );
    }
    r
}

fn redirect_response(status: StatusCode, location: &str) -> Response<GatewayBody> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_dnat_names() {
        assert_eq!(
            parse_sni_dnat("outbound_.8000_._.httpbin.foo.svc.cluster.local"),
            Some((8000, None, "httpbin.foo.svc.cluster.local"))
        );
        assert_eq!(
            parse_sni_dnat("outbound_.9080_.v1_.reviews.default.svc.cluster.local"),
            Some((9080, Some("v1"), "reviews.default.svc.cluster.local"))
        );
        for bad in [
            "httpbin.foo.svc.cluster.local",
            "outbound_.x_._.httpbin",
            "outbound_.0_._.httpbin",
            "outbound_.8000_._.",
            "outbound_.8000_.httpbin",
            "inbound_.8000_._.httpbin",
        ] {
            assert_eq!(parse_sni_dnat(bad), None, "{bad}");
        }
    }

    /// The server index a ClientHello with this SNI reaches on `port`, among the servers of
    /// `yaml`'s Gateways that select `istio: <selector>`.
    fn picker(yaml: &str, selector: &str, port: u16) -> impl Fn(Option<&str>) -> Option<usize> {
        let snap = Mesh::from_yaml(yaml).unwrap().snapshot();
        let labels: Labels = [("istio".to_string(), selector.to_string())].into();
        move |h| {
            let attrs = L4Attrs {
                sni: h,
                ..L4Attrs::new("istio-system", port)
            };
            let servers = snap.gateway_servers(&labels);
            snap.routes()
                .gateway_tls_chain(servers.iter().copied(), &attrs)
                .map(|c| c.server.index)
        }
    }

    #[test]
    fn selection_prefers_exact_then_longest_wildcard() {
        let pick = picker(
            "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-any, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE, credentialName: any}
  - port: {number: 443, name: https-wild, protocol: HTTPS}
    hosts: ['*.example.com']
    tls: {mode: SIMPLE, credentialName: wild}
  - port: {number: 443, name: https-a, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, credentialName: a}
",
            "ingressgateway",
            443,
        );
        assert_eq!(pick(Some("a.example.com")), Some(2));
        assert_eq!(pick(Some("b.example.com")), Some(1));
        assert_eq!(pick(Some("other.org")), Some(0));
        assert_eq!(pick(None), Some(0));
    }

    #[test]
    fn an_auto_passthrough_server_matches_its_sni_exactly() {
        let pick = picker(
            "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls-pass, protocol: TLS}
    hosts: ['*.svc.cluster.local']
    tls: {mode: PASSTHROUGH}
  - port: {number: 15443, name: tls-auto, protocol: TLS}
    hosts: ['*.local']
    tls: {mode: AUTO_PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass, namespace: istio-system}
spec:
  hosts: ['*.svc.cluster.local']
  gateways: [gw]
  tls:
  - match: [{sniHosts: ['*.svc.cluster.local']}]
    route: [{destination: {host: httpbin.foo.svc.cluster.local}}]
",
            "eastwestgateway",
            15443,
        );
        // the service the SNI names is under both servers' hosts: the exact chain wins
        assert_eq!(
            pick(Some("outbound_.8000_._.httpbin.foo.svc.cluster.local")),
            Some(1)
        );
        // a plain SNI is the PASSTHROUGH server's (its VirtualService's chain)
        assert_eq!(pick(Some("httpbin.foo.svc.cluster.local")), Some(0));
        assert_eq!(pick(Some("httpbin.example.com")), None);

        // an AUTO_PASSTHROUGH server with `*` hosts takes only `outbound_` names
        let pick = picker(
            "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 443, name: tls-auto, protocol: TLS}
    hosts: ['*']
    tls: {mode: AUTO_PASSTHROUGH}
  - port: {number: 443, name: https-shop, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop}
",
            "eastwestgateway",
            443,
        );
        assert_eq!(pick(Some("shop.example.com")), Some(1));
        assert_eq!(pick(None), None);
        assert_eq!(
            pick(Some("outbound_.80_._.web.foo.svc.cluster.local")),
            Some(0)
        );
    }

    #[test]
    fn istio_mtls_alpns() {
        let cases: &[(&[&[u8]], bool)] = &[
            (&[], false),
            (&[b"h2", b"http/1.1"], false),
            (&[b"istio-peer-exchange", b"istio"], true),
            (&[b"istio"], true),
            (&[b"h2", b"istio-h2"], true),
            (&[b"istio-http/1.0"], true),
            (&[b"istio-http/1.1"], true),
            (&[b"ISTIO"], false),
            (&[b"istio-"], false),
        ];
        for (alpn, want) in cases {
            let alpn: Vec<Vec<u8>> = alpn.iter().map(|a| a.to_vec()).collect();
            assert_eq!(offers_istio_mtls_alpn(&alpn), *want, "{alpn:?}");
        }
    }

    #[test]
    fn xfcc_modes_as_envoy() {
        use ForwardClientCertDetails as F;
        let mine = HeaderValue::from_static("By=spiffe://gw;Hash=ab");
        // (mode, client's values, connection has a verified client cert, result)
        let cases: &[(F, &[&str], bool, Option<&str>)] = &[
            (
                F::SanitizeSet,
                &["By=x"],
                true,
                Some("By=spiffe://gw;Hash=ab"),
            ),
            (F::SanitizeSet, &["By=x"], false, None),
            (F::SanitizeSet, &[], true, Some("By=spiffe://gw;Hash=ab")),
            (F::Sanitize, &["By=x"], true, None),
            (F::ForwardOnly, &["By=x"], true, Some("By=x")),
            (F::ForwardOnly, &["By=x"], false, None),
            (
                F::AppendForward,
                &["By=x"],
                true,
                Some("By=x,By=spiffe://gw;Hash=ab"),
            ),
            (
                F::AppendForward,
                &["By=x", "By=y"],
                true,
                Some("By=x,By=y,By=spiffe://gw;Hash=ab"),
            ),
            (F::AppendForward, &[], true, Some("By=spiffe://gw;Hash=ab")),
            (F::AppendForward, &["By=x"], false, None),
            (F::AlwaysForwardOnly, &["By=x"], false, Some("By=x")),
            (F::AlwaysForwardOnly, &["By=x"], true, Some("By=x")),
            (F::AlwaysForwardOnly, &[], false, None),
        ];
        for (mode, client, mtls, want) in cases {
            let mut h = http::HeaderMap::new();
            for v in *client {
                h.append(xfcc::XFCC, HeaderValue::from_static(v));
            }
            xfcc::mutate(&mut h, *mode, mtls.then_some(&mine));
            let got: Vec<&str> = h
                .get_all(xfcc::XFCC)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            let want: Vec<&str> = want.iter().copied().collect();
            assert_eq!(got, want, "{mode:?} {client:?} {mtls}");
        }
    }

    #[test]
    fn edge_requests_lose_envoys_internal_headers() {
        let mut h = http::HeaderMap::new();
        for name in crate::envoy::CONTROL_HEADERS
            .iter()
            .chain(&ENVOY_INTERNAL_HEADERS)
        {
            h.insert(*name, HeaderValue::from_static("1"));
        }
        h.insert(
            "x-envoy-external-address",
            HeaderValue::from_static("6.6.6.6"),
        );
        h.insert("x-envoy-attempt-count", HeaderValue::from_static("1"));
        h.insert("x-request-id", HeaderValue::from_static("r-1"));
        clean_edge_request(&mut h, Some("203.0.113.7".parse().unwrap()), false);
        for name in crate::envoy::CONTROL_HEADERS
            .iter()
            .chain(&ENVOY_INTERNAL_HEADERS)
        {
            assert!(!h.contains_key(*name), "{name}");
        }
        assert_eq!(h["x-envoy-external-address"], "203.0.113.7");
        // not Envoy's internal headers: kept
        assert_eq!(h["x-envoy-attempt-count"], "1");
        assert_eq!(h["x-request-id"], "r-1");
        clean_edge_request(&mut h, None, false);
        assert!(!h.contains_key("x-envoy-external-address"));
        // with request ids generated (Istio's default), the client's is replaced
        clean_edge_request(&mut h, None, true);
        assert_ne!(h["x-request-id"], "r-1");
        assert_eq!(h["x-request-id"].len(), 36);
    }

    #[test]
    fn forwarded_proto_is_trusted_only_behind_proxies() {
        let cases: &[(&[&str], bool, u32, &str, &str)] = &[
            // (client values, TLS connection, trusted hops, header after, scheme)
            (&["https"], false, 0, "http", "http"),
            (&["https"], false, 1, "https", "https"),
            (&["http"], true, 1, "http", "http"),
            (&["http"], true, 0, "https", "https"),
            (&[], false, 2, "http", "http"),
            (&[], true, 1, "https", "https"),
            (&["HTTPS"], false, 1, "HTTPS", "https"),
            (&["wss"], true, 1, "wss", "https"),
            (&["https", "https"], false, 1, "https,https", "http"),
        ];
        for (values, https, hops, want, scheme) in cases {
            let mut h = http::HeaderMap::new();
            for v in *values {
                h.append(X_FORWARDED_PROTO, HeaderValue::from_static(v));
            }
            let (got, is_https) = forwarded_proto(&mut h, *https, *hops);
            assert_eq!(got, *scheme, "{values:?} {https} {hops}");
            assert_eq!(is_https, *want == "https", "{values:?} {https} {hops}");
            assert_eq!(h.get_all(X_FORWARDED_PROTO).iter().count(), 1);
            assert_eq!(h[X_FORWARDED_PROTO], *want, "{values:?} {https} {hops}");
        }
    }

    #[test]
    fn authority_ports() {
        let req = Request::get("/status/200?x=1").body(()).unwrap();
        for (authority, want) in [
            (
                "httpbin.example.com",
                "https://httpbin.example.com/status/200?x=1",
            ),
            // Envoy's createSslRedirectPath keeps the Host as sent, `:80` too
            (
                "httpbin.example.com:80",
                "https://httpbin.example.com:80/status/200?x=1",
            ),
            (
                "httpbin.example.com:8080",
                "https://httpbin.example.com:8080/status/200?x=1",
            ),
        ] {
            let r = https_redirect(&req, authority);
            assert_eq!(r.status(), 301);
            assert_eq!(r.headers()[LOCATION], want);
        }
        // a gRPC request: Envoy's local reply in gRPC form, the location kept
        let req = Request::post("/pkg.Svc/Call")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let r = https_redirect(&req, "grpc.example.com");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "2");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(
            r.headers()[LOCATION],
            "https://grpc.example.com/pkg.Svc/Call"
        );
    }
}
