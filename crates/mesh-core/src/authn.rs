//! RequestAuthentication: the JWT providers that apply to a workload, and the check of a
//! request's token against them (Envoy's `jwt_authn` filter as Istio configures it).
//!
//! Every RequestAuthentication that applies to a workload (the root namespace's and its
//! namespace's without a selector, and those whose selector matches its labels) adds its
//! `jwtRules` as providers. A request **without** a token passes (with no request
//! identity; an AuthorizationPolicy with `requestPrincipals` then decides). A token is
//! looked for where each provider says (`fromHeaders`, `fromParams`, `fromCookies`; by
//! default `Authorization: Bearer <token>` and the `access_token` query parameter) and
//! must be valid for a provider whose `issuer` is its `iss` and whose location it came
//! from: signed by a key of the provider's JWKS, not expired and already valid (60 s of
//! clock skew, Envoy's default), with an allowed audience when `audiences` are set.
//! Anything else is rejected, and the request gets 401 with Envoy's message
//! ([`JwtError`]'s `Display`). The request principal is `iss/sub`.
//!
//! This module is pure: a remote `jwksUri` is fetched by the caller (off the request path,
//! within the rule's [`timeout`](JwtProvider::timeout)) and handed in; until it is, tokens
//! for that provider fail closed ([`JwtError::JwksFetchFailed`]).
//!
//! A verified token's [`RequestAuth`] carries the verifying rule's `spaceDelimitedClaims`
//! ([`JwtProvider::space_delimited_claims`]): `request.auth.claims[<name>]` conditions match
//! any space-separated part of those top-level string claims, as of `scope` and
//! `permission` for every rule (Envoy's `normalize_payload_in_metadata` as Istio sets it).
//!
//! # Examples
//!
//! ```
//! use mesh_core::authn::{authenticate, JwtError};
//! use mesh_core::model::Labels;
//!
//! let snap = mesh_core::mesh::Mesh::from_yaml(r#"
//! apiVersion: security.istio.io/v1
//! kind: RequestAuthentication
//! metadata: {name: jwt-example, namespace: foo}
//! spec:
//!   selector: {matchLabels: {app: httpbin}}
//!   jwtRules:
//!   - issuer: testing@secure.istio.io
//!     jwks: '{"keys": []}'
//! "#).unwrap().snapshot();
//! let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
//! let providers = snap.jwt_providers("foo", &httpbin);
//! assert_eq!(providers.len(), 1);
//!
//! let none = |_: &str| None;
//! // no token: no identity, and no error
//! let headers = http::HeaderMap::new();
//! assert!(authenticate(&providers, &headers, None, 0, &none).unwrap().is_none());
//! // a token that is not a JWT: 401
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", "Bearer not-a-jwt".parse().unwrap());
//! let err = authenticate(&providers, &headers, None, 0, &none).unwrap_err();
//! assert_eq!(err, JwtError::BadFormat);
//! assert!(err.to_string().starts_with("Jwt is not in the form of Header.Payload.Signature"));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey};

use crate::authz::RequestAuth;
use crate::model::{ConfigObject, Labels, Spec};
use crate::names::{labels_match, MeshOptions};

/// Why a token was rejected; `Display` is Envoy's 401 body for it.
///
/// # Examples
///
/// ```
/// use mesh_core::authn::JwtError;
///
/// assert_eq!(JwtError::Expired.to_string(), "Jwt is expired");
/// assert_eq!(JwtError::IssuerNotConfigured.to_string(), "Jwt issuer is not configured");
/// assert_eq!(JwtError::AudienceNotAllowed.to_string(), "Audiences in Jwt are not allowed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts with a JSON header and payload.
    BadFormat,
    /// No provider has the token's `iss` (for the location it came from).
    IssuerNotConfigured,
    /// `exp` is past.
    Expired,
    /// `nbf` is ahead.
    NotYetValid,
    /// No JWKS key matches the token's `kid` and `alg`.
    NoMatchingKey,
    /// The signature does not verify.
    VerificationFails,
    /// `aud` names none of the provider's `audiences`.
    AudienceNotAllowed,
    /// The provider's `jwksUri` has not been fetched (or its answer was not a JWKS).
    JwksFetchFailed,
    /// The header is not base64url.
    HeaderBadBase64,
    /// The header is not a JSON object.
    HeaderBadJson,
    /// The header has no `alg`, or not a string.
    HeaderBadAlg,
    /// The header's `alg` is not one Envoy implements (`none`, ...).
    AlgNotImplemented,
    /// The header's `kid` is not a string.
    HeaderBadKid,
    /// The payload is not base64url.
    PayloadBadBase64,
    /// The payload is not a JSON object.
    PayloadBadJson,
    /// The signature is not base64url.
    SignatureBadBase64,
    /// No token at the locations of a rule whose `presence` is `REQUIRED`.
    Missing,
    /// A registered claim of the wrong type (`iss`, `sub`, `jti` not a string; `aud` not a
    /// string or list of strings; `exp`, `nbf`, `iat` not a number, or negative), as Envoy's
    /// payload parser rejects it before anything else.
    BadClaim {
        /// The claim.
        claim: &'static str,
        /// What it should have been.
        problem: ClaimProblem,
    },
}

/// What is wrong with a registered claim ([`JwtError::BadClaim`]).
///
/// # Examples
///
/// ```
/// use mesh_core::authn::{ClaimProblem, JwtError};
///
/// let e = JwtError::BadClaim { claim: "exp", problem: ClaimProblem::NotInteger };
/// assert_eq!(e.to_string(), "Jwt payload [exp] field is not an integer");
/// let e = JwtError::BadClaim { claim: "aud", problem: ClaimProblem::NotStringOrList };
/// assert_eq!(e.to_string(), "Jwt payload [aud] field is not a string or string list");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimProblem {
    /// Not a string.
    NotString,
    /// Not a string or a list of strings (`aud`).
    NotStringOrList,
    /// Not a number.
    NotInteger,
    /// A negative number or one past 64 bits.
    OutOfRange,
}

