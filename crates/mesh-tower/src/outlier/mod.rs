//! Outlier detection (DestinationRule `trafficPolicy.outlierDetection`), as Envoy applies it
//! for Istio.
//!
//! Every response (or connection failure) is reported with [`OutlierDetector::record`]; the
//! per-endpoint counters are atomics on the endpoint, so reporting takes no lock. An endpoint
//! returning `consecutive5xxErrors` 5xx in a row (or `consecutiveGatewayErrors`
//! 502/503/504) is ejected at once, for `baseEjectionTime` times the number of times it has
//! been ejected in a row (capped at Envoy's `max_ejection_time`, 300 s). Every `interval`,
//! [`OutlierDetector::tick`] returns the endpoints whose time is up and lets the multiplier
//! decay for endpoints that stayed healthy.
//!
//! `maxEjectionPercent` is enforced as current Envoy does: an ejection happens only if
//! `(ejected + 1) / endpoints <= maxEjectionPercent`, so with the default 10% a destination
//! with fewer than 10 endpoints never ejects anything unless
//! [`OutlierConfig::always_eject_one_host`] is set (Istio does not set it). A test that wants
//! a dead endpoint ejected from a small set must raise `maxEjectionPercent`, as Istio's own
//! circuit-breaking task does (`maxEjectionPercent: 100`).
//!
//! `minHealthPercent` is Envoy's panic threshold: it lives in
//! [`LbConfig::panic_threshold_percent`](crate::lb::LbConfig).
//!
//! Time is always passed in (`Instant`), so tests drive the clock; [`OutlierDetector::run`]
//! is the real-time driver.
//!
//! # Examples
//!
//! `maxEjectionPercent` at its default (10%) never ejects from a small set:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
//! use mesh_tower::outlier::{Outcome, OutlierConfig, OutlierDetector};
//!
//! let endpoints = (1..=3).map(|i| Endpoint::new(format!("10.0.0.{i}:8080").parse().unwrap())).collect();
//! let lb = Arc::new(LoadBalancer::new(endpoints, LbConfig::default()));
//! let now = Instant::now();
//! let od = OutlierDetector::new(OutlierConfig::default(), lb.clone(), now);
//! for _ in 0..5 {
//!     assert_eq!(od.record(0, Outcome::Status(503), now), None);
//! }
//! assert!(!lb.endpoints()[0].is_ejected());
//!
//! // `always_eject_one_host` lets one through.
//! let config = OutlierConfig { always_eject_one_host: true, ..OutlierConfig::default() };
//! let od = OutlierDetector::new(config, lb.clone(), now);
//! for _ in 0..5 {
//!     od.record(0, Outcome::Status(503), now);
//! }
//! assert!(lb.endpoints()[0].is_ejected());
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lb::LoadBalancer;

/// Outlier detection settings, with Istio's defaults.
///
/// # Examples
///
/// The settings of Istio's circuit-breaking task:
///
/// ```yaml
/// outlierDetection:
///   consecutive5xxErrors: 1
///   interval: 1s
///   baseEjectionTime: 3m
///   maxEjectionPercent: 100
/// ```
///
/// ```
/// use std::time::Duration;
/// use mesh_tower::outlier::OutlierConfig;
///
/// let config = OutlierConfig {
///     consecutive_5xx: 1,
///     interval: Duration::from_secs(1),
///     base_ejection_time: Duration::from_secs(180),
///     max_ejection_percent: 100,
///     ..OutlierConfig::default()
/// };
/// assert_eq!(config.consecutive_gateway_errors, 0); // Istio's default: off
/// assert_eq!(config.max_ejection_time, Duration::from_secs(300));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierConfig {
    /// `consecutive5xxErrors` (default 5; 0 disables).
    pub consecutive_5xx: u32,
    /// `consecutiveGatewayErrors` (default 0: disabled).
    pub consecutive_gateway_errors: u32,
    /// `interval` between sweeps (default 10 s).
    pub interval: Duration,
    /// `baseEjectionTime` (default 30 s).
    pub base_ejection_time: Duration,
    /// Envoy's `max_ejection_time` (default 300 s; Istio does not set it).
    pub max_ejection_time: Duration,
    /// `maxEjectionPercent` (default 10).
    pub max_ejection_percent: u32,
    /// `splitExternalLocalOriginErrors` (default false).
    pub split_external_local_origin_errors: bool,
    /// `consecutiveLocalOriginFailures` (default 5; only with the split).
    pub consecutive_local_origin_failures: u32,
    /// Envoy's `always_eject_one_host` (default false; Istio leaves it unset).
    pub always_eject_one_host: bool,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            split_external_local_origin_errors: false,
            consecutive_local_origin_failures: 5,
            always_eject_one_host: false,
        }
    }
}

