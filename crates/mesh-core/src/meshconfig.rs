//! Istio's MeshConfig: the mesh-wide settings istiod reads from the `istio` ConfigMap (key
//! `mesh`) or an IstioOperator's `spec.meshConfig`.
//!
//! What inmesh uses: `trustDomain`, `rootNamespace`, `pathNormalization`,
//! `defaultHttpRetryPolicy` and the `exportTo` defaults (`defaultVirtualServiceExportTo`,
//! `defaultDestinationRuleExportTo`, `defaultServiceExportTo`) (into [`MeshOptions`]) and `extensionProviders` of kinds `envoyExtAuthzHttp` and
//! `envoyExtAuthzGrpc`, the external authorizers that AuthorizationPolicies with
//! `action: CUSTOM` name (`provider: {name: ...}`); the tracer ([`Tracing`], from
//! `enableTracing`, `defaultConfig.tracing` and `defaultProviders.tracing` with the `zipkin`
//! or `opentelemetry` provider it names); `accessLogEncoding`, `accessLogFormat`,
//! `localityLbSetting`, `defaultConfig.gatewayTopology` and `defaultConfig.proxyHeaders`
//! ([`ProxyHeaders`]). Every other
//! MeshConfig field is accepted and not used; other provider kinds (`zipkin`,
//! `prometheus`, ...) are kept as [`Provider::Unsupported`] with a warning, and a
//! CUSTOM policy naming one denies the requests it matches (fail closed). A misspelled field
//! is an error naming its file, line and field path, with a suggestion.
//!
//! ```
//! use mesh_core::meshconfig::{MeshConfig, Provider};
//! use mesh_core::mesh::Mesh;
//!
//! // the `mesh` key of the `istio` ConfigMap, as in Istio's ext-authz task
//! let config = MeshConfig::from_yaml(r#"
//! extensionProviders:
//! - name: "sample-ext-authz-http"
//!   envoyExtAuthzHttp:
//!     service: "ext-authz.foo.svc.cluster.local"
//!     port: "8000"
//!     includeRequestHeadersInCheck: ["x-ext-authz"]
//! "#)?;
//! let Provider::EnvoyExtAuthzHttp(http) = &config.extension_providers[0].provider else { panic!() };
//! assert_eq!((http.host(), http.port), ("ext-authz.foo.svc.cluster.local", 8000));
//! assert_eq!(http.status_on_error, 403); // Envoy's default
//! assert_eq!(http.timeout, std::time::Duration::from_secs(600)); // Istio's default
//!
//! let mesh = Mesh::with_mesh_config(&config);
//! assert!(mesh.options().extension_provider("sample-ext-authz-http").is_some());
//! # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};

use crate::authz::PathNormalization;
use crate::diag::{self, codes, Diagnostic, Severity, Sources};
use crate::load::mesh_config::load_mesh_config;
use crate::load::{LoadError, Loaded};
use crate::model::{Duration, HttpRetry, Source};
use crate::names::MeshOptions;

/// The MeshConfig settings inmesh uses.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::MeshConfig;
/// use mesh_core::names::MeshOptions;
///
/// let config = MeshConfig::from_yaml("
/// trustDomain: corp.example
/// rootNamespace: mesh-root
/// accessLogFile: /dev/stdout   # accepted, not used (the access log is a `tracing` target)
/// ")?;
/// assert_eq!(config.trust_domain.as_deref(), Some("corp.example"));
/// let opts = MeshOptions::from_mesh_config(&config);
/// assert_eq!((opts.trust_domain.as_str(), opts.root_namespace.as_str()), ("corp.example", "mesh-root"));
/// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshConfig {
    /// `trustDomain` (default `cluster.local`).
    pub trust_domain: Option<String>,
    /// `trustDomainAliases`: other trust domains whose identities count as the mesh's own
    /// (a trust domain migration). AuthorizationPolicy principals are matched in each
    /// ([`MeshOptions::trust_domain_aliases`]).
    pub trust_domain_aliases: Vec<String>,
    /// `rootNamespace` (default `istio-system`).
    pub root_namespace: Option<String>,
    /// `extensionProviders`, in order.
    pub extension_providers: Vec<ExtensionProvider>,
    /// `pathNormalization.normalization` (default `BASE`; `DEFAULT` reads as `BASE`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::PathNormalization;
    /// use mesh_core::meshconfig::MeshConfig;
    ///
    /// let config = MeshConfig::from_yaml("pathNormalization: {normalization: MERGE_SLASHES}")?;
    /// assert_eq!(config.path_normalization, Some(PathNormalization::MergeSlashes));
    ///
    /// let err = MeshConfig::from_yaml("pathNormalization: {normalization: MERGE_SLASH}").unwrap_err();
    /// let d = &err.diagnostics[0];
    /// assert_eq!(d.path, "mesh.pathNormalization.normalization");
    /// assert_eq!(d.help.as_deref(), Some("did you mean `MERGE_SLASHES`?"));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub path_normalization: Option<PathNormalization>,
    /// `defaultHttpRetryPolicy`: the retry policy of routes without `retries` and of the
    /// default route of a service no VirtualService claims (unset: Istio's default, 2
    /// retries; `attempts: 0` turns retries off).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    ///
    /// let config = MeshConfig::from_yaml("defaultHttpRetryPolicy: {attempts: 5, retryOn: 5xx}")?;
    /// let retry = config.default_http_retry_policy.unwrap();
    /// assert_eq!((retry.attempts, retry.retry_on.as_deref()), (5, Some("5xx")));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub default_http_retry_policy: Option<HttpRetry>,
    /// `defaultVirtualServiceExportTo`: the `exportTo` of a VirtualService that sets none
    /// (empty: `*`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    ///
    /// let config = MeshConfig::from_yaml("defaultVirtualServiceExportTo: ['.']")?;
    /// assert_eq!(config.default_virtual_service_export_to, ["."]);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub default_virtual_service_export_to: Vec<String>,
    /// `defaultDestinationRuleExportTo`: the `exportTo` of a DestinationRule that sets none
    /// (empty: `*`).
    pub default_destination_rule_export_to: Vec<String>,
    /// `defaultServiceExportTo`: the `exportTo` of a ServiceEntry, or of a Kubernetes
    /// Service without the `networking.istio.io/exportTo` annotation (empty: `*`).
    pub default_service_export_to: Vec<String>,
    /// `accessLogEncoding`: `TEXT` (the default) or `JSON`, how access-log lines are
    /// written (mesh-tower's `accesslog` applies it).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::{AccessLogEncoding, MeshConfig};
    ///
    /// let config = MeshConfig::from_yaml("accessLogEncoding: JSON")?;
    /// assert_eq!(config.access_log_encoding, AccessLogEncoding::Json);
    /// assert_eq!(MeshConfig::default().access_log_encoding, AccessLogEncoding::Text);
    ///
    /// let err = MeshConfig::from_yaml("accessLogEncoding: json").unwrap_err();
    /// assert_eq!(err.diagnostics[0].help.as_deref(), Some("did you mean `JSON`?"));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub access_log_encoding: AccessLogEncoding,
    /// `outboundTrafficPolicy.mode`: what a mesh client does with a destination outside
    /// the registry when its `Sidecar` does not say (unset: Istio's default, `ALLOW_ANY`:
    /// it passes through to the request's own host and port; `REGISTRY_ONLY`: 502).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_core::model::OutboundMode;
    ///
    /// let config = MeshConfig::from_yaml("outboundTrafficPolicy: {mode: REGISTRY_ONLY}")?;
    /// assert_eq!(config.outbound_traffic_policy, Some(OutboundMode::RegistryOnly));
    /// assert_eq!(MeshConfig::default().outbound_traffic_policy, None);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub outbound_traffic_policy: Option<crate::model::OutboundMode>,
    /// `accessLogFormat`: a custom format, with Envoy's command operators: a format string
    /// for `TEXT`, a JSON object of `"key": "%OPERATOR%"` for `JSON` (unset or empty:
    /// Istio's default format). A JSON format that is not a JSON object is reported as a
    /// warning and the default is used, as istiod does.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    ///
    /// let config = MeshConfig::from_yaml(r#"accessLogFormat: "%REQ(:METHOD)% %RESPONSE_CODE%\n""#)?;
    /// assert_eq!(config.access_log_format.as_deref(), Some("%REQ(:METHOD)% %RESPONSE_CODE%\n"));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub access_log_format: Option<String>,
    /// `defaultConfig.gatewayTopology.numTrustedProxies`: the proxies in front of the
    /// gateways trusted to append to `X-Forwarded-For` (see
    /// [`MeshOptions::num_trusted_proxies`]). The rest of `defaultConfig` is not used.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
    /// defaultConfig:
    ///   discoveryAddress: istiod.istio-system.svc:15012
    ///   gatewayTopology: {numTrustedProxies: 2}
    /// ")?;
    /// assert_eq!(config.num_trusted_proxies, Some(2));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub num_trusted_proxies: Option<u32>,
    /// `defaultConfig.gatewayTopology.forwardClientCertDetails`: what gateways do with a
    /// request's `x-forwarded-client-cert` (`None`, or `UNDEFINED`: SANITIZE_SET, Istio's
    /// gateway default). `gatewayTopology.proxyProtocol` is not supported: it is reported
    /// as a warning.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::{ForwardClientCertDetails, MeshConfig};
    ///
    /// let config = MeshConfig::from_yaml("
    /// defaultConfig:
    ///   gatewayTopology: {forwardClientCertDetails: ALWAYS_FORWARD_ONLY}
    /// ")?;
    /// assert_eq!(config.forward_client_cert_details, Some(ForwardClientCertDetails::AlwaysForwardOnly));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub forward_client_cert_details: Option<ForwardClientCertDetails>,
    /// `localityLbSetting`: the mesh-wide locality load balancing, for destinations whose
    /// DestinationRule sets none (istiod `GetLocalityLbSetting`).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
    /// localityLbSetting:
    ///   enabled: true
    ///   failoverPriority: [topology.kubernetes.io/region]
    /// ")?;
    /// let l = config.locality_lb_setting.unwrap();
    /// assert_eq!(l.failover_priority, ["topology.kubernetes.io/region"]);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub locality_lb_setting: Option<crate::model::LocalityLbSetting>,
    /// How requests are traced: what istiod makes of `enableTracing`,
    /// `defaultConfig.tracing` and `defaultProviders.tracing` (see [`Tracing`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::{MeshConfig, TracePropagation};
    ///
    /// // Istio's default install (since 1.22) has no tracer
    /// let config = MeshConfig::from_yaml("rootNamespace: istio-system")?;
    /// assert!(!config.tracing.enabled);
    ///
    /// let config = MeshConfig::from_yaml("
    /// defaultProviders: {tracing: [otel]}
    /// extensionProviders:
    /// - name: otel
    ///   opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317}
    /// defaultConfig:
    ///   tracing: {sampling: 100}
    /// ")?;
    /// assert_eq!(config.tracing.propagation, TracePropagation::W3c);
    /// assert_eq!(config.tracing.sampling_percent, 100.0);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub tracing: Tracing,
    /// `tcpKeepalive`: TCP keepalive on every upstream connection, under the fields a
    /// DestinationRule's `connectionPool.tcp.tcpKeepalive` sets (istiod
    /// `applyTCPKeepalive`; see [`TcpKeepalive::merged`](crate::model::TcpKeepalive::merged)).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("tcpKeepalive: {time: 300s, probes: 4}")?;
    /// let k = config.tcp_keepalive.unwrap();
    /// assert_eq!((k.time, k.probes), (Some(Duration::from_secs(300)), Some(4)));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub tcp_keepalive: Option<crate::model::TcpKeepalive>,
    /// `connectTimeout`: the connect timeout of every upstream connection whose
    /// DestinationRule sets no `connectionPool.tcp.connectTimeout` (Istio's default: 10 s).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("connectTimeout: 2s")?;
    /// assert_eq!(config.connect_timeout, Some(std::time::Duration::from_secs(2)));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub connect_timeout: Option<std::time::Duration>,
    /// `protocolDetectionTimeout`: how long a PERMISSIVE port waits for a client's first
    /// bytes before taking the connection as plaintext (a server-first protocol); none by
    /// default (`0s`: wait), as Istio's.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("protocolDetectionTimeout: 200ms")?;
    /// assert_eq!(config.protocol_detection_timeout, Some(std::time::Duration::from_millis(200)));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub protocol_detection_timeout: Option<std::time::Duration>,
    /// `enableAutoMtls` (default true): a client sends Istio mutual TLS, with no
    /// DestinationRule TLS setting, to the endpoints that run the mesh's mTLS. Off, only a
    /// DestinationRule's `ISTIO_MUTUAL` does.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("enableAutoMtls: false")?;
    /// assert_eq!(config.enable_auto_mtls, Some(false));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub enable_auto_mtls: Option<bool>,
    /// `meshMTLS.minProtocolVersion`: the lowest TLS version a mesh server accepts for
    /// mutual TLS (istiod applies it to inbound listeners only; clients keep TLS 1.2 and
    /// 1.3). `TLSV1_3` makes it TLS 1.3 only; unset, `TLS_AUTO` and `TLSV1_2` keep TLS 1.2
    /// as the lowest (Istio's default); `TLSV1_0` and `TLSV1_1` keep TLS 1.2 too (rustls
    /// has neither), with a warning istiod does not give.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::TlsProtocol;
    ///
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("meshMTLS: {minProtocolVersion: TLSV1_3}")?;
    /// assert_eq!(config.mesh_mtls_min_protocol_version, Some(TlsProtocol::TlsV1_3));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub mesh_mtls_min_protocol_version: Option<crate::model::TlsProtocol>,
    /// `h2UpgradePolicy`: `UPGRADE` sends the requests to every port declared `HTTP` over
    /// HTTP/2 (one multiplexed connection per endpoint), where a DestinationRule's
    /// `connectionPool.http.h2UpgradePolicy` is unset or `DEFAULT`; `DO_NOT_UPGRADE`
    /// (Istio's default) keeps HTTP/1.1. A port whose protocol is sniffed is never
    /// upgraded by this setting (the server's application may speak HTTP/1.1 only).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("h2UpgradePolicy: UPGRADE")?;
    /// assert_eq!(config.h2_upgrade_policy, Some(true));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub h2_upgrade_policy: Option<bool>,
    /// `defaultConfig.proxyHeaders`: which of Envoy's own headers the proxies write (see
    /// [`ProxyHeaders`]; all of them unless disabled, as Istio's default).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
    /// defaultConfig:
    ///   proxyHeaders:
    ///     attemptCount: {disabled: true}
    /// ")?;
    /// assert!(!config.proxy_headers.attempt_count);
    /// assert!(config.proxy_headers.envoy_debug_headers);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub proxy_headers: ProxyHeaders,
    /// `defaultConfig.proxyMetadata` has `ISTIO_META_DNS_CAPTURE` and
    /// `ISTIO_META_DNS_AUTO_ALLOCATE` both `"true"`: the sidecars' DNS proxy gives
    /// ServiceEntries without `addresses` one, so istioctl's IST0134 does not apply.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
    /// defaultConfig:
    ///   proxyMetadata: {ISTIO_META_DNS_CAPTURE: 'true', ISTIO_META_DNS_AUTO_ALLOCATE: 'true'}
    /// ")?;
    /// assert!(config.dns_auto_allocate);
    /// assert!(!mesh_core::meshconfig::MeshConfig::default().dns_auto_allocate);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub dns_auto_allocate: bool,
    /// `defaultConfig.proxyMetadata.ISTIO_META_IDLE_TIMEOUT` (a Go duration): how long a
    /// proxy keeps a downstream HTTP connection that carries no request, as istiod sets
    /// it on its listeners' connection managers (`idle_timeout` of Envoy's
    /// `common_http_protocol_options`; `0s` disables). `None` when unset or unreadable
    /// (a warning): Envoy's default, one hour, applies.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
    /// defaultConfig:
    ///   proxyMetadata: {ISTIO_META_IDLE_TIMEOUT: 15m}
    /// ")?;
    /// assert_eq!(config.idle_timeout, Some(Duration::from_secs(900)));
    /// assert_eq!(mesh_core::meshconfig::MeshConfig::default().idle_timeout, None);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub idle_timeout: Option<std::time::Duration>,
    /// `defaultConfig.proxyMetadata.ISTIO_META_HTTP10` is `"1"`: proxies accept HTTP/1.0
    /// requests (Envoy's `accept_http_10`, which istiod sets on the connection managers of
    /// a proxy with that metadata); otherwise they answer them `426 Upgrade Required`.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
    /// defaultConfig:
    ///   proxyMetadata: {ISTIO_META_HTTP10: '1'}
    /// ")?;
    /// assert!(config.accept_http_10);
    /// assert!(!mesh_core::meshconfig::MeshConfig::default().accept_http_10);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub accept_http_10: bool,
    /// `tlsDefaults`: the TLS settings of gateway servers that terminate TLS (`SIMPLE`,
    /// `MUTUAL`, `OPTIONAL_MUTUAL`) where the server sets none of its own, as istiod's
    /// `applyDownstreamTLSDefaults` applies them before the server's own.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::TlsProtocol;
    ///
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
    /// tlsDefaults: {minProtocolVersion: TLSV1_3, ecdhCurves: [P-256]}
    /// ")?;
    /// assert_eq!(config.tls_defaults.min_protocol_version, Some(TlsProtocol::TlsV1_3));
    /// assert_eq!(config.tls_defaults.ecdh_curves, ["P-256"]);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub tls_defaults: TlsDefaults,
}