impl JwtError {
    /// The status Envoy's jwt_authn filter answers with (`Filter::onComplete`): 403 for a
    /// token whose audiences are not allowed, 401 for everything else.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authn::JwtError;
    ///
    /// assert_eq!(JwtError::AudienceNotAllowed.http_status(), 403);
    /// assert_eq!(JwtError::Expired.http_status(), 401);
    /// ```
    pub fn http_status(&self) -> u16 {
        match self {
            JwtError::AudienceNotAllowed => 403,
            _ => 401,
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // jwt_verify_lib's status messages, as Envoy answers them
        f.write_str(match self {
            JwtError::BadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            JwtError::HeaderBadBase64 => "Jwt header is an invalid Base64url encoded",
            JwtError::HeaderBadJson => "Jwt header is an invalid JSON",
            JwtError::HeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            JwtError::AlgNotImplemented => "Jwt header [alg] is not supported",
            JwtError::HeaderBadKid => "Jwt header [kid] field is not a string",
            JwtError::PayloadBadBase64 => "Jwt payload is an invalid Base64url encoded",
            JwtError::PayloadBadJson => "Jwt payload is an invalid JSON",
            JwtError::SignatureBadBase64 => "Jwt signature is an invalid Base64url encoded",
            JwtError::IssuerNotConfigured => "Jwt issuer is not configured",
            JwtError::Expired => "Jwt is expired",
            JwtError::NotYetValid => "Jwt not yet valid",
            JwtError::NoMatchingKey => "Jwks doesn't have key to match kid or alg from Jwt",
            JwtError::VerificationFails => "Jwt verification fails",
            JwtError::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            JwtError::JwksFetchFailed => "Jwks remote fetch is failed",
            JwtError::Missing => "Jwt is missing",
            JwtError::BadClaim { claim, problem } => {
                return write!(
                    f,
                    "Jwt payload [{claim}] field is {}",
                    match problem {
                        ClaimProblem::NotString => "not a string",
                        ClaimProblem::NotStringOrList => "not a string or string list",
                        ClaimProblem::NotInteger => "not an integer",
                        ClaimProblem::OutOfRange => "not a positive 64 bit integer",
                    }
                );
            }
        })
    }
}

impl std::error::Error for JwtError {}

/// Where a provider looks for tokens.
///
/// # Examples
///
/// Without `fromHeaders`/`fromParams`/`fromCookies`, Istio's defaults:
///
/// ```
/// use mesh_core::authn::TokenLocation;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt, namespace: foo}
/// spec: {jwtRules: [{issuer: a.example.com, jwks: '{"keys": []}'}]}
/// "#).unwrap().snapshot();
/// let p = &snap.jwt_providers("foo", &Default::default())[0];
/// assert_eq!(p.locations(), [
///     TokenLocation::Header { name: "authorization".into(), prefix: "Bearer ".into() },
///     TokenLocation::Param("access_token".into()),
/// ]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    /// A header (lower-case name), with the value's prefix to strip (`Bearer `).
    Header {
        /// Header name.
        name: String,
        /// Prefix before the token.
        prefix: String,
    },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// Where the keys of a provider come from.
#[derive(Debug, Clone)]
enum Keys {
    /// Inline `jwks` (or why it did not parse: every token then fails to verify).
    Inline(Result<Arc<JwkSet>, String>),
    /// `jwksUri`, fetched by the caller.
    Remote(String),
}

/// One `jwtRule` of a RequestAuthentication.
///
/// # Examples
///
/// ```
/// use mesh_core::authn::TokenLocation;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt, namespace: istio-system}
/// spec:
///   jwtRules:
///   - issuer: https://accounts.example.com
///     audiences: [shop]
///     jwksUri: https://accounts.example.com/keys.json
///     fromHeaders: [{name: x-jwt}]
///     forwardOriginalToken: true
/// "#).unwrap().snapshot();
/// let providers = snap.jwt_providers("anywhere", &Default::default()); // mesh-wide
/// let p = &providers[0];
/// assert_eq!(p.issuer(), "https://accounts.example.com");
/// assert_eq!(p.jwks_uri(), Some("https://accounts.example.com/keys.json"));
/// assert_eq!(p.locations(), [TokenLocation::Header { name: "x-jwt".into(), prefix: String::new() }]);
/// assert!(p.forward_original_token());
/// assert_eq!(p.policy(), "istio-system/jwt");
/// ```
#[derive(Debug, Clone)]
pub struct JwtProvider {
    policy: Arc<str>,
    issuer: String,
    audiences: Vec<String>,
    keys: Keys,
    locations: Vec<TokenLocation>,
    forward_original_token: bool,
    output_payload_to_header: Option<String>,
    output_claim_to_headers: Vec<(String, String)>,
    timeout: Duration,
    space_delimited_claims: Option<Arc<[String]>>,
    required: bool,
}

/// Istio's default `timeout` of a JWKS fetch.
///
/// # Examples
///
/// ```
/// assert_eq!(mesh_core::authn::DEFAULT_JWKS_TIMEOUT, std::time::Duration::from_secs(5));
/// ```
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

impl JwtProvider {
    fn compile(policy: &Arc<str>, r: &crate::model::JwtRule) -> JwtProvider {
        let mut locations: Vec<TokenLocation> = r
            .from_headers
            .iter()
            .map(|h| TokenLocation::Header {
                name: h.name.to_ascii_lowercase(),
                prefix: h.prefix.clone().unwrap_or_default(),
            })
            .chain(
                r.from_params
                    .iter()
                    .map(|p| TokenLocation::Param(p.clone())),
            )
            .chain(
                r.from_cookies
                    .iter()
                    .map(|c| TokenLocation::Cookie(c.clone())),
            )
            .collect();
        if locations.is_empty() {
            locations = vec![
                TokenLocation::Header {
                    name: "authorization".into(),
                    prefix: "Bearer ".into(),
                },
                TokenLocation::Param("access_token".into()),
            ];
        }
        // in the order Envoy's extractor keeps them (ordered maps: headers by name and
        // prefix, then parameters, then cookies, each by name, once each); of several
        // tokens the first location's is the identity (Envoy verifies them from the last,
        // each verified one overwriting the payload)
        let key = |l: &TokenLocation| match l {
            TokenLocation::Header { name, prefix } => (0, format!("{name}{prefix}")),
            TokenLocation::Param(p) => (1, p.clone()),
            TokenLocation::Cookie(c) => (2, c.clone()),
        };
        locations.sort_by_cached_key(key);
        locations.dedup_by(|a, b| key(a) == key(b));
        let keys = match (&r.jwks, &r.jwks_uri) {
            (Some(j), _) => Keys::Inline(parse_jwks(j.as_bytes()).map(Arc::new)),
            (None, Some(uri)) => Keys::Remote(uri.clone()),
            (None, None) => Keys::Inline(Err("no jwks or jwksUri".into())),
        };
        JwtProvider {
            policy: Arc::clone(policy),
            issuer: r.issuer.clone(),
            // compared as Envoy's CheckAudience does: scheme and trailing `/` dropped
            audiences: r
                .audiences
                .iter()
                .map(|a| sanitize_audience(a).to_owned())
                .collect(),
            keys,
            locations,
            forward_original_token: r.forward_original_token,
            output_payload_to_header: r.output_payload_to_header.clone(),
            output_claim_to_headers: r
                .output_claim_to_headers
                .iter()
                .map(|c| (c.header.to_ascii_lowercase(), c.claim.clone()))
                .collect(),
            // a zero timeout is refused by Istio's CRD (at least 1 ms): the default then
            timeout: r
                .timeout
                .map(|t| t.as_std())
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_JWKS_TIMEOUT),
            space_delimited_claims: space_delimited(&r.space_delimited_claims),
            required: r.presence == crate::model::JwtPresence::Required,
        }
    }

    /// The RequestAuthentication it comes from (`namespace/name`).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - issuer: https://issuer.example.com
    ///     jwks: '{"keys": []}'
    ///     outputPayloadToHeader: x-jwt-payload
    ///     outputClaimToHeaders: [{header: x-user, claim: sub}]
    /// "#).unwrap().snapshot();
    /// let p = &snap.jwt_providers("foo", &Default::default())[0];
    /// assert_eq!(p.policy(), "foo/jwt");
    /// assert_eq!(p.issuer(), "https://issuer.example.com");
    /// assert_eq!(p.jwks_uri(), None); // inline keys
    /// assert!(!p.forward_original_token());
    /// assert_eq!(p.output_payload_to_header(), Some("x-jwt-payload"));
    /// assert_eq!(p.output_claim_to_headers(), [("x-user".to_owned(), "sub".to_owned())]);
    /// ```
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// `issuer`.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - issuer: https://issuer.example.com
    ///     jwks: '{"keys": []}'
    ///     outputPayloadToHeader: x-jwt-payload
    ///     outputClaimToHeaders: [{header: x-user, claim: sub}]
    /// "#).unwrap().snapshot();
    /// let p = &snap.jwt_providers("foo", &Default::default())[0];
    /// assert_eq!(p.policy(), "foo/jwt");
    /// assert_eq!(p.issuer(), "https://issuer.example.com");
    /// assert_eq!(p.jwks_uri(), None); // inline keys
    /// assert!(!p.forward_original_token());
    /// assert_eq!(p.output_payload_to_header(), Some("x-jwt-payload"));
    /// assert_eq!(p.output_claim_to_headers(), [("x-user".to_owned(), "sub".to_owned())]);
    /// ```
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `jwksUri`, when the keys are to be fetched (and no inline `jwks` is given).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - issuer: https://issuer.example.com
    ///     jwks: '{"keys": []}'
    ///     outputPayloadToHeader: x-jwt-payload
    ///     outputClaimToHeaders: [{header: x-user, claim: sub}]
    /// "#).unwrap().snapshot();
    /// let p = &snap.jwt_providers("foo", &Default::default())[0];
    /// assert_eq!(p.policy(), "foo/jwt");
    /// assert_eq!(p.issuer(), "https://issuer.example.com");
    /// assert_eq!(p.jwks_uri(), None); // inline keys
    /// assert!(!p.forward_original_token());
    /// assert_eq!(p.output_payload_to_header(), Some("x-jwt-payload"));
    /// assert_eq!(p.output_claim_to_headers(), [("x-user".to_owned(), "sub".to_owned())]);
    /// ```
    pub fn jwks_uri(&self) -> Option<&str> {
        match &self.keys {
            Keys::Remote(uri) => Some(uri),
            Keys::Inline(_) => None,
        }
    }

    /// Where tokens are looked for.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - issuer: https://issuer.example.com
    ///     jwks: '{"keys": []}'
    ///     outputPayloadToHeader: x-jwt-payload
    ///     outputClaimToHeaders: [{header: x-user, claim: sub}]
    /// "#).unwrap().snapshot();
    /// let p = &snap.jwt_providers("foo", &Default::default())[0];
    /// assert_eq!(p.policy(), "foo/jwt");
    /// assert_eq!(p.issuer(), "https://issuer.example.com");
    /// assert_eq!(p.jwks_uri(), None); // inline keys
    /// assert!(!p.forward_original_token());
    /// assert_eq!(p.output_payload_to_header(), Some("x-jwt-payload"));
    /// assert_eq!(p.output_claim_to_headers(), [("x-user".to_owned(), "sub".to_owned())]);
    /// ```
    pub fn locations(&self) -> &[TokenLocation] {
        &self.locations
    }

