//! Names and visibility: mesh options, host resolution, `exportTo`, host indexes and label
//! selectors (spec §1.4-§1.7).
//!
//! Everything here is compiled once per snapshot. Lookups on the request path hash a borrowed
//! `&str` (exact hosts) and walk a short list of wildcard suffixes, longest first, so the most
//! specific wildcard wins; they never allocate.
//!
//! # Examples
//!
//! ```
//! use mesh_core::names::{split_authority, ExportTo, HostMap, MeshOptions};
//!
//! let opts = MeshOptions::default();
//! let reviews = opts.resolve_host("reviews", "bookinfo");
//! let mut hosts: HostMap<Vec<&str>> = HostMap::default();
//! hosts.entry(&reviews).push("bookinfo/reviews");
//! hosts.entry("*.bookinfo.svc.cluster.local").push("bookinfo/catch-all");
//! hosts.finish();
//! // a request's authority: host and port, then the most specific entry
//! let (host, port) = split_authority("reviews.bookinfo.svc.cluster.local:9080");
//! assert_eq!(port, Some(9080));
//! assert_eq!(hosts.get(host), Some(&vec!["bookinfo/reviews"]));
//! assert_eq!(hosts.get("ratings.bookinfo.svc.cluster.local"), Some(&vec!["bookinfo/catch-all"]));
//! // exported to its own namespace only
//! let export = ExportTo::compile(&[".".to_string()], "bookinfo");
//! assert!(export.visible_to("bookinfo") && !export.visible_to("default"));
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use crate::authz::PathNormalization;
use crate::meshconfig::{ExtensionProvider, MeshConfig};
use crate::model::Labels;

