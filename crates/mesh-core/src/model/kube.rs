//! The Kubernetes objects the mesh can use (kept beside the Istio config, not validated as
//! Istio): `Service`, `ServiceAccount`, and workloads (`Pod`, `Deployment`, `StatefulSet`,
//! `DaemonSet`, `ReplicaSet`). These are read leniently: unknown fields are ignored, as the
//! Kubernetes schema is not ours to check.

use serde::{Deserialize, Serialize};

use super::common::Labels;

/// A Kubernetes `Service` (`v1`): what the registry needs.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: bookinfo}
/// spec:
///   selector: {app: reviews}
///   ports:
///   - {name: http, port: 9080}
/// ", "svc.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let svc = loaded.objects[0].spec.as_service().unwrap();
/// assert_eq!(svc.selector.as_ref().unwrap()["app"], "reviews");
/// assert_eq!(svc.ports[0].port, 9080);
/// assert_eq!(svc.service_type, None); // ClusterIP
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeService {
    /// Service ports.
    #[serde(default)]
    pub ports: Vec<KubeServicePort>,
    /// Pod selector; absent means no automatic endpoints.
    pub selector: Option<Labels>,
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer`, `ExternalName`.
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    /// Cluster IP (`None` for headless).
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// Target of an `ExternalName` service.
    pub external_name: Option<String>,
    /// `trafficDistribution` (`PreferClose`, `PreferSameZone`, `PreferSameNode`): where
    /// clients prefer endpoints (see
    /// [`TrafficDistribution`](crate::registry::TrafficDistribution)).
    pub traffic_distribution: Option<String>,
    /// `internalTrafficPolicy` (`Cluster`, `Local`: only the endpoints on the client's own
    /// node, see [`Service::node_local`](crate::registry::Service::node_local)).
    pub internal_traffic_policy: Option<String>,
}

/// A port of a Kubernetes `Service`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::IntOrString;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: ratings}
/// spec:
///   selector: {app: ratings}
///   ports:
///   - name: web
///     port: 80
///     targetPort: 8080
///     appProtocol: http
/// ", "svc.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let port = &loaded.objects[0].spec.as_service().unwrap().ports[0];
/// assert_eq!(port.name.as_deref(), Some("web"));
/// assert_eq!(port.target_port, Some(IntOrString::Int(8080)));
/// assert_eq!(port.app_protocol.as_deref(), Some("http"));
/// assert_eq!(port.protocol, None); // TCP
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeServicePort {
    /// Port name (Istio derives the protocol from a `http-`, `grpc-`, ... prefix).
    pub name: Option<String>,
    /// Service port.
    #[serde(default)]
    pub port: u32,
    /// Container port: a number or a container port name (default: `port`).
    pub target_port: Option<IntOrString>,
    /// `TCP` (default), `UDP`, `SCTP`.
    pub protocol: Option<String>,
    /// Application protocol (`http`, `grpc`, ...), which Istio prefers over the name.
    pub app_protocol: Option<String>,
}

impl KubeServicePort {
    /// The protocol Istio gives this port (upper case; empty when it sniffs it), as
    /// [`crate::registry::kube_protocol`] reads the port, its name, `protocol` and
    /// `appProtocol`.
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: db}
    /// spec: {ports: [{name: tcp-mysql, port: 3306}, {name: web, port: 8080}]}
    /// ", "svc.yaml");
    /// let svc = loaded.objects[0].spec.as_service().unwrap();
    /// assert_eq!(svc.ports[0].istio_protocol(), "TCP");
    /// assert_eq!(svc.ports[1].istio_protocol(), ""); // sniffed
    /// ```
    pub fn istio_protocol(&self) -> String {
        crate::registry::kube_protocol(
            u16::try_from(self.port).unwrap_or(0),
            self.name.as_deref().unwrap_or(""),
            self.protocol.as_deref(),
            self.app_protocol.as_deref(),
        )
    }
}

/// Kubernetes `IntOrString`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::IntOrString;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: ratings}
/// spec:
///   selector: {app: ratings}
///   ports:
///   - {name: http, port: 80, targetPort: http-web}
///   - {name: grpc, port: 9090, targetPort: 9091}
/// ", "svc.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let ports = &loaded.objects[0].spec.as_service().unwrap().ports;
/// assert_eq!(ports[0].target_port, Some(IntOrString::String("http-web".into())));
/// assert_eq!(ports[1].target_port, Some(IntOrString::Int(9091)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(u32),
    /// A name.
    String(String),
}

