//! A closed-loop HTTP load generator for `bench/transports.sh`: HTTP/1.1 keep-alive,
//! HTTP/2 streams or raw HTTP/1.1 pipelining, over TCP or a Unix socket, printing one
//! `RESULT ...` line in the shape of the one `bench/post.lua` makes wrk print.
//!
//! wrk speaks HTTP/1.1 over TCP only; this covers the transports `elevate serve` also
//! offers. Every connection (or HTTP/2 stream) sends its next request only when the
//! previous answer has been read in full. A request counts when its whole answer has
//! been read inside the measured window (after `--warmup`, until `--duration` ends);
//! requests still in flight at the end are abandoned, not counted. Failures (connect,
//! reset, a malformed answer) are counted as errors and the connection is reopened;
//! nothing here panics on what a server sends.
//!
//! Pipelining (`--pipeline D`, HTTP/1.1 only): hyper's client never pipelines, so
//! this mode writes D raw requests in one write, then reads D answers framed by their
//! `Content-Length`; each answer's latency counts from the batch's write.
//!
//! Run: `cargo run --release --example loadgen -- --tcp 127.0.0.1:8180 --conns 64
//! --duration 10 --body '{"principal":...}'` (see `--help`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_util::either::Either;

/// The pause before reopening a failed connection, so a dead server costs a few
/// hundred attempts a second per connection instead of a busy loop.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// The largest answer head the pipelined reader buffers before giving up on it.
const MAX_HEAD: usize = 64 * 1024;
/// The largest answer body the pipelined reader accepts.
const MAX_BODY: u64 = 16 * 1024 * 1024;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadgen",
    about = "Closed-loop HTTP load over TCP or a Unix socket: HTTP/1.1, HTTP/2 or pipelined HTTP/1.1"
)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["tcp", "unix"])))]
struct Args {
    /// Connect to this TCP address (`127.0.0.1:8180`)
    #[arg(long, value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// Connect to this Unix socket
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// HTTP/2 with prior knowledge (no upgrade), `--streams` concurrent requests per connection
    #[arg(long, conflicts_with = "pipeline")]
    h2: bool,
    /// Concurrent requests per HTTP/2 connection
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    streams: u32,
    /// Connections
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    conns: u32,
    /// HTTP/1.1 requests written back-to-back per connection before reading the answers
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pipeline: u32,
    /// Seconds measured (after the warm-up)
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    duration: Duration,
    /// Seconds of load before the measurement starts (not counted)
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    warmup: Duration,
    /// POST this JSON body (without it: GET)
    #[arg(long, value_name = "JSON")]
    body: Option<String>,
    /// Request path
    #[arg(long, default_value = "/v1/is_authorized")]
    path: String,
    /// Count the answers whose body does not contain this string (`wrong=`)
    #[arg(long, value_name = "STRING")]
    expect: Option<String>,
    /// Tokio worker threads (1: a current-thread runtime, like wrk -t1)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("`{text}` is not between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Where the connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// How each connection carries its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// hyper's HTTP/1.1 client, one request at a time per connection.
    Http1,
    /// hyper's HTTP/2 client, this many concurrent streams per connection.
    Http2 { streams: u32 },
    /// Raw HTTP/1.1, this many requests written before the answers are read.
    Pipelined { depth: u32 },
}

/// A validated run: what `main` turns the flags into.
#[derive(Debug, Clone)]
struct Plan {
    target: Target,
    mode: Mode,
    conns: u32,
    duration: Duration,
    warmup: Duration,
    path: String,
    body: Option<Bytes>,
    expect: Option<Vec<u8>>,
    threads: u32,
}

