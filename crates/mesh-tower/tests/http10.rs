//! HTTP/1.0 at a mesh server, over real loopback sockets: answered `426 Upgrade Required`
//! as by Envoy with Istio's defaults, and served when MeshConfig's
//! `defaultConfig.proxyMetadata.ISTIO_META_HTTP10` is `"1"` (istiod's `accept_http_10`).

mod conn_support;

use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;

async fn answer_to_http10(mesh_config: &str) -> String {
    let mesh = Mesh::with_mesh_config(&MeshConfig::from_yaml(mesh_config).unwrap());
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let addr = conn_support::serve_mesh(mesh, "httpbin", app).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET / HTTP/1.0\r\nHost: httpbin.foo\r\n\r\n")
        .await
        .unwrap();
    conn_support::until_closed(&mut tcp).await
}

#[tokio::test]
async fn http10_is_refused_by_default_and_served_with_istio_meta_http10() {
    let refused = answer_to_http10("{}").await;
    assert!(
        refused.starts_with("HTTP/1.0 426 Upgrade Required"),
        "{refused}"
    );
    let served = answer_to_http10("defaultConfig: {proxyMetadata: {ISTIO_META_HTTP10: '1'}}").await;
    assert!(served.starts_with("HTTP/1.0 200 OK"), "{served}");
    assert!(served.ends_with("\r\n\r\nok"), "{served}");
    // only "1" turns it on, as istiod reads it
    let refused =
        answer_to_http10("defaultConfig: {proxyMetadata: {ISTIO_META_HTTP10: 'true'}}").await;
    assert!(refused.starts_with("HTTP/1.0 426"), "{refused}");
}
