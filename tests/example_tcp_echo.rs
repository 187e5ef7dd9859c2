//! The TCP example does what it prints: the 80/20 split measured, the other identity
//! refused, the servers' TCP series by identity. (A test binary of its own: the bookinfo
//! test listens with a thread-local `tracing` subscriber, which tests running in parallel
//! in the same process race with for the callsites' interest cache.)

/// The count at the end of a Prometheus sample line.
fn sample_value(line: &str) -> u64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {line}"))
}

#[path = "../examples/tcp_echo.rs"]
#[allow(dead_code)]
mod tcp_echo;

/// The TCP example: the 80/20 split measured, the other identity refused, the servers'
/// TCP series by identity.
#[tokio::test]
async fn tcp_echo_example_reports_what_istio_would_do() {
    let report = tcp_echo::run(400).await.expect("the example runs");
    let printed = report.to_string();
    let one = report.answers.get("one").copied().unwrap_or(0);
    let two = report.answers.get("two").copied().unwrap_or(0);
    assert_eq!(one + two, 400, "{printed}");
    // 80/20: within 4 standard deviations (8 connections) at n = 400
    assert!((288..=352).contains(&one), "{printed}");
    assert!(report.other_identity.starts_with("refused"), "{printed}");
    let sleep: u64 = report
        .metrics_lines
        .iter()
        .filter(|l| l.contains("source_principal=\"spiffe://cluster.local/ns/foo/sa/sleep\""))
        .map(|l| sample_value(l))
        .sum();
    assert_eq!(sleep, 400, "{printed}");
    assert!(
        report
            .metrics_lines
            .iter()
            .all(|l| l.contains("connection_security_policy=\"mutual_tls\"")),
        "{printed}"
    );
    assert!(printed.contains("v1 answered"), "{printed}");
}