/// Mesh-wide settings (MeshConfig equivalents).
///
/// # Examples
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_core::names::MeshOptions;
///
/// let opts = MeshOptions::default();
/// assert_eq!(opts.root_namespace, "istio-system");
/// assert_eq!(opts.resolve_host("reviews", "bookinfo"), "reviews.bookinfo.svc.cluster.local");
///
/// // a cluster with another domain suffix
/// let mesh = Mesh::new(MeshOptions {
///     domain_suffix: "corp.internal".into(),
///     ..MeshOptions::default()
/// });
/// assert_eq!(
///     mesh.options().resolve_host("reviews", "default"),
///     "reviews.default.svc.corp.internal"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshOptions {
    /// Cluster domain suffix (`cluster.local`).
    pub domain_suffix: String,
    /// Root namespace for mesh-wide policies (`istio-system`).
    pub root_namespace: String,
    /// SPIFFE trust domain (`cluster.local`).
    pub trust_domain: String,
    /// MeshConfig `trustDomainAliases` (none by default): as istiod does, an
    /// AuthorizationPolicy principal naming the trust domain, an alias or `cluster.local`
    /// matches the same identity in every one of them.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_core::model::Labels;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let config = MeshConfig::from_yaml("{trustDomain: new.td, trustDomainAliases: [old.td]}")?;
    /// let mesh = Mesh::new(MeshOptions::from_mesh_config(&config));
    /// mesh.reload_loaded(mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: allow-sleep, namespace: foo}
    /// spec:
    ///   rules: [{from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]}]
    /// ", "ap.yaml"))?;
    /// let authz = mesh.snapshot().authz_for_workload("foo", &Labels::new());
    /// let headers = http::HeaderMap::new();
    /// let from = |principal| {
    ///     let attrs = HttpAuthzAttrs { method: "GET", path: "/", host: "httpbin", headers: &headers };
    ///     let req = AuthzRequest { principal: Some(principal), ..AuthzRequest::http(8000, attrs) };
    ///     authz.evaluate(&req).allowed
    /// };
    /// assert!(from("new.td/ns/foo/sa/sleep"));
    /// assert!(from("old.td/ns/foo/sa/sleep"));
    /// assert!(!from("other.td/ns/foo/sa/sleep"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub trust_domain_aliases: Vec<String>,
    /// Namespace given to objects without `metadata.namespace` (`default`).
    pub default_namespace: String,
    /// MeshConfig `extensionProviders`: the external authorizers CUSTOM AuthorizationPolicies
    /// name (none by default). See [`MeshOptions::from_mesh_config`] and
    /// [`MeshOptions::with_extension_provider`].
    pub extension_providers: Arc<[ExtensionProvider]>,
    /// MeshConfig `pathNormalization`: how request paths are normalized before routing,
    /// authorization and the application (`BASE` by default). Mesh servers and the gateway
    /// read it from the snapshot serving each request.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::PathNormalization;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let mesh = Mesh::new(MeshOptions {
    ///     path_normalization: PathNormalization::MergeSlashes,
    ///     ..MeshOptions::default()
    /// });
    /// let mode = mesh.snapshot().options().path_normalization;
    /// assert_eq!(mode.normalize("//admin").unwrap(), "/admin");
    /// ```
    pub path_normalization: PathNormalization,
    /// MeshConfig `defaultHttpRetryPolicy`: the retry policy of HTTP routes without
    /// `retries` and of a service's default route (`None`: Istio's default, see
    /// [`RetryPolicy::istio_default`](crate::route::RetryPolicy::istio_default)).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::model::HttpRetry;
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let mesh = Mesh::new(MeshOptions {
    ///     default_http_retry_policy: Some(HttpRetry { attempts: 0, ..HttpRetry::default() }),
    ///     ..MeshOptions::default()
    /// });
    /// let h = http::HeaderMap::new();
    /// let snap = mesh.snapshot();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/", &h));
    /// assert!(!d.retries().enabled()); // the mesh turned default retries off
    /// ```
    pub default_http_retry_policy: Option<crate::model::HttpRetry>,
    /// MeshConfig `defaultVirtualServiceExportTo`: the `exportTo` of a VirtualService
    /// without one (empty: `*`).
    pub default_virtual_service_export_to: Vec<String>,
    /// MeshConfig `defaultDestinationRuleExportTo`: the `exportTo` of a DestinationRule
    /// without one (empty: `*`).
    pub default_destination_rule_export_to: Vec<String>,
    /// MeshConfig `defaultServiceExportTo`: the `exportTo` of a ServiceEntry without one and
    /// of a Kubernetes Service without the `networking.istio.io/exportTo` annotation
    /// (empty: `*`).
    pub default_service_export_to: Vec<String>,
    /// MeshConfig `defaultConfig.gatewayTopology.numTrustedProxies`: how many proxies in
    /// front of a gateway append to `X-Forwarded-For` (Envoy's `xff_num_trusted_hops` on
    /// the gateway; 0 by default: `remote.ip` is the connection's peer).
    pub num_trusted_proxies: u32,
    /// MeshConfig `defaultConfig.gatewayTopology.forwardClientCertDetails`: what gateways do
    /// with a request's `x-forwarded-client-cert` (SANITIZE_SET by default, as Istio's).
    pub forward_client_cert_details: crate::meshconfig::ForwardClientCertDetails,
    /// MeshConfig `accessLogEncoding` (mesh-tower's access log applies it to the servers,
    /// gateways and clients built on this mesh).
    pub access_log_encoding: crate::meshconfig::AccessLogEncoding,
    /// MeshConfig `accessLogFormat` (`None`: Istio's default format for the encoding).
    pub access_log_format: Option<String>,
    /// MeshConfig `localityLbSetting`: the locality load balancing of destinations whose
    /// DestinationRule sets none.
    pub locality_lb_setting: Option<crate::model::LocalityLbSetting>,
    /// MeshConfig tracing (`enableTracing`, `defaultConfig.tracing`,
    /// `defaultProviders.tracing`): the trace headers mesh clients, servers and gateways
    /// write unless built with a trace configuration of their own. Default: Istio's
    /// default install since 1.22, no tracer (only `x-request-id`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::{MeshConfig, TracePropagation};
    /// use mesh_core::names::MeshOptions;
    ///
    /// assert!(!MeshOptions::default().tracing.enabled);
    /// let config = MeshConfig::from_yaml("
    /// defaultProviders: {tracing: [zipkin]}
    /// extensionProviders:
    /// - name: zipkin
    ///   zipkin:
    ///     service: zipkin.istio-system.svc.cluster.local
    ///     port: 9411
    ///     traceContextOption: USE_B3_WITH_W3C_PROPAGATION
    /// ")?;
    /// let opts = MeshOptions::from_mesh_config(&config);
    /// assert_eq!(opts.tracing.propagation, TracePropagation::B3AndW3c);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub tracing: crate::meshconfig::Tracing,
    /// MeshConfig `tcpKeepalive`: keepalive on every upstream connection, under a
    /// DestinationRule's own (see [`TcpKeepalive::merged`](crate::model::TcpKeepalive::merged)).
    /// None by default.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mesh_core::names::MeshOptions::default().tcp_keepalive.is_none());
    /// ```
    pub tcp_keepalive: Option<crate::model::TcpKeepalive>,
    /// MeshConfig `connectTimeout`: the connect timeout under a DestinationRule's own.
    /// None by default (the client's own default applies: 10 s, as Istio's).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mesh_core::names::MeshOptions::default().connect_timeout.is_none());
    /// ```
    pub connect_timeout: Option<std::time::Duration>,
    /// MeshConfig `protocolDetectionTimeout`: a PERMISSIVE port takes a connection whose
    /// client sends nothing for this long as plaintext (server-first protocols). None by
    /// default: it waits, as Istio's `0s`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mesh_core::names::MeshOptions::default().protocol_detection_timeout.is_none());
    /// ```
    pub protocol_detection_timeout: Option<std::time::Duration>,
    /// MeshConfig `outboundTrafficPolicy.mode`: the mode of clients whose `Sidecar` sets
    /// none (see [`Snapshot::outbound_mode`](crate::snapshot::Snapshot::outbound_mode)).
    /// Default: `ALLOW_ANY`, as Istio installs it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::OutboundMode;
    /// assert_eq!(mesh_core::names::MeshOptions::default().outbound_traffic_policy, OutboundMode::AllowAny);
    /// ```
    pub outbound_traffic_policy: crate::model::OutboundMode,
    /// MeshConfig `enableAutoMtls`: clients send mutual TLS, without a DestinationRule
    /// saying so, to endpoints that run the mesh's mTLS. Default: on, as Istio.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mesh_core::names::MeshOptions::default().enable_auto_mtls);
    /// ```
    pub enable_auto_mtls: bool,
    /// MeshConfig `meshMTLS.minProtocolVersion` is `TLSV1_3`: mesh servers accept mutual
    /// TLS 1.3 only, as istiod configures inbound listeners (clients are not restricted).
    /// Default: off (TLS 1.2 and 1.3).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!mesh_core::names::MeshOptions::default().mesh_mtls_tls13_only);
    /// ```
    pub mesh_mtls_tls13_only: bool,
    /// MeshConfig `h2UpgradePolicy` is `UPGRADE`: clients send the requests to ports
    /// declared `HTTP` over HTTP/2 where no DestinationRule says otherwise. Default: off
    /// (`DO_NOT_UPGRADE`, as Istio).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!mesh_core::names::MeshOptions::default().h2_upgrade);
    /// ```
    pub h2_upgrade: bool,
    /// MeshConfig `defaultConfig.proxyHeaders`: which of Envoy's own headers mesh clients,
    /// servers and gateways write (`x-envoy-attempt-count`, the debug headers, the inbound
    /// `x-forwarded-client-cert`, the `server` header; all by default, as Istio).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_core::names::MeshOptions;
    ///
    /// assert!(MeshOptions::default().proxy_headers.attempt_count);
    /// let config = MeshConfig::from_yaml("defaultConfig: {proxyHeaders: {attemptCount: {disabled: true}}}")?;
    /// assert!(!MeshOptions::from_mesh_config(&config).proxy_headers.attempt_count);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub proxy_headers: crate::meshconfig::ProxyHeaders,
    /// Which addresses of a DNS answer become endpoints of `resolution: DNS` and
    /// `DNS_ROUND_ROBIN` services (Envoy's `dns_lookup_family`): istiod asks for IPv4 only
    /// from a proxy whose addresses are all IPv4, the common single-stack pod, so that is
    /// the default; [`DnsLookupFamily::All`] for a dual-stack workload,
    /// [`DnsLookupFamily::V6Only`] for an IPv6-only one.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::{DnsLookupFamily, MeshOptions};
    ///
    /// assert_eq!(MeshOptions::default().dns_lookup_family, DnsLookupFamily::V4Only);
    /// assert!(DnsLookupFamily::V4Only.admits("127.0.0.1".parse().unwrap()));
    /// assert!(!DnsLookupFamily::V4Only.admits("::1".parse().unwrap()));
    /// ```
    pub dns_lookup_family: DnsLookupFamily,
    /// How long mesh servers and gateways keep a downstream HTTP connection that carries
    /// no request (Envoy's connection manager `idle_timeout`: one hour unless MeshConfig's
    /// `defaultConfig.proxyMetadata.ISTIO_META_IDLE_TIMEOUT` says otherwise, as istiod sets
    /// it), and the idle timeout of mesh servers' and clients' TCP proxies where no
    /// DestinationRule `tcp.idleTimeout` sets one (Envoy's TCP proxy, as istiod sets it from
    /// the same value). Zero: never closed for idleness.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_core::names::MeshOptions;
    ///
    /// assert_eq!(MeshOptions::default().idle_timeout, Duration::from_secs(3600));
    /// let config = MeshConfig::from_yaml("defaultConfig: {proxyMetadata: {ISTIO_META_IDLE_TIMEOUT: 0s}}")?;
    /// assert_eq!(MeshOptions::from_mesh_config(&config).idle_timeout, Duration::ZERO);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub idle_timeout: std::time::Duration,
    /// Mesh servers and gateways accept HTTP/1.0 requests (MeshConfig
    /// `defaultConfig.proxyMetadata.ISTIO_META_HTTP10: "1"`, Envoy's `accept_http_10`);
    /// otherwise, as Istio's default, they answer them `426 Upgrade Required`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_core::names::MeshOptions;
    ///
    /// assert!(!MeshOptions::default().accept_http_10);
    /// let config = MeshConfig::from_yaml("defaultConfig: {proxyMetadata: {ISTIO_META_HTTP10: '1'}}")?;
    /// assert!(MeshOptions::from_mesh_config(&config).accept_http_10);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub accept_http_10: bool,
    /// MeshConfig `tlsDefaults`: gateway servers terminating TLS take these where their
    /// own `tls` sets nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let config = MeshConfig::from_yaml("tlsDefaults: {cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]}")?;
    /// assert_eq!(MeshOptions::from_mesh_config(&config).tls_defaults.cipher_suites.len(), 1);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub tls_defaults: crate::meshconfig::TlsDefaults,
}

/// The address families a DNS answer is taken in (Envoy's `DnsLookupFamily`, as istiod
/// sets it from the proxy's own addresses in `buildCluster`).
///
/// # Examples
///
/// ```
/// use mesh_core::names::DnsLookupFamily;
///
/// let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
/// assert!(DnsLookupFamily::All.admits(v6) && DnsLookupFamily::V6Only.admits(v6));
/// assert!(!DnsLookupFamily::V4Only.admits(v6));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsLookupFamily {
    /// IPv4 addresses only (`V4_ONLY`: an IPv4 single-stack workload).
    #[default]
    V4Only,
    /// IPv6 addresses only (`V6_ONLY`: an IPv6 single-stack workload).
    V6Only,
    /// Both (`ALL`: a dual-stack workload).
    All,
}

