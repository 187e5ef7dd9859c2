//! [`MeshMiddleware`]: the mesh client behind `reqwest-middleware`, so code written against
//! reqwest adopts the mesh by changing how it builds its client, not its call sites.
//!
//! The middleware is terminal: it sends the request through the [`MeshClient`] (routing,
//! balancing, mTLS, retries, metrics) instead of reqwest's own connection pool, and turns
//! the mesh's answer into a `reqwest::Response`. Middlewares added before it still run.
//!
//! ```no_run
//! # fn demo(client: mesh_tower::outbound::MeshClient) {
//! use mesh_tower::outbound::reqwest::MeshMiddleware;
//! let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(MeshMiddleware::new(client))
//!     .build();
//! // http.get("http://reviews:9080/reviews/0").send().await ...
//! # let _ = http;
//! # }
//! ```

use http::Extensions;
use reqwest_middleware::{Middleware, Next, Result};

use super::MeshClient;

/// Sends reqwest requests through a [`MeshClient`]. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct MeshMiddleware {
    client: MeshClient,
}

impl MeshMiddleware {
    /// The middleware over `client`.
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
