//! `inmesh`: an Istio-compatible service mesh that runs inside the process.
//!
//! This crate re-exports the three library crates so that a service adds one dependency:
//! [`core`] (config model, validation, registry, route table, authorization),
//! [`tls`] (mesh CA, SPIFFE identity, rustls configs) and [`tower`] (Tower layers).
//!
//! # Examples
//!
//! An AuthorizationPolicy loaded with [`core`], a caller identity from [`tls`], and the
//! decision of the [`tower`] authorization layer:
//!
//! ```
//! use inmesh::core::mesh::Mesh;
//! use inmesh::tls::{Identity, PeerIdentity};
//! use inmesh::tower::authz::AuthorizationLayer;
//! use inmesh::tower::inbound::ConnectionInfo;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mesh = Mesh::from_yaml("
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: ratings-viewer, namespace: bookinfo}
//! spec:
//!   selector: {matchLabels: {app: ratings}}
//!   action: ALLOW
//!   rules:
//!   - from: [{source: {principals: [cluster.local/ns/bookinfo/sa/bookinfo-reviews]}}]
//!     to: [{operation: {methods: [GET]}}]
//! ")?;
//! let labels = [("app".to_string(), "ratings".to_string())].into();
//! let authz = AuthorizationLayer::new(mesh, "bookinfo", labels);
//!
//! let reviews = PeerIdentity::new(Identity::new("cluster.local", "bookinfo", "bookinfo-reviews")?);
//! let mut req = http::Request::get("/ratings/0").body(())?;
//! req.extensions_mut().insert(ConnectionInfo::new(Some(reviews), 9080));
//! assert!(authz.decide(&req).allowed);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The config model, loader, validation, registry, route table and authorization
/// ([`mesh_core`]).
///
/// # Examples
///
/// ```
/// use inmesh::core::mesh::Mesh;
///
/// let mesh = Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews, namespace: bookinfo}
/// spec:
///   hosts: [reviews]
///   http: [{route: [{destination: {host: reviews, subset: v2}}]}]
/// ").unwrap();
/// assert_eq!(mesh.applied_reloads(), 1);
///
/// // Config istioctl would reject is refused: a Gateway needs at least one server.
/// let err = Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: bookinfo-gateway, namespace: bookinfo}
/// spec:
///   selector: {istio: ingressgateway}
///   servers: []
/// ").unwrap_err();
/// assert!(err.to_string().contains("gateway must have at least one server"), "{err}");
/// ```
pub use mesh_core as core;
/// The mesh CA, SPIFFE identities and rustls configs ([`mesh_tls`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use inmesh::tls::{Identity, MeshCa};
///
/// let ca = MeshCa::self_signed("cluster.local").unwrap();
/// let id = Identity::new("cluster.local", "bookinfo", "bookinfo-reviews").unwrap();
/// let cert = ca.issue(&id, Duration::from_secs(3600), &[]).unwrap();
/// assert_eq!(cert.identity().principal(), "cluster.local/ns/bookinfo/sa/bookinfo-reviews");
/// ```
pub use mesh_tls as tls;
/// Tower layers and the mesh server, client and gateway ([`mesh_tower`]).
///
/// # Examples
///
/// ```
/// use inmesh::tower::envoy::LocalReply;
///
/// let reply = LocalReply::NoHealthyUpstream;
/// assert_eq!(reply.status(), 503);
/// assert_eq!(reply.body(), "no healthy upstream");
/// ```
pub use mesh_tower as tower;