/// What happened to one request sent to an endpoint.
///
/// # Examples
///
/// Connection failures count as 503s (unless `splitExternalLocalOriginErrors`):
///
/// ```
/// use std::sync::Arc;
/// use std::time::Instant;
/// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
/// use mesh_tower::outlier::{EjectionReason, Outcome, OutlierConfig, OutlierDetector};
///
/// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
/// let config = OutlierConfig { consecutive_5xx: 3, max_ejection_percent: 100, ..OutlierConfig::default() };
/// let od = OutlierDetector::new(config, lb, Instant::now());
/// let now = Instant::now();
/// assert_eq!(od.record(0, Outcome::ConnectFailed, now), None);
/// assert_eq!(od.record(0, Outcome::Timeout, now), None);
/// assert_eq!(od.record(0, Outcome::Reset, now), Some(EjectionReason::Consecutive5xx));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this HTTP status.
    Status(u16),
    /// The connection could not be established (counts as 503 unless split).
    ConnectFailed,
    /// The request timed out (counts as 504 unless split).
    Timeout,
    /// The stream was reset before a response (counts as 503 unless split).
    Reset,
    /// An opaque TCP connection was established: Envoy's `LocalOriginConnectSuccessFinal`,
    /// as its TCP proxy reports it. With `splitExternalLocalOriginErrors` it resets the
    /// local-origin counter; without, it counts as a 200 (resetting the consecutive 5xx and
    /// gateway-error counts).
    ConnectSucceeded,
}

/// Why an endpoint was ejected.
///
/// # Examples
///
/// `consecutiveGatewayErrors: 2` ejects on 502/503/504 only:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Instant;
/// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
/// use mesh_tower::outlier::{EjectionReason, Outcome, OutlierConfig, OutlierDetector};
///
/// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
/// let config = OutlierConfig {
///     consecutive_gateway_errors: 2,
///     consecutive_5xx: 0,
///     max_ejection_percent: 100,
///     ..OutlierConfig::default()
/// };
/// let od = OutlierDetector::new(config, lb, Instant::now());
/// let now = Instant::now();
/// assert_eq!(od.record(0, Outcome::Status(500), now), None); // not a gateway error
/// assert_eq!(od.record(0, Outcome::Status(502), now), None);
/// assert_eq!(od.record(0, Outcome::Status(503), now), Some(EjectionReason::ConsecutiveGatewayFailure));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EjectionReason {
    /// `consecutive5xxErrors` reached.
    Consecutive5xx,
    /// `consecutiveGatewayErrors` reached.
    ConsecutiveGatewayFailure,
    /// `consecutiveLocalOriginFailures` reached (split mode).
    ConsecutiveLocalOriginFailure,
}

/// Per-endpoint outlier state (atomics, lives on the endpoint).
#[derive(Debug, Default)]
pub(crate) struct HostMonitor {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// Ejection-time multiplier (Envoy's `ejectTimeBackoff`).
    backoff: AtomicU32,
    /// Nanoseconds since the detector's epoch of the last ejection.
    ejected_at: AtomicU64,
    /// Total ejections (statistics).
    ejections: AtomicU64,
}

impl HostMonitor {
    /// A copy of the counters (for carrying state across a reload).
    pub(crate) fn snapshot(&self) -> HostMonitor {
        let copy = |a: &AtomicU32| AtomicU32::new(a.load(Ordering::Acquire));
        let copy64 = |a: &AtomicU64| AtomicU64::new(a.load(Ordering::Acquire));
        HostMonitor {
            consecutive_5xx: copy(&self.consecutive_5xx),
            consecutive_gateway: copy(&self.consecutive_gateway),
            consecutive_local: copy(&self.consecutive_local),
            backoff: copy(&self.backoff),
            ejected_at: copy64(&self.ejected_at),
            ejections: copy64(&self.ejections),
        }
    }
}

