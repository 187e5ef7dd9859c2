//! AuthorizationPolicy enforcement as a Tower layer.
//!
//! [`AuthorizationLayer`] evaluates every request against the AuthorizationPolicies that
//! apply to one workload (namespace and labels, spec §8.2) in the *current* snapshot of a
//! [`Mesh`], so a new policy takes effect on the next request. The compiled
//! [`WorkloadAuthz`] is cached per snapshot generation (one atomic load per request to
//! check it), never rebuilt per request.
//!
//! Before anything else the request path is normalized in the request itself as the
//! snapshot's MeshConfig `pathNormalization` has Envoy do ([`PathNormalization`]). With
//! Istio's default, `BASE`: `%XX` of unreserved characters decoded, `\` turned into `/`,
//! `.` and `..` segments resolved, `%2F`/`%5C` and `//` kept
//! ([`normalize_path`](mesh_core::authz::normalize_path));
//! `MERGE_SLASHES` also merges `//`, `DECODE_AND_MERGE_SLASHES` also decodes `%2F`/`%5C`
//! first, `NONE` leaves the path alone. Policies, RequestAuthentication and the wrapped
//! service all see the normalized path (the query as sent); a path with `%00` is answered
//! 400 (`path_normalization_failed`) unless the mode is `NONE`. Ordinary paths cost one
//! scan and no allocation.
//!
//! A denied request never reaches the wrapped service: it is answered as Envoy's RBAC
//! filter does, 403 with body `RBAC: access denied` (gRPC: `grpc-status: 7`,
//! PERMISSION_DENIED), and logged at `info` under the target `inmesh::authz` naming the
//! deciding policy (`ns/name`), rule and reason. AUDIT and dry-run matches are logged too.
//!
//! The peer's principal and the workload port come from the [`ConnectionInfo`] in the
//! request extensions (the mesh server puts it there); without one the request is
//! plaintext (no principal) and the port is the layer's [`with_port`] or the URI's.
//!
//! RequestAuthentication runs first, as Envoy's `jwt_authn` filter before its RBAC filter
//! ([`mesh_core::authn`]): a request without a token passes; a valid token's identity is
//! put in the request extensions as a [`RequestAuth`] (for `requestPrincipals` and
//! `request.auth.*` conditions, and for the application), the token header removed unless
//! `forwardOriginalToken`, `outputPayloadToHeader` and `outputClaimToHeaders` written; an
//! invalid token gets 401 with Envoy's message (`Jwt is expired`, `Jwt verification
//! fails`, `Jwt issuer is not configured`, `Audiences in Jwt are not allowed`, ...) and a
//! `www-authenticate` header (a gRPC call: 200 with `grpc-status: 16`, UNAUTHENTICATED, and
//! the message in `grpc-message`, as Envoy's local replies). A `jwksUri` is fetched in the background, over `http://` or
//! `https://` (the server verified against the platform's root certificates and those
//! given to [`trust_jwks_roots`]), within the jwtRule's `timeout` (default 5 s), and
//! refreshed every ten minutes; until its keys arrive, tokens for it fail closed, and a
//! failed fetch is tried again a second later.
//!
//! CUSTOM policies ask their external authorizer, a MeshConfig `envoyExtAuthzHttp`
//! provider ([`mesh_core::meshconfig`]), as Envoy's ext_authz filter does, before DENY and
//! ALLOW policies and only when a CUSTOM policy's rules match (no cost otherwise): the
//! check request goes through a [`MeshClient`] (the registry resolves the provider's
//! `service`; the mesh server's own identity for mTLS; see
//! [`with_ext_authz_client`](AuthorizationLayer::with_ext_authz_client)) with the
//! original method, `pathPrefix` + path and query, `Host`, `Authorization`,
//! `Content-Length: 0` and the headers `includeRequestHeadersInCheck` selects. A 200
//! allows (`headersToUpstreamOnAllow` headers set on the request,
//! `headersToDownstreamOnAllow` ones added to the response, then DENY and ALLOW decide);
//! any other answer is the response (`headersToDownstreamOnDeny`); a 5xx, a failed
//! connection or the provider's `timeout` answer `statusOnError` (403) unless `failOpen`.
//! A provider that is not defined (or not `envoyExtAuthzHttp`, or several providers for
//! one workload) makes the CUSTOM policy deny what it matches, as istiod. With
//! `includeRequestBodyInCheck` the check carries the request body as Envoy's
//! `with_request_body` sends it (up to `maxRequestBytes`, 413 beyond without
//! `allowPartialMessage`, `x-envoy-auth-partial-body`), read ahead from the body a mesh
//! server or gateway received; the application still reads all of it. Difference: the
//! check goes through the mesh client's routing (VirtualServices for the provider's host
//! apply).
//!
//! [`trust_jwks_roots`]: AuthorizationLayer::trust_jwks_roots
//!
//! [`with_port`]: AuthorizationLayer::with_port
//!
//! ```
//! use mesh_core::mesh::Mesh;
//! use mesh_tower::authz::AuthorizationLayer;
//!
//! let mesh = Mesh::from_yaml("
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: deny-all, namespace: foo}
//! spec: {}
//! ").unwrap();
//! let labels = [("app".to_string(), "httpbin".to_string())].into();
//! let authz = AuthorizationLayer::new(mesh, "foo", labels).with_port(8000);
//! let req = http::Request::get("/headers").body(()).unwrap();
//! let d = authz.decide(&req);
//! assert!(!d.allowed);
//! assert_eq!(d.policy, None); // ALLOW policies apply (the empty one) and none matched
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use mesh_core::authn::{authenticate, JwtProvider};
use mesh_core::authz::{
    AuthzDecision, AuthzReason, AuthzRequest, HttpAuthzAttrs, PathNormalization, RequestAuth,
    WorkloadAuthz,
};
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::ExtAuthzRef;
use mesh_core::model::Labels;
use mesh_tls::WorkloadCredentials;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::envoy::{
    grpc_percent_encode, http_to_grpc_status, is_grpc, LocalReply, ResponseCodeDetails,
    ResponseFlags,
};
use crate::inbound::ConnectionInfo;
use crate::outbound::{ClientWorkload, MeshClient};

mod ext_authz;
mod ext_authz_grpc;
mod jwks;
mod proto;

use ext_authz::{Authorizer, ExtAuthzClient, Outcome, Prepared};
use ext_authz_grpc::GrpcAuthzClient;

/// The log target of authorization decisions.
///
/// # Examples
///
/// A denied connection is logged under this target:
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::authz::{AuthorizationLayer, TARGET};
/// use mesh_tower::inbound::ConnectionInfo;
/// # use std::sync::{Arc, Mutex};
/// # #[derive(Clone, Default)]
/// # struct Logs(Arc<Mutex<Vec<u8>>>);
/// # impl std::io::Write for Logs {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// # impl Logs { fn text(&self) -> String { String::from_utf8(self.0.lock().unwrap().clone()).unwrap() } }
/// # fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
/// #     let logs = Logs::default();
/// #     let writer = logs.clone();
/// #     let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
/// #     (logs, tracing::subscriber::set_default(subscriber))
/// # }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (logs, _guard) = capture(); // a `tracing` subscriber writing into `logs`
/// let mesh = Mesh::from_yaml("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: allow-nothing, namespace: foo}
/// spec: {}
/// ")?;
/// let authz = AuthorizationLayer::new(mesh, "foo", Default::default());
/// assert!(!authz.decide_connection(&ConnectionInfo::new(None, 3306)).allowed);
/// assert!(logs.text().contains(&format!(" INFO {TARGET}: RBAC: connection denied")));
/// # Ok(()) }
/// ```
pub const TARGET: &str = "inmesh::authz";

