//! `meshctl authz`: explain offline whether a request to a workload is allowed, and which
//! policy decided.
//!
//! The workload runs in `--namespace` with `--labels`; `--principal` is the caller's
//! verified identity (`cluster.local/ns/default/sa/sleep`, absent for plaintext). The
//! PeerAuthentication of the workload's port is applied first: STRICT with no principal is
//! denied (Envoy resets the connection), DISABLE hides the principal. With `--output json`
//! exactly one JSON object is printed: `{"decision": "ALLOW"|"DENY"|"CUSTOM", "policy":
//! "ns/name" or null, "reason": text, "custom": ..., ...}`. Exit status 0 when a decision
//! was made, 2 on a usage error or a config that cannot be loaded.
//!
//! A JWT in the request (`-H 'authorization: Bearer <token>'`, or wherever the workload's
//! RequestAuthentication `jwtRules` look) is verified first, as the workload would: its
//! issuer, audiences, `exp`/`nbf` and signature against an inline `jwks` (a `jwksUri` is not
//! fetched offline: such a token is rejected as the server does before its keys arrive, and
//! `--request-principal`/`--claims` give the verified identity instead). A rejected token is
//! a DENY with Envoy's 401 message; a verified one supplies `requestPrincipals` and
//! `request.auth.*`. The `request.headers[...]` policies read are the headers after Envoy's
//! jwt_authn: those the rules' `outputClaimToHeaders` and `outputPayloadToHeader` name are
//! removed from the request as sent, then written from the verified token (or the
//! `--claims`), and the token's own header is removed unless `forwardOriginalToken`.
//!
//! A matching CUSTOM policy names the external authorizer that would be asked (`custom`:
//! `policy`, `rule`, `provider`, `service`), which meshctl cannot call offline: the decision
//! is `CUSTOM` (status null) when the authorizer's answer decides, with the outcome should
//! it allow; DENY when a DENY policy (or no ALLOW policy) refuses whatever it answers. When
//! the CUSTOM policies' provider cannot be used (not defined in the `--mesh-config`, none
//! without one; several; a kind not supported), istiod (`getBadCustomDenyRules`) builds
//! their rules as DENY rules instead of the ext_authz filter: a request they match is
//! denied by that CUSTOM policy and rule, with istiod's message (`custom.error`); any other
//! goes on to the DENY and ALLOW policies.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use mesh_core::authn::{authenticate, JwtError, JwtProvider};
use mesh_core::authz::{AuthzReason, AuthzRequest, HttpAuthzAttrs, RequestAuth};
use mesh_core::model::MtlsMode;
use serde_json::json;

use crate::route::{load_config, parse_headers, parse_labels, Output};

