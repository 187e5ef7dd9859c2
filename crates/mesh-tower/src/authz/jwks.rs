//! The keys of RequestAuthentication `jwksUri`s, fetched off the request path.
//!
//! A request reads the cache without locking. A key set missing (or older than ten minutes,
//! Envoy's default `cache_duration`) starts one background fetch (requests look at what to
//! fetch at most every 100 ms; the others neither lock nor spawn); until the first answer
//! arrives, tokens for that provider fail closed (401 `Jwks remote fetch is failed`), as
//! Envoy's do while its fetch is pending. `http://` URIs are fetched; `https://` ones are
//! not yet (no public root store is bundled): use an inline `jwks` for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mesh_core::authn::JwkSet;

/// How long fetched keys are used before they are fetched again (Envoy's default).
const REFRESH: Duration = Duration::from_secs(600);
/// How long a failed fetch waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// Istio's default `timeout` for a JWKS fetch.
const TIMEOUT: Duration = Duration::from_secs(5);
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

/// Fetched key sets by URI.
pub(crate) struct JwksCache {
    keys: ArcSwap<HashMap<String, Fetched>>,
    /// URIs being fetched, and when the last attempt started.
    attempts: Mutex<HashMap<String, (bool, Instant)>>,
    /// Since `epoch`, in milliseconds: when a request may next look at `attempts`.
    next_check: AtomicU64,
    epoch: Instant,
}

impl Default for JwksCache {
    fn default() -> Self {
        JwksCache {
            keys: ArcSwap::default(),
            attempts: Mutex::default(),
            next_check: AtomicU64::new(0),
            epoch: Instant::now(),
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

impl JwksCache {
    /// The keys of `uri` if fetched (stale ones too, while a refresh runs); starts a fetch
    /// when there are none or they are old.
    pub(crate) fn get(self: &Arc<Self>, uri: &str) -> Option<Arc<JwkSet>> {
        let found = self.keys.load().get(uri).cloned();
        if found.as_ref().is_none_or(|f| f.at.elapsed() >= REFRESH) {
            // at most one request per CHECK_EVERY takes the lock in `fetch`
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
                self.fetch(uri);
            }
        }
        found.map(|f| f.keys)
    }

    /// Starts fetching `uri` in the background, unless a fetch is running or the last
    /// failed less than [`RETRY`] ago, or there is no runtime to run it on.
    pub(crate) fn fetch(self: &Arc<Self>, uri: &str) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut attempts = self
                .attempts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((running, at)) = attempts.get(uri) {
                if *running || at.elapsed() < RETRY {
                    return;
                }
            }
            attempts.insert(uri.to_owned(), (true, Instant::now()));
        }
        let this = Arc::clone(self);
        let uri = uri.to_owned();
        rt.spawn(async move {
            let result = tokio::time::timeout(TIMEOUT, get_jwks(&uri)).await;
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
                Err(_) => tracing::warn!(%uri, "jwksUri fetch timed out"),
            }
            this.attempts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(uri, (false, Instant::now()));
        });
    }
}

/// GETs a JWKS document.
async fn get_jwks(uri: &str) -> Result<JwkSet, String> {
    let parsed: http::Uri = uri.parse().map_err(|e| format!("{e}"))?;
    if parsed.scheme_str() != Some("http") {
        return Err("only http:// jwksUri are fetched; inline the jwks for https".to_owned());
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = client.get(parsed).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))
}