#[derive(Debug)]
struct Cached {
    generation: u64,
    /// The layer's workload port (when no `ConnectionInfo` says).
    port: Option<u16>,
    authz: WorkloadAuthz,
    /// The RequestAuthentication providers of the workload.
    jwt: Vec<Arc<JwtProvider>>,
    /// The external authorizer of the workload's CUSTOM policies: `None` when none applies,
    /// `Err` (istiod's message) when it cannot be used (the CUSTOM policies then deny what
    /// they match).
    ext_authz: Option<Result<Authorizer, Arc<str>>>,
    /// The snapshot's MeshConfig `pathNormalization`.
    path_normalization: PathNormalization,
    /// How `remote.ip` is found, when a policy reads it (`None`: no policy does; the
    /// direct peer stands in and no header is read).
    remote_ip: Option<XffMode>,
}

/// The client address a gateway's connection manager trusted before it appended its peer
/// to `X-Forwarded-For` (Envoy's stream remote address): authorization reads it rather
/// than the list it can no longer read the same way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrustedClient(pub(crate) std::net::IpAddr);

/// How the original client address (`remote.ip`, `remoteIpBlocks`) is found, as Envoy's
/// connection manager finds it from `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XffMode {
    /// A sidecar (Istio: `use_remote_address: false`, no trusted hops): the rightmost
    /// `X-Forwarded-For` address, else the connection's peer.
    Sidecar,
    /// A gateway (`use_remote_address: true`) trusting this many proxies in front of it
    /// (MeshConfig `gatewayTopology.numTrustedProxies`): with 0 the connection's peer, with
    /// N the N-th `X-Forwarded-For` address from the right (the peer when there are fewer).
    Gateway(u32),
}

impl XffMode {
    /// The original client address of a request from `peer` carrying `headers`.
    pub(crate) fn client(
        self,
        headers: &http::HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Option<std::net::IpAddr> {
        let skip = match self {
            XffMode::Sidecar => 0,
            XffMode::Gateway(0) => return peer,
            XffMode::Gateway(n) => n as usize - 1,
        };
        // every X-Forwarded-For line as one comma-separated list, read from the right
        // (no allocation: this runs per request when a policy reads `remote.ip`)
        let all = headers.get_all("x-forwarded-for");
        if all.iter().any(|v| v.to_str().is_err()) {
            return peer;
        }
        all.iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
            .nth(skip)
            .and_then(|e| e.trim().parse().ok())
            .or(peer)
    }
}

/// How the layer reaches external authorizers: a given client, or one built on first use
/// for the workload (its identity and certificate when the server knows them).
#[derive(Default)]
struct ExtClient {
    client: OnceLock<MeshClient>,
    workload: Option<ClientWorkload>,
    credentials: Option<Arc<WorkloadCredentials>>,
}

struct Shared {
    mesh: Mesh,
    namespace: Box<str>,
    labels: Labels,
    port: Option<u16>,
    cache: ArcSwapOption<Cached>,
    jwks: Arc<jwks::JwksCache>,
    ext_client: Arc<ExtClient>,
    xff: XffMode,
}

impl Shared {
    /// The same settings, with a fresh policy cache.
    fn copy(&self) -> Shared {
        Shared {
            mesh: self.mesh.clone(),
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
            port: self.port,
            cache: ArcSwapOption::empty(),
            jwks: Arc::clone(&self.jwks),
            ext_client: Arc::clone(&self.ext_client),
            xff: self.xff,
        }
    }

    fn mesh_client(&self) -> &MeshClient {
        let e = &self.ext_client;
        e.client.get_or_init(|| {
            let workload = e.workload.clone().unwrap_or_else(|| {
                let name = self.labels.get("app").map_or("unknown", String::as_str);
                ClientWorkload::new(name, &self.namespace, "default")
            });
            let mut b = MeshClient::builder(self.mesh.clone(), workload);
            if let Some(c) = &e.credentials {
                b = b.credentials(Arc::clone(c));
            }
            b.build()
        })
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationLayer")
            .field("namespace", &self.namespace)
            .field("labels", &self.labels)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Enforces AuthorizationPolicy for one workload. See the [module docs](self).
///
/// # Examples
///
/// Istio's `httpbin-viewer` policy: only `sleep` may GET. The caller's principal comes from
/// the [`ConnectionInfo`] the mesh server puts in the request extensions.
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_tls::{Identity, PeerIdentity};
/// use mesh_tower::authz::AuthorizationLayer;
/// use mesh_tower::inbound::ConnectionInfo;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: httpbin-viewer, namespace: foo}
/// spec:
///   selector: {matchLabels: {app: httpbin}}
///   action: ALLOW
///   rules:
///   - from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]
///     to: [{operation: {methods: [GET]}}]
/// ")?;
/// let labels = [("app".to_string(), "httpbin".to_string())].into();
/// let authz = AuthorizationLayer::new(mesh, "foo", labels);
///
/// let request = |method: &str, caller: Option<&str>| {
///     let peer = caller.map(|sa| PeerIdentity::new(Identity::new("cluster.local", "foo", sa).unwrap()));
///     let mut req = http::Request::builder().method(method).uri("/headers").body(()).unwrap();
///     req.extensions_mut().insert(ConnectionInfo::new(peer, 8000));
///     req
/// };
/// let d = authz.decide(&request("GET", Some("sleep")));
/// assert!(d.allowed);
/// assert_eq!(d.policy.as_deref(), Some("foo/httpbin-viewer"));
///
/// assert!(!authz.decide(&request("POST", Some("sleep"))).allowed);
/// assert!(!authz.decide(&request("GET", Some("curl"))).allowed);
/// assert!(!authz.decide(&request("GET", None)).allowed); // plaintext: no principal
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AuthorizationLayer {
    shared: Arc<Shared>,
}

impl AuthorizationLayer {
    /// For the workload with these labels in `namespace`.
    ///
    /// # Examples
    ///
    /// A workload no policy selects allows everything:
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::AuthorizationLayer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny-all, namespace: foo}
    /// spec: {}
    /// ")?;
    /// let bar = AuthorizationLayer::new(mesh, "bar", [("app".to_string(), "httpbin".to_string())].into());
    /// assert!(bar.policies().is_empty());
    /// assert!(bar.decide(&http::Request::get("/").body(())?).allowed);
    /// # Ok(()) }
    /// ```
    pub fn new(mesh: Mesh, namespace: impl Into<Box<str>>, labels: Labels) -> Self {
        AuthorizationLayer {
            shared: Arc::new(Shared {
                mesh,
                namespace: namespace.into(),
                labels,
                port: None,
                cache: ArcSwapOption::empty(),
                jwks: Arc::default(),
                ext_client: Arc::default(),
                xff: XffMode::Sidecar,
            }),
        }
    }

    /// The workload port to authorize requests as, when no [`ConnectionInfo`] says.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::AuthorizationLayer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny-admin-port, namespace: foo}
    /// spec:
    ///   action: DENY
    ///   rules: [{to: [{operation: {ports: ["9000"]}}]}]
    /// "#)?;
    /// let authz = AuthorizationLayer::new(mesh, "foo", Default::default());
    /// let req = http::Request::get("/").body(())?;
    /// assert!(authz.decide(&req).allowed); // port 80: no ConnectionInfo, no port in the URI
    /// assert!(!authz.with_port(9000).decide(&req).allowed);
    /// # Ok(()) }
    /// ```
    pub fn with_port(self, port: u16) -> Self {
        let mut s = self.shared.copy();
        s.port = Some(port);
        AuthorizationLayer {
            shared: Arc::new(s),
        }
    }

    /// Sends the checks of CUSTOM AuthorizationPolicies (MeshConfig `envoyExtAuthzHttp`
    /// providers) through this client. Default: a client built on first use, as the
    /// workload (with its certificate when a [`MeshServer`](crate::inbound::MeshServer)
    /// built the layer; plaintext otherwise).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::AuthorizationLayer;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// let mesh = Mesh::new(Default::default());
    /// let client = MeshClient::builder(mesh.clone(), ClientWorkload::new("httpbin", "foo", "httpbin")).build();
    /// let authz = AuthorizationLayer::new(mesh, "foo", Default::default()).with_ext_authz_client(client);
    /// # let _ = authz;
    /// ```
    pub fn with_ext_authz_client(self, client: MeshClient) -> Self {
        let mut s = self.shared.copy();
        let slot = ExtClient::default();
        let _ = slot.client.set(client);
        s.ext_client = Arc::new(slot);
        AuthorizationLayer {
            shared: Arc::new(s),
        }
    }

    /// A gateway's layer: `remote.ip` is found as Envoy's gateway connection manager finds
    /// it (`use_remote_address: true`, `trusted_hops` = `numTrustedProxies`).
    pub(crate) fn for_gateway(self, trusted_hops: u32) -> Self {
        let mut s = self.shared.copy();
        s.xff = XffMode::Gateway(trusted_hops);
        AuthorizationLayer {
            shared: Arc::new(s),
        }
    }

    /// The identity external authorizer checks are sent as (MeshServer: the workload's).
    pub(crate) fn with_ext_authz_identity(
        self,
        workload: ClientWorkload,
        credentials: Option<Arc<WorkloadCredentials>>,
    ) -> Self {
        let mut s = self.shared.copy();
        s.ext_client = Arc::new(ExtClient {
            client: OnceLock::new(),
            workload: Some(workload),
            credentials,
        });
        AuthorizationLayer {
            shared: Arc::new(s),
        }
    }

    /// `https://` `jwksUri` servers are also trusted up to these root certificates, besides
    /// the platform's (replacing any roots given before). Every layer sharing this one's
    /// key cache (its clones, [`with_port`](Self::with_port), a
    /// [`MeshServer`](crate::inbound::MeshServer)'s
    /// [`authorization`](crate::inbound::MeshServer::authorization)) uses them from its
    /// next fetch on. A server whose certificate chains to no trusted root is never
    /// fetched from: its tokens fail closed (401 `Jwks remote fetch is failed`).
    ///
    /// # Examples
    ///
    /// Keys served by an identity provider with a certificate from a private CA:
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{MeshCa, TrustBundle};
    /// use mesh_tower::authz::AuthorizationLayer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - issuer: https://idp.corp.example
    ///     jwksUri: https://idp.corp.example/keys.json
    ///     timeout: 2s
    /// ")?;
    /// let corp_ca = MeshCa::self_signed("corp.example")?; // or TrustBundle::from_pem_file(..)
    /// let authz = AuthorizationLayer::new(mesh, "foo", Default::default());
    /// authz.trust_jwks_roots(corp_ca.trust_bundle().clone());
    /// # let _: &TrustBundle = corp_ca.trust_bundle();
    /// # Ok(()) }
    /// ```
    pub fn trust_jwks_roots(&self, roots: mesh_tls::TrustBundle) {
        self.shared.jwks.trust_roots(roots);
    }

    /// Names (`ns/name`) of the policies that apply to the workload in the current snapshot.
    ///
    /// # Examples
    ///
    /// A policy applied by a config reload is in force at once:
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::AuthorizationLayer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let deny_all = "
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: allow-nothing, namespace: foo}
    /// spec: {}
    /// ";
    /// let mesh = Mesh::from_yaml(deny_all)?;
    /// let authz = AuthorizationLayer::new(mesh.clone(), "foo", [("app".to_string(), "httpbin".to_string())].into());
    /// assert_eq!(authz.policies(), ["foo/allow-nothing"]);
    ///
    /// let more = format!("{deny_all}---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {{name: deny-post, namespace: foo}}
    /// spec:
    ///   action: DENY
    ///   rules: [{{to: [{{operation: {{methods: [POST]}}}}]}}]
    /// ");
    /// mesh.reload_loaded(mesh_core::load::load_str(&more, "policies.yaml"))?;
    /// assert_eq!(authz.policies().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn policies(&self) -> Vec<String> {
        self.workload_authz()
            .authz
            .policies()
            .map(str::to_owned)
            .collect()
    }