impl DnsLookupFamily {
    /// Whether an answer's address `ip` is taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::DnsLookupFamily;
    ///
    /// assert!(DnsLookupFamily::V6Only.admits("::1".parse().unwrap()));
    /// assert!(!DnsLookupFamily::V6Only.admits("127.0.0.1".parse().unwrap()));
    /// ```
    pub fn admits(self, ip: std::net::IpAddr) -> bool {
        match self {
            DnsLookupFamily::V4Only => ip.is_ipv4(),
            DnsLookupFamily::V6Only => ip.is_ipv6(),
            DnsLookupFamily::All => true,
        }
    }
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            domain_suffix: "cluster.local".to_owned(),
            root_namespace: "istio-system".to_owned(),
            trust_domain: "cluster.local".to_owned(),
            trust_domain_aliases: Vec::new(),
            default_namespace: "default".to_owned(),
            extension_providers: Arc::from([]),
            path_normalization: PathNormalization::Base,
            default_http_retry_policy: None,
            default_virtual_service_export_to: Vec::new(),
            default_destination_rule_export_to: Vec::new(),
            default_service_export_to: Vec::new(),
            num_trusted_proxies: 0,
            forward_client_cert_details: crate::meshconfig::ForwardClientCertDetails::SanitizeSet,
            access_log_encoding: crate::meshconfig::AccessLogEncoding::Text,
            access_log_format: None,
            locality_lb_setting: None,
            tracing: crate::meshconfig::Tracing::default(),
            tcp_keepalive: None,
            connect_timeout: None,
            protocol_detection_timeout: None,
            outbound_traffic_policy: crate::model::OutboundMode::AllowAny,
            enable_auto_mtls: true,
            mesh_mtls_tls13_only: false,
            h2_upgrade: false,
            proxy_headers: crate::meshconfig::ProxyHeaders::default(),
            dns_lookup_family: DnsLookupFamily::V4Only,
            idle_timeout: std::time::Duration::from_secs(3600),
            accept_http_10: false,
            tls_defaults: crate::meshconfig::TlsDefaults::default(),
        }
    }
}

