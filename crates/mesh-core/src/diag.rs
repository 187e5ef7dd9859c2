//! Diagnostics: what loading, validation and analysis report, with a rustc-like renderer and
//! a JSON form.
//!
//! # Codes
//!
//! Analyzer findings use `istioctl analyze` codes where one fits (`IST0101`
//! ReferencedResourceNotFound, `IST0109`, `IST0128`, ...). Per-object validation (the checks
//! istiod's validating webhook makes) uses `IST0106` (SchemaValidationError) for errors and
//! `IST0133` (SchemaWarning) for the webhook's warnings, as `istioctl analyze` reports
//! them, with Istio's own message. Problems Istio has no code for use our own `IM` codes:
//!
//! | code | severity | meaning |
//! | --- | --- | --- |
//! | `IM0001` | error | YAML/JSON syntax error |
//! | `IM0002` | error | a document is not a Kubernetes object (not a mapping, no `kind`/`apiVersion`) |
//! | `IM0003` | error | unknown field (with "did you mean") |
//! | `IM0004` | error | wrong type or invalid value for a field (schema) |
//! | `IM0005` | error | wrong `apiVersion` for an Istio kind (group typo, unserved version) |
//! | `IM0006` | error | unknown kind in an Istio API group |
//! | `IM0007` | warning | an Istio kind inmesh does not model (EnvoyFilter, Telemetry, ...): skipped |
//! | `IM0008` | error | duplicate key in a mapping |
//! | `IM0009` | error | input limits exceeded (nesting depth, alias expansion) |
//! | `IM0010` | error | unreadable file or directory |
//! | `IM0011` | error | missing `metadata.name` |
//! | `IM0012` | warning | a Kubernetes object we keep for the registry could not be read: ignored |
//! | `IM0013` | warning | valid Istio config inmesh does not apply as Envoy would (an Envoy formatter it does not expand, a header name it cannot write) |
//! | `IM0100` | info / warning | lint: valid for Istio but probably not what was meant (a warning when it cannot work as written) |
//!
//! # Examples
//!
//! ```
//! use mesh_core::diag::{codes, Severity};
//!
//! let loaded = mesh_core::load::load_str(
//!     "apiVersion: networking.istio.io/v1
//! kind: DestinationRule
//! metadata: {name: reviews}
//! spec: {host: reviews, host: ratings}
//! ",
//!     "dr.yaml",
//! );
//! let d = &loaded.diagnostics[0];
//! assert_eq!((d.severity, d.code), (Severity::Error, codes::DUPLICATE_KEY));
//! assert_eq!(d.line, 4);
//! let rendered = loaded.sources.render(d);
//! assert!(rendered.starts_with("error[IM0008]: "), "{rendered}");
//! assert!(rendered.contains("4 | spec: {host: reviews, host: ratings}"), "{rendered}");
//! ```

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use serde::Serialize;

use crate::model::Location;

/// How bad a diagnostic is.
///
/// Severities order from worst to mildest, so sorting puts errors first; they display in
/// lower case, as in rendered diagnostics.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::Severity;
///
/// // an unknown field is an error; an unmodelled Istio kind is skipped with a warning
/// let loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1alpha3
/// kind: EnvoyFilter
/// metadata: {name: lua}
/// spec: {}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsetz: []}
/// ",
///     "mixed.yaml",
/// );
/// let severities: Vec<Severity> = loaded.diagnostics.iter().map(|d| d.severity).collect();
/// assert_eq!(severities, [Severity::Warning, Severity::Error]);
/// assert!(Severity::Error < Severity::Warning && Severity::Warning < Severity::Info);
/// assert_eq!(Severity::Warning.to_string(), "warning");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config is rejected (Istio would reject it, or it cannot work).
    Error,
    /// Accepted, but Istio warns or it probably does not do what was meant.
    Warning,
    /// A hint.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// Diagnostic codes used by this crate (see the module docs).