    fn workload_authz(&self) -> Arc<Cached> {
        self.with_authz(Arc::clone)
    }

    /// Runs `f` on the compiled policies of the current snapshot: on the request path two
    /// atomic loads (the mesh's generation, the cache) and no reference-count traffic; the
    /// policies are recompiled only when the snapshot generation changed.
    fn with_authz<R>(&self, f: impl FnOnce(&Arc<Cached>) -> R) -> R {
        let s = &self.shared;
        {
            let guard = s.cache.load();
            if let Some(c) = &*guard
                && c.generation == s.mesh.generation()
            {
                return f(c);
            }
        }
        let snap = s.mesh.load();
        let generation = snap.generation();
        {
            // the generation counter moves just after the snapshot: compiled meanwhile
            let guard = s.cache.load();
            if let Some(c) = &*guard
                && c.generation == generation
            {
                return f(c);
            }
        }
        let jwt = snap.jwt_providers(&s.namespace, &s.labels);
        // the keys of every jwksUri, fetched now rather than on the first token
        for p in &jwt {
            if let Some(uri) = p.jwks_uri() {
                s.jwks.fetch(uri, p.timeout());
            }
        }
        let authz = snap.authz_for_workload(&s.namespace, &s.labels);
        let remote_ip = authz.uses_remote_ip().then_some(s.xff);
        let custom = authz.custom_providers();
        let ext_authz =
            (!custom.is_empty()).then(|| {
                // (a provider whose service the registry lacks is unusable, as in istiod)
                match snap.ext_authz(&custom) {
                    Ok(ExtAuthzRef::Http(h)) => Ok(Authorizer::Http(Arc::new(
                        ExtAuthzClient::new(custom[0], Arc::clone(h)),
                    ))),
                    Ok(ExtAuthzRef::Grpc(g)) => Ok(Authorizer::Grpc(Arc::new(
                        GrpcAuthzClient::new(custom[0], Arc::clone(g)),
                    ))),
                    Err(e) => {
                        tracing::warn!(target: TARGET, namespace = %s.namespace, error = %e,
                        "CUSTOM AuthorizationPolicy: no usable extension provider; \
                         every request to the workload is denied, as istiod does");
                        Err(Arc::from(e))
                    }
                }
            });
        let fresh = Arc::new(Cached {
            generation,
            port: s.port,
            authz,
            jwt,
            ext_authz,
            path_normalization: snap.options().path_normalization,
            remote_ip,
        });
        s.cache.store(Some(Arc::clone(&fresh)));
        f(&fresh)
    }

    /// Decides one request (no side effects, no logging). A CUSTOM policy matching it
    /// denies here: its external authorizer is asked only by [`Authorization`] (and the
    /// mesh server and gateway).
    ///
    /// Without a [`ConnectionInfo`] in the extensions the request counts as plaintext, on
    /// the layer's [`with_port`](Self::with_port) or the URI's port (else 80).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::AuthzReason;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::AuthorizationLayer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny-admin, namespace: foo}
    /// spec:
    ///   action: DENY
    ///   rules: [{to: [{operation: {paths: [/admin/*]}}]}]
    /// ")?;
    /// let authz = AuthorizationLayer::new(mesh, "foo", Default::default());
    ///
    /// let d = authz.decide(&http::Request::get("/admin/users").body(())?);
    /// assert!(!d.allowed);
    /// assert_eq!(d.reason, AuthzReason::DeniedByPolicy);
    /// assert_eq!(d.policy.as_deref(), Some("foo/deny-admin"));
    ///
    /// // Paths are normalized as Envoy does before matching.
    /// assert!(!authz.decide(&http::Request::get("/public/../admin/users").body(())?).allowed);
    /// assert!(authz.decide(&http::Request::get("/public").body(())?).allowed);
    /// # Ok(()) }
    /// ```
    pub fn decide<B>(&self, req: &Request<B>) -> AuthzDecision {
        self.with_authz(|c| Self::decide_with(c, req))
    }

    /// [`decide`](Self::decide) against the workload's cached policies.
    fn decide_with<B>(c: &Cached, req: &Request<B>) -> AuthzDecision {
        Self::with_request(c, req, false, |areq| c.authz.evaluate(areq))
    }

