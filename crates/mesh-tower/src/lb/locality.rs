//! Istio's locality load balancing: which priority level each endpoint gets (failover) and
//! which weight each locality gets (distribute).
//!
//! This mirrors istiod's `pilot/pkg/networking/core/loadbalancer` (`applyLocalityFailover`,
//! `applyPriorityFailover`, `applyLocalityWeights`) and `util.LbPriority` /
//! `util.LocalityMatch`: the results are Envoy priorities and locality weights, which
//! [`LoadBalancer`](super::LoadBalancer) then honours as Envoy does.
//!
//! # Examples
//!
//! The priority istiod gives an endpoint, from the client's locality and a `failover` rule
//! (`localityLbSetting: {failover: [{from: us-east, to: eu-west}]}`):
//!
//! ```
//! use mesh_tower::lb::locality::{failover_priority_for, lb_priority};
//! use mesh_tower::lb::{Failover, Locality};
//!
//! let client = Locality::parse("us-east/zone1");
//! assert_eq!(lb_priority(&client, &Locality::parse("us-east/zone2")), 2); // same region
//! let failover = [Failover { from: "us-east".into(), to: "eu-west".into() }];
//! let eu = failover_priority_for(&client, &Locality::parse("eu-west/zone1"), &failover);
//! let ap = failover_priority_for(&client, &Locality::parse("ap-south/zone1"), &failover);
//! assert!(eu < ap); // the failover region before any other region
//! ```

use std::collections::BTreeMap;
use std::fmt;

/// Where an endpoint (or the client) runs: `region/zone/subzone`, any part may be empty.
///
/// # Examples
///
/// ```
/// use mesh_tower::lb::Locality;
///
/// let l = Locality::parse("us-west1/us-west1-a");
/// assert_eq!(l, Locality::new("us-west1", "us-west1-a", ""));
/// assert_eq!(l.to_string(), "us-west1/us-west1-a/");
/// assert!(Locality::parse("").is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Locality {
    /// Region (`topology.kubernetes.io/region`).
    pub region: String,
    /// Zone (`topology.kubernetes.io/zone`).
    pub zone: String,
    /// Sub-zone (`topology.istio.io/subzone`).
    pub subzone: String,
}

impl Locality {
    /// A locality from its parts.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::lb::Locality;
    ///
    /// let l = Locality::new("us-west1", "us-west1-a", "rack7");
    /// assert_eq!(l.zone, "us-west1-a");
    /// assert_eq!(l.to_string(), "us-west1/us-west1-a/rack7");
    /// ```
    pub fn new(region: &str, zone: &str, subzone: &str) -> Self {
        Locality {
            region: region.to_owned(),
            zone: zone.to_owned(),
            subzone: subzone.to_owned(),
        }
    }

    /// Parses Istio's `region/zone/subzone` form (missing parts are empty).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::lb::Locality;
    ///
    /// assert_eq!(Locality::parse("us-west1"), Locality::new("us-west1", "", ""));
    /// // The sub-zone keeps anything after the second `/`.
    /// assert_eq!(Locality::parse("r/z/s/x").subzone, "s/x");
    /// ```
    pub fn parse(s: &str) -> Self {
        let (region, zone, subzone) = split_locality(s);
        Locality::new(region, zone, subzone)
    }

    /// True when every part is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::lb::Locality;
    ///
    /// assert!(Locality::default().is_empty());
    /// assert!(Locality::parse("//").is_empty());
    /// assert!(!Locality::parse("us-west1").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.subzone.is_empty()
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.subzone)
    }
}

fn split_locality(s: &str) -> (&str, &str, &str) {
    let mut parts = s.splitn(3, '/');
    let region = parts.next().unwrap_or("");
    let zone = parts.next().unwrap_or("");
    let subzone = parts.next().unwrap_or("");
    (region, zone, subzone)
}

