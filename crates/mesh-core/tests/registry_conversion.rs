//! Endpoints as istiod's service registry converts them (`serviceentry/conversion.go`,
//! `convertWorkloadEntry`, `util/label.AugmentLabels`): the topology labels subsets select
//! by, the `istio-locality` label, a WorkloadEntry's own metadata labels, and which
//! services may select a WorkloadEntry addressed by a name or a Unix socket.

use mesh_core::names::labels_match;
use mesh_core::registry::{Endpoint, EndpointAddress};

fn endpoints(yaml: &str, host: &str) -> Vec<Endpoint> {
    let snap = mesh_core::mesh::Mesh::from_yaml(yaml).unwrap().snapshot();
    let svc = snap.registry().service(host, "default").unwrap();
    svc.endpoints.iter().map(|e| Endpoint::clone(e)).collect()
}

fn selected<'a>(eps: &'a [Endpoint], selector: &[(&str, &str)]) -> Vec<&'a EndpointAddress> {
    let sel = selector
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    eps.iter()
        .filter(|e| labels_match(&sel, &e.labels))
        .map(|e| &e.address)
        .collect()
}

/// `AugmentLabels`: region, zone and subzone from the locality, the cluster, and the
/// network unless a label says it, so a DestinationRule subset can select endpoints by
/// `topology.kubernetes.io/zone`.
#[test]
fn endpoints_carry_istiods_topology_labels() {
    let eps = endpoints(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.internal]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, locality: us-east/z1/rack-a, network: n1}
  - {address: 10.0.0.2, locality: us-east/z2, labels: {topology.istio.io/network: own}}
  - {address: 10.0.0.3, labels: {istio-locality: us-west.z3}}
",
        "db.internal",
    );
    let zone = |z| selected(&eps, &[("topology.kubernetes.io/zone", z)]);
    assert_eq!(zone("z1"), [&EndpointAddress::Ip([10, 0, 0, 1].into())]);
    assert_eq!(zone("z2"), [&EndpointAddress::Ip([10, 0, 0, 2].into())]);
    assert_eq!(zone("z3"), [&EndpointAddress::Ip([10, 0, 0, 3].into())]);
    let e1 = &eps[0].labels;
    assert_eq!(e1["topology.kubernetes.io/region"], "us-east");
    assert_eq!(e1["topology.istio.io/subzone"], "rack-a");
    assert_eq!(e1["topology.istio.io/cluster"], "Kubernetes");
    assert_eq!(e1["topology.istio.io/network"], "n1");
    // a label of the endpoint's own names its network
    assert_eq!(eps[1].labels["topology.istio.io/network"], "own");
    assert!(!eps[1].labels.contains_key("topology.istio.io/subzone"));
    // `istio-locality` (dots for slashes) is the locality when none is written
    assert_eq!(eps[2].locality.as_deref(), Some("us-west/z3"));
    assert_eq!(eps[2].labels["topology.kubernetes.io/region"], "us-west");
}

/// `convertWorkloadEntry`: a WorkloadEntry's own metadata labels join its spec's (and win),
/// so a selector on them finds it.
#[test]
fn workload_entry_metadata_labels_select_it() {
    let eps = endpoints(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: default, labels: {app: vm, version: v9}}
spec: {address: 10.0.0.1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm, namespace: default}
spec:
  hosts: [vm.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
",
        "vm.internal",
    );
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].labels["version"], "v9");
}

