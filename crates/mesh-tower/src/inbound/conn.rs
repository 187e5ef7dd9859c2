//! [`ConnectionInfo`]: what the server knows about the connection a request came in on, and
//! [`ConnectionInfoLayer`], which puts it into every request's extensions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use mesh_tls::{PeerAuthnMode, PeerIdentity};
use tower::{Layer, Service};

use crate::lb::ConnectionAddrs;
use crate::metrics::{MetricsContext, WorkloadInfo};

#[derive(Debug)]
struct Inner {
    peer: Option<PeerIdentity>,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    port: u16,
    tls: bool,
    sni: Option<Box<str>>,
    mode: Option<PeerAuthnMode>,
    /// Set by [`ConnectionInfoLayer`]: computed once per connection, not per request.
    metrics: Option<MetricsContext>,
}

/// The connection a request arrived on: the peer's verified SPIFFE identity (mTLS), the
/// addresses, the workload port and the PeerAuthentication mode it was accepted under.
///
/// Built once per connection; cloning is one reference-count increment, so it is cheap to
/// put into every request's extensions (axum: `Extension<ConnectionInfo>`).
///
/// # Examples
///
/// ```
/// use mesh_tls::{Identity, PeerAuthnMode, PeerIdentity};
/// use mesh_tower::inbound::ConnectionInfo;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sleep = PeerIdentity::new(Identity::new("cluster.local", "foo", "sleep")?);
/// let info = ConnectionInfo::new(Some(sleep), 8000)
///     .with_addrs(Some("10.0.0.5:43210".parse()?), Some("10.0.0.9:8000".parse()?))
///     .with_mode(PeerAuthnMode::Strict);
/// assert_eq!(info.principal(), Some("cluster.local/ns/foo/sa/sleep"));
/// assert!(info.is_tls());
/// assert_eq!(info.port(), 8000);
/// assert_eq!(info.mode(), Some(PeerAuthnMode::Strict));
/// assert_eq!(info.remote_addr(), Some("10.0.0.5:43210".parse()?));
/// assert_eq!(info.addrs().local, info.local_addr());
///
/// // The source workload for Istio's metrics, from the verified identity.
/// let m = info.metrics_context();
/// assert_eq!(m.peer.unwrap().principal, "spiffe://cluster.local/ns/foo/sa/sleep");
/// assert_eq!(m.mutual_tls, Some(true));
///
/// // A plaintext connection (PERMISSIVE or DISABLE) has no principal.
/// let plain = ConnectionInfo::new(None, 8000);
/// assert_eq!(plain.principal(), None);
/// assert_eq!(plain.metrics_context().mutual_tls, Some(false));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionInfo(Arc<Inner>);

impl ConnectionInfo {
    /// A connection on workload port `port` from `peer` (`None`: plaintext).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sleep = PeerIdentity::new(Identity::new("cluster.local", "foo", "sleep")?);
    /// let mtls = ConnectionInfo::new(Some(sleep), 8000);
    /// assert!(mtls.is_tls());
    /// assert_eq!(mtls.port(), 8000);
    ///
    /// let plain = ConnectionInfo::new(None, 8000);
    /// assert!(!plain.is_tls() && plain.peer().is_none());
    /// assert_eq!(plain.mode(), None, "unknown until `with_mode`");
    /// # Ok(()) }
    /// ```
    pub fn new(peer: Option<PeerIdentity>, port: u16) -> Self {
        ConnectionInfo(Arc::new(Inner {
            tls: peer.is_some(),
            peer,
            remote: None,
            local: None,
            port,
            sni: None,
            mode: None,
            metrics: None,
        }))
    }

