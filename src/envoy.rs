//! Envoy's ext_authz gRPC service, `envoy.service.auth.v3.Authorization/Check`,
//! on its own listener (`serve --grpc-listen ADDR`).
//!
//! A check is decided by the same code as `/v1/forward-auth` and the ext_authz HTTP
//! service ([`App::authorize_original`]): same route table, principal header,
//! context, metrics and decision record. Its HTTP answer is then translated: 200
//! becomes `OK` with the `x-elevate-*` headers set on the upstream request, 401 and
//! 403 become `UNAUTHENTICATED` and `PERMISSION_DENIED` with the same status and
//! JSON body for the client.
//!
//! The messages are declared by hand in [`proto`] and the service is written
//! against `tonic`'s server API directly, so building needs no `protoc`.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::gateway::origin::Original;
use crate::http::{App, DECISION_ID_HEADER, GRANTS_HEADER, PRINCIPAL_HEADER, VALID_UNTIL_HEADER};
use crate::metrics::Route;

pub mod proto;

use proto::{CheckRequest, CheckResponse};

/// The gRPC path of the one method served.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The headers an allow sets upstream; any of them the decision leaves out is
/// removed instead, so a client's copy never reaches the API.
const DECISION_HEADERS: [&str; 4] = [
    PRINCIPAL_HEADER,
    GRANTS_HEADER,
    DECISION_ID_HEADER,
    VALID_UNTIL_HEADER,
];

/// `google.rpc.Code` values used here.
mod code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const INTERNAL: i32 = 13;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// Serves the Authorization service on `listener` until `shutdown`.
///
/// # Errors
/// The server fails as a whole (not one connection or call).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(
            AuthorizationServer { app },
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.cancelled_owned(),
        )
        .await
        .map_err(std::io::Error::other)
}

/// Decides one check.
pub async fn check(app: &App, request: CheckRequest) -> CheckResponse {
    let (original, headers, peer) = match from_request(request) {
        Ok(parts) => parts,
        Err(message) => {
            app.metrics.response(Route::ExtAuthzGrpc, 400);
            return denied(
                code::INVALID_ARGUMENT,
                StatusCode::BAD_REQUEST,
                &HeaderMap::new(),
                serde_json::json!({"error": message, "kind": "bad_request"}).to_string(),
            );
        }
    };
    let response = app.authorize_original(&original, &headers, peer);
    app.metrics
        .response(Route::ExtAuthzGrpc, response.status().as_u16());
    to_check_response(response).await
}

/// The original request, its headers and the downstream peer from a check.
fn from_request(
    request: CheckRequest,
) -> Result<(Original, HeaderMap, Option<SocketAddr>), String> {
    let attributes = request.attributes.unwrap_or_default();
    let peer = attributes
        .source
        .and_then(|s| s.address)
        .and_then(|a| a.socket_address)
        .and_then(|s| {
            let ip: IpAddr = s.address.parse().ok()?;
            Some(SocketAddr::new(ip, u16::try_from(s.port_value).ok()?))
        });
    let http = attributes
        .request
        .and_then(|r| r.http)
        .ok_or("the check request has no `attributes.request.http`")?;
    let (path, query) = match http.path.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (http.path.clone(), String::new()),
    };
    if !path.starts_with('/') {
        return Err(format!(
            "`{}` is not an origin-form request target",
            http.path
        ));
    }
    if http.method.is_empty()
        || !http
            .method
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-')
    {
        return Err(format!("`{}` is not an HTTP method", http.method));
    }
    let mut headers = HeaderMap::new();
    let raw = http.header_map.map(|m| m.headers).unwrap_or_default();
    let pairs = http
        .headers
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .chain(raw.into_iter().map(|h| {
            let value = if h.raw_value.is_empty() {
                h.value.into_bytes()
            } else {
                h.raw_value
            };
            (h.key, value)
        }));
    for (name, value) in pairs {
        // Pseudo-headers (`:path`, `:method`) are the request line, read above.
        if name.starts_with(':') {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    Ok((
        Original {
            method: http.method.to_ascii_uppercase(),
            path,
            query,
        },
        headers,
        peer,
    ))
}

/// The gRPC form of a gateway answer.
async fn to_check_response(response: Response<Full<Bytes>>) -> CheckResponse {
    let (parts, body) = response.into_parts();
    if parts.status == StatusCode::OK {
        let mut headers = Vec::new();
        let mut headers_to_remove = Vec::new();
        for name in DECISION_HEADERS {
            match parts.headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(value) => headers.push(header(name, value)),
                None => headers_to_remove.push(name.to_owned()),
            }
        }
        return CheckResponse {
            status: Some(proto::RpcStatus {
                code: code::OK,
                message: String::new(),
            }),
            http_response: Some(proto::HttpResponse::Ok(proto::OkHttpResponse {
                headers,
                headers_to_remove,
            })),
        };
    }
    let body = match body.collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(never) => match never {},
    };
    let grpc = match parts.status {
        StatusCode::UNAUTHORIZED => code::UNAUTHENTICATED,
        StatusCode::FORBIDDEN => code::PERMISSION_DENIED,
        StatusCode::BAD_REQUEST => code::INVALID_ARGUMENT,
        StatusCode::NOT_FOUND => code::NOT_FOUND,
        _ => code::INTERNAL,
    };
    denied(grpc, parts.status, &parts.headers, body)
}