impl Plan {
    fn from_args(args: Args) -> Result<Plan, String> {
        let target = match (args.tcp, args.unix) {
            (Some(addr), None) => Target::Tcp(addr),
            (None, Some(path)) => Target::Unix(path),
            _ => return Err("give exactly one of `--tcp` and `--unix`".into()),
        };
        let mode = if args.h2 {
            Mode::Http2 {
                streams: args.streams,
            }
        } else if args.streams > 1 {
            return Err("`--streams` needs `--h2`".into());
        } else if args.pipeline > 1 {
            Mode::Pipelined {
                depth: args.pipeline,
            }
        } else {
            Mode::Http1
        };
        // The path goes into a raw request line and into a URI: keep it to one token.
        if !args.path.starts_with('/') || args.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "path `{}` must start with `/` and have no spaces or control characters",
                args.path.escape_debug()
            ));
        }
        if args.duration.is_zero() {
            return Err("`--duration` must be more than 0 seconds".into());
        }
        if args.expect.as_deref() == Some("") {
            return Err("`--expect` must not be empty".into());
        }
        Ok(Plan {
            target,
            mode,
            conns: args.conns,
            duration: args.duration,
            warmup: args.warmup,
            path: args.path,
            body: args.body.map(Bytes::from),
            expect: args.expect.map(String::into_bytes),
            threads: args.threads,
        })
    }

    /// The `Host` header (and the HTTP/2 authority).
    fn host(&self) -> String {
        match &self.target {
            Target::Tcp(addr) => addr.to_string(),
            Target::Unix(_) => "localhost".into(),
        }
    }

    fn request(&self, uri: &str) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let mut builder = Request::builder().uri(uri);
        builder = match &self.body {
            Some(_) => builder
                .method(hyper::Method::POST)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json")),
            None => builder.method(hyper::Method::GET),
        };
        builder.body(Full::new(self.body.clone().unwrap_or_default()))
    }

    /// An HTTP/1.1 request in origin form with its `Host` header.
    fn h1_request(&self) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let mut request = self.request(&self.path)?;
        let host = HeaderValue::from_str(&self.host())?;
        request.headers_mut().insert(HOST, host);
        Ok(request)
    }

    /// An HTTP/2 request: hyper takes the `:authority` and `:scheme` from an absolute URI.
    fn h2_request(&self) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        self.request(&format!("http://{}{}", self.host(), self.path))
    }

    /// `depth` copies of the raw HTTP/1.1 request, back to back.
    fn raw_batch(&self, depth: u32) -> Bytes {
        let mut one = Vec::new();
        let method = if self.body.is_some() { "POST" } else { "GET" };
        one.extend_from_slice(
            format!(
                "{method} {} HTTP/1.1\r\nhost: {}\r\n",
                self.path,
                self.host()
            )
            .as_bytes(),
        );
        if let Some(body) = &self.body {
            one.extend_from_slice(
                format!(
                    "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            one.extend_from_slice(body);
        } else {
            one.extend_from_slice(b"\r\n");
        }
        Bytes::from(one.repeat(depth as usize))
    }
}

// ------------------------------------------------------------------ histogram

/// Values below this are counted exactly.
const EXACT: u64 = 128;
/// Buckets per power of two above `EXACT`: a bucket spans at most 1/64 of its values.
const PER_OCTAVE: u64 = 64;
/// `EXACT` exact buckets plus 64 for each power of two from 2^7 to 2^63.
const BUCKETS: usize = (EXACT + (63 - 6) * PER_OCTAVE) as usize;

/// A log-linear histogram of u64 values (nanoseconds here): exact below 128, then 64
/// buckets per power of two, so a reported percentile is at most 1/64 (1.6%) above
/// the true value and never below it.
#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

fn bucket_of(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    // 7..=63, so the shift leaves the top 7 bits: 64..=127.
    let top_bit = 63 - value.leading_zeros();
    let shift = top_bit - 6;
    (u64::from(shift) * PER_OCTAVE + (value >> shift)) as usize
}

/// The highest value that lands in bucket `index`.
fn bucket_high(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT {
        return index;
    }
    let shift = index / PER_OCTAVE - 1;
    let mantissa = index % PER_OCTAVE + PER_OCTAVE;
    let high = (u128::from(mantissa + 1) << shift) - 1;
    u64::try_from(high).unwrap_or(u64::MAX)
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn record(&mut self, value: u64) {
        if let Some(count) = self.counts.get_mut(bucket_of(value)) {
            *count += 1;
            self.total += 1;
            self.max = self.max.max(value);
        }
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at `percent` (0..=100) of the recorded ones; 0 when empty.
    fn percentile(&self, percent: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((percent / 100.0) * self.total as f64).ceil() as u64;
        let rank = rank.clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_high(index).min(self.max);
            }
        }
        self.max
    }
}