/// Istio's `util.LocalityMatch`: does `locality` match a rule such as `us-west/*` or
/// `us-west/zone1/*`? A missing or `*` zone/subzone matches anything; the region must be
/// equal or `*`.
///
/// # Examples
///
/// ```
/// use mesh_tower::lb::{locality::locality_match, Locality};
///
/// let l = Locality::new("us-west", "zone1", "rack2");
/// assert!(locality_match(&l, "us-west/*"));
/// assert!(locality_match(&l, "us-west/zone1/*"));
/// assert!(locality_match(&l, "*"));
/// assert!(!locality_match(&l, "us-west/zone2/*"));
/// assert!(!locality_match(&l, "us-east"));
/// ```
pub fn locality_match(locality: &Locality, rule: &str) -> bool {
    let (region, zone, subzone) = split_locality(rule);
    let region_ok = region == "*" || locality.region == region;
    let zone_ok = zone == "*" || zone.is_empty() || locality.zone == zone;
    let subzone_ok = subzone == "*" || subzone.is_empty() || locality.subzone == subzone;
    region_ok && zone_ok && subzone_ok
}

/// One `failover` entry of `localityLbSetting`: traffic from region `from` fails over to
/// region `to` before any other region.
///
/// # Examples
///
/// ```yaml
/// localityLbSetting:
///   failover:
///   - from: us-west
///     to: us-east
/// ```
///
/// ```
/// use mesh_tower::lb::locality::failover_priority_for;
/// use mesh_tower::lb::{Failover, Locality};
///
/// let failover = [Failover { from: "us-west".into(), to: "us-east".into() }];
/// let client = Locality::parse("us-west/zone1");
/// assert_eq!(failover_priority_for(&client, &Locality::parse("us-east/zone1"), &failover), 3);
/// assert_eq!(failover_priority_for(&client, &Locality::parse("eu-west/zone1"), &failover), 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    /// Originating region.
    pub from: String,
    /// Destination region for failover.
    pub to: String,
}

/// One `distribute` entry of `localityLbSetting`: for clients matching `from`, the share of
/// traffic each destination locality pattern gets (weights total 100).
///
/// # Examples
///
/// ```yaml
/// localityLbSetting:
///   distribute:
///   - from: us-west/zone1/*
///     to:
///       "us-west/zone1/*": 80
///       "us-west/zone2/*": 20
/// ```
///
/// Endpoints in localities no `to` pattern names get no traffic:
///
/// ```
/// use mesh_tower::lb::*;
///
/// let setting = LocalityLbSetting {
///     distribute: vec![Distribute {
///         from: "us-west/zone1/*".into(),
///         to: vec![("us-west/zone1/*".into(), 80), ("us-west/zone2/*".into(), 20)],
///     }],
///     ..Default::default()
/// };
/// let config = LbConfig {
///     locality: LocalityContext {
///         client: Locality::parse("us-west/zone1"),
///         setting: Some(setting),
///         ..Default::default()
///     },
///     ..LbConfig::new(LbAlgorithm::RoundRobin)
/// };
/// let at = |addr: &str, locality: &str| Endpoint::new(addr.parse().unwrap()).with_locality(Locality::parse(locality));
/// let lb = LoadBalancer::new(
///     vec![at("10.0.0.1:80", "us-west/zone1"), at("10.0.0.2:80", "us-west/zone2"), at("10.0.0.3:80", "us-east/zone1")],
///     config,
/// );
/// assert_eq!(lb.priority_of(0), Some(0));
/// assert_eq!(lb.priority_of(1), Some(0));
/// assert_eq!(lb.priority_of(2), None); // dropped
/// for _ in 0..20 {
///     assert_ne!(lb.pick(None).unwrap().index(), 2);
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distribute {
    /// Client locality pattern (`region/zone/*`).
    pub from: String,
    /// Destination locality pattern and its weight, in configuration order.
    pub to: Vec<(String, u32)>,
}

