//! Reading the SNI of a TLS ClientHello without consuming it (PASSTHROUGH routing and
//! certificate selection by SNI).

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// Largest ClientHello we wait for (records of up to 16 KiB; a ClientHello with
/// post-quantum key shares is about 1.5 KiB).
pub(crate) const MAX_HELLO: usize = 16 * 1024 + 5;

/// What the first bytes of a connection say.
///
/// # Examples
///
/// A client connecting to an IP address sends no SNI; only a `*` host matches it:
///
/// ```
/// use std::sync::Arc;
/// use mesh_tower::gateway::{parse_client_hello, Hello};
/// use rustls::{ClientConfig, ClientConnection, RootCertStore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ClientConfig::builder_with_provider(mesh_tls::provider())
///     .with_safe_default_protocol_versions()?
///     .with_root_certificates(RootCertStore::empty())
///     .with_no_client_auth();
/// let mut client = ClientConnection::new(Arc::new(config), "192.0.2.10".try_into()?)?;
/// let mut hello = Vec::new();
/// client.write_tls(&mut hello)?;
/// assert_eq!(parse_client_hello(&hello), Hello::Tls(None));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A complete ClientHello; its SNI host name, if it sent one.
    Tls(Option<String>),
    /// More bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello.
    NotTls,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| (b[0] as usize) << 8 | b[1] as usize)
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Parses the start of a connection: TLS records carrying a ClientHello (which may span
/// several records). Never panics, whatever the bytes.
///
/// # Examples
///
/// The SNI of a real ClientHello (from rustls), as PASSTHROUGH routing reads it:
///
/// ```
/// use std::sync::Arc;
/// use mesh_tower::gateway::{parse_client_hello, Hello};
/// use rustls::{ClientConfig, ClientConnection, RootCertStore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ClientConfig::builder_with_provider(mesh_tls::provider())
///     .with_safe_default_protocol_versions()?
///     .with_root_certificates(RootCertStore::empty())
///     .with_no_client_auth();
/// let mut client = ClientConnection::new(Arc::new(config), "nginx.example.com".try_into()?)?;
/// let mut hello = Vec::new();
/// client.write_tls(&mut hello)?;
///
/// assert_eq!(parse_client_hello(&hello), Hello::Tls(Some("nginx.example.com".into())));
/// assert_eq!(parse_client_hello(&hello[..20]), Hello::Incomplete); // wait for more bytes
/// assert_eq!(parse_client_hello(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
/// # Ok(()) }
/// ```
pub fn parse_client_hello(data: &[u8]) -> Hello {
    match parse(data) {
        Peeked::Tls(h) => Hello::Tls(h.sni),
        Peeked::Incomplete => Hello::Incomplete,
        Peeked::NotTls => Hello::NotTls,
    }
}

/// What the gateway reads from a ClientHello to choose a filter chain: the SNI and the
/// ALPN protocols offered (Envoy's `tls_inspector`: `server_names` and
/// `application_protocols` of a filter chain match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClientHello {
    /// The SNI host name, lowercased; `None` when the client sent none.
    pub(crate) sni: Option<String>,
    /// The ALPN protocol names offered (extension 16), in the client's order.
    pub(crate) alpn: Vec<Vec<u8>>,
}

/// [`Hello`] with the whole [`ClientHello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peeked {
    Tls(ClientHello),
    Incomplete,
    NotTls,
}