/// The outlier detector of one destination (one [`LoadBalancer`]).
///
/// # Examples
///
/// An endpoint answering 503 five times in a row is ejected for `baseEjectionTime` (30 s),
/// then returned by the interval sweep. The clock is passed in, so this runs instantly.
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, Instant};
/// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
/// use mesh_tower::outlier::{Outcome, OutlierConfig, OutlierDetector};
///
/// let lb = Arc::new(LoadBalancer::new(
///     vec![
///         Endpoint::new("10.0.0.1:9080".parse().unwrap()),
///         Endpoint::new("10.0.0.2:9080".parse().unwrap()),
///     ],
///     LbConfig::default(),
/// ));
/// // With 2 endpoints, the default maxEjectionPercent (10) would never eject anything.
/// let config = OutlierConfig { max_ejection_percent: 100, ..OutlierConfig::default() };
/// let start = Instant::now();
/// let od = OutlierDetector::new(config, lb.clone(), start);
///
/// for _ in 0..5 {
///     od.record(0, Outcome::Status(503), start);
/// }
/// assert!(lb.endpoints()[0].is_ejected());
/// assert_eq!(od.ejected_count(), 1);
/// assert_eq!(lb.pick(None).unwrap().index(), 1);
///
/// assert_eq!(od.tick(start + Duration::from_secs(10)), 0); // not yet
/// assert_eq!(od.tick(start + Duration::from_secs(30)), 1); // returned
/// assert_eq!(od.ejected_count(), 0);
/// assert_eq!(od.ejections_of(0), 1);
/// ```
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    lb: Arc<LoadBalancer>,
    epoch: Instant,
    ejected: AtomicU32,
}

impl OutlierDetector {
    /// A detector over `lb`'s endpoints; `epoch` is any instant not after the first report.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Instant;
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{OutlierConfig, OutlierDetector};
    ///
    /// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
    /// let od = OutlierDetector::new(OutlierConfig::default(), lb, Instant::now());
    /// assert_eq!(od.ejected_count(), 0);
    /// ```
    pub fn new(config: OutlierConfig, lb: Arc<LoadBalancer>, epoch: Instant) -> Self {
        OutlierDetector {
            config,
            lb,
            epoch,
            ejected: AtomicU32::new(0),
        }
    }

    /// A detector for a rebuilt balancer (see
    /// [`LoadBalancer::with_state_from`]): keeps `previous`'s clock epoch so carried-over
    /// ejection times stay valid, and counts the carried-over ejections.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Instant;
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{Outcome, OutlierConfig, OutlierDetector};
    ///
    /// let endpoints = || vec![Endpoint::new("10.0.0.1:80".parse().unwrap()), Endpoint::new("10.0.0.2:80".parse().unwrap())];
    /// let config = OutlierConfig { consecutive_5xx: 1, max_ejection_percent: 100, ..OutlierConfig::default() };
    /// let lb = Arc::new(LoadBalancer::new(endpoints(), LbConfig::default()));
    /// let od = OutlierDetector::new(config.clone(), lb.clone(), Instant::now());
    /// od.record(0, Outcome::Status(500), Instant::now());
    ///
    /// // An endpoint update rebuilds the balancer; the ejection survives it.
    /// let lb2 = Arc::new(LoadBalancer::with_state_from(endpoints(), LbConfig::default(), &lb));
    /// let od2 = OutlierDetector::with_state_from(config, lb2.clone(), &od);
    /// assert_eq!(od2.ejected_count(), 1);
    /// assert!(lb2.endpoints()[0].is_ejected());
    /// ```
    pub fn with_state_from(
        config: OutlierConfig,
        lb: Arc<LoadBalancer>,
        previous: &OutlierDetector,
    ) -> Self {
        let ejected = lb.endpoints().iter().filter(|e| e.is_ejected()).count() as u32;
        OutlierDetector {
            config,
            lb,
            epoch: previous.epoch,
            ejected: AtomicU32::new(ejected),
        }
    }

    /// The configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{OutlierConfig, OutlierDetector};
    ///
    /// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
    /// let config = OutlierConfig { interval: Duration::from_secs(1), ..OutlierConfig::default() };
    /// let od = OutlierDetector::new(config.clone(), lb, Instant::now());
    /// assert_eq!(od.config(), &config);
    /// ```
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// The balancer whose endpoints this detector ejects.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Instant;
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{OutlierConfig, OutlierDetector};
    ///
    /// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
    /// let od = OutlierDetector::new(OutlierConfig::default(), lb.clone(), Instant::now());
    /// assert!(Arc::ptr_eq(od.load_balancer(), &lb));
    /// ```
    pub fn load_balancer(&self) -> &Arc<LoadBalancer> {
        &self.lb
    }