///
/// Compare a [`Diagnostic::code`] against these constants rather than against literals.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::codes;
///
/// let loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}, weight: -1}]}]}
/// ",
///     "vs.yaml",
/// );
/// assert!(loaded.diagnostics.is_empty()); // the schema is fine...
/// let found = mesh_core::validate::validate_all(&loaded.objects);
/// // ...but istiod's webhook rejects a negative weight
/// assert_eq!(found[0].code, codes::VALIDATION);
/// assert_eq!(codes::VALIDATION, "IST0106");
/// ```
pub mod codes {
    /// YAML/JSON syntax error.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: [VirtualService
    /// ",
    ///     "broken.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::SYNTAX);
    /// assert!(loaded.objects.is_empty());
    /// assert_eq!(codes::SYNTAX, "IM0001");
    /// ```
    pub const SYNTAX: &str = "IM0001";
    /// Not a Kubernetes object.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "- apiVersion: networking.istio.io/v1
    ///   kind: Gateway
    /// ",
    ///     "list.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::NOT_AN_OBJECT);
    /// assert_eq!(codes::NOT_AN_OBJECT, "IM0002");
    /// ```
    pub const NOT_AN_OBJECT: &str = "IM0002";
    /// Unknown field.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, subsetz: []}
    /// ",
    ///     "dr.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::UNKNOWN_FIELD);
    /// assert_eq!(loaded.diagnostics[0].path, "spec.subsetz");
    /// assert_eq!(codes::UNKNOWN_FIELD, "IM0003");
    /// ```
    pub const UNKNOWN_FIELD: &str = "IM0003";
    /// Wrong type or invalid value.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: ROUND_ROBON}}}
    /// ",
    ///     "dr.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::INVALID_VALUE);
    /// assert_eq!(codes::INVALID_VALUE, "IM0004");
    /// ```
    pub const INVALID_VALUE: &str = "IM0004";
    /// Wrong apiVersion for an Istio kind.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio/v1alpha3
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews]}
    /// ",
    ///     "vs.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::API_VERSION);
    /// assert_eq!(codes::API_VERSION, "IM0005");
    /// ```
    pub const API_VERSION: &str = "IM0005";
    /// Unknown kind in an Istio group.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualServce
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews]}
    /// ",
    ///     "vs.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::UNKNOWN_KIND);
    /// assert_eq!(codes::UNKNOWN_KIND, "IM0006");
    /// ```
    pub const UNKNOWN_KIND: &str = "IM0006";
    /// Istio kind not modelled; skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1alpha3
    /// kind: EnvoyFilter
    /// metadata: {name: lua}
    /// spec: {}
    /// ",
    ///     "ef.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::UNSUPPORTED_KIND);
    /// assert!(!loaded.has_errors()); // only a warning
    /// assert_eq!(codes::UNSUPPORTED_KIND, "IM0007");
    /// ```
    pub const UNSUPPORTED_KIND: &str = "IM0007";
    /// Duplicate key.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, host: ratings}
    /// ",
    ///     "dr.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::DUPLICATE_KEY);
    /// assert_eq!(codes::DUPLICATE_KEY, "IM0008");
    /// ```
    pub const DUPLICATE_KEY: &str = "IM0008";
    /// Input limits exceeded.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// use mesh_core::load::{LoadOptions, Loader};
    ///
    /// let loader = Loader::new(LoadOptions { max_depth: 2, ..LoadOptions::default() });
    /// let loaded = loader.load_str("a: {b: {c: {d: 1}}}\n", "deep.yaml");
    /// assert_eq!(loaded.diagnostics[0].code, codes::LIMITS);
    /// assert_eq!(codes::LIMITS, "IM0009");
    /// ```
    pub const LIMITS: &str = "IM0009";
    /// Unreadable path.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mesh = Mesh::new(MeshOptions::default());
    /// // a reload from a path that cannot be read is refused with an IM0010 diagnostic
    /// let err = mesh.reload_paths([dir.path().join("gone.yaml")]).unwrap_err();
    /// assert_eq!(err.diagnostics[0].code, codes::IO);
    /// assert_eq!(codes::IO, "IM0010");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub const IO: &str = "IM0010";
    /// Missing metadata.name.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {namespace: istio-system}
    /// spec: {selector: {istio: ingressgateway}}
    /// ",
    ///     "gw.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::MISSING_NAME);
    /// assert_eq!(codes::MISSING_NAME, "IM0011");
    /// ```
    pub const MISSING_NAME: &str = "IM0011";
    /// A Kubernetes object could not be read; ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Service
    /// metadata: {namespace: default}
    /// spec: {ports: [{port: 9080}]}
    /// ",
    ///     "svc.yaml",
    /// );
    /// assert_eq!(loaded.diagnostics[0].code, codes::KUBE_IGNORED);
    /// assert!(!loaded.has_errors()); // only a warning
    /// assert_eq!(codes::KUBE_IGNORED, "IM0012");
    /// ```
    pub const KUBE_IGNORED: &str = "IM0012";
    /// Lint hint.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{headers: {end-user: {exact: /api}}}]
    ///     route: [{destination: {host: reviews}}]
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::LINT), "{found:#?}");
    /// assert_eq!(codes::LINT, "IM0100");
    /// ```
    pub const LINT: &str = "IM0100";
    /// istiod webhook validation (IST0106 SchemaValidationError).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}], timeout: 500us}]}
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::VALIDATION), "{found:#?}");
    /// assert_eq!(codes::VALIDATION, "IST0106");
    /// ```
    pub const VALIDATION: &str = "IST0106";
    /// SchemaWarning: a warning of istiod's validating webhook (the object is accepted),
    /// as `istioctl analyze` reports webhook warnings.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, trafficPolicy: {outlierDetection: {consecutiveErrors: 5}}}
    /// ",
    ///     "dr.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// let w = found.iter().find(|d| d.code == codes::SCHEMA_WARNING).expect("a webhook warning");
    /// assert_eq!(w.severity, Severity::Warning);
    /// assert_eq!(codes::SCHEMA_WARNING, "IST0133");
    /// ```
    pub const SCHEMA_WARNING: &str = "IST0133";
    /// ReferencedResourceNotFound.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::REFERENCED_RESOURCE_NOT_FOUND), "{found:#?}");
    /// assert_eq!(codes::REFERENCED_RESOURCE_NOT_FOUND, "IST0101");
    /// ```
    pub const REFERENCED_RESOURCE_NOT_FOUND: &str = "IST0101";
    /// GatewayPortNotDefinedOnService (IST0104, GatewayPortNotOnWorkload, is retired).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Pod
    /// metadata: {name: ingress, labels: {istio: ingressgateway}}
    /// spec: {containers: [{name: istio-proxy}]}
    /// ---
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: ingress}
    /// spec: {selector: {istio: ingressgateway}, ports: [{name: http, port: 80}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: gw}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}]
    /// ",
    ///     "gw.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::GATEWAY_PORT_NOT_ON_WORKLOAD), "{found:#?}");
    /// assert_eq!(codes::GATEWAY_PORT_NOT_ON_WORKLOAD, "IST0162");
    /// ```
    pub const GATEWAY_PORT_NOT_ON_WORKLOAD: &str = "IST0162";
    /// ConflictingMeshGatewayVirtualServiceHosts.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: a}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: b}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::CONFLICTING_MESH_GATEWAY_VS_HOSTS), "{found:#?}");
    /// assert_eq!(codes::CONFLICTING_MESH_GATEWAY_VS_HOSTS, "IST0109");
    /// ```
    pub const CONFLICTING_MESH_GATEWAY_VS_HOSTS: &str = "IST0109";
    /// ConflictingSidecarWorkloadSelectors.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Pod
    /// metadata: {name: reviews, labels: {app: reviews}}
    /// spec: {containers: [{name: reviews}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: a}
    /// spec: {workloadSelector: {labels: {app: reviews}}, egress: [{hosts: [./*]}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: b}
    /// spec: {workloadSelector: {labels: {app: reviews}}, egress: [{hosts: [./*]}]}
    /// ",
    ///     "sidecar.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::CONFLICTING_SIDECAR_SELECTORS), "{found:#?}");
    /// assert_eq!(codes::CONFLICTING_SIDECAR_SELECTORS, "IST0110");
    /// ```
    pub const CONFLICTING_SIDECAR_SELECTORS: &str = "IST0110";
    /// MultipleSidecarsWithoutWorkloadSelectors.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: a}
    /// spec: {egress: [{hosts: [./*]}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: b}
    /// spec: {egress: [{hosts: [./*]}]}
    /// ",
    ///     "sidecar.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::MULTIPLE_SIDECARS_WITHOUT_SELECTOR), "{found:#?}");
    /// assert_eq!(codes::MULTIPLE_SIDECARS_WITHOUT_SELECTOR, "IST0111");
    /// ```
    pub const MULTIPLE_SIDECARS_WITHOUT_SELECTOR: &str = "IST0111";
    /// VirtualServiceDestinationPortSelectorRequired.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews}
    /// spec: {ports: [{name: http, port: 80}, {name: grpc, port: 9090}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::DESTINATION_PORT_REQUIRED), "{found:#?}");
    /// assert_eq!(codes::DESTINATION_PORT_REQUIRED, "IST0112");
    /// ```
    pub const DESTINATION_PORT_REQUIRED: &str = "IST0112";
    /// PortNameIsNotUnderNamingConvention: a Service port whose protocol Istio sniffs.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Service
    /// metadata: {name: web, namespace: shop}
    /// spec: {selector: {app: web}, ports: [{name: web, port: 9080, targetPort: 8080}, {name: http-api, port: 80}]}
    /// ",
    ///     "svc.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// let f: Vec<_> = found.iter().filter(|d| d.code == codes::PORT_NAME_CONVENTION).collect();
    /// assert_eq!(f.len(), 1);
    /// assert_eq!(f[0].severity, Severity::Info);
    /// assert_eq!(
    ///     f[0].message,
    ///     "Port name web (port: 9080, targetPort: 8080) doesn't follow the naming convention of Istio port."
    /// );
    /// assert_eq!(codes::PORT_NAME_CONVENTION, "IST0118");
    /// ```
    pub const PORT_NAME_CONVENTION: &str = "IST0118";
    /// ExternalNameServiceTypeInvalidPortName: an `ExternalName` Service port named `tcp`
    /// or with a protocol Istio sniffs.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Service
    /// metadata: {name: db, namespace: shop}
    /// spec: {type: ExternalName, externalName: db.example.com, ports: [{name: tcp, port: 5432}]}
    /// ",
    ///     "svc.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// let f = found.iter().find(|d| d.code == codes::EXTERNAL_NAME_PORT_NAME).unwrap();
    /// assert_eq!(f.severity, Severity::Warning);
    /// assert_eq!(codes::EXTERNAL_NAME_PORT_NAME, "IST0150");
    /// ```
    pub const EXTERNAL_NAME_PORT_NAME: &str = "IST0150";
    /// JwtClaimBasedRoutingWithoutRequestAuthN: routing by JWT claims at a gateway no
    /// RequestAuthentication applies to.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Pod
    /// metadata: {name: ingress, namespace: istio-system, labels: {istio: ingressgateway}}
    /// spec: {containers: [{name: istio-proxy, image: proxyv2}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: gw, namespace: istio-system}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: claims, namespace: istio-system}
    /// spec:
    ///   hosts: ['*']
    ///   gateways: [gw]
    ///   http:
    ///   - match: [{headers: {'@request.auth.claims.groups': {exact: admin}}}]
    ///     route: [{destination: {host: admin.default.svc.cluster.local}}]
    /// ",
    ///     "claims.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// let f = found.iter().find(|d| d.code == codes::JWT_CLAIM_ROUTING_WITHOUT_AUTHN).unwrap();
    /// assert_eq!(f.severity, Severity::Error);
    /// assert!(f.message.contains("(key: @request.auth.claims.groups)"), "{}", f.message);
    /// assert_eq!(codes::JWT_CLAIM_ROUTING_WITHOUT_AUTHN, "IST0149");
    /// ```
    pub const JWT_CLAIM_ROUTING_WITHOUT_AUTHN: &str = "IST0149";
    /// ServiceEntryAddressesRequired: a ServiceEntry without `addresses` has a TCP port.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: mongo}
    /// spec:
    ///   hosts: [mongo.example.com]
    ///   ports: [{number: 27017, name: mongo, protocol: MONGO}, {number: 5432, name: pg, protocol: TCP}]
    ///   resolution: DNS
    /// ",
    ///     "se.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// let f: Vec<_> = found.iter().filter(|d| d.code == codes::SERVICE_ENTRY_ADDRESSES_REQUIRED).collect();
    /// assert_eq!(f.len(), 1); // the TCP port only
    /// assert_eq!((f[0].severity, f[0].path.as_str()), (Severity::Warning, "spec.ports[1]"));
    /// assert_eq!(codes::SERVICE_ENTRY_ADDRESSES_REQUIRED, "IST0134");
    /// ```
    pub const SERVICE_ENTRY_ADDRESSES_REQUIRED: &str = "IST0134";
    /// DeploymentAssociatedToMultipleServices: a Deployment's Services use one port number
    /// with different protocols.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let service = |name: &str, protocol: &str| format!(
    ///     "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{selector: {{app: web}}, ports: [{{name: tcp-x, port: 8080, protocol: {protocol}}}]}}\n---\n"
    /// );
    /// let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: web}]}\n";
    /// let yaml = service("web-tcp", "TCP") + &service("web-udp", "UDP") + deployment;
    /// let found = mesh_core::check(&mesh_core::load::load_str(&yaml, "web.yaml"));
    /// let f = found.iter().find(|d| d.code == codes::DEPLOYMENT_MULTIPLE_SERVICES).unwrap();
    /// assert_eq!(
    ///     f.message,
    ///     "This deployment web is associated with multiple services using port 8080 but different protocols: [default/web-tcp default/web-udp]"
    /// );
    /// assert_eq!(codes::DEPLOYMENT_MULTIPLE_SERVICES, "IST0116");
    /// ```
    pub const DEPLOYMENT_MULTIPLE_SERVICES: &str = "IST0116";
    /// DeploymentConflictingPorts: a Deployment's Services reach one `targetPort` from
    /// different port numbers.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let service = |name: &str, port: u32| format!(
    ///     "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{selector: {{app: web}}, ports: [{{name: http, port: {port}, targetPort: 8080}}]}}\n---\n"
    /// );
    /// let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: web}]}\n";
    /// let yaml = service("web-http", 8080) + &service("web-alt", 9090) + deployment;
    /// let found = mesh_core::check(&mesh_core::load::load_str(&yaml, "web.yaml"));
    /// let f = found.iter().find(|d| d.code == codes::DEPLOYMENT_CONFLICTING_PORTS).unwrap();
    /// assert_eq!(
    ///     f.message,
    ///     "This deployment web is associated with multiple services [default/web-alt default/web-http] using targetPort \"8080\" but different ports: [8080 9090]."
    /// );
    /// assert_eq!(codes::DEPLOYMENT_CONFLICTING_PORTS, "IST0137");
    /// ```
    pub const DEPLOYMENT_CONFLICTING_PORTS: &str = "IST0137";
    /// GatewayDuplicateCertificate: two Gateways for the same workloads share a TLS
    /// certificate.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let gateway = |name: &str, host: &str| format!(
    ///     "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: istio-system}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 443, name: https, protocol: HTTPS}}, hosts: [{host}], tls: {{mode: SIMPLE, credentialName: shared-cert}}}}]\n---\n"
    /// );
    /// let yaml = gateway("gw1", "a.example.com") + &gateway("gw2", "b.example.com");
    /// let found = mesh_core::check(&mesh_core::load::load_str(&yaml, "gw.yaml"));
    /// let dup: Vec<_> = found.iter().filter(|d| d.code == codes::GATEWAY_DUPLICATE_CERTIFICATE).collect();
    /// assert_eq!(dup.len(), 2); // on each Gateway
    /// assert_eq!(dup[0].severity, Severity::Warning);
    /// assert_eq!(
    ///     dup[0].message,
    ///     "Duplicate certificate in multiple gateways [istio-system/gw1 istio-system/gw2] may cause 404s if clients re-use HTTP2 connections."
    /// );
    /// assert_eq!(codes::GATEWAY_DUPLICATE_CERTIFICATE, "IST0138");
    /// ```
    pub const GATEWAY_DUPLICATE_CERTIFICATE: &str = "IST0138";
    /// IngressRouteRulesNotAffected: a gateway-bound VirtualService routes to a host
    /// without a subset while another VirtualService routes that host by subsets, which
    /// the gateway's requests do not go through.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: bookinfo}
    /// spec:
    ///   hosts: ['*']
    ///   gateways: [bookinfo-gateway]
    ///   http: [{route: [{destination: {host: productpage, port: {number: 9080}}}]}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: productpage}
    /// spec:
    ///   hosts: [productpage]
    ///   http: [{route: [{destination: {host: productpage, subset: v1}}]}]
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// let f = found.iter().find(|d| d.code == codes::INGRESS_ROUTE_RULES_NOT_AFFECTED).unwrap();
    /// assert_eq!(f.severity, Severity::Warning);
    /// assert_eq!(
    ///     f.message,
    ///     "Subset in virtual service default/productpage has no effect on ingress gateway default/bookinfo requests"
    /// );
    /// assert_eq!(codes::INGRESS_ROUTE_RULES_NOT_AFFECTED, "IST0140");
    /// ```
    pub const INGRESS_ROUTE_RULES_NOT_AFFECTED: &str = "IST0140";
    /// NoMatchingWorkloadsFound.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Pod
    /// metadata: {name: httpbin, labels: {app: httpbin}}
    /// spec: {containers: [{name: httpbin}]}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny}
    /// spec: {selector: {matchLabels: {app: htpbin}}, action: DENY, rules: [{}]}
    /// ",
    ///     "authz.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::NO_MATCHING_WORKLOADS), "{found:#?}");
    /// assert_eq!(codes::NO_MATCHING_WORKLOADS, "IST0127");
    /// ```
    pub const NO_MATCHING_WORKLOADS: &str = "IST0127";
    /// NoServerCertificateVerificationDestinationLevel.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: ext}
    /// spec: {host: api.example.com, trafficPolicy: {tls: {mode: SIMPLE}}}
    /// ",
    ///     "dr.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::NO_SERVER_CERT_VERIFICATION_DR), "{found:#?}");
    /// assert_eq!(codes::NO_SERVER_CERT_VERIFICATION_DR, "IST0128");
    /// ```
    pub const NO_SERVER_CERT_VERIFICATION_DR: &str = "IST0128";
    /// NoServerCertificateVerificationPortLevel.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: ext}
    /// spec:
    ///   host: api.example.com
    ///   trafficPolicy:
    ///     portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE}}]
    /// ",
    ///     "dr.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::NO_SERVER_CERT_VERIFICATION_PORT), "{found:#?}");
    /// assert_eq!(codes::NO_SERVER_CERT_VERIFICATION_PORT, "IST0129");
    /// ```
    pub const NO_SERVER_CERT_VERIFICATION_PORT: &str = "IST0129";
    /// VirtualServiceUnreachableRule.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - route: [{destination: {host: reviews}}]
    ///   - route: [{destination: {host: ratings}}]
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::VS_UNREACHABLE_RULE), "{found:#?}");
    /// assert_eq!(codes::VS_UNREACHABLE_RULE, "IST0130");
    /// ```
    pub const VS_UNREACHABLE_RULE: &str = "IST0130";
    /// VirtualServiceIneffectiveMatch.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{uri: {prefix: /v1}}]
    ///     route: [{destination: {host: reviews}}]
    ///   - match: [{uri: {prefix: /v1}}, {uri: {prefix: /v2}}]
    ///     route: [{destination: {host: ratings}}]
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::VS_INEFFECTIVE_MATCH), "{found:#?}");
    /// assert_eq!(codes::VS_INEFFECTIVE_MATCH, "IST0131");
    /// ```
    pub const VS_INEFFECTIVE_MATCH: &str = "IST0131";
    /// VirtualServiceHostNotFoundInGateway.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: gw}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [a.example.com]}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: b}
    /// spec: {hosts: [b.example.com], gateways: [gw], http: [{route: [{destination: {host: b}}]}]}
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::VS_HOST_NOT_IN_GATEWAY), "{found:#?}");
    /// assert_eq!(codes::VS_HOST_NOT_IN_GATEWAY, "IST0132");
    /// ```
    pub const VS_HOST_NOT_IN_GATEWAY: &str = "IST0132";
    /// ConflictingGateways: Gateways selecting the same workloads define a server on the same
    /// port with a `hosts` entry in common.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let gateway = |name: &str| format!(
    ///     "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [shop.example.com]}}]\n---\n"
    /// );
    /// let loaded = mesh_core::load::load_str(&(gateway("shop") + &gateway("shop-v2")), "gw.yaml");
    /// let found = mesh_core::check(&loaded);
    /// let conflict = found.iter().find(|d| d.code == codes::CONFLICTING_GATEWAYS).unwrap();
    /// assert_eq!(
    ///     conflict.message,
    ///     "Conflict with gateways default/shop-v2 (workload selector istio=ingressgateway, port 80, hosts shop.example.com)."
    /// );
    /// assert_eq!(codes::CONFLICTING_GATEWAYS, "IST0145");
    /// ```
    pub const CONFLICTING_GATEWAYS: &str = "IST0145";
    /// InvalidGatewayCredential.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Secret
    /// metadata: {name: bad-cert, namespace: istio-system}
    /// stringData: {password: hunter2}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: gw, namespace: istio-system}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers:
    ///   - port: {number: 443, name: https, protocol: HTTPS}
    ///     hosts: [a.example.com]
    ///     tls: {mode: SIMPLE, credentialName: bad-cert}
    /// ",
    ///     "gw.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::INVALID_GATEWAY_CREDENTIAL), "{found:#?}");
    /// assert_eq!(codes::INVALID_GATEWAY_CREDENTIAL, "IST0161");
    /// ```
    pub const INVALID_GATEWAY_CREDENTIAL: &str = "IST0161";
    /// MisplacedAnnotation: an Istio annotation on a kind it does not apply to.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: apps/v1
    /// kind: Deployment
    /// metadata:
    ///   name: fortio
    ///   annotations: {sidecar.istio.io/proxyCPU: 500m}
    /// spec: {template: {metadata: {labels: {app: fortio}}}}
    /// ", "d.yaml");
    /// let found = mesh_core::analyze::analyze(&loaded.objects);
    /// assert!(found.iter().any(|d| d.code == codes::MISPLACED_ANNOTATION), "{found:#?}");
    /// assert_eq!(codes::MISPLACED_ANNOTATION, "IST0107");
    /// ```
    pub const MISPLACED_ANNOTATION: &str = "IST0107";
    /// UnknownAnnotation: an annotation in an `istio.io` domain Istio does not define.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: v1
    /// kind: Service
    /// metadata:
    ///   name: httpbin
    ///   annotations: {networking.istio.io/exportTO: bar}
    /// spec: {ports: [{name: http, port: 8000}]}
    /// ", "s.yaml");
    /// let found = mesh_core::analyze::analyze(&loaded.objects);
    /// assert!(found.iter().any(|d| d.code == codes::UNKNOWN_ANNOTATION), "{found:#?}");
    /// assert_eq!(codes::UNKNOWN_ANNOTATION, "IST0108");
    /// ```
    pub const UNKNOWN_ANNOTATION: &str = "IST0108";
    /// InvalidAnnotation: an Istio annotation whose value the injector refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: v1
    /// kind: Pod
    /// metadata:
    ///   name: p
    ///   annotations: {sidecar.istio.io/interceptionMode: NOPE}
    /// spec: {containers: [{name: app}]}
    /// ", "p.yaml");
    /// let found = mesh_core::analyze::analyze(&loaded.objects);
    /// assert!(found.iter().any(|d| d.code == codes::INVALID_ANNOTATION), "{found:#?}");
    /// assert_eq!(codes::INVALID_ANNOTATION, "IST0125");
    /// ```
    pub const INVALID_ANNOTATION: &str = "IST0125";
    /// DeprecatedAnnotation: an Istio annotation marked deprecated.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: v1
    /// kind: Pod
    /// metadata:
    ///   name: p
    ///   annotations: {sidecar.istio.io/inject: 'false'}
    /// spec: {containers: [{name: app}]}
    /// ", "p.yaml");
    /// let found = mesh_core::analyze::analyze(&loaded.objects);
    /// assert!(found.iter().any(|d| d.code == codes::DEPRECATED_ANNOTATION), "{found:#?}");
    /// assert_eq!(codes::DEPRECATED_ANNOTATION, "IST0135");
    /// ```
    pub const DEPRECATED_ANNOTATION: &str = "IST0135";
    /// IneffectivePolicy.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: strict, namespace: istio-system}
    /// spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}
    /// ",
    ///     "pa.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::INEFFECTIVE_POLICY), "{found:#?}");
    /// assert_eq!(codes::INEFFECTIVE_POLICY, "IST0167");
    /// ```
    pub const INEFFECTIVE_POLICY: &str = "IST0167";
    /// UnknownDestinationRuleHost.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews}
    /// spec: {ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: d}
    /// spec: {host: reviewz, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
    /// ",
    ///     "dr.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::UNKNOWN_DR_HOST), "{found:#?}");
    /// assert_eq!(codes::UNKNOWN_DR_HOST, "IST0174");
    /// ```
    pub const UNKNOWN_DR_HOST: &str = "IST0174";
    /// DestinationRuleSubsetNotSelectPods: a subset no loaded pod matches.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews}
    /// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: v1
    /// kind: Pod
    /// metadata: {name: reviews-v1, labels: {app: reviews, version: v1}}
    /// spec: {containers: [{name: reviews}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec:
    ///   host: reviews
    ///   subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
    /// ",
    ///     "reviews.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// let d = found.iter().find(|d| d.code == codes::SUBSET_SELECTS_NO_PODS).expect("v2");
    /// assert_eq!(d.severity, Severity::Error);
    /// assert!(d.message.contains("Subset v2"), "{}", d.message);
    /// assert_eq!(found.iter().filter(|d| d.code == codes::SUBSET_SELECTS_NO_PODS).count(), 1);
    ///
    /// // a WorkloadEntry the subset selects is an endpoint too
    /// let mut with_vm = loaded.clone();
    /// with_vm.objects.extend(mesh_core::load::load_str("apiVersion: networking.istio.io/v1
    /// kind: WorkloadEntry
    /// metadata: {name: reviews-vm}
    /// spec: {address: 10.0.0.9, labels: {app: reviews, version: v2}}
    /// ", "vm.yaml").objects);
    /// let found = mesh_core::check(&with_vm);
    /// assert!(!found.iter().any(|d| d.code == codes::SUBSET_SELECTS_NO_PODS), "{found:#?}");
    /// assert_eq!(codes::SUBSET_SELECTS_NO_PODS, "IST0173");
    /// ```
    pub const SUBSET_SELECTS_NO_PODS: &str = "IST0173";
    /// MultipleDestinationRulesForHost (inmesh code; Istio merges them, see §3.2).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::codes;
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: a}
    /// spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: b}
    /// spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
    /// ",
    ///     "dr.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert!(found.iter().any(|d| d.code == codes::MULTIPLE_DRS_FOR_HOST), "{found:#?}");
    /// assert_eq!(codes::MULTIPLE_DRS_FOR_HOST, "IM0201");
    /// ```
    pub const MULTIPLE_DRS_FOR_HOST: &str = "IM0201";
    /// The same kind/namespace/name is defined more than once: the last definition wins,
    /// as `kubectl apply` of the same files would leave it, and the earlier ones are not
    /// applied (a warning; see [`Loaded::keep_last_definitions`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let mut all = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
    /// ", "a.yaml");
    /// all.extend(mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews}
    /// ", "b.yaml"));
    /// let found = mesh_core::check(&all);
    /// assert_eq!(found.len(), 1, "{found:#?}");
    /// assert_eq!((found[0].severity, found[0].code), (Severity::Warning, codes::REDEFINED));
    /// assert_eq!(&*found[0].file, "b.yaml");
    /// assert_eq!(codes::REDEFINED, "IM0202");
    /// ```
    ///
    /// [`Loaded::keep_last_definitions`]: crate::load::Loaded::keep_last_definitions
    pub const REDEFINED: &str = "IM0202";
    /// A VirtualService without hosts (a delegate) that no loaded VirtualService delegates
    /// to (inmesh code, a hint: Istio accepts delegates on their own, and the root often
    /// lives in another file).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews-delegate}
    /// spec: {http: [{route: [{destination: {host: reviews}}]}]}
    /// ",
    ///     "delegate.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert_eq!(found.len(), 1, "{found:#?}");
    /// assert_eq!((found[0].severity, found[0].code), (Severity::Info, codes::UNREFERENCED_DELEGATE));
    /// assert_eq!(codes::UNREFERENCED_DELEGATE, "IM0203");
    /// ```
    pub const UNREFERENCED_DELEGATE: &str = "IM0203";
    /// Valid Istio configuration that inmesh does not apply as Envoy would (a header name
    /// that is not an HTTP token, an Envoy formatter inmesh does not expand): a warning.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Severity};
    ///
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - route: [{destination: {host: reviews}}]
    ///     headers: {request: {set: {x-up: '%UPSTREAM_METADATA([\"istio\", \"x\"])%'}}}
    /// ",
    ///     "vs.yaml",
    /// );
    /// let found = mesh_core::check(&loaded);
    /// assert_eq!(found.len(), 1, "{found:#?}");
    /// assert_eq!((found[0].severity, found[0].code), (Severity::Warning, codes::NOT_APPLIED));
    /// assert_eq!(codes::NOT_APPLIED, "IM0013");
    /// ```
    pub const NOT_APPLIED: &str = "IM0013";
}