    /// With the socket addresses.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// # fn main() -> Result<(), std::net::AddrParseError> {
    /// let bare = ConnectionInfo::new(None, 9080);
    /// let info = bare.clone().with_addrs(Some("10.1.2.3:40000".parse()?), Some("10.0.0.1:9080".parse()?));
    /// assert_eq!(info.remote_addr(), Some("10.1.2.3:40000".parse()?));
    /// assert_eq!(info.local_addr(), Some("10.0.0.1:9080".parse()?));
    /// assert_eq!(bare.remote_addr(), None, "the original is unchanged");
    /// # Ok(()) }
    /// ```
    pub fn with_addrs(self, remote: Option<SocketAddr>, local: Option<SocketAddr>) -> Self {
        self.map(|i| {
            i.remote = remote;
            i.local = local;
        })
    }

    /// With the TLS flag and SNI (a gateway terminating TLS without client certificates).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// let info = ConnectionInfo::new(None, 443).with_tls(true, Some("bookinfo.example.com"));
    /// assert!(info.is_tls());
    /// assert_eq!(info.peer(), None, "no client certificate");
    /// assert_eq!(info.sni(), Some("bookinfo.example.com"));
    /// ```
    pub fn with_tls(self, tls: bool, sni: Option<&str>) -> Self {
        self.map(|i| {
            i.tls = tls;
            i.sni = sni.map(Into::into);
        })
    }

    /// With the PeerAuthentication mode the connection was accepted under.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::PeerAuthnMode;
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// // a plaintext connection let in by PERMISSIVE
    /// let info = ConnectionInfo::new(None, 9080).with_mode(PeerAuthnMode::Permissive);
    /// assert_eq!(info.mode(), Some(PeerAuthnMode::Permissive));
    /// assert!(!info.is_tls());
    /// ```
    pub fn with_mode(self, mode: PeerAuthnMode) -> Self {
        self.map(|i| i.mode = Some(mode))
    }