/// istiod's `DNSServiceEntryOnly`: a WorkloadEntry addressed by a Unix socket or a name is
/// an endpoint of DNS ServiceEntries only, never of a Kubernetes Service or a STATIC
/// ServiceEntry (which have nothing to dial it with).
#[test]
fn socket_and_name_workload_entries_only_for_dns_service_entries() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sock, namespace: default}
spec: {address: unix:///var/run/vm.sock, labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: named, namespace: default}
spec: {address: vm3.example.internal, labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ip, namespace: default}
spec: {address: 10.0.0.9, labels: {app: vm}}
---
apiVersion: v1
kind: Service
metadata: {name: vmsvc, namespace: default}
spec: {selector: {app: vm}, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static, namespace: default}
spec:
  hosts: [vm.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns, namespace: default}
spec:
  hosts: [vm-dns.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  workloadSelector: {labels: {app: vm}}
";
    let ip = EndpointAddress::Ip([10, 0, 0, 9].into());
    for host in ["vmsvc.default.svc.cluster.local", "vm.internal"] {
        let eps = endpoints(yaml, host);
        let addrs: Vec<_> = eps.iter().map(|e| &e.address).collect();
        assert_eq!(addrs, [&ip], "{host}");
    }
    let eps = endpoints(yaml, "vm-dns.internal");
    assert_eq!(eps.len(), 3, "{eps:#?}");
    assert!(eps
        .iter()
        .any(|e| matches!(&e.address, EndpointAddress::Unix(p) if &**p == "/var/run/vm.sock")));
}

/// istiod's `ConvertService`: the deprecated service-account annotations name identities
/// the Service's endpoints may present (for the client's SAN check); an `ExternalName`
/// Service is its external name, resolved by DNS, outside the mesh.
#[test]
fn service_annotations_and_external_names() {
    use mesh_core::model::{Resolution, ServiceLocation};
    let snap = mesh_core::mesh::Mesh::from_yaml(
        "apiVersion: v1
kind: Service
metadata:
  name: vm
  namespace: default
  annotations:
    alpha.istio.io/kubernetes-serviceaccounts: vm-sa, other
    alpha.istio.io/canonical-serviceaccounts: spiffe://corp.example/ns/legacy/sa/x
spec: {selector: {app: vm}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {type: ExternalName, externalName: db.corp.example., ports: [{name: tcp, port: 5432}]}
",
    )
    .unwrap()
    .snapshot();
    let vm = snap
        .registry()
        .service("vm.default.svc.cluster.local", "default")
        .unwrap();
    let sans: Vec<&str> = vm.subject_alt_names.iter().map(|s| &**s).collect();
    assert_eq!(
        sans,
        [
            "spiffe://cluster.local/ns/default/sa/vm-sa",
            "spiffe://cluster.local/ns/default/sa/other",
            "spiffe://corp.example/ns/legacy/sa/x",
        ]
    );
    let db = snap
        .registry()
        .service("db.default.svc.cluster.local", "default")
        .unwrap();
    assert_eq!(db.resolution, Resolution::Dns);
    assert_eq!(db.location, ServiceLocation::MeshExternal);
    assert_eq!(db.endpoints.len(), 1);
    assert!(db
        .endpoints
        .iter()
        .all(|e| matches!(&e.address, EndpointAddress::Hostname(h) if &**h == "db.corp.example")));
}

/// istiod's `isHealthy`: a WorkloadEntry whose health checks are on
/// (`proxy.istio.io/health-checks-enabled`) is an endpoint only while its `Healthy`
/// condition is `True` (a new one has none: not yet); others always are.
#[test]
fn workload_entries_with_health_checks_are_endpoints_only_when_healthy() {
    let entry = |name: &str, addr: &str, extra: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: default
  annotations: {{proxy.istio.io/health-checks-enabled: 'true'}}
spec: {{address: {addr}, labels: {{app: vm}}}}
{extra}---
"
        )
    };
    let yaml = format!(
        "{}{}{}apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: unchecked, namespace: default}}
spec: {{address: 10.0.0.4, labels: {{app: vm}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: vm, namespace: default}}
spec:
  hosts: [vm.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: vm}}}}
",
        entry("new", "10.0.0.1", ""),
        entry(
            "healthy",
            "10.0.0.2",
            "status: {conditions: [{type: Healthy, status: 'True'}]}\n"
        ),
        entry(
            "unhealthy",
            "10.0.0.3",
            "status: {conditions: [{type: Healthy, status: 'False'}]}\n"
        ),
    );
    let snap = mesh_core::mesh::Mesh::from_yaml(&yaml).unwrap().snapshot();
    let svc = snap
        .registry()
        .service("vm.example.internal", "default")
        .unwrap();
    let mut addrs: Vec<String> = svc
        .targets(80, None)
        .map(|t| t.addr.unwrap().ip().to_string())
        .collect();
    addrs.sort();
    assert_eq!(addrs, ["10.0.0.2", "10.0.0.4"]);
}
