//! The HTTP surface's limits: hyper's per-connection settings from [`HttpConfig`], the
//! table of open connections that enforces `max_connections`, the HTTP/1.1 request-head
//! deadline ([`Head`]), and the JSON depth check.
//!
//! The head deadline is ours, not hyper's: hyper's `header_read_timeout` also runs
//! while a kept-alive connection waits for its next request, so it would close idle
//! pooled connections after the header timeout instead of the idle timeout. [`Head`]
//! starts the clock only at the first byte of a head (or at the answer before it, when
//! that byte is already buffered), and never on an HTTP/2 connection.
//!
//! At the connection limit a new connection is not left waiting in the kernel's
//! backlog behind idle ones: the connection that has gone longest without serving a
//! request is closed to make room. Idle keep-alive connections, half-sent headers and
//! connections that never sent a byte all count as idle, so 10,000 of them cannot lock
//! out a client with a request to make. Only when every connection is serving a
//! request is the new one closed instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio_util::sync::CancellationToken;

use crate::config::{self, HttpConfig};

/// Applies `config`'s limits to both protocols of `builder`.
pub(super) fn configure(builder: &mut Builder<TokioExecutor>, config: &HttpConfig) {
    // hyper asserts its read buffer is at least this big; a struct-literal config
    // below it gets the floor rather than a panic.
    let header_bytes = config.max_header_bytes.max(config::MIN_MAX_HEADER_BYTES);
    let mut h1 = builder.http1();
    // No header read timeout from hyper (its default is 30 s once a timer is set):
    // hyper would time a kept-alive connection's wait for its next request too.
    // [`Head`] times request heads instead.
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        // The read buffer holds the request head while it is parsed: capping it caps
        // the head, and hyper answers 431 when the cap is reached.
        .max_buf_size(header_bytes);
    // A non-default count moves hyper's header array to the heap on every request.
    if config.max_headers != config::DEFAULT_MAX_HEADERS {
        h1.max_headers(config.max_headers.max(1));
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_streams.max(1))
        .max_pending_accept_reset_streams(config.h2_max_pending_resets.max(1))
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX));
}

/// What a client sends first on a prior-knowledge HTTP/2 connection (and after an
/// ALPN `h2` handshake); hyper-util's auto builder picks the protocol from these bytes.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// No head is being timed.
const UNTIMED: u64 = u64::MAX;

/// One connection's request-head deadline. Shared by the socket wrapper (which sees
/// bytes arrive), the service (which sees heads complete and answers go back) and the
/// connection's task (which closes the connection when [`Head::overdue`] resolves).
///
/// A connection is *awaiting a head* from its accept, and again each time the service
/// hands back a response; it stops when hyper calls the service, which it does once a
/// head is complete. The first byte read while awaiting a head starts the deadline;
/// later bytes do not move it, so trickling a head does not buy time. A connection
/// that sends nothing is never timed here: the idle timeout governs it.
pub(super) struct Head {
    timeout: Duration,
    start: tokio::time::Instant,
    awaiting: AtomicBool,
    /// When the head being received is overdue, in milliseconds since `start`;
    /// [`UNTIMED`] when none is. Set only while `awaiting`; cleared when hyper calls
    /// the service or the connection turns out to be HTTP/2.
    deadline_ms: AtomicU64,
    /// The first bytes were the HTTP/2 preface: h2 has its own limits, nothing here
    /// applies from then on.
    h2: AtomicBool,
    /// Whether the bytes read so far end with an empty line, that is at the end of a
    /// head. Tells whether bytes after an answered request are already buffered.
    at_head_end: AtomicBool,
    /// Wakes [`Head::overdue`] when a deadline starts.
    armed: Notify,
}

/// What the socket wrapper remembers of the bytes it has read, for [`Head::on_read`].
/// Owned by the one reader, so it needs no synchronisation.
#[derive(Debug)]
pub(super) struct Reader {
    /// Bytes of the HTTP/2 preface matched so far; `None` once a byte did not match.
    preface: Option<usize>,
    /// The last three bytes read, oldest first.
    tail: [u8; 3],
}

impl Reader {
    pub(super) fn new() -> Self {
        Self {
            preface: Some(0),
            tail: [0; 3],
        }
    }
}

