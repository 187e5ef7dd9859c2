//! Security kinds (security.istio.io): `PeerAuthentication`, `AuthorizationPolicy`,
//! `RequestAuthentication`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, MatchLabelsSelector};

/// `PeerAuthentication.spec`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::MtlsMode;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: reviews, namespace: bookinfo}
/// spec:
///   selector:
///     matchLabels: {app: reviews}
///   mtls: {mode: STRICT}
///   portLevelMtls:
///     8080: {mode: DISABLE}
/// ", "pa.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let pa = loaded.objects[0].spec.as_peer_authentication().unwrap();
/// assert_eq!(pa.mtls.unwrap().mode, MtlsMode::Strict);
/// assert_eq!(pa.port_level_mtls[&8080].mode, MtlsMode::Disable);
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::{MtlsMode, PeerMtls};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: default, namespace: istio-system}
/// spec:
///   mtls: {mode: PERMISSIVE}
/// ", "pa.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let pa = loaded.objects[0].spec.as_peer_authentication().unwrap();
/// assert_eq!(pa.mtls, Some(PeerMtls { mode: MtlsMode::Permissive }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerMtls {
    /// The mode; zero value UNSET (inherit).
    #[serde(default)]
    pub mode: MtlsMode,
}

/// `PeerAuthentication.MutualTLS.Mode`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::MtlsMode;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: default, namespace: istio-system}
/// spec:
///   mtls: {mode: STRICT}
/// ", "pa.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let pa = loaded.objects[0].spec.as_peer_authentication().unwrap();
/// assert_eq!(pa.mtls.unwrap().mode, MtlsMode::Strict);
/// // UNSET (inherit from the parent) is the zero value.
/// assert_eq!(MtlsMode::default(), MtlsMode::Unset);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: deny-admin, namespace: ingress}
/// spec:
///   targetRefs:
///   - {group: gateway.networking.k8s.io, kind: Gateway, name: public}
///   action: DENY
///   rules:
///   - to:
///     - operation: {ports: ["8080"], paths: ["/admin/*"]}
/// "#, "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
/// let target = &ap.target_refs[0];
/// assert_eq!(target.group, "gateway.networking.k8s.io");
/// assert_eq!((target.kind.as_str(), target.name.as_str()), ("Gateway", "public"));
/// assert_eq!(target.namespace, None);
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::AuthorizationAction;
///
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: httpbin, namespace: foo}
/// spec:
///   selector:
///     matchLabels: {app: httpbin}
///   rules:
///   - from:
///     - source: {principals: ["cluster.local/ns/default/sa/sleep"]}
///     to:
///     - operation: {methods: [GET]}
/// "#, "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
/// assert_eq!(ap.action, AuthorizationAction::Allow); // the default
/// assert_eq!(ap.selector.as_ref().unwrap().match_labels["app"], "httpbin");
/// assert_eq!(ap.rules.len(), 1);
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::AuthorizationAction;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: deny-post, namespace: foo}
/// spec:
///   action: DENY
///   rules:
///   - to:
///     - operation: {ports: ['8080'], methods: [POST]}
/// ", "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
/// assert_eq!(ap.action, AuthorizationAction::Deny);
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::AuthorizationAction;
///
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: ext-authz, namespace: foo}
/// spec:
///   selector:
///     matchLabels: {app: httpbin}
///   action: CUSTOM
///   provider: {name: my-ext-authz}
///   rules:
///   - to:
///     - operation: {paths: ["/headers"]}
/// "#, "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
/// assert_eq!(ap.action, AuthorizationAction::Custom);
/// assert_eq!(ap.provider.as_ref().unwrap().name, "my-ext-authz");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Provider name from MeshConfig.
    #[serde(default)]
    pub name: String,
}

/// `Rule`: `from` AND `to` AND `when`; a missing part matches anything.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: httpbin, namespace: foo}
/// spec:
///   rules:
///   - from:
///     - source: {namespaces: [bar]}
///     to:
///     - operation: {methods: [GET]}
///     when:
///     - key: request.headers[version]
///       values: [v1, v2]
///   - to:
///     - operation: {paths: ["/healthz"]}
/// "#, "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let rules = &loaded.objects[0].spec.as_authorization_policy().unwrap().rules;
/// assert_eq!(rules[0].from.as_ref().map(Vec::len), Some(1));
/// assert_eq!(rules[0].when.len(), 1);
/// // The second rule has no `from`: any source.
/// assert_eq!(rules[1].from, None);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: from-bar, namespace: foo}
/// spec:
///   rules:
///   - from:
///     - source: {namespaces: [bar]}
///     - source: {ipBlocks: [10.0.0.0/16]}
/// ", "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
/// let from = ap.rules[0].from.as_ref().unwrap();
/// assert_eq!(from.len(), 2); // either source matches
/// assert_eq!(from[1].source.as_ref().unwrap().ip_blocks, ["10.0.0.0/16"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    /// The source (required).
    pub source: Option<RuleSource>,
}

/// `Rule.To`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: reads, namespace: foo}
/// spec:
///   rules:
///   - to:
///     - operation: {methods: [GET, HEAD]}
///     - operation: {paths: ["/public/*"]}
/// "#, "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
/// let to = ap.rules[0].to.as_ref().unwrap();
/// assert_eq!(to[0].operation.as_ref().unwrap().methods, ["GET", "HEAD"]);
/// assert_eq!(to[1].operation.as_ref().unwrap().paths, ["/public/*"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    /// The operation (required).
    pub operation: Option<Operation>,
}