/// One finding, tied to a file position and a field path.
///
/// Loading ([`crate::load`]), validation ([`crate::validate`]) and analysis
/// ([`crate::analyze`]) all report `Diagnostic`s. Show one with [`Diagnostic::render`] (or
/// [`Sources::render`]), as a one-liner with `Display`, or as JSON with `serde`.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::{codes, Severity};
///
/// let loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews, subnet: v1}
/// ",
///     "reviews.yaml",
/// );
/// let d = &loaded.diagnostics[0];
/// assert_eq!(d.severity, Severity::Error);
/// assert_eq!(d.code, codes::UNKNOWN_FIELD);
/// assert_eq!((&*d.file, d.line, d.column), ("reviews.yaml", 8, 36));
/// assert_eq!(d.path, "spec.http[0].route[0].destination.subnet");
/// assert!(d.help.as_deref().unwrap().starts_with("did you mean `subset`?"));
/// assert!(d.is_error());
/// assert_eq!(
///     d.to_string(),
///     "error[IM0003]: unknown field `subnet` in `spec.http[0].route[0].destination` \
///      (reviews.yaml:8:36 spec.http[0].route[0].destination.subnet)"
/// );
/// let json = serde_json::to_value(d).unwrap();
/// assert_eq!(json["severity"], "error");
/// assert_eq!(json["line"], 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Severity.
    pub severity: Severity,
    /// Code (`IST0101`, `IM0003`, ...).
    pub code: &'static str,
    /// What is wrong, in words a user acts on.
    pub message: String,
    /// File name as given to the loader.
    #[serde(serialize_with = "ser_arc_str")]
    pub file: Arc<str>,
    /// Line (1-based; 0 when unknown).
    pub line: u32,
    /// Column (1-based; 0 when unknown).
    pub column: u32,
    /// Field path (`spec.http[0].route[1].destination.subset`); empty for file-level problems.
    pub path: String,
    /// A hint ("did you mean `subset`?").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

