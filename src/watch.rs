//! Watching a few named files for change, as the route table, the JWT key set, the
//! TLS files and the token file need: their directories are watched (editors and
//! ConfigMaps replace files by rename or symlink swap), events only signal, a burst
//! is debounced, a timer rescans in case an event was lost, and the reload runs off
//! the async threads. The snapshot's reloader uses the same loop ([`spawn_dirs`]) with
//! its own directories (the policy directory recursively) and event filter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Calls `reload` after any of `files` changes (quiet for `debounce`, at most four
/// debounces after the first event) and every `rescan`, until `cancel`.
///
/// # Errors
/// The watcher cannot be created or a directory cannot be watched.
pub fn spawn(
    files: &[&Path],
    debounce: Duration,
    rescan: Duration,
    cancel: CancellationToken,
    reload: impl Fn() + Send + Sync + 'static,
) -> Result<JoinHandle<()>, notify::Error> {
    let names: Vec<std::ffi::OsString> = files
        .iter()
        .filter_map(|p| p.file_name().map(ToOwned::to_owned))
        .collect();
    // `..data` and friends: a ConfigMap swaps a symlinked directory, not the file.
    let concerns = move |path: &Path| {
        path.file_name().is_some_and(|n| {
            names.iter().any(|name| name == n) || n.to_string_lossy().starts_with("..")
        })
    };
    let mut dirs: Vec<(PathBuf, notify::RecursiveMode)> = files
        .iter()
        .map(|p| {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (dir, notify::RecursiveMode::NonRecursive)
        })
        .collect();
    dirs.sort_by(|a, b| a.0.cmp(&b.0));
    dirs.dedup();
    spawn_dirs(&dirs, concerns, debounce, rescan, cancel, reload)
}

/// The loop behind [`spawn`]: watches `dirs` (made absolute, so event paths compare
/// equal to what `concerns` expects), and calls `reload` after events on paths that
/// `concerns` accepts (debounced as in [`spawn`]) and every `rescan`, until `cancel`.
///
/// # Errors
/// The watcher cannot be created or a directory cannot be watched.
pub fn spawn_dirs(
    dirs: &[(PathBuf, notify::RecursiveMode)],
    concerns: impl Fn(&Path) -> bool + Send + 'static,
    debounce: Duration,
    rescan: Duration,
    cancel: CancellationToken,
    reload: impl Fn() + Send + Sync + 'static,
) -> Result<JoinHandle<()>, notify::Error> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !event.kind.is_access() && event.paths.iter().any(|p| concerns(p)) {
            // Full means a signal is already pending; one is enough.
            let _ = tx.try_send(());
        }
    })?;
    for (dir, mode) in dirs {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        watcher.watch(&dir, *mode)?;
    }
    // However busy the directory, a change goes live within this long.
    let max_wait = debounce * 4;
    let reload = Arc::new(reload);
    Ok(tokio::spawn(async move {
        // Dropping the watcher stops its thread, so it lives as long as this task.
        let _watcher = watcher;
        let mut rescan = tokio::time::interval(rescan);
        rescan.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(()) = rx.recv() => {
                    // Every further event restarts the debounce (a cert and its key
                    // are written one after the other), up to `max_wait`.
                    let deadline = tokio::time::Instant::now() + max_wait;
                    loop {
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(debounce) => break,
                            () = tokio::time::sleep_until(deadline) => break,
                            Some(()) = rx.recv() => {}
                        }
                    }
                }
                _ = rescan.tick() => {}
            }
            let reload = Arc::clone(&reload);
            let _ = tokio::task::spawn_blocking(move || reload()).await;
        }
    }))
}