impl MeshOptions {
    /// The options a MeshConfig gives: its `trustDomain`, `rootNamespace`,
    /// `extensionProviders`, `pathNormalization`, `defaultHttpRetryPolicy` and `exportTo`
    /// defaults; the defaults for what it leaves out.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let config = MeshConfig::from_yaml(r#"
    /// rootNamespace: mesh-root
    /// extensionProviders:
    /// - name: ext-authz
    ///   envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, port: "8000"}
    /// "#)?;
    /// let opts = MeshOptions::from_mesh_config(&config);
    /// assert_eq!(opts.root_namespace, "mesh-root");
    /// assert_eq!(opts.trust_domain, "cluster.local"); // not set: the default
    /// assert_eq!(opts.extension_provider("ext-authz").unwrap().kind(), "envoyExtAuthzHttp");
    /// // an empty MeshConfig changes nothing
    /// assert_eq!(MeshOptions::from_mesh_config(&MeshConfig::default()), MeshOptions::default());
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub fn from_mesh_config(config: &MeshConfig) -> MeshOptions {
        let d = MeshOptions::default();
        MeshOptions {
            trust_domain: config.trust_domain.clone().unwrap_or(d.trust_domain),
            trust_domain_aliases: config.trust_domain_aliases.clone(),
            root_namespace: config.root_namespace.clone().unwrap_or(d.root_namespace),
            extension_providers: config.extension_providers.iter().cloned().collect(),
            path_normalization: config.path_normalization.unwrap_or_default(),
            default_http_retry_policy: config.default_http_retry_policy.clone(),
            default_virtual_service_export_to: config.default_virtual_service_export_to.clone(),
            default_destination_rule_export_to: config.default_destination_rule_export_to.clone(),
            default_service_export_to: config.default_service_export_to.clone(),
            num_trusted_proxies: config.num_trusted_proxies.unwrap_or(0),
            forward_client_cert_details: config.forward_client_cert_details.unwrap_or_default(),
            access_log_encoding: config.access_log_encoding,
            access_log_format: config.access_log_format.clone().filter(|f| !f.is_empty()),
            locality_lb_setting: config.locality_lb_setting.clone(),
            tracing: config.tracing,
            tcp_keepalive: config.tcp_keepalive.clone(),
            connect_timeout: config.connect_timeout,
            protocol_detection_timeout: config.protocol_detection_timeout,
            // a Sidecar may not say ALLOW_ANY_DYNAMIC_DNS; MeshConfig may, and its
            // unknown destinations are forwarded to the request's host as with ALLOW_ANY
            outbound_traffic_policy: match config.outbound_traffic_policy {
                Some(crate::model::OutboundMode::RegistryOnly) => {
                    crate::model::OutboundMode::RegistryOnly
                }
                _ => crate::model::OutboundMode::AllowAny,
            },
            enable_auto_mtls: config.enable_auto_mtls.unwrap_or(true),
            mesh_mtls_tls13_only: config.mesh_mtls_min_protocol_version
                == Some(crate::model::TlsProtocol::TlsV1_3),
            h2_upgrade: config.h2_upgrade_policy.unwrap_or(false),
            proxy_headers: config.proxy_headers.clone(),
            idle_timeout: config.idle_timeout.unwrap_or(d.idle_timeout),
            accept_http_10: config.accept_http_10,
            tls_defaults: config.tls_defaults.clone(),
            ..d
        }
    }

    /// Adds (or replaces, by name) an extension provider: registering an external
    /// authorizer without a MeshConfig file.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::meshconfig::{ExtAuthzHttp, ExtensionProvider};
    /// use mesh_core::names::MeshOptions;
    ///
    /// let mut authz = ExtAuthzHttp::new("ext-authz.foo.svc.cluster.local", 8000);
    /// authz.headers_to_upstream_on_allow = vec!["x-user".into()];
    /// let opts = MeshOptions::default()
    ///     .with_extension_provider(ExtensionProvider::ext_authz_http("ext-authz", authz));
    /// let mesh = Mesh::new(opts);
    /// assert!(mesh.snapshot().options().extension_provider("ext-authz").is_some());
    /// ```
    pub fn with_extension_provider(mut self, provider: ExtensionProvider) -> MeshOptions {
        let mut all: Vec<ExtensionProvider> = self
            .extension_providers
            .iter()
            .filter(|p| p.name != provider.name)
            .cloned()
            .collect();
        all.push(provider);
        self.extension_providers = all.into();
        self
    }

    /// The extension provider named `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mesh_core::names::MeshOptions::default().extension_provider("opa").is_none());
    /// ```
    pub fn extension_provider(&self, name: &str) -> Option<&ExtensionProvider> {
        self.extension_providers.iter().find(|p| p.name == name)
    }

    /// Resolves a config host relative to the config object's namespace (§1.4): names without
    /// a dot become `name.<ns>.svc.<suffix>`; `*`, IPs and dotted names stay; lower-cased.
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = mesh_core::names::MeshOptions::default();
    /// assert_eq!(opts.resolve_host("Reviews", "prod"), "reviews.prod.svc.cluster.local");
    /// assert_eq!(opts.resolve_host("reviews.prod.svc.cluster.local", "x"), "reviews.prod.svc.cluster.local");
    /// assert_eq!(opts.resolve_host("api.example.com", "prod"), "api.example.com");
    /// assert_eq!(opts.resolve_host("*", "prod"), "*");
    /// assert_eq!(opts.resolve_host("10.0.0.1", "prod"), "10.0.0.1");
    /// ```
    pub fn resolve_host(&self, host: &str, config_namespace: &str) -> String {
        let mut h =
            crate::model::host::resolve_short_name(host, config_namespace, &self.domain_suffix);
        h.make_ascii_lowercase();
        h
    }
}

/// Compiled `exportTo`: which client namespaces see an object.
///
/// # Examples
///
/// ```
/// use mesh_core::names::ExportTo;
///
/// let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
/// // `.` is the object's own namespace
/// let e = ExportTo::compile(&list(&[".", "istio-system"]), "bookinfo");
/// assert!(e.visible_to("bookinfo"));
/// assert!(e.visible_to("istio-system"));
/// assert!(!e.visible_to("default"));
/// assert_eq!(ExportTo::compile(&[], "bookinfo"), ExportTo::All);
/// assert_eq!(ExportTo::compile(&list(&["~"]), "bookinfo"), ExportTo::None);
///
/// // the registry applies a ServiceEntry's exportTo
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: api, namespace: team-a}
/// spec:
///   hosts: [api.example.com]
///   exportTo: [.]
///   ports: [{number: 443, name: tls, protocol: TLS}]
///   resolution: DNS
/// ").unwrap().snapshot();
/// assert!(snap.registry().service("api.example.com", "team-a").is_some());
/// assert!(snap.registry().service("api.example.com", "team-b").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTo {
    /// Everyone (`*`, or an empty list).
    All,
    /// No one (`~`, ServiceEntry only).
    None,
    /// These namespaces (`.` already replaced by the object's namespace).
    Namespaces(Box<[Box<str>]>),
}

impl ExportTo {
    /// Compiles an `exportTo` list for an object in `namespace`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::ExportTo;
    ///
    /// let list = vec!["istio-system".to_string(), ".".to_string()];
    /// assert_eq!(
    ///     ExportTo::compile(&list, "bookinfo"),
    ///     ExportTo::Namespaces(vec!["bookinfo".into(), "istio-system".into()].into())
    /// );
    /// assert_eq!(ExportTo::compile(&["*".to_string()], "bookinfo"), ExportTo::All);
    /// ```
    pub fn compile(list: &[String], namespace: &str) -> ExportTo {
        if list.is_empty() || list.iter().any(|e| e == "*") {
            return ExportTo::All;
        }
        if list.iter().all(|e| e == "~") {
            return ExportTo::None;
        }
        let mut v: Vec<Box<str>> = list
            .iter()
            .filter(|e| *e != "~")
            .map(|e| {
                if e == "." {
                    namespace.into()
                } else {
                    e.as_str().into()
                }
            })
            .collect();
        v.sort();
        v.dedup();
        ExportTo::Namespaces(v.into_boxed_slice())
    }