/// A workload: a Pod, or the pod template of a Deployment / StatefulSet / DaemonSet /
/// ReplicaSet. `labels` are the pod labels (template labels for controllers).
///
/// # Examples
///
/// ```
/// use mesh_core::model::Kind;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: apps/v1
/// kind: Deployment
/// metadata: {name: reviews-v1}
/// spec:
///   replicas: 2
///   selector:
///     matchLabels: {app: reviews}
///   template:
///     metadata:
///       labels: {app: reviews, version: v1}
///     spec:
///       serviceAccountName: bookinfo-reviews
///       containers:
///       - name: reviews
///         image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.1
///         ports:
///         - containerPort: 9080
/// ", "deploy.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let obj = &loaded.objects[0];
/// assert_eq!(obj.kind, Kind::Deployment);
/// let workload = obj.spec.as_workload().unwrap();
/// assert_eq!(workload.labels["version"], "v1");
/// assert_eq!(workload.service_account_name, "bookinfo-reviews");
/// assert_eq!(workload.replicas, Some(2));
/// assert_eq!(workload.container_ports[0].container_port, 9080);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeWorkload {
    /// Pod labels.
    #[serde(default)]
    pub labels: Labels,
    /// Pod service account (`default` when unset).
    pub service_account_name: String,
    /// Container ports declared by the pod.
    #[serde(default)]
    pub container_ports: Vec<ContainerPort>,
    /// Desired replicas (controllers only).
    pub replicas: Option<u32>,
    /// Pod annotations (a Pod's own, a controller's pod template's).
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The names of the pod's containers (`istio-proxy` when injected).
    #[serde(default)]
    pub containers: Vec<String>,
}

/// A Kubernetes `Secret`, reduced to what credential checks need: the type, the names of
/// its keys (`tls.crt`, `tls.key`, `ca.crt`, `cert`, `key`, `cacert`) and what is wrong
/// with its certificate. Values are read while loading and never stored.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: v1
/// kind: Secret
/// metadata: {name: bookinfo-cert, namespace: istio-system}
/// type: kubernetes.io/tls
/// data:
///   tls.crt: LS0tLS1CRUdJTg==
///   tls.key: LS0tLS1CRUdJTg==
/// ", "secret.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let secret = loaded.objects[0].spec.as_secret().unwrap();
/// assert_eq!(secret.secret_type.as_deref(), Some("kubernetes.io/tls"));
/// assert_eq!(secret.keys, ["tls.crt", "tls.key"]); // names only, never values
/// assert!(secret.has_server_credential());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KubeSecret {
    /// `kubernetes.io/tls`, `Opaque`, ...
    pub secret_type: Option<String>,
    /// Key names from `data` and `stringData`, sorted.
    pub keys: Vec<String>,
    /// Why the server certificate (`cert`, else `tls.crt`) is not one istiod would serve,
    /// as istiod's `ValidateCertificate` judges it when the Secret is loaded: not PEM, not
    /// X.509, expired or not yet valid. `None` when valid or absent.
    #[serde(default)]
    pub cert_problem: Option<String>,
}

/// istiod's `ValidateCertificate` on a PEM certificate chain at `now` (seconds since the
/// Unix epoch): the first PEM block's certificates, each within its validity window.
///
/// # Examples
///
/// ```
/// use mesh_core::model::certificate_problem;
///
/// assert_eq!(certificate_problem(b"hush hush hush", 0).as_deref(), Some("pem decode failed"));
/// ```
pub fn certificate_problem(pem: &[u8], now: i64) -> Option<String> {
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem) else {
        return Some("pem decode failed".to_owned());
    };
    let mut der: &[u8] = &block.contents;
    loop {
        let cert = match x509_parser::parse_x509_certificate(der) {
            Ok((rest, cert)) => {
                der = rest;
                cert
            }
            Err(e) => return Some(format!("x509: malformed certificate ({e})")),
        };
        let validity = cert.validity();
        if now > validity.not_after.timestamp() {
            return Some(format!(
                "certificate is expired (not after {})",
                validity.not_after
            ));
        }
        if now < validity.not_before.timestamp() {
            return Some(format!(
                "certificate is not yet valid (not before {})",
                validity.not_before
            ));
        }
        if der.is_empty() {
            return None;
        }
    }
}

impl KubeSecret {
    /// True when the secret holds a certificate and key under either naming Istio accepts.
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: v1
    /// kind: Secret
    /// metadata: {name: db-password, namespace: istio-system}
    /// stringData: {password: hunter2}
    /// ---
    /// apiVersion: v1
    /// kind: Secret
    /// metadata: {name: legacy-cert, namespace: istio-system}
    /// data: {cert: LS0t, key: LS0t}
    /// ", "secrets.yaml");
    /// let secret = |i: usize| loaded.objects[i].spec.as_secret().unwrap();
    /// assert!(!secret(0).has_server_credential());
    /// assert!(secret(1).has_server_credential()); // `cert`/`key` works too
    /// ```
    pub fn has_server_credential(&self) -> bool {
        let has = |k: &str| self.keys.iter().any(|x| x == k);
        (has("tls.crt") && has("tls.key")) || (has("cert") && has("key"))
    }
}

