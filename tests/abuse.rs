//! Abuse of the HTTP surface, against real `elevate serve` processes on real sockets:
//! oversized heads and bodies, invalid UTF-8, deep JSON, slowloris, 10,000 idle
//! connections, HTTP/2 stream and reset floods. Each ends with the server alive and
//! another client served.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod serve_proc;

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use serve_proc::{Server, exchange, inputs, repo, workflow_args};

const ALICE: &str = "User::\"alice\"";
const READ_PROJECT: &str = "Action::\"readProject\"";
const CHECKOUT: &str = "Project::\"checkout\"";
/// A generous bound on one ordinary request while the server is under attack: an
/// attack that starves other clients takes far longer (the attack's own timeouts).
const SERVED_WITHIN: Duration = Duration::from_secs(5);

/// A plain sidecar on the shipped inputs and example feed, with extra flags.
fn sidecar(dir: &tempfile::TempDir, name: &str, extra: &[&str]) -> Server {
    let mut args = inputs();
    args.extend([
        OsString::from("--grants"),
        repo().join("deploy/local/grants.json").into(),
    ]);
    args.extend(extra.iter().map(OsString::from));
    Server::start(&args, &dir.path().join(format!("{name}.log")))
}

/// An ordinary client: one decision, answered correctly and soon.
#[track_caller]
fn assert_served(server: &Server) -> Duration {
    let started = Instant::now();
    let answer = server.decide(ALICE, READ_PROJECT, CHECKOUT);
    let took = started.elapsed();
    assert_eq!(answer["decision"], "Allow", "{answer}");
    assert!(took < SERVED_WITHIN, "an ordinary decision took {took:?}");
    took
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn bad_heads_and_bodies_get_a_clear_4xx_and_the_server_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = workflow_args(&dir.path().join("data"));
    args.extend(["--max-body-bytes".into(), "65536".into()]);
    let mut server = Server::start(&args, &dir.path().join("server.log"));
    let addr = server.addr.clone();

    // A header past the 32 KiB default, and more header fields than 100.
    let big = "a".repeat(40 * 1024);
    let reply = server
        .post("/v1/is_authorized", &[("X-Big", &big)], b"{}")
        .unwrap();
    assert_eq!(reply.status, 431, "{}", reply.text());
    let many: Vec<(String, String)> = (0..150).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reply = server.post("/v1/is_authorized", &many, b"{}").unwrap();
    assert_eq!(reply.status, 431, "{}", reply.text());
    // Just under the limits is an ordinary request.
    let fine = "a".repeat(16 * 1024);
    let body =
        json!({"principal": ALICE, "action": READ_PROJECT, "resource": CHECKOUT}).to_string();
    let reply = server
        .post("/v1/is_authorized", &[("X-Fine", &fine)], body.as_bytes())
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());

    // A body over the limit: declared, and chunked without a length.
    let huge = vec![b' '; 70_000];
    let reply = server.post("/v1/is_authorized", &[], &huge).unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(
        reply.error(),
        "request body is larger than the limit of 65536 bytes"
    );
    let mut chunked = b"POST /v1/batch_is_authorized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
          Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..10 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8000).as_bytes());
        chunked.extend_from_slice(&[b' '; 8000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = exchange(&addr, &chunked).unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text());

    // Invalid UTF-8 inside a JSON string, on the decision and the workflow API.
    let mut bad = br#"{"principal": "User::\"al"#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(
        br#"ice\"", "action": "Action::\"readProject\"", "resource": "Project::\"checkout\""}"#,
    );
    let reply = server.post("/v1/is_authorized", &[], &bad).unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply
            .error()
            .starts_with("request body is not valid JSON: "),
        "{}",
        reply.text()
    );
    let mut bad_reason = br#"{"role": "FinOpsManager", "scope": "Workspace::\"ws-1\"", "duration": "1h", "reason": "x"#.to_vec();
    bad_reason.extend_from_slice(&[0xc3, 0x28, b'"', b'}']);
    let auth = [("Authorization", "Bearer demo-alice")];
    let reply = server.post("/v1/elevations", &auth, &bad_reason).unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.error().contains("not valid JSON"), "{}", reply.text());

    // Deep JSON: just past the limit and 30,000 levels, on every JSON endpoint.
    let too_deep = "request body nests arrays and objects deeper than the limit of 64 levels";
    for depth in [65, 30_000] {
        for (path, headers) in [
            ("/v1/is_authorized", &[][..]),
            ("/v1/batch_is_authorized", &[][..]),
            ("/access/v1/evaluation", &[][..]),
            ("/v1/elevations", &auth[..]),
        ] {
            let body = format!(r#"{{"context": {}}}"#, nested(depth));
            let reply = server.post(path, headers, body.as_bytes()).unwrap();
            assert_eq!(
                reply.status,
                400,
                "{path} at depth {depth}: {}",
                reply.text()
            );
            assert_eq!(reply.error(), too_deep, "{path}");
        }
    }
    // Inside the limit, a deep context reaches Cedar's own (recursive) parsers; the
    // schema refuses it, and nothing overflows.
    let body = format!(
        r#"{{"principal": "{}", "action": "{}", "resource": "{}", "context": {{"mfa": {}}}}}"#,
        ALICE.replace('"', "\\\""),
        READ_PROJECT.replace('"', "\\\""),
        CHECKOUT.replace('"', "\\\""),
        nested(60)
    );
    let reply = server
        .post("/v1/is_authorized", &[], body.as_bytes())
        .unwrap();
    assert!(
        reply.status == 400 || reply.status == 422,
        "{}",
        reply.text()
    );
    // A UID that is a deeply parenthesised Cedar expression, for Cedar's parser.
    let uid = format!(
        "{}User::\"alice\"{}",
        "(".repeat(20_000),
        ")".repeat(20_000)
    );
    let body = json!({"principal": uid, "action": READ_PROJECT, "resource": CHECKOUT}).to_string();
    let reply = server
        .post("/v1/is_authorized", &[], body.as_bytes())
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.error().starts_with("`principal`: "),
        "{}",
        reply.text()
    );

    server.proc.assert_alive();
    assert_served(&server);
    assert_eq!(server.get("/healthz").unwrap().status, 200);
}