    /// Compiles an object's `exportTo`, the mesh default (MeshConfig
    /// `default*ExportTo`, spec §1.5) when it sets none.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::ExportTo;
    ///
    /// let mesh_default = [".".to_string()];
    /// let own = ExportTo::compile_or_default(&[], "bookinfo", &mesh_default);
    /// assert!(own.visible_to("bookinfo") && !own.visible_to("default"));
    /// // an explicit list wins; no mesh default means `*`
    /// let all = ExportTo::compile_or_default(&["*".to_string()], "bookinfo", &mesh_default);
    /// assert_eq!(all, ExportTo::All);
    /// assert_eq!(ExportTo::compile_or_default(&[], "bookinfo", &[]), ExportTo::All);
    /// ```
    pub fn compile_or_default(list: &[String], namespace: &str, default: &[String]) -> ExportTo {
        if list.is_empty() {
            ExportTo::compile(default, namespace)
        } else {
            ExportTo::compile(list, namespace)
        }
    }

    /// True when a client in `namespace` sees the object.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::ExportTo;
    ///
    /// let team = ExportTo::compile(&[".".to_string(), "istio-system".to_string()], "team-a");
    /// assert!(team.visible_to("team-a"));
    /// assert!(team.visible_to("istio-system"));
    /// assert!(!team.visible_to("team-b"));
    /// assert!(ExportTo::compile(&[], "team-a").visible_to("team-b")); // no list: everyone
    /// assert!(!ExportTo::compile(&["~".to_string()], "team-a").visible_to("team-a"));
    /// ```
    pub fn visible_to(&self, namespace: &str) -> bool {
        match self {
            ExportTo::All => true,
            ExportTo::None => false,
            ExportTo::Namespaces(v) => v.iter().any(|n| &**n == namespace),
        }
    }
}

/// True when every `selector` label is on `labels` (an empty selector selects everything).
///
/// # Examples
///
/// ```
/// use mesh_core::model::Labels;
/// use mesh_core::names::labels_match;
///
/// let pod: Labels = [("app", "reviews"), ("version", "v2")]
///     .map(|(k, v)| (k.to_string(), v.to_string()))
///     .into();
/// let v2: Labels = [("version".to_string(), "v2".to_string())].into();
/// let v1: Labels = [("version".to_string(), "v1".to_string())].into();
/// assert!(labels_match(&v2, &pod));
/// assert!(!labels_match(&v1, &pod));
/// assert!(labels_match(&Labels::new(), &pod));
/// ```
pub fn labels_match(selector: &Labels, labels: &Labels) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
}

/// A host index: exact names by hash, `*.suffix` wildcards by hash on each dot-suffix of the
/// name (so a lookup costs one probe per label), other wildcards (`*`, `*foo.com`) by a short
/// suffix scan; the most specific (longest) match first. `T` is usually a list of indexes.
///
/// # Examples
///
/// ```
/// use mesh_core::names::HostMap;
///
/// let mut hosts: HostMap<Vec<&str>> = HostMap::default();
/// hosts.entry("*").push("catch-all");
/// hosts.entry("*.example.com").push("example wildcard");
/// hosts.entry("api.example.com").push("api");
/// hosts.finish();
/// assert_eq!(hosts.len(), 3);
/// assert_eq!(hosts.get("api.example.com"), Some(&vec!["api"]));
/// assert_eq!(hosts.get("www.example.com"), Some(&vec!["example wildcard"]));
/// assert_eq!(hosts.get("istio.io"), Some(&vec!["catch-all"]));
/// assert_eq!(hosts.get_exact("www.example.com"), None);
/// ```
#[derive(Debug, Clone)]
pub struct HostMap<T> {
    // FxHash: keys come from configuration; lookups (request authorities) never insert, so
    // SipHash's flooding resistance buys nothing here and costs on every request.
    exact: HashMap<Box<str>, T, FxBuildHasher>,
    /// `*.foo.com` keyed by `.foo.com`.
    dotted: HashMap<Box<str>, T, FxBuildHasher>,
    /// (suffix after `*`, value) for `*` and `*foo.com`, longest first after `finish`.
    other: Vec<(Box<str>, T)>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        HostMap {
            exact: HashMap::default(),
            dotted: HashMap::default(),
            other: Vec::new(),
        }
    }
}

/// Iterator over the entries covering a host, most specific first.
///
/// Returned by [`HostMap::all_matching`].
///
/// # Examples
///
/// ```
/// use mesh_core::names::HostMap;
///
/// let mut hosts: HostMap<u32> = HostMap::default();
/// *hosts.entry("*") = 0;
/// *hosts.entry("*.com") = 1;
/// *hosts.entry("*.example.com") = 2;
/// *hosts.entry("a.example.com") = 3;
/// *hosts.entry("*.org") = 4;
/// hosts.finish();
/// let order: Vec<u32> = hosts.all_matching("a.example.com").copied().collect();
/// assert_eq!(order, [3, 2, 1, 0]);
/// ```
#[derive(Debug)]
pub struct Matching<'a, 'h, T> {
    map: &'a HostMap<T>,
    host: &'h str,
    exact_done: bool,
    /// Next byte position to search for a dot.
    dot_pos: usize,
    other_idx: usize,
    pend_dot: Option<(usize, &'a T)>,
    pend_other: Option<(usize, &'a T)>,
}

impl<'a, T> Matching<'a, '_, T> {
    fn fill(&mut self) {
        if self.pend_dot.is_none() && !self.map.dotted.is_empty() {
            while let Some(i) = self.host[self.dot_pos.min(self.host.len())..].find('.') {
                let at = self.dot_pos + i;
                self.dot_pos = at + 1;
                if let Some(v) = self.map.dotted.get(&self.host[at..]) {
                    self.pend_dot = Some((self.host.len() - at, v));
                    break;
                }
            }
        }
        if self.pend_other.is_none() {
            while let Some((suffix, v)) = self.map.other.get(self.other_idx) {
                self.other_idx += 1;
                if self.host.ends_with(&**suffix) {
                    self.pend_other = Some((suffix.len(), v));
                    break;
                }
            }
        }
    }
}

impl<'a, T> Iterator for Matching<'a, '_, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        if !self.exact_done {
            self.exact_done = true;
            if let Some(v) = self.map.exact.get(self.host) {
                return Some(v);
            }
        }
        self.fill();
        match (self.pend_dot, self.pend_other) {
            (Some((a, _)), Some((b, _))) if b > a => self.pend_other.take().map(|x| x.1),
            (Some(_), _) => self.pend_dot.take().map(|x| x.1),
            (None, Some(_)) => self.pend_other.take().map(|x| x.1),
            (None, None) => None,
        }
    }
}

