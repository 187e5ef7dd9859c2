//! A connection's tower service as hyper's, called in place.
//!
//! hyper calls a service through a shared reference (`&self`), tower through an exclusive
//! one once `poll_ready` said so. `hyper_util`'s `TowerToHyperService` bridges the two by
//! cloning the whole service for every request (each layer's `Arc`s counted up, then down)
//! and driving the clone through a `Oneshot`, one more future the request and the answer
//! move through. A connection's requests are called one at a time from its own task, so
//! [`InPlace`] keeps the connection's service in a `RefCell` and calls it where it is when
//! it is ready at once, as the mesh's layers always are (the application's service decides).
//! A service not ready yet is driven with its request, as `TowerToHyperService` drives its
//! clone, and a clone takes its place in the cell.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::Service;

/// One connection's tower service `S`, as a hyper service (see the module docs).
#[derive(Debug)]
pub(crate) struct InPlace<S>(RefCell<S>);

impl<S> InPlace<S> {
    pub(crate) fn new(service: S) -> Self {
        InPlace(RefCell::new(service))
    }
}

/// The errors hyper is given (as `TowerToHyperService` gives them: hyper takes any error
/// into this box).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, R> hyper::service::Service<R> for InPlace<S>
where
    S: Service<R> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = InPlaceFuture<S, R>;

    fn call(&self, req: R) -> Self::Future {
        // free: the borrow ends with this call, and hyper does not call a connection's
        // service from inside its own `call` (nothing else reaches the cell)
        let mut svc = self.0.borrow_mut();
        // readiness asked without a waker to wake: a service not ready now goes with the
        // request, to be asked again with the connection's waker (as `Oneshot` does), and a
        // clone takes its place. Not the other way round: what it started in getting ready
        // (a semaphore's place in line, as `ConcurrencyLimit` takes) must be driven on, or
        // the place it holds would block everyone behind it.
        match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => InPlaceFuture::Called { fut: svc.call(req) },
            Poll::Ready(Err(e)) => InPlaceFuture::Failed {
                error: Some(e.into()),
            },
            Poll::Pending => {
                let fresh = svc.clone();
                let waiting = std::mem::replace(&mut *svc, fresh);
                InPlaceFuture::Waiting {
                    once: Oneshot::new(waiting, req),
                }
            }
        }
    }
}

pin_project! {
    /// The answer of [`InPlace`]: the service's own future when it was ready, else a clone's.
    #[project = InPlaceProj]
    pub(crate) enum InPlaceFuture<S, R>
    where
        S: Service<R>,
    {
        Called { #[pin] fut: S::Future },
        Waiting { #[pin] once: Oneshot<S, R> },
        Failed { error: Option<BoxError> },
    }
}

impl<S, R> Future for InPlaceFuture<S, R>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            InPlaceProj::Called { fut } => fut.poll(cx).map_err(Into::into),
            InPlaceProj::Waiting { once } => once.poll(cx).map_err(Into::into),
            InPlaceProj::Failed { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => panic!("InPlaceFuture polled after completion"),
            },
        }
    }
}

impl<S: Service<R>, R> std::fmt::Debug for InPlaceFuture<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InPlaceFuture")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts its clones and calls; not ready for its first `not_ready` polls; fails
    /// readiness when `broken`.
    #[derive(Debug)]
    struct Probe {
        clones: Arc<AtomicUsize>,
        not_ready: usize,
        broken: bool,
    }

    impl Clone for Probe {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, Ordering::SeqCst);
            Probe {
                clones: Arc::clone(&self.clones),
                not_ready: self.not_ready,
                broken: self.broken,
            }
        }
    }

    impl Service<u32> for Probe {
        type Response = u32;
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<u32, std::io::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.broken {
                return Poll::Ready(Err(std::io::Error::other("overloaded")));
            }
            if self.not_ready > 0 {
                self.not_ready -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: u32) -> Self::Future {
            std::future::ready(Ok(req * 2))
        }
    }

    fn probe(not_ready: usize, broken: bool) -> (InPlace<Probe>, Arc<AtomicUsize>) {
        let clones = Arc::new(AtomicUsize::new(0));
        let svc = Probe {
            clones: Arc::clone(&clones),
            not_ready,
            broken,
        };
        (InPlace::new(svc), clones)
    }

    #[tokio::test]
    async fn a_ready_service_is_called_in_place_without_a_clone() {
        let (svc, clones) = probe(0, false);
        for i in 0..3 {
            let fut = hyper::service::Service::call(&svc, i);
            assert!(matches!(fut, InPlaceFuture::Called { .. }));
            assert_eq!(fut.await.unwrap(), i * 2);
        }
        assert_eq!(clones.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_service_not_ready_yet_is_cloned_and_waited_for() {
        // not ready for the in-place poll and the clone's first: the clone is polled again
        // when woken, then called
        let (svc, clones) = probe(2, false);
        let fut = hyper::service::Service::call(&svc, 21);
        assert!(matches!(fut, InPlaceFuture::Waiting { .. }));
        assert_eq!(fut.await.unwrap(), 42);
        assert_eq!(clones.load(Ordering::SeqCst), 1);
    }

    /// Two connections' stacks around one `ConcurrencyLimit` of 1: the second connection's
    /// request waits for the first's answer, then is answered (its stack's place in the
    /// semaphore's line is the one driven, not left behind in the cell).
    #[tokio::test]
    async fn a_request_waiting_for_a_limit_gets_it_when_it_frees() {
        use tower::limit::ConcurrencyLimit;
        let gate = Arc::new(tokio::sync::Notify::new());
        let app = {
            let gate = Arc::clone(&gate);
            tower::service_fn(move |first: bool| {
                let gate = Arc::clone(&gate);
                async move {
                    if first {
                        gate.notified().await;
                    }
                    Ok::<_, std::io::Error>(first)
                }
            })
        };
        let limited = ConcurrencyLimit::new(app, 1);
        let (one, two) = (InPlace::new(limited.clone()), InPlace::new(limited));
        let first = tokio::spawn(hyper::service::Service::call(&one, true));
        tokio::task::yield_now().await;
        let second = hyper::service::Service::call(&two, false);
        assert!(matches!(second, InPlaceFuture::Waiting { .. }));
        let second = tokio::spawn(second);
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "the limit holds the second back");
        gate.notify_one();
        let wait = std::time::Duration::from_secs(5);
        assert!(tokio::time::timeout(wait, first)
            .await
            .unwrap()
            .unwrap()
            .unwrap());
        let answered = tokio::time::timeout(wait, second).await;
        assert!(!answered
            .expect("the second request got the freed permit")
            .unwrap()
            .unwrap());
        // and the second connection's stack takes the next request at once
        let third = hyper::service::Service::call(&two, false);
        assert!(matches!(third, InPlaceFuture::Called { .. }));
        assert!(!third.await.unwrap());
    }

    #[tokio::test]
    async fn a_readiness_error_is_the_answer() {
        let (svc, clones) = probe(0, true);
        let err = hyper::service::Service::call(&svc, 1).await.unwrap_err();
        assert_eq!(err.to_string(), "overloaded");
        assert_eq!(clones.load(Ordering::SeqCst), 0);
    }
}
