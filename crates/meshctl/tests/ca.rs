//! `meshctl ca init` / `meshctl ca issue`, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use mesh_tls::WorkloadCert;

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("meshctl runs")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn samples() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples/certs");
    if d.join("ca-cert.pem").exists() {
        Some(d)
    } else {
        eprintln!("skipped: Istio sample certs not found at {}", d.display());
        None
    }
}

/// Runs meshctl, which must succeed; what it printed.
fn run(args: &[&str]) -> String {
    let o = meshctl(args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    text(&o)
}

/// `meshctl ca issue` of `default/<sa>` by the CA in `ca`, into `out`.
fn issue(ca: &Path, sa: &str, out: &Path) {
    run(&[
        "ca",
        "issue",
        "--dir",
        p(ca),
        "-n",
        "default",
        "--service-account",
        sa,
        "--out",
        p(out),
    ]);
}

/// `openssl verify -crl_check` of the workload certificate in `cert` against `root` and
/// the list in `crl` (OpenSSL's reading, not ours).
fn crl_verify(root: &Path, crl: &Path, cert: &Path) -> Output {
    Command::new("openssl")
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(root)
        .arg("-CRLfile")
        .arg(crl)
        .arg(cert.join("cert-chain.pem"))
        .output()
        .unwrap()
}

fn openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: openssl is not installed");
    }
    ok
}

