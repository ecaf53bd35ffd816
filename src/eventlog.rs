//! The workflow's audit event log: an append-only JSONL file of hash-chained events,
//! one per state change, each fsynced before [`EventLog::append`] returns; reading it
//! back at start (chain checked, a torn final line repaired) and [`verify`].
//!
//! The log is the workflow's source of truth: its state is rebuilt from the events
//! [`EventLog::open`] returns, never from a cache.
//!
//! # Format
//!
//! One event per line, `\n`-terminated, seq `1, 2, 3, …` with no gaps. Each line is
//! the event's *body* with a `hash` field added last:
//!
//! ```text
//! body = {"seq":N,"time":"T","actor":S,"request_id":S,"kind":S,"data":V,"prev":"H"}
//! line = {"seq":N,"time":"T","actor":S,"request_id":S,"kind":S,"data":V,"prev":"H","hash":"H"}\n
//! hash = lowercase hex of SHA-256(body bytes)
//! prev = hash of the event before; 64 zeros ([`GENESIS`]) for seq 1
//! ```
//!
//! The body is canonical JSON, byte for byte:
//!
//! * fields in exactly the order above, no whitespace anywhere;
//! * `T` is the time as jiff prints a `Timestamp`: RFC 3339 in UTC with `Z`,
//!   fractional seconds only when non-zero and without trailing zeros
//!   (`2026-12-03T17:00:00Z`, `2026-12-03T17:00:00.5Z`);
//! * strings escape `"` and `\` as `\"` `\\`; U+0008, U+0009, U+000A, U+000C, U+000D
//!   as `\b` `\t` `\n` `\f` `\r`; other U+0000..U+001F as `\u00xx` (lowercase hex);
//!   everything else, non-ASCII included, is literal UTF-8;
//! * integers are plain decimal (within `i64`/`u64`); other numbers are written as
//!   serde_json 1.x writes an `f64` (shortest round-trip form: `0.1`, `1.0`, `1e300`).
//!   Event data should prefer integers and strings;
//! * object keys inside `data` are sorted by their UTF-8 bytes, recursively, with no
//!   duplicates; arrays keep their order.
//!
//! We sort `data` ourselves instead of trusting `serde_json::Map`: cedar-policy turns on
//! serde_json's `preserve_order`, so in this build a `Map` keeps insertion order.
//!
//! A reader accepts a line only if re-encoding what it parsed gives the same bytes, so
//! any change to a byte (whitespace, escapes, key order, a number's spelling) is
//! caught, not just changes to the parsed values.
//!
//! # Crashes and failures
//!
//! `append` returns an event only once its whole line, newline included, is fsynced,
//! and one append runs at a time. So after a crash only the final line can be
//! incomplete, and it was never acknowledged. A crash leaves a prefix of that line
//! (it stops early, so JSON reports an unexpected end) and/or zeros where the
//! filesystem allocated blocks it never wrote; `open` truncates such a line away and
//! says so ([`Tail::Torn`]). A final event that is whole but lacks its newline is kept
//! and the newline added ([`Tail::MissingNewline`]): keeping an unacknowledged event
//! is harmless, dropping an acknowledged one (its newline deleted) is not.
//!
//! Anything else is tampering or damage, and `open` fails naming the first bad seq
//! and changes nothing: a bad line before the last, a final line that parses but
//! breaks the chain, or a final line that is malformed in a way no crash produces.
//! So editing a byte can never make `open` silently drop an acknowledged event;
//! cutting whole events off the end can, and only an outside record of the last hash
//! ([`VerifyReport::last_hash`]) catches that.
//!
//! INVARIANT: the file holds exactly `len` bytes of whole, chained lines whenever no
//! append is in progress. A failed write or fsync truncates back to `len` (and fsyncs);
//! if that fails too the log is poisoned and refuses appends until reopened, where the
//! leftover tail is repaired like any torn line. Only then can an event whose append
//! returned an error turn up after reopening (its line was complete on disk).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest line `append` writes, newline included. Also bounds what `open` will
/// treat as a torn final line.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How deeply `data` may nest arrays and objects. serde_json refuses to read past 128
/// levels, and the event object is one of them; this leaves a wide margin.
pub const MAX_DATA_DEPTH: usize = 64;