    /// `forwardOriginalToken`: keep the token in the request (default: it is removed).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - issuer: https://issuer.example.com
    ///     jwks: '{"keys": []}'
    ///     outputPayloadToHeader: x-jwt-payload
    ///     outputClaimToHeaders: [{header: x-user, claim: sub}]
    /// "#).unwrap().snapshot();
    /// let p = &snap.jwt_providers("foo", &Default::default())[0];
    /// assert_eq!(p.policy(), "foo/jwt");
    /// assert_eq!(p.issuer(), "https://issuer.example.com");
    /// assert_eq!(p.jwks_uri(), None); // inline keys
    /// assert!(!p.forward_original_token());
    /// assert_eq!(p.output_payload_to_header(), Some("x-jwt-payload"));
    /// assert_eq!(p.output_claim_to_headers(), [("x-user".to_owned(), "sub".to_owned())]);
    /// ```
    pub fn forward_original_token(&self) -> bool {
        self.forward_original_token
    }

    /// `outputPayloadToHeader`: the header that gets the verified payload (base64url).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - issuer: https://issuer.example.com
    ///     jwks: '{"keys": []}'
    ///     outputPayloadToHeader: x-jwt-payload
    ///     outputClaimToHeaders: [{header: x-user, claim: sub}]
    /// "#).unwrap().snapshot();
    /// let p = &snap.jwt_providers("foo", &Default::default())[0];
    /// assert_eq!(p.policy(), "foo/jwt");
    /// assert_eq!(p.issuer(), "https://issuer.example.com");
    /// assert_eq!(p.jwks_uri(), None); // inline keys
    /// assert!(!p.forward_original_token());
    /// assert_eq!(p.output_payload_to_header(), Some("x-jwt-payload"));
    /// assert_eq!(p.output_claim_to_headers(), [("x-user".to_owned(), "sub".to_owned())]);
    /// ```
    pub fn output_payload_to_header(&self) -> Option<&str> {
        self.output_payload_to_header.as_deref()
    }

    /// `outputClaimToHeaders`: (header, claim) pairs copied from a verified token.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - issuer: https://issuer.example.com
    ///     jwks: '{"keys": []}'
    ///     outputPayloadToHeader: x-jwt-payload
    ///     outputClaimToHeaders: [{header: x-user, claim: sub}]
    /// "#).unwrap().snapshot();
    /// let p = &snap.jwt_providers("foo", &Default::default())[0];
    /// assert_eq!(p.policy(), "foo/jwt");
    /// assert_eq!(p.issuer(), "https://issuer.example.com");
    /// assert_eq!(p.jwks_uri(), None); // inline keys
    /// assert!(!p.forward_original_token());
    /// assert_eq!(p.output_payload_to_header(), Some("x-jwt-payload"));
    /// assert_eq!(p.output_claim_to_headers(), [("x-user".to_owned(), "sub".to_owned())]);
    /// ```
    pub fn output_claim_to_headers(&self) -> &[(String, String)] {
        &self.output_claim_to_headers
    }

    /// `timeout`: how long a fetch of the `jwksUri` may take ([`DEFAULT_JWKS_TIMEOUT`]
    /// unless set).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - {issuer: a.example.com, jwksUri: "https://a.example.com/keys", timeout: 1.5s}
    ///   - {issuer: b.example.com, jwksUri: "https://b.example.com/keys"}
    /// "#).unwrap().snapshot();
    /// let providers = snap.jwt_providers("foo", &Default::default());
    /// assert_eq!(providers[0].timeout(), Duration::from_millis(1500));
    /// assert_eq!(providers[1].timeout(), mesh_core::authn::DEFAULT_JWKS_TIMEOUT);
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `spaceDelimitedClaims`: the claims besides `scope` and `permission` whose string
    /// values `request.auth.claims[..]` conditions match as space-separated lists. A token
    /// this provider verifies carries them in its
    /// [`RequestAuth::space_delimited_claims`].
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt, namespace: foo}
    /// spec:
    ///   jwtRules:
    ///   - issuer: a.example.com
    ///     jwks: '{"keys": []}'
    ///     spaceDelimitedClaims: [roles, scope, roles]
    /// "#).unwrap().snapshot();
    /// let providers = snap.jwt_providers("foo", &Default::default());
    /// assert_eq!(providers[0].space_delimited_claims(), ["roles"]); // scope always is
    /// ```
    pub fn space_delimited_claims(&self) -> &[String] {
        self.space_delimited_claims.as_deref().unwrap_or_default()
    }

    /// Checks `token` (from one of this provider's locations, with these unverified
    /// `claims`) at `now` (seconds since the Unix epoch), in the order Envoy does: the time
    /// constraints and the audiences first, then the signature. `remote` gives the keys of
    /// a `jwksUri`.
    fn verify(
        &self,
        token: &str,
        claims: &serde_json::Value,
        now: u64,
        remote: &dyn Fn(&str) -> Option<Arc<JwkSet>>,
    ) -> Result<RequestAuth, JwtError> {
        // (the token was parsed as Envoy parses it already; an algorithm the verifying
        // library lacks, ES512, verifies nothing)
        let (alg, kid) = jose_header(token).ok_or(JwtError::VerificationFails)?;
        let (message, signature) = token.rsplit_once('.').ok_or(JwtError::VerificationFails)?;
        // the signature over the segments as they came; its base64url with or without padding
        let signature = signature.trim_end_matches('=');
        // Envoy's default clock skew: 60 s either way
        const SKEW: u64 = 60;
        // `exp: 0` is no expiry, as in jwt_verify_lib
        if time_claim(claims, "exp")?.is_some_and(|exp| exp != 0 && now > exp.saturating_add(SKEW))
        {
            return Err(JwtError::Expired);
        }
        if time_claim(claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(SKEW)) {
            return Err(JwtError::NotYetValid);
        }
        let mut auth = RequestAuth::from_claims(claims.clone());
        // shared with the provider: no allocation
        auth.space_delimited_claims = self.space_delimited_claims.clone();
        if !self.audiences.is_empty()
            && !auth.audiences.iter().any(|a| {
                let a = sanitize_audience(a);
                self.audiences.iter().any(|c| c == a)
            })
        {
            return Err(JwtError::AudienceNotAllowed);
        }
        let keys = match &self.keys {
            Keys::Inline(Ok(k)) => Arc::clone(k),
            // a JWKS that did not parse verifies nothing (validation refuses it first)
            Keys::Inline(Err(_)) => return Err(JwtError::NoMatchingKey),
            Keys::Remote(uri) => remote(uri).ok_or(JwtError::JwksFetchFailed)?,
        };
        let mut result = Err(JwtError::NoMatchingKey);
        for jwk in keys
            .keys
            .iter()
            // jwt_verify_lib: a key is skipped only when both it and the token have a (non-empty)
            // `kid` and they differ
            .filter(|k| {
                let tk = kid.as_deref().filter(|s| !s.is_empty());
                let kk = k.common.key_id.as_deref().filter(|s| !s.is_empty());
                tk.is_none() || kk.is_none() || tk == kk
            })
        {
            if jwk
                .common
                .key_algorithm
                .is_some_and(|a| algorithm_of(a) != Some(alg))
            {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            // the signature only: the claims were checked above, against `now`
            match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, alg) {
                Ok(true) => return Ok(auth),
                // a key of another type than the token's algorithm: not a match
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat
                    ) => {}
                Ok(false) | Err(_) => result = Err(JwtError::VerificationFails),
            }
        }
        result
    }
}

/// An audience as Envoy's `JwtVerify::CheckAudience` compares it (both the configured
/// ones and the token's): without an `http://` or `https://` prefix and without one
/// trailing `/`, so `https://api.example.com/` and `http://api.example.com` are the same
/// audience (envoy `source/common/jwt/check_audience.cc`, `sanitizeAudience`).
fn sanitize_audience(aud: &str) -> &str {
    let rest = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    rest.strip_suffix('/').unwrap_or(rest)
}

/// The claims of `spaceDelimitedClaims` besides Istio's defaults (`scope`, `permission`),
/// once each; `None` when there are none, so a verified token carries nothing extra.
fn space_delimited(claims: &[String]) -> Option<Arc<[String]>> {
    let mut v: Vec<String> = Vec::new();
    for c in claims {
        if !c.is_empty() && !matches!(c.as_str(), "scope" | "permission") && !v.contains(c) {
            v.push(c.clone());
        }
    }
    (!v.is_empty()).then(|| v.into())
}

