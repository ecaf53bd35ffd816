//! Tests of the load generator: its flags, histogram and answer framing as pure
//! functions, and short runs of every mode against real hyper servers on a TCP port
//! and a Unix socket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::path::Path;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, UnixListener};

use super::*;

fn args(list: &[&str]) -> Result<Plan, String> {
    let mut argv = vec!["loadgen"];
    argv.extend_from_slice(list);
    let args = Args::try_parse_from(argv).map_err(|err| err.to_string())?;
    Plan::from_args(args)
}

// ------------------------------------------------------------------ flags

#[test]
fn flags_pick_the_mode_and_target() {
    let plan = args(&["--tcp", "127.0.0.1:9", "--conns", "8"]).unwrap();
    assert_eq!(plan.target, Target::Tcp("127.0.0.1:9".parse().unwrap()));
    assert_eq!(plan.mode, Mode::Http1);
    assert_eq!(plan.conns, 8);
    assert_eq!(plan.duration, Duration::from_secs(10));
    assert_eq!(plan.warmup, Duration::from_secs(1));
    assert_eq!(plan.threads, 1);
    assert!(plan.body.is_none());

    let plan = args(&[
        "--unix",
        "/run/e.sock",
        "--h2",
        "--conns",
        "4",
        "--streams",
        "16",
    ])
    .unwrap();
    assert_eq!(plan.target, Target::Unix("/run/e.sock".into()));
    assert_eq!(plan.mode, Mode::Http2 { streams: 16 });

    let plan = args(&[
        "--tcp",
        "127.0.0.1:9",
        "--pipeline",
        "8",
        "--duration",
        "0.5",
    ])
    .unwrap();
    assert_eq!(plan.mode, Mode::Pipelined { depth: 8 });
    assert_eq!(plan.duration, Duration::from_millis(500));
}

#[test]
fn flags_that_do_not_fit_together_are_refused() {
    let refused = [
        &[][..],
        &["--tcp", "127.0.0.1:9", "--unix", "/s"],
        &["--tcp", "127.0.0.1:9", "--h2", "--pipeline", "4"],
        &["--tcp", "127.0.0.1:9", "--streams", "4"],
        &["--tcp", "127.0.0.1:9", "--conns", "0"],
        &["--tcp", "127.0.0.1:9", "--pipeline", "0"],
        &["--tcp", "127.0.0.1:9", "--duration", "0"],
        &["--tcp", "127.0.0.1:9", "--duration", "-1"],
        &["--tcp", "127.0.0.1:9", "--duration", "NaN"],
        &["--tcp", "127.0.0.1:9", "--warmup", "soon"],
        &["--tcp", "127.0.0.1:9", "--path", "v1"],
        &["--tcp", "127.0.0.1:9", "--path", "/a b"],
        &["--tcp", "127.0.0.1:9", "--path", "/a\r\nx: y"],
        &["--tcp", "127.0.0.1:9", "--expect", ""],
        &["--tcp", "localhost"],
    ];
    for list in refused {
        assert!(args(list).is_err(), "accepted {list:?}");
    }
}

#[test]
fn raw_batch_is_depth_complete_requests() {
    let plan = args(&[
        "--tcp",
        "127.0.0.1:9",
        "--body",
        r#"{"a":1}"#,
        "--path",
        "/p",
    ])
    .unwrap();
    let batch = plan.raw_batch(3);
    let one = "POST /p HTTP/1.1\r\nhost: 127.0.0.1:9\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
    assert_eq!(batch, one.repeat(3).as_bytes());

    let plan = args(&["--unix", "/s", "--path", "/readyz"]).unwrap();
    assert_eq!(
        plan.raw_batch(1),
        &b"GET /readyz HTTP/1.1\r\nhost: localhost\r\n\r\n"[..]
    );
}

// ------------------------------------------------------------------ histogram

#[test]
fn buckets_are_ordered_and_bound_their_values_within_a_sixty_fourth() {
    let mut values: Vec<u64> = (0..5000).collect();
    for shift in 7..64 {
        let base = 1u64 << shift;
        values.extend([base - 1, base, base + 1, base + base / 3, base | (base - 1)]);
    }
    values.push(u64::MAX);
    values.sort_unstable();
    let mut last = 0;
    for &value in &values {
        let bucket = bucket_of(value);
        assert!(bucket < BUCKETS, "{value} fell outside the array");
        assert!(bucket >= last, "buckets go backwards at {value}");
        last = bucket;
        let high = bucket_high(bucket);
        assert!(high >= value, "bucket of {value} tops out at {high}");
        assert!(
            high - value <= value / 64,
            "bucket of {value} is too wide ({high})"
        );
        if bucket > 0 {
            assert!(
                bucket_high(bucket - 1) < value,
                "{value} belongs one bucket lower"
            );
        }
    }
    assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
}

