//! A tower layer that counts every request an HTTP or gRPC server receives,
//! with how it went: its status code, once the response head (or, for gRPC,
//! the trailers) is produced.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use count_proto::v1::Method;
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use crate::Counter;

/// The status of an HTTP request whose handler panicked.
pub const HTTP_PANICKED: u16 = 500;
/// The status of an HTTP request dropped before its response head (the
/// client went away, or the server shut the connection): nginx's "client
/// closed request".
pub const HTTP_DROPPED: u16 = 499;
/// The status of a gRPC call whose handler panicked: INTERNAL.
pub const GRPC_PANICKED: u16 = 13;
/// The status of a gRPC call dropped before its trailers: CANCELLED.
pub const GRPC_DROPPED: u16 = 1;
/// The status of a gRPC call whose response ended without a `grpc-status`:
/// UNKNOWN, as gRPC clients read it.
pub const GRPC_NO_STATUS: u16 = 2;

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

/// Chooses the tenant a request is counted for; `None` for none.
pub type TenantHook = Arc<dyn Fn(&RequestInfo<'_>) -> Option<String> + Send + Sync>;

/// Counts every request into a [`Counter`], for axum, hyper and tonic
/// servers alike. It never delays or fails the request: counting is an
/// in-memory add, whatever the state of the count server.
///
/// A request is counted when its response head is produced, with its HTTP
/// status code; a gRPC call when its trailers are, with their
/// `grpc-status` (or at the head, for a call answered with headers only).
/// A handler that panics counts as [`HTTP_PANICKED`] (500) or
/// [`GRPC_PANICKED`] (INTERNAL); a request dropped before its answer (the
/// client went away) as [`HTTP_DROPPED`] (499) or [`GRPC_DROPPED`]
/// (CANCELLED); a gRPC response without `grpc-status` as
/// [`GRPC_NO_STATUS`] (UNKNOWN). [`CountLayer::with_tenant`] names the
/// tenant, from a header or an extension an auth layer set.
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
    tenant: Option<TenantHook>,
}

impl std::fmt::Debug for CountLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountLayer")
            .field("counter", &self.counter)
            .field("custom_key", &self.key.is_some())
            .field("tenant", &self.tenant.is_some())
            .finish()
    }
}

impl CountLayer {
    /// Counts requests into `counter` with the default key.
    pub fn new(counter: Counter) -> Self {
        CountLayer {
            counter,
            key: None,
            tenant: None,
        }
    }

    /// Counts requests under the key `hook` returns instead.
    pub fn with_key(
        counter: Counter,
        hook: impl Fn(&RequestInfo<'_>) -> Option<(Method, String)> + Send + Sync + 'static,
    ) -> Self {
        CountLayer {
            counter,
            key: Some(Arc::new(hook)),
            tenant: None,
        }
    }

    /// Counts each request for the tenant `hook` names (for example from a
    /// header, or a request extension an auth layer set before this one).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), count_client::Error> {
    /// use count_client::{CountLayer, Counter};
    ///
    /// let counter = Counter::builder("http://127.0.0.1:7777").build()?;
    /// let layer = CountLayer::new(counter).with_tenant(|request| {
    ///     let tenant = request.headers.get("x-tenant")?.to_str().ok()?;
    ///     Some(tenant.to_owned())
    /// });
    /// # Ok(()) }
    /// ```
    pub fn with_tenant(
        mut self,
        hook: impl Fn(&RequestInfo<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.tenant = Some(Arc::new(hook));
        self
    }

    /// What `request` will be counted under, once its status is known.
    fn pending<B>(&self, request: &http::Request<B>) -> Option<Pending> {
        let info = RequestInfo {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        };
        let (method, path) = match &self.key {
            Some(hook) => hook(&info)?,
            None => default_key(&info),
        };
        let tenant = self
            .tenant
            .as_ref()
            .and_then(|hook| hook(&info))
            .unwrap_or_default();
        Some(Pending {
            counter: self.counter.clone(),
            method,
            path,
            tenant,
            counted: false,
        })
    }
}

/// A request counted once its status is known, or when dropped (a panic,
/// or a request that never got its answer).
struct Pending {
    counter: Counter,
    method: Method,
    path: String,
    tenant: String,
    /// Set once counted, so that dropping it counts nothing more.
    counted: bool,
}

impl Pending {
    fn grpc(&self) -> bool {
        self.method == Method::Grpc
    }

    /// Counts the request with `status`.
    fn record(mut self, status: u16) {
        self.count(status);
        self.counted = true;
    }

    fn count(&self, status: u16) {
        self.counter
            .record_response(self.method, &self.path, &self.tenant, Some(status));
    }

    /// Counts the request at its response head, unless a gRPC call's
    /// status is still to come in its trailers; then it is given back.
    fn at_head(self, head: &http::response::Parts) -> Option<Pending> {
        if !self.grpc() {
            self.record(head.status.as_u16());
            return None;
        }
        match grpc_status(&head.headers) {
            Some(status) => {
                self.record(status);
                None
            }
            None => Some(self),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.counted {
            return;
        }
        let status = match (std::thread::panicking(), self.grpc()) {
            (true, false) => HTTP_PANICKED,
            (true, true) => GRPC_PANICKED,
            (false, false) => HTTP_DROPPED,
            (false, true) => GRPC_DROPPED,
        };
        self.count(status);
    }
}

/// The `grpc-status` of headers or trailers, if any.
fn grpc_status(headers: &http::HeaderMap) -> Option<u16> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
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

impl<S, B, R> Service<http::Request<B>> for Counting<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    R: Body,
{
    type Response = http::Response<CountedBody<R>>;
    type Error = S::Error;
    type Future = CountingFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let pending = self.layer.pending(&request);
        CountingFuture {
            inner: self.inner.call(request),
            pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Counting`]: counts the request at its
    /// response head, or when dropped before it.
    pub struct CountingFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, R, E> Future for CountingFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    R: Body,
{
    type Output = Result<http::Response<CountedBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let pending = this.pending.take();
        Poll::Ready(match result {
            Ok(response) => {
                let (head, body) = response.into_parts();
                let mut pending = pending.and_then(|p| p.at_head(&head));
                // A gRPC answer whose body is over already: hyper will not
                // poll it for the trailers it lacks.
                if body.is_end_stream()
                    && let Some(p) = pending.take()
                {
                    p.record(GRPC_NO_STATUS);
                }
                Ok(http::Response::from_parts(
                    head,
                    CountedBody {
                        inner: body,
                        pending,
                    },
                ))
            }
            Err(error) => {
                // The service failed the request: the server's error.
                if let Some(p) = pending {
                    let status = if p.grpc() {
                        GRPC_PANICKED
                    } else {
                        HTTP_PANICKED
                    };
                    p.record(status);
                }
                Err(error)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts a gRPC call at its trailers (or when
    /// it ends or is dropped without them); other bodies pass through.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let status = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| grpc_status(trailers).unwrap_or(GRPC_NO_STATUS)),
            Some(Err(_)) => Some(GRPC_DROPPED),
            None => Some(GRPC_NO_STATUS),
        };
        if let Some(status) = status
            && let Some(pending) = this.pending.take()
        {
            pending.record(status);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