/// One state change, as one line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub seq: u64,
    pub time: Timestamp,
    /// Who caused the change, e.g. `User::"carol"`, or the workflow itself for a lapse.
    pub actor: String,
    pub request_id: String,
    /// What happened: `requested`, `approved`, `revoked`, ….
    pub kind: String,
    /// Event-specific facts, with object keys sorted (see the module docs).
    pub data: Value,
    pub prev: String,
    pub hash: String,
}

/// Where the log departs from a valid chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("first bad event is seq {seq} (line {line}): {fault}")]
pub struct Broken {
    /// The seq the bad line should have held; every event before it is sound.
    pub seq: u64,
    /// 1-based line number in the file.
    pub line: u64,
    pub fault: Fault,
}

/// What is wrong with the first bad line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("line is not an event: {0}")]
    Unparsable(String),
    #[error("line holds seq {found}")]
    Seq { found: u64 },
    #[error("prev is not the hash of the event before")]
    Prev,
    #[error("hash does not match the event")]
    Hash,
    #[error("line is not in canonical form")]
    NotCanonical,
}

/// What a crash left at the end of the log, and what `open` does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "tail", rename_all = "snake_case")]
pub enum Tail {
    /// An incomplete final line, bytes `offset..offset + len`: truncated away.
    Torn { offset: u64, len: u64 },
    /// Event `seq` is whole but has no newline: the newline is added.
    MissingNewline { seq: u64 },
}

/// The log read from bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub events: Vec<Event>,
    /// Bytes of the sound part: what a [`Tail::Torn`] repair truncates to.
    pub valid_len: u64,
    pub tail: Option<Tail>,
}

/// What [`verify`] found in a sound log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub events: u64,
    /// Equal to `events` while every log starts at seq 1.
    pub last_seq: u64,
    /// [`GENESIS`] for an empty log.
    pub last_hash: String,
    /// What `open` would repair. The chain is sound without it, but an auditor should
    /// still hear about it: cutting the file mid-line looks like a crash.
    pub tail: Option<Tail>,
}

/// An opened log and what it holds.
#[derive(Debug)]
pub struct Opened {
    pub log: EventLog,
    /// Every event, in order, for rebuilding state.
    pub events: Vec<Event>,
    /// What was repaired at the end of the file, if anything.
    pub repaired: Option<Tail>,
}

/// Why an event was refused before anything was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("its data nests deeper than {MAX_DATA_DEPTH} levels")]
    TooDeep,
    #[error("its line would be longer than {MAX_LINE_BYTES} bytes")]
    TooLarge,
    #[error(
        "it would not read back identically (a number that does not survive a JSON round trip)"
    )]
    NotRoundTrip,
    #[error("the sequence numbers are exhausted")]
    SeqExhausted,
}

/// The event log boundary.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("cannot open event log `{path}`: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("event log `{path}` is in use by another process")]
    Locked { path: PathBuf },
    #[error("cannot read event log `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("event log `{path}` is broken: {source}")]
    Broken {
        path: PathBuf,
        #[source]
        source: Broken,
    },
    #[error("cannot repair the final line of event log `{path}`: {source}")]
    Repair {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot sync `{path}`: {source}")]
    Sync {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("event `{kind}` of request `{request_id}` was not logged: {source}")]
    Refused {
        kind: String,
        request_id: String,
        #[source]
        source: Refusal,
    },
    #[error("cannot append to event log `{path}`, the event was not logged: {source}")]
    Append {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot append to event log `{path}`: {source}; undoing the partial write failed too: {rollback}; no more appends until it is reopened"
    )]
    RollBack {
        path: PathBuf,
        #[source]
        source: io::Error,
        rollback: io::Error,
    },
    #[error("event log `{path}` refuses appends after a failed undo; reopen it to repair")]
    Poisoned { path: PathBuf },
}

impl EventLogError {
    /// The first bad seq, when the log itself is broken.
    pub fn first_bad_seq(&self) -> Option<u64> {
        match self {
            Self::Broken { source, .. } => Some(source.seq),
            _ => None,
        }
    }
}