/// MeshConfig `tlsDefaults` (a `TLSConfig`): what a gateway server terminating TLS
/// (`SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`) uses where its own `tls` leaves a field unset.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::TlsDefaults;
///
/// let none = TlsDefaults::default();
/// assert!(none.min_protocol_version.is_none() && none.cipher_suites.is_empty() && none.ecdh_curves.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsDefaults {
    /// `minProtocolVersion` (`TLS_AUTO`: none). `TLSV1_0` and `TLSV1_1` are taken as
    /// TLS 1.2, the lowest this mesh offers (with a warning at load).
    pub min_protocol_version: Option<crate::model::TlsProtocol>,
    /// `cipherSuites`: the TLS 1.2 suites, by Envoy's names, in order.
    pub cipher_suites: Vec<String>,
    /// `ecdhCurves`: the key-exchange groups, by Envoy's names (`X25519`, `P-256`,
    /// `P-384`, `X25519MLKEM768`), in order.
    pub ecdh_curves: Vec<String>,
}

/// ProxyConfig `proxyHeaders` (MeshConfig `defaultConfig.proxyHeaders`): which of Envoy's
/// own headers mesh clients, servers and gateways write, as istiod configures them
/// (`GetProxyHeadersFromProxyConfig`). Istio's default: all of them.
///
/// - `attempt_count` (`attemptCount.disabled` unset or false): `x-envoy-attempt-count` on
///   every request sent upstream, `1` on the first try, `2` on the first retry, and so
///   on, replacing any the application sent (Envoy's `include_request_attempt_count` on
///   the outbound and gateway virtual hosts);
/// - `envoy_debug_headers` (`envoyDebugHeaders.disabled` unset or false, the router's
///   `suppress_envoy_headers` off): upstream, `x-envoy-expected-rq-timeout-ms` when a
///   timeout applies (the per-try timeout, else what is left of the route's),
///   `x-envoy-original-path` when a rewrite changed the path and
///   `x-envoy-is-timeout-retry: true` on a retry after a per-try timeout; downstream,
///   `x-envoy-upstream-service-time` (milliseconds from the whole request to the upstream
///   answer's headers) on every answer from upstream.
///
/// - `forwarded_client_cert` (`forwardedClientCert`, APPEND_FORWARD by default): what a
///   mesh server (a sidecar's inbound listener) does with a request's
///   `x-forwarded-client-cert`, as Envoy's `forward_client_cert_details` (`SANITIZE`
///   removes it, `FORWARD_ONLY` passes the caller's unchanged on mTLS,
///   `ALWAYS_FORWARD_ONLY` even in plaintext, where a PERMISSIVE server's caller may then
///   forge it); gateways follow `gatewayTopology.forwardClientCertDetails` instead;
/// - `server` (`server.disabled`, `server.value`): the `server` header a gateway and a mesh
///   server (a sidecar's inbound listener) write on every response, local replies too,
///   replacing the application's (`istio-envoy` by default; `None` when disabled: the
///   application's or upstream's is passed through; a value that cannot be a header value
///   is an error);
/// - `outbound_server`: the `server` header a mesh client (a sidecar's outbound listener)
///   writes on every response it returns to the application: Envoy's default `envoy`
///   (istiod leaves the outbound listener's `server_name` unset), `server.value` when set,
///   `None` when `server` is disabled;
/// - `request_id` (`requestId.disabled` unset or false): mesh clients, servers and gateways
///   give a request without an `x-request-id` a new one (Envoy's `generate_request_id`);
///   off, a request's own is still kept, and one without any starts no sampled trace
///   (Envoy samples by the request id).
///
/// The other `proxyHeaders` fields (`metadataExchangeHeaders`,
/// `setCurrentClientCertDetails`, `preserveHttp1HeaderCase`) are accepted and not used.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::{ForwardClientCertDetails, MeshConfig, ProxyHeaders};
///
/// let default = ProxyHeaders::default();
/// assert!(default.attempt_count && default.envoy_debug_headers && default.request_id);
/// assert_eq!(default.forwarded_client_cert, ForwardClientCertDetails::AppendForward);
/// assert_eq!(default.server.as_deref(), Some("istio-envoy"));
/// assert_eq!(default.outbound_server.as_deref(), Some("envoy"));
/// let config = MeshConfig::from_yaml("
/// defaultConfig:
///   proxyHeaders:
///     envoyDebugHeaders: {disabled: true}
///     forwardedClientCert: SANITIZE
///     server: {disabled: true}
/// ")?;
/// let h = &config.proxy_headers;
/// assert!(h.attempt_count && !h.envoy_debug_headers);
/// assert_eq!(h.forwarded_client_cert, ForwardClientCertDetails::Sanitize);
/// assert_eq!((h.server.as_deref(), h.outbound_server.as_deref()), (None, None));
/// let named = MeshConfig::from_yaml("defaultConfig: {proxyHeaders: {server: {value: shop}}}")?;
/// let h = &named.proxy_headers;
/// assert_eq!((h.server.as_deref(), h.outbound_server.as_deref()), (Some("shop"), Some("shop")));
/// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeaders {
    /// `x-envoy-attempt-count` on upstream requests.
    pub attempt_count: bool,
    /// Envoy's debug headers (`x-envoy-expected-rq-timeout-ms`, `x-envoy-original-path`,
    /// `x-envoy-is-timeout-retry`, `x-envoy-upstream-service-time`).
    pub envoy_debug_headers: bool,
    /// A mesh server's treatment of `x-forwarded-client-cert` (APPEND_FORWARD).
    pub forwarded_client_cert: ForwardClientCertDetails,
    /// The `server` header gateways and mesh servers write (`None`: none, the
    /// application's or the upstream's passes).
    pub server: Option<String>,
    /// The `server` header mesh clients write on the responses they return (`None`: none,
    /// the upstream's passes). Independent of [`ProxyHeaders::server`] once built: MeshConfig
    /// `proxyHeaders.server` sets both.
    pub outbound_server: Option<String>,
    /// A request without an `x-request-id` gets one.
    pub request_id: bool,
}

impl Default for ProxyHeaders {
    fn default() -> Self {
        ProxyHeaders {
            attempt_count: true,
            envoy_debug_headers: true,
            forwarded_client_cert: ForwardClientCertDetails::AppendForward,
            server: Some("istio-envoy".to_owned()),
            outbound_server: Some("envoy".to_owned()),
            request_id: true,
        }
    }
}

/// How requests are traced, as istiod configures Envoy's tracer from MeshConfig:
///
/// - `defaultProviders.tracing` naming an `extensionProviders` entry: `zipkin` propagates
///   B3 (and W3C `traceparent` too with `traceContextOption: USE_B3_WITH_W3C_PROPAGATION`),
///   `opentelemetry` propagates W3C; tracing is on whatever `enableTracing` says. A name
///   no entry defines turns tracing off, as istiod finds no provider.
/// - Otherwise `enableTracing` (default `true`) with the tracer `defaultConfig.tracing`
///   names: `zipkin` propagates B3, `openCensusAgent` its `context` formats (W3C by
///   default). Naming none (`tracing: {}`, or no `tracing`: Istio's default install since
///   1.22, which removed the default `zipkin.istio-system` tracer) means no tracer: no
///   trace header is read or written, only `x-request-id`, as Envoy without a tracer.
/// - `defaultConfig.tracing.sampling`: the percentage of new traces sampled; unset or `0`
///   means Istio's default 1 %, above 100 also 1 % (istiod `proxyConfigSamplingValue`).
///
/// inmesh propagates the headers and keeps the sampling decision; it reports no spans to a
/// collector. Other tracers (`datadog`, `lightstep`, `skywalking`, `stackdriver`) propagate
/// B3 here, with a warning.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::{MeshConfig, TracePropagation, Tracing};
///
/// assert_eq!(Tracing::default(), Tracing { enabled: false, propagation: TracePropagation::B3, sampling_percent: 1.0 });
/// let zipkin = MeshConfig::from_yaml("defaultConfig: {tracing: {zipkin: {address: 'zipkin.istio-system:9411'}}}")?;
/// assert_eq!((zipkin.tracing.enabled, zipkin.tracing.propagation), (true, TracePropagation::B3));
/// let off = MeshConfig::from_yaml("enableTracing: false\ndefaultConfig: {tracing: {zipkin: {address: 'z:9411'}}}")?;
/// assert!(!off.tracing.enabled);
/// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Tracing {
    /// Whether trace headers are written at all. Off, requests keep the trace headers they
    /// came with untouched, and only `x-request-id` is added, as Envoy does without a tracer.
    pub enabled: bool,
    /// The formats written.
    pub propagation: TracePropagation,
    /// Percentage (0 to 100) of new traces sampled; a caller's decision is kept.
    pub sampling_percent: f64,
}

impl Default for Tracing {
    /// Istio's default install since 1.22: no tracer (only `x-request-id`); B3 and 1 %
    /// once a Zipkin tracer is named.
    fn default() -> Self {
        Tracing {
            enabled: false,
            propagation: TracePropagation::B3,
            sampling_percent: 1.0,
        }
    }
}

impl PartialEq for Tracing {
    fn eq(&self, other: &Self) -> bool {
        self.enabled == other.enabled
            && self.propagation == other.propagation
            && self.sampling_percent.to_bits() == other.sampling_percent.to_bits()
    }
}

// Reflexive: `sampling_percent` is compared by its bits, so even a NaN equals itself.
impl Eq for Tracing {}

/// The trace context formats a tracer writes.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::TracePropagation;
///
/// assert_eq!(TracePropagation::default(), TracePropagation::B3); // Envoy's Zipkin tracer
/// assert!(TracePropagation::B3AndW3c.w3c() && TracePropagation::B3AndW3c.b3());
/// assert!(!TracePropagation::W3c.b3());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TracePropagation {
    /// B3 multi-header (`x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`,
    /// `x-b3-sampled`): Envoy's Zipkin tracer.
    #[default]
    B3,
    /// W3C `traceparent` and `tracestate`: Envoy's OpenTelemetry tracer.
    W3c,
    /// Both: Zipkin with `traceContextOption: USE_B3_WITH_W3C_PROPAGATION`.
    B3AndW3c,
}

impl TracePropagation {
    /// Whether B3 headers are written.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mesh_core::meshconfig::TracePropagation::B3.b3());
    /// ```
    pub fn b3(self) -> bool {
        matches!(self, TracePropagation::B3 | TracePropagation::B3AndW3c)
    }

    /// Whether W3C `traceparent` is written.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mesh_core::meshconfig::TracePropagation::W3c.w3c());
    /// ```
    pub fn w3c(self) -> bool {
        matches!(self, TracePropagation::W3c | TracePropagation::B3AndW3c)
    }
}

/// MeshConfig `accessLogEncoding`.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::AccessLogEncoding;
///
/// assert_eq!(AccessLogEncoding::from_name("JSON"), Some(AccessLogEncoding::Json));
/// assert_eq!(AccessLogEncoding::from_name("1"), Some(AccessLogEncoding::Json)); // the enum's number
/// assert_eq!(AccessLogEncoding::from_name("Json"), None);
/// assert_eq!(AccessLogEncoding::Text.name(), "TEXT");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AccessLogEncoding {
    /// `TEXT`: one line in Envoy's format-string syntax (Istio's default format).
    #[default]
    Text,
    /// `JSON`: one JSON object per line (Istio's default JSON keys).
    Json,
}

impl AccessLogEncoding {
    /// The names MeshConfig accepts.
    pub const NAMES: &'static [&'static str] = &["TEXT", "JSON"];

    /// The encoding by its MeshConfig name (or its protobuf number, `0`/`1`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::AccessLogEncoding;
    ///
    /// assert_eq!(AccessLogEncoding::from_name("TEXT"), Some(AccessLogEncoding::Text));
    /// assert_eq!(AccessLogEncoding::from_name("XML"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "TEXT" | "0" => Some(AccessLogEncoding::Text),
            "JSON" | "1" => Some(AccessLogEncoding::Json),
            _ => None,
        }
    }

    /// The MeshConfig name.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::AccessLogEncoding;
    ///
    /// assert_eq!(AccessLogEncoding::Json.name(), "JSON");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            AccessLogEncoding::Text => "TEXT",
            AccessLogEncoding::Json => "JSON",
        }
    }
}

/// One `extensionProviders` entry.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::{ExtAuthzHttp, ExtensionProvider, Provider};
///
/// let p = ExtensionProvider::ext_authz_http("opa", ExtAuthzHttp::new("opa.opa.svc.cluster.local", 8181));
/// assert_eq!(p.name, "opa");
/// assert!(matches!(p.provider, Provider::EnvoyExtAuthzHttp(_)));
/// assert_eq!(p.kind(), "envoyExtAuthzHttp");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionProvider {
    /// `name`, as AuthorizationPolicy `provider.name` refers to it.
    pub name: String,
    /// The provider.
    pub provider: Provider,
}

impl ExtensionProvider {
    /// An `envoyExtAuthzHttp` provider.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::{ExtAuthzHttp, ExtensionProvider};
    /// use mesh_core::names::MeshOptions;
    ///
    /// // registered programmatically, without a MeshConfig file
    /// let opts = MeshOptions::default().with_extension_provider(ExtensionProvider::ext_authz_http(
    ///     "ext-authz",
    ///     ExtAuthzHttp::new("ext-authz.foo.svc.cluster.local", 8000),
    /// ));
    /// assert!(opts.extension_provider("ext-authz").is_some());
    /// ```
    pub fn ext_authz_http(name: impl Into<String>, config: ExtAuthzHttp) -> Self {
        ExtensionProvider {
            name: name.into(),
            provider: Provider::EnvoyExtAuthzHttp(Arc::new(config)),
        }
    }

