//! Security kinds (security.istio.io): `PeerAuthentication`, `AuthorizationPolicy`,
//! `RequestAuthentication`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, MatchLabelsSelector};

/// `PeerAuthentication.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthentication {
    /// Workloads; absent means the namespace (or mesh, in the root namespace).
    pub selector: Option<MatchLabelsSelector>,
    /// Mode for all ports.
    pub mtls: Option<PeerMtls>,
    /// Per workload (container) port modes; needs a selector.
    #[serde(default)]
    pub port_level_mtls: BTreeMap<u32, PeerMtls>,
}

/// `PeerAuthentication.MutualTLS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerMtls {
    /// The mode; zero value UNSET (inherit).
    #[serde(default)]
    pub mode: MtlsMode,
}

/// `PeerAuthentication.MutualTLS.Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent (top: PERMISSIVE).
    #[default]
    Unset,
    /// Plaintext only.
    Disable,
    /// mTLS or plaintext.
    Permissive,
    /// mTLS required.
    Strict,
}

/// `PolicyTargetReference` (`targetRef` / `targetRefs`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// API group (`gateway.networking.k8s.io`, `networking.istio.io`, empty for core).
    #[serde(default)]
    pub group: String,
    /// Kind (Gateway, GatewayClass, Service, ServiceEntry).
    #[serde(default)]
    pub kind: String,
    /// Name (required).
    #[serde(default)]
    pub name: String,
    /// Must be empty: cross-namespace references are not supported.
    pub namespace: Option<String>,
}

/// `AuthorizationPolicy.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// Workloads; absent means the namespace (or mesh, in the root namespace).
    pub selector: Option<MatchLabelsSelector>,
    /// Deprecated single target reference.
    pub target_ref: Option<PolicyTargetReference>,
    /// Target references (waypoints, gateways).
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Rules, OR'd; none means the policy never matches.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Action; default ALLOW.
    #[serde(default)]
    pub action: AuthorizationAction,
    /// Extension provider (CUSTOM only).
    pub provider: Option<ExtensionProvider>,
}

/// `AuthorizationPolicy.Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationAction {
    /// Allow matching requests (zero value).
    #[default]
    Allow,
    /// Deny matching requests.
    Deny,
    /// Mark matching requests for audit.
    Audit,
    /// Delegate to an external provider.
    Custom,
}

/// `AuthorizationPolicy.ExtensionProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Provider name from MeshConfig.
    #[serde(default)]
    pub name: String,
}

/// `Rule`: `from` AND `to` AND `when`; a missing part matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Sources (any of); `None` = not given (any source), `Some([])` is invalid.
    pub from: Option<Vec<RuleFrom>>,
    /// Operations (any of); `None` = not given (any operation).
    pub to: Option<Vec<RuleTo>>,
    /// Conditions (all of).
    #[serde(default)]
    pub when: Vec<Condition>,
}

/// `Rule.From`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    /// The source (required).
    pub source: Option<RuleSource>,
}

/// `Rule.To`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    /// The operation (required).
    pub operation: Option<Operation>,
}

/// `Source` of an AuthorizationPolicy rule (Istio's `Source`, renamed to keep [`crate::model::Source`] for
/// object positions): fields AND'd, values within a field OR'd.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSource {
    /// Peer identities without `spiffe://` (`cluster.local/ns/default/sa/sleep`).
    #[serde(default)]
    pub principals: Vec<String>,
    /// Negated principals.
    #[serde(default)]
    pub not_principals: Vec<String>,
    /// JWT `iss/sub`.
    #[serde(default)]
    pub request_principals: Vec<String>,
    /// Negated request principals.
    #[serde(default)]
    pub not_request_principals: Vec<String>,
    /// Peer namespaces (needs mTLS).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Negated namespaces.
    #[serde(default)]
    pub not_namespaces: Vec<String>,
    /// `ns/sa` or `sa` (policy's namespace).
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Negated service accounts.
    #[serde(default)]
    pub not_service_accounts: Vec<String>,
    /// Direct peer IPs/CIDRs.
    #[serde(default)]
    pub ip_blocks: Vec<String>,
    /// Negated IP blocks.
    #[serde(default)]
    pub not_ip_blocks: Vec<String>,
    /// Original client IPs/CIDRs (X-Forwarded-For / PROXY).
    #[serde(default)]
    pub remote_ip_blocks: Vec<String>,
    /// Negated remote IP blocks.
    #[serde(default)]
    pub not_remote_ip_blocks: Vec<String>,
    /// Peer trust domains.
    #[serde(default)]
    pub trust_domains: Vec<String>,
    /// Negated trust domains.
    #[serde(default)]
    pub not_trust_domains: Vec<String>,
}

/// `Operation`: fields AND'd, values within a field OR'd.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// Hosts (case-insensitive).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Negated hosts.
    #[serde(default)]
    pub not_hosts: Vec<String>,
    /// Destination ports as strings.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Negated ports.
    #[serde(default)]
    pub not_ports: Vec<String>,
    /// Methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Negated methods.
    #[serde(default)]
    pub not_methods: Vec<String>,
    /// Paths (normalized; templates `{*}`, `{**}`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Negated paths.
    #[serde(default)]
    pub not_paths: Vec<String>,
}

/// `Condition` (`when`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Attribute (`request.headers[x-token]`, `source.ip`, ...).
    #[serde(default)]
    pub key: String,
    /// Allowed values.
    #[serde(default)]
    pub values: Vec<String>,
    /// Forbidden values.
    #[serde(default)]
    pub not_values: Vec<String>,
}

/// `RequestAuthentication.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthentication {
    /// Workloads; absent means the namespace.
    pub selector: Option<MatchLabelsSelector>,
    /// Deprecated single target reference.
    pub target_ref: Option<PolicyTargetReference>,
    /// Target references.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// JWT providers.
    #[serde(default)]
    pub jwt_rules: Vec<JwtRule>,
}

/// `JWTRule`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// Expected `iss`.
    #[serde(default)]
    pub issuer: String,
    /// Accepted audiences; empty = any.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// JWKS URL (http/https).
    #[serde(alias = "jwks_uri")]
    pub jwks_uri: Option<String>,
    /// Inline JWKS JSON.
    pub jwks: Option<String>,
    /// Header locations.
    #[serde(default)]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameter locations.
    #[serde(default)]
    pub from_params: Vec<String>,
    /// Cookie locations.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Header receiving the payload.
    pub output_payload_to_header: Option<String>,
    /// Keep the token upstream (default false).
    #[serde(default)]
    pub forward_original_token: bool,
    /// Claims copied to headers.
    #[serde(default)]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// JWKS fetch timeout (default 5 s).
    pub timeout: Option<Duration>,
    /// Claims split on spaces besides `scope` and `permission`.
    #[serde(default)]
    pub space_delimited_claims: Vec<String>,
}

/// `JWTHeader`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    /// Header name.
    #[serde(default)]
    pub name: String,
    /// Prefix before the token (`Bearer `).
    pub prefix: Option<String>,
}

/// `ClaimToHeader`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    /// Header name.
    #[serde(default)]
    pub header: String,
    /// Claim name.
    #[serde(default)]
    pub claim: String,
}