/// Where events go. A trait only so tests can inject write, fsync and truncate failures.
trait Storage: std::fmt::Debug + Send {
    /// Writes all of `bytes` at the end.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl Storage for File {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Opened with O_APPEND: every write lands at the end, also after a truncate.
        self.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// The open log, the only writer of its file (an exclusive lock held while open).
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    storage: Box<dyn Storage>,
    /// Bytes of whole, fsynced lines; a failed append truncates back to this.
    len: u64,
    last_seq: u64,
    last_hash: String,
    poisoned: bool,
}

impl EventLog {
    /// Opens (or creates) the log, checks the whole chain, repairs the final line after
    /// a crash (see the module docs) and returns every event for rebuilding state.
    ///
    /// Opening fsyncs the file and its directory, so whatever state is rebuilt from is
    /// durable even if the previous process died before its own fsync.
    ///
    /// # Errors
    /// The file cannot be opened, locked, read, repaired or synced, or a line other
    /// than a torn final one is bad ([`EventLogError::Broken`], nothing is changed).
    pub fn open(path: impl AsRef<Path>) -> Result<Opened, EventLogError> {
        Self::open_with(path.as_ref(), |file| Box::new(file))
    }

    fn open_with(
        path: &Path,
        wrap: impl FnOnce(File) -> Box<dyn Storage>,
    ) -> Result<Opened, EventLogError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|source| EventLogError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        // Two writers would fork the chain; an advisory lock stops a second server.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(EventLogError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(EventLogError::Open {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|source| EventLogError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let parsed = parse(&bytes).map_err(|source| EventLogError::Broken {
            path: path.to_path_buf(),
            source,
        })?;
        let mut len = parsed.valid_len;
        let repair = |source| EventLogError::Repair {
            path: path.to_path_buf(),
            source,
        };
        match parsed.tail {
            None => {}
            Some(Tail::Torn { offset, len: bytes }) => {
                file.set_len(offset).map_err(repair)?;
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    bytes,
                    "dropped the torn final line of the event log"
                );
            }
            Some(Tail::MissingNewline { seq }) => {
                file.write_all(b"\n").map_err(repair)?;
                len = len.saturating_add(1);
                tracing::warn!(
                    path = %path.display(),
                    seq,
                    "added the missing newline after the last event of the event log"
                );
            }
        }
        file.sync_data().map_err(|source| EventLogError::Sync {
            path: path.to_path_buf(),
            source,
        })?;
        sync_dir(path)?;
        let (last_seq, last_hash) = parsed
            .events
            .last()
            .map_or((0, GENESIS.to_owned()), |e| (e.seq, e.hash.clone()));
        Ok(Opened {
            log: Self {
                path: path.to_path_buf(),
                storage: wrap(file),
                len,
                last_seq,
                last_hash,
                poisoned: false,
            },
            events: parsed.events,
            repaired: parsed.tail,
        })
    }

    /// Appends one event (seq and prev assigned here) and returns it once it is fsynced.
    ///
    /// # Errors
    /// The event is refused ([`EventLogError::Refused`], nothing written), or the write
    /// or fsync fails: then the partial line is undone and the log stays usable
    /// ([`EventLogError::Append`]), unless the undo fails too
    /// ([`EventLogError::RollBack`], then [`EventLogError::Poisoned`] until reopened).
    pub fn append(
        &mut self,
        actor: &str,
        request_id: &str,
        kind: &str,
        data: Value,
        at: Timestamp,
    ) -> Result<Event, EventLogError> {
        if self.poisoned {
            return Err(EventLogError::Poisoned {
                path: self.path.clone(),
            });
        }
        let refused = |source| EventLogError::Refused {
            kind: kind.to_owned(),
            request_id: request_id.to_owned(),
            source,
        };
        // Checked without recursion, before the recursive sort and encoder see it.
        if nests_deeper_than(&data, MAX_DATA_DEPTH) {
            return Err(refused(Refusal::TooDeep));
        }
        let seq = self
            .last_seq
            .checked_add(1)
            .ok_or_else(|| refused(Refusal::SeqExhausted))?;
        let data = sorted(&data);
        let mut fields = Canonical {
            seq,
            time: at,
            actor,
            request_id,
            kind,
            data: &data,
            prev: &self.last_hash,
            hash: None,
        };
        let body = fields
            .encode()
            .map_err(|_| refused(Refusal::NotRoundTrip))?;
        let hash = hash_hex(&body);
        fields.hash = Some(&hash);
        let mut line = fields
            .encode()
            .map_err(|_| refused(Refusal::NotRoundTrip))?;
        if line.len() >= MAX_LINE_BYTES {
            return Err(refused(Refusal::TooLarge));
        }
        // Read the line back exactly as `open` and `verify` will, so an acknowledged
        // event always verifies (serde_json's default float parsing is not always exact).
        let event =
            check_line(&line, seq, &self.last_hash).map_err(|_| refused(Refusal::NotRoundTrip))?;
        line.push(b'\n');
        self.write_durably(&line)?;
        self.len = self.len.saturating_add(line.len() as u64);
        self.last_seq = seq;
        self.last_hash.clone_from(&event.hash);
        Ok(event)
    }

    fn write_durably(&mut self, line: &[u8]) -> Result<(), EventLogError> {
        let Err(source) = self.storage.append(line).and_then(|()| self.storage.sync()) else {
            return Ok(());
        };
        // A half-written line must not stay in front of the next event; nor may a whole
        // line whose fsync failed, since we are about to report it as not logged.
        match self
            .storage
            .truncate(self.len)
            .and_then(|()| self.storage.sync())
        {
            Ok(()) => Err(EventLogError::Append {
                path: self.path.clone(),
                source,
            }),
            Err(rollback) => {
                self.poisoned = true;
                Err(EventLogError::RollBack {
                    path: self.path.clone(),
                    source,
                    rollback,
                })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The seq of the last event, 0 for an empty log.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The hash of the last event, [`GENESIS`] for an empty log.
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

/// Checks the whole chain of the log at `path` without changing anything.
///
/// # Errors
/// The file cannot be read, or a line other than a torn final one is bad
/// ([`EventLogError::Broken`] names the first bad seq).
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, EventLogError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| EventLogError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let head = scan(&bytes, |_| {}).map_err(|source| EventLogError::Broken {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(VerifyReport {
        events: head.seq,
        last_seq: head.seq,
        last_hash: head.hash,
        tail: head.tail,
    })
}

/// Reads a whole log from bytes: every event, and what a crash left at the end.
///
/// # Errors
/// A line other than a torn final one is bad; the error names the first bad seq.
pub fn parse(bytes: &[u8]) -> Result<Parsed, Broken> {
    let mut events = Vec::new();
    let head = scan(bytes, |event| events.push(event))?;
    Ok(Parsed {
        events,
        valid_len: head.len,
        tail: head.tail,
    })
}

/// Fuzz target body: reads arbitrary bytes as a log; must never panic.
pub fn fuzz_read(bytes: &[u8]) {
    let Ok(parsed) = parse(bytes) else {
        return;
    };
    // What `open` would write must read back whole, with the same events.
    let repaired = match parsed.tail {
        None => return,
        Some(Tail::Torn { .. }) => usize::try_from(parsed.valid_len)
            .ok()
            .and_then(|n| bytes.get(..n))
            .map(<[u8]>::to_vec),
        Some(Tail::MissingNewline { .. }) => Some([bytes, b"\n"].concat()),
    };
    if let Some(repaired) = repaired {
        let again = parse(&repaired);
        debug_assert!(
            matches!(&again, Ok(p) if p.tail.is_none() && p.events == parsed.events),
            "a repaired log must read back to the same events"
        );
    }
}

/// The end of the sound part of a log.
struct Head {
    seq: u64,
    hash: String,
    len: u64,
    tail: Option<Tail>,
}

fn scan(bytes: &[u8], mut keep: impl FnMut(Event)) -> Result<Head, Broken> {
    let mut head = Head {
        seq: 0,
        hash: GENESIS.to_owned(),
        len: 0,
        tail: None,
    };
    let mut chunks = bytes.split_inclusive(|b| *b == b'\n').peekable();
    let mut number: u64 = 0;
    while let Some(chunk) = chunks.next() {
        number = number.saturating_add(1);
        let expected = head.seq.saturating_add(1);
        let broken = |fault| Broken {
            seq: expected,
            line: number,
            fault,
        };
        // Only the final chunk can lack a newline.
        let (line, terminated) = match chunk.strip_suffix(b"\n") {
            Some(line) => (line, true),
            None => (chunk, false),
        };
        let event = match serde_json::from_slice::<Event>(line) {
            Ok(event) => event,
            Err(e) if chunks.peek().is_none() && looks_torn(line, terminated, e.is_eof()) => {
                head.tail = Some(Tail::Torn {
                    offset: head.len,
                    len: chunk.len() as u64,
                });
                return Ok(head);
            }
            Err(e) => return Err(broken(Fault::Unparsable(e.to_string()))),
        };
        let event = check_event(event, line, expected, &head.hash).map_err(broken)?;
        head.seq = event.seq;
        head.hash.clone_from(&event.hash);
        head.len = head.len.saturating_add(chunk.len() as u64);
        if !terminated {
            head.tail = Some(Tail::MissingNewline { seq: event.seq });
        }
        keep(event);
    }
    Ok(head)
}

/// Whether an unparsable final line is what a crash leaves of one append: it starts
/// where our line started (`{`) or in a block never written (zeros), and it is either
/// cut short (no newline, JSON ended early) or holds zeros, which no JSON line can.
/// Anything else is not ours to truncate: an edited line, or the wrong file.
fn looks_torn(line: &[u8], terminated: bool, ended_early: bool) -> bool {
    line.len() <= MAX_LINE_BYTES
        && matches!(line.first(), Some(b'{' | 0))
        && ((!terminated && ended_early) || line.contains(&0))
}

/// Parses one line (without its newline) and checks it against the chain so far.
fn check_line(line: &[u8], seq: u64, prev: &str) -> Result<Event, Fault> {
    let event: Event =
        serde_json::from_slice(line).map_err(|e| Fault::Unparsable(e.to_string()))?;
    check_event(event, line, seq, prev)
}

/// Checks a parsed `line` against the chain so far and against its own bytes.
fn check_event(event: Event, line: &[u8], seq: u64, prev: &str) -> Result<Event, Fault> {
    if event.seq != seq {
        return Err(Fault::Seq { found: event.seq });
    }
    if event.prev != prev {
        return Err(Fault::Prev);
    }
    let data = sorted(&event.data);
    let mut fields = Canonical {
        seq: event.seq,
        time: event.time,
        actor: &event.actor,
        request_id: &event.request_id,
        kind: &event.kind,
        data: &data,
        prev: &event.prev,
        hash: None,
    };
    let body = fields.encode().map_err(|_| Fault::NotCanonical)?;
    if hash_hex(&body) != event.hash {
        return Err(Fault::Hash);
    }
    fields.hash = Some(&event.hash);
    if fields.encode().map_err(|_| Fault::NotCanonical)? != line {
        return Err(Fault::NotCanonical);
    }
    Ok(event)
}

/// The canonical encoding: the body without `hash`, the line with it.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    time: Timestamp,
    actor: &'a str,
    request_id: &'a str,
    kind: &'a str,
    /// Already [`sorted`].
    data: &'a Value,
    prev: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<&'a str>,
}

impl Canonical<'_> {
    fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// `value` with every object's keys in byte order. Collecting into a `Map` keeps that
/// order whether or not serde_json's `preserve_order` is on.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn nests_deeper_than(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        let next = depth.saturating_add(1);
        match value {
            Value::Array(items) if depth <= limit => {
                stack.extend(items.iter().map(|child| (child, next)));
            }
            Value::Object(map) if depth <= limit => {
                stack.extend(map.values().map(|child| (child, next)));
            }
            Value::Array(_) | Value::Object(_) => return true,
            _ => {}
        }
    }
    false
}

fn hash_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Makes the file's directory entry durable, for a log just created.
fn sync_dir(path: &Path) -> Result<(), EventLogError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| EventLogError::Sync {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests;