    /// An `envoyExtAuthzGrpc` provider.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::{ExtAuthzGrpc, ExtensionProvider};
    /// use mesh_core::names::MeshOptions;
    ///
    /// let opts = MeshOptions::default().with_extension_provider(ExtensionProvider::ext_authz_grpc(
    ///     "opa",
    ///     ExtAuthzGrpc::new("opa.opa.svc.cluster.local", 9191),
    /// ));
    /// assert_eq!(opts.extension_provider("opa").unwrap().kind(), "envoyExtAuthzGrpc");
    /// ```
    pub fn ext_authz_grpc(name: impl Into<String>, config: ExtAuthzGrpc) -> Self {
        ExtensionProvider {
            name: name.into(),
            provider: Provider::EnvoyExtAuthzGrpc(Arc::new(config)),
        }
    }

    /// The provider's kind as MeshConfig spells it (`envoyExtAuthzHttp`, `zipkin`, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
    /// extensionProviders:
    /// - name: otel
    ///   opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317}
    /// ")?;
    /// assert_eq!(config.extension_providers[0].kind(), "opentelemetry");
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub fn kind(&self) -> &str {
        match &self.provider {
            Provider::EnvoyExtAuthzHttp(_) => "envoyExtAuthzHttp",
            Provider::EnvoyExtAuthzGrpc(_) => "envoyExtAuthzGrpc",
            Provider::Unsupported(kind) => kind,
        }
    }
}

/// The kind of an extension provider.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::{MeshConfig, Provider};
///
/// let loaded = mesh_core::meshconfig::load_str("
/// extensionProviders:
/// - name: grpc-authz
///   envoyExtAuthzGrpc: {service: ext-authz.foo.svc.cluster.local, port: 9000}
/// - name: tracing
///   zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
/// ", "mesh.yaml");
/// assert!(!loaded.has_errors()); // zipkin is kept, with a warning
/// assert_eq!(loaded.diagnostics[0].path, "mesh.extensionProviders[1].zipkin");
/// let config = loaded.config.unwrap();
/// let Provider::EnvoyExtAuthzGrpc(grpc) = &config.extension_providers[0].provider else { panic!() };
/// assert_eq!((grpc.host(), grpc.port), ("ext-authz.foo.svc.cluster.local", 9000));
/// assert_eq!(config.extension_providers[1].provider, Provider::Unsupported("zipkin".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// `envoyExtAuthzHttp`: an external authorizer spoken to over HTTP.
    EnvoyExtAuthzHttp(Arc<ExtAuthzHttp>),
    /// `envoyExtAuthzGrpc`: an external authorizer spoken to over gRPC
    /// (`envoy.service.auth.v3.Authorization/Check`).
    EnvoyExtAuthzGrpc(Arc<ExtAuthzGrpc>),
    /// Any other kind (its MeshConfig field name): not used by inmesh.
    Unsupported(String),
}

/// `envoyExtAuthzHttp`: Envoy's ext_authz filter with an HTTP service, as Istio configures
/// it. Build one with [`ExtAuthzHttp::new`] and set the fields.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_core::meshconfig::ExtAuthzHttp;
///
/// let mut opa = ExtAuthzHttp::new("opa.opa.svc.cluster.local", 8181);
/// opa.timeout = Duration::from_millis(500);
/// opa.fail_open = true;
/// opa.headers_to_upstream_on_allow = vec!["x-user".into()];
/// assert_eq!(opa.status_on_error, 403);
/// assert!(opa.include_request_headers_in_check.is_empty()); // Envoy's defaults only
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtAuthzHttp {
    /// `service`: `[<namespace>/]<hostname>` of the authorizer (a Kubernetes service host or
    /// a ServiceEntry host).
    pub service: String,
    /// `port`.
    pub port: u16,
    /// `timeout` of the check (Istio's default: 600 s).
    pub timeout: std::time::Duration,
    /// `pathPrefix`, prepended to the original path in the check request.
    pub path_prefix: String,
    /// `failOpen`: let the request through when the authorizer cannot be reached or fails.
    pub fail_open: bool,
    /// `clearRouteCache` (accepted; routes are chosen after authorization here anyway).
    pub clear_route_cache: bool,
    /// `statusOnError`: the status when the authorizer cannot be reached or answers 5xx
    /// (default 403).
    pub status_on_error: u16,
    /// `includeRequestHeadersInCheck` (or the deprecated `includeHeadersInCheck`): request
    /// headers sent to the authorizer besides `Host`, `Method`, `Path`, `Content-Length`
    /// and `Authorization`; exact, `prefix*` or `*suffix`, case-insensitive.
    pub include_request_headers_in_check: Vec<String>,
    /// `includeAdditionalHeadersInCheck`: fixed headers added to the check request.
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// `includeRequestBodyInCheck`: see [`RequestBodyInCheck`].
    pub include_request_body_in_check: Option<RequestBodyInCheck>,
    /// `headersToUpstreamOnAllow`: authorizer response headers set on the request.
    pub headers_to_upstream_on_allow: Vec<String>,
    /// `headersToDownstreamOnAllow`: authorizer response headers added to the response.
    pub headers_to_downstream_on_allow: Vec<String>,
    /// `headersToDownstreamOnDeny`: authorizer response headers in a denial (empty: all).
    pub headers_to_downstream_on_deny: Vec<String>,
}

impl ExtAuthzHttp {
    /// A provider for `service:port` with Istio's defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = mesh_core::meshconfig::ExtAuthzHttp::new("foo/ext-authz.example.com", 8000);
    /// assert_eq!(p.host(), "ext-authz.example.com");
    /// assert_eq!(p.namespace(), Some("foo"));
    /// assert!(!p.fail_open);
    /// ```
    pub fn new(service: impl Into<String>, port: u16) -> Self {
        ExtAuthzHttp {
            service: service.into(),
            port,
            timeout: std::time::Duration::from_secs(600),
            path_prefix: String::new(),
            fail_open: false,
            clear_route_cache: false,
            status_on_error: 403,
            include_request_headers_in_check: Vec::new(),
            include_additional_headers_in_check: BTreeMap::new(),
            include_request_body_in_check: None,
            headers_to_upstream_on_allow: Vec::new(),
            headers_to_downstream_on_allow: Vec::new(),
            headers_to_downstream_on_deny: Vec::new(),
        }
    }

    /// The host of `service` (without the `namespace/` qualifier).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = mesh_core::meshconfig::ExtAuthzHttp::new("ext-authz.foo.svc.cluster.local", 8000);
    /// assert_eq!(p.host(), "ext-authz.foo.svc.cluster.local");
    /// assert_eq!(p.namespace(), None);
    /// ```
    pub fn host(&self) -> &str {
        service_host(&self.service)
    }

    /// The namespace qualifier of `service`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = mesh_core::meshconfig::ExtAuthzHttp::new("bar/opa.example.com", 8181);
    /// assert_eq!(p.namespace(), Some("bar"));
    /// ```
    pub fn namespace(&self) -> Option<&str> {
        service_namespace(&self.service)
    }
}

/// `envoyExtAuthzGrpc`: Envoy's ext_authz filter with a gRPC service
/// (`envoy.service.auth.v3.Authorization/Check`), as Istio configures it (OPA's Envoy
/// plugin, Istio's `ext-authz` sample on its gRPC port). Build one with
/// [`ExtAuthzGrpc::new`] and set the fields.
///
/// # Examples
///
/// ```
/// let config = mesh_core::meshconfig::MeshConfig::from_yaml(r#"
/// extensionProviders:
/// - name: "sample-ext-authz-grpc"
///   envoyExtAuthzGrpc:
///     service: "ext-authz.foo.svc.cluster.local"
///     port: "9000"
///     timeout: 0.5s
///     statusOnError: "503"
/// "#)?;
/// let mesh_core::meshconfig::Provider::EnvoyExtAuthzGrpc(g) = &config.extension_providers[0].provider else { panic!() };
/// assert_eq!((g.host(), g.port, g.status_on_error), ("ext-authz.foo.svc.cluster.local", 9000, 503));
/// assert_eq!(g.timeout, std::time::Duration::from_millis(500));
/// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtAuthzGrpc {
    /// `service`: `[<namespace>/]<hostname>` of the authorizer.
    pub service: String,
    /// `port` (a port the registry declares HTTP/2 or gRPC, or reached over mTLS with ALPN).
    pub port: u16,
    /// `timeout` of the check (Istio's default: 600 s).
    pub timeout: std::time::Duration,
    /// `failOpen`: let the request through when the authorizer cannot be reached or fails.
    pub fail_open: bool,
    /// `clearRouteCache` (accepted; routes are chosen after authorization here anyway).
    pub clear_route_cache: bool,
    /// `statusOnError`: the status when the authorizer cannot be reached or the call fails
    /// (default 403).
    pub status_on_error: u16,
    /// `includeRequestBodyInCheck`: see [`RequestBodyInCheck`].
    pub include_request_body_in_check: Option<RequestBodyInCheck>,
}

impl ExtAuthzGrpc {
    /// A provider for `service:port` with Istio's defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = mesh_core::meshconfig::ExtAuthzGrpc::new("opa/opa.opa.svc.cluster.local", 9191);
    /// assert_eq!((p.host(), p.namespace()), ("opa.opa.svc.cluster.local", Some("opa")));
    /// assert_eq!(p.status_on_error, 403);
    /// assert!(!p.fail_open);
    /// ```
    pub fn new(service: impl Into<String>, port: u16) -> Self {
        ExtAuthzGrpc {
            service: service.into(),
            port,
            timeout: std::time::Duration::from_secs(600),
            fail_open: false,
            clear_route_cache: false,
            status_on_error: 403,
            include_request_body_in_check: None,
        }
    }

    /// The host of `service` (without the `namespace/` qualifier).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = mesh_core::meshconfig::ExtAuthzGrpc::new("ext-authz.foo.svc.cluster.local", 9000);
    /// assert_eq!(p.host(), "ext-authz.foo.svc.cluster.local");
    /// ```
    pub fn host(&self) -> &str {
        service_host(&self.service)
    }

    /// The namespace qualifier of `service`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = mesh_core::meshconfig::ExtAuthzGrpc::new("ext-authz.foo.svc.cluster.local", 9000);
    /// assert_eq!(p.namespace(), None);
    /// ```
    pub fn namespace(&self) -> Option<&str> {
        service_namespace(&self.service)
    }
}

/// The host of a provider's `service`, `[<namespace>/]<hostname>`.
fn service_host(service: &str) -> &str {
    service.split_once('/').map_or(service, |(_, h)| h)
}

/// The namespace qualifier of a provider's `service`, if any.
fn service_namespace(service: &str) -> Option<&str> {
    service.split_once('/').map(|(ns, _)| ns)
}

/// The external authorizer [`resolve_ext_authz`] found: an HTTP or a gRPC one.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::{resolve_ext_authz, ExtAuthzGrpc, ExtAuthzRef, ExtensionProvider};
///
/// let providers = [ExtensionProvider::ext_authz_grpc("opa", ExtAuthzGrpc::new("opa.opa.svc.cluster.local", 9191))];
/// let found = resolve_ext_authz(&providers, &["opa"]).unwrap();
/// assert!(matches!(found, ExtAuthzRef::Grpc(_)));
/// assert_eq!((found.host(), found.port(), found.kind()), ("opa.opa.svc.cluster.local", 9191, "envoyExtAuthzGrpc"));
/// ```
#[derive(Debug, Clone, Copy)]
pub enum ExtAuthzRef<'a> {
    /// `envoyExtAuthzHttp`.
    Http(&'a Arc<ExtAuthzHttp>),
    /// `envoyExtAuthzGrpc`.
    Grpc(&'a Arc<ExtAuthzGrpc>),
}

impl ExtAuthzRef<'_> {
    /// The authorizer's host.
    ///
    /// # Examples
    ///
    /// The host of the provider's `service`, without its `namespace/` qualifier:
    ///
    /// ```
    /// use mesh_core::meshconfig::{resolve_ext_authz, ExtAuthzHttp, ExtensionProvider};
    ///
    /// let providers = [ExtensionProvider::ext_authz_http("opa", ExtAuthzHttp::new("opa/opa.opa.svc.cluster.local", 8181))];
    /// assert_eq!(resolve_ext_authz(&providers, &["opa"]).unwrap().host(), "opa.opa.svc.cluster.local");
    /// ```
    pub fn host(&self) -> &str {
        match self {
            ExtAuthzRef::Http(h) => h.host(),
            ExtAuthzRef::Grpc(g) => g.host(),
        }
    }

    /// The authorizer's port.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::{resolve_ext_authz, ExtAuthzGrpc, ExtAuthzHttp, ExtensionProvider};
    ///
    /// let providers = [
    ///     ExtensionProvider::ext_authz_http("http", ExtAuthzHttp::new("authz.foo.svc.cluster.local", 8000)),
    ///     ExtensionProvider::ext_authz_grpc("grpc", ExtAuthzGrpc::new("authz.foo.svc.cluster.local", 9000)),
    /// ];
    /// assert_eq!(resolve_ext_authz(&providers, &["http"]).unwrap().port(), 8000);
    /// assert_eq!(resolve_ext_authz(&providers, &["grpc"]).unwrap().port(), 9000);
    /// ```
    pub fn port(&self) -> u16 {
        match self {
            ExtAuthzRef::Http(h) => h.port,
            ExtAuthzRef::Grpc(g) => g.port,
        }
    }

    /// The provider kind as MeshConfig spells it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::{resolve_ext_authz, ExtAuthzGrpc, ExtAuthzHttp, ExtensionProvider};
    ///
    /// let providers = [
    ///     ExtensionProvider::ext_authz_http("http", ExtAuthzHttp::new("authz.foo.svc.cluster.local", 8000)),
    ///     ExtensionProvider::ext_authz_grpc("grpc", ExtAuthzGrpc::new("authz.foo.svc.cluster.local", 9000)),
    /// ];
    /// assert_eq!(resolve_ext_authz(&providers, &["http"]).unwrap().kind(), "envoyExtAuthzHttp");
    /// assert_eq!(resolve_ext_authz(&providers, &["grpc"]).unwrap().kind(), "envoyExtAuthzGrpc");
    /// // the same name as the provider's own kind
    /// assert_eq!(resolve_ext_authz(&providers, &["grpc"]).unwrap().kind(), providers[1].kind());
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            ExtAuthzRef::Http(_) => "envoyExtAuthzHttp",
            ExtAuthzRef::Grpc(_) => "envoyExtAuthzGrpc",
        }
    }
}

/// istiod passes `maxRequestBytes` to Envoy's ext_authz `with_request_body`, whose
/// validation refuses 0: the workload's listener would be rejected.
const BODY_LIMIT_ZERO: &str = "includeRequestBodyInCheck.maxRequestBytes must be greater than 0 \
     (Envoy refuses an ext_authz filter buffering no byte): the provider is not used, and \
     CUSTOM policies naming it deny the requests they match";