/// The algorithm a JWK declares (`alg`), as the token header names it.
fn algorithm_of(a: jsonwebtoken::jwk::KeyAlgorithm) -> Option<Algorithm> {
    use jsonwebtoken::jwk::KeyAlgorithm as K;
    Some(match a {
        K::HS256 => Algorithm::HS256,
        K::HS384 => Algorithm::HS384,
        K::HS512 => Algorithm::HS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A token found in a request, and where.
///
/// # Examples
///
/// ```
/// use mesh_core::authn::{authenticate, TokenLocation};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: https://issuer.example.com
///     jwks: '{"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": "c2VjcmV0"}]}'
/// "#).unwrap().snapshot();
/// let providers = snap.jwt_providers("foo", &Default::default());
/// // HS256 over {"alg":"HS256","kid":"k"} . {"iss":"https://issuer.example.com","sub":"alice"} with key "secret"
/// let token = jsonwebtoken::encode(
///     &jsonwebtoken::Header { kid: Some("k".into()), ..Default::default() },
///     &serde_json::json!({"iss": "https://issuer.example.com", "sub": "alice"}),
///     &jsonwebtoken::EncodingKey::from_secret(b"secret"),
/// ).unwrap();
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
/// let verified = authenticate(&providers, &headers, None, 0, &|_| None).unwrap().unwrap();
/// assert_eq!(verified.auth.principal, "https://issuer.example.com/alice");
/// assert_eq!(verified.provider.policy(), "foo/jwt");
/// assert_eq!(verified.token.token, token);
/// assert_eq!(verified.token.location, TokenLocation::Header { name: "authorization".into(), prefix: "Bearer ".into() });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken {
    /// The token.
    pub token: String,
    /// Where it was.
    pub location: TokenLocation,
}

/// A verified request: its identity, the provider that verified it, and the token.
///
/// # Examples
///
/// ```
/// use mesh_core::authn::{authenticate, TokenLocation};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: https://issuer.example.com
///     jwks: '{"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": "c2VjcmV0"}]}'
/// "#).unwrap().snapshot();
/// let providers = snap.jwt_providers("foo", &Default::default());
/// // HS256 over {"alg":"HS256","kid":"k"} . {"iss":"https://issuer.example.com","sub":"alice"} with key "secret"
/// let token = jsonwebtoken::encode(
///     &jsonwebtoken::Header { kid: Some("k".into()), ..Default::default() },
///     &serde_json::json!({"iss": "https://issuer.example.com", "sub": "alice"}),
///     &jsonwebtoken::EncodingKey::from_secret(b"secret"),
/// ).unwrap();
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
/// let verified = authenticate(&providers, &headers, None, 0, &|_| None).unwrap().unwrap();
/// assert_eq!(verified.auth.principal, "https://issuer.example.com/alice");
/// assert_eq!(verified.provider.policy(), "foo/jwt");
/// assert_eq!(verified.token.token, token);
/// assert_eq!(verified.token.location, TokenLocation::Header { name: "authorization".into(), prefix: "Bearer ".into() });
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The request identity for authorization.
    pub auth: RequestAuth,
    /// The provider that verified the token (its header outputs and whether the token is
    /// forwarded).
    pub provider: Arc<JwtProvider>,
    /// The token and where it was found.
    pub token: FoundToken,
    /// Every token of the verifying provider's locations (all verified, `token` among them,
    /// once for each location it was found at): Envoy adds the header outputs of each, and
    /// removes each one when the provider has `forwardOriginalToken: false`. Tokens at other
    /// providers' locations are left as they are.
    pub tokens: Vec<VerifiedToken>,
}

/// One verified token of a request, for its header outputs.
///
/// # Examples
///
/// The same token in the `Authorization` header and in the `access_token` query parameter
/// (the default locations) is verified once, but counts once for each location:
///
/// ```
/// use mesh_core::authn::{authenticate, TokenLocation};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: https://issuer.example.com
///     jwks: '{"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": "c2VjcmV0"}]}'
/// "#).unwrap().snapshot();
/// let providers = snap.jwt_providers("foo", &Default::default());
/// let token = jsonwebtoken::encode(
///     &jsonwebtoken::Header { kid: Some("k".into()), ..Default::default() },
///     &serde_json::json!({"iss": "https://issuer.example.com", "sub": "alice"}),
///     &jsonwebtoken::EncodingKey::from_secret(b"secret"),
/// ).unwrap();
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
/// let query = format!("access_token={token}");
/// let verified = authenticate(&providers, &headers, Some(&query), 0, &|_| None).unwrap().unwrap();
/// assert_eq!(verified.tokens.len(), 2);
/// for t in &verified.tokens {
///     assert_eq!(t.token.token, token);
///     assert_eq!(t.provider.policy(), "foo/jwt");
///     assert_eq!(t.claims["sub"], "alice");
/// }
/// assert_eq!(verified.tokens[0].token.location, TokenLocation::Header { name: "authorization".into(), prefix: "Bearer ".into() });
/// assert_eq!(verified.tokens[1].token.location, TokenLocation::Param("access_token".into()));
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The token and where it was found.
    pub token: FoundToken,
    /// The provider that verified it.
    pub provider: Arc<JwtProvider>,
    /// Its claims.
    pub claims: serde_json::Value,
}

/// The token of `location` in a request, if there is one.
fn token_at(
    location: &TokenLocation,
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Option<String> {
    match location {
        // Envoy's extractor: the header's values joined with `,`; without a prefix that is
        // the token, as it is; else the prefix is looked for (case-sensitively) anywhere in
        // it, and the token is what `extractJWT` takes after it. A malformed token is still a
        // token, one that fails verification.
        TokenLocation::Header { name, prefix } => {
            let mut values = headers.get_all(name.as_str()).iter();
            let mut joined = String::from_utf8_lossy(values.next()?.as_bytes()).into_owned();
            for v in values {
                joined.push(',');
                joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            if prefix.is_empty() {
                return Some(joined);
            }
            let after = joined.find(prefix.as_str())? + prefix.len();
            Some(extract_jwt(&joined, after).to_owned())
        }
        // Envoy (`parseAndDecodeQueryString`): the first value of the parameter, its name
        // and value percent-decoded; an empty one is a token too (one that fails
        // verification)
        TokenLocation::Param(p) => query?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let named = if k.contains('%') {
                percent_decoded(k) == *p
            } else {
                k == p
            };
            named.then(|| percent_decoded(v))
        }),
        // Envoy's `parseCookies`: the first cookie of the name, a quoted value unquoted; an
        // empty one is a token too (one that fails verification)
        TokenLocation::Cookie(c) => headers.get_all(http::header::COOKIE).iter().find_map(|v| {
            v.to_str().ok()?.split(';').find_map(|kv| {
                let (k, v) = kv.trim_start().split_once('=')?;
                let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(unquoted) => unquoted,
                    None => v,
                };
                (k == c).then(|| v.to_owned())
            })
        }),
    }
}

/// `v` with its `%XX` escapes decoded (an escape that is not one is kept as written).
fn percent_decoded(v: &str) -> String {
    if !v.contains('%') {
        return v.to_owned();
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Envoy's `extractJWT`: from `after`, skip to the first base64url-or-`.` character and
/// take the run of them; with none, the whole value as it is.
fn extract_jwt(value: &str, after: usize) -> &str {
    let tok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let bytes = value.as_bytes();
    let Some(start) = (after..bytes.len()).find(|&i| tok(bytes[i])) else {
        return value;
    };
    let end = (start..bytes.len())
        .find(|&i| !tok(bytes[i]))
        .unwrap_or(bytes.len());
    &value[start..end]
}

/// The claims of a token, read without verifying it (to pick its provider by `iss`),
/// parsed as Envoy's jwt_verify_lib parses it, each step with its own error: three
/// non-empty dot-separated parts; the header base64url, a JSON object, with a string
/// `alg` Envoy implements and a `kid`, if any, a string; the payload base64url and a JSON
/// object, its registered claims of the right types; the signature base64url.
fn unverified_claims(token: &str) -> Result<serde_json::Value, JwtError> {
    let parts: Vec<&str> = token.split('.').filter(|p| !p.is_empty()).collect();
    let [header, payload, signature] = parts[..] else {
        return Err(JwtError::BadFormat);
    };
    let header = base64url(header).ok_or(JwtError::HeaderBadBase64)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|_| JwtError::HeaderBadJson)?;
    let alg = header
        .get("alg")
        .and_then(|a| a.as_str())
        .ok_or(JwtError::HeaderBadAlg)?;
    const ALGS: [&str; 13] = [
        "ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
        "PS384", "PS512", "EdDSA",
    ];
    if !ALGS.contains(&alg) {
        return Err(JwtError::AlgNotImplemented);
    }
    if header.get("kid").is_some_and(|k| !k.is_string()) {
        return Err(JwtError::HeaderBadKid);
    }
    let payload = base64url(payload).ok_or(JwtError::PayloadBadBase64)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| JwtError::PayloadBadJson)?;
    if !claims.is_object() {
        return Err(JwtError::PayloadBadJson);
    }
    for claim in ["iss", "sub", "jti"] {
        if claims.get(claim).is_some_and(|v| !v.is_string()) {
            return Err(JwtError::BadClaim {
                claim,
                problem: ClaimProblem::NotString,
            });
        }
    }
    let aud_ok = match claims.get("aud") {
        None | Some(serde_json::Value::String(_)) => true,
        Some(serde_json::Value::Array(a)) => a.iter().all(|v| v.is_string()),
        Some(_) => false,
    };
    if !aud_ok {
        return Err(JwtError::BadClaim {
            claim: "aud",
            problem: ClaimProblem::NotStringOrList,
        });
    }
    for claim in ["iat", "nbf", "exp"] {
        time_claim(&claims, claim)?;
    }
    // (checked, not decoded: the verifying library decodes it)
    if !crate::names::is_base64(signature, true) {
        return Err(JwtError::SignatureBadBase64);
    }
    Ok(claims)
}