    /// Number of endpoints currently ejected.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Instant;
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{Outcome, OutlierConfig, OutlierDetector};
    ///
    /// let endpoints = (1..=4).map(|i| Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap())).collect();
    /// let lb = Arc::new(LoadBalancer::new(endpoints, LbConfig::default()));
    /// // At most half of the endpoints may be ejected.
    /// let config = OutlierConfig { consecutive_5xx: 1, max_ejection_percent: 50, ..OutlierConfig::default() };
    /// let now = Instant::now();
    /// let od = OutlierDetector::new(config, lb, now);
    /// for i in 0..4 {
    ///     od.record(i, Outcome::Status(500), now);
    /// }
    /// assert_eq!(od.ejected_count(), 2);
    /// ```
    pub fn ejected_count(&self) -> u32 {
        self.ejected.load(Ordering::Acquire)
    }

    /// Total ejections of endpoint `index` so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{Outcome, OutlierConfig, OutlierDetector};
    ///
    /// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
    /// let config = OutlierConfig { consecutive_5xx: 1, max_ejection_percent: 100, ..OutlierConfig::default() };
    /// let t0 = Instant::now();
    /// let od = OutlierDetector::new(config, lb, t0);
    /// od.record(0, Outcome::Status(500), t0);
    /// od.tick(t0 + Duration::from_secs(30)); // returned
    /// od.record(0, Outcome::Status(500), t0 + Duration::from_secs(30));
    /// assert_eq!(od.ejections_of(0), 2);
    /// assert_eq!(od.ejections_of(7), 0); // no such endpoint
    /// ```
    pub fn ejections_of(&self, index: usize) -> u64 {
        self.lb
            .endpoints()
            .get(index)
            .map_or(0, |e| e.monitor.ejections.load(Ordering::Relaxed))
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Reports the outcome of a request to endpoint `index` (as returned by
    /// [`RequestGuard::index`](crate::lb::RequestGuard::index)). Returns the reason if this
    /// report ejected the endpoint.
    ///
    /// # Examples
    ///
    /// A success in between resets the count of consecutive errors:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Instant;
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{EjectionReason, Outcome, OutlierConfig, OutlierDetector};
    ///
    /// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
    /// let config = OutlierConfig { consecutive_5xx: 2, max_ejection_percent: 100, ..OutlierConfig::default() };
    /// let now = Instant::now();
    /// let od = OutlierDetector::new(config, lb, now);
    /// assert_eq!(od.record(0, Outcome::Status(500), now), None);
    /// assert_eq!(od.record(0, Outcome::Status(200), now), None);
    /// assert_eq!(od.record(0, Outcome::Status(500), now), None);
    /// assert_eq!(od.record(0, Outcome::Status(500), now), Some(EjectionReason::Consecutive5xx));
    /// // Reports about an ejected endpoint are ignored.
    /// assert_eq!(od.record(0, Outcome::Status(500), now), None);
    /// ```
    pub fn record(&self, index: usize, outcome: Outcome, now: Instant) -> Option<EjectionReason> {
        let ep = self.lb.endpoints().get(index)?;
        if ep.is_ejected() {
            return None;
        }
        let m = &ep.monitor;
        let cfg = &self.config;
        let code = match outcome {
            Outcome::Status(code) => {
                // an answer means the connection was made: Envoy's router reports
                // `LocalOriginConnectSuccess` on every pool-ready request, which resets the
                // local-origin counter
                if cfg.split_external_local_origin_errors {
                    m.consecutive_local.store(0, Ordering::Relaxed);
                }
                Some(code)
            }
            Outcome::ConnectSucceeded if cfg.split_external_local_origin_errors => {
                m.consecutive_local.store(0, Ordering::Relaxed);
                return None;
            }
            // Envoy's resultToHttpCode: LocalOriginConnectSuccessFinal is OK
            Outcome::ConnectSucceeded => Some(200),
            Outcome::ConnectFailed | Outcome::Reset | Outcome::Timeout
                if cfg.split_external_local_origin_errors =>
            {
                let n = m.consecutive_local.fetch_add(1, Ordering::AcqRel) + 1;
                if cfg.consecutive_local_origin_failures > 0
                    && n == cfg.consecutive_local_origin_failures
                {
                    let ejected = self.try_eject(index, now);
                    m.consecutive_local.store(0, Ordering::Relaxed);
                    return ejected.then_some(EjectionReason::ConsecutiveLocalOriginFailure);
                }
                return None;
            }
            Outcome::ConnectFailed | Outcome::Reset => Some(503),
            Outcome::Timeout => Some(504),
        };
        let code = code.unwrap_or(200);
        if code >= 500 {
            let n = m.consecutive_5xx.fetch_add(1, Ordering::AcqRel) + 1;
            let gw = if matches!(code, 502..=504) {
                m.consecutive_gateway.fetch_add(1, Ordering::AcqRel) + 1
            } else {
                m.consecutive_gateway.store(0, Ordering::Relaxed);
                0
            };
            if cfg.consecutive_gateway_errors > 0 && gw == cfg.consecutive_gateway_errors {
                let ejected = self.try_eject(index, now);
                m.consecutive_gateway.store(0, Ordering::Relaxed);
                if ejected {
                    m.consecutive_5xx.store(0, Ordering::Relaxed);
                    return Some(EjectionReason::ConsecutiveGatewayFailure);
                }
            }
            if cfg.consecutive_5xx > 0 && n == cfg.consecutive_5xx {
                let ejected = self.try_eject(index, now);
                m.consecutive_5xx.store(0, Ordering::Relaxed);
                return ejected.then_some(EjectionReason::Consecutive5xx);
            }
        } else {
            m.consecutive_5xx.store(0, Ordering::Relaxed);
            m.consecutive_gateway.store(0, Ordering::Relaxed);
        }
        None
    }

    /// Envoy's `ejectHost`: honours `maxEjectionPercent`, bumps the backoff multiplier.
    fn try_eject(&self, index: usize, now: Instant) -> bool {
        let total = self.lb.endpoints().len() as u64;
        if total == 0 {
            return false;
        }
        // Reserve an ejection slot atomically.
        let mut current = self.ejected.load(Ordering::Acquire);
        loop {
            let allowed = (u64::from(current) + 1) * 100
                <= u64::from(self.config.max_ejection_percent.min(100)) * total
                || (self.config.always_eject_one_host && current == 0);
            if !allowed {
                return false;
            }
            match self.ejected.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        if !self.lb.set_ejected(index, true) {
            // Someone else ejected it meanwhile: give the slot back.
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let m = &self.lb.endpoints()[index].monitor;
        m.ejected_at.store(self.nanos(now), Ordering::Release);
        m.ejections.fetch_add(1, Ordering::Relaxed);
        // The multiplier grows while base * multiplier stays under the cap plus one base
        // (Envoy's `ejectHost`: `backoff * base < max + base`), so past the cap one more
        // healthy interval is needed before the ejection time shrinks.
        let base = self.config.base_ejection_time.as_nanos().max(1);
        let cap = self.config.max_ejection_time.as_nanos().max(base);
        let b = m.backoff.load(Ordering::Acquire);
        if base * u128::from(b) < cap + base {
            m.backoff.store(b + 1, Ordering::Release);
        }
        tracing::debug!(endpoint = %self.lb.endpoints()[index].addr(), "outlier detection ejected endpoint");
        true
    }

    /// How long endpoint `index` stays ejected for its current multiplier.
    ///
    /// # Examples
    ///
    /// Each ejection in a row lasts one `baseEjectionTime` longer:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{Outcome, OutlierConfig, OutlierDetector};
    ///
    /// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
    /// let config = OutlierConfig { consecutive_5xx: 1, max_ejection_percent: 100, ..OutlierConfig::default() };
    /// let t0 = Instant::now();
    /// let od = OutlierDetector::new(config, lb, t0);
    ///
    /// od.record(0, Outcome::Status(500), t0);
    /// assert_eq!(od.ejection_time_of(0), Duration::from_secs(30));
    /// let t1 = t0 + Duration::from_secs(30);
    /// od.tick(t1); // returned
    /// od.record(0, Outcome::Status(500), t1); // fails again at once
    /// assert_eq!(od.ejection_time_of(0), Duration::from_secs(60));
    /// ```
    pub fn ejection_time_of(&self, index: usize) -> Duration {
        let Some(ep) = self.lb.endpoints().get(index) else {
            return Duration::ZERO;
        };
        let b = ep.monitor.backoff.load(Ordering::Acquire);
        let base = self.config.base_ejection_time;
        let cap = self.config.max_ejection_time.max(base);
        base.saturating_mul(b).min(cap)
    }

    /// The interval sweep: returns endpoints whose ejection time is over and lets the
    /// multiplier of healthy endpoints decay by one. Returns how many were returned.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{Outcome, OutlierConfig, OutlierDetector};
    ///
    /// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
    /// let config = OutlierConfig { consecutive_5xx: 1, max_ejection_percent: 100, ..OutlierConfig::default() };
    /// let t0 = Instant::now();
    /// let od = OutlierDetector::new(config, lb.clone(), t0);
    /// od.record(0, Outcome::Status(503), t0);
    /// assert_eq!(od.tick(t0 + Duration::from_secs(29)), 0);
    /// assert_eq!(od.tick(t0 + Duration::from_secs(30)), 1);
    /// assert!(lb.endpoints()[0].is_available());
    /// // Healthy since: each sweep lowers the multiplier back towards zero.
    /// od.tick(t0 + Duration::from_secs(40));
    /// assert_eq!(od.ejection_time_of(0), Duration::ZERO);
    /// ```
    pub fn tick(&self, now: Instant) -> usize {
        let now_ns = self.nanos(now);
        let mut returned = 0;
        for (i, ep) in self.lb.endpoints().iter().enumerate() {
            let m = &ep.monitor;
            if !ep.is_ejected() {
                let b = m.backoff.load(Ordering::Acquire);
                if b > 0 {
                    m.backoff.store(b - 1, Ordering::Release);
                }
                continue;
            }
            let at = m.ejected_at.load(Ordering::Acquire);
            let due = self.ejection_time_of(i).as_nanos() as u64;
            if now_ns.saturating_sub(at) >= due && self.lb.set_ejected(i, false) {
                self.ejected.fetch_sub(1, Ordering::AcqRel);
                m.consecutive_5xx.store(0, Ordering::Relaxed);
                m.consecutive_gateway.store(0, Ordering::Relaxed);
                m.consecutive_local.store(0, Ordering::Relaxed);
                returned += 1;
                tracing::debug!(endpoint = %ep.addr(), "outlier detection returned endpoint");
            }
        }
        returned
    }

    /// Runs [`OutlierDetector::tick`] every `interval` until the detector is the last
    /// reference (drop the other `Arc`s to stop it). Spawn it on a tokio runtime.
    ///
    /// # Examples
    ///
    /// With tokio's clock paused, the sweep runs as time is advanced:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use mesh_tower::lb::{Endpoint, LbConfig, LoadBalancer};
    /// use mesh_tower::outlier::{Outcome, OutlierConfig, OutlierDetector};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let lb = Arc::new(LoadBalancer::new(vec![Endpoint::new("10.0.0.1:80".parse().unwrap())], LbConfig::default()));
    /// let config = OutlierConfig { consecutive_5xx: 1, max_ejection_percent: 100, ..OutlierConfig::default() };
    /// let od = Arc::new(OutlierDetector::new(config, lb.clone(), tokio::time::Instant::now().into_std()));
    /// tokio::spawn(od.clone().run());
    ///
    /// od.record(0, Outcome::Status(503), tokio::time::Instant::now().into_std());
    /// assert!(lb.endpoints()[0].is_ejected());
    /// // baseEjectionTime (30 s), rounded up to the next interval sweep (every 10 s)
    /// tokio::time::sleep(Duration::from_secs(31)).await;
    /// assert!(!lb.endpoints()[0].is_ejected());
    /// drop(od); // the task stops at its next tick
    /// # }
    /// ```
    pub async fn run(self: Arc<Self>) {
        let period = self.config.interval.max(Duration::from_millis(1));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            if Arc::strong_count(&self) == 1 {
                return;
            }
            // tokio's clock, so paused-time tests drive it too.
            self.tick(tokio::time::Instant::now().into_std());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::{Endpoint, LbAlgorithm, LbConfig};

    fn lb(n: usize) -> Arc<LoadBalancer> {
        let eps = (0..n)
            .map(|i| Endpoint::new(format!("10.0.0.{}:80", i + 1).parse().unwrap()))
            .collect();
        Arc::new(LoadBalancer::new(
            eps,
            LbConfig::new(LbAlgorithm::RoundRobin),
        ))
    }

    fn cfg() -> OutlierConfig {
        OutlierConfig {
            max_ejection_percent: 100,
            ..Default::default()
        }
    }

    #[test]
    fn consecutive_5xx_ejects_on_the_nth_error() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(cfg(), lb(2), t0);
        for i in 0..4 {
            assert_eq!(d.record(0, Outcome::Status(500), t0), None, "error {i}");
        }
        assert_eq!(
            d.record(0, Outcome::Status(500), t0),
            Some(EjectionReason::Consecutive5xx)
        );
        assert!(d.load_balancer().endpoints()[0].is_ejected());
        assert_eq!(d.ejected_count(), 1);
    }

    #[test]
    fn success_and_4xx_reset_the_count() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(cfg(), lb(2), t0);
        let seq = [
            500, 502, 503, 504, 200, 500, 500, 500, 500, 404, 500, 500, 500, 500,
        ];
        for code in seq {
            assert_eq!(d.record(0, Outcome::Status(code), t0), None, "{code}");
        }
        assert_eq!(d.ejected_count(), 0);
    }

    #[test]
    fn local_origin_failures_count_as_5xx_unless_split() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(cfg(), lb(2), t0);
        for _ in 0..4 {
            d.record(1, Outcome::ConnectFailed, t0);
        }
        assert_eq!(
            d.record(1, Outcome::Timeout, t0),
            Some(EjectionReason::Consecutive5xx)
        );
        let split = OutlierConfig {
            split_external_local_origin_errors: true,
            consecutive_local_origin_failures: 2,
            ..cfg()
        };
        // without the split, a TCP connection made counts as a 200
        let plain = OutlierConfig {
            consecutive_5xx: 2,
            max_ejection_percent: 100,
            ..OutlierConfig::default()
        };
        let d = OutlierDetector::new(plain, lb(2), t0);
        assert_eq!(d.record(0, Outcome::ConnectFailed, t0), None);
        assert_eq!(d.record(0, Outcome::ConnectSucceeded, t0), None);
        assert_eq!(d.record(0, Outcome::ConnectFailed, t0), None);
        assert_eq!(
            d.record(0, Outcome::ConnectFailed, t0),
            Some(EjectionReason::Consecutive5xx)
        );
        let d = OutlierDetector::new(split, lb(2), t0);
        assert_eq!(d.record(0, Outcome::ConnectFailed, t0), None);
        assert_eq!(d.record(0, Outcome::ConnectSucceeded, t0), None);
        assert_eq!(d.record(0, Outcome::ConnectFailed, t0), None);
        assert_eq!(
            d.record(0, Outcome::Reset, t0),
            Some(EjectionReason::ConsecutiveLocalOriginFailure)
        );
    }

    #[test]
    fn gateway_errors_only_when_configured() {
        let t0 = Instant::now();
        let c = OutlierConfig {
            consecutive_5xx: 0,
            consecutive_gateway_errors: 3,
            ..cfg()
        };
        let d = OutlierDetector::new(c, lb(2), t0);
        // 500 is not a gateway error: it resets the gateway count.
        for code in [502, 503, 500, 502, 504] {
            assert_eq!(d.record(0, Outcome::Status(code), t0), None, "{code}");
        }
        assert_eq!(
            d.record(0, Outcome::Status(503), t0),
            Some(EjectionReason::ConsecutiveGatewayFailure)
        );
        // consecutive5xxErrors: 0 disables the 5xx detector.
        for _ in 0..20 {
            assert_eq!(d.record(1, Outcome::Status(500), t0), None);
        }
    }

    #[test]
    fn ejection_time_grows_and_endpoint_returns() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(cfg(), lb(2), t0);
        let eject = |at: Instant| {
            for _ in 0..5 {
                d.record(0, Outcome::Status(503), at);
            }
            assert!(d.load_balancer().endpoints()[0].is_ejected());
        };
        eject(t0);
        assert_eq!(d.ejection_time_of(0), Duration::from_secs(30));
        assert_eq!(d.tick(t0 + Duration::from_secs(20)), 0);
        assert!(d.load_balancer().endpoints()[0].is_ejected());
        assert_eq!(d.tick(t0 + Duration::from_secs(30)), 1);
        assert!(!d.load_balancer().endpoints()[0].is_ejected());
        assert_eq!(d.ejected_count(), 0);
        // Ejected again right away: 2 x base.
        let t1 = t0 + Duration::from_secs(31);
        eject(t1);
        assert_eq!(d.ejection_time_of(0), Duration::from_secs(60));
        assert_eq!(d.tick(t1 + Duration::from_secs(59)), 0);
        assert_eq!(d.tick(t1 + Duration::from_secs(60)), 1);
        // Healthy sweeps let the multiplier decay.
        d.tick(t1 + Duration::from_secs(70));
        assert_eq!(d.ejection_time_of(0), Duration::from_secs(30));
        assert_eq!(d.ejections_of(0), 2);
    }

    #[test]
    fn ejection_time_is_capped() {
        let t0 = Instant::now();
        let c = OutlierConfig {
            consecutive_5xx: 1,
            base_ejection_time: Duration::from_secs(100),
            ..cfg()
        };
        let d = OutlierDetector::new(c, lb(1), t0);
        let mut t = t0;
        for _ in 0..6 {
            d.record(0, Outcome::Status(500), t);
            t += Duration::from_secs(1000);
            d.tick(t);
        }
        assert_eq!(d.ejection_time_of(0), Duration::from_secs(300));
    }

    #[test]
    fn max_ejection_percent_table() {
        // (endpoints, max %, always_eject_one_host, expected ejections when all fail)
        let cases = [
            (3, 10, false, 0),
            (3, 10, true, 1),
            (10, 10, false, 1),
            (20, 10, false, 2),
            (4, 50, false, 2),
            (4, 100, false, 4),
            (1, 100, false, 1),
        ];
        for (n, pct, one, want) in cases {
            let t0 = Instant::now();
            let c = OutlierConfig {
                consecutive_5xx: 1,
                max_ejection_percent: pct,
                always_eject_one_host: one,
                ..Default::default()
            };
            let d = OutlierDetector::new(c, lb(n), t0);
            for i in 0..n {
                d.record(i, Outcome::Status(500), t0);
            }
            assert_eq!(d.ejected_count(), want, "n={n} pct={pct} one={one}");
            assert_eq!(d.load_balancer().available_count(), n - want as usize);
        }
    }

    #[test]
    fn ejected_endpoint_gets_no_traffic_until_returned() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(cfg(), lb(2), t0);
        for _ in 0..5 {
            d.record(1, Outcome::Status(500), t0);
        }
        for _ in 0..10 {
            assert_eq!(d.load_balancer().pick(None).unwrap().index(), 0);
        }
        d.tick(t0 + Duration::from_secs(30));
        let picked: std::collections::BTreeSet<_> = (0..4)
            .map(|_| d.load_balancer().pick(None).unwrap().index())
            .collect();
        assert_eq!(picked.len(), 2);
    }

