//! The keys of RequestAuthentication `jwksUri`s, fetched off the request path.
//!
//! A request reads the cache without locking. A key set missing (or older than ten minutes,
//! Envoy's default `cache_duration`) starts one background fetch (requests look at what to
//! fetch at most every 100 ms; the others neither lock nor spawn). The fetch starts when a
//! workload's policies are compiled, and the requests that come before its first answer
//! wait for it (up to the jwtRule's `timeout`), as istiod fetches the keys before the
//! proxy gets its configuration: a valid token works from the first request. Without keys
//! after that (the fetch failed), tokens for that provider fail closed (401 `Jwks remote
//! fetch is failed`).
//!
//! A fetch is one HTTP/1.1 GET, over TLS for `https://` (rustls, the server's certificate
//! verified for the URI's host against the platform's root certificates plus the roots
//! given to [`JwksCache::trust_roots`]). It is bounded by the jwtRule's `timeout` (Istio's
//! default 5 s): connecting, the handshake, the answer and its body all count. A fetch
//! that fails (refused, untrusted, timed out, not 2xx, not a JWKS) keeps the keys it had,
//! if any, and is tried again a second later, on a request that needs the keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use mesh_core::authn::{JwkSet, DEFAULT_JWKS_TIMEOUT};
use mesh_tls::TrustBundle;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long fetched keys are used before they are fetched again (Envoy's default).
const REFRESH: Duration = Duration::from_secs(600);
/// How long a failed fetch waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// The largest JWKS document read.
const MAX_BYTES: usize = 1 << 20;

#[derive(Clone)]
struct Fetched {
    keys: Arc<JwkSet>,
    at: Instant,
}

/// How often requests that find no (or stale) keys may look at the fetches to start:
/// the requests in between neither lock nor spawn.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The fetches of one URI.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    running: bool,
    /// When the last attempt started (while running) or ended.
    at: Option<Instant>,
    /// The jwtRule's `timeout`.
    timeout: Duration,
    /// An attempt has ended (keys or not): requests no longer wait for one.
    first_done: bool,
}

/// The TLS client of `https://` fetches, built on the first one (and again after the
/// roots change).
#[derive(Default)]
struct Tls {
    extra: Option<TrustBundle>,
    config: Option<Arc<ClientConfig>>,
}

/// Fetched key sets by URI.
pub(crate) struct JwksCache {
    keys: ArcSwap<HashMap<String, Fetched>>,
    /// Per URI: whether a fetch runs, when the last attempt was, its timeout.
    attempts: Mutex<HashMap<String, Attempt>>,
    /// Since `epoch`, in milliseconds: when a request may next look at `attempts`.
    next_check: AtomicU64,
    epoch: Instant,
    tls: Mutex<Tls>,
    /// Woken each time a fetch ends (keys or not).
    done: tokio::sync::Notify,
}

