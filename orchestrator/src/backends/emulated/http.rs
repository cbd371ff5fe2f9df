//! The app's HTTP front: one axum route per app-model route (`{id}` segments as in the model), each request walking
//! its call tree. A route with a redirect answers 302 to its target's path (the client follows it as a separate
//! request); refused requests answer 503 or 504 with Envoy's texts. For Online Boutique the [`Storefront`] adds
//! the session cookie, the currency cookie and carts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

use super::calls::run_route;
use super::cluster::Cluster;
use super::storefront::Storefront;

pub struct HttpApp {
    pub cluster: Arc<Cluster>,
    /// Budget of one request inside the app (the client's timeout).
    pub timeout: Duration,
    pub storefront: Option<Storefront>,
}

/// The router serving every HTTP route of the app.
pub fn router(app: Arc<HttpApp>) -> Router {
    let mut by_path: BTreeMap<String, MethodRouter<Arc<HttpApp>>> = BTreeMap::new();
    for (index, route) in app.cluster.app.routes.iter().enumerate() {
        let (Some(method), Some(path)) = (&route.method, &route.path) else { continue };
        let method = Method::from_bytes(method.as_bytes()).expect("validated method");
        let filter = MethodFilter::try_from(method).expect("a standard method");
        let handler =
            move |State(app): State<Arc<HttpApp>>, headers: HeaderMap, body: Bytes| handle(app, index, headers, body);
        let methods = match by_path.remove(path) {
            Some(methods) => methods.on(filter, handler),
            None => on(filter, handler),
        };
        by_path.insert(path.clone(), methods);
    }
    let mut router = Router::new();
    for (path, methods) in by_path {
        router = router.route(&path, methods);
    }
    router.fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") }).with_state(app)
}

async fn handle(app: Arc<HttpApp>, route: usize, headers: HeaderMap, body: Bytes) -> Response {
    let cluster = &app.cluster;
    cluster.telemetry.received(route);
    let deadline = Instant::now() + app.timeout;
    let spec = &cluster.app.routes[route];
    let session = app.storefront.as_ref().map(|shop| shop.session(&headers));
    let outcome = run_route(cluster, route, deadline).await;
    let mut response = match outcome {
        Err(refusal) => {
            cluster.telemetry.answered(route, refusal.status());
            let status = StatusCode::from_u16(refusal.status()).expect("valid status");
            (status, refusal.message()).into_response()
        }
        Ok(()) => {
            let (page, cookie) = match (&app.storefront, &session) {
                (Some(shop), Some((id, _))) => shop.apply(Storefront::action(&spec.name), id, &headers, &body),
                _ => (String::new(), None),
            };
            let mut response = match &spec.location {
                Some(location) => {
                    cluster.telemetry.answered(route, 302);
                    let mut response = StatusCode::FOUND.into_response();
                    response.headers_mut().insert(LOCATION, HeaderValue::from_str(location).expect("a path"));
                    response
                }
                None => {
                    cluster.telemetry.answered(route, 200);
                    let body = if page.is_empty() { format!("{}\n", spec.name) } else { page };
                    let mut response = body.into_response();
                    if app.storefront.is_some() {
                        let html = HeaderValue::from_static("text/html; charset=utf-8");
                        response.headers_mut().insert(CONTENT_TYPE, html);
                    }
                    response
                }
            };
            if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
                response.headers_mut().append(SET_COOKIE, cookie);
            }
            response
        }
    };
    if let Some((_, Some(new_session))) = session
        && let Ok(value) = HeaderValue::from_str(&new_session)
    {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}