#[test]
fn a_lower_json_depth_limit_from_the_flag_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = sidecar(&dir, "depth", &["--max-json-depth", "4"]);
    let body = json!({"principal": ALICE, "action": READ_PROJECT, "resource": CHECKOUT,
                      "context": {"a": [[{"b": 1}]]}});
    let reply = server
        .post("/v1/is_authorized", &[], body.to_string().as_bytes())
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        reply.error(),
        "request body nests arrays and objects deeper than the limit of 4 levels"
    );
    assert_served(&server);
}

/// Opens a connection and sends `head`, then one byte every `every`; returns how long
/// until the server cut it off (EOF, reset, or an answer) and what it answered, or
/// `None` when the whole trickle went through.
fn trickle(addr: &str, head: &[u8], every: Duration, bytes: usize) -> Option<(Duration, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(every)).unwrap();
    let started = Instant::now();
    stream.write_all(head).unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..bytes {
        match stream.read(&mut buf) {
            Ok(n) => return Some((started.elapsed(), buf[..n].to_vec())),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => return Some((started.elapsed(), Vec::new())),
        }
        if stream.write_all(b"a").is_err() {
            return Some((started.elapsed(), Vec::new()));
        }
    }
    None
}

#[test]
fn slowloris_clients_are_cut_off_while_an_ordinary_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = sidecar(&dir, "slowloris", &["--header-timeout-ms", "1000"]);
    let addr = server.addr.clone();
    // 40 clients trickling a header one byte per 100 ms: 30 s each if never cut off.
    let slow: Vec<_> = (0..40)
        .map(|_| {
            let addr = addr.clone();
            thread::spawn(move || {
                trickle(
                    &addr,
                    b"POST /v1/is_authorized HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                    Duration::from_millis(100),
                    300,
                )
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        slowest = slowest.max(assert_served(&server));
        thread::sleep(Duration::from_millis(100));
    }
    for handle in slow {
        let cut = handle.join().unwrap();
        let (cut, _) = cut.expect("a slowloris client trickled its whole header through");
        // The header timeout is 1 s; a loaded machine may take longer to act on it,
        // but far from the 30 s the trickle would last.
        assert!(cut < Duration::from_secs(15), "cut off only after {cut:?}");
    }
    eprintln!("slowest ordinary decision during the slowloris: {slowest:?}");
}

#[test]
fn a_body_trickled_slower_than_the_body_timeout_gets_a_408_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = sidecar(&dir, "slow-body", &["--body-timeout-ms", "1000"]);
    let addr = server.addr.clone();
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let addr = addr.clone();
            thread::spawn(move || {
                trickle(
                    &addr,
                    b"POST /v1/is_authorized HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
                    Duration::from_millis(100),
                    300,
                )
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        slowest = slowest.max(assert_served(&server));
        thread::sleep(Duration::from_millis(100));
    }
    for handle in slow {
        let (cut, answer) = handle
            .join()
            .unwrap()
            .expect("a slow body was trickled through");
        assert!(cut < Duration::from_secs(15), "cut off only after {cut:?}");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(
            answer.contains("request body not received within 1000 ms of its headers"),
            "{answer}"
        );
    }
    eprintln!("slowest ordinary decision during the slow bodies: {slowest:?}");
}

#[test]
fn ten_thousand_idle_connections_leave_room_for_a_client_and_bounded_memory() {
    // 10,000 sockets here, and up to 4,096 in the server, which inherits the limit.
    let nofile = rlimit::increase_nofile_limit(20_000).unwrap();
    assert!(
        nofile >= 10_200,
        "this test needs RLIMIT_NOFILE >= 10200 and the hard limit is {nofile}: raise it \
         (`ulimit -Hn 20000` as root, or `nofile` in /etc/security/limits.conf)"
    );
    let dir = tempfile::tempdir().unwrap();
    // The defaults: 4,096 connections at most.
    let server = sidecar(&dir, "idle", &[]);
    let before = server.rss_kib();
    let opening = Instant::now();
    // Four openers at once: the server's accept loop, not one client, sets the pace.
    let openers: Vec<_> = (0..4)
        .map(|t| {
            let addr = server.addr.clone();
            thread::spawn(move || {
                (0..2500)
                    .map(|n| {
                        let mut stream = TcpStream::connect(&addr).unwrap();
                        // Silent, half a request head, half an HTTP/2 preface.
                        match (t * 2500 + n) % 3 {
                            1 => stream
                                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                                .unwrap(),
                            2 => stream.write_all(b"PRI * HTTP/2.0\r\n").unwrap(),
                            _ => {}
                        }
                        stream
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let idle: Vec<TcpStream> = openers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(idle.len(), 10_000);
    let opened = opening.elapsed();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        slowest = slowest.max(assert_served(&server));
    }
    let rss = server.rss_kib();
    let fds = server.open_fds();
    // Count the idle connections the server still holds open.
    let mut still_open = 0;
    for stream in &idle {
        stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        match (&*stream).read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => still_open += 1,
            _ => {}
        }
    }
    eprintln!(
        "10,000 idle connections opened in {opened:?}: RSS {before} KiB -> {rss} KiB, {fds} \
         fds, {still_open} still open; slowest ordinary decision {slowest:?}"
    );
    assert!(rss < 300 * 1024, "RSS {rss} KiB");
    assert!(fds <= 4096 + 64, "{fds} descriptors open in the server");
    assert!(still_open <= 4096, "{still_open} idle connections kept");
    drop(idle);
    assert_served(&server);
}

// ------------------------------------------------------------------ HTTP/2 by hand

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block of `method` (static index) and `path` (literal, not indexed).
fn header_block(method: u8, path: &str) -> Vec<u8> {
    let mut block = vec![method, 0x86, 0x04, u8::try_from(path.len()).unwrap()];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 0x01, b'x']);
    block
}

/// What the server sent on one HTTP/2 connection, read until EOF or quiet.
#[derive(Debug, Default)]
struct Seen {
    refused: usize,
    goaway: Option<u32>,
    frames: usize,
}

fn read_frames(mut stream: TcpStream, stop: Arc<AtomicBool>) -> Seen {
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut seen = Seen::default();
    let mut head = [0u8; 9];
    loop {
        if stop.load(Ordering::Relaxed) {
            return seen;
        }
        if stream.read_exact(&mut head).is_err() {
            return seen;
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).is_err() {
            return seen;
        }
        seen.frames += 1;
        match head[3] {
            RST_STREAM
                if u32::from_be_bytes(payload[..4].try_into().unwrap()) == REFUSED_STREAM =>
            {
                seen.refused += 1;
            }
            GOAWAY => {
                seen.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
            _ => {}
        }
    }
}

#[test]
fn an_http2_stream_flood_is_refused_and_a_reset_flood_sent_away() {
    let dir = tempfile::tempdir().unwrap();
    let server = sidecar(&dir, "h2", &[]);
    let before = server.rss_kib();

    // 1,000 open streams (headers, never a body) against the default of 256.
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stream = stream.try_clone().unwrap();
        let stop = Arc::clone(&stop);
        thread::spawn(move || read_frames(stream, stop))
    };
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let block = header_block(0x83, "/v1/is_authorized");
    for i in 0..1000u32 {
        out.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
    }
    stream.write_all(&out).unwrap();
    let slowest = assert_served(&server);
    thread::sleep(Duration::from_millis(500));
    drop(stream);
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();
    eprintln!("stream flood: {seen:?}; ordinary decision meanwhile {slowest:?}");
    assert!(
        seen.refused >= 1000 - 256 || seen.goaway.is_some(),
        "streams past the limit were neither refused nor sent away: {seen:?}"
    );

    // Rapid reset: open and cancel 20,000 streams as fast as the socket takes them.
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stream = stream.try_clone().unwrap();
        let stop = Arc::clone(&stop);
        thread::spawn(move || read_frames(stream, stop))
    };
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let block = header_block(0x82, "/healthz");
    let mut write_failed = false;
    for batch in 0..20u32 {
        for i in 0..1000u32 {
            let id = 2 * (batch * 1000 + i) + 1;
            out.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
            out.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        }
        if stream.write_all(&out).is_err() {
            write_failed = true;
            break;
        }
        out.clear();
    }
    let slowest = assert_served(&server);
    thread::sleep(Duration::from_millis(500));
    drop(stream);
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();
    eprintln!("reset flood: {seen:?}, write failed: {write_failed}; ordinary decision {slowest:?}");
    assert_eq!(
        seen.goaway,
        Some(ENHANCE_YOUR_CALM),
        "the server kept a connection resetting 20,000 streams: {seen:?}"
    );

    let rss = server.rss_kib();
    eprintln!("HTTP/2 floods: RSS {before} KiB -> {rss} KiB");
    assert!(rss < 300 * 1024, "RSS {rss} KiB");
    assert_served(&server);
}
