//! Cross-object analysis, like `istioctl analyze`.
//!
//! Findings use Istio's analyzer codes where one fits. Where Istio's analyzer needs a live
//! cluster (the full service registry, secrets), we only check what the loaded files show:
//! registry checks run only when the files contain Services or ServiceEntries, workload
//! checks only when they contain Pods or workload controllers.
//!
//! | code | severity | finding |
//! | --- | --- | --- |
//! | IST0101 | error | a route's subset is not defined by the loaded DestinationRule for its host (`host+subset`) |
//! | IST0101 | warning | a route's subset, gateway or delegate is not among the loaded files: no DestinationRule for the host, no such Gateway or VirtualService (Istio: error, but it sees the whole cluster; files are partial input) |
//! | IM0203 | info | a VirtualService without hosts (a delegate) that no loaded VirtualService delegates to |
//! | IST0101 | warning | a destination host is in neither the loaded Services nor ServiceEntries (Istio: error; the files rarely hold the whole registry) |
//! | IST0101 | warning | a Gateway selector matches none of the loaded workloads |
//! | IST0101 | error | a destination port the loaded Kubernetes Service, or else the ServiceEntries for the host (or a wildcard ServiceEntry host visible there), does not expose (`host:port`; istioctl's `checkServiceEntryPorts`) |
//! | IST0162 | warning | a Gateway server port is not exposed by the selected workloads' Services (istioctl's GatewayPortNotDefinedOnService; compared with the TCP ports of the Services selecting them and their target ports) |
//! | IST0109 | error | several mesh-bound VirtualServices define the same host and are visible together (exportTo) |
//! | IST0110 | error | several Sidecars select the same workload |
//! | IST0101 | warning | a Sidecar's workload selector matches no loaded workload of its namespace (only when pods or controllers of that namespace are loaded; Istio: error) |
//! | IST0111 | error | several selector-less Sidecars in one namespace |
//! | IST0167 | warning | a Sidecar in a loaded ambient Namespace (`istio.io/dataplane-mode: ambient`), or selecting a pod annotated `ambient.istio.io/redirection: enabled`: no sidecar runs there |
//! | IST0112 | error | no destination port for a loaded Service or ServiceEntry host with several ports |
//! | IST0118 | info | a Service port whose name and `appProtocol` tell Istio no protocol (it is sniffed), outside system namespaces and the control plane |
//! | IST0150 | warning | such a port, or one named `tcp`, on an `ExternalName` Service |
//! | IST0116 | warning | a loaded Deployment whose Services use one port number with different Kubernetes protocols (not one known to be outside the mesh: `sidecar.istio.io/inject: "false"`, or a loaded Namespace without injection; istioctl checks injected Deployments only) |
//! | IST0137 | warning | a loaded Deployment whose Services reach one `targetPort` from different port numbers |
//! | IST0134 | warning | a ServiceEntry without `addresses` with a port of protocol `TCP` or none (unless MeshConfig's proxyMetadata has DNS capture and auto-allocation) |
//! | IST0138 | warning | two Gateways, one's selector within the other's (or none), with a TLS server each using the same `credentialName` (or `serverCertificate` and `privateKey`) |
//! | IST0149 | error | a VirtualService routing by JWT claims through a loaded Gateway whose loaded pod no RequestAuthentication (`istio-system` or its namespace) applies to |
//! | IST0140 | warning | a VirtualService bound to gateways routes to a host without a subset that another VirtualService routes by subsets (istioctl's `analyzeSubset`: hosts compared as written) |
//! | IST0107 / IST0108 / IST0125 / IST0135 | warning (IST0135 info) | an Istio annotation on a Namespace, Service, Pod or Deployment that is misplaced, unknown, has a value the injector refuses, or is deprecated (istioctl's `annotations.K8sAnalyzer`) |
//! | IST0101 | warning | a destination host that is loaded but not exported (ServiceEntry `exportTo`, Service `networking.istio.io/exportTo`) to the VirtualService's namespace or the namespaces it is exported to (istioctl's `GetDestinationHost`) |
//! | IST0127 | warning | a policy's selector matches no loaded workload in its namespace; a namespace-wide AuthorizationPolicy of a namespace (not the root) with no loaded workload, when the files hold workloads |
//! | IST0128 / IST0129 | warning | DestinationRule TLS SIMPLE/MUTUAL without `caCertificates` (top level / port level), unless a `credentialName` gives them to a DestinationRule with a `workloadSelector` |
//! | IST0132 | warning | no host of a VirtualService is among its loaded Gateway's server hosts (istioctl's `vsHostInGateway`: one match is enough) |
//! | IST0145 | error | Gateways selecting the same workloads (same selector, or a loaded workload both select) with servers on the same port and `bind` sharing a `hosts` entry |
//! | IST0101 | warning | a Gateway `credentialName` with no loaded Secret in the gateway workload's namespace (nothing when no Secrets are loaded) |
//! | IST0161 | error | the referenced Secret has no `tls.crt`/`tls.key` (or `cert`/`key`), or its certificate is not PEM X.509, is expired or not yet valid (istiod's `ValidateCertificate`) |
//! | IST0174 | warning | a DestinationRule host matches no loaded service |
//! | IST0173 | error | a DestinationRule subset whose labels (with its service's selector) no loaded pod, workload controller's template, WorkloadEntry or ServiceEntry endpoint has (only when pods or controllers are loaded) |
//! | IM0201 | warning | several DestinationRules for one host in one namespace (Istio merges them) |
//! | IM0202 | warning | the same kind/namespace/name is defined twice (the last one wins, like `kubectl apply`) |
//! | IST0101 | error | a CUSTOM AuthorizationPolicy names an extension provider the MeshConfig does not define (istiod: `available providers are [...] but found "..."`; only with a MeshConfig, [`custom_providers`]) |
//! | IM0007 | warning | a CUSTOM AuthorizationPolicy names a provider of a kind inmesh does not support (not `envoyExtAuthzHttp`): it denies what it matches |
//!
//! # Examples
//!
//! ```
//! use mesh_core::diag::{codes, Severity};
//!
//! let loaded = mesh_core::load::load_str("
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: reviews}
//! spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v3}}]}]}
//! ---
//! apiVersion: networking.istio.io/v1
//! kind: DestinationRule
//! metadata: {name: reviews}
//! spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
//! ", "bookinfo.yaml");
//! // each object is valid on its own...
//! assert!(mesh_core::validate::validate_all(&loaded.objects).is_empty());
//! // ...but together they route to a subset nobody defines
//! let found = mesh_core::analyze::analyze(&loaded.objects);
//! assert_eq!(found.len(), 1);
//! assert_eq!((found[0].severity, found[0].code), (Severity::Error, codes::REFERENCED_RESOURCE_NOT_FOUND));
//! assert!(found[0].message.contains("reviews+v3"), "{}", found[0].message);
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};

mod annotations;

use crate::diag::{codes, Diagnostic, Severity};
use crate::model::host::{self, DEFAULT_DOMAIN_SUFFIX};
use crate::model::{
    ClientTlsMode, ClientTlsSettings, ConfigObject, Destination, Kind, Labels, ServerTlsMode, Spec,
};

/// Options of the analysis.
///
/// # Examples
///
/// ```
/// use mesh_core::analyze::{analyze_with, AnalyzeOptions};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews, namespace: default}
/// spec:
///   hosts: [reviews]
///   http: [{route: [{destination: {host: reviews, subset: v2}}]}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews, namespace: default}
/// spec:
///   host: reviews.default.svc.corp.internal
///   subsets: [{name: v2, labels: {version: v2}}]
/// ", "reviews.yaml");
/// // in a cluster whose domain is corp.internal the subset is defined
/// let opts = AnalyzeOptions { domain_suffix: "corp.internal".into(), ..AnalyzeOptions::default() };
/// assert!(analyze_with(&loaded.objects, &opts).is_empty());
/// // with the default cluster.local it is not
/// assert_eq!(mesh_core::analyze::analyze(&loaded.objects)[0].code, "IST0101");
/// ```
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// The mesh root namespace.
    pub root_namespace: String,
    /// Cluster domain suffix.
    pub domain_suffix: String,
    /// The sidecars' DNS proxy allocates ServiceEntry addresses
    /// ([`MeshConfig::dns_auto_allocate`](crate::meshconfig::MeshConfig::dns_auto_allocate)):
    /// no IST0134.
    pub dns_auto_allocate: bool,
    /// Analyze Gateways as `istioctl analyze` does on files: with its stand-in ingress
    /// gateway in the root namespace (a Pod labelled `istio: ingressgateway` and the
    /// Service `istio-ingressgateway` on TCP ports 80, 443, 31400 and 15443) unless the
    /// files hold a Service of that name there. Only the Gateway analyzers see it.
    pub default_ingress: bool,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            root_namespace: "istio-system".to_owned(),
            domain_suffix: DEFAULT_DOMAIN_SUFFIX.to_owned(),
            dns_auto_allocate: false,
            default_ingress: true,
        }
    }
}

/// Analyzes the objects together with default options.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::{codes, Severity};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: bookinfo}
/// spec:
///   hosts: ['*']
///   gateways: [bookinfo-gateway]
///   http: [{route: [{destination: {host: productpage, port: {number: 9080}}}]}]
/// ", "bookinfo.yaml");
/// let found = mesh_core::analyze::analyze(&loaded.objects);
/// assert_eq!(found.len(), 1);
/// // the Gateway may well be in a file not given: a warning, not an error
/// assert_eq!((found[0].severity, found[0].code), (Severity::Warning, codes::REFERENCED_RESOURCE_NOT_FOUND));
/// assert_eq!(found[0].message, r#"Referenced gateway not found: "default/bookinfo-gateway""#);
/// assert_eq!(found[0].path, "spec.gateways[0]");
/// ```
pub fn analyze(objects: &[ConfigObject]) -> Vec<Diagnostic> {
    analyze_with(objects, &AnalyzeOptions::default())
}

struct Ctx<'a> {
    opts: &'a AnalyzeOptions,
    out: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn report(
        &mut self,
        obj: &ConfigObject,
        severity: Severity,
        code: &'static str,
        path: &str,
        msg: String,
    ) -> &mut Diagnostic {
        let at = obj
            .source
            .locate_value(path)
            .unwrap_or_else(|| obj.source.locate_nearest(path));
        self.out.push(Diagnostic::new(
            severity,
            code,
            msg,
            obj.source.file.clone(),
            at,
            path,
        ));
        self.out.last_mut().expect("just pushed")
    }

    fn fqdn(&self, h: &str, ns: &str) -> String {
        host::resolve_short_name(&h.to_ascii_lowercase(), ns, &self.opts.domain_suffix)
    }
}