/// Arguments of `meshctl authz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Config file or directory (repeatable; `-f` as with kubectl).
    #[arg(
        long = "config",
        short = 'c',
        visible_alias = "filename",
        visible_short_alias = 'f',
        value_name = "PATH",
        required = true
    )]
    config: Vec<PathBuf>,
    /// Namespace of the workload being called.
    #[arg(long, short = 'n')]
    namespace: String,
    /// Labels of the workload being called, `k=v,k=v`.
    #[arg(long, value_name = "K=V,...")]
    labels: Option<String>,
    /// The caller's verified identity (`cluster.local/ns/default/sa/sleep`); absent for
    /// plaintext.
    #[arg(long)]
    principal: Option<String>,
    /// The caller's address.
    #[arg(long)]
    source_ip: Option<IpAddr>,
    /// The original client address, for `remote.ip` and `remoteIpBlocks`; without it, as
    /// Envoy's connection manager finds it from the `--header`s (an HTTP request's only):
    /// at a sidecar the rightmost `X-Forwarded-For` address; at a gateway (a workload a
    /// loaded Gateway selects, or labelled `istio: ingressgateway`/`egressgateway` or
    /// `gateway.networking.k8s.io/gateway-name`) the `numTrustedProxies`-th from the right
    /// (MeshConfig `gatewayTopology`), none trusted by default; else `--source-ip`.
    #[arg(long)]
    remote_ip: Option<IpAddr>,
    /// The workload's address.
    #[arg(long)]
    destination_ip: Option<IpAddr>,
    /// Request method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// Request path (a `#fragment` is dropped, as Envoy drops it in Istio, where
    /// `http_reject_path_with_fragment` is off).
    #[arg(long, default_value = "/", value_parser = without_fragment)]
    path: String,
    /// Host / `:authority`; without it, the `Host` header of the `--header`s (an HTTP/1.1
    /// request's Host is its `:authority`).
    #[arg(long)]
    host: Option<String>,
    /// The workload port called.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// TLS SNI.
    #[arg(long)]
    sni: Option<String>,
    /// Request header `Name: value` (repeatable). Not with `--tcp`: a TCP connection has no
    /// headers (nor an `X-Forwarded-For` for `remote.ip`).
    #[arg(
        long = "header",
        short = 'H',
        value_name = "NAME: VALUE",
        conflicts_with = "tcp"
    )]
    headers: Vec<String>,
    /// The request's verified JWT principal `iss/sub` (RequestAuthentication).
    #[arg(long, value_name = "ISS/SUB")]
    request_principal: Option<String>,
    /// The verified JWT's claims as a JSON object (`{"groups": ["g1"]}`), read as the
    /// workload's jwtRule of their issuer (`iss`, else the principal's) would: its
    /// `spaceDelimitedClaims`, its output headers.
    #[arg(long, value_name = "JSON", requires = "request_principal")]
    claims: Option<String>,
    /// Authorize a TCP connection instead of an HTTP request.
    #[arg(long)]
    tcp: bool,
    /// Namespace given to config objects without one.
    #[arg(long, default_value = "default")]
    config_namespace: String,
    /// The mesh's MeshConfig: trust domain, root namespace, and the extension providers
    /// CUSTOM policies name.
    #[arg(long, value_name = "FILE")]
    mesh_config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let mut args = args;
    let (labels, mut headers) = match (
        parse_labels(args.labels.as_deref()),
        parse_headers(&args.headers),
    ) {
        (Ok(l), Ok(h)) => (l, h),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // an HTTP/1.1 request's Host header is the `:authority` that `hosts` and
    // `request.headers[host]` read: `-H 'Host: x'` says the same as `--host x`
    let host_header = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let host = match (&args.host, host_header) {
        (Some(h), Some(v)) if !h.eq_ignore_ascii_case(&v) => {
            eprintln!(
                "error: --host {h:?} and the Host header {v:?} differ: an HTTP/1.1 request's Host header is its `:authority`; give one of them"
            );
            return ExitCode::from(2);
        }
        (Some(h), _) => h.clone(),
        (None, v) => v.unwrap_or_default(),
    };
    let claims: serde_json::Value = match args.claims.as_deref().map(serde_json::from_str) {
        None => serde_json::Value::Object(Default::default()),
        Some(Ok(v @ serde_json::Value::Object(_))) => v,
        Some(_) => {
            eprintln!("error: --claims must be a JSON object");
            return ExitCode::from(2);
        }
    };
    let mesh_config = match crate::mesh_config::load(args.mesh_config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (snap, objects) =
        match load_config(&args.config, &args.config_namespace, mesh_config.as_ref()) {
            Ok(s) => s,
            Err(code) => return code,
        };
    // a port a Service of the workload declares TCP: a sidecar's inbound listener sees a
    // connection there (a TCP proxy with the RBAC network filter), whatever the caller sends
    let declared_tcp = match args.tcp || is_gateway(&snap, &labels) {
        true => None,
        false => declared_tcp(&objects, &args, &labels),
    };
    if declared_tcp.is_some() {
        args.tcp = true;
        headers.clear();
    }
    // RequestAuthentication: the identity given, else the request's token verified
    let providers = snap.jwt_providers(&args.namespace, &labels);
    let mut authn = serde_json::Value::Null;
    let mut rejected: Option<(JwtError, Option<String>)> = None;
    // Envoy's jwt_authn filter runs before RBAC: it first removes whatever the request
    // brings in the headers its rules write (`outputClaimToHeaders`,
    // `outputPayloadToHeader`), so a caller cannot forge them
    if !args.tcp {
        mesh_core::authn::sanitize_jwt_outputs(&mut headers, &providers);
    }
    let jwt = match &args.request_principal {
        Some(p) => {
            let mut auth = RequestAuth {
                principal: p.clone(),
                ..RequestAuth::from_claims(claims.clone())
            };
            // the rule of the token's issuer is the one that would have verified it: its
            // `spaceDelimitedClaims` split the claims for `request.auth.claims[..]`, and it
            // writes its headers as for a real token
            if let Some(rule) = rule_of_issuer(&providers, &auth) {
                let split = rule.space_delimited_claims();
                auth.space_delimited_claims = (!split.is_empty()).then(|| split.into());
                if !args.tcp {
                    given_jwt_outputs(&mut headers, rule, &claims);
                }
            }
            Some(auth)
        }
        None if providers.is_empty() || args.tcp => None,
        // Envoy's jwt_authn lets a CORS preflight through, without an identity
        None if http::Method::from_bytes(args.method.as_bytes())
            .is_ok_and(|m| mesh_core::authn::is_cors_preflight(&m, &headers)) =>
        {
            authn = json!({"result": "CORS preflight: not checked (bypass_cors_preflight)"});
            None
        }
        None => {
            let query = args.path.split_once('?').map(|(_, q)| q);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match authenticate(&providers, &headers, query, now, &|_| None) {
                Ok(None) => {
                    authn = json!({"result": "no token"});
                    None
                }
                Ok(Some(a)) => {
                    authn = json!({
                        "result": "verified",
                        "policy": a.provider.policy(),
                        "issuer": a.provider.issuer(),
                        "principal": a.auth.principal,
                    });
                    // what RBAC then sees: the claim and payload headers written, the
                    // token's header gone unless `forwardOriginalToken`
                    mesh_core::authn::write_jwt_outputs(&mut headers, &a);
                    Some(a.auth)
                }
                Err(e) => {
                    // the provider whose keys were never fetched, for the hint
                    let remote = providers
                        .iter()
                        .find_map(|p| p.jwks_uri())
                        .filter(|_| e == JwtError::JwksFetchFailed)
                        .map(str::to_owned);
                    authn = json!({"result": "rejected", "error": e.to_string()});
                    rejected = Some((e, remote));
                    None
                }
            }
        }
    };
    let principal = args
        .principal
        .as_deref()
        .map(|p| p.strip_prefix("spiffe://").unwrap_or(p));
    // PeerAuthentication applies to sidecars' inbound listeners only: a gateway's listeners
    // come from its Gateway servers (their TLS settings decide), so it accepts plaintext
    // where a server is plain HTTP or TCP
    let gateway = is_gateway(&snap, &labels);
    let mtls = if gateway {
        mesh_core::peerauthn::EffectiveMtls {
            mode: MtlsMode::Permissive,
            policy: None,
        }
    } else {
        snap.peer_authentication_detail(&args.namespace, &labels, args.port)
    };
    let authz = snap.authz_for_workload(&args.namespace, &labels);
    let applicable: Vec<&str> = authz.policies().collect();
    // a matching CUSTOM policy: its external authorizer, which meshctl cannot ask
    let mut custom = serde_json::Value::Null;
    let mut custom_decides = false;
    let mode = match mtls.mode {
        _ if gateway => "NOT_APPLIED",
        MtlsMode::Strict => "STRICT",
        MtlsMode::Disable => "DISABLE",
        _ => "PERMISSIVE",
    };

    // Envoy normalizes the path (the MeshConfig's pathNormalization, BASE by default)
    // before any filter; `%00` is a 400 (but for NONE)
    // (its query kept, as in Envoy's `:path`: `request.headers[:path]` sees it, `paths`
    // do not)
    let path = snap
        .options()
        .path_normalization
        .normalize_keep_query(&args.path);
    let strict_plaintext = mtls.mode == MtlsMode::Strict && principal.is_none();
    // and before that, its HTTP codec refuses a method not in upper case (400
    // `http1.codec_error`), so a DENY on `methods: [DELETE]` is not passed by `delete`
    // (and, over HTTP/1.1, a method it does not know: `FROBNICATE`)
    let lower = args.method.bytes().any(|b| b.is_ascii_lowercase());
    let unknown = http::Method::from_bytes(args.method.as_bytes())
        .map_or(true, |m| !mesh_core::authz::http1_method_known(&m));
    let bad_method = !args.tcp && !strict_plaintext && (lower || unknown);
    let bad_path = !args.tcp && !bad_method && path.is_err() && !strict_plaintext;
    // a dry-run policy (`istio.io/dry-run`) that would have decided otherwise: only logged;
    // and the shadow engines' results (DENY, ALLOW), as Envoy logs them
    let mut dry_run: Option<String> = None;
    let mut shadows: Vec<(&str, mesh_core::authz::ShadowResult)> = Vec::new();
    let (allowed, policy, rule, reason, audit) = if bad_method {
        (
            false,
            None,
            None,
            if lower {
                format!(
                    "the method `{}` is not upper case: Envoy refuses it with 400 (http1.codec_error) before RequestAuthentication and authorization",
                    args.method
                )
            } else {
                format!(
                    "Envoy's HTTP/1.1 codec knows no method `{}`: it refuses it with 400 (http1.codec_error) before RequestAuthentication and authorization (over HTTP/2 it would reach the policies)",
                    args.method
                )
            },
            None,
        )
    } else if bad_path {
        (
            false,
            None,
            None,
            "the path holds `%00`: Envoy refuses it with 400 (path_normalization_failed) before RequestAuthentication and authorization".to_owned(),
            None,
        )
    } else if let Some((e, remote)) = &rejected {
        // each RequestAuthentication once, however many of its jwtRules apply
        let mut policies: Vec<&str> = Vec::new();
        for p in providers.iter().map(|p| p.policy()) {
            if !policies.contains(&p) {
                policies.push(p);
            }
        }
        let mut reason = if *e == mesh_core::authn::JwtError::Missing {
            format!(
                "RequestAuthentication requires a token the request does not have (`presence: REQUIRED`): 401 `{e}` (jwtRules of {})",
                policies.join(", ")
            )
        } else {
            format!(
                "RequestAuthentication rejects the request's token: {} `{e}` (jwtRules of {})",
                e.http_status(),
                policies.join(", ")
            )
        };
        if let Some(uri) = remote {
            reason.push_str(&format!(
                "; its keys come from jwksUri {uri}, which meshctl does not fetch: pass --request-principal and --claims for a token the server would verify"
            ));
        }
        (false, None, None, reason, None)
    } else if mtls.mode == MtlsMode::Strict && principal.is_none() {
        (
            false,
            mtls.policy.as_deref().map(str::to_owned),
            None,
            format!(
                "PeerAuthentication {} requires mTLS (STRICT) and the caller is plaintext: the connection is reset before any request",
                mtls.policy.as_deref().unwrap_or("?")
            ),
            None,
        )
    } else {
        // DISABLE: the connection is plaintext, no peer identity
        let principal = if mtls.mode == MtlsMode::Disable {
            None
        } else {
            principal
        };
        let path = path.as_deref().unwrap_or(&args.path);
        let http = (!args.tcp).then(|| HttpAuthzAttrs {
            method: &args.method,
            path,
            host: &host,
            headers: &headers,
        });
        let req = AuthzRequest {
            principal,
            source_ip: args.source_ip,
            // as the connection manager finds it: a sidecar's (no trusted hops) the
            // rightmost X-Forwarded-For address, a gateway's (`use_remote_address`, the
            // `numTrustedProxies`) the one that many from the right, else the peer; a TCP
            // connection has no headers, the RBAC network filter sees the peer
            remote_ip: args.remote_ip.or_else(|| {
                if args.tcp {
                    return None;
                }
                match is_gateway(&snap, &labels) {
                    false => forwarded_for(&headers, 0),
                    true => match snap.options().num_trusted_proxies {
                        0 => None,
                        n => forwarded_for(&headers, n as usize - 1),
                    },
                }
            }),
            destination_ip: args.destination_ip,
            destination_port: args.port,
            sni: args.sni.as_deref(),
            // as Envoy's connection manager sets `:scheme` for an HTTP/1.1 request: a valid
            // `x-forwarded-proto`, else by the connection (a principal means mTLS)
            scheme: (!args.tcp).then(|| {
                mesh_core::authz::request_scheme(
                    None,
                    headers
                        .get("x-forwarded-proto")
                        .and_then(|v| v.to_str().ok()),
                    principal.is_some(),
                )
            }),
            http,
            request_auth: jwt.as_ref(),
            filter_metadata: &[],
        };
        // no external authorizer: a matching CUSTOM policy denies, the rest goes on to the
        // DENY and ALLOW policies
        let mut d = authz.evaluate(&req);
        let used = authz.custom_providers();
        let resolved = (!used.is_empty()).then(|| snap.ext_authz(&used));
        match (resolved, authz.custom_match(&req)) {
            // istiod (builder.go, "failed to process CUSTOM action, will generate deny
            // configs for the specified rules"): when the workload's CUSTOM policies (dry-run
            // ones included) name no usable provider, their rules become an RBAC DENY filter
            // in the ext_authz filter's place, ahead of the DENY and ALLOW policies: what
            // they match is denied, naming the CUSTOM policy and rule (as `evaluate` decides
            // without an authorizer); the rest is decided as usual
            (Some(Err(e)), m) => {
                let hint = if args.mesh_config.is_some() {
                    ""
                } else {
                    " (no --mesh-config: no provider is defined)"
                };
                let why = match &m {
                    Some(m) => format!(
                        "CUSTOM policy {} rule {} matches and its provider cannot be used: {e}{hint}; istiod turns the CUSTOM policies' rules into DENY rules:",
                        m.policy, m.rule
                    ),
                    None => format!(
                        "the workload's CUSTOM policies name no usable provider: {e}{hint}; istiod turns their rules into DENY rules, which this request does not match, so the other policies decide:"
                    ),
                };
                custom = json!({
                    "policy": m.as_ref().map(|m| &**m.policy),
                    "rule": m.as_ref().map(|m| m.rule),
                    "provider": m.as_ref().map_or(used[0], |m| m.provider),
                    "error": e,
                    "reason": why,
                });
            }
            (Some(Ok(h)), Some(m)) => {
                let (c, after, asks) = explain_custom(&authz, &req, m, h);
                custom_decides = asks && after.allowed;
                if after.allowed || after.reason != AuthzReason::CustomDenied {
                    // the authorizer allowing, DENY and ALLOW policies decide the rest
                    d = after;
                }
                custom = c;
            }
            // no CUSTOM policy, or none matching: the authorizer is not asked
            (_, _) => {}
        }
        let mut reason = d.reason.to_string();
        if let Some(why) = custom.as_object_mut().and_then(|c| c.remove("reason")) {
            reason = format!("{} {reason}", why.as_str().unwrap_or(""));
        }
        if d.reason == AuthzReason::NoAllowMatched {
            let allow: Vec<&str> = authz.allow_policies().collect();
            reason.push_str(&format!(" (ALLOW policies: {})", allow.join(", ")));
        }
        if let Some(p) = &d.policy {
            reason = format!(
                "{reason}: {p}{}",
                d.rule.map(|r| format!(" rule {r}")).unwrap_or_default()
            );
        }
        dry_run = d.dry_run.as_deref().map(str::to_owned);
        shadows.extend(d.shadow_deny.clone().map(|s| ("deny", s)));
        shadows.extend(d.shadow_allow.clone().map(|s| ("allow", s)));
        (
            d.allowed,
            d.policy.as_deref().map(str::to_owned),
            d.rule,
            reason,
            d.audit.as_deref().map(str::to_owned),
        )
    };
    let decision = match (custom_decides, allowed) {
        (true, _) => "CUSTOM",
        (false, true) => "ALLOW",
        (false, false) => "DENY",
    };
    let mut v = json!({
        "decision": decision,
        "policy": policy,
        "rule": rule,
        "reason": reason,
        "audit": audit,
        "dry_run": dry_run,
        // Envoy's `istio_dry_run_{deny,allow}_shadow_engine_result` and effective policy
        "dry_run_results": shadows.iter().map(|(engine, s)| json!({
            "engine": engine,
            "result": if s.allowed { "allowed" } else { "denied" },
            "policy": s.policy.as_deref(),
            "rule": s.rule,
        })).collect::<Vec<_>>(),
        "mtls_mode": mode,
        "peer_authentication": mtls.policy.as_deref(),
        "policies": applicable,
        "request_authentication": authn,
        "path": if args.tcp { None } else { path.as_deref().ok() },
        // (an HTTP request always has one: without --host nor a Host header, none)
        "authority": (!args.tcp).then_some(host.as_str()),
        // the Service that declares the port TCP (the request was taken as a connection)
        "declared_tcp": declared_tcp,
        "status": match (allowed, &rejected) {
            (true, _) => Some(200),
            (false, _) if bad_path || bad_method => Some(400),
            (false, Some((e, _))) => Some(e.http_status()),
            (false, None) if mtls.mode == MtlsMode::Strict && principal.is_none() => None,
            (false, None) => Some(403),
        },
    });
    if custom_decides {
        // the external authorizer's answer
        v["status"] = serde_json::Value::Null;
    }
    v["custom"] = custom.clone();
    match args.output {
        Output::Json => println!("{v}"),
        Output::Text => {
            // (DISABLE: the connection is plaintext, the principal given is not seen)
            let who = match principal {
                Some(p) if mtls.mode == MtlsMode::Disable => {
                    format!(
                        "a plaintext caller (port {} is DISABLE: {p} is not seen)",
                        args.port
                    )
                }
                Some(p) => p.to_owned(),
                None => "a plaintext caller".to_owned(),
            };
            let what = if args.tcp {
                format!("TCP connection to port {}", args.port)
            } else {
                format!("{} {} (port {})", args.method, args.path, args.port)
            };
            println!(
                "{} {what} from {who} to workload {{{}}} in namespace {}",
                decision,
                args.labels.as_deref().unwrap_or(""),
                args.namespace
            );
            println!("reason: {reason}");
            if let Some(svc) = &declared_tcp {
                println!(
                    "port {}: Service {svc} declares it TCP, so a sidecar sees a connection there: only the rules' TCP conditions apply (an ALLOW rule with HTTP-only fields is dropped, a DENY rule matches without them)",
                    args.port
                );
            }
            for (engine, s) in &shadows {
                let by = match (&s.policy, s.rule) {
                    (Some(p), Some(r)) => format!(" by {p} rule {r}"),
                    (Some(p), None) => format!(" by {p}"),
                    (None, _) => " (no dry-run policy matched)".to_owned(),
                };
                println!(
                    "dry run ({} policies with istio.io/dry-run): {}{by}{}; only logged (istio_dry_run_{engine}_shadow_engine_result), not enforced",
                    engine.to_ascii_uppercase(),
                    if s.allowed { "allowed" } else { "denied" },
                    if s.allowed != allowed { ", unlike the decision" } else { "" },
                );
            }
            if let Some(p) = custom["provider"].as_str() {
                match custom["service"].as_str() {
                    Some(svc) if custom_decides => println!(
                        "CUSTOM: the external authorizer {p} ({svc}) decides; meshctl cannot ask it offline (it allowing: {}, it denying: its answer, 403 by default)",
                        if allowed { "ALLOW" } else { "DENY" }
                    ),
                    Some(svc) if custom["ignored"] == json!(true) => println!(
                        "CUSTOM: the external authorizer {p} ({svc}) is not asked: HTTP providers do not apply to TCP"
                    ),
                    Some(svc) => println!("CUSTOM: the external authorizer {p} ({svc}) is asked first"),
                    None => println!(
                        "CUSTOM: provider {p} cannot be used: {}; the CUSTOM policies' rules deny what they match",
                        custom["error"].as_str().unwrap_or("")
                    ),
                }
            }
            if let Some(a) = authn.as_object() {
                match a.get("result").and_then(|r| r.as_str()) {
                    Some("verified") => println!(
                        "token: verified by RequestAuthentication {}, request principal {}",
                        a["policy"].as_str().unwrap_or("?"),
                        a["principal"].as_str().unwrap_or("?")
                    ),
                    Some("no token") => {
                        println!("token: none (no request principal; RequestAuthentication lets it through)")
                    }
                    _ => {}
                }
            }
            if let Some(p) = path
                .as_deref()
                .ok()
                .filter(|p| !args.tcp && *p != args.path)
            {
                println!(
                    "path: {p} after Envoy's normalization (what policies and the application see)"
                );
            }
            if !allowed {
                if bad_method {
                    println!("the caller gets 400 `Bad Request` (Envoy's HTTP codec)");
                } else if bad_path {
                    println!("the caller gets 400 (Envoy's path normalization)");
                } else if let Some((e, _)) = &rejected {
                    println!(
                        "the caller gets {} with that message (Envoy's jwt_authn)",
                        e.http_status()
                    );
                } else if mtls.mode == MtlsMode::Strict && principal.is_none() {
                    println!("the caller's connection is reset");
                } else {
                    println!(
                        "the caller gets 403 `RBAC: access denied` (HTTP) or a closed connection (TCP)"
                    );
                }
            }
            if !args.tcp && host.is_empty() {
                println!(
                    "note: no --host nor Host header: the request has no `:authority`, which a real one always has (`hosts` and `notHosts` conditions see none)"
                );
            }
            let mode = if gateway {
                "not applied (a gateway: PeerAuthentication is for sidecars; its Gateway servers' TLS decides)"
            } else {
                mode
            };
            println!(
                "mTLS: {mode}; policies applying: {}",
                if applicable.is_empty() {
                    "none".to_owned()
                } else {
                    applicable.join(", ")
                }
            );
        }
    }
    ExitCode::SUCCESS
}

/// A matching CUSTOM policy whose provider `h` is usable: the provider that would be asked
/// (`provider`, `service`), and the decision should the authorizer allow (DENY and ALLOW
/// policies still apply); whether it is asked (an HTTP provider is not, on TCP).
fn explain_custom(
    authz: &mesh_core::authz::WorkloadAuthz,
    req: &AuthzRequest<'_>,
    m: mesh_core::authz::CustomMatch<'_>,
    h: mesh_core::meshconfig::ExtAuthzRef<'_>,
) -> (serde_json::Value, mesh_core::authz::AuthzDecision, bool) {
    let at = format!("CUSTOM policy {} rule {} matches", m.policy, m.rule);
    let service = format!("{} {}:{}", h.kind(), h.host(), h.port());
    match h {
        mesh_core::meshconfig::ExtAuthzRef::Http(_) if req.http.is_none() => {
            // istiod: "ignored CUSTOM action with HTTP provider on TCP filter chain"
            let c = json!({
                "policy": &**m.policy,
                "rule": m.rule,
                "provider": m.provider,
                "service": service,
                "reason": format!("{at}, but its provider {} is envoyExtAuthzHttp, which istiod does not apply to TCP connections:", m.provider),
                "ignored": true,
            });
            (c, authz.evaluate_with(req, &|_, _| true), false)
        }
        _ => {
            let after = authz.evaluate_with(req, &|_, _| true);
            let why = if after.allowed {
                format!(
                    "{at}: the external authorizer {} ({service}) decides, which meshctl cannot ask offline; if it allows:",
                    m.provider
                )
            } else {
                format!(
                    "{at}: the external authorizer {} ({service}) is asked first, but whatever it answers,",
                    m.provider
                )
            };
            let c = json!({
                "policy": &**m.policy,
                "rule": m.rule,
                "provider": m.provider,
                "service": service,
                "reason": why,
            });
            (c, after, true)
        }
    }
}

/// The `X-Forwarded-For` address of `headers` (every line as one list) `skip` places from
/// the right: the rightmost (`skip` 0) as Envoy's connection manager with
/// `use_remote_address: false` and no trusted hops (a sidecar's inbound) takes it for
/// `remote.ip`; a gateway's with N trusted hops takes the Nth (`skip` N - 1).
fn forwarded_for(headers: &http::HeaderMap, skip: usize) -> Option<IpAddr> {
    let all = headers.get_all("x-forwarded-for");
    if all.iter().any(|v| v.to_str().is_err()) {
        return None;
    }
    all.iter()
        .rev()
        .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
        .nth(skip)
        .and_then(|e| e.trim().parse().ok())
}

/// The Service (`ns/name`) that declares the workload's port `args.port` (its `targetPort`,
/// a container port name resolved through the workload's loaded pods or templates, else
/// its port) a protocol a sidecar's inbound listener serves with a TCP filter chain (`TCP`,
/// `MONGO`, `MYSQL`, `REDIS`, `TLS`, `HTTPS`; by name or `appProtocol`), selecting the
/// workload by its labels.
fn declared_tcp(
    objects: &[mesh_core::model::ConfigObject],
    args: &Args,
    labels: &mesh_core::model::Labels,
) -> Option<String> {
    // the workload's named container ports, from its loaded pods and templates
    let named = |name: &str| {
        objects.iter().find_map(|o| match &o.spec {
            mesh_core::model::Spec::Workload(w)
                if o.metadata.namespace == args.namespace
                    && labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)) =>
            {
                w.container_ports
                    .iter()
                    .find(|c| c.name.as_deref() == Some(name))
                    .map(|c| c.container_port)
            }
            _ => None,
        })
    };
    objects.iter().find_map(|o| {
        let mesh_core::model::Spec::Service(svc) = &o.spec else {
            return None;
        };
        let selector = svc.selector.as_ref().filter(|s| !s.is_empty())?;
        if o.metadata.namespace != args.namespace
            || !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        {
            return None;
        }
        svc.ports
            .iter()
            .any(|p| {
                let target = match &p.target_port {
                    Some(mesh_core::model::IntOrString::Int(n)) => Some(*n),
                    Some(mesh_core::model::IntOrString::String(name)) => named(name),
                    None => Some(p.port),
                };
                let protocol = p.istio_protocol();
                target == Some(u32::from(args.port))
                    && matches!(
                        protocol.as_str(),
                        "TCP" | "MONGO" | "MYSQL" | "REDIS" | "TLS" | "HTTPS"
                    )
            })
            .then(|| format!("{}/{}", o.metadata.namespace, o.metadata.name))
    })
}