    /// Runs `f` on the authorization attributes of `req`; `normalized`: its path already
    /// went through [`crate::envoy::sanitize_request`] (no second scan on the request path).
    fn with_request<B, T>(
        c: &Cached,
        req: &Request<B>,
        normalized: bool,
        f: impl FnOnce(&AuthzRequest<'_>) -> T,
    ) -> T {
        let conn = req.extensions().get::<ConnectionInfo>();
        let port = conn
            .map(ConnectionInfo::port)
            .or(c.port)
            .or_else(|| req.uri().port_u16())
            .unwrap_or(80);
        let host = crate::envoy::authority(req);
        // Envoy's `:path`: the path with its query (`paths` drop the query themselves,
        // `request.headers[:path]` sees it). Normalized already when the request went
        // through `authorize`; for `decide` alone, as it would be (a path Envoy refuses is
        // decided as sent). No allocation unless normalizing changes a path with a query.
        let raw = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path(), |pq| pq.as_str());
        let path = if normalized {
            std::borrow::Cow::Borrowed(raw)
        } else {
            c.path_normalization
                .normalize_keep_query(raw)
                .unwrap_or(std::borrow::Cow::Borrowed(raw))
        };
        let mut areq = AuthzRequest::http(
            port,
            HttpAuthzAttrs {
                method: req.method().as_str(),
                path: &path,
                host,
                headers: req.headers(),
            },
        );
        if let Some(c) = conn {
            areq.principal = c.principal();
            areq.source_ip = c.remote_addr().map(|a| a.ip());
            areq.remote_ip = areq.source_ip;
            areq.destination_ip = c.local_addr().map(|a| a.ip());
            areq.sni = c.sni();
        }
        // `:scheme` as Envoy's connection manager sets it (`request.headers[:scheme]`)
        areq.scheme = Some(mesh_core::authz::request_scheme(
            req.uri().scheme_str(),
            req.headers()
                .get(crate::gateway::X_FORWARDED_PROTO)
                .and_then(|v| v.to_str().ok()),
            conn.is_some_and(ConnectionInfo::is_tls),
        ));
        // the original client, read from X-Forwarded-For only when a policy asks for it
        if let Some(mode) = c.remote_ip {
            areq.remote_ip = match req.extensions().get::<TrustedClient>() {
                Some(t) => Some(t.0),
                None => mode.client(req.headers(), areq.source_ip),
            };
        }
        // the token verified by RequestAuthentication (see `authenticate`)
        areq.request_auth = req.extensions().get::<RequestAuth>();
        f(&areq)
    }
}

