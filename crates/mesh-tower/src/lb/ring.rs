//! Ring hash and Maglev tables, built as Envoy builds them (xxHash64 of the host's address
//! string; weights honoured). Built once per endpoint set; lookups are a binary search (ring)
//! or an index (Maglev).

use xxhash_rust::xxh64::xxh64;

/// Envoy's `maximum_ring_size` default.
///
/// # Examples
///
/// ```
/// use mesh_tower::lb::{DEFAULT_MIN_RING_SIZE, MAX_RING_SIZE};
///
/// assert_eq!(MAX_RING_SIZE, 8_388_608);
/// assert!(DEFAULT_MIN_RING_SIZE < MAX_RING_SIZE);
/// ```
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Istio's default `minimumRingSize`.
///
/// # Examples
///
/// ```
/// use mesh_tower::lb::{Endpoint, LbAlgorithm, LbConfig, LoadBalancer, DEFAULT_MIN_RING_SIZE};
///
/// let endpoints = (1..=3).map(|i| Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap())).collect();
/// let lb = LoadBalancer::new(endpoints, LbConfig::new(LbAlgorithm::RingHash { minimum_ring_size: DEFAULT_MIN_RING_SIZE }));
/// let first = lb.pick(Some(42)).unwrap().index();
/// assert!((0..10).all(|_| lb.pick(Some(42)).unwrap().index() == first));
/// ```
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// Envoy's default Maglev table size (prime).
///
/// # Examples
///
/// ```
/// use mesh_tower::lb::{Endpoint, LbAlgorithm, LbConfig, LoadBalancer, DEFAULT_MAGLEV_TABLE_SIZE};
///
/// let endpoints = (1..=3).map(|i| Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap())).collect();
/// let lb = LoadBalancer::new(endpoints, LbConfig::new(LbAlgorithm::Maglev { table_size: DEFAULT_MAGLEV_TABLE_SIZE }));
/// let first = lb.pick(Some(7)).unwrap().index();
/// // Keys of healthy endpoints never move when another endpoint is ejected.
/// lb.set_ejected((first + 1) % 3, true);
/// assert_eq!(lb.pick(Some(7)).unwrap().index(), first);
/// ```
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;

/// A ring hash: sorted `(hash, host)` points.
#[derive(Debug)]
pub(crate) struct Ring {
    points: Box<[(u64, u32)]>,
}

