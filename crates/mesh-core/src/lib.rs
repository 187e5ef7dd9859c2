//! mesh-core: the Istio configuration model, its loader, validation and analysis, and (in
//! other modules) the decision engines built on them. Pure: no async runtime, no sockets.
//!
//! Decision engines: [`mesh::Mesh`] holds the current [`snapshot::Snapshot`] (compiled
//! config plus [`registry::Registry`]); a request loads it once and asks
//! [`snapshot::Snapshot::route_http`] ([`route`]), `traffic_policy` ([`policy`]),
//! `authz_for_workload` ([`authz`]), `peer_authentication` ([`peerauthn`]) and
//! `gateway_servers` ([`gateway`]); host names and visibility live in [`names`].
//!
//! ```
//! let loaded = mesh_core::load::load_str(
//!     "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subnet: v1}\n",
//!     "vs.yaml",
//! );
//! let d = &loaded.diagnostics[0];
//! assert_eq!(d.path, "spec.http[0].route[0].destination.subnet");
//! assert_eq!(d.help.as_deref().map(|h| h.starts_with("did you mean `subset`?")), Some(true));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod analyze;
pub mod authn;
pub mod authz;
pub mod cors;
pub mod diag;
pub mod gateway;
pub mod load;
pub mod mesh;
pub mod meshconfig;
pub mod model;
pub mod names;
pub mod peerauthn;
pub mod policy;
pub mod registry;
pub mod route;
pub mod sidecar;
pub mod snapshot;
pub mod validate;

/// Everything `meshctl validate` reports for a load: the loader's diagnostics, per-object
/// validation and cross-object analysis, sorted by file and position.
///
/// # Examples
///
/// ```
/// let text = "\
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route: [{destination: {host: reviews, subset: v2}}]
///     timeout: 500us
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: ratings}
/// spec: {host: ratings, trafficPolicy: {loadBalancer: {simple: ROUND_ROBON}}}
/// ";
/// let loaded = mesh_core::load::load_str(text, "bookinfo.yaml");
/// let found = mesh_core::check(&loaded);
/// let summary: Vec<(u32, &str)> = found.iter().map(|d| (d.line, d.code)).collect();
/// assert_eq!(
///     summary,
///     [
///         (7, "IST0101"),  // analysis: no DestinationRule defines subset v2
///         (8, "IST0106"),  // validation: istiod rejects a sub-millisecond timeout
///         (13, "IM0004"), // loading: not a load balancer name
///     ]
/// );
/// for d in &found {
///     println!("{}", loaded.sources.render(d)); // what `meshctl validate` prints
/// }
/// ```
pub fn check(loaded: &load::Loaded) -> Vec<diag::Diagnostic> {
    let mut out = loaded.diagnostics.clone();
    out.extend(validate::validate_all(&loaded.objects));
    out.extend(analyze::analyze(&loaded.objects));
    diag::sort(&mut out);
    out
}