impl AuthorizationLayer {
    /// Decides a TCP connection (no HTTP attributes): the RBAC network filter's view,
    /// used for connections that are not HTTP (TLS passthrough, TCP). Policies with HTTP
    /// fields are evaluated as Istio does for TCP (their HTTP-only rules never match an
    /// ALLOW; a DENY with HTTP-only conditions is skipped). A CUSTOM policy with an
    /// `envoyExtAuthzHttp` provider does not apply to TCP (istiod leaves it out of TCP
    /// filter chains); one with an `envoyExtAuthzGrpc` provider, which cannot be asked from
    /// this synchronous call, denies what it matches ([`MeshServer::serve_tcp`] and the
    /// gateway ask it).
    ///
    /// [`MeshServer::serve_tcp`]: crate::inbound::MeshServer::serve_tcp
    ///
    /// # Examples
    ///
    /// A MySQL port open to one service account only:
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Identity, PeerIdentity};
    /// use mesh_tower::authz::AuthorizationLayer;
    /// use mesh_tower::inbound::ConnectionInfo;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: mysql, namespace: db}
    /// spec:
    ///   selector: {matchLabels: {app: mysql}}
    ///   rules:
    ///   - from: [{source: {principals: [cluster.local/ns/shop/sa/orders]}}]
    ///     to: [{operation: {ports: [\"3306\"]}}]
    /// ")?;
    /// let authz = AuthorizationLayer::new(mesh, "db", [("app".to_string(), "mysql".to_string())].into());
    /// let from = |ns: &str, sa: &str| {
    ///     ConnectionInfo::new(Some(PeerIdentity::new(Identity::new("cluster.local", ns, sa).unwrap())), 3306)
    /// };
    /// assert!(authz.decide_connection(&from("shop", "orders")).allowed);
    /// assert!(!authz.decide_connection(&from("shop", "cart")).allowed);
    /// # Ok(()) }
    /// ```
    pub fn decide_connection(&self, conn: &ConnectionInfo) -> AuthzDecision {
        let d = match self.connection_step(conn) {
            ConnStep::Done(d) => d,
            // a gRPC authorizer cannot be asked here: fail closed
            ConnStep::Ask { policy, rule, .. } => custom_denied(policy, rule),
        };
        log_connection(conn, &d);
        d
    }

    /// [`decide_connection`](Self::decide_connection), asking the workload's
    /// `envoyExtAuthzGrpc` authorizer when a CUSTOM policy matches the connection (Envoy's
    /// network ext_authz filter: the check carries the peers' addresses and principals; an
    /// OK status allows, anything else closes the connection, a failed call is
    /// `failOpen`'s). As istiod builds it, a CUSTOM policy whose provider is
    /// `envoyExtAuthzHttp` does not apply to TCP at all, and one whose provider cannot be
    /// used denies what it matches.
    pub(crate) async fn authorize_connection(&self, conn: &ConnectionInfo) -> AuthzDecision {
        let d = match self.connection_step(conn) {
            ConnStep::Done(d) => d,
            ConnStep::Ask {
                client,
                rbac,
                policy,
                rule,
            } => {
                let local = self.shared.ext_client.credentials.as_ref();
                let local = local.map(|c| c.identity().as_uri());
                let outcome = match client.connection_check(conn, local) {
                    Some(call) => {
                        let mesh_client = self.shared.mesh_client().clone();
                        Arc::clone(&client).check(mesh_client, call).await
                    }
                    None => Outcome::Error("the check could not be built".to_owned()),
                };
                match outcome {
                    Outcome::Allowed { .. } => rbac,
                    Outcome::Error(e) if client.config.fail_open => {
                        tracing::warn!(target: TARGET, policy = %policy, provider = %client.name,
                            error = %e, "ext_authz: authorizer failed; failOpen lets the connection through");
                        rbac
                    }
                    Outcome::Error(e) => {
                        tracing::warn!(target: TARGET, policy = %policy, provider = %client.name,
                            error = %e, "ext_authz: authorizer failed; closing the connection");
                        custom_denied(policy, rule)
                    }
                    Outcome::Denied(_) => custom_denied(policy, rule),
                }
            }
        };
        log_connection(conn, &d);
        d
    }

    /// The RBAC network filters' view of a connection, and whether a gRPC authorizer must
    /// be asked.
    fn connection_step(&self, conn: &ConnectionInfo) -> ConnStep {
        let mut areq = AuthzRequest::tcp(conn.port());
        areq.principal = conn.principal();
        areq.source_ip = conn.remote_addr().map(|a| a.ip());
        areq.remote_ip = areq.source_ip;
        areq.destination_ip = conn.local_addr().map(|a| a.ip());
        areq.sni = conn.sni();
        self.with_authz(|c| {
            // DENY and ALLOW as they stand (the CUSTOM step counted as passed); a policy
            // that cannot be compiled denies before anything is asked
            let rbac = c.authz.evaluate_with(&areq, &|_, _| true);
            if matches!(rbac.reason, AuthzReason::Uncompilable(_)) {
                return ConnStep::Done(rbac);
            }
            // the CUSTOM filters come first in the chain (istiod `buildCompleteNetworkFilters`):
            // the authorizer is asked even when RBAC will deny the connection after it
            let Some(m) = c.authz.custom_match(&areq) else {
                return ConnStep::Done(rbac);
            };
            match &c.ext_authz {
                // istiod: "ignored CUSTOM action with HTTP provider on TCP filter chain"
                Some(Ok(Authorizer::Http(_))) => ConnStep::Done(rbac),
                Some(Ok(Authorizer::Grpc(g))) => ConnStep::Ask {
                    client: Arc::clone(g),
                    rbac,
                    policy: Arc::clone(m.policy),
                    rule: m.rule,
                },
                // an unusable provider (undefined, or several for one workload): istiod
                // turns the CUSTOM rules into DENY rules (`getBadCustomDenyRules`), so what
                // they match is refused and the rest decided by DENY and ALLOW
                _ => ConnStep::Done(custom_denied(Arc::clone(m.policy), m.rule)),
            }
        })
    }

    /// Decides and logs one request; a denied request gets the 403 (or gRPC 7) reply.
    /// First what Envoy's connection manager does before any filter: the request path is
    /// normalized in the request itself (the snapshot's `pathNormalization`, Istio's `BASE`
    /// by default, [`normalize_path`](mesh_core::authz::normalize_path)), so the
    /// application receives the path that was authorized; a path Envoy refuses (`%00`)
    /// gets 400.
    ///
    /// RequestAuthentication, before authorization (Envoy's `jwt_authn` filter runs before
    /// its RBAC filter): a request without a token passes as it is; a valid token's
    /// identity goes into the request extensions as a [`RequestAuth`] (which authorization
    /// and the application read), the token is removed unless the rule says
    /// `forwardOriginalToken`, and `outputPayloadToHeader` / `outputClaimToHeaders` are
    /// written; an invalid token gets 401 with Envoy's message.
    ///
    /// Then authorization, against the same load of the cached policies (what the
    /// [`Authorization`] service and the gateway do per request).
    ///
    /// `Ok(Some(check))`: a CUSTOM policy matches, its external authorizer must be asked
    /// ([`PendingCheck::finish`]) before the request goes on.
    pub(crate) fn authorize<B, R: From<Bytes>>(
        &self,
        req: &mut Request<B>,
    ) -> Result<Option<PendingCheck>, Response<R>> {
        self.with_authz(|c| {
            // the connection manager's work first: the path normalized in the request
            // itself, as the snapshot's MeshConfig says
            crate::envoy::sanitize_request(req, c.path_normalization)?;
            // and the `Host` the authority decided on (a layer used without the server's
            // connection manager too)
            crate::envoy::absolute_form(req, false);
            self.authenticate_with(c, req)?;
            self.check_with(c, req)
        })
    }

    /// The wait for the first keys of this workload's `jwksUri`s, when a request would
    /// otherwise find none (their fetch, started when the policies were compiled, has not
    /// answered yet); `None` at once in every other case.
    pub(crate) fn jwks_wait(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let (uris, timeout) = self.with_authz(|c| {
            let mut uris = Vec::new();
            let mut timeout = std::time::Duration::ZERO;
            for p in &c.jwt {
                if let Some(uri) = p.jwks_uri()
                    && self.shared.jwks.awaiting_first(uri)
                {
                    uris.push(uri.to_owned());
                    timeout = timeout.max(p.timeout());
                }
            }
            (uris, timeout)
        });
        if uris.is_empty() {
            return None;
        }
        let jwks = Arc::clone(&self.shared.jwks);
        Some(async move { jwks.first_keys(&uris, timeout).await })
    }

    fn authenticate_with<B, R: From<Bytes>>(
        &self,
        c: &Cached,
        req: &mut Request<B>,
    ) -> Result<(), Response<R>> {
        {
            if c.jwt.is_empty() {
                return Ok(());
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            // the headers the rules write are the mesh's: a caller's own values go first,
            // whatever follows (on purpose stricter than Envoy, whose preflight bypass
            // returns before its extractor removes them)
            mesh_core::authn::sanitize_jwt_outputs(req.headers_mut(), &c.jwt);
            // istiod sets `bypass_cors_preflight`: a CORS preflight carries no credentials
            // and passes Envoy's jwt_authn whatever the rules require, without an identity
            if mesh_core::authn::is_cors_preflight(req.method(), req.headers()) {
                return Ok(());
            }
            let jwks = &self.shared.jwks;
            let found = authenticate(&c.jwt, req.headers(), req.uri().query(), now, &|uri| {
                jwks.get(uri)
            });
            match found {
                Ok(None) => Ok(()),
                Ok(Some(a)) => {
                    mesh_core::authn::write_jwt_outputs(req.headers_mut(), &a);
                    req.extensions_mut().insert(a.auth);
                    Ok(())
                }
                Err(e) => {
                    tracing::info!(target: TARGET, error = %e, path = req.uri().path(),
                        "RequestAuthentication: token rejected");
                    // Envoy's sendLocalReply: 401 with the message (403 for a token whose
                    // audiences are not allowed), or for gRPC 200 with grpc-status 16
                    // (UNAUTHENTICATED; 7) and the message in grpc-message;
                    // www-authenticate either way
                    let reply = match e.http_status() {
                        403 => LocalReply::JwtForbidden(e.to_string()),
                        _ => LocalReply::Unauthenticated(e.to_string()),
                    };
                    let mut resp: Response<R> = reply.to_response(is_grpc(req.headers()));
                    let realm = format!(
                        "Bearer realm=\"http://{}{}\", error=\"invalid_token\"",
                        req.headers()
                            .get(http::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or(""),
                        req.uri().path()
                    );
                    if let Ok(v) = http::HeaderValue::from_str(&realm) {
                        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
                    }
                    Err(resp)
                }
            }
        }
    }

    /// This workload's SPIFFE identity (the gRPC check's destination principal).
    fn local_principal(&self) -> Option<&str> {
        let local = self.shared.ext_client.credentials.as_ref();
        local.map(|c| c.identity().as_uri())
    }

    fn check_with<B, R: From<Bytes>>(
        &self,
        c: &Cached,
        req: &Request<B>,
    ) -> Result<Option<PendingCheck>, Response<R>> {
        enum Step {
            Decided(AuthzDecision),
            Ask(Authorizer, Arc<str>, usize),
        }
        // CUSTOM first (Envoy's ext_authz filter runs before the RBAC filters); the
        // authorizer is asked only when a CUSTOM policy's rules match
        let step = Self::with_request(c, req, true, |areq| {
            // DENY and ALLOW as they stand (the CUSTOM step counted as passed)
            let rbac = c.authz.evaluate_with(areq, &|_, _| true);
            if matches!(rbac.reason, AuthzReason::Uncompilable(_)) {
                return Step::Decided(rbac);
            }
            let Some(m) = c.authz.custom_match(areq) else {
                return Step::Decided(rbac);
            };
            match &c.ext_authz {
                Some(Ok(client)) => Step::Ask(client.clone(), Arc::clone(m.policy), m.rule),
                // an unusable provider: istiod's DENY rules in the CUSTOM rules' place
                // (`getBadCustomDenyRules`), the rest decided by DENY and ALLOW
                _ => Step::Decided(AuthzDecision {
                    allowed: false,
                    policy: Some(Arc::clone(m.policy)),
                    rule: Some(m.rule),
                    reason: AuthzReason::CustomDenied,
                    audit: None,
                    dry_run: None,
                    shadow_deny: None,
                    shadow_allow: None,
                }),
            }
        });
        match step {
            Step::Decided(d) => rbac_result(req, d).map(|()| None),
            // the body first, then the check (`includeRequestBodyInCheck`)
            Step::Ask(client, policy, rule) if client.body_in_check().is_some() => {
                Ok(Some(PendingCheck {
                    layer: self.clone(),
                    client,
                    check: None,
                    policy,
                    rule,
                }))
            }
            Step::Ask(client, policy, rule) => {
                let Some(check) = client.prepare(req, self.local_principal(), None) else {
                    let d = custom_denied(policy, rule);
                    return rbac_result(req, d).map(|()| None);
                };
                Ok(Some(PendingCheck {
                    layer: self.clone(),
                    client,
                    check: Some(check),
                    policy,
                    rule,
                }))
            }
        }
    }
}

/// Where deciding a connection stands.
enum ConnStep {
    Done(AuthzDecision),
    /// A CUSTOM policy with a gRPC provider matched: ask it, then `rbac` stands.
    Ask {
        client: Arc<GrpcAuthzClient>,
        rbac: AuthzDecision,
        policy: Arc<str>,
        rule: usize,
    },
}

/// Logs a denied connection.
fn log_connection(conn: &ConnectionInfo, d: &AuthzDecision) {
    if !d.allowed {
        tracing::info!(target: TARGET, policy = d.policy.as_deref().unwrap_or("-"),
            rule = ?d.rule, reason = %d.reason, principal = conn.principal().unwrap_or(""),
            sni = conn.sni().unwrap_or(""), "RBAC: connection denied");
    }
}

fn custom_denied(policy: Arc<str>, rule: usize) -> AuthzDecision {
    AuthzDecision {
        allowed: false,
        policy: Some(policy),
        rule: Some(rule),
        reason: AuthzReason::CustomDenied,
        audit: None,
        dry_run: None,
        shadow_deny: None,
        shadow_allow: None,
    }
}

/// Logs `d`; a deny is the RBAC filter's 403 (gRPC: 7).
fn rbac_result<B, R: From<Bytes>>(req: &Request<B>, d: AuthzDecision) -> Result<(), Response<R>> {
    log_decision(req, &d);
    if d.allowed {
        return Ok(());
    }
    let mut resp: Response<R> = LocalReply::RbacDenied.to_response(is_grpc(req.headers()));
    resp.extensions_mut()
        .insert(ResponseCodeDetails(deny_details(&d)));
    resp.extensions_mut().insert(d);
    Err(resp)
}

/// A request a CUSTOM policy matched, waiting for its external authorizer.
pub(crate) struct PendingCheck {
    layer: AuthorizationLayer,
    client: Authorizer,
    /// `None`: made once the body is read (`includeRequestBodyInCheck`).
    check: Option<Prepared>,
    policy: Arc<str>,
    rule: usize,
}

impl fmt::Debug for PendingCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCheck")
            .field("provider", &self.client.name())
            .field("policy", &self.policy)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

impl PendingCheck {
    /// Asks the authorizer, then (allowed) the DENY and ALLOW policies on the request as
    /// the authorizer left it. `Ok`: the headers to add to the response.
    pub(crate) async fn finish<B: 'static, R: From<Bytes>>(
        self,
        req: &mut Request<B>,
    ) -> Result<HeaderMap, Response<R>> {
        let PendingCheck {
            layer,
            client,
            check,
            policy,
            rule,
        } = self;
        let grpc = is_grpc(req.headers());
        let check = match (check, client.body_in_check()) {
            (Some(check), _) => check,
            (None, settings) => {
                let body = match settings {
                    Some(s) => read_body_for_check(req, s, client.status_on_error()).await?,
                    None => None,
                };
                match client.prepare(req, layer.local_principal(), body.as_ref()) {
                    Some(check) => check,
                    None => {
                        let d = custom_denied(policy, rule);
                        return rbac_result(req, d).map(|()| HeaderMap::new());
                    }
                }
            }
        };
        let mesh_client = layer.shared.mesh_client().clone();
        let outcome = client.check(mesh_client, check).await;
        let downstream = match outcome {
            Outcome::Allowed {
                upstream,
                downstream,
            } => {
                tracing::debug!(target: TARGET, policy = %policy, provider = %client.name(),
                    path = req.uri().path(), "ext_authz: allowed");
                upstream.apply(req.headers_mut());
                downstream
            }
            Outcome::Denied(resp) => {
                tracing::info!(target: TARGET, policy = %policy, rule, provider = %client.name(),
                    status = resp.status().as_u16(), method = %req.method(),
                    path = req.uri().path(), "ext_authz: denied by the external authorizer");
                let (parts, body) = resp.into_parts();
                let mut out = denial::<R>(parts.status, body, grpc);
                // the authorizer's headers replace the reply's (Envoy removes each name it
                // set, then adds every value): its own `grpc-status` is the one sent
                let keep = |k: &http::HeaderName| !(grpc && k == http::header::CONTENT_TYPE);
                for k in parts.headers.keys().filter(|k| keep(k)) {
                    out.headers_mut().remove(k);
                }
                for (k, v) in parts.headers.iter().filter(|(k, _)| keep(k)) {
                    out.headers_mut().append(k.clone(), v.clone());
                }
                out.extensions_mut()
                    .insert(ResponseCodeDetails("ext_authz_denied".to_owned()));
                // Envoy's ext_authz sets UnauthorizedExternalService (UAEX) on a denial
                // [ext_authz.cc onComplete, CheckStatus::Denied]
                out.extensions_mut()
                    .insert(ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE);
                out.extensions_mut().insert(custom_denied(policy, rule));
                return Err(out);
            }
            Outcome::Error(e) if client.fail_open() => {
                tracing::warn!(target: TARGET, policy = %policy, provider = %client.name(),
                    error = %e, "ext_authz: authorizer failed; failOpen lets the request through");
                HeaderMap::new()
            }
            Outcome::Error(e) => {
                tracing::warn!(target: TARGET, policy = %policy, rule, provider = %client.name(),
                    error = %e, method = %req.method(), path = req.uri().path(),
                    "ext_authz: authorizer failed; denying with statusOnError");
                let status =
                    StatusCode::from_u16(client.status_on_error()).unwrap_or(StatusCode::FORBIDDEN);
                let mut out = denial::<R>(status, Bytes::new(), grpc);
                out.extensions_mut()
                    .insert(ResponseCodeDetails("ext_authz_error".to_owned()));
                // ...and on an error that is not let through (failure_mode_allow false)
                out.extensions_mut()
                    .insert(ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE);
                out.extensions_mut().insert(custom_denied(policy, rule));
                return Err(out);
            }
        };
        // then the RBAC filters, on the request as the authorizer left it
        layer.with_authz(|c| {
            let d = AuthorizationLayer::with_request(c, req, true, |areq| {
                c.authz.evaluate_with(areq, &|_, _| true)
            });
            rbac_result(req, d)
        })?;
        Ok(downstream)
    }
}

