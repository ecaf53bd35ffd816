//! The decision log: one JSON line per decision, written by a dedicated thread so
//! logging never sits on a request's critical path.
//!
//! The queue is bounded for ordinary records: when it is full a record is dropped and
//! the drop counted. A record of a decision that used a grant is never dropped; the
//! queue takes it even when full, because the audit trail of every elevated use is
//! the point of the product.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use jiff::Timestamp;
use serde::Serialize;

use crate::config::DecisionLog as Target;
use crate::metrics::Metrics;
use crate::snapshot::Revisions;

/// One decision, as the audit trail keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub decision_id: String,
    pub time: Timestamp,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub decision: &'static str,
    pub reasons: Vec<String>,
    pub errors: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantUse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub grants_suspended: bool,
    pub generation: u64,
    pub revisions: Revisions,
    /// A Deny that grants out of their window would have turned into an Allow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub near_misses: Vec<NearMissUse>,
    /// The request's `context`, so `elevate replay` can decide it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// The request body's `entities`, for the same reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<serde_json::Value>,
    /// Request fields left out for their size (see [`RequestJson`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<Omitted>,
}

/// A grant that would have allowed a Deny, and why it did not.
#[derive(Debug, Clone, Serialize)]
pub struct NearMissUse {
    pub id: String,
    /// `expired`, `not_started` or `suspended`.
    pub why: &'static str,
    /// When it expired or when it starts; absent for a suspended grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// A request field the record leaves out because it is too big.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Omitted {
    pub field: &'static str,
    /// Its size as compact JSON.
    pub bytes: usize,
}

/// The largest `context` or `entities` a record keeps, as compact JSON. A bigger
/// one is left out (and the record says so): a decision record stays one short line,
/// and such a record cannot be replayed.
pub const MAX_RECORDED_JSON: usize = 16 * 1024;

/// The request JSON a decision record keeps, taken from the body before the
/// request consumes it.
#[derive(Debug, Clone, Default)]
pub struct RequestJson {
    pub context: Option<serde_json::Value>,
    pub entities: Option<serde_json::Value>,
    pub omitted: Vec<Omitted>,
}

impl RequestJson {
    /// Keeps `context` and `entities` unless empty or bigger than
    /// [`MAX_RECORDED_JSON`]. `bound` is an upper estimate of their size (the length
    /// of the body they came in): below the cap nothing needs measuring, so the usual
    /// small request pays a clone of its context and nothing more.
    pub fn keep(
        context: Option<&serde_json::Value>,
        entities: Option<&serde_json::Value>,
        bound: usize,
    ) -> Self {
        let mut kept = Self::default();
        let mut take = |field: &'static str, value: Option<&serde_json::Value>| {
            let value = value.filter(|v| !is_empty_json(v))?;
            if bound > MAX_RECORDED_JSON {
                let bytes = json_len(value);
                if bytes > MAX_RECORDED_JSON {
                    kept.omitted.push(Omitted { field, bytes });
                    return None;
                }
            }
            Some(value.clone())
        };
        let context = take("context", context);
        let entities = take("entities", entities);
        kept.context = context;
        kept.entities = entities;
        kept
    }
}