impl Head {
    pub(super) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            start: tokio::time::Instant::now(),
            awaiting: AtomicBool::new(true),
            deadline_ms: AtomicU64::new(UNTIMED),
            h2: AtomicBool::new(false),
            at_head_end: AtomicBool::new(true),
            armed: Notify::new(),
        }
    }

    /// Bytes came in from the client.
    pub(super) fn on_read(&self, reader: &mut Reader, bytes: &[u8]) {
        if bytes.is_empty() || self.h2.load(Ordering::Acquire) {
            return;
        }
        if let Some(matched) = reader.preface {
            let rest = H2_PREFACE.get(matched..).unwrap_or_default();
            let n = rest.len().min(bytes.len());
            if bytes.get(..n) == rest.get(..n) {
                if matched + n == H2_PREFACE.len() {
                    self.h2.store(true, Ordering::Release);
                    self.deadline_ms.store(UNTIMED, Ordering::Release);
                    return;
                }
                // Maybe h2, maybe an HTTP/1 method starting with `P`: time it as a
                // head meanwhile, so a preface trickled byte by byte is cut off too.
                reader.preface = Some(matched + n);
            } else {
                reader.preface = None;
            }
        }
        for &byte in bytes
            .get(bytes.len().saturating_sub(3)..)
            .unwrap_or_default()
        {
            let [_, b, c] = reader.tail;
            reader.tail = [b, c, byte];
        }
        let at_end = matches!(reader.tail, [_, b'\n', b'\n'] | [b'\n', b'\r', b'\n']);
        self.at_head_end.store(at_end, Ordering::Release);
        self.start_deadline();
    }

    /// hyper called the service: a request head is complete.
    pub(super) fn request_started(&self) {
        if self.h2.load(Ordering::Acquire) {
            return;
        }
        self.awaiting.store(false, Ordering::Release);
        self.deadline_ms.store(UNTIMED, Ordering::Release);
    }

    /// The service handed back the response to a request; `bodiless` when that request
    /// had no body.
    pub(super) fn response_returned(&self, bodiless: bool) {
        if self.h2.load(Ordering::Acquire) {
            return;
        }
        self.awaiting.store(true, Ordering::Release);
        // Pipelining: the next request's first bytes may already be in hyper's buffer,
        // read together with this request, and no later read will announce them. hyper
        // does not say what it holds, but a request without a body ends with its head,
        // so if the bytes read so far do not end with an empty line, more follow it:
        // they count from now. (A complete pipelined head also ends with an empty
        // line; hyper parses it straight from its buffer, no deadline needed.) After a
        // request with a body the end of the stream says nothing, so that one case
        // waits for the next byte read, or the idle timeout, exactly as a connection
        // that sends nothing would.
        if bodiless && !self.at_head_end.load(Ordering::Acquire) {
            self.start_deadline();
        }
    }

    /// Starts the deadline of the head now arriving, unless one already runs.
    fn start_deadline(&self) {
        if !self.awaiting.load(Ordering::Acquire) {
            return;
        }
        let now = self.start.elapsed().saturating_add(self.timeout);
        let at = u64::try_from(now.as_millis()).unwrap_or(UNTIMED - 1);
        if self
            .deadline_ms
            .compare_exchange(UNTIMED, at, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.armed.notify_one();
        }
    }

    /// When the head being received is overdue, if one is being received.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        match self.deadline_ms.load(Ordering::Acquire) {
            UNTIMED => None,
            ms => Some(self.start + Duration::from_millis(ms)),
        }
    }

    /// Resolves once a request head has taken longer than the header timeout.
    pub(super) async fn overdue(&self) {
        loop {
            // Created before the check, so a deadline started in between still wakes it
            // (`notify_one` leaves a permit when nobody waits).
            let armed = self.armed.notified();
            match self.deadline() {
                None => armed.await,
                Some(at) if tokio::time::Instant::now() >= at => return,
                // Cleared or replaced meanwhile is fine: the loop looks again.
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
    }
}

/// Whether a JSON document nests arrays and objects deeper than `max`. A byte scan,
/// strings skipped, run before any recursive parser sees the body; for a document
/// that is not JSON at all the answer does not matter, the parser rejects it.
pub(super) fn too_deep(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The open connections, counted against `max_connections`.
pub(super) struct Connections {
    max: usize,
    started: Instant,
    /// Connection id → its state. Locked for an insert, a removal, or (at the limit)
    /// one scan to pick the connection to close; never across an `.await`.
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

/// One connection's share of the table.
pub(super) struct Conn {
    /// Requests being served on it now (streams, for HTTP/2).
    in_flight: AtomicUsize,
    /// When it last finished serving a request, or was accepted: milliseconds since
    /// [`Connections::started`]. A connection that never completes a request keeps
    /// its accept time, so trickling bytes does not make it look useful.
    last_served_ms: AtomicU64,
    /// Cancelled to close it; the connection's task watches it.
    evict: CancellationToken,
}

/// A connection's place in the table; leaving drops it from the count.
pub(super) struct Slot {
    table: Arc<Connections>,
    id: u64,
    conn: Arc<Conn>,
}

/// A request in flight on a connection; makes it not idle until dropped.
pub(super) struct Busy {
    table: Arc<Connections>,
    conn: Arc<Conn>,
}

impl Connections {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            started: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Room for a new connection, closing the one idle longest when the table is
    /// full; `None` when every open connection is serving a request.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_served_ms: AtomicU64::new(self.now_ms()),
            evict: CancellationToken::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock only means a panic elsewhere mid-update of a map that is
        // still consistent (inserts and removes are single calls).
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.len() >= self.max {
            let victim = open
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(id, c)| (c.last_served_ms.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id);
            let victim = victim.and_then(|id| open.remove(&id))?;
            victim.evict.cancel();
        }
        open.insert(id, Arc::clone(&conn));
        drop(open);
        Some(Slot {
            table: Arc::clone(self),
            id,
            conn,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

impl Slot {
    /// Marks a request in flight until the guard is dropped.
    pub(super) fn busy(&self) -> Busy {
        self.conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy {
            table: Arc::clone(&self.table),
            conn: Arc::clone(&self.conn),
        }
    }

    /// Resolves when the table closed this connection to make room.
    pub(super) async fn evicted(&self) {
        self.conn.evict.cancelled().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn
            .last_served_ms
            .store(self.table.now_ms(), Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(!too_deep(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(too_deep(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(!too_deep(br#"{"a":"[[[[[[[[[[{{{{{{"}"#, 1));
        assert!(!too_deep(br#"{"a":"\"[[[[[["}"#, 1));
        assert!(too_deep(&[b'['; 65], 64));
        assert!(!too_deep(&[b'['; 64], 64));
        // Closing brackets out of turn never underflow into "deep".
        assert!(!too_deep(b"]]]]]]]]][", 1));
    }

    fn timed(head: &Head) -> bool {
        head.deadline().is_some()
    }

    #[test]
    fn a_head_is_timed_from_its_first_byte_and_never_between_requests() {
        let head = Head::new(Duration::from_secs(10));
        let mut reader = Reader::new();
        assert!(!timed(&head), "an accepted connection that sent nothing");
        head.on_read(&mut reader, b"GET /healthz HTTP/1.1\r\n");
        let first = head.deadline().unwrap();
        // More bytes of the same head do not push the deadline back.
        head.on_read(&mut reader, b"host: x\r\n\r\n");
        assert_eq!(head.deadline(), Some(first));
        head.request_started();
        assert!(!timed(&head), "a request in service");
        head.response_returned(true);
        assert!(
            !timed(&head),
            "waiting for the next request, nothing buffered"
        );
        head.on_read(&mut reader, b"G");
        assert!(timed(&head), "the next head's first byte");
        // Bytes read while a request is in service (its body) start nothing.
        head.on_read(&mut reader, b"ET / HTTP/1.1\r\ncontent-length: 2\r\n\r\n");
        head.request_started();
        head.on_read(&mut reader, b"{}");
        assert!(!timed(&head));
        head.response_returned(false);
        assert!(
            !timed(&head),
            "after a request with a body, nothing is assumed"
        );
    }

    #[test]
    fn a_pipelined_partial_head_is_timed_from_the_answer_before_it() {
        let head = Head::new(Duration::from_secs(10));
        let mut reader = Reader::new();
        head.on_read(&mut reader, b"GET / HTTP/1.1\r\n\r\nGET / HT");
        head.request_started();
        assert!(!timed(&head));
        head.response_returned(true);
        assert!(
            timed(&head),
            "bytes beyond a bodiless request were buffered"
        );

        // A complete pipelined head ends with an empty line, as do bare-LF heads:
        // hyper parses it from its buffer, so nothing is timed at the answer.
        for bytes in [
            &b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\nhost: x\n\n",
            b"GET / HTTP/1.1\r\nhost: x\r\n\n",
        ] {
            let head = Head::new(Duration::from_secs(10));
            let mut reader = Reader::new();
            head.on_read(&mut reader, bytes);
            head.request_started();
            head.response_returned(true);
            assert!(!timed(&head), "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn the_h2_preface_even_in_pieces_turns_the_head_timer_off_for_good() {
        let head = Head::new(Duration::from_secs(10));
        let mut reader = Reader::new();
        head.on_read(&mut reader, b"PRI * HTTP/2.0\r\n");
        assert!(timed(&head), "undecided: timed like a head meanwhile");
        head.on_read(&mut reader, b"\r\nSM\r\n\r\n\x00\x00\x12\x04");
        assert!(!timed(&head));
        // Streams come and go, frames arrive between them: never timed.
        head.request_started();
        head.response_returned(true);
        head.on_read(&mut reader, b"\x00\x00\x08\x06\x00");
        head.response_returned(true);
        assert!(!timed(&head));
    }

    #[test]
    fn methods_that_start_like_the_preface_are_http1() {
        for first in [&b"PUT / HTTP/1.1\r\n"[..], b"PRIX", b"P", b"POST"] {
            let head = Head::new(Duration::from_secs(10));
            let mut reader = Reader::new();
            head.on_read(&mut reader, first);
            assert!(timed(&head), "{}", String::from_utf8_lossy(first));
        }
        // Once HTTP/1, the preface's bytes later on are just bytes.
        let head = Head::new(Duration::from_secs(10));
        let mut reader = Reader::new();
        head.on_read(&mut reader, b"PO");
        head.on_read(&mut reader, H2_PREFACE);
        head.request_started();
        head.on_read(&mut reader, b"G");
        head.response_returned(true);
        assert!(timed(&head));
    }

    #[tokio::test]
    async fn overdue_resolves_once_a_started_head_runs_out_of_time() {
        let head = Arc::new(Head::new(Duration::from_millis(1)));
        let waiting = tokio::spawn({
            let head = Arc::clone(&head);
            async move { head.overdue().await }
        });
        // Started after the waiter went to sleep on "no deadline": it must be woken.
        tokio::task::yield_now().await;
        head.on_read(&mut Reader::new(), b"GET");
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("overdue never resolved")
            .unwrap();
    }

    #[test]
    fn a_full_table_closes_the_connection_idle_longest() {
        let table = Connections::new(2);
        let first = table.admit().unwrap();
        let second = table.admit().unwrap();
        // The second serves a request and finishes it: the first is now idle longest,
        // even though the second finished later than the first was accepted.
        drop(second.busy());
        let third = table.admit().unwrap();
        assert!(first.conn.evict.is_cancelled());
        assert!(!second.conn.evict.is_cancelled());
        assert_eq!(table.len(), 2);
        drop(first);
        assert_eq!(
            table.len(),
            2,
            "an evicted slot was already out of the table"
        );
        drop(third);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn busy_connections_are_never_closed_to_make_room() {
        let table = Connections::new(2);
        let a = table.admit().unwrap();
        let b = table.admit().unwrap();
        let _busy_a = a.busy();
        let _busy_b = b.busy();
        assert!(table.admit().is_none());
        assert!(!a.conn.evict.is_cancelled());
        assert!(!b.conn.evict.is_cancelled());
        drop(_busy_b);
        let c = table.admit().unwrap();
        assert!(b.conn.evict.is_cancelled());
        assert!(!c.conn.evict.is_cancelled());
    }
}