/// Istio's `localityLbSetting` (the parts that shape load balancing).
///
/// # Examples
///
/// `localityLbSetting: {enabled: false}` puts every endpoint in one priority, even with
/// outlier detection:
///
/// ```
/// use mesh_tower::lb::*;
///
/// let at = |addr: &str, locality: &str| Endpoint::new(addr.parse().unwrap()).with_locality(Locality::parse(locality));
/// let endpoints = || vec![at("10.0.0.1:80", "us-west/zone1"), at("10.0.0.2:80", "us-east/zone1")];
/// let config = |setting| LbConfig {
///     locality: LocalityContext {
///         client: Locality::parse("us-west/zone1"),
///         setting,
///         outlier_detection: true,
///         ..Default::default()
///     },
///     ..LbConfig::default()
/// };
/// assert_eq!(LoadBalancer::new(endpoints(), config(None)).priority_count(), 2);
/// let off = LocalityLbSetting { enabled: Some(false), ..Default::default() };
/// assert_eq!(LoadBalancer::new(endpoints(), config(Some(off))).priority_count(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalityLbSetting {
    /// `enabled`: `None` means the mesh default (enabled).
    pub enabled: Option<bool>,
    /// `distribute` rules (exclusive with `failover`).
    pub distribute: Vec<Distribute>,
    /// `failover` rules.
    pub failover: Vec<Failover>,
    /// `failoverPriority`: ordered label keys (optionally `key=value`).
    pub failover_priority: Vec<String>,
}

/// The inputs istiod uses to place endpoints into priorities and localities.
///
/// # Examples
///
/// Locality failover (on by default, but only with `outlierDetection`): same zone first,
/// then same region, then elsewhere.
///
/// ```
/// use mesh_tower::lb::*;
///
/// let at = |addr: &str, locality: &str| Endpoint::new(addr.parse().unwrap()).with_locality(Locality::parse(locality));
/// let config = LbConfig {
///     locality: LocalityContext {
///         client: Locality::parse("us-west/zone1"),
///         outlier_detection: true,
///         ..Default::default()
///     },
///     ..LbConfig::default()
/// };
/// let lb = LoadBalancer::new(
///     vec![at("10.0.0.1:80", "us-east/zone1"), at("10.0.0.2:80", "us-west/zone2"), at("10.0.0.3:80", "us-west/zone1")],
///     config,
/// );
/// assert_eq!(lb.priority_count(), 3);
/// assert_eq!((lb.priority_of(0), lb.priority_of(1), lb.priority_of(2)), (Some(2), Some(1), Some(0)));
/// // All healthy: everything goes to the client's own zone.
/// for _ in 0..20 {
///     assert_eq!(lb.pick(None).unwrap().index(), 2);
/// }
/// // It fails: traffic moves to the same region.
/// lb.set_ejected(2, true);
/// assert_eq!(lb.pick(None).unwrap().index(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct LocalityContext {
    /// The client's own locality.
    pub client: Locality,
    /// The client's labels (for `failoverPriority`).
    pub client_labels: BTreeMap<String, String>,
    /// The setting in force (`None`: mesh default, locality LB enabled, no rules).
    pub setting: Option<LocalityLbSetting>,
    /// Whether the destination has `outlierDetection`: Istio applies locality failover
    /// only then ("failover needs outlier detection").
    pub outlier_detection: bool,
}

/// Placement of one endpoint: its (uncompacted) priority and its locality weight factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) priority: u32,
    /// `None`: no locality weighting; `Some(0)`: endpoint dropped (distribute mismatch).
    pub(crate) locality_weight: Option<u32>,
}