#[test]
fn percentiles_of_a_known_distribution() {
    let mut histogram = Histogram::new();
    assert_eq!(histogram.percentile(50.0), 0);
    for value in 1..=10_000u64 {
        histogram.record(value * 1000);
    }
    let near = |got: u64, want: u64| got >= want && got - want <= want / 64;
    assert!(near(histogram.percentile(50.0), 5_000_000));
    assert!(near(histogram.percentile(90.0), 9_000_000));
    assert!(near(histogram.percentile(99.0), 9_900_000));
    assert!(near(histogram.percentile(99.9), 9_990_000));
    assert_eq!(histogram.percentile(100.0), 10_000_000);
    assert!(near(histogram.percentile(0.0), 1000));
    assert_eq!(histogram.max, 10_000_000);

    let mut other = Histogram::new();
    other.record(20_000_000);
    histogram.merge(&other);
    assert_eq!(histogram.total, 10_001);
    assert_eq!(histogram.percentile(100.0), 20_000_000);
    assert!(near(histogram.percentile(50.0), 5_001_000));
}

#[test]
fn result_line_has_every_field_of_post_lua() {
    let mut tally = Tally::new();
    tally.requests = 3;
    tally.non2xx = 1;
    tally.errors = 2;
    tally.wrong = 1;
    for nanos in [10_000, 20_000, 1_500_000] {
        tally.latency_ns.record(nanos);
    }
    let line = tally.result_line(Duration::from_secs(2));
    assert!(
        line.starts_with("RESULT requests=3 duration_us=2000000 rps=1.5 p50_us=20 "),
        "{line}"
    );
    for field in [
        "p90_us=",
        "p99_us=",
        "p999_us=",
        "max_us=1500 ",
        "non2xx=1 ",
        "errors=2 ",
        "wrong=1",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

// ------------------------------------------------------------------ framing

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn an_answer_is_framed_only_when_complete() {
    for cut in 0..OK.len() {
        assert_eq!(parse_answer(&OK[..cut]), Ok(None), "framed at {cut} bytes");
    }
    let framed = parse_answer(OK).unwrap().unwrap();
    assert_eq!(framed.status, 200);
    assert_eq!(&OK[framed.body_start..framed.end], b"hello");
    assert_eq!(framed.end, OK.len());
    assert!(!framed.close);
}

#[test]
fn pipelined_answers_are_framed_one_after_another() {
    let second =
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\nconnection: keep-alive, Close\r\n\r\nno";
    let mut buf = OK.to_vec();
    buf.extend_from_slice(second);
    buf.extend_from_slice(b"HTTP/1.1 2");
    let first = parse_answer(&buf).unwrap().unwrap();
    let rest = &buf[first.end..];
    let next = parse_answer(rest).unwrap().unwrap();
    assert_eq!(next.status, 404);
    assert_eq!(&rest[next.body_start..next.end], b"no");
    assert!(next.close);
    assert_eq!(parse_answer(&rest[next.end..]), Ok(None));
}

#[test]
fn answers_that_cannot_be_framed_are_errors() {
    let cases: [(&[u8], FrameError); 7] = [
        (b"HTTP/1.1 200 OK\r\n\r\n", FrameError::NoLength(200)),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            FrameError::Chunked,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
            FrameError::BadLength("3".into()),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            FrameError::BadLength("-1".into()),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n",
            FrameError::BodyTooLarge(99_999_999_999),
        ),
        (
            b"SSH-2.0 hello\r\n\r\n",
            FrameError::StatusLine("SSH-2.0 hello".into()),
        ),
        (
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            FrameError::Header("no colon here".into()),
        ),
    ];
    for (answer, want) in cases {
        assert_eq!(
            parse_answer(answer),
            Err(want.clone()),
            "{}",
            String::from_utf8_lossy(answer)
        );
        assert!(!want.to_string().ends_with('.'));
    }
    assert_eq!(
        parse_answer(&vec![b'a'; MAX_HEAD + 1]),
        Err(FrameError::HeadTooLarge)
    );
    let empty = parse_answer(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1")
        .unwrap()
        .unwrap();
    assert_eq!((empty.status, empty.end), (204, 27));
    for line in [
        "HTTP/1.1 20 OK",
        "HTTP/1.1 999 x",
        "HTTP/2 200 OK",
        "HTTP/1.x 200 OK",
        "HTTP/1.1",
    ] {
        assert_eq!(parse_status_line(line), None, "{line}");
    }
    assert_eq!(parse_status_line("HTTP/1.0 503"), Some(503));
}

// ------------------------------------------------------------------ runs against real servers

/// Answers like a decision endpoint: `Allow` for bodies naming u-7, `Deny` otherwise,
/// 404 off the decision path.
async fn decide(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let on_path = request.uri().path() == "/v1/is_authorized";
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, answer) = match (on_path, contains(&body, b"u-7")) {
        (false, _) => (
            StatusCode::NOT_FOUND,
            &br#"{"error":"no such endpoint"}"#[..],
        ),
        (true, true) => (StatusCode::OK, &br#"{"decision":"Allow"}"#[..]),
        (true, false) => (StatusCode::OK, &br#"{"decision":"Deny"}"#[..]),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(answer)));
    *response.status_mut() = status;
    Ok(response)
}

fn server_builder(keep_alive: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(keep_alive);
    builder
}

async fn serve_tcp(keep_alive: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let builder = Arc::new(server_builder(keep_alive));
        while let Ok((stream, _)) = listener.accept().await {
            let builder = Arc::clone(&builder);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(decide);
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn serve_unix(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        let builder = Arc::new(server_builder(true));
        while let Ok((stream, _)) = listener.accept().await {
            let builder = Arc::clone(&builder);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(decide);
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn plan(target: Target, mode: Mode, body: &str, expect: Option<&str>) -> Arc<Plan> {
    Arc::new(Plan {
        target,
        mode,
        conns: 2,
        duration: Duration::from_millis(400),
        warmup: Duration::from_millis(50),
        path: "/v1/is_authorized".into(),
        body: Some(Bytes::from(body.to_owned())),
        expect: expect.map(|e| e.as_bytes().to_vec()),
        threads: 1,
    })
}

const MODES: [Mode; 3] = [
    Mode::Http1,
    Mode::Http2 { streams: 4 },
    Mode::Pipelined { depth: 8 },
];

fn assert_clean(tally: &Tally, what: &str) {
    assert!(tally.requests > 0, "{what}: nothing answered");
    assert_eq!(
        tally.latency_ns.total, tally.requests,
        "{what}: a request without a latency"
    );
    assert_eq!(
        (tally.non2xx, tally.errors, tally.wrong),
        (0, 0, 0),
        "{what}"
    );
    assert!(tally.latency_ns.percentile(50.0) > 0, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_is_answered_over_tcp_and_a_unix_socket() {
    let addr = serve_tcp(true).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("decide.sock");
    serve_unix(&socket);
    for target in [Target::Tcp(addr), Target::Unix(socket.clone())] {
        for mode in MODES {
            let tally = run(plan(
                target.clone(),
                mode,
                r#"{"principal":"u-7"}"#,
                Some("Allow"),
            ))
            .await;
            assert_clean(&tally, &format!("{target:?} {mode:?}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_answers_and_non_2xx_statuses_are_counted() {
    let addr = serve_tcp(true).await;
    for mode in MODES {
        let tally = run(plan(
            Target::Tcp(addr),
            mode,
            r#"{"principal":"u-8"}"#,
            Some("Allow"),
        ))
        .await;
        assert!(tally.requests > 0, "{mode:?}");
        assert_eq!(
            tally.wrong, tally.requests,
            "{mode:?}: every answer was a Deny"
        );
        assert_eq!((tally.non2xx, tally.errors), (0, 0), "{mode:?}");

        let mut missing = (*plan(Target::Tcp(addr), mode, "{}", None)).clone();
        missing.path = "/nowhere".into();
        let tally = run(Arc::new(missing)).await;
        assert!(tally.requests > 0, "{mode:?}");
        assert_eq!(
            tally.non2xx, tally.requests,
            "{mode:?}: every answer was a 404"
        );
        assert_eq!((tally.errors, tally.wrong), (0, 0), "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_after_each_answer_costs_the_rest_of_the_batch() {
    let addr = serve_tcp(false).await;
    let tally = run(plan(
        Target::Tcp(addr),
        Mode::Pipelined { depth: 4 },
        r#"{"principal":"u-7"}"#,
        Some("Allow"),
    ))
    .await;
    assert_eq!(tally.wrong, 0);
    // At most one answer per connection, then `connection: close` (or a reset, as the
    // server closes with requests unread): the rest of each batch of four is lost.
    assert!(tally.errors > 0);
    assert!(
        tally.errors + 3 >= tally.requests * 3,
        "{} errors for {} answers",
        tally.errors,
        tally.requests
    );
    // One request per connection is no error: the next connection carries on.
    let tally = run(plan(
        Target::Tcp(addr),
        Mode::Http1,
        r#"{"principal":"u-7"}"#,
        Some("Allow"),
    ))
    .await;
    assert_clean(&tally, "http/1.1 without keep-alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_dead_port_are_errors_not_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut scratch = [0u8; 4096];
                let _ = stream.read(&mut scratch).await;
                let _ = stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
            });
        }
    });
    for mode in MODES {
        let tally = run(plan(Target::Tcp(garbage), mode, "{}", None)).await;
        assert_eq!(tally.requests, 0, "{mode:?}");
        assert!(tally.errors > 0, "{mode:?}");
    }

    // A port nothing listens on: bind one, then close it.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let tally = run(plan(Target::Tcp(dead), Mode::Http1, "{}", None)).await;
    assert_eq!(tally.requests, 0);
    assert!(tally.errors > 0);
}