/// A container port.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: v1
/// kind: Pod
/// metadata:
///   name: ratings
///   labels: {app: ratings}
/// spec:
///   containers:
///   - name: ratings
///     image: docker.io/istio/examples-bookinfo-ratings-v1:1.20.1
///     ports:
///     - {name: http, containerPort: 9080, protocol: TCP}
/// ", "pod.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let workload = loaded.objects[0].spec.as_workload().unwrap();
/// let port = &workload.container_ports[0];
/// assert_eq!(port.name.as_deref(), Some("http"));
/// assert_eq!(port.container_port, 9080);
/// assert_eq!(port.protocol.as_deref(), Some("TCP"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Port name.
    pub name: Option<String>,
    /// Container port number.
    #[serde(default)]
    pub container_port: u32,
    /// Protocol.
    pub protocol: Option<String>,
}

/// The raw shapes read from Kubernetes YAML (lenient).
pub(crate) mod raw {
    use serde::Deserialize;

    use super::{ContainerPort, KubeWorkload, Labels};

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct PodSpec {
        pub(crate) service_account_name: Option<String>,
        #[serde(rename = "serviceAccount")]
        pub(crate) service_account_deprecated: Option<String>,
        #[serde(default)]
        pub(crate) containers: Vec<Container>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Container {
        #[serde(default)]
        pub(crate) name: String,
        #[serde(default)]
        pub(crate) ports: Vec<ContainerPort>,
    }

    #[derive(Debug, Default, Deserialize)]
    pub(crate) struct TemplateMeta {
        #[serde(default)]
        pub(crate) labels: Labels,
        #[serde(default)]
        pub(crate) annotations: std::collections::BTreeMap<String, String>,
    }

    #[derive(Debug, Default, Deserialize)]
    pub(crate) struct PodTemplate {
        #[serde(default)]
        pub(crate) metadata: TemplateMeta,
        #[serde(default)]
        pub(crate) spec: PodSpec,
    }

    #[derive(Debug, Default, Deserialize)]
    pub(crate) struct ControllerSpec {
        pub(crate) replicas: Option<u32>,
        #[serde(default)]
        pub(crate) template: PodTemplate,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Secret {
        #[serde(rename = "type")]
        pub(crate) secret_type: Option<String>,
        #[serde(default)]
        pub(crate) data: std::collections::BTreeMap<String, serde_json::Value>,
        #[serde(default)]
        pub(crate) string_data: std::collections::BTreeMap<String, serde_json::Value>,
    }

    impl Secret {
        pub(crate) fn into_model(self) -> super::KubeSecret {
            // istiod's ExtractCertInfo: `cert` with `key`, else `tls.crt` with `tls.key`
            let value = |k: &str| -> Option<Vec<u8>> {
                if let Some(v) = self.string_data.get(k).and_then(|v| v.as_str()) {
                    return Some(v.as_bytes().to_vec());
                }
                let v = self.data.get(k)?.as_str()?;
                Some(
                    crate::names::base64_decode(v.trim(), false)
                        .unwrap_or_else(|| v.as_bytes().to_vec()),
                )
            };
            let pair = |c: &str, k: &str| {
                let cert = value(c).filter(|v| !v.is_empty())?;
                value(k).filter(|v| !v.is_empty()).map(|_| cert)
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let cert_problem = pair("cert", "key")
                .or_else(|| pair("tls.crt", "tls.key"))
                .and_then(|pem| super::certificate_problem(&pem, now));
            let mut keys: Vec<String> = self
                .data
                .into_keys()
                .chain(self.string_data.into_keys())
                .collect();
            keys.sort();
            keys.dedup();
            super::KubeSecret {
                secret_type: self.secret_type,
                keys,
                cert_problem,
            }
        }
    }

    impl PodSpec {
        pub(crate) fn into_workload(
            self,
            labels: Labels,
            annotations: std::collections::BTreeMap<String, String>,
            replicas: Option<u32>,
        ) -> KubeWorkload {
            KubeWorkload {
                labels,
                annotations,
                containers: self.containers.iter().map(|c| c.name.clone()).collect(),
                service_account_name: self
                    .service_account_name
                    .or(self.service_account_deprecated)
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "default".to_owned()),
                container_ports: self.containers.into_iter().flat_map(|c| c.ports).collect(),
                replicas,
            }
        }
    }
}