/// Istio's `util.LbPriority`: 0 same region/zone/subzone, 1 same region/zone, 2 same region,
/// 3 elsewhere.
///
/// # Examples
///
/// ```
/// use mesh_tower::lb::locality::lb_priority;
/// use mesh_tower::lb::Locality;
///
/// let client = Locality::new("us-west", "zone1", "rack1");
/// assert_eq!(lb_priority(&client, &Locality::new("us-west", "zone1", "rack1")), 0);
/// assert_eq!(lb_priority(&client, &Locality::new("us-west", "zone1", "rack2")), 1);
/// assert_eq!(lb_priority(&client, &Locality::new("us-west", "zone2", "rack1")), 2);
/// assert_eq!(lb_priority(&client, &Locality::new("us-east", "zone1", "rack1")), 3);
/// ```
pub fn lb_priority(client: &Locality, endpoint: &Locality) -> u32 {
    if client.region == endpoint.region {
        if client.zone == endpoint.zone {
            if client.subzone == endpoint.subzone {
                return 0;
            }
            return 1;
        }
        return 2;
    }
    3
}

/// Istio's `applyLocalityFailover` priority for one endpoint: [`lb_priority`], with
/// cross-region endpoints pushed to 4 unless they are in the configured failover region.
///
/// # Examples
///
/// ```
/// use mesh_tower::lb::locality::failover_priority_for;
/// use mesh_tower::lb::{Failover, Locality};
///
/// let client = Locality::parse("us-west/zone1");
/// let eu = Locality::parse("eu-west/zone1");
/// // Without a failover rule every other region is priority 3...
/// assert_eq!(failover_priority_for(&client, &eu, &[]), 3);
/// // ...with `failover: [{from: us-west, to: us-east}]`, regions other than us-east are 4.
/// let rules = [Failover { from: "us-west".into(), to: "us-east".into() }];
/// assert_eq!(failover_priority_for(&client, &eu, &rules), 4);
/// assert_eq!(failover_priority_for(&client, &Locality::parse("us-west/zone2"), &rules), 2);
/// ```
pub fn failover_priority_for(client: &Locality, endpoint: &Locality, failover: &[Failover]) -> u32 {
    let mut priority = lb_priority(client, endpoint);
    if priority == 3
        && let Some(rule) = failover.iter().find(|f| f.from == client.region)
        && endpoint.region != rule.to
    {
        priority = 4;
    }
    priority
}

/// A label used by `failoverPriority`: the topology keys come from the locality.
fn label_value<'a>(
    key: &str,
    locality: &'a Locality,
    labels: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    match key {
        "topology.kubernetes.io/region" | "failure-domain.beta.kubernetes.io/region" => {
            Some(locality.region.as_str())
        }
        "topology.kubernetes.io/zone" | "failure-domain.beta.kubernetes.io/zone" => {
            Some(locality.zone.as_str())
        }
        "topology.istio.io/subzone" => Some(locality.subzone.as_str()),
        _ => labels.get(key).map(String::as_str),
    }
}

/// Istio's `applyPriorityFailover`: an endpoint matching the client on the first `n` keys of
/// `failoverPriority` (in order, stopping at the first mismatch) gets priority `len - n`.
/// A key written `key=value` compares the endpoint with `value` instead of the client.
///
/// # Examples
///
/// `failoverPriority: [topology.kubernetes.io/region, version=v1]`:
///
/// ```
/// use std::collections::BTreeMap;
/// use mesh_tower::lb::locality::label_failover_priority;
/// use mesh_tower::lb::Locality;
///
/// let keys = ["topology.kubernetes.io/region".to_string(), "version=v1".to_string()];
/// let client = Locality::parse("us-west/zone1");
/// let none = BTreeMap::new();
/// let v1 = BTreeMap::from([("version".to_string(), "v1".to_string())]);
/// let v2 = BTreeMap::from([("version".to_string(), "v2".to_string())]);
///
/// let priority = |endpoint: &str, labels| label_failover_priority(&keys, &client, &none, &Locality::parse(endpoint), labels);
/// assert_eq!(priority("us-west/zone2", &v1), 0); // both keys match
/// assert_eq!(priority("us-west/zone2", &v2), 1); // region only
/// assert_eq!(priority("us-east/zone1", &v1), 2); // stops at the first mismatch
/// ```
pub fn label_failover_priority(
    keys: &[String],
    client: &Locality,
    client_labels: &BTreeMap<String, String>,
    endpoint: &Locality,
    endpoint_labels: &BTreeMap<String, String>,
) -> u32 {
    let mut matched = 0u32;
    for key in keys {
        let (key, wanted) = match key.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (key.as_str(), None),
        };
        let want = match wanted {
            Some(v) => Some(v),
            None => label_value(key, client, client_labels),
        };
        let have = label_value(key, endpoint, endpoint_labels);
        // istiod `applyFailoverPriorityPerLocality` compares the label values as strings:
        // a label neither side has ("" == "") matches
        if want.unwrap_or("") == have.unwrap_or("") {
            matched += 1;
        } else {
            break;
        }
    }
    keys.len() as u32 - matched
}