/// Whether the workload is a gateway (Envoy's router, whose connection manager uses the
/// remote address): a loaded Gateway's selector selects it (one without a selector says
/// nothing: it would select every workload), or it carries an Istio gateway's labels.
fn is_gateway(snap: &mesh_core::snapshot::Snapshot, labels: &mesh_core::model::Labels) -> bool {
    if labels.contains_key("gateway.networking.k8s.io/gateway-name")
        || labels
            .get("istio")
            .is_some_and(|v| v == "ingressgateway" || v == "egressgateway")
    {
        return true;
    }
    let unselective: Vec<&str> = snap
        .gateway_servers(&mesh_core::model::Labels::new())
        .iter()
        .map(|s| s.gateway)
        .collect();
    snap.gateway_servers(labels)
        .iter()
        .any(|s| !unselective.contains(&s.gateway))
}

/// The workload's jwtRule for the issuer of a given identity (`--request-principal`,
/// `--claims`): its `iss` claim, else the principal's `iss` half.
fn rule_of_issuer<'p>(
    providers: &'p [Arc<JwtProvider>],
    auth: &RequestAuth,
) -> Option<&'p JwtProvider> {
    let iss = auth.iss_sub().0?;
    providers.iter().map(|p| &**p).find(|p| p.issuer() == iss)
}