fn ser_arc_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

impl Diagnostic {
    /// A diagnostic at a position.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Diagnostic, Severity};
    /// use mesh_core::model::Location;
    ///
    /// let d = Diagnostic::new(
    ///     Severity::Warning,
    ///     codes::LINT,
    ///     "timeout is longer than the retry budget",
    ///     "vs.yaml".into(),
    ///     Location { line: 12, column: 14 },
    ///     "spec.http[0].timeout",
    /// );
    /// assert!(!d.is_error());
    /// assert_eq!(d.help, None);
    /// assert_eq!(
    ///     d.to_string(),
    ///     "warning[IM0100]: timeout is longer than the retry budget (vs.yaml:12:14 spec.http[0].timeout)"
    /// );
    /// ```
    pub fn new(
        severity: Severity,
        code: &'static str,
        message: impl Into<String>,
        file: Arc<str>,
        at: Location,
        path: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            file,
            line: at.line,
            column: at.column,
            path: path.into(),
            help: None,
        }
    }

    /// An error at a position.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Diagnostic};
    /// use mesh_core::model::Location;
    ///
    /// let d = Diagnostic::error(
    ///     codes::UNKNOWN_FIELD,
    ///     "unknown field `subnet`",
    ///     "vs.yaml".into(),
    ///     Location { line: 3, column: 9 },
    ///     "spec.http[0].route[0].destination.subnet",
    /// )
    /// .with_help("did you mean `subset`?");
    /// assert!(d.is_error());
    /// assert_eq!(d.help.as_deref(), Some("did you mean `subset`?"));
    /// ```
    pub fn error(
        code: &'static str,
        message: impl Into<String>,
        file: Arc<str>,
        at: Location,
        path: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Error, code, message, file, at, path)
    }

    /// Adds a help line.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Diagnostic, Severity};
    /// use mesh_core::model::Location;
    ///
    /// let d = Diagnostic::new(
    ///     Severity::Info,
    ///     codes::LINT,
    ///     "retries without perTryTimeout",
    ///     "vs.yaml".into(),
    ///     Location { line: 9, column: 7 },
    ///     "spec.http[0].retries",
    /// )
    /// .with_help("set `perTryTimeout`");
    /// assert_eq!(d.help.as_deref(), Some("set `perTryTimeout`"));
    /// assert!(d.render(None).ends_with(" = help: set `perTryTimeout`\n"));
    /// ```
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// True for errors.
    ///
    /// # Examples
    ///
    /// ```
    /// // an unmodelled Istio kind is only a warning; a syntax error is an error
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1alpha3
    /// kind: EnvoyFilter
    /// metadata: {name: lua}
    /// spec: {}
    /// ---
    /// kind: [
    /// ",
    ///     "mixed.yaml",
    /// );
    /// let errors: Vec<bool> = loaded.diagnostics.iter().map(|d| d.is_error()).collect();
    /// assert_eq!(errors, [false, true]);
    /// ```
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders like rustc:
    ///
    /// ```text
    /// error[IM0003]: unknown field `subnet`
    ///   --> reviews.yaml:14:9
    ///    |
    /// 14 |         subnet: v1
    ///    |         ^^^^^^ spec.http[0].route[0].destination.subnet
    ///    = help: did you mean `subset`?
    /// ```
    ///
    /// `source` is the file's text, when available, for the source line.
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
    ///   - route:
    ///     - destination:
    ///         host: reviews
    ///         subnet: v1
    /// ";
    /// let loaded = mesh_core::load::load_str(text, "reviews.yaml");
    /// let d = &loaded.diagnostics[0];
    /// let out = d.render(Some(text));
    /// let mut lines = out.lines();
    /// assert_eq!(
    ///     lines.next(),
    ///     Some("error[IM0003]: unknown field `subnet` in `spec.http[0].route[0].destination`")
    /// );
    /// assert_eq!(lines.next(), Some("  --> reviews.yaml:10:9"));
    /// assert_eq!(lines.next(), Some("   |"));
    /// assert_eq!(lines.next(), Some("10 |         subnet: v1"));
    /// assert_eq!(
    ///     lines.next(),
    ///     Some("   |         ^^^^^^ spec.http[0].route[0].destination.subnet")
    /// );
    /// assert!(lines.next().unwrap().starts_with("   = help: did you mean `subset`?"));
    ///
    /// // without the text: the position and the field path only
    /// let short = d.render(None);
    /// assert!(short.contains(" --> reviews.yaml:10:9\n"));
    /// assert!(short.contains(" = at: spec.http[0].route[0].destination.subnet\n"));
    /// ```
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}[{}]: {}", self.severity, self.code, self.message);
        let line_text = source
            .filter(|_| self.line > 0)
            .and_then(|s| s.lines().nth(self.line as usize - 1));
        let gutter = if line_text.is_some() {
            self.line.to_string().len()
        } else {
            1
        };
        let pad = " ".repeat(gutter);
        if self.line > 0 {
            let _ = writeln!(out, "{pad}--> {}:{}:{}", self.file, self.line, self.column);
        } else {
            let _ = writeln!(out, "{pad}--> {}", self.file);
        }
        if let Some(text) = line_text {
            let text = text.trim_end_matches('\r');
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{} | {}", self.line, text);
            let col = (self.column.max(1) - 1) as usize;
            let prefix: String = text
                .chars()
                .take(col)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let width = text
                .chars()
                .skip(col)
                .take_while(|c| !c.is_whitespace() && !matches!(c, ':' | ',' | ']' | '}'))
                .count()
                .max(1);
            let label = if self.path.is_empty() {
                String::new()
            } else {
                format!(" {}", self.path)
            };
            let _ = writeln!(out, "{pad} | {prefix}{}{label}", "^".repeat(width));
        } else if !self.path.is_empty() {
            let _ = writeln!(out, "{pad} = at: {}", self.path);
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} = help: {help}");
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: {} ({}:{}:{}",
            self.severity, self.code, self.message, self.file, self.line, self.column
        )?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        f.write_str(")")
    }
}