// ------------------------------------------------------------------ tallies

/// What one connection (or stream) saw; merged at the end.
#[derive(Debug, Clone)]
struct Tally {
    latency_ns: Histogram,
    requests: u64,
    non2xx: u64,
    errors: u64,
    wrong: u64,
}

/// The measured part of the run: answers and errors outside it are not counted.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    end: Instant,
}

impl Window {
    fn holds(&self, at: Instant) -> bool {
        at >= self.from && at <= self.end
    }
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency_ns: Histogram::new(),
            requests: 0,
            non2xx: 0,
            errors: 0,
            wrong: 0,
        }
    }

    fn answer(
        &mut self,
        window: &Window,
        started: Instant,
        status: u16,
        body: &[u8],
        expect: Option<&[u8]>,
    ) {
        let finished = Instant::now();
        if !window.holds(finished) {
            return;
        }
        self.requests += 1;
        let nanos = u64::try_from(finished.duration_since(started).as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns.record(nanos);
        if !(200..300).contains(&status) {
            self.non2xx += 1;
        }
        if let Some(needle) = expect
            && !contains(body, needle)
        {
            self.wrong += 1;
        }
    }

    fn error(&mut self, window: &Window, count: u64) {
        if window.holds(Instant::now()) {
            self.errors += count;
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.latency_ns.merge(&other.latency_ns);
        self.requests += other.requests;
        self.non2xx += other.non2xx;
        self.errors += other.errors;
        self.wrong += other.wrong;
    }

    /// The `RESULT` line, in microseconds like post.lua's.
    fn result_line(&self, duration: Duration) -> String {
        // To the nearest microsecond: the bucket tops already round up, by up to 1/64.
        let us = |nanos: u64| nanos.saturating_add(500) / 1000;
        let at = |percent: f64| us(self.latency_ns.percentile(percent));
        format!(
            "RESULT requests={} duration_us={} rps={:.1} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} non2xx={} errors={} wrong={}",
            self.requests,
            duration.as_micros(),
            self.requests as f64 / duration.as_secs_f64(),
            at(50.0),
            at(90.0),
            at(99.0),
            at(99.9),
            us(self.latency_ns.max),
            self.non2xx,
            self.errors,
            self.wrong
        )
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

// ------------------------------------------------------------------ HTTP/1.1 answer framing

/// One complete answer at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Framed {
    status: u16,
    body_start: usize,
    /// Where the answer ends (and the next one starts).
    end: usize,
    /// The server said `Connection: close`: nothing follows on this connection.
    close: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FrameError {
    HeadTooLarge,
    StatusLine(String),
    Header(String),
    Chunked,
    NoLength(u16),
    BadLength(String),
    BodyTooLarge(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::HeadTooLarge => write!(f, "answer head longer than {MAX_HEAD} bytes"),
            FrameError::StatusLine(line) => write!(f, "bad status line `{line}`"),
            FrameError::Header(line) => write!(f, "bad header line `{line}`"),
            FrameError::Chunked => write!(f, "chunked answers are not supported"),
            FrameError::NoLength(status) => {
                write!(f, "answer with status {status} has no content-length")
            }
            FrameError::BadLength(value) => write!(f, "bad content-length `{value}`"),
            FrameError::BodyTooLarge(len) => {
                write!(f, "answer body of {len} bytes is over {MAX_BODY}")
            }
        }
    }
}

/// Frames the first HTTP/1.1 answer in `buf`: `Ok(None)` until all of it has arrived.
fn parse_answer(buf: &[u8]) -> Result<Option<Framed>, FrameError> {
    let Some(head_len) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(FrameError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if head_len > MAX_HEAD {
        return Err(FrameError::HeadTooLarge);
    }
    let head = buf.get(..head_len).unwrap_or_default();
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = parse_status_line(status_line)
        .ok_or_else(|| FrameError::StatusLine(status_line.escape_debug().to_string()))?;
    let mut length: Option<u64> = None;
    let mut close = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| FrameError::Header(line.escape_debug().to_string()))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let parsed: u64 = value
                .parse()
                .map_err(|_| FrameError::BadLength(value.escape_debug().to_string()))?;
            // Two different lengths make the framing ambiguous.
            if length.is_some_and(|known| known != parsed) {
                return Err(FrameError::BadLength(value.escape_debug().to_string()));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(FrameError::Chunked);
        } else if name.eq_ignore_ascii_case("connection") {
            close |= value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"));
        }
    }
    let length = match length {
        Some(length) => length,
        // These carry no body by definition.
        None if status == 204 || status == 304 || (100..200).contains(&status) => 0,
        None => return Err(FrameError::NoLength(status)),
    };
    if length > MAX_BODY {
        return Err(FrameError::BodyTooLarge(length));
    }
    let body_start = head_len + 4;
    let end = body_start + length as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Framed {
        status,
        body_start,
        end,
        close,
    }))
}