    fn map(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.0).unwrap_or_else(|a| Inner {
            peer: a.peer.clone(),
            remote: a.remote,
            local: a.local,
            port: a.port,
            tls: a.tls,
            sni: a.sni.clone(),
            mode: a.mode,
            metrics: a.metrics.clone(),
        });
        f(&mut inner);
        ConnectionInfo(Arc::new(inner))
    }

    /// The peer's verified identity; `None` for plaintext.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sleep = PeerIdentity::new(Identity::new("cluster.local", "foo", "sleep")?);
    /// let info = ConnectionInfo::new(Some(sleep.clone()), 8000);
    /// assert_eq!(info.peer(), Some(&sleep));
    /// assert_eq!(info.peer().unwrap().identity().as_uri(), "spiffe://cluster.local/ns/foo/sa/sleep");
    /// assert_eq!(ConnectionInfo::new(None, 8000).peer(), None);
    /// # Ok(()) }
    /// ```
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.0.peer.as_ref()
    }

    /// The peer's principal as AuthorizationPolicy compares it
    /// (`cluster.local/ns/default/sa/sleep`); `None` for plaintext.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let reviews = PeerIdentity::new(Identity::new("cluster.local", "bookinfo", "bookinfo-reviews")?);
    /// let info = ConnectionInfo::new(Some(reviews), 9080);
    /// // without the `spiffe://` scheme, as in an AuthorizationPolicy's `principals`
    /// assert_eq!(info.principal(), Some("cluster.local/ns/bookinfo/sa/bookinfo-reviews"));
    /// assert_eq!(ConnectionInfo::new(None, 9080).principal(), None);
    /// # Ok(()) }
    /// ```
    pub fn principal(&self) -> Option<&str> {
        self.0.peer.as_ref().map(|p| p.principal())
    }

    /// The client's address.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// let client = "10.1.2.3:40000".parse().unwrap();
    /// let info = ConnectionInfo::new(None, 9080).with_addrs(Some(client), None);
    /// assert_eq!(info.remote_addr(), Some(client));
    /// assert_eq!(ConnectionInfo::new(None, 9080).remote_addr(), None, "not given");
    /// ```
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.0.remote
    }

    /// Our address on the connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// let ours = "10.0.0.1:15006".parse().unwrap();
    /// let info = ConnectionInfo::new(None, 9080).with_addrs(None, Some(ours));
    /// assert_eq!(info.local_addr(), Some(ours));
    /// assert_eq!(info.port(), 9080, "the workload port, not the local port");
    /// ```
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.0.local
    }

    /// The workload port (what PeerAuthentication `portLevelMtls` and AuthorizationPolicy
    /// `ports` refer to).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// let info = ConnectionInfo::new(None, 9080);
    /// assert_eq!(info.port(), 9080);
    /// assert_eq!(info.with_tls(true, None).port(), 9080, "kept by the builders");
    /// ```
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// Whether the connection is TLS.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sleep = PeerIdentity::new(Identity::new("cluster.local", "foo", "sleep")?);
    /// assert!(ConnectionInfo::new(Some(sleep), 8000).is_tls()); // mTLS
    /// assert!(!ConnectionInfo::new(None, 8000).is_tls()); // plaintext
    /// // TLS without a client certificate (a gateway's HTTPS listener)
    /// assert!(ConnectionInfo::new(None, 443).with_tls(true, None).is_tls());
    /// # Ok(()) }
    /// ```
    pub fn is_tls(&self) -> bool {
        self.0.tls
    }

    /// The TLS SNI the client sent, when known.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// let https = ConnectionInfo::new(None, 443).with_tls(true, Some("bookinfo.example.com"));
    /// assert_eq!(https.sni(), Some("bookinfo.example.com"));
    /// assert_eq!(ConnectionInfo::new(None, 443).sni(), None);
    /// ```
    pub fn sni(&self) -> Option<&str> {
        self.0.sni.as_deref()
    }

    /// The PeerAuthentication mode the connection was accepted under, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::PeerAuthnMode;
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// assert_eq!(ConnectionInfo::new(None, 8000).mode(), None);
    /// let info = ConnectionInfo::new(None, 8000).with_mode(PeerAuthnMode::Disable);
    /// assert_eq!(info.mode(), Some(PeerAuthnMode::Disable));
    /// ```
    pub fn mode(&self) -> Option<PeerAuthnMode> {
        self.0.mode
    }

    /// The remote and local addresses, as the load balancer and access log take them.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::inbound::ConnectionInfo;
    /// use mesh_tower::lb::ConnectionAddrs;
    ///
    /// let (remote, local) = ("10.1.2.3:40000".parse().unwrap(), "10.0.0.1:9080".parse().unwrap());
    /// let info = ConnectionInfo::new(None, 9080).with_addrs(Some(remote), Some(local));
    /// assert_eq!(info.addrs(), ConnectionAddrs { remote: Some(remote), local: Some(local) });
    /// assert_eq!(ConnectionInfo::new(None, 9080).addrs(), ConnectionAddrs::default());
    /// ```
    pub fn addrs(&self) -> ConnectionAddrs {
        ConnectionAddrs {
            remote: self.0.remote,
            local: self.0.local,
        }
    }

    /// The metrics context for requests on this connection: the one the
    /// [`ConnectionInfoLayer`] was given, else the source workload from the peer's identity
    /// and `connection_security_policy`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let reviews = PeerIdentity::new(Identity::new("cluster.local", "bookinfo", "bookinfo-reviews")?);
    /// let m = ConnectionInfo::new(Some(reviews), 9080).metrics_context();
    /// let source = m.peer.unwrap();
    /// assert_eq!(source.principal, "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews");
    /// assert_eq!(source.namespace, "bookinfo");
    /// assert_eq!(m.mutual_tls, Some(true));
    /// assert_eq!(m.service, None, "the connection does not know the service");
    ///
    /// let plain = ConnectionInfo::new(None, 9080).metrics_context();
    /// assert_eq!((plain.peer, plain.mutual_tls), (None, Some(false)));
    /// # Ok(()) }
    /// ```
    pub fn metrics_context(&self) -> MetricsContext {
        if let Some(m) = &self.0.metrics {
            return m.clone();
        }
        MetricsContext {
            peer: self
                .0
                .peer
                .as_ref()
                .map(|p| Arc::new(WorkloadInfo::from_principal(p.identity().as_uri()))),
            service: None,
            mutual_tls: Some(self.0.peer.is_some()),
        }
    }
}