impl<T> HostMap<T> {
    /// The entry for `host` (exact, or the wildcard written exactly so), inserting a default.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::HostMap;
    ///
    /// let mut m: HostMap<Vec<u32>> = HostMap::default();
    /// m.entry("*.example.com").push(1);
    /// m.entry("*.example.com").push(2); // the same wildcard entry
    /// m.finish();
    /// assert_eq!(m.len(), 1);
    /// assert_eq!(m.get("x.example.com"), Some(&vec![1, 2]));
    /// assert_eq!(m.get("example.com"), None); // `*.example.com` needs a label before it
    /// ```
    pub fn entry(&mut self, host: &str) -> &mut T
    where
        T: Default,
    {
        if let Some(suffix) = host.strip_prefix('*') {
            if suffix.starts_with('.') {
                return self.dotted.entry(suffix.into()).or_default();
            }
            let i = match self.other.iter().position(|(s, _)| &**s == suffix) {
                Some(i) => i,
                None => {
                    self.other.push((suffix.into(), T::default()));
                    self.other.len() - 1
                }
            };
            &mut self.other[i].1
        } else {
            self.exact.entry(host.into()).or_default()
        }
    }

    /// Sorts the wildcards (call once after the last insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::HostMap;
    ///
    /// let mut hosts: HostMap<&str> = HostMap::default();
    /// *hosts.entry("*") = "everything";
    /// *hosts.entry("*example.com") = "example.com and its look-alikes";
    /// hosts.finish(); // longest wildcard first
    /// assert_eq!(hosts.get("api.example.com"), Some(&"example.com and its look-alikes"));
    /// assert_eq!(hosts.get("istio.io"), Some(&"everything"));
    /// ```
    pub fn finish(&mut self) {
        self.other
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    }

    /// The most specific entry covering `host` (a concrete name): exact first, then the
    /// longest matching wildcard.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::HostMap;
    ///
    /// let mut hosts: HostMap<&str> = HostMap::default();
    /// *hosts.entry("*.example.com") = "wildcard";
    /// *hosts.entry("*.api.example.com") = "api wildcard";
    /// *hosts.entry("v1.api.example.com") = "v1";
    /// hosts.finish();
    /// assert_eq!(hosts.get("v1.api.example.com"), Some(&"v1"));
    /// assert_eq!(hosts.get("v2.api.example.com"), Some(&"api wildcard"));
    /// assert_eq!(hosts.get("www.example.com"), Some(&"wildcard"));
    /// assert_eq!(hosts.get("example.org"), None);
    /// ```
    pub fn get(&self, host: &str) -> Option<&T> {
        self.all_matching(host).next()
    }

    /// Every entry covering `host`, most specific first (exact, then wildcards by length).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::HostMap;
    ///
    /// let mut hosts: HostMap<&str> = HostMap::default();
    /// *hosts.entry("*") = "any";
    /// *hosts.entry("*.example.com") = "wildcard";
    /// *hosts.entry("api.example.com") = "exact";
    /// hosts.finish();
    /// let all: Vec<&str> = hosts.all_matching("api.example.com").copied().collect();
    /// assert_eq!(all, ["exact", "wildcard", "any"]);
    /// assert_eq!(hosts.all_matching("istio.io").count(), 1);
    /// ```
    pub fn all_matching<'a, 'h>(&'a self, host: &'h str) -> Matching<'a, 'h, T> {
        Matching {
            map: self,
            host,
            exact_done: false,
            dot_pos: 0,
            other_idx: 0,
            pend_dot: None,
            pend_other: None,
        }
    }

    /// The exact entry only.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::HostMap;
    ///
    /// let mut hosts: HostMap<u16> = HostMap::default();
    /// *hosts.entry("api.example.com") = 443;
    /// *hosts.entry("*.example.com") = 80;
    /// hosts.finish();
    /// assert_eq!(hosts.get_exact("api.example.com"), Some(&443));
    /// assert_eq!(hosts.get_exact("www.example.com"), None); // wildcards are not consulted
    /// assert_eq!(hosts.get("www.example.com"), Some(&80));
    /// ```
    pub fn get_exact(&self, host: &str) -> Option<&T> {
        self.exact.get(host)
    }

    /// Number of keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::HostMap;
    ///
    /// let mut hosts: HostMap<Vec<u8>> = HostMap::default();
    /// hosts.entry("a.example.com").push(1);
    /// hosts.entry("a.example.com").push(2); // same key
    /// hosts.entry("*.example.com").push(3);
    /// hosts.entry("*").push(4);
    /// assert_eq!(hosts.len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.exact.len() + self.dotted.len() + self.other.len()
    }

    /// True when empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::HostMap;
    ///
    /// let mut hosts: HostMap<u8> = HostMap::default();
    /// assert!(hosts.is_empty());
    /// *hosts.entry("*") = 1;
    /// assert!(!hosts.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every value.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::HostMap;
    ///
    /// let mut hosts: HostMap<u32> = HostMap::default();
    /// *hosts.entry("a.example.com") = 1;
    /// *hosts.entry("*.example.com") = 2;
    /// *hosts.entry("*") = 3;
    /// hosts.finish();
    /// let mut all: Vec<u32> = hosts.values().copied().collect();
    /// all.sort();
    /// assert_eq!(all, [1, 2, 3]);
    /// ```
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.exact
            .values()
            .chain(self.dotted.values())
            .chain(self.other.iter().map(|(_, v)| v))
    }
}

/// A host name without the trailing dot of an absolute name, and whether it had one: only
/// a name with another dot is absolute (istiod lists each service's hostname with the dot
/// among its virtual host's domains, not its short names), so `reviews.` stays as it is.
///
/// # Examples
///
/// ```
/// use mesh_core::names::absolute_name;
///
/// assert_eq!(absolute_name("reviews.ns.svc.cluster.local."), ("reviews.ns.svc.cluster.local", true));
/// assert_eq!(absolute_name("reviews.ns.svc.cluster.local"), ("reviews.ns.svc.cluster.local", false));
/// assert_eq!(absolute_name("reviews."), ("reviews.", false));
/// ```
pub fn absolute_name(host: &str) -> (&str, bool) {
    match host.strip_suffix('.') {
        Some(name) if name.contains('.') => (name, true),
        _ => (host, false),
    }
}

