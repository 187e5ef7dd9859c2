//! Types shared by several kinds: durations, percentages, string matches, ports, selectors.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A label map (`labels`, `matchLabels`, `sourceLabels`, Gateway `selector`).
///
/// # Examples
///
/// ```
/// use mesh_core::model::Labels;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   subsets:
///   - name: v1
///     labels: {version: v1}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let labels: &Labels = &dr.subsets[0].labels;
/// assert_eq!(labels.get("version").map(String::as_str), Some("v1"));
/// ```
pub type Labels = BTreeMap<String, String>;

/// A protobuf `Duration` as Istio's CRDs accept it in YAML: a Go duration string such as
/// `5s`, `250ms`, `1m30s`, `1.5h`, `0.5s` (units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; a bare
/// `0` is allowed). Kept with nanosecond precision so that validation can reject sub-millisecond
/// values the way istiod does; use [`Duration::as_std`] on the request path.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mesh_core::model::Duration;
///
/// let d = Duration::parse("1m30s")?;
/// assert_eq!(d, Duration::from_secs(90));
/// assert_eq!(d.as_std(), std::time::Duration::from_secs(90));
/// assert_eq!(d.to_string(), "90s");
/// assert_eq!("250ms".parse::<Duration>()?, Duration::from_millis(250));
///
/// // Duration fields such as a route's `timeout` are written the same way in YAML.
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - timeout: 1.5s
///     route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// assert_eq!(vs.http[0].timeout, Some(Duration::from_millis(1500)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    nanos: i64,
}

