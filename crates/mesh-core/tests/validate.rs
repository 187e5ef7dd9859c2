//! Per-object validation: Istio's webhook checks with Istio's messages, table-driven.

use mesh_core::diag::{Diagnostic, Severity};
use mesh_core::load::load_str;
use mesh_core::validate::validate_all;

fn run(kind: &str, ns: &str, spec: &str) -> Vec<Diagnostic> {
    let group = match kind {
        "AuthorizationPolicy" | "PeerAuthentication" | "RequestAuthentication" => {
            "security.istio.io/v1"
        }
        _ => "networking.istio.io/v1",
    };
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let yaml = format!(
        "apiVersion: {group}\nkind: {kind}\nmetadata:\n  name: t\n  namespace: {ns}\nspec:\n{spec}"
    );
    let l = load_str(&yaml, "t.yaml");
    assert!(!l.has_errors(), "load: {:#?}\n{yaml}", l.diagnostics);
    assert_eq!(l.objects.len(), 1);
    validate_all(&l.objects)
}

/// (kind, spec, severity, path, message)
type Case = (
    &'static str,
    &'static str,
    Severity,
    &'static str,
    &'static str,
);
const E: Severity = Severity::Error;
const W: Severity = Severity::Warning;
const I: Severity = Severity::Info;