/// [`mesh_core::authn::write_jwt_outputs`] for an identity given with `--request-principal` and `--claims` rather
/// than a token: the claim headers of the issuer's rule, and its payload header as the
/// base64url of the claims' JSON (a real token's payload segment says the same claims).
fn given_jwt_outputs(
    headers: &mut http::HeaderMap,
    rule: &JwtProvider,
    claims: &serde_json::Value,
) {
    if let Some(h) = rule.output_payload_to_header() {
        let payload = mesh_core::names::base64_encode(
            serde_json::to_string(claims).unwrap_or_default().as_bytes(),
            true,
        );
        if let (Ok(name), Ok(v)) = (
            http::HeaderName::from_bytes(h.as_bytes()),
            http::HeaderValue::from_str(&payload),
        ) {
            headers.append(name, v);
        }
    }
    mesh_core::authn::write_claim_headers(headers, rule, claims);
    // the token's own header goes, as the runtime removes it (`forwardOriginalToken`
    // unset): the first of the rule's header locations the request carries a token in
    if !rule.forward_original_token() {
        for loc in rule.locations() {
            if let mesh_core::authn::TokenLocation::Header { name, prefix } = loc
                && headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains(prefix.as_str()))
            {
                headers.remove(name.as_str());
                break;
            }
        }
    }
}

/// A request path without its `#fragment`: Envoy strips it before any filter (Istio turns
/// `envoy.reloadable_features.http_reject_path_with_fragment` off), so policies see
/// `/admin` for `/admin#top`.
fn without_fragment(path: &str) -> Result<String, String> {
    Ok(path.split_once('#').map_or(path, |(p, _)| p).to_owned())
}
