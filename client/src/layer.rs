//! A tower layer that counts every request an HTTP or gRPC server receives.

use std::sync::Arc;
use std::task::{Context, Poll};

use count_proto::v1::Method;
use tower_layer::Layer;
use tower_service::Service;

use crate::Counter;

/// What a key hook sees of a request.
#[derive(Debug)]
pub struct RequestInfo<'a> {
    /// The HTTP method.
    pub method: &'a http::Method,
    /// The request URI.
    pub uri: &'a http::Uri,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// Extensions set by layers and routers before this one.
    pub extensions: &'a http::Extensions,
}

/// Chooses the (method, path) a request is counted under; `None` skips it.
pub type KeyHook = Arc<dyn Fn(&RequestInfo<'_>) -> Option<(Method, String)> + Send + Sync>;

/// Counts every request into a [`Counter`], for axum, hyper and tonic
/// servers alike. It never delays or fails the request: counting is an
/// in-memory add, whatever the state of the count server.
///
/// By default a gRPC request (`content-type: application/grpc…`) counts as
/// `GRPC` with its full method path (`/pkg.Service/Method`); any other
/// request counts under its HTTP method and, with axum, the matched route
/// template (`/users/{id}`, not `/users/123`), else the URI path. Requests
/// whose HTTP method has no `count.v1.Method` (e.g. WebDAV's `PROPFIND`) are counted as
/// dropped in [`crate::Stats`]. [`CountLayer::with_key`] replaces all this.
///
/// ```no_run
/// # async fn demo() -> Result<(), count_client::Error> {
/// use count_client::{CountLayer, Counter};
///
/// let counter = Counter::builder("http://127.0.0.1:7777").build()?;
/// let app: axum::Router = axum::Router::new()
///     .route("/users/{id}", axum::routing::get(|| async { "user" }))
///     .layer(CountLayer::new(counter));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CountLayer {
    counter: Counter,
    key: Option<KeyHook>,
}

impl std::fmt::Debug for CountLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountLayer")
            .field("counter", &self.counter)
            .field("custom_key", &self.key.is_some())
            .finish()
    }
}

impl CountLayer {
    /// Counts requests into `counter` with the default key.
    pub fn new(counter: Counter) -> Self {
        CountLayer { counter, key: None }
    }

    /// Counts requests under the key `hook` returns instead.
    pub fn with_key(
        counter: Counter,
        hook: impl Fn(&RequestInfo<'_>) -> Option<(Method, String)> + Send + Sync + 'static,
    ) -> Self {
        CountLayer {
            counter,
            key: Some(Arc::new(hook)),
        }
    }

    fn count<B>(&self, request: &http::Request<B>) {
        let info = RequestInfo {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        };
        let key = match &self.key {
            Some(hook) => hook(&info),
            None => Some(default_key(&info)),
        };
        if let Some((method, path)) = key {
            self.counter.record(method, &path);
        }
    }
}

/// The default (method, path) of a request; see [`CountLayer`].
pub fn default_key(info: &RequestInfo<'_>) -> (Method, String) {
    let grpc = info
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return (Method::Grpc, info.uri.path().to_owned());
    }
    let method = Method::from_str_name(info.method.as_str()).unwrap_or(Method::Unspecified);
    (method, route(info))
}

#[cfg(feature = "axum")]
fn route(info: &RequestInfo<'_>) -> String {
    match info.extensions.get::<axum::extract::MatchedPath>() {
        Some(matched) => matched.as_str().to_owned(),
        None => info.uri.path().to_owned(),
    }
}

#[cfg(not(feature = "axum"))]
fn route(info: &RequestInfo<'_>) -> String {
    info.uri.path().to_owned()
}

impl<S> Layer<S> for CountLayer {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counting {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`CountLayer`] wraps around yours.
#[derive(Clone, Debug)]
pub struct Counting<S> {
    inner: S,
    layer: CountLayer,
}

impl<S, B> Service<http::Request<B>> for Counting<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.layer.count(&request);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: &str, uri: &str, content_type: Option<&str>) -> (Method, String) {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        let request = builder.body(()).unwrap();
        default_key(&RequestInfo {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        })
    }

    #[test]
    fn grpc_by_content_type_http_by_method() {
        assert_eq!(
            key("POST", "/pkg.S/Call", Some("application/grpc+proto")),
            (Method::Grpc, "/pkg.S/Call".into())
        );
        assert_eq!(
            key("GET", "/users/7?x=1", None),
            (Method::Get, "/users/7".into())
        );
        assert_eq!(
            key("DELETE", "/a", Some("application/json")),
            (Method::Delete, "/a".into())
        );
        assert_eq!(key("PATCH", "/a", None), (Method::Patch, "/a".into()));
        assert_eq!(key("PURGE", "/a", None), (Method::Unspecified, "/a".into()));
    }
}