const CASES: &[Case] = &[
    // VirtualService
    ("VirtualService", "hosts: [r]", E, "spec", "http, tcp or tls must be provided in virtual service"),
    ("VirtualService", "hosts: ['*']\nhttp: [{route: [{destination: {host: r}}]}]", E, "spec.hosts[0]", "wildcard host * is not allowed for virtual services bound to the mesh gateway"),
    ("VirtualService", "hosts: [a.com, '*.com']\ngateways: [gw]\nhttp: [{route: [{destination: {host: r}}]}]", E, "spec.hosts[1]", "duplicate hosts in virtual service: a.com & *.com"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: '*'}}]}]", E, "spec.http[0].route[0].destination.host", "invalid destination host *"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r, subset: v1}}, {destination: {host: r, subset: v2}}]}]", E, "spec.http[0].route", "total destination weight = 0"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}, weight: -1}, {destination: {host: r}, weight: 5}]}]", E, "spec.http[0].route[0].weight", "weight -1 < 0"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r, subset: v_1}}]}]", E, "spec.http[0].route[0].destination.subset", "subset name is invalid: v_1"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r, port: {number: 70000}}}]}]", E, "spec.http[0].route[0].destination.port.number", "port number 70000 must be in the range 1..65535"),
    ("VirtualService", "hosts: [r]\nhttp: [{timeout: 1.5ms, route: [{destination: {host: r}}]}]", E, "spec.http[0].timeout", "only durations to ms precision are supported"),
    ("VirtualService", "hosts: [r]\nhttp: [{timeout: 0.5ms, route: [{destination: {host: r}}]}]", E, "spec.http[0].timeout", "duration must be greater than 1ms"),
    ("VirtualService", "hosts: [r]\nhttp: [{timeout: 0s, route: [{destination: {host: r}}]}]", E, "spec.http[0].timeout", "duration must be greater than 1ms"),
    ("VirtualService", "hosts: [r]\nhttp: [{match: [{uri: {regex: '(unclosed'}}], route: [{destination: {host: r}}]}]", E, "spec.http[0].match[0].uri.regex", "RE2"),
    ("VirtualService", "hosts: [r]\nhttp: [{match: [{headers: {x: {prefix: ''}}}], route: [{destination: {host: r}}]}]", E, "spec.http[0].match[0].headers.x.prefix", "prefix string match should not be empty"),
    ("VirtualService", "hosts: [r]\nhttp: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: r}}]}]", E, "spec.http[0].match[0].uri", "only one of exact, prefix or regex"),
    ("VirtualService", "hosts: [r]\nhttp: [{match: [{headers: {'@request.auth.claims.group': {exact: a}}}], route: [{destination: {host: r}}]}]", E, "spec.http[0].match[0].headers.@request.auth.claims.group", "JWT claim based routing (key: @request.auth.claims.group) is only supported for gateway"),
    ("VirtualService", "hosts: [r]\nhttp: [{}]", E, "spec.http[0]", "HTTP route, redirect or direct_response is required"),
    ("VirtualService", "hosts: [r]\nhttp: [{redirect: {uri: /x}, route: [{destination: {host: r}}]}]", E, "spec.http[0]", "HTTP route cannot contain both route and redirect"),
    ("VirtualService", "hosts: [r]\nhttp: [{redirect: {redirectCode: 200, uri: /x}}]", E, "spec.http[0].redirect.redirectCode", "200 is not a valid redirect code, must be 3xx"),
    ("VirtualService", "hosts: [r]\nhttp: [{redirect: {}}]", E, "spec.http[0].redirect", "redirect must specify URI, authority, scheme, or port"),
    ("VirtualService", "hosts: [r]\nhttp: [{directResponse: {status: 700}}]", E, "spec.http[0].directResponse.status", "HTTP status 700 is not in range 200-599"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], retries: {attempts: 0, perTryTimeout: 1s}}]", E, "spec.http[0].retries", "http retry policy configured when attempts are set to 0 (disabled)"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], retries: {attempts: 2, retryOn: '5xx,bogus'}}]", E, "spec.http[0].retries.retryOn", "\"bogus\" is not a valid retryOn policy"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], fault: {}}]", E, "spec.http[0].fault", "HTTP fault injection must have an abort and/or a delay"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], fault: {abort: {httpStatus: 100, percentage: {value: 10}}}}]", E, "spec.http[0].fault.abort.httpStatus", "HTTP status 100 is not in range 200-599"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], fault: {abort: {grpcStatus: '14', percentage: {value: 10}}}}]", E, "spec.http[0].fault.abort.grpcStatus", "gRPC status \"14\" is not supported"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], fault: {delay: {fixedDelay: 1s, percentage: {value: 101}}}}]", E, "spec.http[0].fault.delay.percentage.value", "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], mirror: {host: m}, mirrors: [{destination: {host: m}}]}]", E, "spec.http[0]", "HTTP route cannot contain both mirror and mirrors"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], mirrorPercentage: {value: 150}}]", E, "spec.http[0].mirrorPercentage", "mirror_percentage must have a max value of 100 (it has 150.000000)"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], rewrite: {}}]", E, "spec.http[0].rewrite", "rewrite must specify at least one of URI, UriRegexRewrite, or authority"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], rewrite: {authority: a}, headers: {request: {set: {host: b}}}}]", E, "spec.http[0].headers.request.set.host", "authority header cannot be set multiple times: have \"a\", attempting to set \"b\""),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], headers: {request: {set: {':path': /x}}}}]", E, "spec.http[0].headers.request.set.:path", "invalid header \":path\": header cannot have \":\" prefix"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], headers: {request: {set: {x-a: '50% off'}}}}]", E, "spec.http[0].headers.request.set.x-a", "unmatched '%'"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], headers: {request: {set: {x-a: '%CLIENT_IP%'}}}}]", W, "spec.http[0].headers.request.set.x-a", "Envoy rejects it (Not supported field in StreamInfo: CLIENT_IP)"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], headers: {response: {add: {x-a: '%REQ()%'}}}}]", W, "spec.http[0].headers.response.add.x-a", "Envoy rejects it"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], corsPolicy: {allowMethods: [FETCH]}}]", E, "spec.http[0].corsPolicy.allowMethods[0]", "\"FETCH\" is not a supported HTTP method"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], corsPolicy: {maxAge: 1500ms}}]", E, "spec.http[0].corsPolicy.maxAge", "max_age duration is accurate only to seconds precision"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}]}, {route: [{destination: {host: s}}]}]", W, "spec.http[1]", "VirtualService rule #1 not used (only the last rule can have no matches)."),
    ("VirtualService", "hosts: [r]\nhttp: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: r}}]}, {match: [{uri: {prefix: /a}}], route: [{destination: {host: s}}]}]", W, "spec.http[1]", "VirtualService rule #1 not used (all matches used by prior rules)."),
    ("VirtualService", "hosts: [r]\nhttp: [{match: [{uri: {prefix: /debug}}], route: [{destination: {host: r}}]}, {name: later, match: [{uri: {prefix: /debugs}}], route: [{destination: {host: s}}]}]", I, "spec.http[1].match[0]", "VirtualService rule \"later\" match #0 of prefix /debugs is not used (duplicate/overlapping match in rule #0 of prefix /debug on #0)."),
    ("VirtualService", "hosts: [r]\ntcp: [{route: [{destination: {host: r}}]}, {match: [{port: 9000}], route: [{destination: {host: s}}]}]", W, "spec.tcp[1].match[0]", "VirtualService rule #1 not used (route without matches defined before)."),
    ("VirtualService", "hosts: [r]\ngateways: [bad_gw]\nhttp: [{route: [{destination: {host: r}}]}]", E, "spec.gateways[0]", "domain name \"bad_gw\" invalid"),
    ("VirtualService", "hosts: [r]\ngateways: [my-gw.istio-system.svc.cluster.local]\nhttp: [{route: [{destination: {host: r}}]}]", W, "spec.gateways[0]", "using legacy gatewayName format \"my-gw.istio-system.svc.cluster.local\"; prefer the <namespace>/<name> format: \"istio-system/my-gw\""),
    ("VirtualService", "hosts: [r]\nexportTo: ['~']\nhttp: [{route: [{destination: {host: r}}]}]", E, "spec.exportTo[0]", "exportTo ~ (none) is not allowed for Istio configuration objects"),
    ("VirtualService", "hosts: [r]\nexportTo: ['*', foo]\nhttp: [{route: [{destination: {host: r}}]}]", E, "spec.exportTo", "cannot have both public (*) and non-public exportTo values for a resource"),
    ("VirtualService", "hosts: [a.com]\ntls: [{match: [{sniHosts: [b.com]}], route: [{destination: {host: x}}]}]", E, "spec.tls[0].match[0].sniHosts[0]", "SNI host \"b.com\" is not a compatible subset of any of the virtual service hosts: [a.com]"),
    ("VirtualService", "hosts: [a.com]\ntls: [{route: [{destination: {host: x}}]}]", E, "spec.tls[0]", "TLS route must have at least one match condition"),
    ("VirtualService", "hosts: [a.com]\ntcp: [{match: [{destinationSubnets: [10.0.0.0/33]}], route: [{destination: {host: x}}]}]", E, "spec.tcp[0].match[0].destinationSubnets[0]", "10.0.0.0/33 is not a valid CIDR block"),
    ("VirtualService", "http: [{route: [{destination: {host: r}}]}]\ngateways: [gw]", E, "spec.gateways", "delegate virtual service must have no gateways specified"),
    // DestinationRule
    ("DestinationRule", "host: r\ntrafficPolicy: {}", E, "spec.trafficPolicy", "traffic policy must have at least one field"),
    ("DestinationRule", "host: r\nsubsets: [{name: v1}, {name: v1}]", E, "spec.subsets[1].name", "duplicate subset names: v1"),
    ("DestinationRule", "host: r\nsubsets: [{name: ''}]", E, "spec.subsets[0].name", "subset name cannot be empty"),
    ("DestinationRule", "host: r\nsubsets: [{name: v1, labels: {'version!': v1}}]", E, "spec.subsets[0].labels.version!", "invalid tag key: \"version!\""),
    ("DestinationRule", "host: r\ntrafficPolicy: {tls: {mode: MUTUAL}}", E, "spec.trafficPolicy.tls", "client certificate required for mutual tls"),
    ("DestinationRule", "host: r\ntrafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true, caCertificates: /c}}", E, "spec.trafficPolicy.tls", "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true"),
    ("DestinationRule", "host: r\ntrafficPolicy: {connectionPool: {http: {http1MaxPendingRequests: -1}}}", E, "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests", "http1 max pending requests must be non-negative"),
    ("DestinationRule", "host: r\ntrafficPolicy: {connectionPool: {}}", E, "spec.trafficPolicy.connectionPool", "connection pool must have at least one field"),
    ("DestinationRule", "host: r\ntrafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 3}}", E, "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false"),
    ("DestinationRule", "host: r\ntrafficPolicy: {outlierDetection: {maxEjectionPercent: 120}}", E, "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "percentage 120 is not in range 0..100"),
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {ttl: 0s}}}}", E, "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie", "name required for HttpCookie"),
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 1000}}}}", E, "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "tableSize must be a prime number for maglev"),
    // the mesh client refuses what istiod ignores (fail closed): said, not "ignored"
    ("DestinationRule", "host: r\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL, caCrl: /etc/crl.pem}}", W, "spec.trafficPolicy.tls", "caCrl is not supported with ISTIO_MUTUAL: the mesh client refuses to connect"),
    // istiod's three maglev checks are independent: 0 fails two, a large even number two
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {maglev: {}}}}", E, "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "tableSize must be set for maglev"),
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 0}}}}", E, "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "tableSize must be a prime number for maglev"),
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 6000000}}}}", E, "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "tableSize must be less than 5000011 for maglev"),
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 6000000}}}}", E, "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "tableSize must be a prime number for maglev"),
    ("DestinationRule", "host: r\ntrafficPolicy: {connectionPool: {tcp: {idleTimeout: 1.5ms}}}", E, "spec.trafficPolicy.connectionPool.tcp.idleTimeout", "only durations to ms precision are supported"),
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: a/*, to: {a/*: 50}}]}}}", E, "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "total locality weight 50 != 100"),
    ("DestinationRule", "host: r\ntrafficPolicy: {portLevelSettings: [{loadBalancer: {simple: RANDOM}}]}", E, "spec.trafficPolicy.portLevelSettings[0]", "portTrafficPolicy must have valid port"),
    ("DestinationRule", "host: r\ntrafficPolicy: {tunnel: {protocol: GET, targetHost: a.com, targetPort: 443}}", E, "spec.trafficPolicy.tunnel.protocol", "tunnel protocol must be \"CONNECT\" or \"POST\""),
    ("DestinationRule", "host: r\nworkloadSelector: {matchLabels: {app: a}}\nexportTo: ['*']", E, "spec.exportTo", "destination rule with workload selector cannot have exportTo beyond current namespace"),
    ("DestinationRule", "host: ''", E, "spec.host", "empty domain name not allowed"),
    // ServiceEntry / WorkloadEntry
    ("ServiceEntry", "ports: [{number: 80, name: http, protocol: HTTP}]", E, "spec.hosts", "service entry must have at least one host"),
    ("ServiceEntry", "hosts: ['*']\nports: [{number: 80, name: http, protocol: HTTP}]", E, "spec.hosts[0]", "invalid host *"),
    ("ServiceEntry", "hosts: ['*foo.com']\nports: [{number: 80, name: http, protocol: HTTP}]", W, "spec.hosts[0]", "partial wildcard \"*foo.com\" not allowed"),
    ("ServiceEntry", "hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}, {number: 80, name: http2, protocol: HTTP}]", E, "spec.ports[1].number", "service entry port 80 already defined"),
    ("ServiceEntry", "hosts: [a.com]\nports: [{number: 80, name: http, protocol: FTP}]", E, "spec.ports[0].protocol", "unsupported protocol: FTP"),
    ("ServiceEntry", "hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nendpoints: [{address: 1.2.3.4}]", E, "spec.endpoints", "no endpoints should be provided for resolution type none"),
    ("ServiceEntry", "hosts: [a.com]\nresolution: STATIC\nports: [{number: 80, name: http, protocol: HTTP}]\nendpoints: [{address: a.com}]", E, "spec.endpoints[0].address", "endpoint address \"a.com\" is not a valid IP address"),
    ("ServiceEntry", "hosts: [a.com]\nresolution: DNS_ROUND_ROBIN\nports: [{number: 80, name: http, protocol: HTTP}]\nendpoints: [{address: a.com}, {address: b.com}]", E, "spec.endpoints", "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN"),
    ("ServiceEntry", "hosts: [a.com]\naddresses: [10.0.0.0/8]\nresolution: DNS\nports: [{number: 80, name: http, protocol: HTTP}]", E, "spec.addresses[0]", "CIDR addresses are allowed only for NONE/STATIC resolution types"),
    ("ServiceEntry", "hosts: [a.com]\nresolution: DYNAMIC_DNS\nports: [{number: 80, name: http, protocol: HTTP}]", E, "spec.hosts[0]", "host must be wildcarded for resolution mode DYNAMIC_DNS"),
    ("ServiceEntry", "hosts: [a.com]\nexportTo: ['~', '.']\nports: [{number: 80, name: http, protocol: HTTP}]", E, "spec.exportTo", "cannot export service entry to no one (~) and someone"),
    ("ServiceEntry", "hosts: [db.example.com]\nports: [{number: 5432, name: tcp-pg, protocol: TCP}]", W, "spec.ports[0].protocol", "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled"),
    ("WorkloadEntry", "labels: {app: a}", E, "spec.address", "address is required"),
    ("WorkloadEntry", "address: 'unix://rel/path'", E, "spec.address", "rel/path is not an absolute path"),
    // Gateway
    ("Gateway", "selector: {istio: ingressgateway}", E, "spec.servers", "gateway must have at least one server"),
    ("Gateway", "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com]}]", E, "spec.servers[0]", "server must have TLS settings for HTTPS/TLS protocols"),
    ("Gateway", "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com], tls: {mode: SIMPLE}}]", E, "spec.servers[0].tls", "SIMPLE TLS requires a server certificate"),
    ("Gateway", "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}}]", E, "spec.servers[0].tls", "MUTUAL TLS requires a client CA bundle"),
    ("Gateway", "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com], tls: {credentialName: c}}]", W, "spec.servers[0].tls", "PASSTHROUGH mode does not use certificates, they will be ignored"),
    ("Gateway", "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com], tls: {mode: ISTIO_MUTUAL, credentialName: c}}]", E, "spec.servers[0].tls", "ISTIO_MUTUAL TLS cannot have associated credentialName"),
    ("Gateway", "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [a.com], tls: {mode: SIMPLE, credentialName: c}}]", E, "spec.servers[0].tls", "server cannot have TLS settings for plain text HTTP ports"),
    ("Gateway", "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [foo]}]", E, "spec.servers[0].hosts[0]", "short names (non FQDN) are not allowed"),
    ("Gateway", "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*foo.com']}]", E, "spec.servers[0].hosts[0]", "partial wildcard \"*foo.com\" not allowed"),
    ("Gateway", "servers: [{port: {number: 80, name: http, protocol: HTTPX}, hosts: ['*']}]", E, "spec.servers[0].port.protocol", "invalid protocol \"HTTPX\""),
    ("Gateway", "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}, {port: {number: 81, name: http, protocol: HTTP}, hosts: ['*']}]", E, "spec.servers[1].port.name", "port names in servers must be unique: duplicate name http"),
    ("Gateway", "servers: [{port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}, hosts: ['*']}]", E, "spec.servers[0].port.targetPort", "targetPort has no impact on Gateways"),
    // istiod's ValidateGateway does not check the selector: only a hint that it selects nothing
    ("Gateway", "selector: {'app': '*'}\nservers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]", I, "spec.selector.app", "is not a valid Kubernetes label, so no workload has it"),
    ("Gateway", "servers: [{port: {number: 31400, name: tcp, protocol: TCP}, hosts: ['*'], tls: {httpsRedirect: true}}]", E, "spec.servers[0].tls", "server cannot have TLS settings for non HTTPS/TLS ports"),
    ("Gateway", "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], bind: 'unix:///var/run/gw.sock'}]", E, "spec.servers[0].bind", "port number must be 0 for unix domain socket: number:80 protocol:\"HTTP\" name:\"http\""),
    ("Gateway", "servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.com], tls: {mode: SIMPLE, credentialName: c, cipherSuites: [BOGUS, AES128-SHA, AES128-SHA]}}]", W, "spec.servers[0].tls.cipherSuites", "ignoring invalid cipher suites: [BOGUS]"),
    // Sidecar
    ("Sidecar", "ingress: [{port: {number: 8080, name: http, protocol: HTTP}, tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k}}]", E, "spec.ingress[0].tls", "server cannot have TLS settings for non HTTPS/TLS ports"),
    ("Sidecar", "ingress: [{port: {number: 8443, name: https, protocol: HTTPS}, tls: {mode: ISTIO_MUTUAL}}]", E, "spec.ingress[0].tls.mode", "configuration is invalid: cannot set mode to ISTIO_MUTUAL in sidecar ingress tls"),
    ("Sidecar", "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: egress.example.com}}", E, "spec.outboundTrafficPolicy.egressProxy", "sidecar: egress_proxy port must be non-nil"),
    ("Sidecar", "{}", E, "spec", "sidecar: empty configuration provided"),
    ("Sidecar", "egress: [{hosts: [foo.com]}]", E, "spec.egress[0].hosts[0]", "host must be of form namespace/dnsName"),
    ("Sidecar", "egress: [{hosts: ['./*']}, {port: {number: 80, name: http, protocol: HTTP}, hosts: ['./*']}]", E, "spec.egress[0]", "sidecar: the egress listener with empty port should be the last listener in the list"),
    ("Sidecar", "egress: [{hosts: []}]", E, "spec.egress[0].hosts", "sidecar: egress listener must contain at least one host"),
    ("Sidecar", "ingress: [{defaultEndpoint: '127.0.0.1:8080'}]", E, "spec.ingress[0]", "sidecar: port is required for ingress listeners"),
    ("Sidecar", "ingress: [{port: {number: 80, name: http, protocol: HTTP}, defaultEndpoint: '1.2.3.4:80'}]", E, "spec.ingress[0].defaultEndpoint", "sidecar: defaultEndpoint must be of form"),
    ("Sidecar", "outboundTrafficPolicy: {mode: REGISTRY_ONLY, egressProxy: {host: egress.example.com}}", E, "spec.outboundTrafficPolicy.egressProxy", "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode"),
    ("Sidecar", "workloadSelector: {labels: {}}\negress: [{hosts: ['./*']}]", W, "spec.workloadSelector.labels", "sidecar: workload selector specified without labels, will be applied to all services in namespace"),
    // PeerAuthentication
    ("PeerAuthentication", "portLevelMtls: {8080: {mode: DISABLE}}", E, "spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS"),
    ("PeerAuthentication", "portLevelMtls: {}", E, "spec.portLevelMtls", "port level mTLS, if defined, must have at least one element"),
    ("PeerAuthentication", "selector: {matchLabels: {app: a}}\nportLevelMtls: {0: {mode: DISABLE}}", E, "spec.portLevelMtls.0", "port must be in range 1..65535"),
    ("PeerAuthentication", "selector: {matchLabels: {}}\nmtls: {mode: STRICT}", W, "spec.selector.matchLabels", "workload selector specified without labels"),
    // AuthorizationPolicy
    ("AuthorizationPolicy", "action: DENY", E, "spec", "invalid policy t.default: DENY action without `rules` is meaningless"),
    ("AuthorizationPolicy", "action: CUSTOM\nrules: [{}]", E, "spec", "`provider.name` must not be empty"),
    ("AuthorizationPolicy", "provider: {name: p}\nrules: [{}]", E, "spec.provider", "`provider` must not be with non CUSTOM action, found ALLOW"),
    ("AuthorizationPolicy", "rules: [{from: []}]", E, "spec.rules[0].from", "invalid policy t.default: `from` must not be empty, found at rule 0"),
    ("AuthorizationPolicy", "rules: [{from: [{source: {}}]}]", E, "spec.rules[0].from[0].source", "`from.source` must not be empty, found at rule 0"),
    ("AuthorizationPolicy", "rules: [{to: [{operation: {ports: ['http']}}]}]", E, "spec.rules[0].to[0].operation.ports[0]", "bad port (http)"),
    ("AuthorizationPolicy", "rules: [{from: [{source: {ipBlocks: ['10.0.0.0/40']}}]}]", E, "spec.rules[0].from[0].source.ipBlocks[0]", "bad CIDR range (10.0.0.0/40)"),
    ("AuthorizationPolicy", "rules: [{from: [{source: {serviceAccounts: [a], principals: [b]}}]}]", E, "spec.rules[0].from[0].source", "cannot set serviceAccounts with namespaces or principals, found at rule 0"),
    ("AuthorizationPolicy", "rules: [{from: [{source: {principals: ['']}}]}]", E, "spec.rules[0].from[0].source.principals[0]", "empty value not allowed, found in Principals"),
    ("AuthorizationPolicy", "rules: [{to: [{operation: {paths: ['/a/{**}/{*}']}}]}]", E, "spec.rules[0].to[0].operation.paths[0]", "{**} is not the last operator"),
    ("AuthorizationPolicy", "rules: [{when: [{key: destination.namespace, values: [a]}]}]", E, "spec.rules[0].when[0].key", "attribute destination.namespace is replaced by the metadata.namespace"),
    ("AuthorizationPolicy", "rules: [{when: [{key: source.ipp, values: [a]}]}]", E, "spec.rules[0].when[0].key", "unknown attribute: source.ipp"),
    ("AuthorizationPolicy", "rules: [{when: [{key: 'request.headers[x]'}]}]", E, "spec.rules[0].when[0]", "at least one of `values` or `notValues` must be set for key request.headers[x]"),
    ("AuthorizationPolicy", "rules: [{when: [{key: source.ip, values: [not-an-ip]}]}]", E, "spec.rules[0].when[0].values[0]", "bad IP address (not-an-ip)"),
    ("AuthorizationPolicy", "rules: [{when: [{key: 'request.headers', values: [a]}]}]", E, "spec.rules[0].when[0].key", "bad key (request.headers): should have format a[b]"),
    ("AuthorizationPolicy", "selector: {matchLabels: {app: a}}\ntargetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]\nrules: [{}]", E, "spec", "only one of targetRefs or workloadSelector can be set"),
    ("AuthorizationPolicy", "targetRefs: [{kind: Deployment, group: apps, name: g}]\nrules: [{}]", E, "spec.targetRefs[0].kind", "targetRef must be to one of"),
    ("AuthorizationPolicy", "action: DENY\nrules: [{to: [{operation: {methods: [GET]}}]}]", W, "spec.rules[0]", "will deny all traffic to TCP ports under its scope"),
    ("AuthorizationPolicy", "rules: [{from: [{source: {principals: ['spiffe://cluster.local/ns/default/sa/sleep']}}]}]", W, "spec.rules[0].from[0].source.principals[0]", "will never match"),
    // RequestAuthentication
    ("RequestAuthentication", "jwtRules: [{audiences: [a]}]", E, "spec.jwtRules[0]", "issuer or jwksUri must be non-empty string"),
    ("RequestAuthentication", "jwtRules: [{issuer: a, jwksUri: 'ftp://x/keys'}]", E, "spec.jwtRules[0].jwksUri", "URI scheme \"ftp\" is not supported"),
    ("RequestAuthentication", "jwtRules: [{issuer: a, jwks: 'not json'}]", E, "spec.jwtRules[0].jwks", "jwks parse error"),
    ("RequestAuthentication", "jwtRules: [{issuer: a, fromHeaders: [{name: ''}]}]", E, "spec.jwtRules[0].fromHeaders[0].name", "location header name must be non-empty string"),
    ("RequestAuthentication", "jwtRules: [{issuer: a, outputClaimToHeaders: [{header: 'x y', claim: c}]}]", E, "spec.jwtRules[0].outputClaimToHeaders[0].header", "header name x y is not a valid header name"),
    ("RequestAuthentication", "jwtRules: [{issuer: a, jwks: '{\"keys\": [{\"kty\": \"RSA\", \"d\": \"x\"}]}'}]", W, "spec.jwtRules[0].jwks", "jwks key at index 0 contains private key material"),
];

#[test]
fn webhook_checks() {
    let mut failures = Vec::new();
    for (kind, spec, sev, path, msg) in CASES {
        let ds = run(kind, "default", spec);
        let hit = ds
            .iter()
            .any(|d| d.severity == *sev && d.path == *path && d.message.contains(msg));
        if !hit {
            failures.push(format!(
                "{kind} `{spec}`: want {sev:?} at {path}: {msg}\n got {ds:#?}"
            ));
        }
        for d in &ds {
            assert!(d.line > 0, "{kind} {spec}: no position for {d:?}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Configurations Istio accepts: no error.
const VALID: &[(&str, &str)] = &[
    ("VirtualService", "hosts: [reviews]\nhttp: [{match: [{uri: {prefix: ''}}], route: [{destination: {host: reviews, subset: v1}, weight: 80}, {destination: {host: reviews, subset: v2}, weight: 20}], timeout: 10s, retries: {attempts: 3, perTryTimeout: 2s, retryOn: 'gateway-error,connect-failure,503'}}]"),
    ("VirtualService", "hosts: ['*']\ngateways: [istio-system/gw]\nhttp: [{route: [{destination: {host: r}}]}]"),
    ("VirtualService", "hosts: [r]\nhttp: [{match: [{headers: {x: {}}, queryParams: {q: {regex: '\\d+$'}}}], directResponse: {status: 503, body: {string: unavailable}}}, {redirect: {uri: /x, redirectCode: 302}}]"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], fault: {delay: {fixedDelay: 7s, percentage: {value: 100}}, abort: {httpStatus: 500, percentage: {value: 0.1}}}}]"),
    ("VirtualService", "hosts: [r]\nhttp: [{name: root, delegate: {name: child, namespace: other}}]"),
    ("VirtualService", "http: [{route: [{destination: {host: r}}]}]"),
    ("VirtualService", "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], headers: {request: {set: {x-t: '%START_TIME(%s.%E3S)%', x-ip: '%DOWNSTREAM_REMOTE_ADDRESS%', x-p: '100%%'}}}}]"),
    ("DestinationRule", "host: '*.local'\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL}, connectionPool: {tcp: {maxConnections: 1, idleTimeout: 0s}, http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}}, outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}}"),
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s}, maglev: {tableSize: 65537}}}}"),
    // istiod has no rule for a cookie's ttl, and checks a tcp idleTimeout only from 1ms
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0.5ms}}}}"),
    ("DestinationRule", "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 1.0005s}}}}"),
    ("DestinationRule", "host: r\ntrafficPolicy: {connectionPool: {tcp: {idleTimeout: 0.5ms}}}"),
    ("ServiceEntry", "hosts: [api.example.com]\nports: [{number: 443, name: https, protocol: TLS}]\nresolution: DNS\nlocation: MESH_EXTERNAL"),
    ("ServiceEntry", "hosts: [db.internal]\naddresses: [10.1.0.0/16]\nports: [{number: 5432, name: tcp-pg, protocol: TCP}]\nresolution: STATIC\nendpoints: [{address: 10.1.2.3, ports: {tcp-pg: 6432}}]"),
    ("Gateway", "selector: {istio: ingressgateway}\nservers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {httpsRedirect: true}}, {port: {number: 443, name: https, protocol: HTTPS}, hosts: ['ns/*.example.com'], tls: {mode: SIMPLE, credentialName: cert}}]"),
    ("Sidecar", "egress: [{hosts: ['./*', 'istio-system/*']}]\noutboundTrafficPolicy: {mode: REGISTRY_ONLY}"),
    ("Sidecar", "ingress: [{port: {number: 9080, name: http, protocol: HTTP}, defaultEndpoint: ':9080'}]"),
    ("Gateway", "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {httpsRedirect: true}}]"),
    ("PeerAuthentication", "selector: {matchLabels: {app: a}}\nmtls: {mode: STRICT}\nportLevelMtls: {8080: {mode: DISABLE}}"),
    ("AuthorizationPolicy", "{}"),
    ("AuthorizationPolicy", "action: DENY\nrules: [{from: [{source: {notNamespaces: [foo]}}], to: [{operation: {ports: ['9000']}}], when: [{key: 'request.auth.claims[groups]', values: [g]}]}]"),
    ("RequestAuthentication", "selector: {matchLabels: {app: a}}\njwtRules: [{issuer: 'testing@secure.istio.io', jwksUri: 'https://raw.githubusercontent.com/istio/istio/master/security/tools/jwt/samples/jwks.json'}]"),
];

#[test]
fn accepted_configs_have_no_errors() {
    for (kind, spec) in VALID {
        let ds = run(kind, "default", spec);
        let errors: Vec<_> = ds.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{kind} `{spec}`: {errors:#?}");
    }
}

/// An `egressProxy` under ALLOW_ANY is applied: nothing to report (it used to be warned
/// about as not applied).
#[test]
fn an_egress_proxy_is_not_reported() {
    let ds = run(
        "Sidecar",
        "default",
        "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: egress.istio-system.svc.cluster.local, port: {number: 443}}}",
    );
    assert!(ds.is_empty(), "{ds:#?}");
}

#[test]
fn sidecar_ingress_endpoints_are_said_not_to_apply_and_pools_are_applied() {
    let ds = run(
        "Sidecar",
        "default",
        "ingress: [{port: {number: 9080, protocol: HTTP, name: http}, defaultEndpoint: '127.0.0.1:8080'}]\ninboundConnectionPool: {http: {http1MaxPendingRequests: 10}}",
    );
    let not_applied: Vec<_> = ds
        .iter()
        .filter(|d| d.code == "IM0013" && d.severity == Severity::Warning)
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(not_applied.len(), 1, "{ds:#?}");
    assert!(not_applied[0].contains("defaultEndpoint and tls are not applied"));
    assert!(not_applied[0].ends_with("their connectionPool is"));
    assert!(ds.iter().all(|d| d.severity != Severity::Error), "{ds:#?}");
    // a listener that only sets a connection pool, and inboundConnectionPool, are applied
    let ds = run(
        "Sidecar",
        "default",
        "ingress: [{port: {number: 9080, protocol: HTTP, name: http}, connectionPool: {tcp: {maxConnections: 4}}}]\ninboundConnectionPool: {http: {http1MaxPendingRequests: 10}}",
    );
    assert!(ds.is_empty(), "{ds:#?}");
}

#[test]
fn root_namespace_peer_authentication_with_selector_is_flagged() {
    let ds = run(
        "PeerAuthentication",
        "istio-system",
        "selector: {matchLabels: {app: a}}\nmtls: {mode: STRICT}",
    );
    assert!(ds
        .iter()
        .any(|d| d.code == "IST0167" && d.severity == Severity::Warning));
}

#[test]
fn gateway_names_must_be_labels() {
    let l = load_str(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: my.gateway}\nspec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n",
        "g.yaml",
    );
    let ds = validate_all(&l.objects);
    assert!(
        ds.iter()
            .any(|d| d.message == "invalid gateway name: \"my.gateway\""),
        "{ds:#?}"
    );
}

#[test]
fn service_entry_multiple_hosts_need_http_or_tls() {
    let ds = run(
        "ServiceEntry",
        "default",
        "hosts: [a.example.com, b.example.com]\nresolution: DNS\nports: [{number: 5432, name: tcp, protocol: TCP}]",
    );
    assert!(
        ds.iter()
            .any(|d| d.is_error()
                && d.message == "multiple hosts provided with non-HTTP, non-TLS ports"),
        "{ds:#?}"
    );
    let ds = run(
        "ServiceEntry",
        "default",
        "hosts: [a.example.com, b.example.com]\nresolution: DNS\nports: [{number: 443, name: tls, protocol: TLS}, {number: 80, name: http, protocol: http}]",
    );
    assert!(!ds.iter().any(|d| d.is_error()), "{ds:#?}");
}

/// Regex checks read patterns as RE2 (Envoy's safe_regex, istiod's Go `regexp`) through the
/// helper the data plane compiles with, in every place a regex appears: what RE2 parses is
/// accepted (a literal `{`, `\Q...\E`, `[` inside a class), what it rejects is an error
/// (a repeat of a repeat, a count over 1000, backreferences).
#[test]
fn regexes_are_validated_as_re2() {
    // (pattern, accepted)
    let table: &[(&str, bool)] = &[
        (r"/v\d+", true),
        (r"/a{", true),
        (r"/a{x}", true),
        (r"\Q/a.b\E", true),
        (r"/[[]", true),
        (r"/\p{L}+", true),
        (r"/a**", false),
        (r"/a+{2}", false),
        (r"/a{1001}", false),
        (r"/(a)\1", false),
        (r"/(", false),
    ];
    for (re, ok) in table {
        let quoted = format!("'{}'", re.replace('\'', "''"));
        let places = [
            (
                format!("hosts: [r]\nhttp: [{{match: [{{uri: {{regex: {quoted}}}}}], route: [{{destination: {{host: r}}}}]}}]"),
                "spec.http[0].match[0].uri.regex",
            ),
            (
                format!("hosts: [r]\nhttp: [{{match: [{{queryParams: {{q: {{regex: {quoted}}}}}}}], route: [{{destination: {{host: r}}}}]}}]"),
                "spec.http[0].match[0].queryParams.q.regex",
            ),
            (
                format!("hosts: [r]\nhttp: [{{route: [{{destination: {{host: r}}}}], corsPolicy: {{allowOrigins: [{{regex: {quoted}}}]}}}}]"),
                "spec.http[0].corsPolicy.allowOrigins[0].regex",
            ),
            (
                format!("hosts: [r]\nhttp: [{{route: [{{destination: {{host: r}}}}], rewrite: {{uriRegexRewrite: {{match: {quoted}, rewrite: /x}}}}}}]"),
                "spec.http[0].rewrite.uriRegexRewrite.match",
            ),
        ];
        for (spec, path) in places {
            let ds = run("VirtualService", "default", &spec);
            let errors: Vec<_> = ds.iter().filter(|d| d.is_error()).collect();
            if *ok {
                assert!(
                    errors.is_empty(),
                    "{re} should be accepted:\n{spec}\n{errors:#?}"
                );
            } else {
                assert!(
                    errors
                        .iter()
                        .any(|d| d.path == path && d.message.contains("RE2")),
                    "{re} should be rejected at {path}:\n{spec}\n{ds:#?}"
                );
            }
        }
    }
}

/// A diagnostic about a field written under its snake_case alias (`mirror_percent`,
/// `jwks_uri`) points at the line where it was written.
#[test]
fn an_aliased_field_is_located_where_it_was_written() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: t, namespace: default}
spec:
  hosts: [r]
  http:
  - route:
    - destination: {host: r}
    mirror: {host: m}
    mirror_percent: 50
";
    let l = load_str(yaml, "t.yaml");
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    let d = validate_all(&l.objects);
    let warning = d
        .iter()
        .find(|d| d.message.contains("\"mirrorPercent\""))
        .expect("the deprecation warning");
    assert_eq!(warning.path, "spec.http[0].mirrorPercent");
    // (at its value, as every diagnostic about a field's value)
    assert_eq!((warning.line, warning.column), (10, 21), "{warning:#?}");
}