fn parse_status_line(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/1.")?;
    let mut parts = rest.splitn(3, ' ');
    let minor = parts.next()?;
    let code = parts.next()?;
    if minor.len() != 1 || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok().filter(|code| (100..600).contains(code))
}

// ------------------------------------------------------------------ workers

type Stream = Either<TcpStream, UnixStream>;

async fn connect(target: &Target) -> std::io::Result<Stream> {
    match target {
        Target::Tcp(addr) => {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Either::Left(stream))
        }
        Target::Unix(path) => Ok(Either::Right(UnixStream::connect(path).await?)),
    }
}

/// Opens a connection before the deadline: `None` at the deadline, after counting a
/// failed attempt and waiting out the backoff.
async fn connect_until(plan: &Plan, window: &Window, tally: &mut Tally) -> Option<Stream> {
    loop {
        match timeout_at(window.end, connect(&plan.target)).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(_)) => {
                tally.error(window, 1);
                backoff(window).await;
            }
            Err(_) => return None,
        }
        if Instant::now() >= window.end {
            return None;
        }
    }
}

async fn backoff(window: &Window) {
    tokio::time::sleep_until((Instant::now() + RECONNECT_BACKOFF).min(window.end)).await;
}

async fn collect(
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<(u16, Bytes), hyper::Error> {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn http1_connection(plan: Arc<Plan>, window: Window) -> Tally {
    let mut tally = Tally::new();
    let expect = plan.expect.as_deref();
    'connections: while Instant::now() < window.end {
        let Some(stream) = connect_until(&plan, &window, &mut tally).await else {
            break;
        };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(_) => {
                    tally.error(&window, 1);
                    backoff(&window).await;
                    continue;
                }
            };
        let driver = tokio::spawn(conn);
        let mut answered = 0u64;
        while Instant::now() < window.end {
            let Ok(request) = plan.h1_request() else {
                tally.error(&window, 1);
                break 'connections;
            };
            let started = Instant::now();
            match timeout_at(window.end, sender.ready()).await {
                Ok(Ok(())) => {}
                // Closed before this request went out (the server said `connection:
                // close`): nothing is lost, the next connection carries on. One that
                // closes before its first answer is an error, and is not retried at once.
                Ok(Err(_)) => {
                    if answered == 0 {
                        tally.error(&window, 1);
                        backoff(&window).await;
                    }
                    break;
                }
                Err(_) => break 'connections,
            }
            let exchange = async { collect(sender.send_request(request).await?).await };
            match timeout_at(window.end, exchange).await {
                Ok(Ok((status, body))) => {
                    tally.answer(&window, started, status, &body, expect);
                    answered += 1;
                }
                Ok(Err(_)) => {
                    tally.error(&window, 1);
                    backoff(&window).await;
                    break;
                }
                Err(_) => break 'connections,
            }
        }
        driver.abort();
    }
    tally
}

async fn http2_connection(plan: Arc<Plan>, window: Window, streams: u32) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < window.end {
        let Some(stream) = connect_until(&plan, &window, &mut tally).await else {
            break;
        };
        let (sender, conn) =
            match hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
            {
                Ok(pair) => pair,
                Err(_) => {
                    tally.error(&window, 1);
                    backoff(&window).await;
                    continue;
                }
            };
        let driver = tokio::spawn(conn);
        let mut set = JoinSet::new();
        for _ in 0..streams {
            set.spawn(http2_stream(Arc::clone(&plan), window, sender.clone()));
        }
        drop(sender);
        // The connection is reopened once every stream on it has given up.
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(stream_tally) => tally.merge(&stream_tally),
                Err(_) => tally.error(&window, 1),
            }
        }
        driver.abort();
    }
    tally
}

