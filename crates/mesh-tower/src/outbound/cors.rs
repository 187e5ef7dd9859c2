//! A route's `corsPolicy` where the route is evaluated (the mesh client and the ingress
//! gateway), as Envoy's CORS filter: istiod places it after the fault filter and before
//! the router, so a fault's delay holds a preflight too and its abort answers one. See
//! [`mesh_core::cors`] for the decisions.

use http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::{HeaderMap, Method, Response, StatusCode};
use mesh_core::cors::{Cors, CorsVerdict};

use super::{empty, MeshBody};

/// What the CORS filter does with a request.
pub(super) enum Step {
    /// A preflight answered here.
    Reply(Response<MeshBody>),
    /// From an allowed origin: forward, then [`set_response_headers`] with this origin.
    Allowed(HeaderValue),
    /// Forward, leave the response alone.
    Pass,
}

/// Decides a request's fate under the route's `cors`.
pub(super) fn check(cors: &Cors, method: &Method, headers: &HeaderMap) -> Step {
    let Some(origin_value) = headers.get(ORIGIN) else {
        return Step::Pass;
    };
    let Ok(origin) = origin_value.to_str() else {
        return Step::Pass;
    };
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let request_method = text(ACCESS_CONTROL_REQUEST_METHOD);
    match cors.evaluate(method.as_str(), Some(origin), request_method) {
        v @ CorsVerdict::Preflight { .. } => {
            let mut resp = Response::new(empty());
            *resp.status_mut() = StatusCode::OK;
            let set = cors.preflight_headers(
                v,
                origin,
                request_method.unwrap_or(""),
                text(ACCESS_CONTROL_REQUEST_HEADERS),
            );
            for (name, value) in set {
                if let Ok(v) = HeaderValue::from_str(value) {
                    resp.headers_mut().insert(HeaderName::from_static(name), v);
                }
            }
            Step::Reply(resp)
        }
        CorsVerdict::Allowed => Step::Allowed(origin_value.clone()),
        CorsVerdict::NotCors | CorsVerdict::NotAllowed => Step::Pass,
    }
}

/// Sets the CORS headers of an answer to a request from the allowed `origin`, replacing
/// the application's.
pub(super) fn set_response_headers(cors: &Cors, origin: &HeaderValue, headers: &mut HeaderMap) {
    let Ok(o) = origin.to_str() else { return };
    for (name, value) in cors.response_headers(CorsVerdict::Allowed, o) {
        let value = if name == "access-control-allow-origin" {
            origin.clone()
        } else {
            match HeaderValue::from_str(value) {
                Ok(v) => v,
                Err(_) => continue,
            }
        };
        headers.insert(HeaderName::from_static(name), value);
    }
}