impl Default for JwksCache {
    fn default() -> Self {
        JwksCache {
            keys: ArcSwap::default(),
            attempts: Mutex::default(),
            next_check: AtomicU64::new(0),
            epoch: Instant::now(),
            tls: Mutex::default(),
            done: tokio::sync::Notify::new(),
        }
    }
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("uris", &self.keys.load().len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl JwksCache {
    /// The keys of `uri` if fetched (stale ones too, while a refresh runs); starts a fetch
    /// when there are none or they are old.
    pub(crate) fn get(self: &Arc<Self>, uri: &str) -> Option<Arc<JwkSet>> {
        let found = self.keys.load().get(uri).cloned();
        if found.as_ref().is_none_or(|f| f.at.elapsed() >= REFRESH) {
            // at most one request per CHECK_EVERY takes the lock in `start`
            let now = self.epoch.elapsed().as_millis() as u64;
            let next = self.next_check.load(Ordering::Relaxed);
            if now >= next
                && self
                    .next_check
                    .compare_exchange(
                        next,
                        now + CHECK_EVERY.as_millis() as u64,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                self.start(uri, None);
            }
        }
        found.map(|f| f.keys)
    }

    /// Starts fetching `uri` in the background with this `timeout` (the jwtRule's; later
    /// fetches of `uri` use it too), unless a fetch is running or the last failed less
    /// than [`RETRY`] ago, or there is no runtime to run it on.
    pub(crate) fn fetch(self: &Arc<Self>, uri: &str, timeout: Duration) {
        self.start(uri, Some(timeout));
    }

    /// Whether `uri` has no keys yet and its very first fetch is under way (a request
    /// waits for that one only: once it has failed, requests are answered at once).
    pub(crate) fn awaiting_first(&self, uri: &str) -> bool {
        !self.keys.load().contains_key(uri)
            && lock(&self.attempts)
                .get(uri)
                .is_some_and(|a| a.running && !a.first_done)
    }

    /// Waits until none of `uris` awaits its first keys ([`JwksCache::awaiting_first`]),
    /// or `timeout` passes.
    pub(crate) async fn first_keys(&self, uris: &[String], timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            // registered before the check: a fetch ending in between still wakes us
            notified.as_mut().enable();
            if !uris.iter().any(|u| self.awaiting_first(u)) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// `https://` servers are trusted up to these roots too, besides the platform's
    /// (replacing the roots given before); the next fetch uses them.
    pub(crate) fn trust_roots(&self, roots: TrustBundle) {
        let mut tls = lock(&self.tls);
        tls.extra = Some(roots);
        tls.config = None;
    }

    fn start(self: &Arc<Self>, uri: &str, timeout: Option<Duration>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let timeout = {
            let mut attempts = lock(&self.attempts);
            if !attempts.contains_key(uri) {
                let first = Attempt {
                    running: false,
                    at: None,
                    timeout: DEFAULT_JWKS_TIMEOUT,
                    first_done: false,
                };
                attempts.insert(uri.to_owned(), first);
            }
            let Some(a) = attempts.get_mut(uri) else {
                return;
            };
            if let Some(t) = timeout {
                a.timeout = t;
            }
            if a.running || a.at.is_some_and(|at| at.elapsed() < RETRY) {
                return;
            }
            a.running = true;
            a.at = Some(Instant::now());
            a.timeout
        };
        let this = Arc::clone(self);
        let uri = uri.to_owned();
        rt.spawn(async move {
            let result = tokio::time::timeout(timeout, this.get_jwks(&uri)).await;
            match result {
                Ok(Ok(keys)) => {
                    let mut map = HashMap::clone(&this.keys.load());
                    map.insert(
                        uri.clone(),
                        Fetched {
                            keys: Arc::new(keys),
                            at: Instant::now(),
                        },
                    );
                    this.keys.store(Arc::new(map));
                }
                Ok(Err(e)) => tracing::warn!(%uri, error = %e, "jwksUri fetch failed"),
                Err(_) => tracing::warn!(%uri, ?timeout, "jwksUri fetch timed out"),
            }
            if let Some(a) = lock(&this.attempts).get_mut(&uri) {
                a.running = false;
                a.first_done = true;
                a.at = Some(Instant::now());
            }
            this.done.notify_waiters();
        });
    }

    /// The TLS client config of `https://` fetches (built once per set of roots).
    fn tls_config(&self) -> Arc<ClientConfig> {
        // read once, before the lock
        let platform = platform_roots();
        let mut tls = lock(&self.tls);
        if let Some(c) = &tls.config {
            return Arc::clone(c);
        }
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(platform.iter().cloned());
        if let Some(extra) = &tls.extra {
            roots.add_parsable_certificates(extra.certs().iter().cloned());
        }
        let mut config = ClientConfig::builder_with_provider(mesh_tls::provider())
            .with_safe_default_protocol_versions()
            .expect("the provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        tls.config = Some(Arc::clone(&config));
        config
    }

    /// GETs a JWKS document over http or https.
    async fn get_jwks(&self, uri: &str) -> Result<JwkSet, String> {
        let parsed: http::Uri = uri.parse().map_err(|e| format!("{e}"))?;
        let https = match parsed.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("only http:// and https:// jwksUri are fetched".to_owned()),
        };
        let authority = parsed.authority().ok_or("no host in the jwksUri")?.clone();
        // an IPv6 literal without its brackets
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = parsed.path_and_query().map_or("/", |p| p.as_str());
        let req = http::Request::get(path)
            .header(http::header::HOST, authority.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let body = if https {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls_config())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            send(tls, req).await?
        } else {
            send(tcp, req).await?
        };
        mesh_core::authn::parse_jwks(&body)
    }
}

/// The platform's root certificates, loaded once (on the first `https://` fetch).
fn platform_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        if loaded.certs.is_empty() {
            tracing::warn!(
                errors = loaded.errors.len(),
                "no platform root certificates: https jwksUri are trusted only up to added roots"
            );
        }
        loaded.certs
    })
}