/// `null`, `{}` and `[]`: what a request without context or entities may send.
fn is_empty_json(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Object(map) => map.is_empty(),
        serde_json::Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// The length of `value` as compact JSON, without building the text.
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A grant an Allow relied on, with the change reference it was approved for.
#[derive(Debug, Clone, Serialize)]
pub struct GrantUse {
    pub id: String,
    pub role: String,
    pub scope: String,
    pub expires_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

struct Shared {
    /// Producers: request handlers (push, never wait). Consumer: the writer thread
    /// (takes the whole queue at once). A std `Mutex` because both sides hold it only
    /// to move records, never across I/O or an `.await`.
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
}

struct Queue {
    records: VecDeque<DecisionRecord>,
    closed: bool,
}

/// Handle to the decision log; cheap to clone.
#[derive(Clone)]
pub struct DecisionLog {
    shared: Option<Arc<Shared>>,
    metrics: Arc<Metrics>,
    next_id: Arc<AtomicU64>,
    id_prefix: Arc<str>,
}

/// Joins the writer thread after the last record is written and synced.
pub struct Writer {
    shared: Option<Arc<Shared>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DecisionLog {
    /// Opens the target and starts the writer thread.
    ///
    /// # Errors
    /// The log file cannot be opened for appending.
    pub fn spawn(
        target: &Target,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, Writer)> {
        let prefix: Arc<str> = format!("{:x}", Timestamp::now().as_millisecond()).into();
        let sink = match target {
            Target::Off => {
                let log = Self {
                    shared: None,
                    metrics,
                    next_id: Arc::new(AtomicU64::new(1)),
                    id_prefix: prefix,
                };
                return Ok((
                    log,
                    Writer {
                        shared: None,
                        thread: None,
                    },
                ));
            }
            Target::Stdout => Sink::Stdout(std::io::stdout()),
            Target::File(path) => Sink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                records: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_loop(&for_thread, sink))?;
        Ok((
            Self {
                shared: Some(Arc::clone(&shared)),
                metrics,
                next_id: Arc::new(AtomicU64::new(1)),
                id_prefix: prefix,
            },
            Writer {
                shared: Some(shared),
                thread: Some(thread),
            },
        ))
    }

    /// A process-unique decision id, for the response header and the record.
    pub fn next_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Queues a record without waiting. Ordinary records are dropped (and counted)
    /// when the queue is full; records that used a grant are always kept.
    pub fn submit(&self, record: DecisionRecord) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if record.grants.is_empty() && queue.records.len() >= shared.capacity {
            drop(queue);
            self.metrics.decision_log_dropped();
            return;
        }
        queue.records.push_back(record);
        drop(queue);
        shared.ready.notify_one();
    }
}

impl Writer {
    /// Writes what is queued, syncs the file and stops the thread.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .closed = true;
            shared.ready.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

enum Sink {
    Stdout(std::io::Stdout),
    File(std::fs::File),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Stdout(s) => s.write(buf),
            Self::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Stdout(s) => s.flush(),
            Self::File(f) => f.flush(),
        }
    }
}

fn write_loop(shared: &Shared, sink: Sink) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink);
    loop {
        let (batch, closed) = {
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            while queue.records.is_empty() && !queue.closed {
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            (std::mem::take(&mut queue.records), queue.closed)
        };
        for record in &batch {
            if serde_json::to_writer(&mut out, record).is_ok() {
                let _ = out.write_all(b"\n");
            }
        }
        if let Err(err) = out.flush() {
            tracing::error!(error = %err, "decision log write failed");
        }
        if closed {
            if let Sink::File(file) = out.get_ref()
                && let Err(err) = file.sync_all()
            {
                tracing::error!(error = %err, "decision log sync failed");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(id: &str, with_grant: bool) -> DecisionRecord {
        DecisionRecord {
            decision_id: id.into(),
            time: Timestamp::UNIX_EPOCH,
            principal: "User::\"a\"".into(),
            action: "Action::\"x\"".into(),
            resource: "R::\"r\"".into(),
            decision: "Allow",
            reasons: vec![],
            errors: vec![],
            grants: if with_grant {
                vec![GrantUse {
                    id: "g".into(),
                    role: "FinOpsManager".into(),
                    scope: "Workspace::\"ws\"".into(),
                    expires_at: Timestamp::UNIX_EPOCH,
                    ticket: None,
                }]
            } else {
                vec![]
            },
            valid_until: None,
            grants_suspended: false,
            generation: 1,
            revisions: Revisions::default(),
            near_misses: vec![],
            context: None,
            entities: None,
            omitted: vec![],
        }
    }

    #[test]
    fn request_json_keeps_small_values_and_omits_big_ones_with_their_size() {
        let context = serde_json::json!({"mfa": true});
        let kept = RequestJson::keep(Some(&context), None, 100);
        assert_eq!(kept.context, Some(context.clone()));
        assert!(kept.entities.is_none() && kept.omitted.is_empty());

        let empty = RequestJson::keep(
            Some(&serde_json::json!({})),
            Some(&serde_json::json!([])),
            100,
        );
        assert!(empty.context.is_none() && empty.entities.is_none());

        let big =
            serde_json::json!([{"uid": {"type": "User", "id": "x".repeat(MAX_RECORDED_JSON)}}]);
        let size = serde_json::to_vec(&big).unwrap().len();
        let kept = RequestJson::keep(Some(&context), Some(&big), size + 100);
        assert_eq!(kept.context, Some(context));
        assert!(kept.entities.is_none());
        assert_eq!(
            kept.omitted,
            [Omitted {
                field: "entities",
                bytes: size
            }]
        );
    }

    #[test]
    fn full_queue_drops_plain_records_but_keeps_grant_records() {
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                records: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: 2,
        });
        // No writer thread: the queue only fills.
        let log = DecisionLog {
            shared: Some(Arc::clone(&shared)),
            metrics: Arc::clone(&metrics),
            next_id: Arc::new(AtomicU64::new(1)),
            id_prefix: "t".into(),
        };
        log.submit(record("1", false));
        log.submit(record("2", false));
        log.submit(record("3", false));
        log.submit(record("4", true));
        let ids: Vec<String> = shared
            .queue
            .lock()
            .unwrap()
            .records
            .iter()
            .map(|r| r.decision_id.clone())
            .collect();
        assert_eq!(ids, ["1", "2", "4"]);
        let text = metrics.encode();
        assert!(
            text.contains("elevate_decision_log_dropped_total 1"),
            "{text}"
        );
    }

    #[test]
    fn writer_writes_every_record_as_a_json_line_before_finishing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let (log, writer) = DecisionLog::spawn(&Target::File(path.clone()), 16, metrics).unwrap();
        for i in 0..100 {
            log.submit(record(&i.to_string(), i % 7 == 0));
        }
        writer.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // The writer drains while we submit, so drops are possible but grant records never drop.
        let grant_lines = lines.iter().filter(|l| l.get("grants").is_some()).count();
        assert_eq!(grant_lines, 15);
        assert!(lines.len() >= 15);
    }
}