    #[test]
    fn reload_keeps_ejection_state() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(cfg(), lb(3), t0);
        for _ in 0..5 {
            d.record(1, Outcome::Status(503), t0);
        }
        assert!(d.load_balancer().endpoints()[1].is_ejected());
        // Reload: endpoint 10.0.0.2 stays, 10.0.0.3 goes, 10.0.0.9 arrives.
        let eps = ["10.0.0.9:80", "10.0.0.2:80", "10.0.0.1:80"]
            .iter()
            .map(|a| Endpoint::new(a.parse().unwrap()))
            .collect();
        let new_lb = Arc::new(LoadBalancer::with_state_from(
            eps,
            LbConfig::new(LbAlgorithm::RoundRobin),
            d.load_balancer(),
        ));
        let d2 = OutlierDetector::with_state_from(cfg(), Arc::clone(&new_lb), &d);
        assert_eq!(d2.ejected_count(), 1);
        assert_eq!(new_lb.available_count(), 2);
        assert!(new_lb.endpoints()[1].is_ejected());
        for _ in 0..10 {
            assert_ne!(new_lb.pick(None).unwrap().index(), 1);
        }
        // Its ejection time still counts from the original ejection.
        assert_eq!(d2.tick(t0 + Duration::from_secs(29)), 0);
        assert_eq!(d2.tick(t0 + Duration::from_secs(30)), 1);
        assert_eq!(new_lb.available_count(), 3);
        assert_eq!(d2.ejections_of(1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn run_returns_endpoints_on_the_interval() {
        let c = OutlierConfig {
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_secs(2),
            ..cfg()
        };
        let now = || tokio::time::Instant::now().into_std();
        let d = Arc::new(OutlierDetector::new(c, lb(2), now()));
        let task = tokio::spawn(Arc::clone(&d).run());
        for _ in 0..5 {
            d.record(0, Outcome::Status(500), now());
        }
        assert_eq!(d.ejected_count(), 1);
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(d.ejected_count(), 0);
        drop(d);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(task.is_finished());
    }
}