/// CUSTOM AuthorizationPolicies against the MeshConfig's extension providers: a provider
/// name that is not defined is an error with istiod's message (at run time, the policy
/// denies what it matches); one of a kind inmesh does not support is a warning.
/// [`MeshConfig::check`](crate::meshconfig::MeshConfig::check) runs it with the rest.
///
/// # Examples
///
/// ```
/// use mesh_core::analyze::custom_providers;
/// use mesh_core::meshconfig::MeshConfig;
///
/// let config = MeshConfig::from_yaml("
/// extensionProviders:
/// - {name: opa, envoyExtAuthzHttp: {service: opa.opa.svc.cluster.local, port: 8181}}
/// - {name: grpc, envoyExtAuthzGrpc: {service: authz.foo.svc.cluster.local, port: 9000}}
/// - {name: trace, zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}}
/// ")?;
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: a, namespace: foo}
/// spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
/// ---
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: b, namespace: foo}
/// spec: {action: CUSTOM, provider: {name: oap}, rules: [{}]}
/// ---
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: c, namespace: foo}
/// spec: {action: CUSTOM, provider: {name: trace}, rules: [{}]}
/// ", "ap.yaml");
/// let found = custom_providers(&loaded.objects, &config.extension_providers);
/// let summary: Vec<(&str, &str)> = found.iter().map(|d| (d.code, d.message.as_str())).collect();
/// assert_eq!(summary[0], ("IST0101", r#"available providers are [opa grpc trace] but found "oap""#));
/// assert_eq!(found[0].help.as_deref(), Some("did you mean `opa`?"));
/// assert_eq!(summary[1].0, "IM0007");
/// assert_eq!(found.len(), 2);
/// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
/// ```
pub fn custom_providers(
    objects: &[ConfigObject],
    providers: &[crate::meshconfig::ExtensionProvider],
) -> Vec<Diagnostic> {
    let opts = AnalyzeOptions::default();
    let mut cx = Ctx {
        opts: &opts,
        out: Vec::new(),
    };
    for o in objects {
        let Spec::AuthorizationPolicy(ap) = &o.spec else {
            continue;
        };
        if ap.action != crate::model::AuthorizationAction::Custom {
            continue;
        }
        let Some(name) = ap.provider.as_ref().map(|p| p.name.as_str()) else {
            continue; // validation reports it
        };
        if name.is_empty() {
            continue;
        }
        match providers.iter().find(|p| p.name == name) {
            None => {
                let msg = crate::meshconfig::not_found(providers, name);
                let d = cx.report(
                    o,
                    Severity::Error,
                    codes::REFERENCED_RESOURCE_NOT_FOUND,
                    "spec.provider.name",
                    msg,
                );
                if let Some(s) =
                    crate::diag::did_you_mean(name, providers.iter().map(|p| p.name.as_str()))
                {
                    d.help = Some(format!("did you mean `{s}`?"));
                }
            }
            Some(p) if !matches!(p.kind(), "envoyExtAuthzHttp" | "envoyExtAuthzGrpc") => {
                let msg = format!(
                    "extension provider {name:?} is {}, which inmesh does not support (only \
                     envoyExtAuthzHttp and envoyExtAuthzGrpc): this policy denies the requests \
                     it matches",
                    p.kind()
                );
                cx.report(
                    o,
                    Severity::Warning,
                    codes::UNSUPPORTED_KIND,
                    "spec.provider.name",
                    msg,
                );
            }
            Some(_) => {}
        }
    }
    cx.out
}

/// istioctl's `PortNameAnalyzer`: a Service port whose protocol Istio cannot tell from its
/// name or `appProtocol` (sniffed; IST0118, info), or any such port, and one named
/// exactly `tcp`, of an `ExternalName` Service (IST0150, warning). System namespaces and
/// the control plane's Services (an `istio` label, or `release: istio`) are skipped.
fn port_names(cx: &mut Ctx<'_>, o: &ConfigObject, svc: &crate::model::KubeService) {
    let ns = o.metadata.namespace.as_str();
    let labels = &o.metadata.labels;
    if matches!(
        ns,
        "kube-system" | "kube-public" | "kube-node-lease" | "local-path-storage"
    ) || labels.contains_key("istio")
        || labels.get("release").is_some_and(|r| r == "istio")
    {
        return;
    }
    let external = svc.service_type.as_deref() == Some("ExternalName");
    for (i, p) in svc.ports.iter().enumerate() {
        let name = p.name.as_deref().unwrap_or("");
        let protocol = p.istio_protocol();
        let flagged = protocol.is_empty() || (external && name == "tcp");
        if !flagged {
            continue;
        }
        let path = format!("spec.ports[{i}]");
        if external {
            cx.report(
                o,
                Severity::Warning,
                codes::EXTERNAL_NAME_PORT_NAME,
                &path,
                "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly".to_owned(),
            );
            continue;
        }
        let target = match &p.target_port {
            Some(crate::model::IntOrString::Int(n)) => n.to_string(),
            Some(crate::model::IntOrString::String(s)) => s.clone(),
            None => "0".to_owned(),
        };
        cx.report(
            o,
            Severity::Info,
            codes::PORT_NAME_CONVENTION,
            &path,
            format!(
                "Port name {name} (port: {}, targetPort: {target}) doesn't follow the naming convention of Istio port.",
                p.port
            ),
        )
        .help = Some(
            "Istio sniffs this port's protocol: name it `<protocol>[-<suffix>]` (`http-web`, `grpc`, `tcp-db`, ...) or set `appProtocol` for `http` routes and HTTP metrics to apply reliably".to_owned(),
        );
    }
}

/// An object's name for messages: `metadata.name`, or `<generateName>*` for an object
/// whose name the API server generates.
fn display_name(o: &ConfigObject) -> String {
    match (&o.metadata.name, &o.metadata.generate_name) {
        (n, _) if !n.is_empty() => n.clone(),
        (_, Some(g)) if !g.is_empty() => format!("{g}*"),
        _ => "<unnamed>".to_owned(),
    }
}

fn selector_matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn fmt_labels(l: &Labels) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn exported_to(export_to: &[String], owner_ns: &str, ns: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == ns || (e == "." && owner_ns == ns))
}

