//! `meshctl ca`: a mesh CA in a directory of Istio `cacerts` files.
//!
//! - `meshctl ca init --dir D [--trust-domain TD] [--plugin DIR] [--force]` creates a
//!   self-signed root for the trust domain in D, or checks and copies a plug-in CA (Istio's
//!   `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`, or a `kubernetes.io/tls`
//!   secret's `tls.crt`, `tls.key`, `ca.crt`) from DIR into D.
//! - `meshctl ca issue --dir D --namespace NS --service-account SA --out OUT [--ttl 24h]
//!   [--dns NAME]...` writes `OUT/cert-chain.pem`, `OUT/key.pem`, `OUT/root-cert.pem` for
//!   `spiffe://<td>/ns/<NS>/sa/<SA>`.
//! - `meshctl ca crl --dir D --out FILE [--revoke CERT.pem]... [--validity 24h]` writes a
//!   certificate revocation list signed by the CA, listing the leaf certificates of the
//!   given PEM files: what a DestinationRule's `caCrl` or a credential's `ca.crl` holds.
//!
//! The trust domain is kept in `D/trust-domain` (not an Istio file; Istio takes it from
//! MeshConfig), so `issue` uses the one given to `init`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use mesh_tls::{files, Identity, MeshCa, TlsError, DEFAULT_TRUST_DOMAIN};

const TRUST_DOMAIN_FILE: &str = "trust-domain";

/// Subcommands of `meshctl ca`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create a self-signed root CA for a trust domain, or plug in an existing CA.
    Init {
        /// Directory to write the CA to (Istio `cacerts` layout).
        #[arg(long)]
        dir: PathBuf,
        /// Trust domain (MeshConfig `trustDomain`).
        #[arg(long, default_value = DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// Plug in the CA from this directory (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`,
        /// `cert-chain.pem`, or `tls.crt`, `tls.key`, `ca.crt`) instead of creating a root.
        #[arg(long, value_name = "DIR")]
        plugin: Option<PathBuf>,
        /// Overwrite a CA already in `--dir`.
        #[arg(long)]
        force: bool,
    },
    /// Issue a workload certificate for spiffe://<td>/ns/<namespace>/sa/<service-account>.
    Issue {
        /// The CA directory (from `meshctl ca init`, or any Istio `cacerts` directory).
        #[arg(long)]
        dir: PathBuf,
        /// The workload's namespace.
        #[arg(long, short = 'n')]
        namespace: String,
        /// The workload's service account.
        #[arg(long)]
        service_account: String,
        /// Where to write `cert-chain.pem`, `key.pem` and `root-cert.pem`.
        #[arg(long)]
        out: PathBuf,
        /// Lifetime, as a Go duration (`24h`, `90m`, `1h30m`); at most 2160h (90 days).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// Trust domain; default: the one recorded by `init`, else cluster.local.
        #[arg(long)]
        trust_domain: Option<String>,
        /// Extra DNS (or IP) SANs, e.g. `localhost` for tools that cannot verify SPIFFE IDs.
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
    },
    /// Write a certificate revocation list (PEM) signed by the CA.
    Crl {
        /// The CA directory (from `meshctl ca init`, or any Istio `cacerts` directory).
        #[arg(long)]
        dir: PathBuf,
        /// Where to write the CRL (e.g. a credential's `ca.crl`).
        #[arg(long)]
        out: PathBuf,
        /// A PEM certificate (or chain: its first certificate) the CA issued, to list as
        /// revoked; repeatable. None: an empty list, every certificate of the CA good.
        #[arg(long, value_name = "CERT")]
        revoke: Vec<PathBuf>,
        /// How long the list is valid (its `nextUpdate`), as a Go duration.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        validity: Duration,
        /// Trust domain; default: the one recorded by `init`, else cluster.local.
        #[arg(long)]
        trust_domain: Option<String>,
    },
}