/// `includeRequestBodyInCheck`: the request body goes with the check, as Envoy's ext_authz
/// `with_request_body` sends it: the mesh server (or gateway) reads up to
/// `maxRequestBytes` of it before asking (more without `allowPartialMessage`: 413), puts
/// them in the check (the HTTP check's body; the gRPC check's `body`, or `raw_body` with
/// `packAsBytes`) with `x-envoy-auth-partial-body: true|false`, and hands the whole body
/// to the application afterwards.
///
/// # Examples
///
/// ```
/// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
/// extensionProviders:
/// - name: opa
///   envoyExtAuthzHttp:
///     service: opa.opa.svc.cluster.local
///     port: 8181
///     includeRequestBodyInCheck: {maxRequestBytes: 4096, allowPartialMessage: true}
/// ")?;
/// let mesh_core::meshconfig::Provider::EnvoyExtAuthzHttp(p) = &config.extension_providers[0].provider else { panic!() };
/// assert_eq!(p.include_request_body_in_check.unwrap().max_request_bytes, 4096);
/// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestBodyInCheck {
    /// `maxRequestBytes`.
    pub max_request_bytes: u32,
    /// `allowPartialMessage`.
    pub allow_partial_message: bool,
    /// `packAsBytes`.
    pub pack_as_bytes: bool,
}

/// A MeshConfig that could not be used: its diagnostics (errors first).
///
/// # Examples
///
/// ```
/// let err = mesh_core::meshconfig::MeshConfig::from_yaml("
/// extensionProviders:
/// - name: ext-authz
///   envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, prot: 8000}
/// ").unwrap_err();
/// let d = &err.diagnostics[0];
/// assert_eq!(d.path, "mesh.extensionProviders[0].envoyExtAuthzHttp.prot");
/// assert!(d.help.as_deref().unwrap().starts_with("did you mean `port`?"), "{:?}", d.help);
/// assert!(err.to_string().starts_with("invalid MeshConfig: <mesh-config>:4:"), "{err}");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid MeshConfig: {}", self.first())]
pub struct MeshConfigError {
    /// The diagnostics.
    pub diagnostics: Vec<Diagnostic>,
}

impl MeshConfigError {
    fn first(&self) -> String {
        self.diagnostics
            .iter()
            .find(|d| d.is_error())
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
            .unwrap_or_default()
    }
}

/// A MeshConfig read from a file: the config (`None` when it has errors), what was found,
/// and the text for rendering diagnostics.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::meshconfig::load_str("
/// apiVersion: v1
/// kind: ConfigMap
/// metadata: {name: istio, namespace: istio-system}
/// data:
///   mesh: |-
///     rootNamespace: istio-system
///     extensionProviders:
///     - name: oauth2-proxy
///       envoyExtAuthzHttp:
///         service: oauth2-proxy.oauth2-proxy.svc.cluster.local
///         port: 4180
///         includeRequestHeadersInCheck: [authorization, cookie]
///         headersToUpstreamOnAllow: [authorization, path, x-auth-request-user]
///         headersToDownstreamOnDeny: [content-type, set-cookie]
/// ", "istio-cm.yaml");
/// assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
/// assert_eq!(loaded.config.unwrap().extension_providers[0].name, "oauth2-proxy");
/// ```
#[derive(Debug, Clone, Default)]
pub struct LoadedMeshConfig {
    /// The config, when it has no errors.
    pub config: Option<MeshConfig>,
    /// Errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
    /// The file's text.
    pub sources: Sources,
}

impl LoadedMeshConfig {
    /// True if any diagnostic is an error.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mesh_core::meshconfig::load_str("trustDomian: corp", "mesh.yaml").has_errors());
    /// assert!(!mesh_core::meshconfig::load_str("trustDomain: corp", "mesh.yaml").has_errors());
    /// ```
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Reads a MeshConfig from text: a bare MeshConfig, the `istio` ConfigMap (`data.mesh`) or
/// an IstioOperator (`spec.meshConfig`); the first such document of the file.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::meshconfig::load_str("
/// apiVersion: install.istio.io/v1alpha1
/// kind: IstioOperator
/// spec:
///   meshConfig:
///     extensionProviders:
///     - name: opa.local
///       envoyExtAuthzHttp:
///         service: opa.local
///         port: 9191
///         statusOnError: '502'
/// ", "operator.yaml");
/// let config = loaded.config.unwrap();
/// let mesh_core::meshconfig::Provider::EnvoyExtAuthzHttp(p) = &config.extension_providers[0].provider else { panic!() };
/// assert_eq!(p.status_on_error, 502);
/// ```
pub fn load_str(text: &str, file: &str) -> LoadedMeshConfig {
    let found = load_mesh_config::<RawMeshConfig>(text, file);
    let mut diagnostics = found.diagnostics;
    let config = found
        .value
        .map(|raw| convert(raw, &found.base, &found.source, &mut diagnostics));
    diag::sort(&mut diagnostics);
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    LoadedMeshConfig {
        config: config.filter(|_| !has_errors),
        diagnostics,
        sources: found.sources,
    }
}

/// Reads a MeshConfig file (see [`load_str`]).
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("mesh.yaml");
/// std::fs::write(&path, "trustDomain: corp.example\n")?;
/// let loaded = mesh_core::meshconfig::load_file(&path)?;
/// assert_eq!(loaded.config.unwrap().trust_domain.as_deref(), Some("corp.example"));
/// assert!(mesh_core::meshconfig::load_file(dir.path().join("missing.yaml")).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_file(path: impl AsRef<Path>) -> Result<LoadedMeshConfig, LoadError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError {
        path: path.to_owned(),
        source,
    })?;
    Ok(load_str(&text, &path.display().to_string()))
}

impl MeshConfig {
    /// Parses MeshConfig YAML (any shape [`load_str`] takes); errors refuse it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    ///
    /// let err = MeshConfig::from_yaml("
    /// extensionProviders:
    /// - name: ext-authz
    ///   envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, port: 0}
    /// ").unwrap_err();
    /// assert_eq!(err.diagnostics[0].message, "port must be in the range [1, 65535], found: 0");
    /// ```
    pub fn from_yaml(text: &str) -> Result<MeshConfig, MeshConfigError> {
        let loaded = load_str(text, "<mesh-config>");
        match loaded.config {
            Some(c) => Ok(c),
            None => Err(MeshConfigError {
                diagnostics: loaded.diagnostics,
            }),
        }
    }

    /// The provider named `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = mesh_core::meshconfig::MeshConfig::from_yaml("
    /// extensionProviders:
    /// - {name: a, envoyExtAuthzHttp: {service: a.foo.svc.cluster.local, port: 80}}
    /// ")?;
    /// assert!(config.provider("a").is_some());
    /// assert!(config.provider("b").is_none());
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub fn provider(&self, name: &str) -> Option<&ExtensionProvider> {
        self.extension_providers.iter().find(|p| p.name == name)
    }

    /// What `meshctl validate` reports for `loaded` in a mesh with this MeshConfig:
    /// [`crate::check`] (analysis in this config's root namespace), plus the CUSTOM
    /// AuthorizationPolicies whose provider is not defined (an error, with istiod's
    /// `available providers are [...] but found "..."`) or not supported here (a warning).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    ///
    /// let config = MeshConfig::from_yaml("
    /// extensionProviders:
    /// - {name: ext-authz, envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, port: 8000}}
    /// ")?;
    /// let loaded = mesh_core::load::load_str(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: ext-authz, namespace: foo}
    /// spec:
    ///   action: CUSTOM
    ///   provider: {name: ext-authz-http}
    ///   rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
    /// "#, "ap.yaml");
    /// let found = config.check(&loaded);
    /// assert_eq!(found.len(), 1);
    /// assert_eq!(found[0].message, r#"available providers are [ext-authz] but found "ext-authz-http""#);
    /// assert_eq!((found[0].line, found[0].path.as_str()), (7, "spec.provider.name"));
    /// assert_eq!(found[0].help.as_deref(), Some("did you mean `ext-authz`?"));
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub fn check(&self, loaded: &Loaded) -> Vec<Diagnostic> {
        let mut out = loaded.diagnostics.clone();
        out.extend(crate::validate::validate_all(&loaded.objects));
        let opts = crate::analyze::AnalyzeOptions {
            root_namespace: self
                .root_namespace
                .clone()
                .unwrap_or_else(|| MeshOptions::default().root_namespace),
            dns_auto_allocate: self.dns_auto_allocate,
            ..crate::analyze::AnalyzeOptions::default()
        };
        out.extend(crate::analyze::analyze_with(&loaded.objects, &opts));
        out.extend(crate::analyze::custom_providers(
            &loaded.objects,
            &self.extension_providers,
        ));
        diag::sort(&mut out);
        out
    }
}

/// The external authorizer for a workload's CUSTOM policies, as istiod picks it: every
/// CUSTOM policy of the workload must name the same provider, which must be defined and
/// usable. `Err` carries istiod's message; the CUSTOM policies then deny what they match.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::{resolve_ext_authz, ExtAuthzHttp, ExtensionProvider};
///
/// let providers = [
///     ExtensionProvider::ext_authz_http("a", ExtAuthzHttp::new("a.foo.svc.cluster.local", 80)),
///     ExtensionProvider::ext_authz_http("b", ExtAuthzHttp::new("b.foo.svc.cluster.local", 80)),
/// ];
/// assert_eq!(resolve_ext_authz(&providers, &["a", "a"]).unwrap().host(), "a.foo.svc.cluster.local");
/// assert_eq!(
///     resolve_ext_authz(&providers, &["a", "b"]).unwrap_err(),
///     "only 1 provider can be used per workload, found multiple providers: [a b]"
/// );
/// assert_eq!(
///     resolve_ext_authz(&providers, &["c"]).unwrap_err(),
///     r#"available providers are [a b] but found "c""#
/// );
/// ```
pub fn resolve_ext_authz<'a>(
    providers: &'a [ExtensionProvider],
    used: &[&str],
) -> Result<ExtAuthzRef<'a>, String> {
    let Some(first) = used.first() else {
        return Err("no provider specified in authorization policy".to_owned());
    };
    if used.iter().any(|u| u != first) {
        return Err(format!(
            "only 1 provider can be used per workload, found multiple providers: [{}]",
            used.join(" ")
        ));
    }
    match providers.iter().find(|p| p.name == *first) {
        None => Err(not_found(providers, first)),
        Some(ExtensionProvider {
            provider: Provider::EnvoyExtAuthzHttp(h),
            ..
        }) => Ok(ExtAuthzRef::Http(h)),
        Some(ExtensionProvider {
            provider: Provider::EnvoyExtAuthzGrpc(g),
            ..
        }) => Ok(ExtAuthzRef::Grpc(g)),
        Some(p) => Err(format!(
            "provider {first} is {}, which inmesh does not support (only envoyExtAuthzHttp \
             and envoyExtAuthzGrpc)",
            p.kind()
        )),
    }
}

/// istiod's message for a provider name that is not defined.
pub(crate) fn not_found(providers: &[ExtensionProvider], name: &str) -> String {
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    format!(
        "available providers are [{}] but found {name:?}",
        names.join(" ")
    )
}

// ---------------------------------------------------------------------------------------
// The schema, as serde reads it (every MeshConfig field is known; those inmesh does not use
// are read and dropped).

/// MeshConfig `outboundTrafficPolicy` (only `mode`; `egressProxy` is a Sidecar's).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOutboundTrafficPolicy {
    #[serde(default)]
    mode: Option<crate::model::OutboundMode>,
}

macro_rules! ignored_fields {
    ($(#[$m:meta])* struct $name:ident { $($field:ident),* $(,)? } keep { $($body:tt)* }) => {
        $(#[$m])*
        #[allow(dead_code)]
        struct $name {
            $($body)*
            $(#[serde(default)] $field: Option<IgnoredAny>,)*
        }
    };
}

ignored_fields! {
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct RawMeshConfig {
        proxy_listen_port, proxy_inbound_listen_port, proxy_http_port,
        ingress_class, ingress_service,
        ingress_controller_mode, ingress_selector, access_log_file,
        enable_envoy_access_log_service,
        disable_envoy_listener_log,
        inbound_traffic_policy, config_sources,
        ca_certificates, dns_refresh_rate,
        inbound_cluster_stat_name, outbound_cluster_stat_name, certificates,
        service_settings, enable_prometheus_merge, verify_certificate_at_client, ca,
        discovery_selectors,
        service_scope_configs, thrift_config, mixer_check_server,
        mixer_report_server, disable_policy_checks, policy_check_fail_open,
        sidecar_to_telemetry_session_affinity, sds_uds_path, rds_refresh_delay, mixer_address,
        auth_policy, enable_sds_token_mount, sds_refresh_delay, mesh_networks,
    } keep {
        #[serde(default)]
        trust_domain: Option<String>,
        #[serde(default)]
        trust_domain_aliases: Vec<String>,
        #[serde(default)]
        outbound_traffic_policy: Option<RawOutboundTrafficPolicy>,
        #[serde(default)]
        root_namespace: Option<String>,
        #[serde(default)]
        extension_providers: Vec<RawProvider>,
        #[serde(default)]
        path_normalization: Option<RawPathNormalization>,
        #[serde(default)]
        default_http_retry_policy: Option<HttpRetry>,
        #[serde(default)]
        default_virtual_service_export_to: Vec<String>,
        #[serde(default)]
        default_destination_rule_export_to: Vec<String>,
        #[serde(default)]
        default_service_export_to: Vec<String>,
        #[serde(default, deserialize_with = "number_or_string")]
        access_log_encoding: Option<String>,
        #[serde(default)]
        access_log_format: Option<String>,
        #[serde(default)]
        default_config: Option<RawProxyConfig>,
        #[serde(default)]
        locality_lb_setting: Option<crate::model::LocalityLbSetting>,
        #[serde(default)]
        enable_tracing: Option<bool>,
        #[serde(default)]
        tcp_keepalive: Option<crate::model::TcpKeepalive>,
        #[serde(default)]
        default_providers: Option<RawDefaultProviders>,
        #[serde(default)]
        enable_auto_mtls: Option<bool>,
        #[serde(default)]
        mesh_m_t_l_s: Option<RawMeshTls>,
        #[serde(default)]
        tls_defaults: Option<RawMeshTls>,
        #[serde(default)]
        h2_upgrade_policy: Option<String>,
        #[serde(default)]
        connect_timeout: Option<Duration>,
        #[serde(default)]
        protocol_detection_timeout: Option<Duration>,
    }
}

/// MeshConfig `meshMTLS` (`TLSConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMeshTls {
    #[serde(default)]
    min_protocol_version: Option<String>,
    #[serde(default)]
    ecdh_curves: Option<Vec<String>>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
}

/// `defaultProviders` (only `tracing` is used).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDefaultProviders {
    #[serde(default)]
    tracing: Vec<String>,
}

/// `defaultConfig.tracing` (a ProxyConfig `Tracing`): the sampling and which tracer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProxyTracing {
    #[serde(default)]
    sampling: Option<f64>,
    #[serde(default)]
    zipkin: Option<IgnoredAny>,
    #[serde(default)]
    open_census_agent: Option<RawOpenCensusAgent>,
    #[serde(default)]
    lightstep: Option<IgnoredAny>,
    #[serde(default)]
    datadog: Option<IgnoredAny>,
    #[serde(default)]
    stackdriver: Option<IgnoredAny>,
}

/// `defaultConfig.tracing.openCensusAgent`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOpenCensusAgent {
    #[serde(default)]
    context: Vec<String>,
}

/// An `extensionProviders[].zipkin` (only `traceContextOption` is used).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawZipkin {
    #[serde(default)]
    trace_context_option: Option<String>,
}