fn parse(data: &[u8]) -> Peeked {
    // Gather the handshake bytes from consecutive handshake records.
    let mut hs = Vec::new();
    let mut rest = data;
    let mut need: Option<usize> = None;
    loop {
        if let Some(n) = need
            && hs.len() >= n
        {
            break;
        }
        if rest.is_empty() {
            return Peeked::Incomplete;
        }
        if rest[0] != 0x16 {
            return Peeked::NotTls;
        }
        if rest.len() < 5 {
            return Peeked::Incomplete;
        }
        // record version major must be 3 (SSL 3.0 / TLS 1.x)
        if rest[1] != 3 {
            return Peeked::NotTls;
        }
        let len = (rest[3] as usize) << 8 | rest[4] as usize;
        if len == 0 || len > 16384 + 2048 {
            return Peeked::NotTls;
        }
        if rest.len() < 5 + len {
            return Peeked::Incomplete;
        }
        hs.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if need.is_none() && hs.len() >= 4 {
            if hs[0] != 1 {
                return Peeked::NotTls; // not a ClientHello
            }
            let n = (hs[1] as usize) << 16 | (hs[2] as usize) << 8 | hs[3] as usize;
            if n > MAX_HELLO {
                return Peeked::NotTls;
            }
            need = Some(4 + n);
        }
    }
    let Some(body) = need.and_then(|n| hs.get(4..n)) else {
        return Peeked::NotTls;
    };
    match hello_of(body) {
        Some(h) => Peeked::Tls(h),
        None => Peeked::NotTls,
    }
}

/// The SNI and ALPN of a ClientHello body; `None` when malformed.
fn hello_of(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader { buf: body };
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut hello = ClientHello::default();
    if r.buf.is_empty() {
        return Some(hello); // no extensions
    }
    let mut exts = Reader { buf: r.vec16()? };
    let (mut seen_sni, mut seen_alpn) = (false, false);
    while !exts.buf.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        match ty {
            // server_name (RFC 6066 §3): the first host_name entry
            0 if !seen_sni => {
                seen_sni = true;
                let mut list = Reader {
                    buf: Reader { buf: data }.vec16()?,
                };
                while !list.buf.is_empty() {
                    let name_type = list.u8()?;
                    let name = list.vec16()?;
                    if name_type == 0 {
                        let s = std::str::from_utf8(name).ok()?;
                        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
                            return None;
                        }
                        hello.sni = Some(s.to_ascii_lowercase());
                        break;
                    }
                }
            }
            // application_layer_protocol_negotiation (RFC 7301 §3.1): a list of non-empty
            // names
            16 if !seen_alpn => {
                seen_alpn = true;
                let mut list = Reader {
                    buf: Reader { buf: data }.vec16()?,
                };
                while !list.buf.is_empty() {
                    let name = list.vec8()?;
                    if name.is_empty() {
                        return None;
                    }
                    hello.alpn.push(name.to_vec());
                }
            }
            _ => {}
        }
    }
    Some(hello)
}

