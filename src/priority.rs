//! The low-priority worker thread that snapshot reloads (and the freeing of the
//! snapshots they retire) run on: a higher nice value than the request threads, so a
//! big reload yields the CPU to requests instead of sharing it with them one to one.
//!
//! Only a nice value is used, never `SCHED_IDLE`: a niced thread still gets a share of
//! a saturated CPU (about a quarter at nice 5 against one busy thread at nice 0), so a
//! revocation always lands, later rather than never.
//!
//! A nice value sets the reloader's share, not how long it holds the core: once the
//! scheduler picks it, it runs a whole slice (milliseconds) while a woken request
//! waits. So the reloader also paces itself ([`pace`]): while as many request workers
//! as there are cores are running or waiting to run (as the kernel reports them in
//! `/proc`), it works at most [`BURST`] at a stretch and then steps aside for up to
//! [`REST`].

use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How far below the request threads the reloader runs when nothing is configured.
/// Measured with a 100,000-grant feed and its core saturated by a busy loop, a reload
/// landed after about 1.2 s at +0, 2.2 s at +5 and 10 to 16 s at +10: +5 still makes a
/// revocation land within seconds while the reloader yields most of the core.
pub const DEFAULT_RELOAD_NICE: i32 = 5;

/// The highest nice value Linux has.
const MAX_NICE: i32 = 19;

/// What became of the requested priority, for `/v1/status` and the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum NiceOutcome {
    /// `--reload-nice 0`: the worker runs at the request threads' priority.
    Disabled,
    /// The worker's nice value is `nice` (the process's plus the configured step).
    Applied { nice: i32 },
    /// Setting it failed; the worker runs at the request threads' priority.
    Failed { error: String },
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread that runs jobs one at a time at a lower priority. The thread ends when the
/// worker is dropped.
pub struct Worker {
    /// Behind a `Mutex` only so the worker is `Sync` (a `Sender` is `Send` only); it
    /// is held just to queue a job.
    jobs: Mutex<mpsc::Sender<Job>>,
    outcome: NiceOutcome,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts the thread `name`, `step` nice levels below the caller (0: not at all).
    /// A priority that cannot be set is reported by [`Worker::outcome`], never fatal.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn spawn(name: &str, step: i32) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (told, outcome) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _ = told.send(lower_own_priority(step));
                while let Ok(job) = queue.recv() {
                    pace_this_thread();
                    // A job that panics fails alone (its caller sees `None`); the
                    // worker stays for the next reload.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        let outcome = outcome.recv().unwrap_or_else(|_| NiceOutcome::Failed {
            error: "the worker thread ended before it started".into(),
        });
        Ok(Self {
            jobs: Mutex::new(jobs),
            outcome,
        })
    }

    pub fn outcome(&self) -> &NiceOutcome {
        &self.outcome
    }

    /// Runs `job` on the worker and waits for it; blocking, so call it off the async
    /// threads. `None` if the job panicked. Should the worker be gone, the job runs
    /// here instead: a reload is never dropped.
    pub fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = mpsc::sync_channel(1);
        let boxed: Job = Box::new(move || {
            let _ = done.send(job());
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(boxed);
        match sent {
            Ok(()) => result.recv().ok(),
            Err(mpsc::SendError(job)) => {
                job();
                result.recv().ok()
            }
        }
    }
}

/// Raises the calling thread's nice value by `step` (only this thread's: on Linux the
/// nice value is per thread).
fn lower_own_priority(step: i32) -> NiceOutcome {
    if step == 0 {
        return NiceOutcome::Disabled;
    }
    set_thread_nice(step)
}

#[cfg(target_os = "linux")]
fn set_thread_nice(step: i32) -> NiceOutcome {
    use rustix::process::{getpriority_process, setpriority_process};
    let tid = rustix::thread::gettid();
    let result = getpriority_process(Some(tid)).and_then(|now| {
        let nice = now.saturating_add(step).min(MAX_NICE);
        setpriority_process(Some(tid), nice).map(|()| nice)
    });
    match result {
        Ok(nice) => NiceOutcome::Applied { nice },
        Err(e) => NiceOutcome::Failed {
            error: format!("cannot lower the reloader's priority by {step}: {e}"),
        },
    }
}

#[cfg(not(target_os = "linux"))]
fn set_thread_nice(step: i32) -> NiceOutcome {
    // Elsewhere the nice value is per process: raising it would slow requests too.
    NiceOutcome::Failed {
        error: format!("cannot lower the reloader's priority by {step}: only supported on Linux"),
    }
}

/// The longest the reloader works at a stretch while requests want its core: about
/// the longest a request waits for it, beyond the kernel's own latency.
pub const BURST: Duration = Duration::from_micros(200);