/// The text of loaded files, for rendering source lines.
///
/// Every load fills [`Loaded::sources`](crate::load::Loaded::sources); keep it to render
/// diagnostics found later (validation, analysis) with their source lines.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}], timeout: 500us}]}
/// ",
///     "vs.yaml",
/// );
/// assert_eq!(loaded.sources.get("vs.yaml").map(|t| t.lines().count()), Some(4));
/// // istiod rejects sub-millisecond timeouts
/// let found = mesh_core::validate::validate_all(&loaded.objects);
/// let out = loaded.sources.render(&found[0]);
/// assert!(out.starts_with("error[IST0106]: "), "{out}");
/// assert!(out.contains("4 | spec: {hosts: [reviews]"), "{out}");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: HashMap<Arc<str>, Arc<str>>,
}

impl Sources {
    /// Records a file's text.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut sources = mesh_core::diag::Sources::default();
    /// sources.insert("vs.yaml".into(), "kind: VirtualService\n".into());
    /// assert_eq!(sources.get("vs.yaml"), Some("kind: VirtualService\n"));
    /// ```
    pub fn insert(&mut self, file: Arc<str>, text: Arc<str>) {
        self.files.insert(file, text);
    }

    /// The text of `file`.
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = mesh_core::load::load_str("kind: Namespace\n", "ns.yaml");
    /// assert_eq!(loaded.sources.get("ns.yaml"), Some("kind: Namespace\n"));
    /// assert_eq!(loaded.sources.get("other.yaml"), None);
    /// ```
    pub fn get(&self, file: &str) -> Option<&str> {
        self.files.get(file).map(|t| &**t)
    }

