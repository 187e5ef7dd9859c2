//! `Gateway` (networking.istio.io): a load balancer at the edge of the mesh.

use serde::{Deserialize, Serialize};

use super::common::{Labels, Port};

/// `Gateway.spec`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: bookinfo-gateway}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 80, name: http, protocol: HTTP}
///     hosts: [bookinfo.example.com]
/// ", "gw.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let gw = loaded.objects[0].spec.as_gateway().unwrap();
/// assert_eq!(gw.selector.as_ref().unwrap()["istio"], "ingressgateway");
/// assert_eq!(gw.servers.len(), 1);
/// assert_eq!(gw.servers[0].hosts, ["bookinfo.example.com"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Servers (at least one).
    #[serde(default)]
    pub servers: Vec<Server>,
    /// Labels of the gateway workloads (any namespace); absent means every workload.
    pub selector: Option<Labels>,
}

/// `Server`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: bookinfo-gateway}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - name: bookinfo-https
///     port: {number: 443, name: https, protocol: HTTPS}
///     hosts: [bookinfo/bookinfo.example.com]
///     tls: {mode: SIMPLE, credentialName: bookinfo-cert}
/// ", "gw.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let server = &loaded.objects[0].spec.as_gateway().unwrap().servers[0];
/// assert_eq!(server.name.as_deref(), Some("bookinfo-https"));
/// assert_eq!(server.port.number, 443);
/// assert_eq!(server.hosts, ["bookinfo/bookinfo.example.com"]);
/// assert!(server.tls.is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// Listening port (required).
    #[serde(default)]
    pub port: Port,
    /// Bind address (IP or `unix://`).
    pub bind: Option<String>,
    /// `[namespace/]dnsName` entries (required).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// TLS settings.
    pub tls: Option<ServerTlsSettings>,
    /// Not implemented by Istio.
    pub default_endpoint: Option<String>,
    /// Optional unique server name.
    pub name: Option<String>,
}

/// `ServerTLSSettings` (Gateway servers and Sidecar ingress).
///
/// # Examples
///
/// ```
/// use mesh_core::model::ServerTlsMode;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: web}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 80, name: http, protocol: HTTP}
///     hosts: [web.example.com]
///     tls: {httpsRedirect: true}
///   - port: {number: 443, name: https, protocol: HTTPS}
///     hosts: [web.example.com]
///     tls: {mode: SIMPLE, credentialName: web-cert}
/// ", "gw.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let servers = &loaded.objects[0].spec.as_gateway().unwrap().servers;
/// assert!(servers[0].tls.as_ref().unwrap().https_redirect);
/// let tls = servers[1].tls.as_ref().unwrap();
/// assert_eq!(tls.mode, ServerTlsMode::Simple);
/// assert_eq!(tls.credential_name.as_deref(), Some("web-cert"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Redirect plain HTTP to HTTPS with 301.
    #[serde(default)]
    pub https_redirect: bool,
    /// TLS mode; zero value PASSTHROUGH.
    #[serde(default)]
    pub mode: ServerTlsMode,
    /// Server certificate file.
    pub server_certificate: Option<String>,
    /// Private key file.
    pub private_key: Option<String>,
    /// CA bundle for client certificates.
    pub ca_certificates: Option<String>,
    /// CRL file.
    pub ca_crl: Option<String>,
    /// Secret with key/cert(/ca).
    pub credential_name: Option<String>,
    /// Up to two secrets (RSA + ECDSA).
    #[serde(default)]
    pub credential_names: Vec<String>,
    /// Secret with the CA certificate only.
    pub ca_cert_credential_name: Option<String>,
    /// Up to two inline certificate/key file pairs.
    #[serde(default)]
    pub tls_certificates: Vec<TlsCertificate>,
    /// Allowed client certificate SANs.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// Allowed client certificate SPKI hashes.
    #[serde(default)]
    pub verify_certificate_spki: Vec<String>,
    /// Allowed client certificate hashes.
    #[serde(default)]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version.
    pub min_protocol_version: Option<TlsProtocol>,
    /// Maximum TLS version.
    pub max_protocol_version: Option<TlsProtocol>,
    /// Cipher suites.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Do not verify client certificates.
    pub insecure_skip_verify: Option<bool>,
}

/// `ServerTLSSettings.TLSCertificate`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: web}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 443, name: https, protocol: HTTPS}
///     hosts: [web.example.com]
///     tls:
///       mode: SIMPLE
///       tlsCertificates:
///       - serverCertificate: /etc/certs/rsa.pem
///         privateKey: /etc/certs/rsa-key.pem
///       - serverCertificate: /etc/certs/ecdsa.pem
///         privateKey: /etc/certs/ecdsa-key.pem
/// ", "gw.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let server = &loaded.objects[0].spec.as_gateway().unwrap().servers[0];
/// let certs = &server.tls.as_ref().unwrap().tls_certificates;
/// assert_eq!(certs.len(), 2);
/// assert_eq!(certs[1].server_certificate.as_deref(), Some("/etc/certs/ecdsa.pem"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// Certificate file.
    pub server_certificate: Option<String>,
    /// Key file.
    pub private_key: Option<String>,
    /// CA bundle file.
    pub ca_certificates: Option<String>,
}

/// `ServerTLSSettings.TLSmode`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::ServerTlsMode;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: passthrough}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 443, name: tls, protocol: TLS}
///     hosts: [nginx.example.com]
///     tls: {mode: PASSTHROUGH}
/// ", "gw.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let server = &loaded.objects[0].spec.as_gateway().unwrap().servers[0];
/// assert_eq!(server.tls.as_ref().unwrap().mode, ServerTlsMode::Passthrough);
/// // PASSTHROUGH is the proto3 zero value, so it is also the default.
/// assert_eq!(ServerTlsMode::default(), ServerTlsMode::Passthrough);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Route by SNI without terminating (zero value!).
    #[default]
    Passthrough,
    /// Terminate; no client certificate.
    Simple,
    /// Terminate; require a client certificate.
    Mutual,
    /// Like PASSTHROUGH, destination encoded in SNI.
    AutoPassthrough,
    /// Terminate with the mesh identity; require a mesh client certificate.
    IstioMutual,
    /// Terminate; request but do not require a client certificate.
    OptionalMutual,
}

/// `ServerTLSSettings.TLSProtocol`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::TlsProtocol;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: web}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 443, name: https, protocol: HTTPS}
///     hosts: [web.example.com]
///     tls:
///       mode: SIMPLE
///       credentialName: web-cert
///       minProtocolVersion: TLSV1_3
/// ", "gw.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let server = &loaded.objects[0].spec.as_gateway().unwrap().servers[0];
/// let tls = server.tls.as_ref().unwrap();
/// assert_eq!(tls.min_protocol_version, Some(TlsProtocol::TlsV1_3));
/// assert_eq!(tls.max_protocol_version, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TlsProtocol {
    /// Automatic (effective minimum TLS 1.2).
    #[default]
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    /// TLS 1.0.
    #[serde(rename = "TLSV1_0")]
    TlsV1_0,
    /// TLS 1.1.
    #[serde(rename = "TLSV1_1")]
    TlsV1_1,
    /// TLS 1.2.
    #[serde(rename = "TLSV1_2")]
    TlsV1_2,
    /// TLS 1.3.
    #[serde(rename = "TLSV1_3")]
    TlsV1_3,
}