/// Inserts a [`ConnectionInfo`] into every request's extensions: one extension, from which
/// the metrics layer takes its [`MetricsContext`] (computed once per connection) and the
/// access log the [`ConnectionAddrs`] (see [`ConnectionInfo::addrs`]).
///
/// [`crate::inbound::MeshServer`] adds it per connection; use it on its own when you accept
/// connections yourself.
///
/// # Examples
///
/// Per accepted connection, over the application's stack: the application and the metrics
/// layer below see who is calling.
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tls::{Identity, PeerIdentity};
/// use mesh_tower::inbound::{ConnectionInfo, ConnectionInfoLayer};
/// use mesh_tower::metrics::{IstioMetrics, MetricsContext, MetricsLayer, ServiceInfo, WorkloadInfo};
/// use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let app = ServiceBuilder::new()
///     .layer(MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default()))
///     .service(service_fn(|req: http::Request<_>| async move {
///         let who = req.extensions().get::<ConnectionInfo>().and_then(|c| c.principal()).unwrap_or("-");
///         Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(who.to_string()))))
///     }));
///
/// // One accepted mTLS connection from `sleep`:
/// let peer = PeerIdentity::new(Identity::new("cluster.local", "foo", "sleep")?);
/// let info = ConnectionInfo::new(Some(peer), 8000);
/// let mut context = info.metrics_context();
/// context.service = Some(Arc::new(ServiceInfo::from_host("httpbin.foo.svc.cluster.local")));
/// let conn = ConnectionInfoLayer::new(info).with_metrics_context(context).layer(app);
///
/// let resp = conn.oneshot(http::Request::new(Full::new(Bytes::new()))).await?;
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "cluster.local/ns/foo/sa/sleep");
/// let text = metrics.render();
/// assert!(text.contains(r#"source_principal="spiffe://cluster.local/ns/foo/sa/sleep""#), "{text}");
/// assert!(text.contains(r#"destination_service="httpbin.foo.svc.cluster.local""#), "{text}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionInfoLayer {
    info: ConnectionInfo,
}

impl ConnectionInfoLayer {
    /// For requests on the connection `info`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_tls::{Identity, PeerIdentity};
    /// use mesh_tower::inbound::{ConnectionInfo, ConnectionInfoLayer};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let app = service_fn(|req: http::Request<()>| async move {
    ///     let info = req.extensions().get::<ConnectionInfo>().cloned().unwrap();
    ///     Ok::<_, Infallible>(info)
    /// });
    /// let sleep = PeerIdentity::new(Identity::new("cluster.local", "foo", "sleep")?);
    /// let conn = ConnectionInfoLayer::new(ConnectionInfo::new(Some(sleep), 8000)).layer(app);
    ///
    /// // every request on the connection carries it
    /// for _ in 0..2 {
    ///     let info = conn.clone().oneshot(http::Request::new(())).await?;
    ///     assert_eq!(info.principal(), Some("cluster.local/ns/foo/sa/sleep"));
    ///     assert_eq!(info.metrics_context().mutual_tls, Some(true));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn new(info: ConnectionInfo) -> Self {
        let metrics = info.metrics_context();
        ConnectionInfoLayer {
            info: info.map(|i| i.metrics = Some(metrics)),
        }
    }

    /// With the metrics context of this connection's requests: it replaces the whole
    /// context (caller and `mutual_tls` too, not only the destination service of the
    /// `destination_service*` labels), so start from [`ConnectionInfo::metrics_context`]
    /// and change what differs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use mesh_tower::inbound::{ConnectionInfo, ConnectionInfoLayer};
    /// use mesh_tower::metrics::ServiceInfo;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let info = ConnectionInfo::new(None, 8000);
    /// let mut context = info.metrics_context();
    /// context.service = Some(Arc::new(ServiceInfo::from_host("httpbin.foo.svc.cluster.local")));
    /// let layer = ConnectionInfoLayer::new(info).with_metrics_context(context);
    ///
    /// let app = service_fn(|req: http::Request<()>| async move {
    ///     Ok::<_, Infallible>(req.extensions().get::<ConnectionInfo>().unwrap().metrics_context())
    /// });
    /// let seen = layer.layer(app).oneshot(http::Request::new(())).await?;
    /// assert_eq!(seen.service.unwrap().name, "httpbin");
    /// assert_eq!(seen.mutual_tls, Some(false));
    /// # Ok(()) }
    /// ```
    pub fn with_metrics_context(self, metrics: MetricsContext) -> Self {
        ConnectionInfoLayer {
            info: self.info.map(|i| i.metrics = Some(metrics)),
        }
    }
}