/// Reads the request's body ahead for its check, as Envoy's ext_authz `with_request_body`
/// buffers it: nothing for a request without a body or an upgrade; at most
/// `maxRequestBytes` (413 `Payload Too Large` beyond it without `allowPartialMessage`).
/// The application then reads the whole body as sent. A body a mesh server or gateway did
/// not receive itself (an [`AuthorizationLayer`] in a stack of the application's own)
/// cannot be read ahead: the request is refused with the provider's `statusOnError` (never
/// checked without the body its authorizer asked for). A client that sends nothing for
/// [`BODY_IDLE_TIMEOUT`] (none, as Istio configures Envoy) would get 408.
async fn read_body_for_check<B: 'static, R: From<Bytes>>(
    req: &mut Request<B>,
    s: mesh_core::meshconfig::RequestBodyInCheck,
    status_on_error: u16,
) -> Result<Option<ext_authz::CheckBody>, Response<R>> {
    // Envoy skips the buffering for a WebSocket upgrade only (its HTTP/1 codec drops an h2c
    // offer; any other upgrade's body is read as a body)
    if crate::outbound::upgrade_of(req.headers())
        == Some(crate::outbound::UpgradeRequest::WebSocket)
    {
        return Ok(None);
    }
    let grpc = is_grpc(req.headers());
    let any: &mut dyn std::any::Any = req.body_mut();
    let Some(body) = any.downcast_mut::<crate::inbound::ServerBody>() else {
        tracing::warn!(target: TARGET, "ext_authz: includeRequestBodyInCheck, but this \
            request's body is not one a mesh server or gateway received: it cannot be read \
            for the check; refused with statusOnError");
        let status = StatusCode::from_u16(status_on_error).unwrap_or(StatusCode::FORBIDDEN);
        let mut out = denial::<R>(status, Bytes::new(), grpc);
        out.extensions_mut()
            .insert(ResponseCodeDetails("ext_authz_error".to_owned()));
        out.extensions_mut()
            .insert(ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE);
        return Err(out);
    };
    let body = body.inner_mut().inner_mut();
    if http_body::Body::is_end_stream(body) {
        return Ok(None);
    }
    let max = usize::try_from(s.max_request_bytes).unwrap_or(usize::MAX);
    match body
        .read_ahead(max, s.allow_partial_message, BODY_IDLE_TIMEOUT)
        .await
    {
        Ok((bytes, partial)) => Ok(Some(ext_authz::CheckBody {
            bytes,
            partial,
            pack_as_bytes: s.pack_as_bytes,
        })),
        Err(crate::observe::ReadAheadError::TooLarge) => {
            // Envoy's connection manager, the decoder buffer over its limit
            let mut out = denial::<R>(
                StatusCode::PAYLOAD_TOO_LARGE,
                Bytes::from_static(b"Payload Too Large"),
                grpc,
            );
            if !grpc {
                out.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                );
            }
            out.extensions_mut()
                .insert(ResponseCodeDetails("request_payload_too_large".to_owned()));
            Err(out)
        }
        Err(crate::observe::ReadAheadError::Idle) => {
            let mut out = denial::<R>(
                StatusCode::REQUEST_TIMEOUT,
                Bytes::from_static(b"stream timeout"),
                grpc,
            );
            out.extensions_mut()
                .insert(ResponseCodeDetails("stream_idle_timeout".to_owned()));
            Err(out)
        }
        Err(crate::observe::ReadAheadError::Read(e)) => {
            tracing::debug!(target: TARGET, error = %e, "ext_authz: reading the body failed");
            let mut out = denial::<R>(StatusCode::BAD_REQUEST, Bytes::new(), grpc);
            out.extensions_mut().insert(ResponseCodeDetails(
                "downstream_remote_disconnect".to_owned(),
            ));
            Err(out)
        }
    }
}