/// How long, at most, the reloader steps aside after a burst while requests want its
/// core. With [`BURST`] it caps the reloader's share of a saturated core at a fifth
/// (never less than a burst per rest, so a reload always lands): under full load a
/// 100,000-grant reload (about 0.4 s of CPU) took 2.5 to 5 s.
pub const REST: Duration = Duration::from_micros(800);

/// The steps the rest is taken in, so the reloader resumes soon after the workers
/// go idle.
const REST_STEP: Duration = Duration::from_micros(200);

/// The request runtime's worker threads (their kernel thread ids), each registered the
/// first time it parks (`on_thread_park`); with none registered the reloader never
/// steps aside.
static WORKER_TIDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static WORKERS_SEEN: AtomicUsize = AtomicUsize::new(0);

/// What the reloader watches, refreshed when a worker registers: the workers' open
/// `stat` files and the cores the process may use.
struct Watched {
    known: usize,
    stats: Vec<std::fs::File>,
    cores: usize,
}

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    static WATCHED: RefCell<Watched> = const {
        RefCell::new(Watched { known: 0, stats: Vec::new(), cores: 1 })
    };
}

/// Call from the request runtime's `on_thread_park`: registers the calling worker the
/// first time (then a thread-local check only).
pub fn worker_parked() {
    REGISTERED.with(|done| {
        if !done.replace(true) {
            let tid = rustix::thread::gettid().as_raw_nonzero().get();
            WORKER_TIDS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(tid);
            WORKERS_SEEN.fetch_add(1, Ordering::Release);
        }
    });
}

/// Whether a request may be waiting for the core the reloader runs on: as many request
/// workers are running or runnable as the process has cores. The kernel's view is
/// what counts: a worker whose wakeup came while the reloader runs has not run yet,
/// so nothing it could record in memory would tell.
fn contended() -> bool {
    let known = WORKERS_SEEN.load(Ordering::Acquire);
    if known == 0 {
        return false;
    }
    WATCHED.with(|watched| {
        let mut watched = watched.borrow_mut();
        if watched.known != known {
            let tids = WORKER_TIDS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            *watched = Watched {
                known,
                stats: tids.iter().filter_map(|tid| open_stat(*tid)).collect(),
                cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            };
        }
        let runnable = watched.stats.iter().filter(|f| is_runnable(f)).count();
        contended_at(runnable, watched.cores)
    })
}

/// With fewer running or runnable workers than cores, a core is free for the reloader.
fn contended_at(runnable: usize, cores: usize) -> bool {
    runnable > 0 && runnable >= cores
}

fn open_stat(tid: i32) -> Option<std::fs::File> {
    std::fs::File::open(format!("/proc/self/task/{tid}/stat")).ok()
}

/// Whether the thread whose `stat` file this is is running or waiting to run; read
/// afresh each time (a read at offset 0 regenerates the file).
fn is_runnable(stat: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 512];
    let n = stat.read_at(&mut buf, 0).unwrap_or(0);
    state_of(buf.get(..n).unwrap_or_default()) == Some(b'R')
}

/// The state letter of a `stat` line: the first field after the command name, which
/// is in parentheses and may itself contain `)` and spaces.
fn state_of(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    stat.get(close + 2).copied()
}