pub(crate) fn run(cmd: Command) -> ExitCode {
    let result = match cmd {
        Command::Init {
            dir,
            trust_domain,
            plugin,
            force,
        } => init(&dir, &trust_domain, plugin.as_deref(), force),
        Command::Issue {
            dir,
            namespace,
            service_account,
            out,
            ttl,
            trust_domain,
            dns,
        } => issue(
            &dir,
            &namespace,
            &service_account,
            &out,
            ttl,
            trust_domain.as_deref(),
            &dns,
        ),
        Command::Crl {
            dir,
            out,
            revoke,
            validity,
            trust_domain,
        } => crl(&dir, &out, &revoke, validity, trust_domain.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshctl ca: {e}");
            match e {
                // unreadable input or unwritable output
                TlsError::Io { .. } => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

fn init(
    dir: &Path,
    trust_domain: &str,
    plugin: Option<&Path>,
    force: bool,
) -> Result<(), TlsError> {
    let key = dir.join(files::CA_KEY);
    if key.exists() && !force {
        return Err(TlsError::Config(format!(
            "{} already holds a CA ({} exists); use --force to replace it",
            dir.display(),
            key.display()
        )));
    }
    let ca = match plugin {
        Some(src) => MeshCa::from_plugin_dir(src, trust_domain)?,
        None => MeshCa::self_signed(trust_domain)?,
    };
    ca.write_dir(dir)?;
    let td_file = dir.join(TRUST_DOMAIN_FILE);
    std::fs::write(&td_file, format!("{trust_domain}\n")).map_err(|e| TlsError::Io {
        path: td_file,
        source: e,
    })?;
    let what = if plugin.is_some() {
        "plugged in"
    } else {
        "created"
    };
    println!(
        "{what} CA for trust domain {trust_domain} in {} (root: {}; signing certificate valid until {})",
        dir.display(),
        ca.trust_bundle().subjects().join("; "),
        httpdate(ca.not_after())
    );
    Ok(())
}

/// The trust domain given, else the one `init` recorded, else cluster.local.
fn trust_domain_of(dir: &Path, given: Option<&str>) -> String {
    let recorded = std::fs::read_to_string(dir.join(TRUST_DOMAIN_FILE)).ok();
    given
        .map(str::to_owned)
        .or_else(|| recorded.map(|s| s.trim().to_owned()))
        .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned())
}

fn crl(
    dir: &Path,
    out: &Path,
    revoke: &[PathBuf],
    validity: Duration,
    trust_domain: Option<&str>,
) -> Result<(), TlsError> {
    let ca = MeshCa::read_dir(dir, &trust_domain_of(dir, trust_domain))?;
    let mut leaves = Vec::with_capacity(revoke.len());
    for path in revoke {
        let pem = std::fs::read(path).map_err(|e| TlsError::Io {
            path: path.clone(),
            source: e,
        })?;
        let what = path.display().to_string();
        leaves.push(mesh_tls::certs_from_pem(&what, &pem)?.remove(0));
    }
    let pem = ca.revocation_list_der(&leaves, validity)?;
    std::fs::write(out, pem).map_err(|e| TlsError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    println!(
        "wrote {} ({} revoked, valid until {})",
        out.display(),
        leaves.len(),
        httpdate(std::time::SystemTime::now() + validity)
    );
    Ok(())
}

fn issue(
    dir: &Path,
    namespace: &str,
    service_account: &str,
    out: &Path,
    ttl: Duration,
    trust_domain: Option<&str>,
    dns: &[String],
) -> Result<(), TlsError> {
    let td = trust_domain_of(dir, trust_domain);
    let identity = Identity::new(&td, namespace, service_account)?;
    let ca = MeshCa::read_dir(dir, &td)?;
    let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
    let wc = ca.issue(&identity, ttl, &dns)?;
    wc.write_dir(out)?;
    println!(
        "issued {identity} valid until {}\nwrote {}, {}, {}",
        httpdate(wc.not_after()),
        out.join(files::CERT_CHAIN).display(),
        out.join(files::KEY).display(),
        out.join(files::ROOT_CERT).display()
    );
    Ok(())
}

/// A Go duration: one or more `<number><unit>` with units `h`, `m`, `s`, `ms`
/// (e.g. `24h`, `1h30m`, `90s`). Must be positive.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected e.g. 24h, 90m, 1h30m, 45s");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let add = value * secs;
        if !add.is_finite() || add > 1e12 {
            return Err(bad());
        }
        total += Duration::from_secs_f64(add);
    }
    if total.is_zero() {
        return Err(format!("invalid duration {s:?}: must be greater than zero"));
    }
    Ok(total)
}

/// `2026-11-26T20:40:16Z`.
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // civil from days (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, want) in [
            ("24h", Some(86_400.0)),
            ("90m", Some(5_400.0)),
            ("1h30m", Some(5_400.0)),
            ("45s", Some(45.0)),
            ("1.5h", Some(5_400.0)),
            ("500ms", Some(0.5)),
            ("2160h", Some(7_776_000.0)),
            ("", None),
            ("0s", None),
            ("24", None),
            ("h", None),
            ("1d", None),
            ("-1h", None),
            ("1h-", None),
        ] {
            let got = parse_duration(s).ok().map(|d| d.as_secs_f64());
            assert_eq!(got, want, "{s:?}");
        }
    }

    #[test]
    fn dates() {
        let t = |s| std::time::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(httpdate(t(0)), "1970-01-01T00:00:00Z");
        assert_eq!(httpdate(t(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(httpdate(t(1_795_639_216)), "2026-11-25T20:40:16Z");
    }
}