impl Ring {
    /// Envoy's `RingHashLoadBalancer::Ring`: every host gets hashes in proportion to its
    /// normalized weight, scaled so the lightest host gets at least one whole hash and the
    /// ring has at least `min_ring_size` entries.
    pub(crate) fn build(hosts: &[(&str, u32)], min_ring_size: u64) -> Ring {
        let total: f64 = hosts.iter().map(|(_, w)| f64::from(*w)).sum();
        if hosts.is_empty() || total <= 0.0 {
            return Ring {
                points: Box::new([]),
            };
        }
        let min_ring = min_ring_size.clamp(1, MAX_RING_SIZE) as f64;
        let min_norm = hosts
            .iter()
            .map(|(_, w)| f64::from(*w) / total)
            .fold(f64::INFINITY, f64::min);
        let scale = ((min_norm * min_ring).ceil() / min_norm).min(MAX_RING_SIZE as f64);
        let mut points = Vec::with_capacity(scale.ceil() as usize);
        let mut current = 0.0f64;
        let mut target = 0.0f64;
        let mut key = String::with_capacity(64);
        for (idx, (addr, w)) in hosts.iter().enumerate() {
            target += scale * (f64::from(*w) / total);
            let mut i = 0u64;
            while current < target {
                key.clear();
                key.push_str(addr);
                key.push('_');
                key.push_str(&i.to_string());
                points.push((xxh64(key.as_bytes(), 0), idx as u32));
                i += 1;
                current += 1.0;
            }
        }
        points.sort_unstable_by_key(|p| p.0);
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// Number of points on the ring.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// The host owning `hash`, walking clockwise past hosts `ok` rejects. Walking past an
    /// unavailable host gives exactly the host a ring rebuilt without it would give.
    pub(crate) fn find(&self, hash: u64, ok: impl Fn(u32) -> bool) -> Option<u32> {
        let n = self.points.len();
        if n == 0 {
            return None;
        }
        let start = self.points.partition_point(|p| p.0 < hash) % n;
        (0..n)
            .map(|i| self.points[(start + i) % n].1)
            .find(|&h| ok(h))
    }

    /// How many points each host owns (tests).
    #[cfg(test)]
    pub(crate) fn counts(&self, hosts: usize) -> Vec<usize> {
        let mut c = vec![0; hosts];
        for p in self.points.iter() {
            c[p.1 as usize] += 1;
        }
        c
    }
}

/// Istio's upper bound on `maglev.tableSize` (a prime).
///
/// # Examples
///
/// ```
/// use mesh_tower::lb::{DEFAULT_MAGLEV_TABLE_SIZE, MAX_MAGLEV_TABLE_SIZE};
///
/// assert!(DEFAULT_MAGLEV_TABLE_SIZE < MAX_MAGLEV_TABLE_SIZE);
/// // A prime, as Maglev tables must be.
/// assert!((2..).take_while(|d| d * d <= MAX_MAGLEV_TABLE_SIZE).all(|d| MAX_MAGLEV_TABLE_SIZE % d != 0));
/// ```
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The smallest prime `>= n`.
pub(crate) fn next_prime(n: u64) -> u64 {
    let mut p = n.max(2);
    while !is_prime(p) {
        p += 1;
    }
    p
}

/// A Maglev lookup table.
#[derive(Debug)]
pub(crate) struct Maglev {
    table: Box<[u32]>,
}

impl Maglev {
    /// Envoy's weighted Maglev: each host's permutation from `offset = h0 % M`,
    /// `skip = h1 % (M - 1) + 1` (xxHash64 seeds 0 and 1); hosts take turns filling the table,
    /// a host of weight `w` taking a turn every `max_weight / w` rounds.
    ///
    /// The table size must be prime for every permutation to visit every slot (Istio's
    /// validation requires it); a non-prime size is raised to the next prime, and sizes are
    /// capped at Istio's limit (5000011), so building always terminates.
    pub(crate) fn build(hosts: &[(&str, u32)], table_size: u64) -> Maglev {
        let m = next_prime(table_size.clamp(2, MAX_MAGLEV_TABLE_SIZE));
        if hosts.is_empty() {
            return Maglev {
                table: Box::new([]),
            };
        }
        let max_w = hosts.iter().map(|(_, w)| f64::from(*w)).fold(0.0, f64::max);
        struct Entry {
            offset: u64,
            skip: u64,
            weight: f64,
            target: f64,
            next: u64,
        }
        let mut entries: Vec<Entry> = hosts
            .iter()
            .map(|(addr, w)| Entry {
                offset: xxh64(addr.as_bytes(), 0) % m,
                skip: xxh64(addr.as_bytes(), 1) % (m - 1) + 1,
                weight: f64::from(*w) / max_w,
                target: 0.0,
                next: 0,
            })
            .collect();
        let mut table = vec![u32::MAX; m as usize];
        let mut filled = 0u64;
        let mut iteration = 1u64;
        while filled < m {
            for (idx, e) in entries.iter_mut().enumerate() {
                if filled >= m {
                    break;
                }
                if (iteration as f64) * e.weight < e.target {
                    continue;
                }
                e.target += 1.0;
                let mut c = (e.offset + e.skip * e.next) % m;
                while table[c as usize] != u32::MAX {
                    e.next += 1;
                    c = (e.offset + e.skip * e.next) % m;
                }
                table[c as usize] = idx as u32;
                e.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
        Maglev {
            table: table.into_boxed_slice(),
        }
    }

    /// The host for `hash`, walking the table past hosts `ok` rejects (keys of available
    /// hosts never move when another host becomes unavailable).
    pub(crate) fn find(&self, hash: u64, ok: impl Fn(u32) -> bool) -> Option<u32> {
        let n = self.table.len();
        if n == 0 {
            return None;
        }
        let start = (hash % n as u64) as usize;
        (0..n).map(|i| self.table[(start + i) % n]).find(|&h| ok(h))
    }

    /// How many slots each host owns (tests).
    #[cfg(test)]
    pub(crate) fn counts(&self, hosts: usize) -> Vec<usize> {
        let mut c = vec![0; hosts];
        for &h in self.table.iter() {
            c[h as usize] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:8080", i + 1)).collect()
    }

    #[test]
    fn ring_size_and_weight_shares() {
        let names = hosts(3);
        let weighted: Vec<(&str, u32)> = names.iter().map(String::as_str).zip([1, 2, 1]).collect();
        let ring = Ring::build(&weighted, 1024);
        assert!(ring.len() >= 1024, "{}", ring.len());
        let c = ring.counts(3);
        // Host 1 has twice the weight: twice the points (exactly, by construction).
        assert_eq!(c[1], 2 * c[0]);
        assert_eq!(c[0], c[2]);
    }

    #[test]
    fn ring_walks_past_unavailable_hosts() {
        let names = hosts(4);
        let hs: Vec<(&str, u32)> = names.iter().map(|s| (s.as_str(), 1)).collect();
        let ring = Ring::build(&hs, 1024);
        let mut moved = 0;
        for key in 0..2000u64 {
            let h = xxh64(&key.to_le_bytes(), 0);
            let before = ring.find(h, |_| true).unwrap();
            let after = ring.find(h, |i| i != 2).unwrap();
            assert_ne!(after, 2);
            if before != 2 {
                assert_eq!(before, after, "a key on a healthy host moved");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 300 && moved < 700, "moved {moved}");
        assert_eq!(ring.find(1, |_| false), None);
    }

    #[test]
    fn maglev_fills_table_by_weight() {
        let names = hosts(3);
        let hs: Vec<(&str, u32)> = names.iter().map(String::as_str).zip([1, 1, 2]).collect();
        let m = Maglev::build(&hs, DEFAULT_MAGLEV_TABLE_SIZE);
        let c = m.counts(3);
        assert_eq!(c.iter().sum::<usize>(), 65537);
        let total = 65537.0;
        for (i, want) in [0.25, 0.25, 0.5].into_iter().enumerate() {
            let got = c[i] as f64 / total;
            assert!((got - want).abs() < 0.01, "host {i}: {got}");
        }
    }

    #[test]
    fn maglev_table_size_is_prime_and_build_terminates() {
        let names = hosts(7);
        let hs: Vec<(&str, u32)> = names.iter().map(|s| (s.as_str(), 1)).collect();
        for (asked, used) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (100, 101),
            (65536, 65537),
            (65537, 65537),
        ] {
            assert_eq!(next_prime(asked.max(2)), used);
            let m = Maglev::build(&hs, asked);
            assert_eq!(m.table.len() as u64, used, "{asked}");
            assert!(m.table.iter().all(|&h| (h as usize) < hs.len()));
        }
        assert!(is_prime(MAX_MAGLEV_TABLE_SIZE));
    }

    #[test]
    fn maglev_minimal_disruption_on_removal() {
        let names = hosts(5);
        let hs: Vec<(&str, u32)> = names.iter().map(|s| (s.as_str(), 1)).collect();
        let full = Maglev::build(&hs, 65537);
        let fewer = Maglev::build(&hs[..4], 65537);
        let mut moved = 0;
        let keys = 5000u64;
        for key in 0..keys {
            let h = xxh64(&key.to_le_bytes(), 0);
            let a = full.find(h, |_| true).unwrap();
            let b = fewer.find(h, |_| true).unwrap();
            if a != 4 && a != b {
                moved += 1;
            }
        }
        // Maglev moves only a few keys besides those of the removed host.
        assert!((moved as f64) < keys as f64 * 0.05, "moved {moved}");
    }
}