/// A CORS preflight as Envoy's jwt_authn filter recognizes one (`isCorsPreflightRequest`):
/// `OPTIONS` with a non-empty `Origin` and `Access-Control-Request-Method`. istiod sets
/// `bypass_cors_preflight`, so such a request passes RequestAuthentication, whatever its
/// rules require, with no identity (AuthorizationPolicy still applies).
///
/// # Examples
///
/// ```
/// use mesh_core::authn::is_cors_preflight;
///
/// let mut h = http::HeaderMap::new();
/// h.insert("origin", "https://app.example".parse().unwrap());
/// h.insert("access-control-request-method", "POST".parse().unwrap());
/// assert!(is_cors_preflight(&http::Method::OPTIONS, &h));
/// assert!(!is_cors_preflight(&http::Method::GET, &h));
/// h.remove("origin");
/// assert!(!is_cors_preflight(&http::Method::OPTIONS, &h));
/// ```
pub fn is_cors_preflight(method: &http::Method, headers: &http::HeaderMap) -> bool {
    let present = |name| headers.get(name).is_some_and(|v| !v.is_empty());
    *method == http::Method::OPTIONS
        && present(http::header::ORIGIN)
        && present(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The `alg` and `kid` of a token's JOSE header, the only fields Envoy's
/// `Jwt::parseFromString` reads (any other field, of any JSON type, is ignored); `None`
/// for an algorithm the verifying library lacks.
fn jose_header(token: &str) -> Option<(Algorithm, Option<String>)> {
    let header = base64url(token.split('.').next()?)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).ok()?;
    let alg = header.get("alg")?.as_str()?.parse().ok()?;
    let kid = header
        .get("kid")
        .and_then(|k| k.as_str())
        .map(str::to_owned);
    Some((alg, kid))
}

/// A JWKS document read as Envoy's `Jwks::createFrom` reads one: a JSON object whose `keys`
/// is a list; a key that cannot be used (an unknown `kty` or curve, a malformed value) is
/// left out rather than spoiling the others; a document with no usable key is refused.
///
/// # Examples
///
/// ```
/// use mesh_core::authn::parse_jwks;
///
/// // an X25519 key (encryption, no JWT signature) beside a usable one
/// let jwks = parse_jwks(br#"{"keys": [
///     {"kty": "OKP", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"},
///     {"kty": "oct", "kid": "k", "alg": "HS256", "k": "c2VjcmV0"}
/// ]}"#).unwrap();
/// assert_eq!(jwks.keys.len(), 1);
/// assert!(parse_jwks(br#"{"keys": [{"kty": "XYZ"}]}"#).is_err());
/// assert!(parse_jwks(b"not json").is_err());
/// ```
pub fn parse_jwks(text: &[u8]) -> Result<JwkSet, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("Jwks is not a valid JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .ok_or("Jwks has no [keys] field")?
        .as_array()
        .ok_or("Jwks [keys] is not a list")?;
    let keys: Vec<jsonwebtoken::jwk::Jwk> = keys
        .iter()
        .filter_map(|k| serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k.clone()).ok())
        .filter(|k| DecodingKey::from_jwk(k).is_ok())
        .collect();
    if keys.is_empty() {
        return Err("Jwks doesn't have any valid public key".to_owned());
    }
    Ok(JwkSet { keys })
}

/// base64url as absl's `WebSafeBase64Unescape` reads it (padding optional).
fn base64url(s: &str) -> Option<Vec<u8>> {
    crate::names::base64_decode(s, true)
}

/// A time claim as Envoy reads it: a JSON number, a fraction truncated; absent is `None`.
fn time_claim(claims: &serde_json::Value, claim: &'static str) -> Result<Option<u64>, JwtError> {
    let Some(v) = claims.get(claim) else {
        return Ok(None);
    };
    let bad = |problem| JwtError::BadClaim { claim, problem };
    if let Some(n) = v.as_u64() {
        return Ok(Some(n));
    }
    match v.as_f64() {
        Some(f) if (0.0..18_446_744_073_709_551_616.0).contains(&f) => Ok(Some(f as u64)),
        Some(_) => Err(bad(ClaimProblem::OutOfRange)),
        None => Err(bad(ClaimProblem::NotInteger)),
    }
}

/// Envoy's jwt_authn `sanitizeHeaders`, before any token is looked at: the request loses
/// the headers the providers write (`outputPayloadToHeader`, `outputClaimToHeaders`), so
/// neither the policies after it nor the application see a client's own value for them.
///
/// # Examples
///
/// ```
/// use mesh_core::authn::sanitize_jwt_outputs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: https://issuer.example.com
///     jwks: '{"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": "c2VjcmV0"}]}'
///     outputClaimToHeaders: [{header: x-sub, claim: sub}]
/// "#).unwrap().snapshot();
/// let providers = snap.jwt_providers("foo", &Default::default());
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-sub", "forged".parse().unwrap());
/// sanitize_jwt_outputs(&mut headers, &providers);
/// assert!(headers.get("x-sub").is_none());
/// ```
pub fn sanitize_jwt_outputs(headers: &mut http::HeaderMap, providers: &[Arc<JwtProvider>]) {
    for p in providers {
        let names = p
            .output_payload_to_header()
            .into_iter()
            .chain(p.output_claim_to_headers().iter().map(|(h, _)| h.as_str()));
        for h in names {
            if let Ok(name) = http::HeaderName::from_bytes(h.as_bytes()) {
                headers.remove(name);
            }
        }
    }
}

/// What the verified tokens leave in the request, as Envoy's `handleGoodJwt` does for
/// each: the payload and the claims appended to the headers its rule names, then the token
/// removed from its header unless `forwardOriginalToken` (query parameters and cookies are
/// left as they are). The RBAC filter, after jwt_authn, reads these headers.
///
/// # Examples
///
/// ```
/// use mesh_core::authn::{authenticate, write_jwt_outputs};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: https://issuer.example.com
///     jwks: '{"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": "c2VjcmV0"}]}'
///     outputClaimToHeaders: [{header: x-sub, claim: sub}]
/// "#).unwrap().snapshot();
/// let providers = snap.jwt_providers("foo", &Default::default());
/// let token = jsonwebtoken::encode(
///     &jsonwebtoken::Header { kid: Some("k".into()), ..Default::default() },
///     &serde_json::json!({"iss": "https://issuer.example.com", "sub": "alice"}),
///     &jsonwebtoken::EncodingKey::from_secret(b"secret"),
/// ).unwrap();
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
/// let verified = authenticate(&providers, &headers, None, 0, &|_| None).unwrap().unwrap();
/// write_jwt_outputs(&mut headers, &verified);
/// assert_eq!(headers["x-sub"], "alice");
/// assert!(headers.get("authorization").is_none()); // forwardOriginalToken: false
/// ```
pub fn write_jwt_outputs(headers: &mut http::HeaderMap, a: &Authenticated) {
    for t in &a.tokens {
        let p = &t.provider;
        if let Some(h) = p.output_payload_to_header() {
            let payload = t.token.token.split('.').nth(1).unwrap_or("");
            if let (Ok(name), Ok(v)) = (
                http::HeaderName::from_bytes(h.as_bytes()),
                http::HeaderValue::from_str(payload),
            ) {
                headers.append(name, v);
            }
        }
        write_claim_headers(headers, p, &t.claims);
        if !p.forward_original_token()
            && let TokenLocation::Header { name, .. } = &t.token.location
        {
            headers.remove(name.as_str());
        }
    }
}

