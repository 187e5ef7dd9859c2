//! `meshctl authz`: explain offline whether a request to a workload is allowed, and which
//! policy decided.
//!
//! The workload runs in `--namespace` with `--labels`; `--principal` is the caller's
//! verified identity (`cluster.local/ns/default/sa/sleep`, absent for plaintext). The
//! PeerAuthentication of the workload's port is applied first: STRICT with no principal is
//! denied (Envoy resets the connection), DISABLE hides the principal. With `--output json`
//! exactly one JSON object is printed: `{"decision": "ALLOW"|"DENY", "policy": "ns/name" or
//! null, "reason": text, ...}`. Exit status 0 when a decision was made, 2 on a usage error or
//! a config that cannot be loaded.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use mesh_core::authz::{normalize_path, AuthzReason, AuthzRequest, HttpAuthzAttrs, RequestAuth};
use mesh_core::model::MtlsMode;
use serde_json::json;

use crate::route::{load_snapshot, parse_headers, parse_labels, Output};

/// Arguments of `meshctl authz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Config file or directory (repeatable).
    #[arg(long = "config", short = 'c', value_name = "PATH", required = true)]
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
    /// The original client address (X-Forwarded-For), for `remoteIpBlocks`.
    #[arg(long)]
    remote_ip: Option<IpAddr>,
    /// The workload's address.
    #[arg(long)]
    destination_ip: Option<IpAddr>,
    /// Request method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Host / `:authority`.
    #[arg(long)]
    host: Option<String>,
    /// The workload port called.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// TLS SNI.
    #[arg(long)]
    sni: Option<String>,
    /// Request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The request's verified JWT principal `iss/sub` (RequestAuthentication).
    #[arg(long, value_name = "ISS/SUB")]
    request_principal: Option<String>,
    /// The verified JWT's claims as a JSON object (`{"groups": ["g1"]}`).
    #[arg(long, value_name = "JSON", requires = "request_principal")]
    claims: Option<String>,
    /// Authorize a TCP connection instead of an HTTP request.
    #[arg(long)]
    tcp: bool,
    /// Namespace given to config objects without one.
    #[arg(long, default_value = "default")]
    config_namespace: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let (labels, headers) = match (
        parse_labels(args.labels.as_deref()),
        parse_headers(&args.headers),
    ) {
        (Ok(l), Ok(h)) => (l, h),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let claims: serde_json::Value = match args.claims.as_deref().map(serde_json::from_str) {
        None => serde_json::Value::Object(Default::default()),
        Some(Ok(v @ serde_json::Value::Object(_))) => v,
        Some(_) => {
            eprintln!("error: --claims must be a JSON object");
            return ExitCode::from(2);
        }
    };
    let jwt = args.request_principal.as_ref().map(|p| RequestAuth {
        principal: p.clone(),
        ..RequestAuth::from_claims(claims.clone())
    });
    let snap = match load_snapshot(&args.config, &args.config_namespace) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let principal = args
        .principal
        .as_deref()
        .map(|p| p.strip_prefix("spiffe://").unwrap_or(p));
    let mtls = snap.peer_authentication_detail(&args.namespace, &labels, args.port);
    let authz = snap.authz_for_workload(&args.namespace, &labels);
    let applicable: Vec<&str> = authz.policies().collect();
    let mode = match mtls.mode {
        MtlsMode::Strict => "STRICT",
        MtlsMode::Disable => "DISABLE",
        _ => "PERMISSIVE",
    };

    let (allowed, policy, rule, reason, audit) = if mtls.mode == MtlsMode::Strict
        && principal.is_none()
    {
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
        let host = args.host.clone().unwrap_or_default();
        let path = normalize_path(&args.path);
        let http = (!args.tcp).then(|| HttpAuthzAttrs {
            method: &args.method,
            path: &path,
            host: &host,
            headers: &headers,
        });
        let req = AuthzRequest {
            principal,
            source_ip: args.source_ip,
            remote_ip: args.remote_ip,
            destination_ip: args.destination_ip,
            destination_port: args.port,
            sni: args.sni.as_deref(),
            http,
            request_auth: jwt.as_ref(),
            filter_metadata: &[],
        };
        let d = authz.evaluate(&req);
        let mut reason = d.reason.to_string();
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
        (
            d.allowed,
            d.policy.as_deref().map(str::to_owned),
            d.rule,
            reason,
            d.audit.as_deref().map(str::to_owned),
        )
    };
    let v = json!({
        "decision": if allowed { "ALLOW" } else { "DENY" },
        "policy": policy,
        "rule": rule,
        "reason": reason,
        "audit": audit,
        "mtls_mode": mode,
        "peer_authentication": mtls.policy.as_deref(),
        "policies": applicable,
    });
    match args.output {
        Output::Json => println!("{v}"),
        Output::Text => {
            let who = principal.unwrap_or("a plaintext caller");
            let what = if args.tcp {
                format!("TCP connection to port {}", args.port)
            } else {
                format!("{} {} (port {})", args.method, args.path, args.port)
            };
            println!(
                "{} {what} from {who} to workload {{{}}} in namespace {}",
                if allowed { "ALLOW" } else { "DENY" },
                args.labels.as_deref().unwrap_or(""),
                args.namespace
            );
            println!("reason: {reason}");
            if !allowed {
                println!(
                    "the caller gets 403 `RBAC: access denied` (HTTP) or a closed connection (TCP)"
                );
            }
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
