//! Retry conditions (Envoy's `retry_on`, as Istio writes it) and back-off.
//!
//! The policy itself (attempts, per-try timeout, conditions, back-off base) comes from the
//! route decision ([`mesh_core::route::RetryPolicy`], Istio's default when the route sets
//! none); this module only decides whether one failed attempt may be retried.

use std::time::Duration;

use mesh_core::route::RetryPolicy;
use rand::Rng;

/// How one attempt ended, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptFailure {
    /// The upstream answered with this status.
    Status(u16),
    /// The connection could not be established (refused, unreachable, TLS handshake).
    ConnectFailure,
    /// HTTP/2 REFUSED_STREAM.
    RefusedStream,
    /// The stream or connection was reset after the request started, before headers.
    Reset,
    /// The per-try timeout fired.
    PerTryTimeout,
}

/// The parsed `retryOn` conditions of a policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RetryOn {
    five_xx: bool,
    gateway_error: bool,
    reset: bool,
    reset_before_request: bool,
    connect_failure: bool,
    retriable_4xx: bool,
    refused_stream: bool,
    retriable_status_codes: bool,
    /// `envoy-ratelimited`: an answer with `x-envoy-ratelimited`.
    envoy_ratelimited: bool,
    /// gRPC `unavailable`, `cancelled`, `deadline-exceeded`, `internal`,
    /// `resource-exhausted`: matched against `grpc-status`.
    grpc: [bool; 17],
}

const GRPC_CANCELLED: usize = 1;
const GRPC_DEADLINE_EXCEEDED: usize = 4;
const GRPC_RESOURCE_EXHAUSTED: usize = 8;
const GRPC_INTERNAL: usize = 13;
const GRPC_UNAVAILABLE: usize = 14;

impl RetryOn {
    /// Parses a comma-separated `retryOn` string (unknown tokens are ignored: validation
    /// refused them when the config was loaded).
    pub(crate) fn parse(s: &str) -> RetryOn {
        // Istio's default policy, on nearly every request: parsed once
        static DEFAULT: std::sync::OnceLock<RetryOn> = std::sync::OnceLock::new();
        if s == mesh_core::route::DEFAULT_RETRY_ON {
            return *DEFAULT.get_or_init(|| RetryOn::parse_str(mesh_core::route::DEFAULT_RETRY_ON));
        }
        RetryOn::parse_str(s)
    }

    fn parse_str(s: &str) -> RetryOn {
        let mut r = RetryOn::default();
        for t in s.split(',').map(str::trim) {
            match t {
                "5xx" => r.five_xx = true,
                "gateway-error" => r.gateway_error = true,
                "reset" => r.reset = true,
                "reset-before-request" => r.reset_before_request = true,
                "connect-failure" => r.connect_failure = true,
                "retriable-4xx" => r.retriable_4xx = true,
                "refused-stream" => r.refused_stream = true,
                "retriable-status-codes" => r.retriable_status_codes = true,
                "envoy-ratelimited" => r.envoy_ratelimited = true,
                "cancelled" => r.grpc[GRPC_CANCELLED] = true,
                "deadline-exceeded" => r.grpc[GRPC_DEADLINE_EXCEEDED] = true,
                "internal" => r.grpc[GRPC_INTERNAL] = true,
                "resource-exhausted" => r.grpc[GRPC_RESOURCE_EXHAUSTED] = true,
                "unavailable" => r.grpc[GRPC_UNAVAILABLE] = true,
                _ => {}
            }
        }
        r
    }

    /// Whether an answer may be retried (Envoy's `wouldRetryFromHeaders`): one carrying
    /// `x-envoy-ratelimited` (an upstream Envoy's rate limit) only under
    /// `envoy-ratelimited`, whatever its status; any other as [`RetryOn::should_retry`]
    /// says. The header is looked for only when it can change the answer.
    pub(crate) fn should_retry_answer(
        &self,
        status: u16,
        grpc_status: Option<u32>,
        headers: &http::HeaderMap,
        policy: &RetryPolicy,
    ) -> bool {
        static RATE_LIMITED: http::HeaderName =
            http::HeaderName::from_static("x-envoy-ratelimited");
        let by_status = self.should_retry(AttemptFailure::Status(status), grpc_status, policy);
        if !by_status && !self.envoy_ratelimited {
            return false;
        }
        if headers.contains_key(&RATE_LIMITED) {
            return self.envoy_ratelimited;
        }
        by_status
    }

    /// Whether an attempt that ended this way may be retried (Envoy's `RetryStateImpl`).
    /// Whether any gRPC status is retried on (`cancelled`, `unavailable`, ...).
    pub(crate) fn any_grpc(&self) -> bool {
        self.grpc.iter().any(|&g| g)
    }

    /// `grpc_status` is the response's `grpc-status` header when it has one.
    pub(crate) fn should_retry(
        &self,
        failure: AttemptFailure,
        grpc_status: Option<u32>,
        policy: &RetryPolicy,
    ) -> bool {
        match failure {
            AttemptFailure::Status(code) => {
                (self.five_xx && code >= 500)
                    || (self.gateway_error && matches!(code, 502..=504))
                    || (self.retriable_4xx && code == 409)
                    || (self.retriable_status_codes
                        && policy.retriable_status_codes.contains(&code))
                    || grpc_status
                        .and_then(|g| self.grpc.get(g as usize).copied())
                        .unwrap_or(false)
            }
            AttemptFailure::ConnectFailure => {
                self.connect_failure
                    || self.five_xx
                    || self.gateway_error
                    || self.reset
                    || self.reset_before_request
            }
            // Envoy wouldRetryFromReset: `5xx`, `gateway-error` and `reset` retry any reset
            // but an overflow, a refused stream included
            AttemptFailure::RefusedStream => {
                self.refused_stream || self.five_xx || self.gateway_error || self.reset
            }
            // Envoy wouldRetryFromReset: `reset`, `5xx` and `gateway-error` retry any reset
            AttemptFailure::Reset => self.reset || self.five_xx || self.gateway_error,
            // Envoy onPerTryTimeout resets the attempt (LocalReset, request already sent)
            // and asks wouldRetryFromReset: the same three, not `reset-before-request`
            AttemptFailure::PerTryTimeout => self.reset || self.five_xx || self.gateway_error,
        }
    }
}

