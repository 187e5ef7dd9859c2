//! mesh-tower: the Tower side of the in-process mesh.
//!
//! Building blocks shared by the inbound server and the outbound client:
//! - [`lb`]: load balancing (round robin, least request, random, ring hash, Maglev,
//!   locality failover) over endpoints with lock-free state;
//! - [`outlier`]: outlier detection ejecting failing endpoints;
//! - [`pool`]: connection-pool limits (circuit breakers) with RAII permits;
//! - [`envoy`]: Envoy's local replies and response flags, for HTTP and gRPC;
//! - [`metrics`]: Istio's standard metrics as a Tower layer, and their Prometheus exposition;
//! - [`trace`]: W3C / B3 trace-context propagation and `x-request-id`;
//! - [`accesslog`]: an Envoy-style access log through `tracing`;
//! - [`authz`]: AuthorizationPolicy enforcement (403 `RBAC: access denied`);
//! - [`inbound`]: [`inbound::MeshServer`], a mesh workload's server (mTLS per
//!   PeerAuthentication, authorization, metrics, trace, access log);
//! - [`outbound`]: the mesh client stack ([`outbound::MeshClient`], [`outbound::OutboundLayer`]).
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod accesslog;
pub mod authz;
pub mod envoy;
pub mod gateway;
pub mod inbound;
pub mod lb;
pub mod metrics;
pub mod observe;
pub mod outbound;
pub mod outlier;
pub mod pool;
pub mod trace;
