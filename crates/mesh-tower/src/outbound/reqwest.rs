//! [`MeshMiddleware`]: the mesh client behind `reqwest-middleware`, so code written against
//! reqwest adopts the mesh by changing how it builds its client, not its call sites.
//!
//! The middleware is terminal: it sends the request through the [`MeshClient`] (routing,
//! balancing, mTLS, retries, metrics) instead of reqwest's own connection pool, and turns
//! the mesh's answer into a `reqwest::Response`. Middlewares added before it still run.
//!
//! # Examples
//!
//! See [`MeshMiddleware`].

use http::Extensions;
use reqwest_middleware::{Middleware, Next, Result};

use super::MeshClient;

/// Sends reqwest requests through a [`MeshClient`]. See the [module docs](self).
///
/// # Examples
///
/// Code written against reqwest calls `http://reviews:9080/...` and the mesh routes it (here
/// by a VirtualService header match to the `v2` subset):
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tower::outbound::reqwest::MeshMiddleware;
/// use mesh_tower::outbound::{ClientWorkload, MeshClient};
///
/// # async fn reviews(version: &'static str) -> std::net::SocketAddr {
/// #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// #     let addr = listener.local_addr().unwrap();
/// #     let app = axum::Router::new().fallback(move || async move { version });
/// #     tokio::spawn(async move { axum::serve(listener, app).await });
/// #     addr
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http, port: 9080}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews, namespace: default}
/// spec:
///   host: reviews
///   subsets:
///   - {name: v1, labels: {version: v1}}
///   - {name: v2, labels: {version: v2}}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews, namespace: default}
/// spec:
///   hosts: [reviews]
///   http:
///   - match: [{headers: {end-user: {exact: jason}}}]
///     route: [{destination: {host: reviews, subset: v2}}]
///   - route: [{destination: {host: reviews, subset: v1}}]
/// ")?;
/// for version in ["v1", "v2"] {
///     let addr = reviews(version).await; // a plain HTTP server answering its version
///     mesh.register(Workload {
///         name: format!("reviews-{version}"),
///         namespace: "default".to_string(),
///         service_account: "bookinfo-reviews".to_string(),
///         labels: [("app", "reviews"), ("version", version)]
///             .map(|(k, v)| (k.to_string(), v.to_string()))
///             .into(),
///         address: addr.ip(),
///         ports: [("http".to_string(), addr.port())].into(),
///         locality: None,
///         weight: 0,
///     });
/// }
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let client = MeshClient::builder(mesh, me).build();
///
/// let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(MeshMiddleware::new(client))
///     .build();
/// let resp = http
///     .get("http://reviews:9080/reviews/0")
///     .header("end-user", "jason")
///     .send()
///     .await?;
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.text().await?, "v2");
/// let resp = http.get("http://reviews:9080/reviews/0").send().await?;
/// assert_eq!(resp.text().await?, "v1");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MeshMiddleware {
    client: MeshClient,
}

impl MeshMiddleware {
    /// The middleware over `client`. Add it last: it sends the request itself, so
    /// middlewares after it never run.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::outbound::reqwest::MeshMiddleware;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let client = MeshClient::builder(Mesh::new(Default::default()), me).build();
    /// let http: reqwest_middleware::ClientWithMiddleware =
    ///     reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///         .with(MeshMiddleware::new(client))
    ///         .build();
    /// # let _ = http;
    /// ```
    pub fn new(client: MeshClient) -> Self {
        MeshMiddleware { client }
    }
}

#[async_trait::async_trait]
impl Middleware for MeshMiddleware {
    async fn handle(
        &self,
        req: reqwest::Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let req: http::Request<reqwest::Body> = req.try_into()?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        Ok(reqwest::Response::from(resp.map(reqwest::Body::wrap)))
    }
}