/// The `outputClaimToHeaders` of `provider` for these claims, appended to `headers`
/// ([`jwt_claim_header_value`] for each).
///
/// # Examples
///
/// ```
/// use mesh_core::authn::write_claim_headers;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt, namespace: foo}
/// spec:
///   jwtRules:
///   - issuer: https://issuer.example.com
///     jwks: '{"keys": []}'
///     outputClaimToHeaders: [{header: x-sub, claim: sub}, {header: x-admin, claim: admin}]
/// "#).unwrap().snapshot();
/// let providers = snap.jwt_providers("foo", &Default::default());
/// let mut headers = http::HeaderMap::new();
/// write_claim_headers(&mut headers, &providers[0], &serde_json::json!({"sub": "alice", "admin": true}));
/// assert_eq!((&headers["x-sub"], &headers["x-admin"]), (&"alice".parse::<http::HeaderValue>().unwrap(), &"true".parse::<http::HeaderValue>().unwrap()));
/// ```
pub fn write_claim_headers(
    headers: &mut http::HeaderMap,
    provider: &JwtProvider,
    claims: &serde_json::Value,
) {
    for (header, claim) in provider.output_claim_to_headers() {
        let Some(value) = jwt_claim_header_value(claims, claim) else {
            continue;
        };
        if let (Ok(name), Ok(v)) = (
            http::HeaderName::from_bytes(header.as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, v);
        }
    }
}

/// A claim as Envoy's `addJWTClaimToHeader` writes it: `claim` is a `.`-separated path into
/// the payload; a string as it is, a number by `convertClaimDoubleToString` (a whole
/// non-negative number below 2^64 as an integer, else C++'s `std::to_string`, `%f`), a
/// boolean `true`/`false`, a list or object the base64 of its JSON; an empty result or
/// `null` adds nothing.
///
/// # Examples
///
/// ```
/// use mesh_core::authn::jwt_claim_header_value;
///
/// let claims = serde_json::json!({"sub": "alice", "n": 3, "x": 1.5, "user": {"id": "7"}, "g": ["a"]});
/// assert_eq!(jwt_claim_header_value(&claims, "sub").as_deref(), Some("alice"));
/// assert_eq!(jwt_claim_header_value(&claims, "n").as_deref(), Some("3"));
/// assert_eq!(jwt_claim_header_value(&claims, "x").as_deref(), Some("1.500000"));
/// assert_eq!(jwt_claim_header_value(&claims, "user.id").as_deref(), Some("7"));
/// assert_eq!(jwt_claim_header_value(&claims, "g").as_deref(), Some("WyJhIl0="));
/// assert_eq!(jwt_claim_header_value(&claims, "missing"), None);
/// ```
pub fn jwt_claim_header_value(claims: &serde_json::Value, claim: &str) -> Option<String> {
    let mut v = claims;
    for k in claim.split('.') {
        v = v.as_object()?.get(k)?;
    }
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => {
            let d = n.as_f64()?;
            if (0.0..18_446_744_073_709_551_616.0).contains(&d) && d.fract() == 0.0 {
                (d as u64).to_string()
            } else {
                format!("{d:.6}")
            }
        }
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            crate::names::base64_encode(serde_json::to_string(v).ok()?.as_bytes(), false)
        }
        serde_json::Value::Null => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// Checks the request's token(s) against `providers` at `now` (seconds since the Unix
/// epoch), as Istio has Envoy's `jwt_authn` filter do it (`convertToEnvoyJwtConfig`:
/// `requires_any {P1, .., Pn, requires_all {any {P1, allow_missing}, ..}}`, each provider
/// extracting tokens from its own locations only):
///
/// - `Ok(Some(..))` when some provider (the first, in order: a snapshot's
///   [`jwt_providers`](crate::snapshot::Snapshot::jwt_providers) are in issuer order, as
///   istiod sorts them) finds at least one token at
///   its locations and every one of them is valid for it ("if a request has multiple
///   tokens, all of them must be valid"): it gives the identity, and a bad token at
///   another provider's location does not matter;
/// - `Ok(None)` when no provider finds a token at all (no request identity);
/// - `Err` (Envoy's 401) otherwise: the first failure of the first provider (in order)
///   that found a token.
///
/// `remote` gives the fetched keys of a `jwksUri`. (Envoy's `allow_missing` verifier
/// answers with the status of the *last* of a provider's tokens; here all of them must be
/// valid: fail closed.)
///
/// # Examples
///
/// A token for an issuer no rule names:
///
/// ```
/// use mesh_core::authn::{authenticate, JwtError};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: RequestAuthentication
/// metadata: {name: jwt, namespace: foo}
/// spec: {jwtRules: [{issuer: good.example.com, jwks: '{"keys": []}'}]}
/// "#).unwrap().snapshot();
/// let providers = snap.jwt_providers("foo", &Default::default());
/// // header {"alg":"HS256"}, payload {"iss":"evil.example.com","sub":"x"}
/// let token = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJldmlsLmV4YW1wbGUuY29tIiwic3ViIjoieCJ9.c2ln";
/// let query = format!("access_token={token}");
/// let err = authenticate(&providers, &http::HeaderMap::new(), Some(&query), 0, &|_| None);
/// assert_eq!(err.unwrap_err(), JwtError::IssuerNotConfigured);
/// ```
pub fn authenticate(
    providers: &[Arc<JwtProvider>],
    headers: &http::HeaderMap,
    query: Option<&str>,
    now: u64,
    remote: &dyn Fn(&str) -> Option<Arc<JwkSet>>,
) -> Result<Option<Authenticated>, JwtError> {
    // the tokens seen so far with their unverified claims: each is parsed once, and
    // verified once per provider that finds it
    let mut parsed: Vec<(String, Result<serde_json::Value, JwtError>)> = Vec::new();
    if providers.iter().any(|p| p.required) {
        return authenticate_all(providers, headers, query, now, remote, &mut parsed);
    }
    let mut first_error: Option<JwtError> = None;
    for p in providers {
        match check_provider(p, headers, query, now, remote, &mut parsed) {
            // JwtMissed: this provider neither authenticates nor fails the request
            Checked::Missed => {}
            // requires_all {any {P, allow_missing}, ..}: a token this provider found and
            // refused fails the request, unless another provider succeeds
            Checked::Failed(e) => {
                first_error.get_or_insert(e);
            }
            // requires_any {P, ..}: this provider authenticates the request, its first
            // token gives the identity
            Checked::Verified(a) => return Ok(Some(a)),
        }
    }
    first_error.map_or(Ok(None), Err)
}

/// [`authenticate`] when a rule's `presence` is `REQUIRED`: istiod's `requires_all` over
/// every provider (a `REQUIRED` one bare, an `OPTIONAL` one `any {P, allow_missing}`),
/// without the `requires_any` that lets one token stand for all. The first provider (in
/// order) that fails decides the error; the last that verified a token gives the identity
/// (each overwrites Envoy's one `payload` metadata), and every verified provider's tokens
/// get their header outputs.
fn authenticate_all(
    providers: &[Arc<JwtProvider>],
    headers: &http::HeaderMap,
    query: Option<&str>,
    now: u64,
    remote: &dyn Fn(&str) -> Option<Arc<JwkSet>>,
    parsed: &mut Vec<(String, Result<serde_json::Value, JwtError>)>,
) -> Result<Option<Authenticated>, JwtError> {
    let mut verified: Option<Authenticated> = None;
    for p in providers {
        match check_provider(p, headers, query, now, remote, parsed) {
            Checked::Missed if p.required => return Err(JwtError::Missing),
            Checked::Missed => {}
            Checked::Failed(e) => return Err(e),
            // Envoy's requires_all verifies in order and each provider writes the one
            // `payload` metadata RBAC reads: the last verified gives the identity
            Checked::Verified(mut a) => {
                if let Some(prev) = verified.take() {
                    let mut tokens = prev.tokens;
                    tokens.append(&mut a.tokens);
                    a.tokens = tokens;
                }
                verified = Some(a);
            }
        }
    }
    Ok(verified)
}

/// What one provider made of a request's tokens.
enum Checked {
    /// No token at its locations (Envoy's `JwtMissed`).
    Missed,
    /// A token at its locations that it refused.
    Failed(JwtError),
    /// Every token at its locations verified.
    Verified(Authenticated),
}