/// `defaultConfig` (a ProxyConfig, with dozens of fields inmesh does not use: read
/// leniently, only `gatewayTopology`, `proxyHeaders` and `tracing` are kept).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProxyConfig {
    #[serde(default)]
    gateway_topology: Option<RawGatewayTopology>,
    #[serde(default)]
    proxy_metadata: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    proxy_headers: Option<RawProxyHeaders>,
    #[serde(default)]
    tracing: Option<RawProxyTracing>,
}

/// `defaultConfig.proxyHeaders` (read leniently, as the rest of ProxyConfig: only
/// `attemptCount`, `envoyDebugHeaders`, `forwardedClientCert`, `server` and `requestId` are
/// used).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProxyHeaders {
    #[serde(default)]
    attempt_count: Option<RawDisabled>,
    #[serde(default)]
    envoy_debug_headers: Option<RawDisabled>,
    #[serde(default, deserialize_with = "number_or_string")]
    forwarded_client_cert: Option<String>,
    #[serde(default)]
    server: Option<RawDisabled>,
    #[serde(default)]
    request_id: Option<RawDisabled>,
}

/// A `proxyHeaders` entry's `disabled` (a `BoolValue`), and `server`'s `value`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDisabled {
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    value: Option<String>,
}

/// `defaultConfig.gatewayTopology`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawGatewayTopology {
    #[serde(default)]
    num_trusted_proxies: Option<u32>,
    #[serde(default, deserialize_with = "number_or_string")]
    forward_client_cert_details: Option<String>,
    /// Any value: only whether it is set matters (not supported).
    #[serde(default)]
    proxy_protocol: Option<serde_json::Value>,
}

/// ProxyConfig's `ForwardClientCertDetails`: how a gateway treats a request's
/// `x-forwarded-client-cert` header (Envoy's `forward_client_cert_details`, applied by
/// `mutateXfccRequestHeader`). On a connection without a verified client certificate
/// every mode but [`AlwaysForwardOnly`](Self::AlwaysForwardOnly) removes the header.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::ForwardClientCertDetails;
///
/// assert_eq!(ForwardClientCertDetails::default(), ForwardClientCertDetails::SanitizeSet);
/// assert_eq!(ForwardClientCertDetails::from_name("APPEND_FORWARD"), Some(ForwardClientCertDetails::AppendForward));
/// assert_eq!(ForwardClientCertDetails::from_name("3"), Some(ForwardClientCertDetails::AppendForward));
/// assert_eq!(ForwardClientCertDetails::from_name("UNDEFINED"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardClientCertDetails {
    /// Never forward the client's header.
    Sanitize,
    /// Forward the client's header only on a mutual TLS connection.
    ForwardOnly,
    /// On a mutual TLS connection, append this connection's client certificate details to
    /// the client's header.
    AppendForward,
    /// On a mutual TLS connection, replace the client's header with this connection's
    /// client certificate details (Istio's gateway default).
    #[default]
    SanitizeSet,
    /// Always forward the client's header unchanged, on any connection.
    AlwaysForwardOnly,
}

impl ForwardClientCertDetails {
    /// The names (and proto numbers) MeshConfig accepts, `UNDEFINED` (0) excepted.
    pub const NAMES: [&'static str; 5] = [
        "SANITIZE",
        "FORWARD_ONLY",
        "APPEND_FORWARD",
        "SANITIZE_SET",
        "ALWAYS_FORWARD_ONLY",
    ];

    /// The mode a MeshConfig name or proto number (`1`..`5`) names; `None` for
    /// `UNDEFINED` (0) and anything else.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::ForwardClientCertDetails;
    ///
    /// assert_eq!(ForwardClientCertDetails::from_name("SANITIZE"), Some(ForwardClientCertDetails::Sanitize));
    /// assert_eq!(ForwardClientCertDetails::from_name("sanitize"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<ForwardClientCertDetails> {
        use ForwardClientCertDetails as F;
        Some(match name {
            "SANITIZE" | "1" => F::Sanitize,
            "FORWARD_ONLY" | "2" => F::ForwardOnly,
            "APPEND_FORWARD" | "3" => F::AppendForward,
            "SANITIZE_SET" | "4" => F::SanitizeSet,
            "ALWAYS_FORWARD_ONLY" | "5" => F::AlwaysForwardOnly,
            _ => return None,
        })
    }
}

/// `pathNormalization`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPathNormalization {
    #[serde(default)]
    normalization: Option<String>,
}

ignored_fields! {
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct RawProvider {
        lightstep, datadog, stackdriver, opencensus, skywalking,
        opentelemetry, prometheus, envoy_file_access_log, envoy_http_als, envoy_tcp_als,
        envoy_otel_als, sds,
    } keep {
        #[serde(default)]
        name: String,
        #[serde(default)]
        envoy_ext_authz_http: Option<RawExtAuthzHttp>,
        #[serde(default)]
        envoy_ext_authz_grpc: Option<RawExtAuthzGrpc>,
        #[serde(default)]
        zipkin: Option<RawZipkin>,
    }
}

/// The provider kinds other than the ext_authz ones, as MeshConfig spells them.
const OTHER_KINDS: [&str; 13] = [
    "zipkin",
    "lightstep",
    "datadog",
    "stackdriver",
    "opencensus",
    "skywalking",
    "opentelemetry",
    "prometheus",
    "envoyFileAccessLog",
    "envoyHttpAls",
    "envoyTcpAls",
    "envoyOtelAls",
    "sds",
];