/// How long reading a body ahead waits for the client's next bytes: for ever, as istiod
/// turns Envoy's `stream_idle_timeout` off (`StreamIdleTimeout = 0` on every connection
/// manager it builds); the connection's idle timeout and the client's own still apply.
const BODY_IDLE_TIMEOUT: Option<std::time::Duration> = None;

/// The local reply of an ext_authz denial: the status and body, or for gRPC a trailers-only
/// answer with the status mapped (Envoy's `sendLocalReply`).
fn denial<R: From<Bytes>>(status: StatusCode, body: Bytes, grpc: bool) -> Response<R> {
    if !grpc {
        let mut r = Response::new(R::from(body));
        *r.status_mut() = status;
        return r;
    }
    let mut r = Response::new(R::from(Bytes::new()));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        "grpc-status",
        HeaderValue::from(http_to_grpc_status(status.as_u16())),
    );
    if !body.is_empty()
        && let Ok(v) = HeaderValue::from_str(&grpc_percent_encode(&String::from_utf8_lossy(&body)))
    {
        h.insert("grpc-message", v);
    }
    r
}

impl<S> Layer<S> for AuthorizationLayer {
    type Service = Authorization<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorization {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AuthorizationLayer`].
///
/// # Examples
///
/// A denied request never reaches the wrapped service:
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::authz::{Authorization, AuthorizationLayer};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: deny-post, namespace: foo}
/// spec:
///   action: DENY
///   rules: [{to: [{operation: {methods: [POST]}}]}]
/// ")?;
/// let layer = AuthorizationLayer::new(mesh, "foo", Default::default()).with_port(8000);
/// let app = service_fn(|_req: http::Request<()>| async {
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
/// });
/// let svc: Authorization<_> = layer.layer(app);
///
/// let ok = svc.clone().oneshot(http::Request::get("/").body(())?).await?;
/// assert_eq!(ok.status(), 200);
/// assert_eq!(ok.into_body().collect().await?.to_bytes(), "hello");
///
/// let denied = svc.oneshot(http::Request::post("/").body(())?).await?;
/// assert_eq!(denied.status(), 403);
/// assert_eq!(denied.into_body().collect().await?.to_bytes(), "RBAC: access denied");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Authorization<S> {
    inner: S,
    layer: AuthorizationLayer,
}

impl<S> Authorization<S> {
    /// Wraps `inner`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::{Authorization, AuthorizationLayer};
    /// use tower::{service_fn, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: allow-nothing, namespace: foo}
    /// spec: {}
    /// ")?;
    /// let app = service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from("hello")))
    /// });
    /// let svc = Authorization::new(app, AuthorizationLayer::new(mesh, "foo", Default::default()));
    /// let denied = svc.oneshot(http::Request::get("/").body(())?).await?;
    /// assert_eq!(denied.status(), 403);
    /// # Ok(()) }
    /// ```
    pub fn new(inner: S, layer: AuthorizationLayer) -> Self {
        Authorization { inner, layer }
    }

    /// The wrapped service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::AuthorizationLayer;
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let layer = AuthorizationLayer::new(Mesh::new(Default::default()), "foo", Default::default());
    /// let svc = layer.layer(App { name: "httpbin" });
    /// assert_eq!(svc.get_ref().name, "httpbin");
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::AuthorizationLayer;
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let layer = AuthorizationLayer::new(Mesh::new(Default::default()), "foo", Default::default());
    /// let mut svc = layer.layer(App { name: "httpbin" });
    /// svc.get_mut().name = "httpbin-v2";
    /// assert_eq!(svc.get_ref().name, "httpbin-v2");
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::AuthorizationLayer;
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let layer = AuthorizationLayer::new(Mesh::new(Default::default()), "foo", Default::default());
    /// let app: App = layer.layer(App { name: "httpbin" }).into_inner();
    /// assert_eq!(app.name, "httpbin");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Envoy's `%RESPONSE_CODE_DETAILS%` for an RBAC deny naming the policy:
/// `rbac_access_denied_matched_policy[ns[foo]-policy[deny-all]-rule[0]]`.
fn deny_details(d: &AuthzDecision) -> String {
    match d.policy.as_deref().and_then(|p| p.split_once('/')) {
        Some((ns, name)) => format!(
            "rbac_access_denied_matched_policy[ns[{ns}]-policy[{name}]-rule[{}]]",
            d.rule.unwrap_or(0)
        ),
        None => "rbac_access_denied_matched_policy[none]".to_owned(),
    }
}

fn log_decision<B>(req: &Request<B>, d: &AuthzDecision) {
    let principal = req
        .extensions()
        .get::<ConnectionInfo>()
        .and_then(ConnectionInfo::principal)
        .unwrap_or("");
    if let Some(audit) = &d.audit {
        tracing::info!(target: TARGET, audit_policy = %audit, allowed = d.allowed, principal,
            method = %req.method(), path = req.uri().path(), "AUDIT policy matched");
    }
    // the shadow engines' results (Envoy's `istio_dry_run_*_shadow_*` metadata): said
    // when they differ from the decision
    for (engine, shadow) in [("deny", &d.shadow_deny), ("allow", &d.shadow_allow)] {
        let Some(s) = shadow else { continue };
        let result = if s.allowed { "allowed" } else { "denied" };
        let policy = s.policy.as_deref().unwrap_or("-");
        if s.allowed != d.allowed {
            tracing::info!(target: TARGET, shadow_engine = engine, shadow_result = result,
                shadow_policy = policy, allowed = d.allowed, principal, method = %req.method(),
                path = req.uri().path(), "dry-run policies would have decided otherwise");
        } else {
            tracing::debug!(target: TARGET, shadow_engine = engine, shadow_result = result,
                shadow_policy = policy, allowed = d.allowed, principal, "dry-run policies");
        }
    }
    if d.allowed {
        tracing::debug!(target: TARGET, policy = d.policy.as_deref().unwrap_or("-"),
            reason = %d.reason, principal, "allowed");
    } else {
        tracing::info!(target: TARGET, policy = d.policy.as_deref().unwrap_or("-"),
            rule = ?d.rule, reason = %d.reason, principal, method = %req.method(),
            path = req.uri().path(), "RBAC: access denied");
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Authorization<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
{
    type Response = Response<Either<ResB, Full<Bytes>>>;
    type Error = S::Error;
    type Future = AuthorizationFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        if let Some(wait) = self.layer.jwks_wait() {
            // the first requests wait for the keys (see `jwks`), then are decided
            let layer = self.layer.clone();
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return AuthorizationFuture::checking(Box::pin(async move {
                wait.await;
                let add = match layer.authorize::<_, Full<Bytes>>(&mut req)? {
                    None => HeaderMap::new(),
                    Some(pending) => pending.finish::<_, Full<Bytes>>(&mut req).await?,
                };
                Ok((inner.call(req), add))
            }));
        }
        match self.layer.authorize::<_, Full<Bytes>>(&mut req) {
            Ok(None) => AuthorizationFuture::inner(self.inner.call(req)),
            Err(resp) => AuthorizationFuture::denied(resp),
            Ok(Some(pending)) => {
                // the service made ready is the one called, after the check
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                AuthorizationFuture::checking(Box::pin(async move {
                    let add = pending.finish::<_, Full<Bytes>>(&mut req).await?;
                    Ok((inner.call(req), add))
                }))
            }
        }
    }
}

pin_project! {
    /// The response future of [`Authorization`]: the inner service's, or the 403.
    ///
    /// # Examples
    ///
    /// A denied gRPC call is answered at once with `grpc-status: 7` (PERMISSION_DENIED):
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::authz::{Authorization, AuthorizationFuture, AuthorizationLayer};
    /// use tower::{service_fn, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: allow-nothing, namespace: foo}
    /// spec: {}
    /// ")?;
    /// let layer = AuthorizationLayer::new(mesh, "foo", Default::default());
    /// let app = service_fn(|_req: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(String::new())) });
    /// let mut svc = Authorization::new(app, layer);
    ///
    /// let req = http::Request::post("/helloworld.Greeter/SayHello")
    ///     .header("content-type", "application/grpc")
    ///     .body(())?;
    /// let future: AuthorizationFuture<_> = svc.ready().await?.call(req);
    /// let response = future.await?;
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["grpc-status"], "7");
    /// # Ok(()) }
    /// ```
    #[derive(Debug)]
    pub struct AuthorizationFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

/// The external authorizer's check, then the inner service's future (or the denial).
type CheckOutput<F> = Result<(F, HeaderMap), Response<Full<Bytes>>>;

struct Checking<F>(Pin<Box<dyn Future<Output = CheckOutput<F>> + Send>>);

impl<F> fmt::Debug for Checking<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Checking")
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Inner { #[pin] fut: F, add: HeaderMap },
        Checking { check: Checking<F> },
        Denied { response: Option<Response<Full<Bytes>>> },
    }
}

impl<F> AuthorizationFuture<F> {
    fn inner(fut: F) -> Self {
        AuthorizationFuture {
            kind: Kind::Inner {
                fut,
                add: HeaderMap::new(),
            },
        }
    }

    fn checking(check: Pin<Box<dyn Future<Output = CheckOutput<F>> + Send>>) -> Self {
        AuthorizationFuture {
            kind: Kind::Checking {
                check: Checking(check),
            },
        }
    }

    fn denied(response: Response<Full<Bytes>>) -> Self {
        AuthorizationFuture {
            kind: Kind::Denied {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for AuthorizationFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Inner { fut, add } => {
                    return fut.poll(cx).map_ok(|mut r| {
                        // headersToDownstreamOnAllow
                        for (k, v) in add.iter() {
                            r.headers_mut().append(k.clone(), v.clone());
                        }
                        r.map(Either::Left)
                    });
                }
                KindProj::Checking { check } => match check.0.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(r)) => return Poll::Ready(Ok(r.map(Either::Right))),
                    Poll::Ready(Ok((fut, add))) => Kind::Inner { fut, add },
                },
                KindProj::Denied { response } => match response.take() {
                    Some(r) => return Poll::Ready(Ok(r.map(Either::Right))),
                    None => panic!("AuthorizationFuture polled after completion"),
                },
            };
            self.as_mut().project().kind.set(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use mesh_tls::{Identity, PeerIdentity};

    const POLICIES: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]
    to: [{operation: {methods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin*]}}]
";

    fn req(principal: Option<&str>, method: &str, path: &str) -> Request<()> {
        let mut r = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let peer = principal.map(|p| PeerIdentity::new(Identity::from_principal(p).unwrap()));
        r.extensions_mut().insert(ConnectionInfo::new(peer, 8000));
        r
    }

    #[test]
    fn decisions_table() {
        let mesh = Mesh::from_yaml(POLICIES).unwrap();
        let labels: Labels = [("app".to_string(), "httpbin".to_string())].into();
        let layer = AuthorizationLayer::new(mesh, "foo", labels);
        let sleep = Some("cluster.local/ns/foo/sa/sleep");
        let other = Some("cluster.local/ns/bar/sa/other");
        type Case<'a> = (Option<&'a str>, &'a str, &'a str, bool, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (sleep, "GET", "/headers", true, Some("foo/allow-sleep")),
            (sleep, "POST", "/headers", false, None),
            (other, "GET", "/headers", false, None),
            (None, "GET", "/headers", false, None),
            (sleep, "GET", "/admin/x", false, Some("foo/deny-admin")),
            // normalized before matching: /a/../admin is /admin
            (sleep, "GET", "/a/../admin", false, Some("foo/deny-admin")),
        ];
        for (principal, method, path, allowed, policy) in cases {
            let d = layer.decide(&req(*principal, method, path));
            assert_eq!(d.allowed, *allowed, "{principal:?} {method} {path}: {d:?}");
            assert_eq!(
                d.policy.as_deref(),
                *policy,
                "{principal:?} {method} {path}"
            );
        }
    }