    /// Adds all files of `other`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::Sources;
    ///
    /// let mut all = Sources::default();
    /// all.insert("a.yaml".into(), "a: 1\n".into());
    /// let mut more = Sources::default();
    /// more.insert("b.yaml".into(), "b: 2\n".into());
    /// all.extend(more);
    /// assert_eq!(all.get("a.yaml"), Some("a: 1\n"));
    /// assert_eq!(all.get("b.yaml"), Some("b: 2\n"));
    /// ```
    pub fn extend(&mut self, other: Sources) {
        self.files.extend(other.files);
    }

    /// Renders `diag` with its source line.
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = mesh_core::load::load_str(
    ///     "apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, subsetz: []}
    /// ",
    ///     "dr.yaml",
    /// );
    /// let out = loaded.sources.render(&loaded.diagnostics[0]);
    /// assert!(out.starts_with("error[IM0003]: "), "{out}");
    /// assert!(out.contains(" --> dr.yaml:4:23\n"), "{out}");
    /// assert!(out.contains("4 | spec: {host: reviews, subsetz: []}"), "{out}");
    /// ```
    pub fn render(&self, diag: &Diagnostic) -> String {
        diag.render(self.get(&diag.file))
    }
}

/// Sorts diagnostics by file, line, column, then severity (stable for equal keys).
///
/// # Examples
///
/// ```
/// use mesh_core::diag::{codes, sort, Diagnostic, Severity};
/// use mesh_core::model::Location;
///
/// let at = |line, column| Location { line, column };
/// let mut diags = vec![
///     Diagnostic::new(Severity::Info, codes::LINT, "b", "b.yaml".into(), at(1, 1), ""),
///     Diagnostic::new(Severity::Warning, codes::LINT, "late", "a.yaml".into(), at(9, 3), ""),
///     Diagnostic::new(Severity::Warning, codes::LINT, "warn", "a.yaml".into(), at(2, 5), ""),
///     Diagnostic::error(codes::SYNTAX, "err", "a.yaml".into(), at(2, 5), ""),
/// ];
/// sort(&mut diags);
/// let order: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
/// assert_eq!(order, ["err", "warn", "late", "b"]);
/// ```
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.severity).cmp(&(&b.file, b.line, b.column, b.severity))
    });
}