/// Splits an authority into host and optional port (`reviews:9080`, `[::1]:80`, `a.b`).
///
/// # Examples
///
/// ```
/// use mesh_core::names::split_authority;
///
/// assert_eq!(split_authority("reviews:9080"), ("reviews", Some(9080)));
/// assert_eq!(split_authority("reviews.default.svc.cluster.local"), ("reviews.default.svc.cluster.local", None));
/// assert_eq!(split_authority("[::1]:80"), ("::1", Some(80)));
/// assert_eq!(split_authority("::1"), ("::1", None)); // a bare IPv6 address has no port
/// ```
pub fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host = &rest[..end];
            let port = rest[end + 1..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok());
            return (host, port);
        }
        return (authority, None);
    }
    // one pass from the end over the port's digits (this runs for every request)
    let b = authority.as_bytes();
    let mut i = b.len();
    let mut port: u32 = 0;
    let mut scale: u32 = 1;
    while i > 0 && b[i - 1].is_ascii_digit() {
        i -= 1;
        if scale <= 100_000 {
            port += u32::from(b[i] - b'0') * scale;
            scale *= 10;
        } else if b[i] != b'0' {
            port = u32::MAX; // more significant digits than a port has
        }
    }
    if i == b.len() || i == 0 || b[i - 1] != b':' || b[..i - 1].contains(&b':') {
        return (authority, None);
    }
    (&authority[..i - 1], u16::try_from(port).ok())
}

/// A small stack buffer for building host names without allocating on the request path.
#[derive(Debug)]
pub(crate) struct HostBuf {
    buf: [u8; 256],
    len: usize,
}