/// Why a duration string was rejected.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let err = Duration::parse("5").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid duration \"5\": missing unit (expected a value like `5s`, `250ms`, `1m30s`)"
/// );
/// assert!(Duration::parse("1d").is_err()); // no `d` unit in Go durations
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected a value like `5s`, `250ms`, `1m30s`)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl Duration {
    /// The zero duration.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// assert_eq!(Duration::ZERO.as_nanos(), 0);
    /// assert_eq!(Duration::parse("0"), Ok(Duration::ZERO));
    /// assert_eq!(Duration::default(), Duration::ZERO);
    /// ```
    pub const ZERO: Duration = Duration { nanos: 0 };

    /// A duration of `nanos` nanoseconds (may be negative, as in Go).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// assert_eq!(Duration::from_nanos(1_500_000), Duration::parse("1.5ms")?);
    /// assert_eq!(Duration::from_nanos(-1).as_nanos(), -1);
    /// # Ok::<(), mesh_core::model::DurationError>(())
    /// ```
    pub const fn from_nanos(nanos: i64) -> Self {
        Duration { nanos }
    }

    /// A duration of `millis` milliseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// assert_eq!(Duration::from_millis(1500), Duration::parse("1.5s")?);
    /// assert_eq!(Duration::from_millis(250).as_nanos(), 250_000_000);
    /// # Ok::<(), mesh_core::model::DurationError>(())
    /// ```
    pub const fn from_millis(millis: i64) -> Self {
        Duration {
            nanos: millis.saturating_mul(1_000_000),
        }
    }

    /// A duration of `secs` seconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// assert_eq!(Duration::from_secs(90), Duration::parse("1m30s")?);
    /// assert_eq!(Duration::from_secs(2), Duration::from_millis(2000));
    /// # Ok::<(), mesh_core::model::DurationError>(())
    /// ```
    pub const fn from_secs(secs: i64) -> Self {
        Duration {
            nanos: secs.saturating_mul(1_000_000_000),
        }
    }

    /// Signed nanoseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// assert_eq!(Duration::parse("1us")?.as_nanos(), 1_000);
    /// assert_eq!(Duration::parse("-2ms")?.as_nanos(), -2_000_000);
    /// # Ok::<(), mesh_core::model::DurationError>(())
    /// ```
    pub const fn as_nanos(self) -> i64 {
        self.nanos
    }

    /// The duration as a `std::time::Duration`; negative values become zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// assert_eq!(Duration::parse("1.5s")?.as_std(), std::time::Duration::from_millis(1500));
    /// assert_eq!(Duration::parse("-5s")?.as_std(), std::time::Duration::ZERO);
    /// # Ok::<(), mesh_core::model::DurationError>(())
    /// ```
    pub const fn as_std(self) -> std::time::Duration {
        if self.nanos <= 0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_nanos(self.nanos as u64)
        }
    }

    /// True when the value is a whole number of milliseconds (istiod rejects finer values).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// assert!(Duration::parse("1.5s")?.is_ms_precision());
    /// assert!(!Duration::parse("500us")?.is_ms_precision());
    /// # Ok::<(), mesh_core::model::DurationError>(())
    /// ```
    pub const fn is_ms_precision(self) -> bool {
        self.nanos % 1_000_000 == 0
    }

    /// True when the value is a whole number of seconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// assert!(Duration::parse("2m")?.is_sec_precision());
    /// assert!(!Duration::parse("1.5s")?.is_sec_precision());
    /// # Ok::<(), mesh_core::model::DurationError>(())
    /// ```
    pub const fn is_sec_precision(self) -> bool {
        self.nanos % 1_000_000_000 == 0
    }

    /// Parses a Go duration string (`time.ParseDuration` grammar), which is what Istio's
    /// CRDs accept: `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+` or `0`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Duration;
    ///
    /// assert_eq!(Duration::parse("1h2m3.5s")?, Duration::from_millis(3_723_500));
    /// assert_eq!(Duration::parse("250µs")?, Duration::from_nanos(250_000));
    /// assert_eq!(Duration::parse("-1.5m")?, Duration::from_secs(-90));
    /// assert!(Duration::parse("10").is_err()); // only `0` may omit the unit
    /// assert!(Duration::parse("").is_err());
    /// # Ok::<(), mesh_core::model::DurationError>(())
    /// ```
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let err = |reason| DurationError {
            input: input.to_owned(),
            reason,
        };
        let mut s = input.as_bytes();
        let mut neg = false;
        if let Some((&c, rest)) = s.split_first()
            && (c == b'-' || c == b'+')
        {
            neg = c == b'-';
            s = rest;
        }
        if s == b"0" {
            return Ok(Duration::ZERO);
        }
        if s.is_empty() {
            return Err(err("empty"));
        }
        let mut total: i128 = 0;
        while !s.is_empty() {
            // integer part
            let int_len = s.iter().take_while(|c| c.is_ascii_digit()).count();
            let (int_part, rest) = s.split_at(int_len);
            s = rest;
            let mut frac_part: &[u8] = &[];
            let mut had_dot = false;
            if let Some((&b'.', rest)) = s.split_first() {
                had_dot = true;
                let frac_len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                let (f, rest) = rest.split_at(frac_len);
                frac_part = f;
                s = rest;
            }
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err(if had_dot {
                    "a number needs digits"
                } else {
                    "expected a number"
                }));
            }
            let unit_len = s
                .iter()
                .take_while(|c| !(c.is_ascii_digit() || **c == b'.'))
                .count();
            let (unit, rest) = s.split_at(unit_len);
            s = rest;
            let scale: i128 = match unit {
                b"ns" => 1,
                b"us" | [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1_000, // us, µs, μs
                b"ms" => 1_000_000,
                b"s" => 1_000_000_000,
                b"m" => 60_000_000_000,
                b"h" => 3_600_000_000_000,
                b"" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit")),
            };
            let mut int_val: i128 = 0;
            for &d in int_part {
                int_val = int_val * 10 + i128::from(d - b'0');
                if int_val > i128::from(i64::MAX) {
                    return Err(err("overflow"));
                }
            }
            let mut value = int_val * scale;
            // fractional part, with the same truncation Go applies
            let mut frac_scale = scale;
            for &d in frac_part {
                frac_scale /= 10;
                if frac_scale == 0 {
                    break;
                }
                value += i128::from(d - b'0') * frac_scale;
            }
            total += value;
            if total > i128::from(i64::MAX) {
                return Err(err("overflow"));
            }
        }
        let nanos = total as i64;
        Ok(Duration {
            nanos: if neg { -nanos } else { nanos },
        })
    }
}

impl fmt::Display for Duration {
    /// Formats like protobuf JSON: seconds with up to nine fractional digits (`1.5s`, `0.250s`
    /// is printed `0.25s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        let sign = if n < 0 { "-" } else { "" };
        let abs = n.unsigned_abs();
        let secs = abs / 1_000_000_000;
        let frac = abs % 1_000_000_000;
        if frac == 0 {
            write!(f, "{sign}{secs}s")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{sign}{secs}.{}s", digits.trim_end_matches('0'))
        }
    }
}

impl std::str::FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as `5s` or `250ms`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// Istio's `Percent` message: `{value: <double>}`, a percentage in `[0, 100]`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Percent;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews}
///     mirror: {host: reviews-shadow}
///     mirrorPercentage: {value: 10.0}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// assert_eq!(vs.http[0].mirror_percentage, Some(Percent { value: 10.0 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    /// The percentage, 0.0 to 100.0.
    #[serde(default)]
    pub value: f64,
}