/// Analyzes the objects together.
///
/// # Examples
///
/// ```
/// use mesh_core::analyze::{analyze_with, AnalyzeOptions};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: default, namespace: mesh-root}
/// spec: {mtls: {mode: STRICT}}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: a}
/// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: b}
/// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
/// ", "config.yaml");
/// let opts = AnalyzeOptions { root_namespace: "mesh-root".into(), ..AnalyzeOptions::default() };
/// let codes: Vec<&str> = analyze_with(&loaded.objects, &opts).iter().map(|d| d.code).collect();
/// // two mesh VirtualServices for one host conflict (ConflictingMeshGatewayVirtualServiceHosts)
/// assert_eq!(codes, ["IST0109", "IST0109"]);
/// ```
pub fn analyze_with(objects: &[ConfigObject], opts: &AnalyzeOptions) -> Vec<Diagnostic> {
    let mut cx = Ctx {
        opts,
        out: Vec::new(),
    };

    // The last definition of a kind/namespace/name wins, as with `kubectl apply`; objects
    // named by `generateName` (no name) each get a name of their own.
    let (kept, redefined) = crate::load::last_definitions(objects);
    cx.out.extend(redefined);
    let objs: Vec<&ConfigObject> = kept.into_iter().map(|i| &objects[i]).collect();
    let standing: HashSet<*const ConfigObject> =
        objs.iter().map(|o| std::ptr::from_ref(*o)).collect();

    // Indexes.
    let mut services: HashSet<String> = HashSet::new(); // FQDNs and SE hosts
                                                        // the namespaces each host is exported to ("*": all), as istioctl's destination-host
                                                        // lookup indexes them (a ServiceEntry's `exportTo`, a Service's
                                                        // `networking.istio.io/exportTo` annotation)
    let mut scopes: HashMap<String, Vec<String>> = HashMap::new();
    // a service's workload selector (a Kubernetes Service's selector, a ServiceEntry's
    // workloadSelector), by FQDN / SE host, for the subsets that select no pod
    let mut service_selectors: HashMap<String, &Labels> = HashMap::new();
    // the labels of WorkloadEntries and of ServiceEntries' inline endpoints: endpoints a
    // subset may select besides pods
    let mut entry_labels: Vec<&Labels> = Vec::new();
    let mut service_ports: HashMap<String, Vec<u32>> = HashMap::new(); // Kubernetes Services
                                                                       // ExternalName Services: FQDN -> the name they point to (an alias of a known service
                                                                       // in istiod's alias mode)
    let mut external_names: HashMap<String, String> = HashMap::new();
    // ServiceEntry ports by host (FQDN, or the wildcard host as written, lower case), for
    // the destination port checks istioctl makes against them too (`checkServiceEntryPorts`)
    let mut se_ports: HashMap<String, SePorts<'_>> = HashMap::new();
    let mut se_hosts: Vec<(&ConfigObject, &str)> = Vec::new();
    let mut registry_known = false;
    let mut workloads: Vec<(&ConfigObject, &Labels)> = Vec::new();
    let mut gateways: HashMap<(String, String), &ConfigObject> = HashMap::new();
    let mut vs_names: HashSet<(String, String)> = HashSet::new();
    for o in &objs {
        let ns = o.metadata.namespace.as_str();
        match &o.spec {
            Spec::Service(svc) => {
                registry_known = true;
                port_names(&mut cx, o, svc);
                let fq = format!("{}.{ns}.svc.{}", o.metadata.name, opts.domain_suffix);
                service_ports
                    .entry(fq.clone())
                    .or_default()
                    .extend(svc.ports.iter().map(|p| p.port));
                if svc.service_type.as_deref() == Some("ExternalName")
                    && let Some(target) = &svc.external_name
                {
                    external_names.insert(
                        fq.clone(),
                        target.trim_end_matches('.').to_ascii_lowercase(),
                    );
                }
                if let Some(sel) = &svc.selector {
                    service_selectors.insert(fq.clone(), sel);
                }
                let export = o
                    .metadata
                    .annotations
                    .get("networking.istio.io/exportTo")
                    .filter(|a| !a.is_empty())
                    .map_or_else(
                        || vec!["*".to_owned()],
                        |a| {
                            a.split(',')
                                .map(|e| {
                                    if e == "." {
                                        ns.to_owned()
                                    } else {
                                        e.to_owned()
                                    }
                                })
                                .collect()
                        },
                    );
                scopes.entry(fq.clone()).or_default().extend(export);
                services.insert(fq);
            }
            Spec::ServiceEntry(se) => {
                registry_known = true;
                // istioctl's `ProtocolAddressesAnalyzer` (IST0134): without addresses, a
                // TCP port (or one without a protocol) has a sidecar listener on
                // `0.0.0.0:<port>` that takes every connection to that port
                if se.addresses.is_empty() && !opts.dns_auto_allocate {
                    for (i, p) in se.ports.iter().enumerate() {
                        if p.protocol.is_empty() || p.protocol.eq_ignore_ascii_case("TCP") {
                            cx.report(
                                o,
                                Severity::Warning,
                                codes::SERVICE_ENTRY_ADDRESSES_REQUIRED,
                                &format!("spec.ports[{i}]"),
                                "ServiceEntry addresses are required for this protocol.".to_owned(),
                            )
                            .help = Some(format!(
                                "without `addresses`, a sidecar's listener for TCP port {} takes every connection to that port, whatever its destination; give the ServiceEntry its addresses, or let the DNS proxy allocate them (proxyMetadata ISTIO_META_DNS_CAPTURE and ISTIO_META_DNS_AUTO_ALLOCATE)",
                                p.number
                            ));
                        }
                    }
                }
                entry_labels.extend(se.endpoints.iter().map(|e| &e.labels));
                for h in &se.hosts {
                    services.insert(h.to_ascii_lowercase());
                    let export: Vec<String> = if se.export_to.is_empty() {
                        vec!["*".to_owned()]
                    } else {
                        se.export_to
                            .iter()
                            .map(|e| if e == "." { ns.to_owned() } else { e.clone() })
                            .collect()
                    };
                    scopes.entry(cx.fqdn(h, ns)).or_default().extend(export);
                    let entry = se_ports.entry(cx.fqdn(h, ns)).or_insert_with(|| SePorts {
                        ports: Vec::new(),
                        owners: Vec::new(),
                        namespace: ns,
                        export_all: false,
                    });
                    // several ServiceEntries for one host: any of their ports is known
                    entry.ports.extend(se.ports.iter().map(|p| p.number));
                    entry.owners.push(o);
                    entry.export_all |=
                        se.export_to.is_empty() || se.export_to.iter().any(|e| e == "*");
                    se_hosts.push((o, h));
                    if let Some(sel) = &se.workload_selector {
                        service_selectors.insert(h.to_ascii_lowercase(), &sel.labels);
                    }
                }
            }
            Spec::Workload(w) => workloads.push((o, &w.labels)),
            Spec::WorkloadEntry(we) => entry_labels.push(&we.labels),
            Spec::Gateway(_) => {
                gateways.insert((ns.to_owned(), o.metadata.name.clone()), o);
            }
            Spec::VirtualService(_) => {
                vs_names.insert((ns.to_owned(), o.metadata.name.clone()));
            }
            _ => {}
        }
    }
    let workloads_known = !workloads.is_empty();
    // istioctl analyze's files-only stand-in for the ingress gateway (AddDefaultResources):
    // seen by the Gateway analyzers only, so that it decides nothing about other workloads
    let defaults = if opts.default_ingress
        && !objs.iter().any(|o| {
            o.kind == Kind::Service
                && o.metadata.namespace == opts.root_namespace
                && o.metadata.name == DEFAULT_INGRESS
        }) {
        default_ingress(&opts.root_namespace)
    } else {
        Vec::new()
    };
    let gw_objs: Vec<&ConfigObject> = objs.iter().copied().chain(&defaults).collect();
    let gw_workloads: Vec<(&ConfigObject, &Labels)> = workloads
        .iter()
        .copied()
        .chain(defaults.iter().filter_map(|o| match &o.spec {
            Spec::Workload(w) => Some((o, &w.labels)),
            _ => None,
        }))
        .collect();
    let wildcard_services: Vec<&str> = services
        .iter()
        .filter(|s| host::is_wildcard(s))
        .map(String::as_str)
        .collect();
    // istioctl's `GetDestinationHost`: a destination host of a VirtualService in `vs_ns`
    // exported to `vs_export` is found when exported to all namespaces, to `vs_ns` (the
    // VirtualService not exported elsewhere) or to one the VirtualService is exported to;
    // or under a wildcard ServiceEntry host exported to all or to `vs_ns`
    let host_visible = |fq: &str, raw: &str, vs_ns: &str, vs_export: &[String]| -> bool {
        let exported = |scope: &str| {
            scope == "*"
                || if vs_export.is_empty() {
                    scope == vs_ns
                } else {
                    vs_export
                        .iter()
                        .any(|e| e == scope || (e == "." && scope == vs_ns))
                }
        };
        if scopes
            .get(fq)
            .is_some_and(|s| s.iter().any(|scope| exported(scope)))
        {
            return true;
        }
        let raw = raw.to_ascii_lowercase();
        scopes.iter().any(|(h, s)| {
            host::is_wildcard(h)
                && s.iter().any(|scope| scope == "*" || scope == vs_ns)
                && raw.strip_prefix('*').unwrap_or(&raw).ends_with(&h[1..])
        })
    };
    let host_known = |h: &str| -> bool {
        services.contains(h)
            || wildcard_services.iter().any(|s| host::matches(s, h))
            || (host::is_wildcard(h) && services.iter().any(|s| host::matches(h, s)))
    };

    // DestinationRules by namespace and resolved host.
    struct DrInfo<'a> {
        obj: &'a ConfigObject,
        host: String,
        subsets: Vec<&'a str>,
        export_to: &'a [String],
        has_selector: bool,
    }
    // Subset lookups consult every loaded definition (files often hold alternatives of one
    // DestinationRule); conflict checks use the last definition only.
    let mut drs: Vec<DrInfo<'_>> = Vec::new();
    for o in objects {
        if let Spec::DestinationRule(dr) = &o.spec {
            drs.push(DrInfo {
                obj: o,
                host: cx.fqdn(&dr.host, &o.metadata.namespace),
                subsets: dr.subsets.iter().map(|s| s.name.as_str()).collect(),
                export_to: &dr.export_to,
                has_selector: dr.workload_selector.is_some(),
            });
        }
    }

    // Index: exact hosts by name, wildcard hosts apart (a destination is checked against its
    // exact entry and the wildcards only).
    let mut dr_exact: HashMap<&str, Vec<&DrInfo<'_>>> = HashMap::new();
    let mut dr_wild: Vec<&DrInfo<'_>> = Vec::new();
    for d in &drs {
        if host::is_wildcard(&d.host) {
            dr_wild.push(d);
        } else {
            dr_exact.entry(d.host.as_str()).or_default().push(d);
        }
    }
    let dr_candidates = |fq: &str| -> Vec<&DrInfo<'_>> {
        let mut v: Vec<&DrInfo<'_>> = dr_exact.get(fq).cloned().unwrap_or_default();
        v.extend(dr_wild.iter().copied());
        v
    };

    // Multiple DRs for one host in one namespace.
    let mut by_host: BTreeMap<(&str, &str), Vec<&DrInfo<'_>>> = BTreeMap::new();
    for d in &drs {
        let is_last = standing.contains(&std::ptr::from_ref(d.obj));
        if !d.has_selector && is_last {
            by_host
                .entry((d.obj.metadata.namespace.as_str(), d.host.as_str()))
                .or_default()
                .push(d);
        }
    }
    for ((ns, h), list) in &by_host {
        if list.len() > 1 {
            let names: Vec<String> = list.iter().map(|d| display_name(d.obj)).collect();
            // istiod merges rules for one host only when their exportTo (as written) agree
            let export_set = |d: &DrInfo<'_>| -> Vec<String> {
                let mut v = match &d.obj.spec {
                    Spec::DestinationRule(dr) => dr.export_to.clone(),
                    _ => Vec::new(),
                };
                v.sort();
                v.dedup();
                v
            };
            let same_export = list.iter().all(|d| export_set(d) == export_set(list[0]));
            let message = if same_export {
                format!(
                    "DestinationRules {} in namespace {ns} all apply to host {h}: Istio merges them (subsets are combined, only the first trafficPolicy is used)",
                    names.join(", ")
                )
            } else {
                format!(
                    "DestinationRules {} in namespace {ns} all apply to host {h} with different exportTo: since 1.24 (ENABLE_ENHANCED_DESTINATIONRULE_MERGE) Istio merges only those whose exportTo agree (or a superset into a narrower one), so a client may not get the others' subsets or trafficPolicy",
                    names.join(", ")
                )
            };
            for d in &list[1..] {
                cx.report(
                    d.obj,
                    Severity::Warning,
                    codes::MULTIPLE_DRS_FOR_HOST,
                    "spec.host",
                    message.clone(),
                )
                .help = Some("merge them into one DestinationRule".to_owned());
            }
        }
    }

    // A VirtualService without hosts is a delegate (istiod's ValidateVirtualService accepts
    // it and enforces the delegate rules): it applies only through a root VirtualService that
    // delegates to it, which may well be in a file not given, so this is only a hint.
    let mut delegated: HashSet<(String, String)> = HashSet::new();
    for o in &objs {
        if let Spec::VirtualService(vs) = &o.spec {
            for r in &vs.http {
                if let Some(d) = &r.delegate {
                    let ns = d
                        .namespace
                        .clone()
                        .unwrap_or_else(|| o.metadata.namespace.clone());
                    delegated.insert((ns, d.name.clone()));
                }
            }
        }
    }
    for o in &objs {
        if let Spec::VirtualService(vs) = &o.spec {
            let key = (o.metadata.namespace.clone(), o.metadata.name.clone());
            if vs.hosts.is_empty() && !delegated.contains(&key) {
                cx.report(
                    o,
                    Severity::Info,
                    codes::UNREFERENCED_DELEGATE,
                    "spec",
                    format!(
                        "VirtualService {}/{} has no hosts, so it is a delegate, and no loaded VirtualService delegates to it",
                        key.0, key.1
                    ),
                )
                .help = Some(format!(
                    "it applies only through a root VirtualService with `delegate: {{name: {}, namespace: {}}}`",
                    key.1, key.0
                ));
            }
        }
    }

    // istioctl's `initVirtualServiceDestinations` (IST0140): per VirtualService, the hosts
    // it routes by subset, for destinations naming one of its own hosts as written
    let mut subset_routed: BTreeMap<(&str, &str), HashSet<&str>> = BTreeMap::new();
    for o in &objs {
        if let Spec::VirtualService(vs) = &o.spec {
            for d in vs.http.iter().flat_map(|r| r.route.iter()) {
                let d = &d.destination;
                if d.subset.as_deref().is_some_and(|s| !s.is_empty()) && vs.hosts.contains(&d.host)
                {
                    subset_routed
                        .entry((&o.metadata.namespace, &o.metadata.name))
                        .or_default()
                        .insert(&d.host);
                }
            }
        }
    }

    // Per-object checks.
    let mut mesh_hosts: BTreeMap<String, Vec<&ConfigObject>> = BTreeMap::new();
    let mut sidecars_without_selector: BTreeMap<&str, Vec<&ConfigObject>> = BTreeMap::new();
    for o in &objs {
        let ns = o.metadata.namespace.as_str();
        match &o.spec {
            Spec::VirtualService(vs) => {
                let check_dest = |cx: &mut Ctx<'_>, path: String, d: &Destination| {
                    if d.host.is_empty()
                        || crate::validate::validate_wildcard_domain(&d.host).is_err()
                    {
                        return;
                    }
                    let fq = cx.fqdn(&d.host, ns);
                    if let Some(subset) = &d.subset {
                        let candidates = dr_candidates(&fq);
                        // the loaded DestinationRules that apply to a host from here
                        let visible_for = |fq: &str, candidates: &[&DrInfo<'_>]| -> Vec<bool> {
                            candidates
                                .iter()
                                .map(|dr| {
                                    (dr.obj.metadata.namespace == ns
                                        || exported_to(
                                            dr.export_to,
                                            &dr.obj.metadata.namespace,
                                            ns,
                                        ))
                                        && host::matches(&dr.host, fq)
                                        && (!host::is_wildcard(&dr.host)
                                            || host::subset_of(fq, &dr.host))
                                })
                                .collect()
                        };
                        let seen = visible_for(&fq, &candidates);
                        let visible: Vec<&&DrInfo<'_>> = candidates
                            .iter()
                            .zip(&seen)
                            .filter_map(|(dr, v)| v.then_some(dr))
                            .collect();
                        let defined = visible
                            .iter()
                            .any(|dr| dr.subsets.contains(&subset.as_str()));
                        // an ExternalName alias of a loaded service routes to that
                        // service's subsets (istiod's alias mode)
                        let alias_target = external_names
                            .get(&fq)
                            .filter(|t| {
                                service_ports.contains_key(*t) && !external_names.contains_key(*t)
                            })
                            .filter(|t| {
                                let c = dr_candidates(t);
                                visible_for(t, &c)
                                    .iter()
                                    .zip(&c)
                                    .any(|(v, dr)| *v && dr.subsets.contains(&subset.as_str()))
                            });
                        if !defined {
                            let close = candidates
                                .iter()
                                .filter(|dr| dr.host == fq)
                                .flat_map(|dr| dr.subsets.iter().copied())
                                .collect::<Vec<_>>();
                            // istioctl analyze reports IST0101 as an error, but it sees the
                            // whole cluster: the subset is definitely missing only when a
                            // DestinationRule for exactly this host is loaded and visible;
                            // otherwise the rule is probably in a file not given
                            let loaded_for_host = visible.iter().any(|dr| dr.host == fq);
                            let severity = if loaded_for_host {
                                Severity::Error
                            } else {
                                Severity::Warning
                            };
                            let d = cx.report(
                                o,
                                severity,
                                codes::REFERENCED_RESOURCE_NOT_FOUND,
                                &format!("{path}.subset"),
                                format!(
                                    "Referenced host+subset in destinationrule not found: \"{}+{subset}\"",
                                    d.host
                                ),
                            );
                            d.help = Some(if let Some(target) = alias_target {
                                format!("{fq} is an ExternalName alias of {target}: inmesh routes this to {target}'s subset `{subset}`, which its DestinationRule defines (istiod's alias mode); istioctl analyze reports the alias's own subset missing")
                            } else if close.is_empty() {
                                format!("no loaded DestinationRule defines subsets for {fq}: unless one elsewhere does, traffic to this route gets 503 (cluster not found)")
                            } else {
                                let sugg = crate::diag::did_you_mean(subset, close.iter().copied());
                                format!(
                                    "{}the DestinationRule for {fq} defines: {}",
                                    sugg.map(|s| format!("did you mean `{s}`? "))
                                        .unwrap_or_default(),
                                    close.join(", ")
                                )
                            });
                        }
                    }
                    // the ports istioctl checks the destination against (`GetDestinationHost`):
                    // the loaded Kubernetes Service's, else those of the ServiceEntries for
                    // the host, else those of a wildcard ServiceEntry host visible here
                    let known_ports = service_ports
                        .get(&fq)
                        .map(|p| (p, format!("service {fq} exposes")))
                        .or_else(|| {
                            // (istioctl compares the host as written; the longest
                            // suffix where several match, to be deterministic)
                            let raw = d.host.to_ascii_lowercase();
                            let raw = raw.trim_start_matches('*');
                            let wildcard = || {
                                se_ports
                                    .iter()
                                    .filter(|(h, e)| {
                                        host::is_wildcard(h)
                                            && (e.export_all || e.namespace == ns)
                                            && raw.ends_with(&h[1..])
                                    })
                                    .max_by(|a, b| a.0.len().cmp(&b.0.len()).then(b.0.cmp(a.0)))
                            };
                            let (se_host, e) = se_ports.get_key_value(&fq).or_else(wildcard)?;
                            let owners: Vec<String> = e
                                .owners
                                .iter()
                                .map(|o| format!("{}/{}", o.metadata.namespace, o.metadata.name))
                                .collect();
                            let (noun, verb) = if owners.len() > 1 {
                                ("ServiceEntries", "define")
                            } else {
                                ("ServiceEntry", "defines")
                            };
                            Some((
                                &e.ports,
                                format!("{noun} {} ({se_host}) {verb}", owners.join(", ")),
                            ))
                        });
                    if let Some((ports, source)) = known_ports {
                        match &d.port {
                            // (the loaded Service or ServiceEntries list all the
                            // ports: certain, an error as istioctl reports it)
                            Some(p) if !ports.contains(&p.number) => {
                                cx.report(
                                    o,
                                    Severity::Error,
                                    codes::REFERENCED_RESOURCE_NOT_FOUND,
                                    &format!("{path}.port.number"),
                                    format!(
                                        "Referenced host:port not found: \"{}:{}\"",
                                        d.host, p.number
                                    ),
                                )
                                .help = Some(format!(
                                    "{source} port(s) {}",
                                    ports
                                        .iter()
                                        .map(u32::to_string)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ));
                            }
                            None if ports.len() > 1 => {
                                // (Go's `%v` of a list: `[9080 9090]`)
                                let list: Vec<String> = ports.iter().map(u32::to_string).collect();
                                cx.report(
                                    o,
                                    Severity::Error,
                                    codes::DESTINATION_PORT_REQUIRED,
                                    &path,
                                    format!(
                                        "This VirtualService routes to a service {:?} that exposes multiple ports [{}]. Specifying a port in the destination is required to disambiguate.",
                                        d.host,
                                        list.join(" ")
                                    ),
                                );
                            }
                            _ => {}
                        }
                    }
                    let known = host_known(&fq) || host_known(&d.host.to_ascii_lowercase());
                    let what = if path.contains(".mirror") {
                        "mirror host"
                    } else {
                        "host"
                    };
                    let missing = if !registry_known {
                        None
                    } else if !known {
                        Some(format!(
                            "{fq} is neither a loaded Kubernetes Service nor a ServiceEntry host; requests routed there get 503"
                        ))
                    } else if !host_visible(&fq, &d.host, ns, &vs.export_to) {
                        Some(format!(
                            "{fq} is loaded but not exported to namespace {ns} (its ServiceEntry `exportTo` or Service `networking.istio.io/exportTo` annotation), nor to the namespaces this VirtualService is exported to"
                        ))
                    } else {
                        None
                    };
                    if let Some(help) = missing {
                        cx.report(
                            o,
                            Severity::Warning,
                            codes::REFERENCED_RESOURCE_NOT_FOUND,
                            &format!("{path}.host"),
                            format!("Referenced {what} not found: \"{}\"", d.host),
                        )
                        .help = Some(help);
                    }
                };
                for (i, r) in vs.http.iter().enumerate() {
                    for (j, d) in r.route.iter().enumerate() {
                        check_dest(
                            &mut cx,
                            format!("spec.http[{i}].route[{j}].destination"),
                            &d.destination,
                        );
                    }
                    if let Some(m) = &r.mirror {
                        check_dest(&mut cx, format!("spec.http[{i}].mirror"), m);
                    }
                    for (j, m) in r.mirrors.iter().enumerate() {
                        check_dest(
                            &mut cx,
                            format!("spec.http[{i}].mirrors[{j}].destination"),
                            &m.destination,
                        );
                    }
                    if let Some(dl) = &r.delegate {
                        let dns = dl
                            .namespace
                            .clone()
                            .filter(|n| !n.is_empty())
                            .unwrap_or_else(|| ns.to_owned());
                        if !dl.name.is_empty()
                            && !vs_names.contains(&(dns.clone(), dl.name.clone()))
                        {
                            // a warning: the delegate may be in a file not given
                            cx.report(
                                o,
                                Severity::Warning,
                                codes::REFERENCED_RESOURCE_NOT_FOUND,
                                &format!("spec.http[{i}].delegate"),
                                format!(
                                    "Referenced VirtualService not found: \"{dns}/{}\"",
                                    dl.name
                                ),
                            )
                            .help = Some(format!(
                                "no VirtualService {dns}/{} among the loaded files: unless it exists in the cluster and is exported to this namespace, istiod drops this route and its requests fall through to the next routes (404 only if none matches)",
                                dl.name
                            ));
                        }
                    }
                }
                // istioctl's `analyzeSubset` (IST0140): a VirtualService bound to gateways
                // routing to a host without a subset, where another VirtualService routes
                // that host (as written) by subsets: requests through the gateway go to the
                // host's whole service, not by those subsets
                if !vs.gateways.is_empty() {
                    for (i, r) in vs.http.iter().enumerate() {
                        for (j, d) in r.route.iter().enumerate() {
                            let d = &d.destination;
                            if d.subset.as_deref().is_some_and(|s| !s.is_empty()) {
                                continue;
                            }
                            for ((sns, sname), hosts) in &subset_routed {
                                if !hosts.contains(d.host.as_str()) {
                                    continue;
                                }
                                cx.report(
                                    o,
                                    Severity::Warning,
                                    codes::INGRESS_ROUTE_RULES_NOT_AFFECTED,
                                    &format!("spec.http[{i}].route[{j}].destination.host"),
                                    format!(
                                        "Subset in virtual service {sns}/{sname} has no effect on ingress gateway {ns}/{} requests",
                                        o.metadata.name
                                    ),
                                )
                                .help = Some(format!(
                                    "requests through the gateway are sent to {} as a whole; name a subset here (the gateway's own route) for them to follow {sns}/{sname}'s split",
                                    d.host
                                ));
                            }
                        }
                    }
                }
                for (i, r) in vs.tls.iter().enumerate() {
                    for (j, d) in r.route.iter().enumerate() {
                        check_dest(
                            &mut cx,
                            format!("spec.tls[{i}].route[{j}].destination"),
                            &d.destination,
                        );
                    }
                }
                for (i, r) in vs.tcp.iter().enumerate() {
                    for (j, d) in r.route.iter().enumerate() {
                        check_dest(
                            &mut cx,
                            format!("spec.tcp[{i}].route[{j}].destination"),
                            &d.destination,
                        );
                    }
                }

                // Gateways.
                let mut refs: Vec<(String, &str)> = vs
                    .gateways
                    .iter()
                    .enumerate()
                    .map(|(i, g)| (format!("spec.gateways[{i}]"), g.as_str()))
                    .collect();
                for (i, r) in vs.http.iter().enumerate() {
                    for (j, m) in r.matches.iter().enumerate() {
                        for (k, g) in m.gateways.iter().enumerate() {
                            refs.push((
                                format!("spec.http[{i}].match[{j}].gateways[{k}]"),
                                g.as_str(),
                            ));
                        }
                    }
                }
                let mut checked = HashSet::new();
                for (path, g) in refs {
                    if g == "mesh" {
                        continue;
                    }
                    let key = resolve_gateway(g, ns);
                    if !checked.insert(key.clone()) {
                        continue;
                    }
                    match gateways.get(&key) {
                        None => {
                            // a warning: the Gateway is often applied from another file
                            // (istio-system/ingressgateway)
                            cx.report(
                                o,
                                Severity::Warning,
                                codes::REFERENCED_RESOURCE_NOT_FOUND,
                                &path,
                                format!("Referenced gateway not found: \"{}/{}\"", key.0, key.1),
                            )
                            .help = Some(format!(
                                "no Gateway {}/{} among the loaded files; a gateway reference is `name` (same namespace) or `namespace/name`",
                                key.0, key.1
                            ));
                        }
                        Some(gw_obj) => {
                            if let Spec::Gateway(gw) = &gw_obj.spec {
                                let gw_ns = gw_obj.metadata.namespace.as_str();
                                let server_hosts: Vec<(&str, &str)> = gw
                                    .servers
                                    .iter()
                                    .flat_map(|s| s.hosts.iter())
                                    .map(|h| match h.split_once('/') {
                                        Some((n, d)) => (n, d),
                                        None => ("*", h.as_str()),
                                    })
                                    .collect();
                                let missing: Vec<&str> = vs
                                    .hosts
                                    .iter()
                                    .filter(|h| {
                                        !server_hosts.iter().any(|(hns, dns)| {
                                            let ns_ok = *hns == "*"
                                                || *hns == ns
                                                || (*hns == "." && gw_ns == ns);
                                            ns_ok
                                                && host::matches(
                                                    &dns.to_ascii_lowercase(),
                                                    &h.to_ascii_lowercase(),
                                                )
                                        })
                                    })
                                    .map(String::as_str)
                                    .collect();
                                // istioctl's `vsHostInGateway`: reported when no host of
                                // the VirtualService is among the Gateway's, listing them all
                                if missing.len() == vs.hosts.len()
                                    && !missing.is_empty()
                                    && !server_hosts.is_empty()
                                {
                                    cx.report(
                                        o,
                                        Severity::Warning,
                                        codes::VS_HOST_NOT_IN_GATEWAY,
                                        &path,
                                        format!(
                                            "one or more host [{}] defined in VirtualService {ns}/{} not found in Gateway {}/{}.",
                                            vs.hosts.join(" "),
                                            o.metadata.name,
                                            key.0,
                                            key.1
                                        ),
                                    );
                                }
                            }
                        }
                    }
                }

                let to_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
                if to_mesh {
                    for h in &vs.hosts {
                        mesh_hosts.entry(cx.fqdn(h, ns)).or_default().push(o);
                    }
                }
            }
            Spec::DestinationRule(dr) => {
                let fq = cx.fqdn(&dr.host, ns);
                if registry_known && !host_known(&fq) {
                    let literal = se_hosts
                        .iter()
                        .find(|(_, h)| h.eq_ignore_ascii_case(&dr.host) && !dr.host.contains('.'));
                    let d = cx.report(
                        o,
                        Severity::Warning,
                        codes::UNKNOWN_DR_HOST,
                        "spec.host",
                        format!(
                            "The host {} defined in the DestinationRule does not match any services in the mesh.",
                            dr.host
                        ),
                    );
                    d.help = Some(match literal {
                        Some((se, h)) => format!(
                            "the DestinationRule's short host resolves to {fq}, but ServiceEntry {}/{} hosts are used literally (`{h}`): give the ServiceEntry an FQDN-looking host and use the same host here",
                            se.metadata.namespace, se.metadata.name
                        ),
                        None => format!("{fq} is neither a loaded Kubernetes Service nor a ServiceEntry host"),
                    });
                }
                // istioctl's PodNotSelectedAnalyzer: a subset whose labels (with the
                // service's selector) no pod has (here: no loaded pod or workload
                // controller's template, and only when some are loaded)
                if workloads_known && host_known(&fq) {
                    let base = service_selectors.get(&fq).copied();
                    for (i, subset) in dr.subsets.iter().enumerate() {
                        let selects = |l: &Labels| {
                            base.is_none_or(|b| crate::names::labels_match(b, l))
                                && crate::names::labels_match(&subset.labels, l)
                        };
                        if !workloads.iter().any(|(_, l)| selects(l))
                            && !entry_labels.iter().any(|l| selects(l))
                        {
                            cx.report(
                                o,
                                Severity::Error,
                                codes::SUBSET_SELECTS_NO_PODS,
                                &format!("spec.subsets[{i}]"),
                                format!(
                                    "The Subset {} defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
                                    subset.name
                                ),
                            );
                        }
                    }
                }
                if let Some(tp) = &dr.traffic_policy {
                    if let Some(tls) = &tp.tls
                        && lacks_ca(tls, dr.workload_selector.is_some())
                    {
                        cx.report(
                                o,
                                Severity::Warning,
                                codes::NO_SERVER_CERT_VERIFICATION_DR,
                                "spec.trafficPolicy.tls",
                                format!(
                                    "DestinationRule {ns}/{} in namespace {ns} has TLS mode set to {} but no caCertificates are set to validate server identity for host: {}",
                                    o.metadata.name,
                                    tls_mode(tls.mode),
                                    dr.host
                                ),
                            );
                    }
                    for (i, pl) in tp.port_level_settings.iter().enumerate() {
                        if let Some(tls) = &pl.tls
                            && lacks_ca(tls, dr.workload_selector.is_some())
                        {
                            let port = pl.port.map(|p| p.number).unwrap_or(0);
                            cx.report(
                                    o,
                                    Severity::Warning,
                                    codes::NO_SERVER_CERT_VERIFICATION_PORT,
                                    &format!("spec.trafficPolicy.portLevelSettings[{i}].tls"),
                                    format!(
                                        "DestinationRule {ns}/{} in namespace {ns} has TLS mode set to {} but no caCertificates are set to validate server identity for host: {} at port {port}",
                                        o.metadata.name,
                                        tls_mode(tls.mode),
                                        dr.host
                                    ),
                                );
                        }
                    }
                }
            }
            Spec::Gateway(gw) => {
                if gw_workloads.is_empty() {
                    continue;
                }
                let Some(sel) = &gw.selector else { continue };
                if sel.is_empty() {
                    continue;
                }
                let matched: Vec<&(&ConfigObject, &Labels)> = gw_workloads
                    .iter()
                    .filter(|(_, l)| selector_matches(sel, l))
                    .collect();
                if matched.is_empty() {
                    cx.report(
                        o,
                        Severity::Warning,
                        codes::REFERENCED_RESOURCE_NOT_FOUND,
                        "spec.selector",
                        format!("Referenced selector not found: \"{}\"", fmt_labels(sel)),
                    )
                    .help = Some(
                        "no loaded Pod or Deployment carries these labels; the gateway workload may live elsewhere (e.g. istio-system)".to_owned(),
                    );
                    continue;
                }
                // The TCP ports of the Services selecting those workloads, and their target
                // ports: a Gateway server's port may be the Service's port (istiod maps it
                // to the target port) or the target port the proxy listens on (istioctl's
                // IngressGatewayPortAnalyzer has compared either, by version)
                let mut exposed: HashSet<u32> = HashSet::new();
                for (wo, wl) in &matched {
                    for s in &gw_objs {
                        if let Spec::Service(svc) = &s.spec
                            && s.metadata.namespace == wo.metadata.namespace
                            && svc
                                .selector
                                .as_ref()
                                .is_some_and(|ss| !ss.is_empty() && selector_matches(ss, wl))
                        {
                            exposed.extend(
                                svc.ports
                                    .iter()
                                    .filter(|p| {
                                        p.protocol
                                            .as_deref()
                                            .is_none_or(|pr| pr.eq_ignore_ascii_case("TCP"))
                                    })
                                    .flat_map(|p| {
                                        let target = match p.target_port {
                                            Some(crate::model::IntOrString::Int(t)) => Some(t),
                                            _ => None,
                                        };
                                        std::iter::once(p.port).chain(target)
                                    }),
                            );
                        }
                    }
                }
                if exposed.is_empty() {
                    continue;
                }
                let stand_in = matched
                    .iter()
                    .all(|(w, _)| defaults.iter().any(|d| std::ptr::eq(*w, d)));
                for (i, s) in gw.servers.iter().enumerate() {
                    if s.port.number != 0 && !exposed.contains(&s.port.number) {
                        let d = cx.report(
                            o,
                            Severity::Warning,
                            codes::GATEWAY_PORT_NOT_ON_WORKLOAD,
                            &format!("spec.servers[{i}].port.number"),
                            format!(
                                "The gateway is listening on a target port (port {}) that is not defined in the Service associated with its workload instances (Pod selector {}). If you need to access the gateway port through the gateway Service, it will not be available.",
                                s.port.number,
                                fmt_labels(sel)
                            ),
                        );
                        if stand_in {
                            d.help = Some(format!(
                                "no loaded workload has these labels: compared, as istioctl analyze does on files, with its stand-in `{}/{DEFAULT_INGRESS}` Service (TCP ports 80, 443, 31400, 15443); give your gateway's Service to compare with it",
                                opts.root_namespace
                            ));
                        }
                    }
                }
            }
            Spec::Sidecar(sc) if sc.workload_selector.is_none() => {
                sidecars_without_selector.entry(ns).or_default().push(o);
            }
            Spec::AuthorizationPolicy(_)
            | Spec::PeerAuthentication(_)
            | Spec::RequestAuthentication(_) => {
                let sel = match &o.spec {
                    Spec::AuthorizationPolicy(p) => p.selector.as_ref(),
                    Spec::PeerAuthentication(p) => p.selector.as_ref(),
                    Spec::RequestAuthentication(p) => p.selector.as_ref(),
                    _ => None,
                };
                let root = ns == opts.root_namespace;
                let Some(sel) = sel else {
                    // istioctl's AuthorizationPoliciesAnalyzer: a namespace-wide policy of a
                    // namespace without workloads (only when the files hold workloads)
                    if let Spec::AuthorizationPolicy(p) = &o.spec
                        && workloads_known
                        && !root
                        && p.target_refs.is_empty()
                        && p.target_ref.is_none()
                        && !workloads.iter().any(|(w, _)| w.metadata.namespace == ns)
                    {
                        cx.report(
                            o,
                            Severity::Warning,
                            codes::NO_MATCHING_WORKLOADS,
                            "metadata.namespace",
                            "No matching workloads for this resource with the following labels: "
                                .to_owned(),
                        )
                        .help = Some(format!(
                            "no loaded workload is in namespace {ns}: the policy applies to none"
                        ));
                    }
                    continue;
                };
                if sel.match_labels.is_empty() {
                    continue;
                }
                let in_scope: Vec<_> = workloads
                    .iter()
                    .filter(|(w, _)| root || w.metadata.namespace == ns)
                    .collect();
                if in_scope.is_empty() {
                    continue;
                }
                if !in_scope
                    .iter()
                    .any(|(_, l)| selector_matches(&sel.match_labels, l))
                {
                    cx.report(
                        o,
                        Severity::Warning,
                        codes::NO_MATCHING_WORKLOADS,
                        "spec.selector.matchLabels",
                        format!(
                            "No matching workloads for this resource with the following labels: {}",
                            fmt_labels(&sel.match_labels)
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    // istioctl's ConflictingMeshGatewayHostsAnalyzer: VirtualServices bound to the mesh
    // conflict on a host that some namespace sees in both (exportTo); a host of one exported
    // to a few namespaces also conflicts with an overlapping wildcard host of one exported
    // to all. Each VirtualService is reported once, for its first conflicting host.
    let mut reported: HashSet<*const ConfigObject> = HashSet::new();
    for (h, list) in &mesh_hosts {
        let mut conflicting: Vec<&ConfigObject> = list
            .iter()
            .filter(|a| {
                list.iter()
                    .any(|b| !std::ptr::eq(**a, *b) && visible_together(a, b))
            })
            .copied()
            .collect();
        let scoped: Vec<&ConfigObject> = list
            .iter()
            .filter(|o| vs_visibility(o).is_some())
            .copied()
            .collect();
        if !scoped.is_empty() {
            // the hosts of VirtualServices exported to all namespaces that overlap this one
            let global: Vec<&ConfigObject> = mesh_hosts
                .iter()
                .filter(|(g, _)| *g != h && host::matches(g, h))
                .flat_map(|(_, l)| l.iter().copied())
                .filter(|o| vs_visibility(o).is_none())
                .collect();
            if !global.is_empty() {
                for o in scoped.into_iter().chain(global) {
                    if !conflicting.iter().any(|c| std::ptr::eq(*c, o)) {
                        conflicting.push(o);
                    }
                }
            }
        }
        if conflicting.len() < 2 {
            continue;
        }
        let names: Vec<String> = conflicting
            .iter()
            .map(|o| format!("{}/{}", o.metadata.namespace, o.metadata.name))
            .collect();
        for o in conflicting {
            if !reported.insert(std::ptr::from_ref(o)) {
                continue;
            }
            let idx = match &o.spec {
                Spec::VirtualService(vs) => vs
                    .hosts
                    .iter()
                    .position(|x| {
                        let f = cx.fqdn(x, &o.metadata.namespace);
                        f == *h || host::matches(&f, h)
                    })
                    .unwrap_or(0),
                _ => 0,
            };
            cx.report(
                o,
                Severity::Error,
                codes::CONFLICTING_MESH_GATEWAY_VS_HOSTS,
                &format!("spec.hosts[{idx}]"),
                format!(
                    "The VirtualServices {} associated with mesh gateway define the same host {h} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.",
                    names.join(",")
                ),
            );
        }
    }

    // istioctl's sidecar SelectorAnalyzer: a Sidecar has no effect in an ambient namespace
    // (`istio.io/dataplane-mode: ambient`) or on an ambient pod
    // (`ambient.istio.io/redirection: enabled`), where no sidecar runs
    // (istioctl's `NamespaceInAmbientMode`: sidecar injection, by label or revision, wins)
    let ambient_namespaces: HashSet<&str> = objs
        .iter()
        .filter(|o| {
            let l = &o.metadata.labels;
            o.kind == Kind::Namespace
                && l.get("istio.io/dataplane-mode").map(String::as_str) == Some("ambient")
                && !sidecar_injected(l)
        })
        .map(|o| o.metadata.name.as_str())
        .collect();
    let ineffective = |cx: &mut Ctx<'_>, o: &ConfigObject, why: &str| {
        cx.report(
            o,
            Severity::Warning,
            codes::INEFFECTIVE_POLICY,
            "metadata.name",
            format!("The policy has no impact: {why}."),
        );
    };
    for (ns, list) in &sidecars_without_selector {
        if ambient_namespaces.contains(ns) {
            for o in list {
                ineffective(
                    &mut cx,
                    o,
                    "namespace is in ambient mode, the policy has no impact",
                );
            }
            continue;
        }
        if list.len() > 1 {
            let names: Vec<_> = list.iter().map(|o| o.metadata.name.as_str()).collect();
            for o in list {
                cx.report(
                    o,
                    Severity::Error,
                    codes::MULTIPLE_SIDECARS_WITHOUT_SELECTOR,
                    "spec",
                    format!(
                        "The Sidecars [{}] in namespace {ns} have no workload selector: only one selector-less Sidecar per namespace is allowed",
                        names.join(", ")
                    ),
                );
            }
        }
    }

    // Gateway credentials, when the files contain Secrets.
    let secrets: Vec<(&ConfigObject, &crate::model::KubeSecret)> = objs
        .iter()
        .filter_map(|o| o.spec.as_secret().map(|s| (*o, s)))
        .collect();
    if !secrets.is_empty() {
        for o in &objs {
            let Some(gw) = o.spec.as_gateway() else {
                continue;
            };
            let mut namespaces: Vec<&str> = match &gw.selector {
                Some(sel) if !sel.is_empty() => gw_workloads
                    .iter()
                    .filter(|(_, l)| selector_matches(sel, l))
                    .map(|(w, _)| w.metadata.namespace.as_str())
                    .collect(),
                _ => Vec::new(),
            };
            if namespaces.is_empty() {
                // istioctl's SecretAnalyzer stops at a selector that matches no workload
                // (reported above): it looks for no credential
                if gw.selector.as_ref().is_some_and(|s| !s.is_empty()) && !gw_workloads.is_empty() {
                    continue;
                }
                namespaces.push(o.metadata.namespace.as_str());
            }
            namespaces.sort_unstable();
            namespaces.dedup();
            for (i, server) in gw.servers.iter().enumerate() {
                let Some(tls) = &server.tls else { continue };
                if !matches!(
                    tls.mode,
                    ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
                ) {
                    continue;
                }
                let mut names: Vec<(String, &str)> = Vec::new();
                if let Some(c) = tls.credential_name.as_deref().filter(|c| !c.is_empty()) {
                    names.push((format!("spec.servers[{i}].tls.credentialName"), c));
                }
                for (j, c) in tls.credential_names.iter().enumerate() {
                    names.push((format!("spec.servers[{i}].tls.credentialNames[{j}]"), c));
                }
                for (path, name) in names {
                    let found = secrets.iter().find(|(s, _)| {
                        s.metadata.name == name
                            && namespaces.contains(&s.metadata.namespace.as_str())
                    });
                    match found {
                        None => {
                            // a warning: Secrets are rarely all in the files given
                            cx.report(
                                o,
                                Severity::Warning,
                                codes::REFERENCED_RESOURCE_NOT_FOUND,
                                &path,
                                format!("Referenced credentialName not found: \"{name}\""),
                            )
                            .help = Some(format!(
                                "no Secret `{name}` in namespace {} among the loaded files: Istio reads gateway credentials from the namespace of the gateway workload",
                                namespaces.join(", ")
                            ));
                        }
                        Some((s, sec)) if !sec.has_server_credential() => {
                            cx.report(
                                o,
                                Severity::Error,
                                codes::INVALID_GATEWAY_CREDENTIAL,
                                &path,
                                format!(
                                    "The credential referenced by the gateway is invalid: Secret {}/{} holds neither `tls.crt` and `tls.key` nor `cert` and `key` (it has: {})",
                                    s.metadata.namespace,
                                    s.metadata.name,
                                    sec.keys.join(", ")
                                ),
                            );
                        }
                        Some((s, sec)) => {
                            if let Some(problem) = &sec.cert_problem {
                                cx.report(
                                    o,
                                    Severity::Error,
                                    codes::INVALID_GATEWAY_CREDENTIAL,
                                    &path,
                                    format!(
                                        "The credential referenced by the gateway is invalid: the certificate of Secret {}/{} cannot be served: {problem}",
                                        s.metadata.namespace, s.metadata.name
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    let selector_sidecars: Vec<&ConfigObject> = objs
        .iter()
        .filter(|o| matches!(&o.spec, Spec::Sidecar(sc) if sc.workload_selector.is_some()))
        .copied()
        .collect();
    if workloads_known && !selector_sidecars.is_empty() {
        let mut reported: HashSet<*const ConfigObject> = HashSet::new();
        for (w, labels) in &workloads {
            let selecting: Vec<&&ConfigObject> = selector_sidecars
                .iter()
                .filter(|o| o.metadata.namespace == w.metadata.namespace)
                .filter(|o| match &o.spec {
                    Spec::Sidecar(sc) => sc.workload_selector.as_ref().is_some_and(|s| {
                        !s.labels.is_empty() && selector_matches(&s.labels, labels)
                    }),
                    _ => false,
                })
                .collect();
            let ambient = match &w.spec {
                Spec::Workload(p) => {
                    p.annotations
                        .get("ambient.istio.io/redirection")
                        .map(String::as_str)
                        == Some("enabled")
                }
                _ => false,
            };
            if ambient {
                for o in &selecting {
                    if reported.insert(std::ptr::from_ref(**o)) {
                        ineffective(
                            &mut cx,
                            o,
                            "selected workload is in ambient mode, the policy has no impact",
                        );
                    }
                }
                continue;
            }
            if selecting.len() > 1 {
                let names: Vec<_> = selecting.iter().map(|o| o.metadata.name.as_str()).collect();
                for o in &selecting {
                    cx.report(
                        o,
                        Severity::Error,
                        codes::CONFLICTING_SIDECAR_SELECTORS,
                        "spec.workloadSelector",
                        format!(
                            "The Sidecars [{}] in namespace {} select the same workload {}: undefined behavior",
                            names.join(", "),
                            w.metadata.namespace,
                            w.metadata.name
                        ),
                    );
                }
            }
        }
    }

    // istioctl's sidecar `SelectorAnalyzer`: a Sidecar whose workload selector matches no
    // workload of its namespace (a warning: the files may not hold every pod)
    if workloads_known {
        for o in &selector_sidecars {
            // (only where the files hold workloads of the Sidecar's namespace)
            if !workloads
                .iter()
                .any(|(w, _)| w.metadata.namespace == o.metadata.namespace)
            {
                continue;
            }
            let Spec::Sidecar(sc) = &o.spec else { continue };
            let Some(sel) = sc
                .workload_selector
                .as_ref()
                .filter(|s| !s.labels.is_empty())
            else {
                continue;
            };
            let matched = workloads.iter().any(|(w, labels)| {
                w.metadata.namespace == o.metadata.namespace
                    && selector_matches(&sel.labels, labels)
            });
            if !matched {
                cx.report(
                    o,
                    Severity::Warning,
                    codes::REFERENCED_RESOURCE_NOT_FOUND,
                    "spec.workloadSelector.labels",
                    format!("Referenced selector not found: {:?}", fmt_labels(&sel.labels)),
                )
                .help = Some(format!(
                    "no loaded workload in namespace {} has these labels: the Sidecar applies to none (Istio: an error; the files may not hold every pod)",
                    o.metadata.namespace
                ));
            }
        }
    }

    conflicting_gateways(&mut cx, &objs, &gw_workloads);
    duplicate_certificates(&mut cx, &objs);
    deployment_services(&mut cx, &objs, &workloads);
    jwt_claim_routes(&mut cx, &objs, &gateways, &gw_workloads);
    policy_namespaces(&mut cx, &objs);
    cx.out.extend(annotations::annotations(&objs));

    cx.out
}

/// istioctl's `inMesh` for a loaded workload: its pod's `sidecar.istio.io/inject` label,
/// else the annotation (`true`/`false`), else its namespace's injection label
/// (`istio-injection: enabled`, or any `istio.io/rev`), else an `istio-proxy` container.
/// `None` when that comes down to a namespace the files do not hold.
fn in_mesh(w: &ConfigObject, objs: &[&ConfigObject]) -> Option<bool> {
    let Spec::Workload(pod) = &w.spec else {
        return Some(false);
    };
    const INJECT: &str = "sidecar.istio.io/inject";
    for v in [pod.labels.get(INJECT), pod.annotations.get(INJECT)]
        .into_iter()
        .flatten()
    {
        match v.as_str() {
            "true" => return Some(true),
            "false" => return Some(false),
            _ => {}
        }
    }
    if pod.containers.iter().any(|c| c == "istio-proxy") {
        return Some(true);
    }
    let ns = objs
        .iter()
        .find(|o| o.kind == Kind::Namespace && o.metadata.name == w.metadata.namespace)?;
    Some(sidecar_injected(&ns.metadata.labels))
}

/// A Namespace's labels turn sidecar injection on: `istio-injection: enabled`, or a
/// revision (`istio.io/rev`).
fn sidecar_injected(labels: &Labels) -> bool {
    labels.get("istio-injection").map(String::as_str) == Some("enabled")
        || labels.contains_key("istio.io/rev")
}

/// The name of istioctl's stand-in ingress gateway Service (MeshConfig `ingressService`'s
/// default).
const DEFAULT_INGRESS: &str = "istio-ingressgateway";

/// istioctl analyze's stand-in ingress gateway for files-only analysis (its
/// `defaultIstioIngressGateway`): a Pod labelled `istio: ingressgateway` and the Service
/// selecting it, in the root namespace.
fn default_ingress(root_namespace: &str) -> Vec<ConfigObject> {
    let yaml = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {DEFAULT_INGRESS}-dummypod, namespace: {root_namespace}, labels: {{istio: ingressgateway}}}}
spec: {{containers: [{{name: istio-proxy}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: {DEFAULT_INGRESS}, namespace: {root_namespace}}}
spec:
  selector: {{istio: ingressgateway}}
  ports:
  - {{name: http2, port: 80, protocol: TCP, targetPort: 80}}
  - {{name: https, port: 443, protocol: TCP, targetPort: 443}}
  - {{name: tcp, port: 31400, protocol: TCP, targetPort: 31400}}
  - {{name: tls, port: 15443, protocol: TCP, targetPort: 15443}}
"
    );
    crate::load::load_str(&yaml, "<istioctl's default ingress gateway>").objects
}

/// istioctl's `AuthorizationPoliciesAnalyzer` (`analyzeNamespaceNotFound`): a
/// `source.namespaces` or `notNamespaces` entry that names no loaded Namespace (`*` and
/// prefix or suffix wildcards as Istio matches them). Only when the files hold Namespace
/// objects; a warning, as the files may not hold every namespace (Istio: an error).
fn policy_namespaces(cx: &mut Ctx<'_>, objs: &[&ConfigObject]) {
    let namespaces: Vec<&str> = objs
        .iter()
        .filter(|o| o.kind == Kind::Namespace)
        .map(|o| o.metadata.name.as_str())
        .collect();
    if namespaces.is_empty() {
        return;
    }
    let matches = |exp: &str, ns: &str| {
        if exp == "*" {
            true
        } else if let Some(suffix) = exp.strip_prefix('*') {
            ns.ends_with(suffix)
        } else if let Some(prefix) = exp.strip_suffix('*') {
            ns.starts_with(prefix)
        } else {
            ns.eq_ignore_ascii_case(exp)
        }
    };
    for o in objs {
        let Spec::AuthorizationPolicy(p) = &o.spec else {
            continue;
        };
        for (i, rule) in p.rules.iter().enumerate() {
            for (j, from) in rule.from.iter().flatten().enumerate() {
                let Some(src) = &from.source else { continue };
                let lists = [
                    ("namespaces", &src.namespaces),
                    ("notNamespaces", &src.not_namespaces),
                ];
                for (field, list) in lists {
                    for (k, exp) in list.iter().enumerate() {
                        if namespaces.iter().any(|ns| matches(exp, ns)) {
                            continue;
                        }
                        cx.report(
                            o,
                            Severity::Warning,
                            codes::REFERENCED_RESOURCE_NOT_FOUND,
                            &format!("spec.rules[{i}].from[{j}].source.{field}[{k}]"),
                            format!("Referenced namespace not found: \"{exp}\""),
                        )
                        .help = Some(
                            "no loaded Namespace has this name (Istio: an error; the files may not hold every namespace)"
                                .to_owned(),
                        );
                    }
                }
            }
        }
    }
}

/// istioctl's deployment `ServiceAssociationAnalyzer`, for each loaded Deployment and the
/// loaded Services of its namespace whose (non-empty) selector its pod template matches:
/// one port number with different Kubernetes protocols (`TCP` by default) across them
/// (IST0116), and one `targetPort` (the port when unset) reached from different port
/// numbers (IST0137). Istio checks only Deployments in the mesh (injected): a Deployment
/// is skipped here when it is known not to be ([`in_mesh`]), and checked when the files
/// do not tell.
fn deployment_services(
    cx: &mut Ctx<'_>,
    objs: &[&ConfigObject],
    workloads: &[(&ConfigObject, &Labels)],
) {
    let services: Vec<(&ConfigObject, &crate::model::KubeService)> = objs
        .iter()
        .filter_map(|o| match &o.spec {
            Spec::Service(s) => Some((*o, s)),
            _ => None,
        })
        .collect();
    for (d, labels) in workloads.iter().filter(|(d, _)| d.kind == Kind::Deployment) {
        if in_mesh(d, objs) == Some(false) {
            continue;
        }
        let ns = d.metadata.namespace.as_str();
        let matching: Vec<_> = services
            .iter()
            .filter(|(o, s)| {
                o.metadata.namespace == ns
                    && s.selector
                        .as_ref()
                        .is_some_and(|sel| !sel.is_empty() && selector_matches(sel, labels))
            })
            .collect();
        if matching.is_empty() {
            continue;
        }
        // port -> protocol -> services; targetPort -> port -> service
        let mut by_port: BTreeMap<u32, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let mut by_target: BTreeMap<String, BTreeMap<u32, String>> = BTreeMap::new();
        for (o, s) in &matching {
            let name = format!("{}/{}", o.metadata.namespace, o.metadata.name);
            for p in &s.ports {
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
                by_port
                    .entry(p.port)
                    .or_default()
                    .entry(protocol)
                    .or_default()
                    .push(name.clone());
                let target = match &p.target_port {
                    Some(crate::model::IntOrString::Int(0)) | None => p.port.to_string(),
                    Some(crate::model::IntOrString::Int(n)) => n.to_string(),
                    Some(crate::model::IntOrString::String(t)) => t.clone(),
                };
                by_target
                    .entry(target)
                    .or_default()
                    .insert(p.port, name.clone());
            }
        }
        for (port, protocols) in &by_port {
            if protocols.len() > 1 {
                let mut names: Vec<&str> =
                    protocols.values().flatten().map(String::as_str).collect();
                names.sort_unstable();
                cx.report(
                    d,
                    Severity::Warning,
                    codes::DEPLOYMENT_MULTIPLE_SERVICES,
                    "metadata.name",
                    format!(
                        "This deployment {} is associated with multiple services using port {port} but different protocols: [{}]",
                        d.metadata.name,
                        names.join(" ")
                    ),
                );
            }
        }
        for (target, ports) in &by_target {
            if ports.len() > 1 {
                let mut names: Vec<&str> = ports.values().map(String::as_str).collect();
                names.sort_unstable();
                let numbers: Vec<String> = ports.keys().map(u32::to_string).collect();
                cx.report(
                    d,
                    Severity::Warning,
                    codes::DEPLOYMENT_CONFLICTING_PORTS,
                    "metadata.name",
                    format!(
                        "This deployment {} is associated with multiple services [{}] using targetPort {target:?} but different ports: [{}].",
                        d.metadata.name,
                        names.join(" "),
                        numbers.join(" ")
                    ),
                );
            }
        }
    }
}

/// istioctl's `JWTClaimRouteAnalyzer` (IST0149): a VirtualService routing by JWT claims
/// (`@request.auth.claims...` header keys) through a loaded Gateway, for each loaded
/// workload the Gateway selects that no RequestAuthentication (in `istio-system` or the
/// workload's namespace) applies to: no token is verified there, so no claim matches.
fn jwt_claim_routes(
    cx: &mut Ctx<'_>,
    objs: &[&ConfigObject],
    gateways: &HashMap<(String, String), &ConfigObject>,
    workloads: &[(&ConfigObject, &Labels)],
) {
    const CLAIM: &str = "@request.auth.claims";
    let authn: Vec<(&str, Option<&Labels>)> = objs
        .iter()
        .filter_map(|o| match &o.spec {
            Spec::RequestAuthentication(r) => Some((
                o.metadata.namespace.as_str(),
                r.selector.as_ref().map(|s| &s.match_labels),
            )),
            _ => None,
        })
        .collect();
    for o in objs {
        let Spec::VirtualService(vs) = &o.spec else {
            continue;
        };
        let key = vs.http.iter().enumerate().find_map(|(i, r)| {
            r.matches.iter().enumerate().find_map(|(j, m)| {
                let k = m.headers.keys().chain(m.without_headers.keys());
                k.clone()
                    .find(|k| k.starts_with(CLAIM))
                    .map(|k| (k.as_str(), format!("spec.http[{i}].match[{j}]")))
            })
        });
        let Some((key, path)) = key else { continue };
        for g in vs.gateways.iter().filter(|g| *g != "mesh") {
            let (gns, gname) = resolve_gateway(g, &o.metadata.namespace);
            let Some(Spec::Gateway(gw)) =
                gateways.get(&(gns.clone(), gname.clone())).map(|o| &o.spec)
            else {
                continue;
            };
            // (istioctl looks at Pods only: a controller's template is not a gateway pod)
            for (w, labels) in workloads.iter().filter(|(w, _)| w.kind == Kind::Pod) {
                let selected = gw
                    .selector
                    .as_ref()
                    .is_none_or(|s| selector_matches(s, labels));
                let verified = authn.iter().any(|(ns, sel)| {
                    (*ns == "istio-system" || *ns == w.metadata.namespace)
                        && sel.is_none_or(|s| selector_matches(s, labels))
                });
                if selected && !verified {
                    cx.report(
                        o,
                        Severity::Error,
                        codes::JWT_CLAIM_ROUTING_WITHOUT_AUTHN,
                        &path,
                        format!(
                            "The virtual service uses the JWT claim based routing (key: {key}) but found no request authentication for the gateway ({gns}/{gname}) pod ({}). The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing.",
                            w.metadata.name
                        ),
                    );
                }
            }
        }
    }
}

/// istioctl's `CertificateAnalyzer` (IST0138): a Gateway sharing a TLS certificate (the
/// same `credentialName`, or the same `serverCertificate` and `privateKey` files) with
/// another Gateway whose selector includes its own (any Gateway when it has none): a
/// client reusing an HTTP/2 connection for the other's hosts gets 404s. Reported on the
/// Gateway whose selector is within the other's (on both when they are equal), once per
/// pair of Gateways (istioctl: once per pair of servers).
fn duplicate_certificates(cx: &mut Ctx<'_>, objs: &[&ConfigObject]) {
    use crate::model::ServerTlsSettings;
    let gateways: Vec<(&ConfigObject, &crate::model::Gateway)> = objs
        .iter()
        .filter_map(|o| match &o.spec {
            Spec::Gateway(g) => Some((*o, g)),
            _ => None,
        })
        .collect();
    let same = |a: &ServerTlsSettings, b: &ServerTlsSettings| {
        let named = |t: &ServerTlsSettings| t.credential_name.clone().filter(|c| !c.is_empty());
        let file = |f: &Option<String>| f.clone().filter(|f| !f.is_empty());
        match (named(a), named(b)) {
            (Some(x), Some(y)) => x == y,
            (None, None) => match (file(&a.server_certificate), file(&b.server_certificate)) {
                (Some(x), Some(y)) if x == y => {
                    matches!((file(&a.private_key), file(&b.private_key)), (Some(k), Some(l)) if k == l)
                }
                _ => false,
            },
            _ => false,
        }
    };
    for (o, g) in &gateways {
        let selector = g.selector.as_ref().filter(|s| !s.is_empty());
        for (other, h) in &gateways {
            if std::ptr::eq(*o, *other) {
                continue;
            }
            // (the current selector a subset of the other's: `selectorSubset`)
            let covers = selector.is_none_or(|sel| {
                sel.iter()
                    .all(|(k, v)| h.selector.as_ref().and_then(|hs| hs.get(k)) == Some(v))
            });
            if !covers {
                continue;
            }
            let shared = g.servers.iter().any(|cs| {
                h.servers.iter().any(|s| match (&cs.tls, &s.tls) {
                    (Some(a), Some(b)) => same(a, b),
                    _ => false,
                })
            });
            if shared {
                cx.report(
                    o,
                    Severity::Warning,
                    codes::GATEWAY_DUPLICATE_CERTIFICATE,
                    "metadata.name",
                    format!(
                        "Duplicate certificate in multiple gateways [{}/{} {}/{}] may cause 404s if clients re-use HTTP2 connections.",
                        o.metadata.namespace, o.metadata.name, other.metadata.namespace, other.metadata.name
                    ),
                )
                .help = Some(
                    "a client that opened an HTTP/2 connection for one Gateway's host reuses it for the other's (the certificate covers both), and that connection's server has no route for it: give each Gateway its own certificate, or merge the servers into one Gateway".to_owned(),
                );
            }
        }
    }
}

/// IST0145 ConflictingGateways, as istioctl's `gateway.ConflictingGatewayAnalyzer`: a
/// server of a Gateway conflicts with another Gateway that selects the same workloads (the
/// same selector, or a loaded workload both select; no selector selects every workload) and
/// has a server on the same port with one of the same `hosts` entries (compared as written)
/// and the same `bind`. Each conflicting server is reported on its own Gateway, naming the
/// others.
///
/// istioctl pre-filters differing selectors by a substring test of their text and keeps one
/// server per Gateway and port (the last), adding a server's hosts to the other Gateway's
/// set once compared; we compare every server, with no such side effect.
fn conflicting_gateways(
    cx: &mut Ctx<'_>,
    objs: &[&ConfigObject],
    workloads: &[(&ConfigObject, &Labels)],
) {
    struct Gw<'a> {
        obj: &'a ConfigObject,
        name: String,
        selector: Option<&'a Labels>,
        selector_text: String,
        servers: &'a [crate::model::Server],
    }
    let gws: Vec<Gw<'_>> = objs
        .iter()
        .filter_map(|o| {
            let gw = o.spec.as_gateway()?;
            let selector = gw.selector.as_ref().filter(|l| !l.is_empty());
            Some(Gw {
                obj: o,
                name: format!("{}/{}", o.metadata.namespace, o.metadata.name),
                selector,
                selector_text: selector.map(fmt_labels).unwrap_or_default(),
                servers: &gw.servers,
            })
        })
        .collect();
    if gws.len() < 2 {
        return;
    }
    let selects = |sel: Option<&Labels>, l: &Labels| sel.is_none_or(|s| selector_matches(s, l));
    let same_workloads = |a: &Gw<'_>, b: &Gw<'_>| {
        a.selector_text == b.selector_text
            || workloads
                .iter()
                .any(|(_, l)| selects(a.selector, l) && selects(b.selector, l))
    };
    for g in &gws {
        let others: Vec<&Gw<'_>> = gws
            .iter()
            .filter(|x| x.name != g.name && same_workloads(g, x))
            .collect();
        if others.is_empty() {
            continue;
        }
        for (i, server) in g.servers.iter().enumerate() {
            let bind = server.bind.as_deref().unwrap_or("");
            let mut names: Vec<&str> = others
                .iter()
                .filter(|x| {
                    x.servers.iter().any(|xs| {
                        xs.port.number == server.port.number
                            && xs.bind.as_deref().unwrap_or("") == bind
                            && xs.hosts.iter().any(|h| server.hosts.contains(h))
                    })
                })
                .map(|x| x.name.as_str())
                .collect();
            if names.is_empty() {
                continue;
            }
            names.sort_unstable();
            cx.report(
                g.obj,
                Severity::Error,
                codes::CONFLICTING_GATEWAYS,
                &format!("spec.servers[{i}].hosts"),
                format!(
                    "Conflict with gateways {} (workload selector {}, port {}, hosts {}).",
                    names.join(","),
                    g.selector_text,
                    server.port.number,
                    server.hosts.join(",")
                ),
            );
        }
    }
}

/// The ports the ServiceEntries for one host define.
struct SePorts<'a> {
    ports: Vec<u32>,
    owners: Vec<&'a ConfigObject>,
    /// The namespace of the first of them.
    namespace: &'a str,
    /// Some of them is exported to all namespaces.
    export_all: bool,
}

/// The namespaces a VirtualService is exported to: `None` means all.
fn vs_visibility(o: &ConfigObject) -> Option<HashSet<&str>> {
    let export_to = match &o.spec {
        Spec::VirtualService(vs) => &vs.export_to,
        _ => return None,
    };
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return None;
    }
    Some(
        export_to
            .iter()
            .map(|e| {
                if e == "." {
                    o.metadata.namespace.as_str()
                } else {
                    e.as_str()
                }
            })
            .collect(),
    )
}

fn visible_together(a: &ConfigObject, b: &ConfigObject) -> bool {
    match (vs_visibility(a), vs_visibility(b)) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) => !x.is_disjoint(&y),
    }
}

/// istioctl's `CaCertificateAnalyzer`: SIMPLE or MUTUAL without `caCertificates`, unless
/// a `credentialName` gives them on a DestinationRule with a `workloadSelector` (the only
/// one istiod reads a credential for). `insecureSkipVerify` does not exempt it.
fn lacks_ca(tls: &ClientTlsSettings, selector: bool) -> bool {
    matches!(tls.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
        && tls.ca_certificates.as_deref().unwrap_or("").is_empty()
        && !(selector
            && tls
                .credential_name
                .as_deref()
                .is_some_and(|c| !c.is_empty()))
}

fn tls_mode(m: ClientTlsMode) -> &'static str {
    match m {
        ClientTlsMode::Disable => "DISABLE",
        ClientTlsMode::Simple => "SIMPLE",
        ClientTlsMode::Mutual => "MUTUAL",
        ClientTlsMode::IstioMutual => "ISTIO_MUTUAL",
    }
}

/// Resolves a gateway reference to (namespace, name) (spec §1.7).
fn resolve_gateway(g: &str, vs_ns: &str) -> (String, String) {
    if let Some((ns, name)) = g.split_once('/') {
        let ns = if ns == "." { vs_ns } else { ns };
        return (ns.to_owned(), name.to_owned());
    }
    if let Some((name, rest)) = g.split_once('.') {
        let ns = rest.split('.').next().unwrap_or(vs_ns);
        return (ns.to_owned(), name.to_owned());
    }
    (vs_ns.to_owned(), g.to_owned())
}

#[cfg(test)]
mod tests {
    use super::resolve_gateway;

    #[test]
    fn gateway_references() {
        let table = [
            ("gw", "default", ("default", "gw")),
            ("./gw", "default", ("default", "gw")),
            ("istio-system/gw", "default", ("istio-system", "gw")),
            (
                "gw.istio-system.svc.cluster.local",
                "default",
                ("istio-system", "gw"),
            ),
        ];
        for (g, ns, (wns, wname)) in table {
            assert_eq!(
                resolve_gateway(g, ns),
                (wns.to_owned(), wname.to_owned()),
                "{g}"
            );
        }
    }
}