#[test]
fn init_then_issue_self_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let o = meshctl(&[
        "ca",
        "init",
        "--dir",
        p(&ca),
        "--trust-domain",
        "example.org",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "ca-cert.pem",
        "ca-key.pem",
        "root-cert.pem",
        "cert-chain.pem",
    ] {
        assert!(ca.join(f).is_file(), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ca.join("ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "ca-key.pem is private");
    }

    // a second init does not overwrite the CA unless forced
    let root_before = std::fs::read(ca.join("root-cert.pem")).unwrap();
    let o = meshctl(&["ca", "init", "--dir", p(&ca)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(
        std::fs::read(ca.join("root-cert.pem")).unwrap(),
        root_before
    );

    let out = tmp.path().join("sleep");
    let o = meshctl(&[
        "ca",
        "issue",
        "--dir",
        p(&ca),
        "--namespace",
        "default",
        "--service-account",
        "sleep",
        "--out",
        p(&out),
        "--ttl",
        "1h",
        "--dns",
        "localhost",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("spiffe://example.org/ns/default/sa/sleep"),
        "{}",
        text(&o)
    );
    let wc = WorkloadCert::read_dir(&out).unwrap();
    assert_eq!(
        wc.identity().as_uri(),
        "spiffe://example.org/ns/default/sa/sleep"
    );
    let left = wc.not_after().duration_since(SystemTime::now()).unwrap();
    assert!(
        left <= Duration::from_secs(3600) && left > Duration::from_secs(3500),
        "{left:?}"
    );
    assert_eq!(
        std::fs::read(out.join("root-cert.pem")).unwrap(),
        root_before
    );

    // default ttl is 24h
    let out24 = tmp.path().join("default-ttl");
    let o = meshctl(&[
        "ca",
        "issue",
        "--dir",
        p(&ca),
        "-n",
        "a",
        "--service-account",
        "b",
        "--out",
        p(&out24),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let left = WorkloadCert::read_dir(&out24)
        .unwrap()
        .not_after()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(86_000) && left <= Duration::from_secs(86_400),
        "{left:?}"
    );

    if openssl() {
        let o = Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                p(&out.join("root-cert.pem")),
                p(&out.join("cert-chain.pem")),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let o = Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-text",
                "-in",
                p(&out.join("cert-chain.pem")),
            ])
            .output()
            .unwrap();
        let t = text(&o);
        assert!(
            t.contains("URI:spiffe://example.org/ns/default/sa/sleep")
                && t.contains("DNS:localhost"),
            "{t}"
        );
    }

    // --force replaces the CA
    let o = meshctl(&["ca", "init", "--dir", p(&ca), "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(
        std::fs::read(ca.join("root-cert.pem")).unwrap(),
        root_before
    );
}

#[test]
fn plugin_istio_sample_ca() {
    let Some(samples) = samples() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("cacerts");
    let o = meshctl(&["ca", "init", "--dir", p(&ca), "--plugin", p(&samples)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("plugged in"), "{}", text(&o));
    assert_eq!(
        std::fs::read(ca.join("root-cert.pem")).unwrap(),
        std::fs::read(samples.join("root-cert.pem")).unwrap()
    );
    let out = tmp.path().join("foo");
    let o = meshctl(&[
        "ca",
        "issue",
        "--dir",
        p(&ca),
        "-n",
        "foo",
        "--service-account",
        "foo",
        "--out",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let wc = WorkloadCert::read_dir(&out).unwrap();
    assert_eq!(wc.identity().principal(), "cluster.local/ns/foo/sa/foo");
    assert_eq!(
        wc.chain_der().unwrap().len(),
        2,
        "leaf + Istio sample intermediate"
    );
    // issuing straight from Istio's samples directory works too
    let out2 = tmp.path().join("bar");
    let o = meshctl(&[
        "ca",
        "issue",
        "--dir",
        p(&samples),
        "--trust-domain",
        "trust-domain-bar",
        "-n",
        "bar",
        "--service-account",
        "bar",
        "--out",
        p(&out2),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    if openssl() {
        let o = Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                p(&out.join("root-cert.pem")),
                "-untrusted",
                p(&samples.join("ca-cert.pem")),
            ])
            .arg(p(&out.join("cert-chain.pem")))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
}

#[test]
fn errors_are_reported_with_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    // a plug-in whose key is not the certificate's
    if let Some(samples) = samples() {
        let bad = tmp.path().join("bad-plugin");
        std::fs::create_dir_all(&bad).unwrap();
        for f in ["ca-cert.pem", "root-cert.pem", "cert-chain.pem"] {
            std::fs::copy(samples.join(f), bad.join(f)).unwrap();
        }
        std::fs::copy(samples.join("workload-foo-key.pem"), bad.join("ca-key.pem")).unwrap();
        let o = meshctl(&[
            "ca",
            "init",
            "--dir",
            p(&tmp.path().join("x")),
            "--plugin",
            p(&bad),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("does not match"), "{}", text(&o));
        assert!(
            !tmp.path().join("x/ca-key.pem").exists(),
            "nothing written on error"
        );
    }
    // unreadable plug-in directory
    let o = meshctl(&[
        "ca",
        "init",
        "--dir",
        p(&tmp.path().join("y")),
        "--plugin",
        "/nonexistent/cacerts",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("/nonexistent/cacerts/ca-cert.pem"),
        "{}",
        text(&o)
    );
    // bad trust domain
    let o = meshctl(&[
        "ca",
        "init",
        "--dir",
        p(&tmp.path().join("z")),
        "--trust-domain",
        "Bad/TD",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let ca = tmp.path().join("ca");
    assert!(meshctl(&["ca", "init", "--dir", p(&ca)]).status.success());
    let out = tmp.path().join("out");
    let issue = |extra: &[&str]| {
        let mut args = vec!["ca", "issue", "--dir", p(&ca), "--out", p(&out)];
        args.extend_from_slice(extra);
        meshctl(&args)
    };
    // bad ttl: a usage error
    let o = issue(&["-n", "a", "--service-account", "b", "--ttl", "1d"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // ttl over Istio's 90 days maximum
    let o = issue(&["-n", "a", "--service-account", "b", "--ttl", "2161h"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("max allowed TTL"), "{}", text(&o));
    // invalid identity part
    let o = issue(&["-n", "a/b", "--service-account", "b"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("namespace"), "{}", text(&o));
    // missing CA
    let o = meshctl(&[
        "ca",
        "issue",
        "--dir",
        "/nonexistent/ca",
        "-n",
        "a",
        "--service-account",
        "b",
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // missing required arguments
    let o = meshctl(&["ca", "issue", "--dir", p(&ca)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// `meshctl ca crl`: the list it writes revokes the certificates given and no others, as
/// `openssl verify -crl_check` reads it (not our own code); a certificate another CA
/// issued is refused.
#[test]
fn crl_revokes_what_it_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    run(&["ca", "init", "--dir", p(&ca)]);
    let (stolen, good) = (tmp.path().join("stolen"), tmp.path().join("good"));
    for (sa, out) in [("stolen", &stolen), ("good", &good)] {
        issue(&ca, sa, out);
    }
    let crl = tmp.path().join("ca.crl");
    let said = run(&[
        "ca",
        "crl",
        "--dir",
        p(&ca),
        "--out",
        p(&crl),
        "--revoke",
        p(&stolen.join("cert-chain.pem")),
        "--validity",
        "1h",
    ]);
    assert!(said.contains("1 revoked"), "{said}");
    assert!(std::fs::read_to_string(&crl)
        .unwrap()
        .starts_with("-----BEGIN X509 CRL-----"));

    // another CA's certificate: refused, nothing written
    let other = tmp.path().join("other");
    run(&["ca", "init", "--dir", p(&other)]);
    let theirs = tmp.path().join("theirs");
    issue(&other, "x", &theirs);
    let o = meshctl(&[
        "ca",
        "crl",
        "--dir",
        p(&ca),
        "--out",
        p(&tmp.path().join("no.crl")),
        "--revoke",
        p(&theirs.join("cert-chain.pem")),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("was not issued by this CA"),
        "{}",
        text(&o)
    );
    assert!(!tmp.path().join("no.crl").exists());

    if !openssl() {
        return;
    }
    let verify = |cert: &Path| crl_verify(&ca.join("root-cert.pem"), &crl, cert);
    let o = verify(&good);
    assert!(o.status.success(), "good: {}", text(&o));
    let o = verify(&stolen);
    assert!(!o.status.success());
    assert!(text(&o).contains("certificate revoked"), "{}", text(&o));
}

/// A plugged-in CA made by OpenSSL (its subject key identifier a SHA-1 of its key): the
/// list's authority key identifier is that identifier, so OpenSSL finds the list and
/// checks it. A CA whose key usage leaves out cRLSign (Istio's sample CA) cannot sign one.
#[test]
fn crl_from_a_plugged_in_openssl_ca() {
    if !openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca-cert.pem",
            "-days",
            "30",
            "-subj",
            "/O=corp/CN=corp root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .current_dir(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for f in ["root-cert.pem", "cert-chain.pem"] {
        std::fs::copy(src.join("ca-cert.pem"), src.join(f)).unwrap();
    }
    let ca = tmp.path().join("ca");
    run(&["ca", "init", "--dir", p(&ca), "--plugin", p(&src)]);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (sa, out) in [("a", &a), ("b", &b)] {
        issue(&ca, sa, out);
    }
    let crl = tmp.path().join("ca.crl");
    run(&[
        "ca",
        "crl",
        "--dir",
        p(&ca),
        "--out",
        p(&crl),
        "--revoke",
        p(&a.join("cert-chain.pem")),
    ]);
    let verify = |cert: &Path| crl_verify(&src.join("root-cert.pem"), &crl, cert);
    let o = verify(&b);
    assert!(o.status.success(), "b: {}", text(&o));
    let o = verify(&a);
    assert!(text(&o).contains("certificate revoked"), "{}", text(&o));

    // Istio's sample CA has no cRLSign
    let Some(samples) = samples() else {
        return;
    };
    let sample = tmp.path().join("sample");
    run(&["ca", "init", "--dir", p(&sample), "--plugin", p(&samples)]);
    let o = meshctl(&[
        "ca",
        "crl",
        "--dir",
        p(&sample),
        "--out",
        p(&tmp.path().join("x.crl")),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("cRLSign"), "{}", text(&o));
}