thread_local! {
    /// When the current burst began, on a thread that paces itself (the reloader).
    static BURST_START: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A point where long work on the reloader may step aside for requests: call it
/// between small units of work (a grant, a block of a file). Elsewhere, and while a
/// core is free, it costs a clock read or less.
pub fn pace() {
    pace_with(contended);
}

/// [`pace`] against `contended`; how long it stepped aside.
fn pace_with(contended: impl Fn() -> bool) -> Duration {
    BURST_START.with(|start| {
        let Some(began) = start.get() else {
            return Duration::ZERO;
        };
        if began.elapsed() < BURST {
            return Duration::ZERO;
        }
        let mut rested = Duration::ZERO;
        while rested < REST && contended() {
            std::thread::sleep(REST_STEP);
            rested += REST_STEP;
        }
        start.set(Some(Instant::now()));
        rested
    })
}

/// Makes [`pace`] on this thread step aside when requests need the core.
fn pace_this_thread() {
    BURST_START.with(|start| start.set(Some(Instant::now())));
}

/// The nice value `--reload-nice` may take.
pub fn valid_step(step: i32) -> bool {
    (0..=MAX_NICE).contains(&step)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    /// The calling thread's nice value, read from /proc (not through the code under test).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let rest = stat.rsplit_once(") ").unwrap().1;
        // Field 19 of stat is the nice value; `rest` starts at field 3.
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn jobs_run_on_a_thread_with_a_higher_nice_value_and_the_caller_is_untouched() {
        let before = own_nice();
        let worker = Worker::spawn("test-lowprio", 7).unwrap();
        let expected = (before + 7).min(MAX_NICE);
        assert_eq!(worker.outcome(), &NiceOutcome::Applied { nice: expected });
        let (nice, name) = worker
            .run(|| (own_nice(), std::thread::current().name().map(str::to_owned)))
            .unwrap();
        assert_eq!(nice, expected);
        assert_eq!(name.as_deref(), Some("test-lowprio"));
        assert_eq!(own_nice(), before, "only the worker thread is niced");
        // Jobs run one after the other, and results come back.
        let sum: u64 = (1..=10).map(|i| worker.run(move || i * 2).unwrap()).sum();
        assert_eq!(sum, 110);
    }

    #[test]
    fn zero_disables_and_a_panicking_job_does_not_take_the_work_with_it() {
        let before = own_nice();
        let worker = Worker::spawn("test-nonice", 0).unwrap();
        assert_eq!(worker.outcome(), &NiceOutcome::Disabled);
        assert_eq!(worker.run(own_nice), Some(before));
        let hidden = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let panicked = worker.run(|| -> u32 { panic!("boom") });
        std::panic::set_hook(hidden);
        assert_eq!(panicked, None);
        // The worker is still there, at its priority, for the next job.
        let name = worker.run(|| std::thread::current().name().map(str::to_owned));
        assert_eq!(name.flatten().as_deref(), Some("test-nonice"));
    }

    #[test]
    fn only_a_thread_that_paces_itself_steps_aside() {
        let rested = std::thread::spawn(|| {
            std::thread::sleep(BURST);
            pace_with(|| true)
        });
        assert_eq!(rested.join().unwrap(), Duration::ZERO);
        // Jobs on the reloader pace themselves.
        let worker = Worker::spawn("test-pace", 0).unwrap();
        let rested = worker.run(|| {
            std::thread::sleep(BURST);
            pace_with(|| true)
        });
        assert_eq!(rested, Some(REST));
    }

    #[test]
    fn after_a_burst_the_reloader_rests_while_contended_and_at_most_rest() {
        std::thread::spawn(|| {
            pace_this_thread();
            std::thread::sleep(BURST);
            // Busy throughout: the whole rest, then back to work.
            assert_eq!(pace_with(|| true), REST);
            std::thread::sleep(BURST);
            // The workers go idle after two steps: it resumes then.
            let checks = Cell::new(0);
            let rested = pace_with(|| {
                checks.set(checks.get() + 1);
                checks.get() <= 2
            });
            assert_eq!(rested, REST_STEP * 2);
            assert_eq!(checks.get(), 3);
            std::thread::sleep(BURST);
            // A free core: no rest at all.
            assert_eq!(pace_with(|| false), Duration::ZERO);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn contention_means_as_many_runnable_workers_as_cores() {
        // runnable workers, cores
        assert!(
            contended_at(1, 1),
            "the one worker of a pinned core wants it"
        );
        assert!(!contended_at(0, 1), "it sleeps");
        assert!(contended_at(2, 2) && contended_at(3, 2));
        assert!(!contended_at(1, 2), "a core is free");
    }

    #[test]
    fn the_state_letter_is_read_past_a_command_name_with_parentheses() {
        assert_eq!(state_of(b"12 (tokio-rt-worker) R 1 2 3"), Some(b'R'));
        assert_eq!(state_of(b"12 (a) b) (c) S 1 2"), Some(b'S'));
        assert_eq!(state_of(b"12 (x)"), None);
        assert_eq!(state_of(b""), None);
    }

    #[test]
    fn a_spinning_thread_is_runnable_and_a_blocked_one_is_not() {
        let tid = || rustix::thread::gettid().as_raw_nonzero().get();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (spinner_tid, spinner_started) = mpsc::channel();
        let spinner = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                spinner_tid.send(tid()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let (sleeper_tid, sleeper_started) = mpsc::channel();
        let (wake, wait) = mpsc::channel::<()>();
        let sleeper = std::thread::spawn(move || {
            sleeper_tid.send(tid()).unwrap();
            let _ = wait.recv();
        });
        let spinning = open_stat(spinner_started.recv().unwrap()).unwrap();
        let blocked = open_stat(sleeper_started.recv().unwrap()).unwrap();
        // Until the sleeper has blocked, it may still be running.
        let mut tries = 0;
        while is_runnable(&blocked) && tries < 1000 {
            std::thread::sleep(Duration::from_millis(1));
            tries += 1;
        }
        assert!(
            !is_runnable(&blocked),
            "a thread blocked on a channel sleeps"
        );
        // Read again and again from the same open file: each read is fresh.
        for _ in 0..3 {
            assert!(is_runnable(&spinning), "a spinning thread runs or waits to");
            assert!(!is_runnable(&blocked));
        }
        stop.store(true, Ordering::Relaxed);
        drop(wake);
        spinner.join().unwrap();
        sleeper.join().unwrap();
    }

    #[test]
    fn steps_outside_the_nice_range_are_refused() {
        assert!(valid_step(0) && valid_step(10) && valid_step(19));
        assert!(!valid_step(-1) && !valid_step(20));
    }
}