impl HostBuf {
    pub(crate) fn new() -> Self {
        HostBuf {
            buf: [0; 256],
            len: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends lower-cased; false when the name does not fit.
    pub(crate) fn push_lower(&mut self, s: &str) -> bool {
        let b = s.as_bytes();
        let Some(dst) = self.buf.get_mut(self.len..self.len + b.len()) else {
            return false;
        };
        dst.copy_from_slice(b);
        dst.make_ascii_lowercase();
        self.len += b.len();
        true
    }

    /// Appends `parts` one after the other, lower-cased (one pass over the result); false
    /// (and nothing appended) when they do not fit.
    pub(crate) fn push_all_lower(&mut self, parts: &[&str]) -> bool {
        let start = self.len;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if start + total > self.buf.len() {
            return false;
        }
        let mut at = start;
        for p in parts {
            self.buf[at..at + p.len()].copy_from_slice(p.as_bytes());
            at += p.len();
        }
        self.buf[start..at].make_ascii_lowercase();
        self.len = at;
        true
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII-lower-cased bytes of valid UTF-8 strings were pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// The candidate FQDNs a sidecar client in `client_ns` reaches with `host` (no port), in the
/// order Envoy's virtual-host domains would match them (§1.4): the name itself, then the
/// Kubernetes expansions (`svc` → `svc.<client_ns>.svc.<suffix>`, `svc.ns` and `svc.ns.svc`
/// → `svc.ns.svc.<suffix>`). Writes the expansion into `buf` and returns whether there is one.
pub(crate) fn kube_expansion(host: &str, client_ns: &str, suffix: &str, buf: &mut HostBuf) -> bool {
    buf.clear();
    if host.is_empty() || host.starts_with('*') || looks_like_ip(host) {
        return false;
    }
    let parts: [&str; 5] = match host.bytes().filter(|b| *b == b'.').count() {
        0 => [host, ".", client_ns, ".svc.", suffix],
        1 => [host, ".svc.", suffix, "", ""],
        2 if host.ends_with(".svc") => [host, ".", suffix, "", ""],
        _ => return false,
    };
    buf.push_all_lower(&parts)
}

/// An IP address literal: only a host starting with a digit (IPv4) or holding a `:` (IPv6)
/// can be one, so other names skip the parse.
pub(crate) fn ip_literal(host: &str) -> Option<std::net::IpAddr> {
    let first = host.as_bytes().first().copied().unwrap_or(b'x');
    if first.is_ascii_digit() || host.contains(':') {
        host.parse().ok()
    } else {
        None
    }
}

fn looks_like_ip(host: &str) -> bool {
    ip_literal(host).is_some()
}

/// Parses a SPIFFE principal without the scheme (`td/ns/NS/sa/SA`) into (trust domain,
/// namespace, service account). Accepts and strips a leading `spiffe://`.
///
/// # Examples
///
/// ```
/// use mesh_core::names::parse_principal;
///
/// assert_eq!(
///     parse_principal("cluster.local/ns/default/sa/bookinfo-productpage"),
///     Some(("cluster.local", "default", "bookinfo-productpage"))
/// );
/// assert_eq!(
///     parse_principal("spiffe://cluster.local/ns/foo/sa/sleep"),
///     Some(("cluster.local", "foo", "sleep"))
/// );
/// assert_eq!(parse_principal("cluster.local/sa/sleep"), None);
/// ```
pub fn parse_principal(principal: &str) -> Option<(&str, &str, &str)> {
    let p = principal.strip_prefix("spiffe://").unwrap_or(principal);
    let mut it = p.split('/');
    let td = it.next()?;
    if it.next()? != "ns" {
        return None;
    }
    let ns = it.next()?;
    if it.next()? != "sa" {
        return None;
    }
    let sa = it.next()?;
    if it.next().is_some() || td.is_empty() || ns.is_empty() || sa.is_empty() {
        return None;
    }
    Some((td, ns, sa))
}

/// base64 as Envoy writes it: the standard alphabet with padding (`Base64::encode`), or,
/// with `url`, the URL-safe alphabet without padding (`Base64Url::encode`, a JWT's parts).
///
/// # Examples
///
/// ```
/// use mesh_core::names::base64_encode;
///
/// assert_eq!(base64_encode(b"hello", false), "aGVsbG8=");
/// assert_eq!(base64_encode(&[0xff, 0xef], true), "_-8");
/// ```
pub fn base64_encode(data: &[u8], url: bool) -> String {
    let alphabet: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

/// base64, as protobuf's JSON mapping reads a `bytes` field (`directResponse.body.bytes`):
/// the standard or the URL-safe alphabet, padding optional, whitespace skipped. With
/// `web_safe`, as absl's `WebSafeBase64Unescape` reads a JWT part: the URL-safe alphabet
/// only, no whitespace. `None` when it is not base64 (a stray character, or a last group
/// of a single character).
///
/// # Examples
///
/// ```
/// use mesh_core::names::base64_decode;
///
/// assert_eq!(base64_decode("aGVsbG8=", false).as_deref(), Some(&b"hello"[..]));
/// assert_eq!(base64_decode("_-8", true).as_deref(), Some(&[0xff, 0xef][..]));
/// assert!(base64_decode("a+/b", true).is_none()); // JWT parts: URL-safe only
/// assert!(base64_decode("not base64!", false).is_none());
/// ```
pub fn base64_decode(s: &str, web_safe: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    base64_each(s, web_safe, |b| out.push(b)).then_some(out)
}

/// Whether `s` is base64 as [`base64_decode`] reads it, without decoding it anywhere.
pub(crate) fn is_base64(s: &str, web_safe: bool) -> bool {
    base64_each(s, web_safe, |_| {})
}

/// Feeds each decoded byte of `s` to `emit`; `false` when `s` is not base64.
fn base64_each(s: &str, web_safe: bool, mut emit: impl FnMut(u8)) -> bool {
    let mut acc = 0u32;
    let mut bits = 0;
    let mut padded = false;
    for c in s.bytes() {
        if c.is_ascii_whitespace() && !web_safe {
            continue;
        }
        if c == b'=' {
            padded = true;
            continue;
        }
        if padded {
            return false; // data after padding
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'+' if !web_safe => 62,
            b'/' if !web_safe => 63,
            _ => return false,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            emit((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // a last group of one character carries no whole byte
    bits < 6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_to_table() {
        let table: &[(&[&str], &str, &str, bool)] = &[
            (&[], "a", "b", true),
            (&["*"], "a", "b", true),
            (&["."], "a", "a", true),
            (&["."], "a", "b", false),
            (&["b", "c"], "a", "c", true),
            (&["b", "c"], "a", "a", false),
            (&["~"], "a", "a", false),
            (&[".", "x"], "a", "x", true),
        ];
        for (list, ns, client, want) in table {
            let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                ExportTo::compile(&list, ns).visible_to(client),
                *want,
                "{list:?} {ns} -> {client}"
            );
        }
    }

    #[test]
    fn host_map_most_specific_wins() {
        let mut m: HostMap<Vec<u32>> = HostMap::default();
        m.entry("*").push(0);
        m.entry("*.com").push(1);
        m.entry("*.example.com").push(2);
        m.entry("a.example.com").push(3);
        m.entry("*foo.com").push(4);
        m.finish();
        let table = [
            ("a.example.com", Some(3)),
            ("b.example.com", Some(2)),
            ("x.b.example.com", Some(2)),
            ("example.com", Some(1)),
            ("barfoo.com", Some(4)),
            ("foo.com", Some(4)),
            ("other.org", Some(0)),
        ];
        for (host, want) in table {
            assert_eq!(m.get(host).map(|v| v[0]), want, "{host}");
        }
        assert_eq!(m.all_matching("a.example.com").count(), 4);
        let order: Vec<u32> = m.all_matching("a.example.com").map(|v| v[0]).collect();
        assert_eq!(order, vec![3, 2, 1, 0]);
        // `*foo.com` (8 chars of suffix) is more specific than `*.com` for x.barfoo.com
        let order: Vec<u32> = m.all_matching("x.barfoo.com").map(|v| v[0]).collect();
        assert_eq!(order, vec![4, 1, 0]);
    }

    #[test]
    fn authority_split() {
        let table = [
            ("reviews:9080", ("reviews", Some(9080))),
            ("reviews", ("reviews", None)),
            ("[::1]:80", ("::1", Some(80))),
            ("::1", ("::1", None)),
            ("a.b:", ("a.b:", None)),
            ("a:x", ("a:x", None)),
        ];
        for (a, want) in table {
            assert_eq!(split_authority(a), want, "{a}");
        }
    }

    #[test]
    fn split_authority_matches_the_plain_parse() {
        // the former implementation, as the oracle
        fn plain(authority: &str) -> (&str, Option<u16>) {
            match authority.rfind(':') {
                Some(i)
                    if authority[..i].find(':').is_none()
                        && !authority[i + 1..].is_empty()
                        && authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
                {
                    (&authority[..i], authority[i + 1..].parse().ok())
                }
                _ => (authority, None),
            }
        }
        for a in [
            "reviews:9080",
            "reviews",
            "reviews:",
            ":80",
            "a:b:80",
            "host:0080",
            "host:65535",
            "host:65536",
            "host:99999999",
            "host:0000000000080",
            "host:8a0",
            "h:0",
            "",
            "10.0.0.1:443",
            "a.b.c",
            "host:1x",
            "x:12345678901234567890",
        ] {
            assert_eq!(split_authority(a), plain(a), "{a:?}");
        }
    }

    #[test]
    fn kube_expansions() {
        let mut b = HostBuf::new();
        let table = [
            ("reviews", Some("reviews.prod.svc.cluster.local")),
            ("reviews.default", Some("reviews.default.svc.cluster.local")),
            (
                "reviews.default.svc",
                Some("reviews.default.svc.cluster.local"),
            ),
            ("Reviews", Some("reviews.prod.svc.cluster.local")),
            ("reviews.default.svc.cluster.local", None),
            ("10.0.0.1", None),
            ("*.foo", None),
        ];
        for (h, want) in table {
            let got = kube_expansion(h, "prod", "cluster.local", &mut b).then(|| b.as_str());
            assert_eq!(got, want, "{h}");
        }
    }

    #[test]
    fn principals() {
        assert_eq!(
            parse_principal("cluster.local/ns/default/sa/sleep"),
            Some(("cluster.local", "default", "sleep"))
        );
        assert_eq!(
            parse_principal("spiffe://td/ns/a/sa/b"),
            Some(("td", "a", "b"))
        );
        for bad in ["td/ns/a", "td/x/a/sa/b", "td/ns/a/sa/b/c", "/ns/a/sa/b", ""] {
            assert_eq!(parse_principal(bad), None, "{bad}");
        }
    }

    #[test]
    fn selectors() {
        let l = |v: &[(&str, &str)]| -> Labels {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(labels_match(&l(&[]), &l(&[("a", "1")])));
        assert!(labels_match(
            &l(&[("a", "1")]),
            &l(&[("a", "1"), ("b", "2")])
        ));
        assert!(!labels_match(&l(&[("a", "1")]), &l(&[("a", "2")])));
        assert!(!labels_match(&l(&[("c", "1")]), &l(&[("a", "1")])));
    }
}