fn denied(grpc: i32, status: StatusCode, from: &HeaderMap, body: String) -> CheckResponse {
    // `envoy.type.v3.StatusCode` only has values for these; Envoy refuses others.
    let http = match status.as_u16() {
        code @ (400 | 401 | 403 | 404 | 500 | 503) => code,
        _ => 403,
    };
    let headers = ["content-type", "www-authenticate", DECISION_ID_HEADER]
        .into_iter()
        .filter_map(|name| {
            let value = from.get(name)?.to_str().ok()?;
            Some(header(name, value))
        })
        .collect();
    CheckResponse {
        status: Some(proto::RpcStatus {
            code: grpc,
            message: status.canonical_reason().unwrap_or_default().to_owned(),
        }),
        http_response: Some(proto::HttpResponse::Denied(proto::DeniedHttpResponse {
            status: Some(proto::HttpStatus {
                code: i32::from(http),
            }),
            headers,
            body,
        })),
    }
}

fn header(name: &str, value: &str) -> proto::HeaderValueOption {
    proto::HeaderValueOption {
        header: Some(proto::HeaderValue {
            key: name.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append_action: proto::OVERWRITE_IF_EXISTS_OR_ADD,
    }
}

// ------------------------------------------------------------ the tonic service
//
// What `tonic-build` would generate for a one-method service, written out.

/// The `envoy.service.auth.v3.Authorization` service.
#[derive(Clone)]
pub struct AuthorizationServer {
    app: Arc<App>,
}

impl AuthorizationServer {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

impl tonic::server::NamedService for AuthorizationServer {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

struct CheckMethod(Arc<App>);

impl tonic::server::UnaryService<CheckRequest> for CheckMethod {
    type Response = CheckResponse;
    type Future = BoxFuture<tonic::Response<CheckResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let app = Arc::clone(&self.0);
        Box::pin(async move {
            Ok(tonic::Response::new(
                check(&app, request.into_inner()).await,
            ))
        })
    }
}

impl<B> tonic::codegen::Service<hyper::Request<B>> for AuthorizationServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = hyper::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<B>) -> Self::Future {
        if req.uri().path() == CHECK_PATH {
            let method = CheckMethod(Arc::clone(&self.app));
            return Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(method, req).await)
            });
        }
        Box::pin(async move {
            let mut response = hyper::Response::new(tonic::body::Body::default());
            let headers = response.headers_mut();
            headers.insert(
                tonic::Status::GRPC_STATUS,
                HeaderValue::from(tonic::Code::Unimplemented as i32),
            );
            headers.insert(
                hyper::header::CONTENT_TYPE,
                tonic::metadata::GRPC_CONTENT_TYPE,
            );
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests;