/// `Source` of an AuthorizationPolicy rule (Istio's `Source`, renamed to keep [`crate::model::Source`] for
/// object positions): fields AND'd, values within a field OR'd.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: from-prod, namespace: foo}
/// spec:
///   rules:
///   - from:
///     - source:
///         namespaces: [prod]
///         notPrincipals: ["cluster.local/ns/prod/sa/batch"]
/// "#, "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
/// let source = ap.rules[0].from.as_ref().unwrap()[0].source.as_ref().unwrap();
/// assert_eq!(source.namespaces, ["prod"]);
/// assert_eq!(source.not_principals, ["cluster.local/ns/prod/sa/batch"]);
/// assert!(source.principals.is_empty());
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: api, namespace: foo}
/// spec:
///   rules:
///   - to:
///     - operation:
///         hosts: [api.example.com]
///         ports: ["8080"]
///         methods: [GET]
///         notPaths: ["/internal/*"]
/// "#, "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
/// let op = ap.rules[0].to.as_ref().unwrap()[0].operation.as_ref().unwrap();
/// assert_eq!(op.hosts, ["api.example.com"]);
/// assert_eq!(op.ports, ["8080"]);
/// assert_eq!(op.not_paths, ["/internal/*"]);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: jwt-issuer, namespace: foo}
/// spec:
///   rules:
///   - when:
///     - key: request.auth.claims[iss]
///       values: ["https://accounts.google.com"]
///     - key: source.ip
///       notValues: [10.1.2.3]
/// "#, "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
/// let when = &ap.rules[0].when;
/// assert_eq!(when[0].key, "request.auth.claims[iss]");
/// assert_eq!(when[0].values, ["https://accounts.google.com"]);
/// assert_eq!(when[1].not_values, ["10.1.2.3"]);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt-example, namespace: istio-system}
/// spec:
///   selector:
///     matchLabels: {istio: ingressgateway}
///   jwtRules:
///   - issuer: issuer-foo
///     jwksUri: https://example.com/.well-known/jwks.json
/// ", "ra.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ra = loaded.objects[0].spec.as_request_authentication().unwrap();
/// assert_eq!(ra.selector.as_ref().unwrap().match_labels["istio"], "ingressgateway");
/// assert_eq!(ra.jwt_rules[0].issuer, "issuer-foo");
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt-example, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: https://accounts.google.com
///     audiences: [bookstore-android.apps.example.com]
///     jwksUri: https://www.googleapis.com/oauth2/v3/certs
///     forwardOriginalToken: true
/// ", "ra.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ra = loaded.objects[0].spec.as_request_authentication().unwrap();
/// let rule = &ra.jwt_rules[0];
/// assert_eq!(rule.audiences, ["bookstore-android.apps.example.com"]);
/// assert_eq!(rule.jwks_uri.as_deref(), Some("https://www.googleapis.com/oauth2/v3/certs"));
/// assert!(rule.forward_original_token);
/// ```
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
    /// Whether this rule's token must be in every request (`REQUIRED`) or only verified
    /// when present (`OPTIONAL`, the default).
    #[serde(default)]
    pub presence: JwtPresence,
}

/// `JWTRule.presence` (`JWTRequirement`): with a `REQUIRED` rule in a policy, Envoy is
/// given `requires_all` over its rules (each `REQUIRED` one bare, each `OPTIONAL` one
/// with `allow_missing`), so every required token must be present and valid and no single
/// token stands in for another (istio/istio#60823).
///
/// # Examples
///
/// ```
/// use mesh_core::model::JwtPresence;
///
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: multi-jwt, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: https://idp.example.com
///     jwksUri: https://idp.example.com/.well-known/jwks.json
///     presence: REQUIRED
///   - issuer: https://scope.example.com
///     jwksUri: https://scope.example.com/.well-known/jwks.json
///     fromHeaders: [{name: x-scope-token}]
/// "#, "ra.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ra = loaded.objects[0].spec.as_request_authentication().unwrap();
/// assert_eq!(ra.jwt_rules[0].presence, JwtPresence::Required);
/// assert_eq!(ra.jwt_rules[1].presence, JwtPresence::Optional);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JwtPresence {
    /// A missing token is no failure; one present must be valid (Istio's behaviour
    /// before `presence` existed).
    #[default]
    Optional,
    /// The token must be present and valid: a request without it is answered 401.
    Required,
}

/// `JWTHeader`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt-example, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: issuer-foo
///     jwksUri: https://example.com/.well-known/jwks.json
///     fromHeaders:
///     - name: x-jwt-assertion
///       prefix: "Bearer "
/// "#, "ra.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ra = loaded.objects[0].spec.as_request_authentication().unwrap();
/// let header = &ra.jwt_rules[0].from_headers[0];
/// assert_eq!(header.name, "x-jwt-assertion");
/// assert_eq!(header.prefix.as_deref(), Some("Bearer "));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt-example, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: issuer-foo
///     jwksUri: https://example.com/.well-known/jwks.json
///     outputClaimToHeaders:
///     - {header: x-jwt-claim-foo, claim: foo}
/// ", "ra.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ra = loaded.objects[0].spec.as_request_authentication().unwrap();
/// let copy = &ra.jwt_rules[0].output_claim_to_headers[0];
/// assert_eq!((copy.header.as_str(), copy.claim.as_str()), ("x-jwt-claim-foo", "foo"));
/// ```
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