/// A string matcher: exactly one of `exact`, `prefix`, `regex` (RE2, full match) should be set.
/// An empty matcher (`{}`) is a presence check where Istio allows it (header and query
/// matches). Validation reports more than one set.
///
/// # Examples
///
/// ```
/// use mesh_core::model::StringMatchKind;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - match:
///     - uri: {prefix: /api}
///     route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let uri = vs.http[0].matches[0].uri.as_ref().unwrap();
/// assert_eq!(uri.prefix.as_deref(), Some("/api"));
/// assert_eq!(uri.kind(), Some(StringMatchKind::Prefix("/api")));
/// assert_eq!(uri.arms_set(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    /// Exact string match.
    pub exact: Option<String>,
    /// Prefix match.
    pub prefix: Option<String>,
    /// RE2 regular expression, matched against the whole string.
    pub regex: Option<String>,
}

/// The single active arm of a [`StringMatch`].
///
/// # Examples
///
/// ```
/// use mesh_core::model::StringMatchKind;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - match:
///     - headers:
///         end-user: {exact: jason}
///         x-debug: {}
///     route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let headers = &loaded.objects[0].spec.as_virtual_service().unwrap().http[0].matches[0].headers;
/// assert_eq!(headers["end-user"].kind(), Some(StringMatchKind::Exact("jason")));
/// // An empty matcher has no arm: it only checks that the header is present.
/// assert_eq!(headers["x-debug"].kind(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMatchKind<'a> {
    /// `exact`.
    Exact(&'a str),
    /// `prefix`.
    Prefix(&'a str),
    /// `regex`.
    Regex(&'a str),
}

impl StringMatch {
    /// The matcher's arm: `exact` wins over `prefix` over `regex` if (invalidly) several are
    /// set; `None` for an empty matcher.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{StringMatch, StringMatchKind};
    ///
    /// let m: StringMatch = serde_json::from_str(r#"{"regex": "v[12]"}"#).unwrap();
    /// assert_eq!(m.kind(), Some(StringMatchKind::Regex("v[12]")));
    /// // exact wins when several arms are (invalidly) set
    /// let both: StringMatch = serde_json::from_str(r#"{"exact": "jason", "prefix": "ja"}"#).unwrap();
    /// assert_eq!(both.kind(), Some(StringMatchKind::Exact("jason")));
    /// assert_eq!(StringMatch::default().kind(), None);
    /// ```
    pub fn kind(&self) -> Option<StringMatchKind<'_>> {
        if let Some(s) = &self.exact {
            Some(StringMatchKind::Exact(s))
        } else if let Some(s) = &self.prefix {
            Some(StringMatchKind::Prefix(s))
        } else {
            self.regex.as_deref().map(StringMatchKind::Regex)
        }
    }

    /// How many of `exact`, `prefix`, `regex` are set.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::StringMatch;
    ///
    /// let both: StringMatch = serde_json::from_str(r#"{"exact": "jason", "prefix": "ja"}"#).unwrap();
    /// assert_eq!(both.arms_set(), 2); // validation rejects this
    /// assert_eq!(StringMatch::default().arms_set(), 0);
    /// ```
    pub fn arms_set(&self) -> usize {
        usize::from(self.exact.is_some())
            + usize::from(self.prefix.is_some())
            + usize::from(self.regex.is_some())
    }
}

/// `PortSelector`: `{number}`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::PortSelector;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination:
///         host: reviews
///         port: {number: 9080}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// assert_eq!(vs.http[0].route[0].destination.port, Some(PortSelector { number: 9080 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// Port number.
    #[serde(default)]
    pub number: u32,
}

/// A port declaration (`Port` of Gateway/Sidecar, `ServicePort` of ServiceEntry).
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: web}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 80, name: http, protocol: HTTP}
///     hosts: [web.example.com]
/// ", "gw.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let port = &loaded.objects[0].spec.as_gateway().unwrap().servers[0].port;
/// assert_eq!(port.number, 80);
/// assert_eq!(port.name, "http");
/// assert_eq!(port.protocol, "HTTP");
/// assert_eq!(port.target_port, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Port number (required).
    #[serde(default)]
    pub number: u32,
    /// Protocol: HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, UDP, REDIS, MYSQL
    /// (case-insensitive, as Istio parses it).
    #[serde(default)]
    pub protocol: String,
    /// Port name (DNS-1123 label).
    #[serde(default)]
    pub name: String,
    /// Endpoint port (ServiceEntry); deprecated and rejected on Gateways/Sidecars.
    pub target_port: Option<u32>,
}