async fn http2_stream(
    plan: Arc<Plan>,
    window: Window,
    mut sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
) -> Tally {
    let mut tally = Tally::new();
    let expect = plan.expect.as_deref();
    while Instant::now() < window.end {
        let Ok(request) = plan.h2_request() else {
            tally.error(&window, 1);
            break;
        };
        let started = Instant::now();
        let exchange = async {
            sender.ready().await?;
            collect(sender.send_request(request).await?).await
        };
        match timeout_at(window.end, exchange).await {
            Ok(Ok((status, body))) => tally.answer(&window, started, status, &body, expect),
            Ok(Err(_)) => {
                tally.error(&window, 1);
                backoff(&window).await;
                // A refused or reset stream leaves the connection usable.
                if sender.is_closed() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    tally
}

async fn pipelined_connection(plan: Arc<Plan>, window: Window, depth: u32) -> Tally {
    let mut tally = Tally::new();
    let expect = plan.expect.as_deref();
    let batch = plan.raw_batch(depth);
    let depth = u64::from(depth);
    'connections: while Instant::now() < window.end {
        let Some(mut stream) = connect_until(&plan, &window, &mut tally).await else {
            break;
        };
        let mut buf = BytesMut::with_capacity(16 * 1024);
        while Instant::now() < window.end {
            let started = Instant::now();
            match timeout_at(window.end, stream.write_all(&batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    tally.error(&window, depth);
                    backoff(&window).await;
                    continue 'connections;
                }
                Err(_) => break 'connections,
            }
            let mut answered = 0;
            while answered < depth {
                match parse_answer(&buf) {
                    Ok(Some(framed)) => {
                        let body = buf.get(framed.body_start..framed.end).unwrap_or_default();
                        tally.answer(&window, started, framed.status, body, expect);
                        buf.advance(framed.end);
                        answered += 1;
                        if framed.close {
                            tally.error(&window, depth - answered);
                            continue 'connections;
                        }
                    }
                    Ok(None) => match timeout_at(window.end, stream.read_buf(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        Ok(_) => {
                            // End of stream or a read error before every answer came.
                            tally.error(&window, depth - answered);
                            backoff(&window).await;
                            continue 'connections;
                        }
                        Err(_) => break 'connections,
                    },
                    Err(_) => {
                        tally.error(&window, depth - answered);
                        backoff(&window).await;
                        continue 'connections;
                    }
                }
            }
        }
    }
    tally
}

/// Runs the plan's connections from now until its window ends and merges what they saw.
async fn run(plan: Arc<Plan>) -> Tally {
    let from = Instant::now() + plan.warmup;
    let window = Window {
        from,
        end: from + plan.duration,
    };
    let mut set = JoinSet::new();
    for _ in 0..plan.conns {
        let plan = Arc::clone(&plan);
        match plan.mode {
            Mode::Http1 => set.spawn(http1_connection(plan, window)),
            Mode::Http2 { streams } => set.spawn(http2_connection(plan, window, streams)),
            Mode::Pipelined { depth } => set.spawn(pipelined_connection(plan, window, depth)),
        };
    }
    let mut total = Tally::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(tally) => total.merge(&tally),
            Err(_) => total.errors += 1,
        }
    }
    total
}

fn main() -> ExitCode {
    let plan = match Plan::from_args(Args::parse()) {
        Ok(plan) => Arc::new(plan),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = if plan.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.threads as usize)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "loadgen: {:?} {:?}, {} connections, {:.1}s warm-up + {:.1}s measured",
        plan.target,
        plan.mode,
        plan.conns,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64()
    );
    let tally = runtime.block_on(run(Arc::clone(&plan)));
    println!("{}", tally.result_line(plan.duration));
    if tally.requests == 0 {
        eprintln!("error: no request was answered in the measured window");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests;
