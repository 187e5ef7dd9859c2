//! Shared by the mesh-server tests (`inbound_authz`, `inbound_security`): a client of the
//! `httpbin` workload in namespace `foo`, over a new connection per request, mTLS as a mesh
//! client (ISTIO_MUTUAL to `httpbin.foo.svc.cluster.local`) or plaintext.
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_tls::{
    client_config, Alpn, ClientContext, ClientTlsMode, ClientTlsSettings, Destination, Identity,
    WorkloadCredentials,
};
use tokio::net::TcpStream;

pub const HTTPBIN_HOST: &str = "httpbin.foo.svc.cluster.local";

/// Status, headers and body of an answer.
pub type Resp = (StatusCode, HeaderMap, Bytes);

/// Mesh mTLS to httpbin as `client`: ISTIO_MUTUAL checking the server is
/// `cluster.local/ns/foo/sa/httpbin`, SNI `outbound_.8000_._.httpbin.foo.svc.cluster.local`.
pub fn tls_to_httpbin(client: &WorkloadCredentials, alpn: Alpn) -> mesh_tls::OutboundTls {
    client_config(
        &ClientTlsSettings {
            mode: ClientTlsMode::IstioMutual,
            ..Default::default()
        },
        &Destination {
            host: HTTPBIN_HOST,
            port: 8000,
            subset: None,
            service_accounts: &[Identity::new("cluster.local", "foo", "httpbin").unwrap()],
        },
        &ClientContext {
            workload: Some(client),
            credentials: None,
            alpn,
            opaque: false,
        },
    )
    .unwrap()
    .unwrap()
}

/// One request over a new mTLS connection as `client` (HTTP/1.1, or HTTP/2 with `h2`).
pub async fn mtls(
    addr: SocketAddr,
    client: &WorkloadCredentials,
    h2: bool,
    req: Request<Full<Bytes>>,
) -> std::io::Result<Resp> {
    let tls = tls_to_httpbin(client, if h2 { Alpn::Http2 } else { Alpn::Http1 });
    let stream = tls.connect(TcpStream::connect(addr).await?).await?;
    send(TokioIo::new(stream), h2, req).await
}

/// One HTTP/1.1 request over a new plaintext connection.
pub async fn plain(addr: SocketAddr, req: Request<Full<Bytes>>) -> std::io::Result<Resp> {
    let tcp = TcpStream::connect(addr).await?;
    send(TokioIo::new(tcp), false, req).await
}

/// One request over `io`, the answer read whole.
pub async fn send<IO>(io: IO, h2: bool, req: Request<Full<Bytes>>) -> std::io::Result<Resp>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let err = std::io::Error::other;
    let resp = if h2 {
        let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(err)?;
        tokio::spawn(conn);
        tx.send_request(req).await.map_err(err)?
    } else {
        let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(err)?;
        tokio::spawn(conn);
        tx.send_request(req).await.map_err(err)?
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(err)?.to_bytes();
    Ok((parts.status, parts.headers, body))
}