/// `WorkloadSelector` of AuthorizationPolicy / PeerAuthentication / RequestAuthentication
/// (and DestinationRule's `workloadSelector`): `{matchLabels}`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: reviews}
/// spec:
///   selector:
///     matchLabels: {app: reviews}
///   mtls: {mode: STRICT}
/// ", "pa.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let pa = loaded.objects[0].spec.as_peer_authentication().unwrap();
/// let selector = pa.selector.as_ref().unwrap();
/// assert_eq!(selector.match_labels["app"], "reviews");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchLabelsSelector {
    /// Labels that must all be present on the workload.
    #[serde(default)]
    pub match_labels: Labels,
}

/// `WorkloadSelector` of Sidecar / ServiceEntry: `{labels}`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: ratings}
/// spec:
///   workloadSelector:
///     labels: {app: ratings}
///   egress:
///   - hosts: ["./*", "istio-system/*"]
/// "#, "sidecar.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let sidecar = loaded.objects[0].spec.as_sidecar().unwrap();
/// let selector = sidecar.workload_selector.as_ref().unwrap();
/// assert_eq!(selector.labels["app"], "ratings");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelsSelector {
    /// Labels that must all be present on the workload.
    #[serde(default)]
    pub labels: Labels,
}

/// A number that Istio's API writes either as a plain double or wrapped as `{value: x}`.
/// Deserializes both forms.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mesh_core::model::FlexPercent;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     retryBudget: {percent: 25}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.iter().all(|d| d.code == "IM0013"), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let budget = dr.traffic_policy.as_ref().unwrap().retry_budget.as_ref().unwrap();
/// assert_eq!(budget.percent, Some(FlexPercent(25.0)));
///
/// // The wrapped form reads the same.
/// let wrapped: FlexPercent = serde_json::from_str(r#"{"value": 25}"#)?;
/// assert_eq!(wrapped, FlexPercent(25.0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct FlexPercent(pub f64);

impl<'de> Deserialize<'de> for FlexPercent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Num(f64),
            Wrapped(Percent),
        }
        match Either::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a percentage: a number or `{value: <number>}`")
        })? {
            Either::Num(v) => Ok(FlexPercent(v)),
            Either::Wrapped(p) => Ok(FlexPercent(p.value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        let table: &[(&str, i64)] = &[
            ("5s", 5_000_000_000),
            ("250ms", 250_000_000),
            ("1m", 60_000_000_000),
            ("1h", 3_600_000_000_000),
            ("0.5s", 500_000_000),
            ("1.5h", 5_400_000_000_000),
            ("1m30s", 90_000_000_000),
            ("0", 0),
            ("0s", 0),
            ("100us", 100_000),
            ("100µs", 100_000),
            ("7ns", 7),
            ("-1s", -1_000_000_000),
            ("+2s", 2_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("0.0001ms", 100),
        ];
        for (input, nanos) in table {
            assert_eq!(
                Duration::parse(input).unwrap().as_nanos(),
                *nanos,
                "{input}"
            );
        }
    }

    #[test]
    fn durations_rejected() {
        for input in [
            "",
            "5",
            "s",
            "1x",
            "1.5",
            ".s",
            "5 s",
            "1s5",
            "-",
            "99999999999999h",
            "1d",
        ] {
            assert!(
                Duration::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }

    #[test]
    fn duration_display_and_precision() {
        assert_eq!(Duration::parse("1.5s").unwrap().to_string(), "1.5s");
        assert_eq!(Duration::parse("250ms").unwrap().to_string(), "0.25s");
        assert_eq!(Duration::parse("-2s").unwrap().to_string(), "-2s");
        assert!(Duration::parse("1ms").unwrap().is_ms_precision());
        assert!(!Duration::parse("1500us").unwrap().is_ms_precision());
        assert_eq!(
            Duration::parse("-1s").unwrap().as_std(),
            std::time::Duration::ZERO
        );
    }

    #[test]
    fn duration_deserializes_only_from_strings() {
        let d: Duration = serde_json::from_value(serde_json::json!("3s")).unwrap();
        assert_eq!(d, Duration::from_secs(3));
        assert!(serde_json::from_value::<Duration>(serde_json::json!(3)).is_err());
    }

    #[test]
    fn string_match_kind() {
        let m = StringMatch {
            prefix: Some("/api".into()),
            ..Default::default()
        };
        assert_eq!(m.kind(), Some(StringMatchKind::Prefix("/api")));
        assert_eq!(m.arms_set(), 1);
        assert_eq!(StringMatch::default().kind(), None);
    }

    #[test]
    fn flex_percent_both_forms() {
        let a: FlexPercent = serde_json::from_value(serde_json::json!(20.5)).unwrap();
        let b: FlexPercent = serde_json::from_value(serde_json::json!({"value": 20.5})).unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_value::<FlexPercent>(serde_json::json!("x")).is_err());
    }
}
