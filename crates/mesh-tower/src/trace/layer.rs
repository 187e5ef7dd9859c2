//! [`PropagateTraceLayer`].

use tower::Layer;

use super::service::PropagateTrace;
use super::TraceConfig;

/// Which side of the mesh a propagation layer sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

/// Propagates trace context and `x-request-id`. See the [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct PropagateTraceLayer {
    pub(crate) direction: Direction,
    pub(crate) config: TraceConfig,
}

impl PropagateTraceLayer {
    /// For a server: the caller's headers are the parent; the context becomes the task's
    /// current context while the request is handled.
    pub fn inbound(config: TraceConfig) -> Self {
        PropagateTraceLayer {
            direction: Direction::Inbound,
            config,
        }
    }

    /// For a client: the parent is the request's own headers, its extensions, or the
    /// current inbound context.
    pub fn outbound(config: TraceConfig) -> Self {
        PropagateTraceLayer {
            direction: Direction::Outbound,
            config,
        }
    }
}

impl<S> Layer<S> for PropagateTraceLayer {
    type Service = PropagateTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateTrace::new(inner, *self)
    }
}
