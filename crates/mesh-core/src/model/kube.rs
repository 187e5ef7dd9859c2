//! The Kubernetes objects the mesh can use (kept beside the Istio config, not validated as
//! Istio): `Service`, `ServiceAccount`, and workloads (`Pod`, `Deployment`, `StatefulSet`,
//! `DaemonSet`, `ReplicaSet`). These are read leniently: unknown fields are ignored, as the
//! Kubernetes schema is not ours to check.

use serde::{Deserialize, Serialize};

use super::common::Labels;

/// A Kubernetes `Service` (`v1`): what the registry needs.
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
}

/// A port of a Kubernetes `Service`.
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

/// Kubernetes `IntOrString`.
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
}

/// A Kubernetes `Secret`, reduced to what credential checks need: the type and the names of
/// its keys (`tls.crt`, `tls.key`, `ca.crt`, `cert`, `key`, `cacert`). Values are skipped
/// while parsing and never stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KubeSecret {
    /// `kubernetes.io/tls`, `Opaque`, ...
    pub secret_type: Option<String>,
    /// Key names from `data` and `stringData`, sorted.
    pub keys: Vec<String>,
}

impl KubeSecret {
    /// True when the secret holds a certificate and key under either naming Istio accepts.
    pub fn has_server_credential(&self) -> bool {
        let has = |k: &str| self.keys.iter().any(|x| x == k);
        (has("tls.crt") && has("tls.key")) || (has("cert") && has("key"))
    }
}

/// A container port.
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
        pub(crate) ports: Vec<ContainerPort>,
    }

    #[derive(Debug, Default, Deserialize)]
    pub(crate) struct TemplateMeta {
        #[serde(default)]
        pub(crate) labels: Labels,
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
        pub(crate) data: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
        #[serde(default)]
        pub(crate) string_data: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
    }

    impl Secret {
        pub(crate) fn into_model(self) -> super::KubeSecret {
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
            }
        }
    }

    impl PodSpec {
        pub(crate) fn into_workload(self, labels: Labels, replicas: Option<u32>) -> KubeWorkload {
            KubeWorkload {
                labels,
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