/// Peeks at the connection until a whole ClientHello is there (or it is clearly not TLS),
/// without consuming anything.
pub(crate) async fn peek_client_hello(tcp: &TcpStream, timeout: Duration) -> io::Result<Peeked> {
    let work = async {
        let mut buf = vec![0u8; MAX_HELLO];
        let mut last = 0;
        loop {
            let n = tcp.peek(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before a ClientHello",
                ));
            }
            match parse(&buf[..n]) {
                Peeked::Incomplete if n < buf.len() => {
                    if n == last {
                        // peek does not consume: wait for more bytes to arrive
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    last = n;
                }
                Peeked::Incomplete => return Ok(Peeked::NotTls),
                h => return Ok(h),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no ClientHello in time"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use mesh_tls::rustls;

    /// A real ClientHello from rustls, for `sni` (or none).
    fn client_hello(sni: Option<&str>) -> Vec<u8> {
        client_hello_alpn(sni, &[])
    }

    /// A real ClientHello from rustls, for `sni` (or none), offering `alpn`.
    fn client_hello_alpn(sni: Option<&str>, alpn: &[&[u8]]) -> Vec<u8> {
        #[derive(Debug)]
        struct NoVerify;
        impl rustls::client::danger::ServerCertVerifier for NoVerify {
            fn verify_server_cert(
                &self,
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &[rustls::pki_types::CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                mesh_tls::provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth();
        cfg.enable_sni = sni.is_some();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(
            sni.unwrap_or("placeholder.example").to_owned(),
        )
        .unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn real_client_hellos() {
        let with = client_hello(Some("Httpbin.Example.com"));
        let without = client_hello(None);
        let cases: Vec<(&str, Vec<u8>, Hello)> = vec![
            (
                "sni",
                with.clone(),
                Hello::Tls(Some("httpbin.example.com".into())),
            ),
            ("no sni", without.clone(), Hello::Tls(None)),
            ("first byte only", with[..1].to_vec(), Hello::Incomplete),
            ("header only", with[..5].to_vec(), Hello::Incomplete),
            ("half", with[..with.len() / 2].to_vec(), Hello::Incomplete),
            (
                "plaintext http",
                b"GET / HTTP/1.1\r\n".to_vec(),
                Hello::NotTls,
            ),
            ("empty", Vec::new(), Hello::Incomplete),
            ("alert record", vec![0x15, 3, 3, 0, 2, 2, 40], Hello::NotTls),
            ("zero-length record", vec![0x16, 3, 1, 0, 0], Hello::NotTls),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(parse_client_hello(&bytes), want, "{what}");
        }
    }

    #[test]
    fn alpn_offers() {
        let cases: &[(Option<&str>, &[&[u8]])] = &[
            (
                Some("outbound_.8000_._.httpbin.foo.svc.cluster.local"),
                &[b"istio-peer-exchange", b"istio"],
            ),
            (Some("a.example.com"), &[b"h2", b"http/1.1"]),
            (None, &[b"istio"]),
            (Some("a.example.com"), &[]),
        ];
        for (sni, alpn) in cases {
            let want = ClientHello {
                sni: sni.map(str::to_owned),
                alpn: alpn.iter().map(|a| a.to_vec()).collect(),
            };
            assert_eq!(
                parse(&client_hello_alpn(*sni, alpn)),
                Peeked::Tls(want),
                "{sni:?}"
            );
        }
    }

    /// A hand-made ClientHello with these raw extensions (type, data).
    fn hello_with(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut ext = Vec::new();
        for (ty, data) in exts {
            ext.extend_from_slice(&ty.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(data);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn malformed_alpn_is_not_tls() {
        type Alpn = Option<Vec<Vec<u8>>>;
        let cases: Vec<(&str, Vec<u8>, Alpn)> = vec![
            (
                "one name",
                vec![0, 6, 5, b'i', b's', b't', b'i', b'o'],
                Some(vec![b"istio".to_vec()]),
            ),
            ("empty name", vec![0, 1, 0], None),
            ("name past the list", vec![0, 3, 5, b'i', b's'], None),
            ("list past the data", vec![0, 9, 1, b'x'], None),
            ("empty list", vec![0, 0], Some(vec![])),
        ];
        for (what, data, want) in cases {
            let got = match parse(&hello_with(&[(16, data)])) {
                Peeked::Tls(h) => Some(h.alpn),
                _ => None,
            };
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn hello_split_across_records() {
        let hello = client_hello(Some("a.example.com"));
        let body = &hello[5..];
        let (a, b) = body.split_at(40);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[0x16, 3, 1, (part.len() >> 8) as u8, part.len() as u8]);
            split.extend_from_slice(part);
        }
        assert_eq!(
            parse_client_hello(&split),
            Hello::Tls(Some("a.example.com".into()))
        );
        assert_eq!(parse_client_hello(&split[..50]), Hello::Incomplete);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_client_hello(&bytes);
            let mut tls = vec![0x16, 3, 1];
            tls.extend_from_slice(&bytes);
            let _ = parse_client_hello(&tls);
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..400) {
            let hello = client_hello(Some("x.example.com"));
            let cut = cut.min(hello.len());
            let _ = parse_client_hello(&hello[..cut]);
            let mut corrupt = hello.clone();
            if cut < corrupt.len() { corrupt[cut] ^= 0xff; }
            let _ = parse_client_hello(&corrupt);
        }
    }
}