impl RawProvider {
    fn other_kinds(&self) -> Vec<&'static str> {
        let set = [
            self.zipkin.is_some(),
            self.lightstep.is_some(),
            self.datadog.is_some(),
            self.stackdriver.is_some(),
            self.opencensus.is_some(),
            self.skywalking.is_some(),
            self.opentelemetry.is_some(),
            self.prometheus.is_some(),
            self.envoy_file_access_log.is_some(),
            self.envoy_http_als.is_some(),
            self.envoy_tcp_als.is_some(),
            self.envoy_otel_als.is_some(),
            self.sds.is_some(),
        ];
        OTHER_KINDS
            .iter()
            .zip(set)
            .filter_map(|(k, s)| s.then_some(*k))
            .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawExtAuthzHttp {
    #[serde(default)]
    service: String,
    #[serde(default, deserialize_with = "number_or_string")]
    port: Option<String>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    path_prefix: String,
    #[serde(default)]
    fail_open: bool,
    #[serde(default)]
    clear_route_cache: bool,
    #[serde(default, deserialize_with = "number_or_string")]
    status_on_error: Option<String>,
    #[serde(default)]
    include_headers_in_check: Vec<String>,
    #[serde(default)]
    include_request_headers_in_check: Vec<String>,
    #[serde(default)]
    include_additional_headers_in_check: BTreeMap<String, String>,
    #[serde(default)]
    include_request_body_in_check: Option<RawBody>,
    #[serde(default)]
    headers_to_upstream_on_allow: Vec<String>,
    #[serde(default)]
    headers_to_downstream_on_deny: Vec<String>,
    #[serde(default)]
    headers_to_downstream_on_allow: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawExtAuthzGrpc {
    #[serde(default)]
    service: String,
    #[serde(default, deserialize_with = "number_or_string")]
    port: Option<String>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    fail_open: bool,
    #[serde(default)]
    clear_route_cache: bool,
    #[serde(default, deserialize_with = "number_or_string")]
    status_on_error: Option<String>,
    #[serde(default)]
    include_request_body_in_check: Option<RawBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBody {
    #[serde(default)]
    max_request_bytes: u32,
    #[serde(default)]
    allow_partial_message: bool,
    #[serde(default)]
    pack_as_bytes: bool,
}

/// A number written as a number or a string (protobuf's JSON mapping takes both for
/// `port`; `statusOnError` is a string people write as a number).
fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// The status codes Envoy's `type.v3.StatusCode` names (what istiod accepts for
/// `statusOnError`).
const ENVOY_STATUS_CODES: &[u16] = &[
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

/// Semantic checks (istiod's `ValidateExtensionProviderEnvoyExtAuthzHTTP`) and conversion.
fn convert(
    raw: RawMeshConfig,
    base: &str,
    source: &Source,
    out: &mut Vec<Diagnostic>,
) -> MeshConfig {
    let path_normalization = raw
        .path_normalization
        .as_ref()
        .and_then(|p| p.normalization.as_deref())
        .and_then(|name| {
            let found = PathNormalization::from_name(name);
            if found.is_none() {
                out.push(unknown_name(
                    source,
                    format!("{base}.pathNormalization.normalization"),
                    "pathNormalization",
                    name,
                    &PathNormalization::NAMES,
                ));
            }
            found
        });
    let access_log_encoding = match raw.access_log_encoding.as_deref() {
        None => AccessLogEncoding::Text,
        Some(name) => AccessLogEncoding::from_name(name).unwrap_or_else(|| {
            out.push(unknown_name(
                source,
                format!("{base}.accessLogEncoding"),
                "accessLogEncoding",
                name,
                AccessLogEncoding::NAMES,
            ));
            AccessLogEncoding::Text
        }),
    };
    let access_log_format = raw.access_log_format.filter(|f| !f.is_empty());
    let h2_upgrade_policy = raw
        .h2_upgrade_policy
        .as_deref()
        .and_then(|name| match name {
            "DO_NOT_UPGRADE" => Some(false),
            "UPGRADE" => Some(true),
            _ => {
                out.push(unknown_name(
                    source,
                    format!("{base}.h2UpgradePolicy"),
                    "h2UpgradePolicy",
                    name,
                    &["DO_NOT_UPGRADE", "UPGRADE"],
                ));
                None
            }
        });
    // a `TLSConfig`'s `minProtocolVersion`; `what` says who keeps TLS 1.2 below it
    let mut min_version = |block: &str, name: &str, what: &str| {
        const NAMES: [&str; 5] = ["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"];
        use crate::model::TlsProtocol as P;
        let path = format!("{base}.{block}.minProtocolVersion");
        let v = match name {
            "TLS_AUTO" => P::TlsAuto,
            "TLSV1_0" => P::TlsV1_0,
            "TLSV1_1" => P::TlsV1_1,
            "TLSV1_2" => P::TlsV1_2,
            "TLSV1_3" => P::TlsV1_3,
            _ => {
                out.push(unknown_name(
                    source,
                    path,
                    "minProtocolVersion",
                    name,
                    &NAMES,
                ));
                return None;
            }
        };
        if matches!(v, P::TlsV1_0 | P::TlsV1_1) {
            out.push(value_diagnostic(
                source,
                path,
                Severity::Warning,
                format!("{block}.minProtocolVersion {name} is not supported: {what} TLS 1.2 as the lowest version"),
            ));
        }
        Some(v)
    };
    let mesh_tls = raw.mesh_m_t_l_s.unwrap_or_default();
    let mesh_mtls_min_protocol_version = mesh_tls
        .min_protocol_version
        .as_deref()
        .and_then(|name| min_version("meshMTLS", name, "the mesh's mutual TLS keeps"));
    let tls_defaults = raw.tls_defaults.unwrap_or_default();
    let tls_defaults = TlsDefaults {
        min_protocol_version: tls_defaults
            .min_protocol_version
            .as_deref()
            .and_then(|name| min_version("tlsDefaults", name, "gateway servers keep"))
            .filter(|v| *v != crate::model::TlsProtocol::TlsAuto),
        cipher_suites: tls_defaults.cipher_suites.unwrap_or_default(),
        ecdh_curves: tls_defaults.ecdh_curves.unwrap_or_default(),
    };
    for (field, set) in [
        // (an empty list is no list, as protobuf reads it)
        (
            "ecdhCurves",
            mesh_tls.ecdh_curves.is_some_and(|v| !v.is_empty()),
        ),
        (
            "cipherSuites",
            mesh_tls.cipher_suites.is_some_and(|v| !v.is_empty()),
        ),
    ] {
        if set {
            // istiod: "mesh TLS does not support ECDH curves configuration"; the cipher
            // suites are Envoy's (OpenSSL names), not rustls'
            out.push(value_diagnostic(
                source,
                format!("{base}.meshMTLS.{field}"),
                if field == "ecdhCurves" { Severity::Error } else { Severity::Warning },
                if field == "ecdhCurves" {
                    "mesh TLS does not support ECDH curves configuration".to_owned()
                } else {
                    "meshMTLS.cipherSuites is not applied: the mesh's mutual TLS uses rustls' TLS 1.2 and 1.3 suites".to_owned()
                },
            ));
        }
    }
    if let (AccessLogEncoding::Json, Some(f)) = (access_log_encoding, &access_log_format) {
        // istiod: "error parsing provided json log format, default log format will be used"
        if !matches!(
            serde_json::from_str::<serde_json::Value>(f),
            Ok(serde_json::Value::Object(_))
        ) {
            out.push(value_diagnostic(
                source,
                format!("{base}.accessLogFormat"),
                Severity::Warning,
                "accessLogFormat is not a JSON object: with accessLogEncoding JSON, the default JSON format is used".to_owned(),
            ));
        }
    }
    // istioctl's `ProtocolAddressesAnalyzer`: both settings `"true"`
    let dns_auto_allocate = raw.default_config.as_ref().is_some_and(|d| {
        let on = |k: &str| d.proxy_metadata.get(k).and_then(|v| v.as_str()) == Some("true");
        on("ISTIO_META_DNS_CAPTURE") && on("ISTIO_META_DNS_AUTO_ALLOCATE")
    });
    // istiod's `enableHTTP10`: the metadata is exactly "1"
    let accept_http_10 = raw.default_config.as_ref().is_some_and(|d| {
        d.proxy_metadata
            .get("ISTIO_META_HTTP10")
            .and_then(|v| v.as_str())
            == Some("1")
    });
    // istiod: `time.ParseDuration(node.Metadata.IdleTimeout)`, ignored when it fails
    let idle_timeout = raw
        .default_config
        .as_ref()
        .and_then(|d| d.proxy_metadata.get("ISTIO_META_IDLE_TIMEOUT"))
        .and_then(|v| {
            let parsed = v
                .as_str()
                .and_then(|s| crate::model::Duration::parse(s).ok())
                .filter(|d| d.as_nanos() >= 0);
            if parsed.is_none() {
                out.push(value_diagnostic(
                    source,
                    format!("{base}.defaultConfig.proxyMetadata.ISTIO_META_IDLE_TIMEOUT"),
                    Severity::Warning,
                    format!("ISTIO_META_IDLE_TIMEOUT {v} is not a duration (such as 30m or 1h): the default idle timeout of one hour applies"),
                ));
            }
            parsed.map(|d| d.as_std())
        });
    let topology = raw
        .default_config
        .as_ref()
        .and_then(|d| d.gateway_topology.as_ref());
    let forward_client_cert_details = topology
        .and_then(|t| t.forward_client_cert_details.as_deref())
        .and_then(|name| {
            if matches!(name, "UNDEFINED" | "0") {
                return None;
            }
            let found = ForwardClientCertDetails::from_name(name);
            if found.is_none() {
                out.push(unknown_name(
                    source,
                    format!("{base}.defaultConfig.gatewayTopology.forwardClientCertDetails"),
                    "forwardClientCertDetails",
                    name,
                    &ForwardClientCertDetails::NAMES,
                ));
            }
            found
        });
    if topology.is_some_and(|t| t.proxy_protocol.as_ref().is_some_and(|v| !v.is_null())) {
        // istiod adds Envoy's PROXY protocol listener filter to the gateways: a gateway
        // here would read the PROXY header as the start of the request
        out.push(value_diagnostic(
            source,
            format!("{base}.defaultConfig.gatewayTopology.proxyProtocol"),
            Severity::Warning,
            "gatewayTopology.proxyProtocol is not supported: gateways do not read a PROXY protocol header, so a load balancer sending one breaks every connection, and the client address comes from the connection (or X-Forwarded-For with numTrustedProxies)".to_owned(),
        ));
    }
    let num_trusted_proxies = topology.and_then(|t| t.num_trusted_proxies);
    let proxy_headers = raw
        .default_config
        .as_ref()
        .and_then(|d| d.proxy_headers.as_ref())
        .map_or_else(ProxyHeaders::default, |h| {
            let on = |e: &Option<RawDisabled>| e.as_ref().is_none_or(|e| e.disabled != Some(true));
            let d = ProxyHeaders::default();
            let forwarded_client_cert = match h.forwarded_client_cert.as_deref() {
                None | Some("UNDEFINED" | "0") => d.forwarded_client_cert,
                Some(name) => ForwardClientCertDetails::from_name(name).unwrap_or_else(|| {
                    out.push(unknown_name(
                        source,
                        format!("{base}.defaultConfig.proxyHeaders.forwardedClientCert"),
                        "forwardedClientCert",
                        name,
                        &ForwardClientCertDetails::NAMES,
                    ));
                    d.forwarded_client_cert
                }),
            };
            // (istiod's `GetProxyHeadersFromProxyConfig`: disabled is PASS_THROUGH on every
            // listener; a value names the server on every listener, the outbound one too)
            let (server, outbound_server) = match &h.server {
                Some(s) if s.disabled == Some(true) => (None, None),
                Some(RawDisabled { value: Some(v), .. }) if !v.is_empty() => {
                    if http::HeaderValue::from_str(v).is_err() {
                        out.push(value_diagnostic(
                            source,
                            format!("{base}.defaultConfig.proxyHeaders.server.value"),
                            Severity::Error,
                            format!("proxyHeaders.server.value {v:?} is not a valid header value"),
                        ));
                        (d.server, d.outbound_server)
                    } else {
                        (Some(v.clone()), Some(v.clone()))
                    }
                }
                _ => (d.server, d.outbound_server),
            };
            ProxyHeaders {
                attempt_count: on(&h.attempt_count),
                envoy_debug_headers: on(&h.envoy_debug_headers),
                forwarded_client_cert,
                server,
                outbound_server,
                request_id: on(&h.request_id),
            }
        });
    let mut report = |severity: Severity, code: &'static str, path: String, msg: String| {
        let at = source
            .locate(&path)
            .or_else(|| source.locate_value(&path))
            .unwrap_or_else(|| source.locate_nearest(&path));
        out.push(Diagnostic::new(
            severity,
            code,
            msg,
            source.file.clone(),
            at,
            path,
        ));
    };
    let mut providers = Vec::with_capacity(raw.extension_providers.len());
    let mut seen: Vec<&str> = Vec::new();
    for (i, p) in raw.extension_providers.iter().enumerate() {
        let at = format!("{base}.extensionProviders[{i}]");
        if p.name.is_empty() {
            report(
                Severity::Error,
                codes::VALIDATION,
                format!("{at}.name"),
                format!("extension provider name must not be empty, found empty at index: {i}"),
            );
        } else if seen.contains(&p.name.as_str()) {
            report(
                Severity::Error,
                codes::VALIDATION,
                format!("{at}.name"),
                format!(
                    "extension provider name must be unique, found duplicate: {}",
                    p.name
                ),
            );
        }
        seen.push(&p.name);
        let others = p.other_kinds();
        let kinds = others.len()
            + usize::from(p.envoy_ext_authz_http.is_some())
            + usize::from(p.envoy_ext_authz_grpc.is_some());
        if kinds == 0 {
            report(
                Severity::Error,
                codes::VALIDATION,
                at.clone(),
                format!(
                    "extension provider {:?} sets no provider: expected one of envoyExtAuthzHttp, envoyExtAuthzGrpc, {}",
                    p.name,
                    OTHER_KINDS.join(", ")
                ),
            );
            continue;
        }
        if kinds > 1 {
            report(
                Severity::Error,
                codes::VALIDATION,
                at.clone(),
                format!(
                    "extension provider {:?} sets more than one provider; one entry holds one",
                    p.name
                ),
            );
            continue;
        }
        let provider = match (&p.envoy_ext_authz_http, &p.envoy_ext_authz_grpc) {
            (Some(h), _) => {
                let path = format!("{at}.envoyExtAuthzHttp");
                match ext_authz_http(h, &path, &mut report) {
                    Some(h) => Provider::EnvoyExtAuthzHttp(Arc::new(h)),
                    None => continue,
                }
            }
            (None, Some(g)) => {
                let path = format!("{at}.envoyExtAuthzGrpc");
                match ext_authz_grpc(g, &path, &mut report) {
                    Some(g) => Provider::EnvoyExtAuthzGrpc(Arc::new(g)),
                    None => continue,
                }
            }
            (None, None) => {
                let kind = others[0];
                let msg = if TRACERS.contains(&kind) {
                    format!(
                        "extension provider {:?} ({kind}): inmesh propagates this tracer's \
                         headers when defaultProviders.tracing names it, and reports no spans",
                        p.name
                    )
                } else {
                    format!(
                        "extension provider {:?} ({kind}) is not supported by inmesh (only \
                         envoyExtAuthzHttp and envoyExtAuthzGrpc are): a CUSTOM \
                         AuthorizationPolicy naming it denies the requests it matches",
                        p.name
                    )
                };
                report(
                    Severity::Warning,
                    codes::UNSUPPORTED_KIND,
                    format!("{at}.{kind}"),
                    msg,
                );
                Provider::Unsupported(kind.to_owned())
            }
        };
        providers.push(ExtensionProvider {
            name: p.name.clone(),
            provider,
        });
    }
    let tracing = tracing_of(
        raw.enable_tracing,
        raw.default_config.as_ref().and_then(|d| d.tracing.as_ref()),
        raw.default_providers.as_ref(),
        &raw.extension_providers,
        base,
        &mut report,
    );
    MeshConfig {
        tracing,
        tcp_keepalive: raw.tcp_keepalive,
        connect_timeout: raw
            .connect_timeout
            .map(|d| d.as_std())
            .filter(|d| !d.is_zero()),
        protocol_detection_timeout: raw
            .protocol_detection_timeout
            .map(|d| d.as_std())
            .filter(|d| !d.is_zero()),
        trust_domain: raw.trust_domain.filter(|t| !t.is_empty()),
        trust_domain_aliases: raw
            .trust_domain_aliases
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect(),
        root_namespace: raw.root_namespace.filter(|r| !r.is_empty()),
        extension_providers: providers,
        path_normalization,
        default_http_retry_policy: raw.default_http_retry_policy,
        default_virtual_service_export_to: raw.default_virtual_service_export_to,
        default_destination_rule_export_to: raw.default_destination_rule_export_to,
        default_service_export_to: raw.default_service_export_to,
        access_log_encoding,
        access_log_format,
        // the block without a mode keeps the default (the user's MeshConfig is merged
        // over Istio's defaults, ALLOW_ANY)
        outbound_traffic_policy: raw.outbound_traffic_policy.and_then(|p| p.mode),
        num_trusted_proxies,
        forward_client_cert_details,
        locality_lb_setting: raw.locality_lb_setting,
        enable_auto_mtls: raw.enable_auto_mtls,
        mesh_mtls_min_protocol_version,
        h2_upgrade_policy,
        proxy_headers,
        dns_auto_allocate,
        idle_timeout,
        accept_http_10,
        tls_defaults,
    }
}

/// An `INVALID_VALUE` diagnostic at the value of the field at `path` (else the field, else
/// the nearest thing there is).
fn value_diagnostic(
    source: &Source,
    path: String,
    severity: Severity,
    message: String,
) -> Diagnostic {
    let at = source
        .locate_value(&path)
        .or_else(|| source.locate(&path))
        .unwrap_or_else(|| source.locate_nearest(&path));
    Diagnostic::new(
        severity,
        codes::INVALID_VALUE,
        message,
        source.file.clone(),
        at,
        path,
    )
}

/// An error for an enum field's value that is none of `names`, at the value, with the
/// nearest name as a suggestion.
fn unknown_name(
    source: &Source,
    path: String,
    field: &str,
    name: &str,
    names: &[&str],
) -> Diagnostic {
    let at = source
        .locate_value(&path)
        .or_else(|| source.locate(&path))
        .unwrap_or_else(|| source.locate_nearest(&path));
    let d = Diagnostic::new(
        Severity::Error,
        codes::INVALID_VALUE,
        format!(
            "unknown {field} {name:?}: expected one of {}",
            names.join(", ")
        ),
        source.file.clone(),
        at,
        path,
    );
    match diag::did_you_mean(name, names.iter().copied()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d,
    }
}

/// The provider kinds that are tracers.
const TRACERS: [&str; 7] = [
    "zipkin",
    "lightstep",
    "datadog",
    "stackdriver",
    "opencensus",
    "skywalking",
    "opentelemetry",
];

/// What istiod makes of `defaultProviders.tracing`, `enableTracing` and
/// `defaultConfig.tracing` (its `configureTracing`: a default tracing provider is a
/// Telemetry-API tracer, on whatever `enableTracing` says; else the ProxyConfig tracer
/// when `enableTracing` is on).
fn tracing_of(
    enable_tracing: Option<bool>,
    proxy: Option<&RawProxyTracing>,
    default_providers: Option<&RawDefaultProviders>,
    providers: &[RawProvider],
    base: &str,
    report: &mut impl FnMut(Severity, &'static str, String, String),
) -> Tracing {
    // istiod proxyConfigSamplingValue: unset or 0 is PILOT_TRACE_SAMPLING (1.0), over 100
    // falls back to 1.0
    let sampling_percent = match proxy.and_then(|t| t.sampling) {
        Some(s) if !(0.0..=100.0).contains(&s) => {
            report(
                Severity::Warning,
                codes::INVALID_VALUE,
                format!("{base}.defaultConfig.tracing.sampling"),
                format!("tracing sampling {s} is not a percentage (0 to 100): 1 is used, as istiod does"),
            );
            1.0
        }
        Some(s) if s != 0.0 => s,
        _ => 1.0,
    };
    let default_provider = default_providers.and_then(|d| d.tracing.first());
    let on = |propagation| Tracing {
        enabled: true,
        propagation,
        sampling_percent,
    };
    let Some(name) = default_provider else {
        if !enable_tracing.unwrap_or(true) {
            return Tracing {
                enabled: false,
                ..on(TracePropagation::B3)
            };
        }
        // no tracer named: none (Istio 1.22 removed the default Zipkin tracer; `tracing: {}`
        // is how Istio's docs turn the legacy tracer off)
        let off = Tracing {
            enabled: false,
            ..on(TracePropagation::B3)
        };
        let Some(t) = proxy else {
            return off;
        };
        if let Some(oc) = &t.open_census_agent {
            // OpenCensus agent `context` (W3C_TRACE_CONTEXT by default; GRPC_BIN and
            // CLOUD_TRACE_CONTEXT are not propagated here)
            let has = |c: &str| oc.context.iter().any(|x| x == c);
            let (w3c, b3) = if oc.context.is_empty() {
                (true, false)
            } else {
                (has("W3C_TRACE_CONTEXT"), has("B3"))
            };
            return on(match (w3c, b3) {
                (true, true) => TracePropagation::B3AndW3c,
                (true, false) => TracePropagation::W3c,
                _ => TracePropagation::B3,
            });
        }
        let other = [
            ("lightstep", t.lightstep.is_some()),
            ("datadog", t.datadog.is_some()),
            ("stackdriver", t.stackdriver.is_some()),
        ];
        if let Some((kind, _)) = other.iter().find(|(_, set)| *set) {
            report(
                Severity::Warning,
                codes::UNSUPPORTED_KIND,
                format!("{base}.defaultConfig.tracing.{kind}"),
                format!(
                    "inmesh does not write {kind} trace headers: requests carry B3 headers instead"
                ),
            );
            return on(TracePropagation::B3);
        }
        return if t.zipkin.is_some() {
            on(TracePropagation::B3)
        } else {
            off
        };
    };
    let Some(p) = providers.iter().find(|p| &p.name == name) else {
        report(
            Severity::Warning,
            codes::SCHEMA_WARNING,
            format!("{base}.defaultProviders.tracing[0]"),
            format!(
                "defaultProviders.tracing names {name:?}, which no extensionProviders entry \
                 defines: requests are not traced"
            ),
        );
        return Tracing {
            enabled: false,
            ..on(TracePropagation::B3)
        };
    };
    if let Some(z) = &p.zipkin {
        return on(match z.trace_context_option.as_deref() {
            Some("USE_B3_WITH_W3C_PROPAGATION") => TracePropagation::B3AndW3c,
            _ => TracePropagation::B3,
        });
    }
    if p.opentelemetry.is_some() {
        return on(TracePropagation::W3c);
    }
    match p.other_kinds().first().filter(|k| TRACERS.contains(k)) {
        Some(kind) => {
            report(
                Severity::Warning,
                codes::UNSUPPORTED_KIND,
                format!("{base}.defaultProviders.tracing[0]"),
                format!(
                    "inmesh does not write {kind} trace headers: requests carry B3 headers \
                     instead"
                ),
            );
            on(TracePropagation::B3)
        }
        None => {
            report(
                Severity::Warning,
                codes::SCHEMA_WARNING,
                format!("{base}.defaultProviders.tracing[0]"),
                format!("defaultProviders.tracing names {name:?}, which is not a tracer: requests are not traced"),
            );
            Tracing {
                enabled: false,
                ..on(TracePropagation::B3)
            }
        }
    }
}

/// The fields every ext_authz provider has (istiod's `validateExtensionProviderService`,
/// port, `statusOnError` and timeout checks): whether they are valid (what is wrong is
/// reported), the port, status on error and timeout.
fn ext_authz_common(
    service: &str,
    port: Option<&str>,
    status_on_error: Option<&str>,
    timeout: Option<Duration>,
    at: &str,
    report: &mut impl FnMut(Severity, &'static str, String, String),
) -> (bool, u16, u16, std::time::Duration) {
    let mut ok = true;
    let mut error = |path: String, msg: String| {
        ok = false;
        report(Severity::Error, codes::VALIDATION, path, msg);
    };
    if service.is_empty() {
        error(
            format!("{at}.service"),
            "service must not be empty".to_owned(),
        );
    } else if service.split('/').count() > 2 || service.split('/').any(str::is_empty) {
        error(
            format!("{at}.service"),
            format!(
                "service must be in the form [<namespace>/]<hostname>, found: {:?}",
                service
            ),
        );
    }
    let port_text = port.unwrap_or("0");
    let port = match port_text.parse::<i64>() {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        Ok(p) => {
            error(
                format!("{at}.port"),
                format!("port must be in the range [1, 65535], found: {p}"),
            );
            0
        }
        Err(_) => {
            error(
                format!("{at}.port"),
                format!("port must be a number, found: {port_text:?}"),
            );
            0
        }
    };
    let status_on_error = match status_on_error {
        None | Some("") => 403,
        Some(s) => match s.parse::<u16>() {
            Ok(c) if ENVOY_STATUS_CODES.contains(&c) => c,
            Ok(_) => {
                error(
                    format!("{at}.statusOnError"),
                    format!(
                        "unsupported statusOnError {s}, supported values: {:?}",
                        ENVOY_STATUS_CODES
                    ),
                );
                403
            }
            Err(e) => {
                error(
                    format!("{at}.statusOnError"),
                    format!("invalid statusOnError {s:?}: {e}"),
                );
                403
            }
        },
    };
    let timeout = match timeout {
        None => std::time::Duration::from_secs(600),
        Some(t) if t.as_nanos() <= 0 => {
            error(
                format!("{at}.timeout"),
                format!("timeout must be greater than 0, found: {t}"),
            );
            std::time::Duration::from_secs(600)
        }
        Some(t) => t.as_std(),
    };
    (ok, port, status_on_error, timeout)
}

fn ext_authz_grpc(
    g: &RawExtAuthzGrpc,
    at: &str,
    report: &mut impl FnMut(Severity, &'static str, String, String),
) -> Option<ExtAuthzGrpc> {
    let (ok, port, status_on_error, timeout) = ext_authz_common(
        &g.service,
        g.port.as_deref(),
        g.status_on_error.as_deref(),
        g.timeout,
        at,
        report,
    );
    if g.include_request_body_in_check
        .as_ref()
        .is_some_and(|b| b.max_request_bytes == 0)
    {
        // Envoy refuses the filter (the workload's listener is NACKed): the provider is
        // not used, so CUSTOM policies naming it deny what they match
        report(
            Severity::Warning,
            codes::INVALID_VALUE,
            format!("{at}.includeRequestBodyInCheck.maxRequestBytes"),
            BODY_LIMIT_ZERO.to_owned(),
        );
        return None;
    }
    Some(ExtAuthzGrpc {
        service: g.service.clone(),
        port,
        timeout,
        fail_open: g.fail_open,
        clear_route_cache: g.clear_route_cache,
        status_on_error,
        include_request_body_in_check: g.include_request_body_in_check.as_ref().map(|b| {
            RequestBodyInCheck {
                max_request_bytes: b.max_request_bytes,
                allow_partial_message: b.allow_partial_message,
                pack_as_bytes: b.pack_as_bytes,
            }
        }),
    })
    .filter(|_| ok)
}

fn ext_authz_http(
    h: &RawExtAuthzHttp,
    at: &str,
    report: &mut impl FnMut(Severity, &'static str, String, String),
) -> Option<ExtAuthzHttp> {
    let (mut ok, port, status_on_error, timeout) = ext_authz_common(
        &h.service,
        h.port.as_deref(),
        h.status_on_error.as_deref(),
        h.timeout,
        at,
        report,
    );
    let mut error = |path: String, msg: String| {
        ok = false;
        report(Severity::Error, codes::VALIDATION, path, msg);
    };
    if !h.path_prefix.is_empty() && !h.path_prefix.starts_with('/') {
        error(
            format!("{at}.pathPrefix"),
            format!("pathPrefix must begin with `/`, found: {:?}", h.path_prefix),
        );
    }
    for (field, values) in [
        (
            "includeRequestHeadersInCheck",
            &h.include_request_headers_in_check,
        ),
        ("includeHeadersInCheck", &h.include_headers_in_check),
        (
            "headersToDownstreamOnDeny",
            &h.headers_to_downstream_on_deny,
        ),
        (
            "headersToDownstreamOnAllow",
            &h.headers_to_downstream_on_allow,
        ),
        ("headersToUpstreamOnAllow", &h.headers_to_upstream_on_allow),
    ] {
        for (i, v) in values.iter().enumerate() {
            if v == "*" {
                // istiod names the Go field
                let go = format!("{}{}", field[..1].to_ascii_uppercase(), &field[1..]);
                error(
                    format!("{at}.{field}[{i}]"),
                    format!(
                        "a single wildcard (\"*\") is not supported, change it to either prefix or suffix match: {go}"
                    ),
                );
            }
        }
    }
    for (name, value) in &h.include_additional_headers_in_check {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            error(
                format!("{at}.includeAdditionalHeadersInCheck.{name}"),
                format!("invalid header {name:?}: {value:?}"),
            );
        }
    }
    if h.include_request_body_in_check
        .as_ref()
        .is_some_and(|b| b.max_request_bytes == 0)
    {
        // Envoy refuses the filter (the workload's listener is NACKed): the provider is
        // not used, so CUSTOM policies naming it deny what they match
        report(
            Severity::Warning,
            codes::INVALID_VALUE,
            format!("{at}.includeRequestBodyInCheck.maxRequestBytes"),
            BODY_LIMIT_ZERO.to_owned(),
        );
        return None;
    }
    if !h.include_headers_in_check.is_empty() {
        report(
            Severity::Info,
            codes::LINT,
            format!("{at}.includeHeadersInCheck"),
            "includeHeadersInCheck is deprecated: use includeRequestHeadersInCheck".to_owned(),
        );
    }
    if !ok {
        return None;
    }
    let include = if h.include_request_headers_in_check.is_empty() {
        h.include_headers_in_check.clone()
    } else {
        h.include_request_headers_in_check.clone()
    };
    Some(ExtAuthzHttp {
        service: h.service.clone(),
        port,
        timeout,
        path_prefix: h.path_prefix.clone(),
        fail_open: h.fail_open,
        clear_route_cache: h.clear_route_cache,
        status_on_error,
        include_request_headers_in_check: include,
        include_additional_headers_in_check: h.include_additional_headers_in_check.clone(),
        include_request_body_in_check: h.include_request_body_in_check.as_ref().map(|b| {
            RequestBodyInCheck {
                max_request_bytes: b.max_request_bytes,
                allow_partial_message: b.allow_partial_message,
                pack_as_bytes: b.pack_as_bytes,
            }
        }),
        headers_to_upstream_on_allow: h.headers_to_upstream_on_allow.clone(),
        headers_to_downstream_on_allow: h.headers_to_downstream_on_allow.clone(),
        headers_to_downstream_on_deny: h.headers_to_downstream_on_deny.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(c: &MeshConfig, i: usize) -> &ExtAuthzHttp {
        match &c.extension_providers[i].provider {
            Provider::EnvoyExtAuthzHttp(h) => h,
            other => panic!("not http: {other:?}"),
        }
    }

    #[test]
    fn grpc_provider_validation() {
        let loaded = load_str(
            "extensionProviders:\n- name: g\n  envoyExtAuthzGrpc: {service: '', port: 0, statusOnError: '999', timeout: 0s}\n",
            "m.yaml",
        );
        let paths: Vec<&str> = loaded.diagnostics.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "mesh.extensionProviders[0].envoyExtAuthzGrpc.service",
                "mesh.extensionProviders[0].envoyExtAuthzGrpc.port",
                "mesh.extensionProviders[0].envoyExtAuthzGrpc.statusOnError",
                "mesh.extensionProviders[0].envoyExtAuthzGrpc.timeout",
            ],
            "{:?}",
            loaded.diagnostics
        );
        assert!(loaded.config.is_none());
        let unknown = load_str(
            "extensionProviders:\n- name: g\n  envoyExtAuthzGrpc: {service: a.b, port: 1, pathPrefix: /x}\n",
            "m.yaml",
        );
        assert!(unknown.has_errors(), "gRPC has no pathPrefix");
    }

    /// Istio's "External Authorization" task (samples/extauthz), the `istio` ConfigMap.
    #[test]
    fn access_log_encoding_and_format() {
        let c = MeshConfig::from_yaml("accessLogEncoding: 1\naccessLogFormat: ''").unwrap();
        assert_eq!(c.access_log_encoding, AccessLogEncoding::Json);
        assert_eq!(c.access_log_format, None, "empty: the default format");
        // a JSON format that is not an object: a warning, the default is used
        let loaded = load_str(
            "accessLogEncoding: JSON\naccessLogFormat: '[1]'",
            "mesh.yaml",
        );
        assert_eq!(loaded.diagnostics.len(), 1, "{:?}", loaded.diagnostics);
        assert_eq!(loaded.diagnostics[0].severity, Severity::Warning);
        assert_eq!(loaded.diagnostics[0].path, "mesh.accessLogFormat");
        assert!(loaded.config.is_some());
        // a TEXT format is any string
        let c = MeshConfig::from_yaml("accessLogFormat: '[1]'").unwrap();
        assert_eq!(c.access_log_format.as_deref(), Some("[1]"));
        let err = MeshConfig::from_yaml("accessLogEncoding: XML").unwrap_err();
        assert_eq!(err.diagnostics[0].path, "mesh.accessLogEncoding");
    }

    #[test]
    fn istio_ext_authz_task_configmap() {
        let text = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: |-
    # Add the following content to define the external authorizers.
    extensionProviders:
    - name: "sample-ext-authz-grpc"
      envoyExtAuthzGrpc:
        service: "ext-authz.foo.svc.cluster.local"
        port: "9000"
    - name: "sample-ext-authz-http"
      envoyExtAuthzHttp:
        service: "ext-authz.foo.svc.cluster.local"
        port: "8000"
        includeRequestHeadersInCheck: ["x-ext-authz"]
"#;
        let loaded = load_str(text, "istio.yaml");
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let c = loaded.config.unwrap();
        assert_eq!(c.extension_providers.len(), 2);
        let Provider::EnvoyExtAuthzGrpc(g) = &c.extension_providers[0].provider else {
            panic!("{:?}", c.extension_providers[0]);
        };
        assert_eq!(
            (g.host(), g.port),
            ("ext-authz.foo.svc.cluster.local", 9000)
        );
        assert_eq!((g.status_on_error, g.fail_open), (403, false));
        let h = http(&c, 1);
        assert_eq!(
            (h.service.as_str(), h.port),
            ("ext-authz.foo.svc.cluster.local", 8000)
        );
        assert_eq!(h.include_request_headers_in_check, ["x-ext-authz"]);
        assert_eq!(h.status_on_error, 403);
        assert!(!h.fail_open);
    }

    /// oauth2-proxy behind Istio (the common IstioOperator / Helm values shape).
    #[test]
    fn oauth2_proxy_operator() {
        let text = r#"apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  meshConfig:
    accessLogFile: /dev/stdout
    trustDomain: corp.example
    extensionProviders:
    - name: oauth2-proxy
      envoyExtAuthzHttp:
        service: oauth2-proxy.oauth2-proxy.svc.cluster.local
        port: 4180
        timeout: 1.5s
        includeRequestHeadersInCheck:
        - authorization
        - cookie
        headersToUpstreamOnAllow:
        - authorization
        - path
        - x-auth-request-user
        - x-auth-request-email
        - x-auth-request-access-token
        headersToDownstreamOnAllow:
        - set-cookie
        headersToDownstreamOnDeny:
        - content-type
        - set-cookie
"#;
        let loaded = load_str(text, "operator.yaml");
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let c = loaded.config.unwrap();
        assert_eq!(c.trust_domain.as_deref(), Some("corp.example"));
        let h = http(&c, 0);
        assert_eq!(h.timeout, std::time::Duration::from_millis(1500));
        assert_eq!(h.headers_to_upstream_on_allow.len(), 5);
        assert_eq!(h.headers_to_downstream_on_allow, ["set-cookie"]);
        assert_eq!(
            h.headers_to_downstream_on_deny,
            ["content-type", "set-cookie"]
        );
    }

    /// OPA's envoy plugin as an HTTP provider, bare MeshConfig.
    #[test]
    fn opa_bare_with_prefix_and_additional_headers() {
        let text = "
extensionProviders:
- name: opa-ext-authz
  envoyExtAuthzHttp:
    service: opa/opa.opa.svc.cluster.local
    port: 8181
    pathPrefix: /v1/data/authz
    failOpen: true
    statusOnError: 503
    includeAdditionalHeadersInCheck:
      x-ext-authz-source: istio
";
        let c = MeshConfig::from_yaml(text).unwrap();
        let h = http(&c, 0);
        assert_eq!(
            (h.namespace(), h.host()),
            (Some("opa"), "opa.opa.svc.cluster.local")
        );
        assert_eq!(h.path_prefix, "/v1/data/authz");
        assert!(h.fail_open);
        assert_eq!(h.status_on_error, 503);
        assert_eq!(
            h.include_additional_headers_in_check["x-ext-authz-source"],
            "istio"
        );
    }

    #[test]
    fn errors_are_positioned() {
        // (yaml, path, line, message contains)
        let cases: &[(&str, &str, u32, &str)] = &[
            (
                "trustDomian: x\n",
                "mesh.trustDomian",
                1,
                "unknown field `trustDomian`",
            ),
            (
                "extensionProviders:\n- name: a\n  envoyExtAuthzHtp: {}\n",
                "mesh.extensionProviders[0].envoyExtAuthzHtp",
                3,
                "unknown field",
            ),
            (
                "extensionProviders:\n- name: a\n  envoyExtAuthzHttp:\n    service: a.b\n    port: 80\n    pathPrefix: check\n",
                "mesh.extensionProviders[0].envoyExtAuthzHttp.pathPrefix",
                6,
                "pathPrefix must begin with `/`, found: \"check\"",
            ),
            (
                "extensionProviders:\n- name: a\n  envoyExtAuthzHttp: {service: a.b, port: 80, statusOnError: '999'}\n",
                "mesh.extensionProviders[0].envoyExtAuthzHttp.statusOnError",
                3,
                "unsupported statusOnError 999",
            ),
            (
                "extensionProviders:\n- name: a\n  envoyExtAuthzHttp: {service: a.b, port: 80, headersToUpstreamOnAllow: ['*']}\n",
                "mesh.extensionProviders[0].envoyExtAuthzHttp.headersToUpstreamOnAllow[0]",
                3,
                "a single wildcard (\"*\") is not supported, change it to either prefix or suffix match: HeadersToUpstreamOnAllow",
            ),
            (
                "extensionProviders:\n- {name: a, envoyExtAuthzHttp: {service: a.b, port: 80}}\n- {name: a, envoyExtAuthzHttp: {service: a.b, port: 80}}\n",
                "mesh.extensionProviders[1].name",
                3,
                "extension provider name must be unique, found duplicate: a",
            ),
            (
                "extensionProviders:\n- {name: a}\n",
                "mesh.extensionProviders[0]",
                2,
                "sets no provider",
            ),
            (
                "extensionProviders:\n- {name: a, envoyExtAuthzHttp: {service: a.b, port: 80, timeout: 5}}\n",
                "mesh.extensionProviders[0].envoyExtAuthzHttp.timeout",
                2,
                "expected a duration string",
            ),
        ];
        for (yaml, path, line, msg) in cases {
            let loaded = load_str(yaml, "mesh.yaml");
            assert!(loaded.config.is_none(), "{yaml}");
            let d = loaded
                .diagnostics
                .iter()
                .find(|d| d.is_error())
                .unwrap_or_else(|| panic!("{yaml}: {:?}", loaded.diagnostics));
            assert_eq!(d.path, *path, "{yaml}");
            assert_eq!(d.line, *line, "{yaml}: {d}");
            assert!(d.message.contains(msg), "{yaml}: {d}");
        }
    }

    #[test]
    fn configmap_block_positions_map_into_the_file() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio}\ndata:\n  mesh: |\n    extensionProviders:\n    - name: a\n      envoyExtAuthzHttp: {service: a.b, prot: 80}\n";
        let loaded = load_str(text, "cm.yaml");
        let d = &loaded.diagnostics[0];
        assert_eq!(
            d.path,
            "data.mesh.extensionProviders[0].envoyExtAuthzHttp.prot"
        );
        assert_eq!((d.line, d.column), (8, 41), "{d}");
        assert!(d
            .help
            .as_deref()
            .unwrap()
            .starts_with("did you mean `port`?"));
    }

    #[test]
    fn shapes_and_defaults() {
        assert_eq!(MeshConfig::from_yaml("").unwrap(), MeshConfig::default());
        assert_eq!(MeshConfig::from_yaml("{}").unwrap(), MeshConfig::default());
        // another ConfigMap only: no MeshConfig found
        let err = MeshConfig::from_yaml(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {x: y}\n",
        )
        .unwrap_err();
        assert!(err.diagnostics[0]
            .message
            .starts_with("no MeshConfig found"));
        // every MeshConfig field is known
        let c = MeshConfig::from_yaml(
            "defaultConfig: {holdApplicationUntilProxyStarts: true}\noutboundTrafficPolicy: {mode: REGISTRY_ONLY}\nenablePrometheusMerge: true\nmeshMTLS: {minProtocolVersion: TLSV1_3}\nrootNamespace: mesh-root\n",
        )
        .unwrap();
        assert_eq!(c.root_namespace.as_deref(), Some("mesh-root"));
    }

    #[test]
    fn body_in_check_needs_a_limit() {
        let yaml = |body: &str| {
            format!(
                "extensionProviders:\n- name: opa\n  envoyExtAuthzHttp: {{service: opa.opa.svc.cluster.local, port: 8181, includeRequestBodyInCheck: {body}}}\n"
            )
        };
        let ok = MeshConfig::from_yaml(&yaml("{maxRequestBytes: 1024}")).unwrap();
        assert_eq!(ok.extension_providers.len(), 1);
        // no limit (0): a warning, and the provider is dropped (CUSTOM policies naming it
        // deny), the rest of the MeshConfig kept
        let loaded = load_str(&yaml("{allowPartialMessage: true}"), "mesh.yaml");
        assert!(loaded.config.unwrap().extension_providers.is_empty());
        let d = &loaded.diagnostics;
        assert!(
            d.iter()
                .any(|d| d.message.contains("maxRequestBytes must be greater than 0")),
            "{d:?}"
        );
    }

    #[test]
    fn idle_timeout_from_proxy_metadata() {
        let idle = |y: &str| load_str(y, "mesh.yaml");
        let ok = idle("defaultConfig: {proxyMetadata: {ISTIO_META_IDLE_TIMEOUT: 1h30m}}");
        assert!(ok.diagnostics.is_empty(), "{:?}", ok.diagnostics);
        assert_eq!(
            ok.config.unwrap().idle_timeout,
            Some(std::time::Duration::from_secs(5400))
        );
        // istiod ignores what Go's time.ParseDuration refuses (and Envoy refuses the
        // negative duration Go takes): the default applies, warned
        for bad in ["'10'", "soon", "-5s", "30"] {
            let loaded = idle(&format!(
                "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_IDLE_TIMEOUT: {bad}\n"
            ));
            assert_eq!(loaded.config.as_ref().unwrap().idle_timeout, None, "{bad}");
            let [d] = loaded.diagnostics.as_slice() else {
                panic!("{bad}: {:?}", loaded.diagnostics)
            };
            assert_eq!(d.severity, Severity::Warning);
            assert_eq!(d.line, 3, "{bad}");
            assert!(d.message.contains("is not a duration"), "{}", d.message);
        }
    }

    #[test]
    fn proxy_headers_as_istio_reads_them() {
        let ph = |y: &str| MeshConfig::from_yaml(y).map(|c| c.proxy_headers);
        assert_eq!(ph("{}").unwrap(), ProxyHeaders::default());
        let off = ph("defaultConfig: {proxyHeaders: {attemptCount: {disabled: true}, requestId: {disabled: true}, envoyDebugHeaders: {disabled: false}}}").unwrap();
        assert!(!off.attempt_count && !off.request_id && off.envoy_debug_headers);
        // numbers name the modes too; UNDEFINED is the default
        let f = |y: &str| ph(y).unwrap().forwarded_client_cert;
        assert_eq!(
            f("defaultConfig: {proxyHeaders: {forwardedClientCert: 1}}"),
            ForwardClientCertDetails::Sanitize
        );
        assert_eq!(
            f("defaultConfig: {proxyHeaders: {forwardedClientCert: UNDEFINED}}"),
            ForwardClientCertDetails::AppendForward
        );
        // the server's value must be a header value
        let err = ph("defaultConfig: {proxyHeaders: {server: {value: \"a\\nb\"}}}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxyHeaders.server.value"), "{err}");
        assert_eq!(
            ph("defaultConfig: {proxyHeaders: {server: {value: edge}}}")
                .unwrap()
                .server
                .as_deref(),
            Some("edge")
        );
    }

    #[test]
    fn h2_upgrade_policy() {
        let opts =
            |yaml: &str| MeshOptions::from_mesh_config(&MeshConfig::from_yaml(yaml).unwrap());
        assert!(opts("h2UpgradePolicy: UPGRADE").h2_upgrade);
        assert!(!opts("h2UpgradePolicy: DO_NOT_UPGRADE").h2_upgrade);
        assert!(!opts("{}").h2_upgrade);
        let err = MeshConfig::from_yaml("h2UpgradePolicy: UPGRADED").unwrap_err();
        let d = &err.diagnostics[0];
        assert!(
            d.message.contains("unknown h2UpgradePolicy \"UPGRADED\""),
            "{}",
            d.message
        );
        assert_eq!(d.help.as_deref(), Some("did you mean `UPGRADE`?"));
    }

    #[test]
    fn gateway_topology() {
        use ForwardClientCertDetails as F;
        let opts =
            |yaml: &str| MeshOptions::from_mesh_config(&MeshConfig::from_yaml(yaml).unwrap());
        let fccd = |v: &str| {
            opts(&format!(
                "defaultConfig: {{gatewayTopology: {{forwardClientCertDetails: {v}}}}}"
            ))
            .forward_client_cert_details
        };
        let cases = [
            ("SANITIZE", F::Sanitize),
            ("FORWARD_ONLY", F::ForwardOnly),
            ("APPEND_FORWARD", F::AppendForward),
            ("SANITIZE_SET", F::SanitizeSet),
            ("ALWAYS_FORWARD_ONLY", F::AlwaysForwardOnly),
            ("5", F::AlwaysForwardOnly),
            ("UNDEFINED", F::SanitizeSet),
            ("0", F::SanitizeSet),
        ];
        for (v, want) in cases {
            assert_eq!(fccd(v), want, "{v}");
        }
        assert_eq!(opts("{}").forward_client_cert_details, F::SanitizeSet);
        let err = MeshConfig::from_yaml(
            "defaultConfig: {gatewayTopology: {forwardClientCertDetails: SANITISE_SET}}",
        )
        .unwrap_err();
        let d = &err.diagnostics[0];
        assert!(
            d.message
                .contains("unknown forwardClientCertDetails \"SANITISE_SET\""),
            "{}",
            d.message
        );
        assert_eq!(d.help.as_deref(), Some("did you mean `SANITIZE_SET`?"));
        // proxyProtocol is not supported: loaded with a warning naming it, not ignored
        let loaded = load_str(
            "defaultConfig: {gatewayTopology: {numTrustedProxies: 1, proxyProtocol: {}}}",
            "mesh.yaml",
        );
        let warned: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .collect();
        assert_eq!(warned.len(), 1, "{:?}", loaded.diagnostics);
        assert!(warned[0].path.ends_with("gatewayTopology.proxyProtocol"));
        assert!(
            warned[0].message.contains("not supported"),
            "{}",
            warned[0].message
        );
        assert_eq!(
            MeshOptions::from_mesh_config(&loaded.config.unwrap()).num_trusted_proxies,
            1
        );
        let quiet = load_str(
            "defaultConfig: {gatewayTopology: {numTrustedProxies: 1}}",
            "m.yaml",
        );
        assert!(quiet.diagnostics.is_empty(), "{:?}", quiet.diagnostics);
    }

    #[test]
    fn mesh_mtls_and_auto_mtls() {
        let c =
            MeshConfig::from_yaml("enableAutoMtls: false\nmeshMTLS: {minProtocolVersion: TLSV1_3}")
                .unwrap();
        let o = MeshOptions::from_mesh_config(&c);
        assert!(!o.enable_auto_mtls && o.mesh_mtls_tls13_only);
        let o = MeshOptions::from_mesh_config(
            &MeshConfig::from_yaml("meshMTLS: {minProtocolVersion: TLS_AUTO}").unwrap(),
        );
        assert!(o.enable_auto_mtls && !o.mesh_mtls_tls13_only);
        // a near miss is an error with the name it meant
        let err = MeshConfig::from_yaml("meshMTLS: {minProtocolVersion: TLSV13}").unwrap_err();
        let d = &err.diagnostics[0];
        assert!(
            d.message.contains("unknown minProtocolVersion \"TLSV13\""),
            "{}",
            d.message
        );
        assert_eq!(d.help.as_deref(), Some("did you mean `TLSV1_3`?"));
        // TLS 1.0 and 1.1: reported, TLS 1.2 stays the floor
        let loaded = load_str("meshMTLS: {minProtocolVersion: TLSV1_1}", "mesh.yaml");
        assert!(loaded
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Warning
                && d.path.ends_with("meshMTLS.minProtocolVersion")));
        assert!(!MeshOptions::from_mesh_config(&loaded.config.unwrap()).mesh_mtls_tls13_only);
        // istiod refuses ECDH curves for mesh TLS (an empty list is none)
        let err = MeshConfig::from_yaml("meshMTLS: {ecdhCurves: [P-256]}").unwrap_err();
        assert_eq!(
            err.diagnostics[0].message,
            "mesh TLS does not support ECDH curves configuration"
        );
        let loaded = load_str("meshMTLS: {ecdhCurves: [], cipherSuites: []}", "mesh.yaml");
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    }

    /// `tlsDefaults` is read (it was dropped unread): its lowest version with the same
    /// names and warnings as `meshMTLS`'s, `TLS_AUTO` as none, its lists as written.
    #[test]
    fn tls_defaults_are_read() {
        use crate::model::TlsProtocol;
        let c = MeshConfig::from_yaml(
            "tlsDefaults: {minProtocolVersion: TLSV1_2, cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256], ecdhCurves: [X25519, P-256]}",
        )
        .unwrap();
        assert_eq!(
            c.tls_defaults.min_protocol_version,
            Some(TlsProtocol::TlsV1_2)
        );
        assert_eq!(
            c.tls_defaults.cipher_suites,
            ["ECDHE-RSA-AES128-GCM-SHA256"]
        );
        assert_eq!(c.tls_defaults.ecdh_curves, ["X25519", "P-256"]);
        let auto = MeshConfig::from_yaml("tlsDefaults: {minProtocolVersion: TLS_AUTO}").unwrap();
        assert_eq!(auto.tls_defaults, TlsDefaults::default());
        let err = MeshConfig::from_yaml("tlsDefaults: {minProtocolVersion: TLS13}").unwrap_err();
        assert!(err.diagnostics[0]
            .path
            .ends_with("tlsDefaults.minProtocolVersion"));
        let loaded = load_str("tlsDefaults: {minProtocolVersion: TLSV1_0}", "mesh.yaml");
        let warned: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(
            warned,
            ["tlsDefaults.minProtocolVersion TLSV1_0 is not supported: gateway servers keep TLS 1.2 as the lowest version"]
        );
    }

    #[test]
    fn tracing_follows_istiod() {
        let t = |yaml: &str| {
            let loaded = load_str(yaml, "mesh.yaml");
            let warnings: Vec<String> = loaded
                .diagnostics
                .iter()
                .map(|d| format!("{}: {}", d.path, d.message))
                .collect();
            (loaded.config.unwrap().tracing, warnings)
        };
        // defaults: no tracer (Istio 1.22 removed the default Zipkin one)
        let (tr, w) = t("trustDomain: cluster.local");
        assert_eq!(tr, Tracing::default());
        assert!(!tr.enabled);
        assert!(w.is_empty(), "{w:?}");
        // `tracing: {}` (Istio's way to turn the legacy tracer off), or sampling alone: none
        assert!(!t("defaultConfig: {tracing: {}}").0.enabled);
        assert!(!t("defaultConfig: {tracing: {sampling: 50}}").0.enabled);
        // a Zipkin tracer named: B3
        let (tr, _) = t("defaultConfig: {tracing: {zipkin: {address: 'zipkin.istio-system:9411'}, sampling: 50}}");
        assert_eq!(
            (tr.enabled, tr.propagation, tr.sampling_percent),
            (true, TracePropagation::B3, 50.0)
        );
        // sampling: 0 is the default, over 100 is 1 with a warning, as istiod
        assert_eq!(
            t("defaultConfig: {tracing: {sampling: 0}}")
                .0
                .sampling_percent,
            1.0
        );
        assert_eq!(
            t("defaultConfig: {tracing: {sampling: 12.5}}")
                .0
                .sampling_percent,
            12.5
        );
        let (tr, w) = t("defaultConfig: {tracing: {sampling: 250}}");
        assert_eq!(tr.sampling_percent, 1.0);
        assert!(
            w[0].starts_with("mesh.defaultConfig.tracing.sampling: tracing sampling 250"),
            "{w:?}"
        );
        // the legacy OpenCensus agent: its context formats
        assert_eq!(
            t("defaultConfig: {tracing: {openCensusAgent: {address: 'oc:55678'}}}")
                .0
                .propagation,
            TracePropagation::W3c
        );
        assert_eq!(
            t("defaultConfig: {tracing: {openCensusAgent: {address: 'oc:55678', context: [B3, W3C_TRACE_CONTEXT]}}}")
                .0
                .propagation,
            TracePropagation::B3AndW3c
        );
        // a tracer inmesh does not write: B3, with a warning
        let (tr, w) = t("defaultConfig: {tracing: {datadog: {address: 'dd:8126'}}}");
        assert_eq!((tr.enabled, tr.propagation), (true, TracePropagation::B3));
        assert!(
            w[0].contains("does not write datadog trace headers"),
            "{w:?}"
        );
        let (tr, w) = t("defaultProviders: {tracing: [sky]}\nextensionProviders:\n- name: sky\n  skywalking: {service: tracing.istio-system.svc.cluster.local, port: 11800}\n");
        assert_eq!(tr.propagation, TracePropagation::B3);
        assert!(
            w.iter().any(|w| w
                .starts_with("mesh.defaultProviders.tracing[0]: inmesh does not write skywalking")),
            "{w:?}"
        );
        // an unknown or non-tracer default provider: no tracing
        let (tr, w) = t("defaultProviders: {tracing: [nope]}");
        assert!(!tr.enabled);
        assert!(
            w[0].contains("which no extensionProviders entry defines"),
            "{w:?}"
        );
        let (tr, _) = t("defaultProviders: {tracing: [authz]}\nextensionProviders:\n- name: authz\n  envoyExtAuthzGrpc: {service: authz.foo.svc.cluster.local, port: 9000}\n");
        assert!(!tr.enabled);
        // the provider's warning says what is used of it
        let (_, w) = t("extensionProviders:\n- name: zipkin\n  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}\n");
        assert!(w[0].contains("propagates this tracer's headers"), "{w:?}");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "- a\n- b\n",
            "extensionProviders: 3\n",
            "extensionProviders: [{name: a, envoyExtAuthzHttp: {port: [1]}}]\n",
            "kind: ConfigMap\ndata: {mesh: 3}\n",
            "kind: ConfigMap\ndata: {mesh: '{'}\n",
            "kind: ConfigMap\ndata:\n  mesh: >\n    trustDomain: x\n",
            "kind: IstioOperator\nspec: {meshConfig: null}\n",
            "\u{feff}trustDomain: x",
        ] {
            let _ = load_str(text, "odd.yaml");
        }
    }
}