    #[test]
    fn cache_follows_generation() {
        let mesh = Mesh::from_yaml(POLICIES).unwrap();
        let layer = AuthorizationLayer::new(mesh.clone(), "foo", Labels::new());
        // no selector matches: no policy applies, allowed
        assert!(layer.decide(&req(None, "GET", "/")).allowed);
        let first = layer.workload_authz();
        assert!(Arc::ptr_eq(&first, &layer.workload_authz()));
        let deny_all = mesh_core::load::load_str(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: foo}\nspec: {}\n",
            "x.yaml",
        );
        mesh.reload_loaded(deny_all).unwrap();
        let d = layer.decide(&req(None, "GET", "/"));
        assert!(!d.allowed);
        assert!(!Arc::ptr_eq(&first, &layer.workload_authz()));
    }

    #[tokio::test]
    async fn denied_http_and_grpc_replies() {
        let mesh = Mesh::from_yaml(POLICIES).unwrap();
        let labels: Labels = [("app".to_string(), "httpbin".to_string())].into();
        let app = tower::service_fn(|_r: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("app"))))
        });
        let mut svc = AuthorizationLayer::new(mesh, "foo", labels).layer(app);
        let resp = svc
            .call(req(Some("cluster.local/ns/foo/sa/sleep"), "GET", "/admin"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(
            resp.extensions().get::<ResponseCodeDetails>().unwrap().0,
            "rbac_access_denied_matched_policy[ns[foo]-policy[deny-admin]-rule[0]]"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"RBAC: access denied");

        let mut g = req(None, "POST", "/pkg.Svc/Method");
        g.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        let resp = svc.call(g).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "7");

        let resp = svc
            .call(req(Some("cluster.local/ns/foo/sa/sleep"), "GET", "/ok"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"app");
    }
}