/// Places every endpoint (given as `(locality, labels, weight)`) as istiod would.
pub(crate) fn place(
    ctx: &LocalityContext,
    endpoints: &[(&Locality, &BTreeMap<String, String>, u32)],
) -> Vec<Placement> {
    let flat = Placement {
        priority: 0,
        locality_weight: None,
    };
    let setting = match &ctx.setting {
        Some(s) => s.clone(),
        None => LocalityLbSetting::default(),
    };
    if setting.enabled == Some(false) {
        return vec![flat; endpoints.len()];
    }
    if !setting.distribute.is_empty() {
        return distribute(&ctx.client, &setting.distribute, endpoints);
    }
    if !ctx.outlier_detection {
        return vec![flat; endpoints.len()];
    }
    endpoints
        .iter()
        .map(|(loc, labels, _)| {
            // Istio's `ApplyLocalityLoadBalancer`: `failoverPriority` first; with it, an
            // explicit `failover` is applied too, within each of its priorities
            // (`applyLocalityFailover`: `priority*5 + locality priority (0-4)`, compacted)
            let priority = if setting.failover_priority.is_empty() {
                failover_priority_for(&ctx.client, loc, &setting.failover)
            } else {
                let by_labels = label_failover_priority(
                    &setting.failover_priority,
                    &ctx.client,
                    &ctx.client_labels,
                    loc,
                    labels,
                );
                if setting.failover.is_empty() {
                    by_labels
                } else {
                    by_labels * 5 + failover_priority_for(&ctx.client, loc, &setting.failover)
                }
            };
            Placement {
                priority,
                locality_weight: None,
            }
        })
        .collect()
}