/// Envoy's back-off before retry `n` (1-based): a random time in
/// `[0, base * 2^(n-1)]`, capped at ten times the base.
pub(crate) fn backoff(base: Duration, n: u32) -> Duration {
    if base.is_zero() {
        return Duration::ZERO;
    }
    let cap = base.saturating_mul(10);
    let upper = base
        .saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
        .min(cap);
    let nanos = upper.as_nanos().min(u128::from(u64::MAX)) as u64;
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retry_on: &str, codes: &[u16]) -> RetryPolicy {
        RetryPolicy {
            retry_on: retry_on.into(),
            retriable_status_codes: codes.into(),
            ..RetryPolicy::istio_default().clone()
        }
    }

    /// Envoy's `wouldRetryFromHeaders`: an upstream Envoy's rate-limited answer is retried
    /// under `envoy-ratelimited` only, whatever the status conditions say.
    #[test]
    fn rate_limited_answers() {
        let mut limited = http::HeaderMap::new();
        limited.insert("x-envoy-ratelimited", "true".parse().unwrap());
        let plain = http::HeaderMap::new();
        let cases: &[(&str, u16, &http::HeaderMap, bool)] = &[
            ("5xx", 503, &limited, false),
            ("5xx", 503, &plain, true),
            ("retriable-status-codes", 429, &limited, false),
            ("envoy-ratelimited", 429, &limited, true),
            ("envoy-ratelimited", 200, &limited, true),
            ("envoy-ratelimited", 503, &plain, false),
            ("5xx,envoy-ratelimited", 503, &limited, true),
        ];
        for (on, status, headers, want) in cases {
            let p = policy(on, &[429]);
            let r = RetryOn::parse(on);
            assert_eq!(
                r.should_retry_answer(*status, None, headers, &p),
                *want,
                "{on} {status} {headers:?}"
            );
        }
    }

    #[test]
    fn retry_table() {
        use AttemptFailure::*;
        let default_on = mesh_core::route::DEFAULT_RETRY_ON;
        // (retryOn, codes, failure, grpc-status, retried?)
        type Case<'a> = (&'a str, &'a [u16], AttemptFailure, Option<u32>, bool);
        let cases: &[Case<'_>] = &[
            // Istio's default: a plain 503 is not retried, connect failures are
            (default_on, &[], Status(503), None, false),
            (default_on, &[], Status(500), None, false),
            (default_on, &[], ConnectFailure, None, true),
            (default_on, &[], RefusedStream, None, true),
            (default_on, &[], Reset, None, false),
            (default_on, &[], PerTryTimeout, None, false),
            (default_on, &[], Status(200), Some(14), true), // gRPC UNAVAILABLE
            (default_on, &[], Status(200), Some(1), true),  // gRPC CANCELLED
            (default_on, &[], Status(200), Some(13), false), // INTERNAL not in default
            (default_on, &[], Status(200), Some(99), false),
            ("5xx", &[], Status(503), None, true),
            ("5xx", &[], Status(404), None, false),
            ("5xx", &[], Reset, None, true),
            ("5xx", &[], PerTryTimeout, None, true),
            ("gateway-error", &[], Status(502), None, true),
            ("gateway-error", &[], Status(500), None, false),
            ("gateway-error", &[], PerTryTimeout, None, true),
            ("retriable-4xx", &[], Status(409), None, true),
            ("retriable-4xx", &[], Status(404), None, false),
            ("retriable-status-codes", &[503], Status(503), None, true),
            ("retriable-status-codes", &[503], Status(502), None, false),
            ("reset", &[], Reset, None, true),
            ("reset", &[], ConnectFailure, None, true),
            ("reset", &[], PerTryTimeout, None, true),
            ("reset-before-request", &[], PerTryTimeout, None, false),
            ("gateway-error", &[], Reset, None, true),
            ("gateway-error", &[], RefusedStream, None, true),
            ("retriable-4xx", &[], RefusedStream, None, false),
            (
                "connect-failure,refused-stream",
                &[],
                PerTryTimeout,
                None,
                false,
            ),
            ("connect-failure", &[], Reset, None, false),
            ("", &[], ConnectFailure, None, false),
        ];
        for (on, codes, failure, grpc, want) in cases {
            let p = policy(on, codes);
            let got = RetryOn::parse(on).should_retry(*failure, *grpc, &p);
            assert_eq!(
                got, *want,
                "retryOn={on:?} codes={codes:?} {failure:?} grpc={grpc:?}"
            );
        }
    }

    #[test]
    fn backoff_is_bounded() {
        let base = Duration::from_millis(25);
        for n in 1..8 {
            for _ in 0..50 {
                let b = backoff(base, n);
                let upper = (base * (1 << (n - 1))).min(base * 10);
                assert!(b <= upper, "retry {n}: {b:?} > {upper:?}");
            }
        }
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }
}