/// Envoy's `ProviderVerifier` for one provider: the tokens of its locations only. "If a
/// request has multiple tokens, all of them must be valid" (Envoy's authenticator,
/// `doneWithStatus`): the first failure ends the provider.
fn check_provider(
    p: &Arc<JwtProvider>,
    headers: &http::HeaderMap,
    query: Option<&str>,
    now: u64,
    remote: &dyn Fn(&str) -> Option<Arc<JwkSet>>,
    parsed: &mut Vec<(String, Result<serde_json::Value, JwtError>)>,
) -> Checked {
    let mut found: Vec<FoundToken> = Vec::new();
    for l in &p.locations {
        if let Some(t) = token_at(l, headers, query)
            && !found.iter().any(|f| f.token == t && &f.location == l)
        {
            found.push(FoundToken {
                token: t,
                location: l.clone(),
            });
        }
    }
    if found.is_empty() {
        return Checked::Missed;
    }
    let mut verified: Vec<(usize, RequestAuth)> = Vec::new();
    // Envoy's authenticator verifies the last extracted token first: its failure is the
    // one reported
    for f in found.iter().rev() {
        let k = match parsed.iter().position(|(t, _)| *t == f.token) {
            Some(k) => k,
            None => {
                parsed.push((f.token.clone(), unverified_claims(&f.token)));
                parsed.len() - 1
            }
        };
        if verified.iter().any(|(j, _)| *j == k) {
            continue;
        }
        let result = match &parsed[k].1 {
            Ok(claims) => {
                let iss = claims.get("iss").and_then(|v| v.as_str()).unwrap_or("");
                // a rule without an issuer (only a jwksUri) takes any `iss`, as Envoy's
                // provider
                if p.issuer.is_empty() || p.issuer == iss {
                    p.verify(&f.token, claims, now, remote)
                } else {
                    Err(JwtError::IssuerNotConfigured)
                }
            }
            Err(e) => Err(e.clone()),
        };
        match result {
            Ok(auth) => verified.push((k, auth)),
            Err(e) => return Checked::Failed(e),
        }
    }
    let tokens = found
        .iter()
        .filter_map(|f| {
            let (_, claims) = parsed.iter().find(|(t, _)| *t == f.token)?;
            Some(VerifiedToken {
                token: f.clone(),
                provider: Arc::clone(p),
                claims: claims.as_ref().ok()?.clone(),
            })
        })
        .collect();
    let first = parsed.iter().position(|(t, _)| *t == found[0].token);
    let Some(auth) = verified
        .into_iter()
        .find(|(k, _)| Some(*k) == first)
        .map(|(_, a)| a)
    else {
        // not reached: the first token was verified above (fail closed all the same)
        return Checked::Failed(JwtError::VerificationFails);
    };
    Checked::Verified(Authenticated {
        auth,
        provider: Arc::clone(p),
        token: found.swap_remove(0),
        tokens,
    })
}

/// The RequestAuthentications of a snapshot, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestAuthentications {
    policies: Vec<Applies>,
}

/// Which workloads one RequestAuthentication's providers apply to, as for an
/// AuthorizationPolicy: its namespace's (the root namespace's: every namespace's), all or
/// those its selector picks; with `targetRefs`, only the targeted Gateways' workloads of its
/// namespace (Service targets are for waypoints: none here).
#[derive(Debug, Clone)]
struct Applies {
    namespace: Box<str>,
    root: bool,
    selector: Option<Labels>,
    target_gateways: Option<Box<[Box<str>]>>,
    providers: Vec<Arc<JwtProvider>>,
}

impl Applies {
    fn to(&self, namespace: &str, labels: &Labels) -> bool {
        if let Some(gateways) = &self.target_gateways {
            return *self.namespace == *namespace
                && labels
                    .get("gateway.networking.k8s.io/gateway-name")
                    .is_some_and(|g| gateways.iter().any(|t| **t == **g));
        }
        if !(self.root || *self.namespace == *namespace) {
            return false;
        }
        self.selector
            .as_ref()
            .is_none_or(|sel| labels_match(sel, labels))
    }
}

impl RequestAuthentications {
    pub(crate) fn build(objects: &[ConfigObject], opts: &MeshOptions) -> RequestAuthentications {
        let mut out = RequestAuthentications::default();
        for o in objects {
            let Spec::RequestAuthentication(ra) = &o.spec else {
                continue;
            };
            let ns = o.metadata.namespace.as_str();
            let policy: Arc<str> = o.key().into();
            let providers: Vec<Arc<JwtProvider>> = ra
                .jwt_rules
                .iter()
                .map(|r| Arc::new(JwtProvider::compile(&policy, r)))
                .collect();
            let targets: Vec<_> = ra.target_refs.iter().chain(ra.target_ref.iter()).collect();
            out.policies.push(Applies {
                namespace: ns.into(),
                root: ns == opts.root_namespace,
                selector: ra
                    .selector
                    .as_ref()
                    .map(|s| s.match_labels.clone())
                    .filter(|l| !l.is_empty()),
                target_gateways: (!targets.is_empty()).then(|| {
                    targets
                        .iter()
                        .filter(|t| t.kind == "Gateway")
                        .map(|t| t.name.as_str().into())
                        .collect()
                }),
                providers,
            });
        }
        // mesh-wide (root namespace, no selector) first, then namespace-wide, then
        // selected: the order the providers are tried in
        out.policies.sort_by_key(|a| match (a.root, &a.selector) {
            (true, None) => 0,
            (_, None) => 1,
            _ => 2,
        });
        out
    }

    /// Every provider that applies to a workload in `namespace` with `labels`.
    pub(crate) fn for_workload(&self, namespace: &str, labels: &Labels) -> Vec<Arc<JwtProvider>> {
        let mut providers: Vec<Arc<JwtProvider>> = self
            .policies
            .iter()
            .filter(|a| a.to(namespace, labels))
            .flat_map(|a| a.providers.iter().cloned())
            .collect();
        // in issuer order, as istiod sorts the rules before building Envoy's requirement
        // (NewPolicyApplier): the order `authenticate` tries them in
        providers.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        providers
    }
}

#[cfg(test)]
mod token_location_tests {
    use super::{percent_decoded, token_at, TokenLocation};

    #[test]
    fn query_tokens_are_the_first_value_percent_decoded() {
        let param = TokenLocation::Param("access_token".into());
        let h = http::HeaderMap::new();
        let at = |q: &str| token_at(&param, &h, Some(q));
        assert_eq!(at("a=1&access_token=x.y.z").as_deref(), Some("x.y.z"));
        assert_eq!(at("access_token=x%2Ey.z%zz").as_deref(), Some("x.y.z%zz"));
        // an empty value is a token (that fails verification), and the first one counts
        assert_eq!(at("access_token=&access_token=x.y.z").as_deref(), Some(""));
        assert_eq!(at("access_token").as_deref(), Some(""));
        assert_eq!(at("other=x.y.z"), None);
        assert_eq!(percent_decoded("%41%4a%"), "AJ%");
    }
}

#[cfg(test)]
mod parse_tests {
    use super::{base64url, unverified_claims, JwtError};