/// Istio's `applyLocalityWeights`: the first rule whose `from` matches the client assigns
/// each destination locality `ceil(locality_weight * rule_weight / total_of_matching)`; the
/// localities no `to` pattern matches are dropped.
fn distribute(
    client: &Locality,
    rules: &[Distribute],
    endpoints: &[(&Locality, &BTreeMap<String, String>, u32)],
) -> Vec<Placement> {
    let Some(rule) = rules.iter().find(|r| locality_match(client, &r.from)) else {
        return vec![
            Placement {
                priority: 0,
                locality_weight: None,
            };
            endpoints.len()
        ];
    };
    // Localities present, with their total endpoint weight (Istio's locality weight).
    let mut localities: Vec<(&Locality, u64)> = Vec::new();
    for (loc, _, w) in endpoints {
        match localities.iter_mut().find(|(l, _)| l == loc) {
            Some((_, total)) => *total += u64::from(*w),
            None => localities.push((loc, u64::from(*w))),
        }
    }
    let mut assigned: Vec<Option<u32>> = vec![None; localities.len()];
    for (pattern, weight) in &rule.to {
        let matching: Vec<usize> = (0..localities.len())
            .filter(|&i| assigned[i].is_none() && locality_match(localities[i].0, pattern))
            .collect();
        let total: u64 = matching.iter().map(|&i| localities[i].1).sum();
        if total == 0 {
            continue;
        }
        for i in matching {
            let w = (localities[i].1 * u64::from(*weight)).div_ceil(total);
            assigned[i] = Some(w.min(u64::from(u32::MAX)) as u32);
        }
    }
    endpoints
        .iter()
        .map(|(loc, _, _)| {
            let idx = localities.iter().position(|(l, _)| l == loc).unwrap_or(0);
            Placement {
                priority: 0,
                locality_weight: Some(assigned[idx].unwrap_or(0)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> Locality {
        Locality::parse(s)
    }

    #[test]
    fn lb_priority_table() {
        let client = loc("us-west/zone1/sub1");
        let cases = [
            ("us-west/zone1/sub1", 0),
            ("us-west/zone1/sub2", 1),
            ("us-west/zone2/sub1", 2),
            ("us-east/zone1/sub1", 3),
        ];
        for (ep, want) in cases {
            assert_eq!(lb_priority(&client, &loc(ep)), want, "{ep}");
        }
    }

    #[test]
    fn failover_region_table() {
        let client = loc("us-east/zone1/");
        let failover = [Failover {
            from: "us-east".into(),
            to: "eu-west".into(),
        }];
        let cases = [
            ("us-east/zone1/", 0),
            ("us-east/zone2/", 2),
            ("eu-west/zone1/", 3),
            ("ap-south/zone1/", 4),
        ];
        for (ep, want) in cases {
            assert_eq!(
                failover_priority_for(&client, &loc(ep), &failover),
                want,
                "{ep}"
            );
        }
        // Without a rule for the client's region every other region is priority 3.
        assert_eq!(failover_priority_for(&client, &loc("ap-south/z/"), &[]), 3);
    }

    #[test]
    fn locality_match_table() {
        let l = loc("us-west/zone1/sub1");
        let cases = [
            ("us-west", true),
            ("us-west/*", true),
            ("us-west/zone1/*", true),
            ("us-west/zone1/sub1", true),
            ("us-west/zone2/*", false),
            ("*", true),
            ("us-east/*", false),
            ("us-west/zone1/sub2", false),
        ];
        for (rule, want) in cases {
            assert_eq!(locality_match(&l, rule), want, "{rule}");
        }
    }

    #[test]
    fn label_failover_priority_table() {
        let mut client_labels = BTreeMap::new();
        client_labels.insert("topology.istio.io/network".to_string(), "n1".to_string());
        let client = loc("r1/z1/s1");
        let keys = vec![
            "topology.istio.io/network".to_string(),
            "topology.kubernetes.io/region".to_string(),
            "topology.kubernetes.io/zone".to_string(),
        ];
        let net = |n: &str| {
            let mut m = BTreeMap::new();
            m.insert("topology.istio.io/network".to_string(), n.to_string());
            m
        };
        let cases = [
            ("r1/z1/s1", net("n1"), 0),
            ("r1/z2/s1", net("n1"), 1),
            ("r2/z1/s1", net("n1"), 2),
            ("r1/z1/s1", net("n2"), 3),
            ("r1/z1/s1", BTreeMap::new(), 3),
        ];
        for (l, labels, want) in cases {
            let got = label_failover_priority(&keys, &client, &client_labels, &loc(l), &labels);
            assert_eq!(got, want, "{l} {labels:?}");
        }
        // `key=value` compares against the given value.
        let keys = vec!["topology.istio.io/network=n2".to_string()];
        assert_eq!(
            label_failover_priority(&keys, &client, &client_labels, &loc("r1"), &net("n2")),
            0
        );
        assert_eq!(
            label_failover_priority(&keys, &client, &client_labels, &loc("r1"), &net("n1")),
            1
        );
        // a label neither side has matches ("" == "", as istiod compares): on one network
        // without network labels, failover goes by region and zone
        let keys = vec![
            "topology.istio.io/network".to_string(),
            "topology.kubernetes.io/region".to_string(),
        ];
        let none = BTreeMap::new();
        assert_eq!(
            label_failover_priority(&keys, &client, &none, &loc("r1/z2"), &none),
            0
        );
        assert_eq!(
            label_failover_priority(&keys, &client, &none, &loc("r2/z1"), &none),
            1
        );
    }

    // Istio's ApplyLocalityLoadBalancer applies an explicit `failover` after
    // `failoverPriority`: the label priority first, the locality failover within it.
    #[test]
    fn failover_priority_with_failover_applies_both() {
        let v1 = BTreeMap::from([("version".to_owned(), "v1".to_owned())]);
        let v2 = BTreeMap::from([("version".to_owned(), "v2".to_owned())]);
        let (same, east, eu) = (loc("us-west/z1/"), loc("us-east/z1/"), loc("eu-west/z1/"));
        let eps = [
            (&same, &v1, 1),
            (&east, &v1, 1),
            (&eu, &v1, 1),
            (&same, &v2, 1),
            (&eu, &v2, 1),
        ];
        let ctx = LocalityContext {
            client: loc("us-west/z1/"),
            client_labels: v1.clone(),
            outlier_detection: true,
            setting: Some(LocalityLbSetting {
                failover_priority: vec!["version".into()],
                failover: vec![Failover {
                    from: "us-west".into(),
                    to: "eu-west".into(),
                }],
                ..Default::default()
            }),
        };
        let p: Vec<u32> = place(&ctx, &eps).iter().map(|p| p.priority).collect();
        // v1 before v2; within each: own zone, the failover region, other regions
        assert_eq!(p, vec![0, 4, 3, 5, 8]);
        // without `failover`, only the labels count
        let mut only = ctx.clone();
        only.setting.as_mut().unwrap().failover.clear();
        let p: Vec<u32> = place(&only, &eps).iter().map(|p| p.priority).collect();
        assert_eq!(p, vec![0, 0, 0, 1, 1]);
    }

    #[test]
    fn placement_needs_outlier_detection_for_failover() {
        let a = loc("r1/z1/");
        let b = loc("r2/z1/");
        let empty = BTreeMap::new();
        let eps = [(&a, &empty, 1), (&b, &empty, 1)];
        let mut ctx = LocalityContext {
            client: loc("r1/z1/"),
            ..Default::default()
        };
        let p = place(&ctx, &eps);
        assert!(p.iter().all(|p| p.priority == 0));
        ctx.outlier_detection = true;
        let p = place(&ctx, &eps);
        assert_eq!((p[0].priority, p[1].priority), (0, 3));
        ctx.setting = Some(LocalityLbSetting {
            enabled: Some(false),
            ..Default::default()
        });
        let p = place(&ctx, &eps);
        assert!(p.iter().all(|p| p.priority == 0));
    }

    #[test]
    fn distribute_weights_and_drops() {
        let a = loc("r1/z1/s1");
        let b = loc("r1/z2/s1");
        let c = loc("r1/z2/s2");
        let d = loc("r9/z1/s1");
        let empty = BTreeMap::new();
        let eps = [
            (&a, &empty, 1),
            (&b, &empty, 1),
            (&c, &empty, 3),
            (&d, &empty, 1),
        ];
        let ctx = LocalityContext {
            client: loc("r1/z1/s1"),
            setting: Some(LocalityLbSetting {
                distribute: vec![Distribute {
                    from: "r1/z1/*".into(),
                    to: vec![("r1/z1/*".into(), 80), ("r1/z2/*".into(), 20)],
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = place(&ctx, &eps);
        let w: Vec<_> = p.iter().map(|p| p.locality_weight).collect();
        // z2 has two localities of weight 1 and 3: 20 split as ceil(5) and ceil(15).
        assert_eq!(w, vec![Some(80), Some(5), Some(15), Some(0)]);
        // A client matching no `from` gets no locality weighting.
        let ctx2 = LocalityContext {
            client: loc("r5/z1/s1"),
            ..ctx
        };
        assert!(place(&ctx2, &eps)
            .iter()
            .all(|p| p.locality_weight.is_none()));
    }
}