/// Suggests the candidate closest to `word` (Jaro-Winkler ≥ 0.85 or Levenshtein ≤ 2, and
/// never the word itself), for "did you mean" help.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::did_you_mean;
///
/// let fields = ["host", "subset", "port"];
/// assert_eq!(did_you_mean("subnet", fields), Some("subset"));
/// assert_eq!(did_you_mean("Host", fields), Some("host")); // case differs
/// assert_eq!(did_you_mean("weight", fields), None); // nothing close
/// assert_eq!(did_you_mean("ROUNDROBIN", ["ROUND_ROBIN", "RANDOM"]), Some("ROUND_ROBIN"));
/// ```
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lw = word.to_ascii_lowercase();
    let mut best: Option<(&'a str, f64)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let lc = c.to_ascii_lowercase();
        let score = if lc == lw {
            2.0
        } else {
            let lev = strsim::levenshtein(&lw, &lc);
            let jw = strsim::jaro_winkler(&lw, &lc);
            if lev <= 2 && lev < lc.len().max(1) || jw >= 0.85 {
                jw + if lev <= 2 { 0.5 } else { 0.0 }
            } else {
                continue;
            }
        };
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag() -> Diagnostic {
        Diagnostic::error(
            codes::UNKNOWN_FIELD,
            "unknown field `subnet`",
            "vs.yaml".into(),
            Location { line: 3, column: 9 },
            "spec.http[0].route[0].destination.subnet",
        )
        .with_help("did you mean `subset`?")
    }

    #[test]
    fn renders_like_rustc() {
        let src = "a: 1\nb:\n        subnet: v1\n";
        let out = diag().render(Some(src));
        let expected = "error[IM0003]: unknown field `subnet`\n --> vs.yaml:3:9\n  |\n3 |         subnet: v1\n  |         ^^^^^^ spec.http[0].route[0].destination.subnet\n  = help: did you mean `subset`?\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn renders_without_source() {
        let out = diag().render(None);
        assert!(out.contains("--> vs.yaml:3:9"));
        assert!(out.contains("= at: spec.http[0].route[0].destination.subnet"));
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = serde_json::to_value(diag()).unwrap();
        for key in [
            "severity", "code", "message", "file", "line", "column", "path",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["severity"], "error");
        assert_eq!(v["line"], 3);
    }

    #[test]
    fn suggestions() {
        let table: &[(&str, &[&str], Option<&str>)] = &[
            ("subnet", &["host", "subset", "port"], Some("subset")),
            (
                "subnets",
                &["host", "trafficPolicy", "subsets", "exportTo"],
                Some("subsets"),
            ),
            ("services", &["servers", "selector"], Some("servers")),
            ("zzzz", &["host", "subset", "port"], None),
            ("Hosts", &["hosts", "gateways"], Some("hosts")),
            (
                "ROUNDROBIN",
                &["ROUND_ROBIN", "RANDOM"],
                Some("ROUND_ROBIN"),
            ),
        ];
        for (word, cands, want) in table {
            assert_eq!(did_you_mean(word, cands.iter().copied()), *want, "{word}");
        }
    }
}
