//! The load benchmark's floor: HTTP alone. A hyper 1 server with the same setup as
//! `elevate serve` (multi-thread tokio runtime, hyper-util's auto HTTP/1 + HTTP/2
//! builder with the same timer, header timeout and keep-alive, `TCP_NODELAY`, a
//! connection semaphore, graceful-shutdown watch) that reads the request body (with
//! the same 1 MiB limit) and answers every request with a fixed JSON decision, without
//! deciding anything.
//!
//! Run: `cargo run --release --example hyper_floor -- 127.0.0.1:18380`
//! (pin it like the server: `taskset -c 0 target/release/examples/hyper_floor ADDR`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
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

fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18380".into())
        .parse()
        .expect("usage: hyper_floor ADDR (e.g. 127.0.0.1:18380)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(addr));
}

async fn serve(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    eprintln!("hyper_floor listening on {addr}");
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
        let (stream, _peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(err) => {
                eprintln!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                hyper::service::service_fn(handle),
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = conn.await;
        });
    }
}