    fn b64(s: &str) -> String {
        // (the test's own encoder: standard base64url, no padding)
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn base64url_as_absl_reads_it() {
        assert_eq!(base64url("e30").as_deref(), Some(&b"{}"[..]));
        assert_eq!(base64url("e30=").as_deref(), Some(&b"{}"[..]));
        assert_eq!(base64url("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64url("_-8").as_deref(), Some(&[0xff, 0xef][..]));
        assert_eq!(base64url("a"), None);
        assert_eq!(base64url("a+b/"), None);
        assert_eq!(b64("{\"alg\":\"RS256\"}"), "eyJhbGciOiJSUzI1NiJ9");
    }

    #[test]
    fn each_parse_step_has_envoy_s_error() {
        let h = b64(r#"{"alg":"RS256"}"#);
        let p = b64(r#"{"iss":"a"}"#);
        let tok = |h: &str, p: &str, s: &str| format!("{h}.{p}.{s}");
        let cases: [(String, JwtError); 9] = [
            ("invalid".into(), JwtError::BadFormat),
            (format!("{h}.{p}."), JwtError::BadFormat),
            (tok("a!", &p, "c2ln"), JwtError::HeaderBadBase64),
            // Istio's docs' `Bearer invalid.jwt.token`
            ("invalid.jwt.token".into(), JwtError::HeaderBadJson),
            (tok("e30", &p, "c2ln"), JwtError::HeaderBadAlg),
            (
                tok(&b64(r#"{"alg":"none"}"#), &p, "c2ln"),
                JwtError::AlgNotImplemented,
            ),
            (
                tok(&b64(r#"{"alg":"RS256","kid":7}"#), &p, "c2ln"),
                JwtError::HeaderBadKid,
            ),
            (tok(&h, &b64("notjson"), "c2ln"), JwtError::PayloadBadJson),
            (tok(&h, &p, "s!g"), JwtError::SignatureBadBase64),
        ];
        for (token, want) in cases {
            assert_eq!(unverified_claims(&token).unwrap_err(), want, "{token}");
        }
        assert_eq!(
            JwtError::HeaderBadJson.to_string(),
            "Jwt header is an invalid JSON"
        );
        assert_eq!(unverified_claims(&tok(&h, &p, "c2ln")).unwrap()["iss"], "a");
    }
}

#[cfg(test)]
mod provider_tests {
    use super::{authenticate, sanitize_audience, JwtError, TokenLocation};

    const JWKS_A: &str =
        r#"{"keys": [{"kty": "oct", "kid": "a", "alg": "HS256", "k": "c2VjcmV0LWE"}]}"#;
    const JWKS_B: &str =
        r#"{"keys": [{"kty": "oct", "kid": "b", "alg": "HS256", "k": "c2VjcmV0LWI"}]}"#;

    fn token(kid: &str, secret: &[u8], claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: Some(kid.into()),
                ..Default::default()
            },
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn a(sub: &str) -> String {
        token(
            "a",
            b"secret-a",
            serde_json::json!({"iss": "a.example.com", "sub": sub}),
        )
    }

    fn b(sub: &str) -> String {
        token(
            "b",
            b"secret-b",
            serde_json::json!({"iss": "b.example.com", "sub": sub}),
        )
    }

    fn providers(rules: &str) -> Vec<std::sync::Arc<super::JwtProvider>> {
        let yaml = format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: foo}}\nspec:\n  jwtRules:\n{rules}"
        );
        crate::mesh::Mesh::from_yaml(&yaml)
            .unwrap()
            .snapshot()
            .jwt_providers("foo", &Default::default())
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// jwt_verify_lib's `sanitizeAudience`, both sides.
    #[test]
    fn audiences_compare_without_scheme_and_trailing_slash() {
        for (aud, want) in [
            ("https://api.example.com/", "api.example.com"),
            ("http://api.example.com", "api.example.com"),
            ("api.example.com/", "api.example.com"),
            ("api.example.com//", "api.example.com/"),
            ("ftp://api.example.com", "ftp://api.example.com"),
            ("https://", ""),
            ("http:///", ""),
            ("/", ""),
            ("", ""),
        ] {
            assert_eq!(sanitize_audience(aud), want, "{aud}");
        }
        let rule = |aud: &str| {
            format!("  - issuer: a.example.com\n    audiences: ['{aud}']\n    jwks: '{JWKS_A}'\n")
        };
        let with_aud = |aud: serde_json::Value| {
            token(
                "a",
                b"secret-a",
                serde_json::json!({"iss": "a.example.com", "sub": "x", "aud": aud}),
            )
        };
        let cases = [
            (
                "https://api.example.com",
                serde_json::json!("https://api.example.com/"),
                true,
            ),
            (
                "https://example_service2/",
                serde_json::json!("http://example_service2"),
                true,
            ),
            (
                "api.example.com",
                serde_json::json!(["other", "https://api.example.com"]),
                true,
            ),
            (
                "https://api.example.com",
                serde_json::json!("https://api.example.org"),
                false,
            ),
            (
                "https://api.example.com",
                serde_json::json!("api.example.com/x"),
                false,
            ),
        ];
        for (config, aud, ok) in cases {
            let p = providers(&rule(config));
            let h = headers(&[(
                "authorization",
                &format!("Bearer {}", with_aud(aud.clone())),
            )]);
            let got = authenticate(&p, &h, None, 0, &|_| None);
            if ok {
                assert!(got.unwrap().is_some(), "{config} {aud}");
            } else {
                assert_eq!(
                    got.unwrap_err(),
                    JwtError::AudienceNotAllowed,
                    "{config} {aud}"
                );
            }
        }
    }

    /// Several jwtRules: Istio's `requires_any {A, B, requires_all {any {A, allow_missing},
    /// any {B, allow_missing}}}`, each provider reading its own locations.
    #[test]
    fn several_providers_any_one_valid_wins() {
        let p = providers(&format!(
            "  - issuer: a.example.com\n    jwks: '{JWKS_A}'\n    fromHeaders: [{{name: x-a}}]\n  - issuer: b.example.com\n    jwks: '{JWKS_B}'\n    fromHeaders: [{{name: x-b}}]\n"
        ));
        let run = |pairs: &[(&str, &str)]| authenticate(&p, &headers(pairs), None, 0, &|_| None);
        let (ga, gb) = (a("alice"), b("bob"));

        // a valid A token wins over garbage at B's location, and the other way round
        let ok = run(&[("x-a", &ga), ("x-b", "garbage")]).unwrap().unwrap();
        assert_eq!(ok.auth.principal, "a.example.com/alice");
        assert_eq!(ok.provider.issuer(), "a.example.com");
        assert_eq!(ok.tokens.len(), 1, "only the verifying provider's tokens");
        let ok = run(&[("x-a", "garbage"), ("x-b", &gb)]).unwrap().unwrap();
        assert_eq!(ok.auth.principal, "b.example.com/bob");
        assert_eq!(
            ok.token.location,
            TokenLocation::Header {
                name: "x-b".into(),
                prefix: String::new()
            }
        );
        // both valid: the first provider gives the identity, in issuer order whatever the
        // order of the rules (istiod sorts them)
        let ok = run(&[("x-a", &ga), ("x-b", &gb)]).unwrap().unwrap();
        assert_eq!(ok.auth.principal, "a.example.com/alice");
        let reversed = providers(&format!(
            "  - issuer: b.example.com\n    jwks: '{JWKS_B}'\n    fromHeaders: [{{name: x-b}}]\n  - issuer: a.example.com\n    jwks: '{JWKS_A}'\n    fromHeaders: [{{name: x-a}}]\n"
        ));
        let h = headers(&[("x-a", &ga), ("x-b", &gb)]);
        let ok = authenticate(&reversed, &h, None, 0, &|_| None)
            .unwrap()
            .unwrap();
        assert_eq!(ok.auth.principal, "a.example.com/alice");
        // a bad token fails when no provider succeeds
        assert_eq!(run(&[("x-a", "garbage")]).unwrap_err(), JwtError::BadFormat);
        assert_eq!(
            run(&[("x-a", "garbage"), ("x-b", "x.y")]).unwrap_err(),
            JwtError::BadFormat
        );
        // B's token at A's location: A does not know its issuer
        assert_eq!(
            run(&[("x-a", &gb)]).unwrap_err(),
            JwtError::IssuerNotConfigured
        );
        // no token anywhere: no identity, no failure
        assert!(run(&[]).unwrap().is_none());
        // within one provider, every token must be valid
        let p2 = providers(&format!(
            "  - issuer: a.example.com\n    jwks: '{JWKS_A}'\n    fromHeaders: [{{name: x-a}}, {{name: x-a2}}]\n"
        ));
        let h = headers(&[("x-a", &ga), ("x-a2", "garbage")]);
        assert_eq!(
            authenticate(&p2, &h, None, 0, &|_| None).unwrap_err(),
            JwtError::BadFormat
        );
    }

    /// Providers sharing the default location: a token valid for either passes.
    #[test]
    fn shared_location_token_valid_for_one_provider() {
        let p = providers(&format!(
            "  - issuer: a.example.com\n    jwks: '{JWKS_A}'\n  - issuer: b.example.com\n    jwks: '{JWKS_B}'\n"
        ));
        let bearer = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);
        let ok = authenticate(&p, &bearer(&b("bob")), None, 0, &|_| None)
            .unwrap()
            .unwrap();
        assert_eq!(ok.auth.principal, "b.example.com/bob");
        let evil = token(
            "a",
            b"secret-a",
            serde_json::json!({"iss": "evil", "sub": "x"}),
        );
        assert_eq!(
            authenticate(&p, &bearer(&evil), None, 0, &|_| None).unwrap_err(),
            JwtError::IssuerNotConfigured
        );
        // signed with B's key but claiming A: A's signature check fails
        let forged = token(
            "b",
            b"secret-b",
            serde_json::json!({"iss": "a.example.com", "sub": "x"}),
        );
        assert!(authenticate(&p, &bearer(&forged), None, 0, &|_| None).is_err());
    }
}
