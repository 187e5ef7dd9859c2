//! A lock-free histogram for prometheus-client: `prometheus_client`'s own `Histogram` takes
//! a mutex on every observation; this one is a row of atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::BUCKETS;

const SLOTS: usize = BUCKETS.len() + 1;

/// Stripes of counters, each on its own cache lines: a thread always writes the same
/// stripe, so observations from different worker threads do not pass cache lines back and
/// forth; a scrape adds the stripes up.
const STRIPES: usize = 4;

#[derive(Debug)]
#[repr(align(64))]
struct Stripe {
    /// Per-bucket (non-cumulative) counts; the last slot is `+Inf`.
    counts: [AtomicU64; SLOTS],
    /// The sum, as `f64` bits.
    sum: AtomicU64,
}

impl Default for Stripe {
    fn default() -> Self {
        Stripe {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    stripes: [Stripe; STRIPES],
}

/// This thread's stripe.
fn stripe_index() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

/// A histogram over Istio's (Envoy's default) [`BUCKETS`], observed without locks.
///
/// # Examples
///
/// ```
/// use mesh_tower::metrics::{AtomicHistogram, BUCKETS};
///
/// let h = AtomicHistogram::default();
/// for ms in [0.25, 0.5, 7.0, 4_000_000.0] {
///     h.observe(ms);
/// }
/// let (sum, count, buckets) = h.snapshot();
/// assert_eq!(count, 4);
/// assert_eq!(sum, 4_000_007.75);
/// assert_eq!(buckets.len(), BUCKETS.len() + 1);
/// assert_eq!(buckets[0], (0.5, 2), "le semantics: 0.5 counts in the 0.5 bucket");
/// assert_eq!(buckets[2], (5.0, 0));
/// assert_eq!(buckets[3], (10.0, 1));
/// assert_eq!(buckets[19], (f64::INFINITY, 1), "above the last bound: +Inf");
/// ```
#[derive(Clone, Debug, Default)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

impl AtomicHistogram {
    /// Records one observation.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::metrics::AtomicHistogram;
    ///
    /// let h = AtomicHistogram::default();
    /// let shared = h.clone(); // a clone observes into the same histogram
    /// std::thread::scope(|s| {
    ///     s.spawn(|| shared.observe(3.0));
    /// });
    /// h.observe(7.0);
    /// let (sum, count, _) = h.snapshot();
    /// assert_eq!((sum, count), (10.0, 2));
    /// ```
    pub fn observe(&self, v: f64) {
        // First bucket whose upper bound is >= v (`le` semantics); NaN lands in +Inf.
        let idx = BUCKETS.partition_point(|b| *b < v);
        let idx = if v.is_nan() { SLOTS - 1 } else { idx };
        let stripe = &self.inner.stripes[stripe_index()];
        stripe.counts[idx].fetch_add(1, Ordering::Relaxed);
        let _ = stripe
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// (sum, count, per-bucket counts) at this moment.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::metrics::AtomicHistogram;
    ///
    /// let h = AtomicHistogram::default();
    /// for ms in [1.0, 1.0, 20.0] {
    ///     h.observe(ms);
    /// }
    /// let (sum, count, buckets) = h.snapshot();
    /// assert_eq!((sum, count), (22.0, 3));
    /// // per-bucket counts, not cumulative: 1.0 falls in `le=1`, 20.0 in `le=25`
    /// assert_eq!(buckets[1], (1.0, 2));
    /// assert_eq!(buckets[4], (25.0, 1));
    /// assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), count);
    /// ```
    pub fn snapshot(&self) -> (f64, u64, [(f64, u64); SLOTS]) {
        let mut buckets = [(0.0, 0); SLOTS];
        let mut count = 0;
        for (i, slot) in buckets.iter_mut().enumerate() {
            let n: u64 = self
                .inner
                .stripes
                .iter()
                .map(|s| s.counts[i].load(Ordering::Relaxed))
                .sum();
            count += n;
            let bound = BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            *slot = (bound, n);
        }
        let sum = self
            .inner
            .stripes
            .iter()
            .map(|s| f64::from_bits(s.sum.load(Ordering::Relaxed)))
            .sum();
        (sum, count, buckets)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_le_semantics() {
        let h = AtomicHistogram::default();
        for v in [0.1, 0.5, 0.6, 1.0, 3_600_000.0, 3_600_001.0, f64::NAN] {
            h.observe(v);
        }
        let (sum, count, b) = h.snapshot();
        assert_eq!(count, 7);
        assert!(sum.is_nan());
        assert_eq!(b[0], (0.5, 2), "0.1 and 0.5 are <= 0.5");
        assert_eq!(b[1], (1.0, 2), "0.6 and 1.0");
        assert_eq!(b[18], (3_600_000.0, 1));
        assert_eq!(b[19].1, 2, "above the last bound and NaN go to +Inf");
        assert!(b[19].0.is_infinite());
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = AtomicHistogram::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let h = h.clone();
                s.spawn(move || {
                    for i in 0..10_000 {
                        h.observe(f64::from(i % 100));
                    }
                });
            }
        });
        let (sum, count, _) = h.snapshot();
        assert_eq!(count, 40_000);
        assert_eq!(sum, 4.0 * 100.0 * 4950.0);
    }
}