impl<S> Layer<S> for ConnectionInfoLayer {
    type Service = WithConnectionInfo<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithConnectionInfo {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ConnectionInfoLayer`].
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use mesh_tower::inbound::{ConnectionInfo, ConnectionInfoLayer, WithConnectionInfo};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Infallible> {
/// let app = service_fn(|req: http::Request<()>| async move {
///     Ok::<_, Infallible>(req.extensions().get::<ConnectionInfo>().map(|c| c.port()))
/// });
/// let svc: WithConnectionInfo<_> = ConnectionInfoLayer::new(ConnectionInfo::new(None, 9080)).layer(app);
/// assert_eq!(svc.clone().oneshot(http::Request::new(())).await?, Some(9080));
///
/// // The application without the layer: no connection info.
/// let bare = svc.into_inner();
/// assert_eq!(bare.oneshot(http::Request::new(())).await?, None);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct WithConnectionInfo<S> {
    inner: S,
    layer: ConnectionInfoLayer,
}

impl<S> WithConnectionInfo<S> {
    /// The wrapped service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::inbound::{ConnectionInfo, ConnectionInfoLayer};
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let svc = ConnectionInfoLayer::new(ConnectionInfo::new(None, 9080)).layer(App { name: "details" });
    /// assert_eq!(svc.get_ref().name, "details");
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::inbound::{ConnectionInfo, ConnectionInfoLayer};
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let svc = ConnectionInfoLayer::new(ConnectionInfo::new(None, 9080)).layer(App { name: "details" });
    /// let app: App = svc.into_inner();
    /// assert_eq!(app.name, "details");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for WithConnectionInfo<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // One extension: the metrics and access-log layers read their parts of it.
        req.extensions_mut().insert(self.layer.info.clone());
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_tls::Identity;

    #[test]
    fn accessors_and_metrics_context() {
        let id = Identity::new("cluster.local", "foo", "sleep").unwrap();
        let cases = [
            (
                Some(PeerIdentity::new(id)),
                Some("cluster.local/ns/foo/sa/sleep"),
                true,
            ),
            (None, None, false),
        ];
        for (peer, principal, mtls) in cases {
            let info = ConnectionInfo::new(peer, 8000)
                .with_addrs(Some("127.0.0.1:1".parse().unwrap()), None)
                .with_mode(PeerAuthnMode::Permissive);
            assert_eq!(info.principal(), principal);
            assert_eq!(info.port(), 8000);
            assert_eq!(info.is_tls(), mtls);
            assert_eq!(info.mode(), Some(PeerAuthnMode::Permissive));
            assert_eq!(info.remote_addr(), Some("127.0.0.1:1".parse().unwrap()));
            let m = info.metrics_context();
            assert_eq!(m.mutual_tls, Some(mtls));
            assert_eq!(
                m.peer.as_ref().map(|p| p.namespace.as_str()),
                principal.map(|_| "foo")
            );
            let tls = info.clone().with_tls(true, Some("a.example.com"));
            assert!(tls.is_tls());
            assert_eq!(tls.sni(), Some("a.example.com"));
            // the original is unchanged
            assert_eq!(info.sni(), None);
        }
    }
}
