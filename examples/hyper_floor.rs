//! The load benchmark's floor: HTTP alone. A hyper 1 server with the same setup as
//! `elevate serve` (multi-thread tokio runtime, hyper-util's auto HTTP/1 + HTTP/2
//! builder with the same timer, header timeout and keep-alive, `TCP_NODELAY`, a
//! connection semaphore, graceful-shutdown watch) that reads the request body (with
//! the same 1 MiB limit) and answers every request with a fixed JSON decision, without
//! deciding anything.
//!
//! Run: `cargo run --release --example hyper_floor -- 127.0.0.1:18380`, or
//! `-- unix:/tmp/floor.sock` for a Unix socket like `elevate serve --listen unix:PATH`
//! (pin it like the server: `taskset -c 0 target/release/examples/hyper_floor ADDR`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

/// The size and shape of elevate's answer to the role request.
const ANSWER: &[u8] = br#"{"decision":"Allow","diagnostics":{"reason":["workspace-member-read"],"errors":[]},"grants":[],"decision_id":"19ae3c1f2a0-1"}"#;
const MAX_BODY: usize = 1024 * 1024;
const MAX_CONNECTIONS: usize = 4096;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body like the real server does, and drop it.
    let _ = Limited::new(req.into_body(), MAX_BODY).collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Where the floor listens.
enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

fn main() {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18380".into());
    let addr = match arg.strip_prefix("unix:") {
        Some(path) => Addr::Unix(PathBuf::from(path)),
        None => Addr::Tcp(
            arg.parse()
                .expect("usage: hyper_floor ADDR|unix:PATH (e.g. 127.0.0.1:18380)"),
        ),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(addr));
}

/// One accepted connection, TCP or Unix.
type Stream = tokio_util::either::Either<tokio::net::TcpStream, tokio::net::UnixStream>;

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(Stream::Left(stream))
            }
            Listener::Unix(listener) => Ok(Stream::Right(listener.accept().await?.0)),
        }
    }
}

async fn serve(addr: Addr) {
    let listener = match &addr {
        Addr::Tcp(addr) => {
            let listener = TcpListener::bind(addr).await.expect("bind");
            eprintln!("hyper_floor listening on {addr}");
            Listener::Tcp(listener)
        }
        Addr::Unix(path) => {
            // A stale socket file from an earlier run would make bind fail.
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path).expect("bind");
            eprintln!("hyper_floor listening on unix:{}", path.display());
            Listener::Unix(listener)
        }
    };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    loop {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("semaphore open");
        let accepted = listener.accept().await;
        let stream = match accepted {
            Ok(stream) => stream,
            Err(err) => {
                eprintln!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        serve_connection(&builder, &graceful, stream, permit);
    }
}

fn serve_connection<I>(
    builder: &Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    stream: I,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), hyper::service::service_fn(handle))
        .into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        let _permit = permit;
        let _ = conn.await;
    });
}