/// Sends `req` over a new HTTP/1.1 connection on `io`; the body of a 2xx answer.
async fn send<IO>(io: IO, req: http::Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let answer = async move {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        Limited::new(resp.into_body(), MAX_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string())
    };
    // the connection is driven alongside; when it ends first (the server closed it), the
    // answer may still be complete
    let mut answer = std::pin::pin!(answer);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        r = &mut answer => r,
        c = &mut conn => {
            c.map_err(|e| e.to_string())?;
            answer.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const JWKS: &str = include_str!("../../../mesh-core/tests/fixtures/jwt/jwks.json");

    /// Waits until the fetch of `uri` has ended; the keys then.
    async fn fetched(cache: &Arc<JwksCache>, uri: &str) -> Option<Arc<JwkSet>> {
        for _ in 0..500 {
            if lock(&cache.attempts).get(uri).is_some_and(|a| !a.running) {
                return cache.keys.load().get(uri).map(|f| Arc::clone(&f.keys));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the fetch of {uri} did not end");
    }

    /// A server answering every connection with `answer` (then closing it).
    async fn serve(answer: &'static str) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn fetch_outcomes() {
        let ok: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{JWKS}"
            )
            .into_boxed_str(),
        );
        let table: [(&str, Option<&'static str>, bool); 5] = [
            // (what, the server's answer or none (connection refused), keys)
            ("a JWKS", Some(ok), true),
            (
                "not found",
                Some("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
                false,
            ),
            (
                "not JSON",
                Some("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno"),
                false,
            ),
            ("not HTTP", Some("SSH-2.0-OpenSSH\r\n"), false),
            ("refused", None, false),
        ];
        for (what, answer, want) in table {
            let uri = match answer {
                Some(a) => format!("http://{}/jwks.json", serve(a).await),
                None => {
                    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = l.local_addr().unwrap();
                    drop(l);
                    format!("http://{addr}/jwks.json")
                }
            };
            let cache = Arc::new(JwksCache::default());
            cache.fetch(&uri, Duration::from_secs(5));
            let keys = fetched(&cache, &uri).await;
            assert_eq!(keys.is_some(), want, "{what}");
            if let Some(k) = keys {
                assert_eq!(k.keys[0].common.key_id.as_deref(), Some("k1"));
            }
        }
    }

    /// A server that accepts and never answers: the fetch ends at the rule's timeout, and
    /// the next one waits [`RETRY`].
    #[tokio::test]
    async fn a_fetch_ends_at_its_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/jwks.json", l.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                conns.push(s);
            }
        });
        let cache = Arc::new(JwksCache::default());
        let started = Instant::now();
        cache.fetch(&uri, Duration::from_millis(150));
        assert!(fetched(&cache, &uri).await.is_none());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // the timeout stays with the URI; a request does not start another fetch at once
        assert_eq!(
            lock(&cache.attempts)[&uri].timeout,
            Duration::from_millis(150)
        );
        assert!(cache.get(&uri).is_none());
        assert!(!lock(&cache.attempts)[&uri].running);
        held.abort();
    }

    #[tokio::test]
    async fn unsupported_schemes_fail() {
        let cache = Arc::new(JwksCache::default());
        for uri in ["ftp://example.com/jwks.json", "/jwks.json"] {
            let e = cache.get_jwks(uri).await.unwrap_err();
            assert!(e.contains("only http:// and https://"), "{uri}: {e}");
        }
    }
}
