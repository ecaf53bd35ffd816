//! Reading a big input file (the grant feed, the entities) for a reload: one open, one
//! read and one hash per attempt, and no read at all when the file's metadata shows it
//! is the one read last time.
//!
//! One open matters: a path replaced by rename between two opens (hash, then read)
//! gave the hash of one file and the content of another, and under frequent
//! replacement most reloads then found "no change" and ended without a swap.

use std::io::{Read, Seek};
use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// How long after its last change a file's metadata may still miss a change: file
/// times have the kernel's coarse granularity (a tick, a second on some filesystems),
/// so a same-size write within that window can leave them as they were.
const RACY: Duration = Duration::from_secs(2);

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    #[cfg(unix)]
    fn of(meta: &std::fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    fn of(_meta: &std::fs::Metadata) -> Option<Self> {
        None
    }

    /// Whether a change after `at` is sure to change the identity: the file's last
    /// change lies at least [`RACY`] before `at` (and not after it, as with a clock
    /// that stepped back).
    fn settled_at(&self, at: SystemTime) -> bool {
        let Ok(at) = at.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let Some(horizon) = at.checked_sub(RACY) else {
            return false;
        };
        let before = |(s, ns): (i64, i64)| {
            u64::try_from(s)
                .is_ok_and(|s| u32::try_from(ns).is_ok_and(|ns| Duration::new(s, ns) <= horizon))
        };
        before(self.mtime) && before(self.ctime)
    }
}

/// The file an input was last read from, and the hash of what was read.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    identity: Identity,
    /// The identity was settled when the file was read, so a later change of the file
    /// changes its identity.
    settled: bool,
    hash: String,
}

impl Seen {
    /// The record of a file with `identity` (if it has one) whose content, read at
    /// `at`, hashes to `hash`.
    fn read(identity: Option<Identity>, at: SystemTime, hash: &str) -> Option<Self> {
        identity.map(|identity| Self {
            identity,
            settled: identity.settled_at(at),
            hash: hash.to_owned(),
        })
    }
}

/// A file as a reload found it.
#[derive(Debug)]
pub(super) enum Content {
    /// Its hash is the one the caller knows; nothing is held.
    Unchanged(String),
    /// New content and its hash.
    Changed(Vec<u8>, String),
}

/// Reads `path` unless it is the version `seen` recorded and that version hashes to
/// `known`. The hash covers the path too when `with_path` (as `hash_files` does).
/// `seen` is updated to what was read.
///
/// * The recorded identity, settled, with the known hash: nothing is read.
/// * The recorded identity, not settled: most likely unchanged, so the file is hashed
///   as it streams by and nothing is held unless it did change (glibc keeps the space
///   of a freed copy of a big file, so reading it whole on every rescan grows RSS).
/// * Another identity (a new file, or nothing recorded): read whole and hashed once.
pub(super) fn read_changed(
    path: &Path,
    with_path: bool,
    known: Option<&str>,
    seen: &mut Option<Seen>,
) -> std::io::Result<Content> {
    let mut file = std::fs::File::open(path)?;
    // Metadata before content: a write during the read changes the file times after
    // this, so the next reload sees a new identity and reads again.
    let meta = file.metadata()?;
    let checked_at = SystemTime::now();
    let identity = Identity::of(&meta);
    let recorded = seen
        .as_ref()
        .filter(|s| identity.is_some_and(|id| s.identity == id));
    let path_in_hash = with_path.then_some(path);
    if let (Some(s), Some(known)) = (recorded, known) {
        if s.settled && s.hash == known {
            return Ok(Content::Unchanged(s.hash.clone()));
        }
        let hash = stream(&mut file, path_in_hash, None)?;
        if hash == known {
            *seen = Seen::read(identity, checked_at, &hash);
            return Ok(Content::Unchanged(hash));
        }
        // Changed in place after all: read it again from the start.
        file.seek(std::io::SeekFrom::Start(0))?;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    let hash = stream(&mut file, path_in_hash, Some(&mut bytes))?;
    *seen = Seen::read(identity, checked_at, &hash);
    if known == Some(hash.as_str()) {
        Ok(Content::Unchanged(hash))
    } else {
        Ok(Content::Changed(bytes, hash))
    }
}

/// What an input file looked like just after it was loaded with content hash `hash`
/// (at startup): not settled, so the first reload still hashes it, as it streams by.
/// Had the file been replaced in between, that hash tells.
pub(super) fn seen_after_load(path: &Path, hash: &str) -> Option<Seen> {
    let identity = Identity::of(&std::fs::metadata(path).ok()?)?;
    Some(Seen {
        identity,
        settled: false,
        hash: hash.to_owned(),
    })
}

/// Hashes the rest of `file` a block at a time, appending it to `keep` when given; a
/// reload under load steps aside between blocks (one read of tens of megabytes holds
/// the core for milliseconds).
fn stream(
    file: &mut std::fs::File,
    path: Option<&Path>,
    mut keep: Option<&mut Vec<u8>>,
) -> std::io::Result<String> {
    let mut hasher = Hasher::new(path);
    let mut block = Vec::new();
    loop {
        let buf = match keep.as_deref_mut() {
            Some(bytes) => bytes,
            None => {
                block.clear();
                &mut block
            }
        };
        let from = buf.len();
        let n = (&mut *file).take(BLOCK).read_to_end(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(from..).unwrap_or_default());
        crate::priority::pace();
    }
    Ok(hasher.finish())
}

/// How much of a file is read and hashed between two [`crate::priority::pace`] calls:
/// about 0.1 ms of work.
const BLOCK: u64 = 64 * 1024;

/// The revision hash of `bytes` (of the file at `path`, when given): the first eight
/// bytes of SHA-256, in hex.
pub(super) fn digest(path: Option<&Path>, bytes: &[u8]) -> String {
    let mut hasher = Hasher::new(path);
    hasher.update(bytes);
    hasher.finish()
}

/// [`digest`] over content that arrives in pieces. A file's content is framed by its
/// path: `path`, 0, content, 0, so the digest of a set of files (`hash_files`) and of
/// one file streamed from disk are the same thing.
pub(super) struct Hasher {
    sha: Sha256,
    /// A file is open: its closing 0 is still to come.
    in_file: bool,
}

impl Hasher {
    /// A digest of bare bytes, or of the file at `path` when given.
    pub(super) fn new(path: Option<&Path>) -> Self {
        let mut hasher = Self {
            sha: Sha256::new(),
            in_file: false,
        };
        if let Some(path) = path {
            hasher.open_file(path);
        }
        hasher
    }

    /// Starts the content of the file at `path` (ending the one before, if any).
    pub(super) fn open_file(&mut self, path: &Path) {
        self.close_file();
        self.sha.update(path.as_os_str().as_encoded_bytes());
        self.sha.update([0]);
        self.in_file = true;
    }

    fn close_file(&mut self) {
        if std::mem::take(&mut self.in_file) {
            self.sha.update([0]);
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
    }

    pub(super) fn finish(mut self) -> String {
        self.close_file();
        self.sha
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn identity(mtime: i64, ctime: i64) -> Identity {
        Identity {
            dev: 1,
            ino: 2,
            len: 3,
            mtime: (mtime, 5),
            ctime: (ctime, 7),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn an_identity_is_settled_only_well_after_both_file_times() {
        let t = 1_000_000;
        assert!(identity(t, t).settled_at(at(1_000_003)));
        // Within the racy window of either time.
        assert!(!identity(t, t).settled_at(at(1_000_001)));
        assert!(!identity(t - 10, t).settled_at(at(1_000_001)));
        assert!(!identity(t, t - 10).settled_at(at(1_000_001)));
        // File times after the clock (it stepped back) or before 1970.
        assert!(!identity(t + 60, t).settled_at(at(1_000_003)));
        assert!(!identity(-5, -5).settled_at(at(1_000_003)));
        assert!(!identity(0, 0).settled_at(at(1)));
    }

    #[test]
    fn the_hash_is_of_the_content_read_with_or_without_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        let text: String = (0..70_000).map(|i| format!("{i},")).collect();
        std::fs::write(&path, &text).unwrap();
        let mut seen = None;
        let Content::Changed(bytes, hash) = read_changed(&path, false, None, &mut seen).unwrap()
        else {
            panic!("nothing was known, so the content is new");
        };
        assert_eq!(bytes, text.as_bytes());
        assert_eq!(hash, digest(None, text.as_bytes()));
        assert_eq!(seen.as_ref().unwrap().hash, hash);
        let mut seen = None;
        let with_path = read_changed(&path, true, None, &mut seen).unwrap();
        let expected = super::super::hash_files(&[crate::policy::SourceFile {
            path: path.clone(),
            text,
        }]);
        assert!(matches!(with_path, Content::Changed(_, h) if h == expected));
        assert!(read_changed(&dir.path().join("missing"), false, None, &mut None).is_err());
    }

    #[test]
    fn each_file_is_framed_by_its_path_and_a_zero() {
        let (a, b) = (Path::new("/x/a"), Path::new("/x/b"));
        let mut hasher = Hasher::new(Some(a));
        hasher.update(b"one");
        hasher.open_file(b);
        hasher.update(b"two");
        assert_eq!(hasher.finish(), digest(None, b"/x/a\0one\0/x/b\0two\0"));
        assert_eq!(digest(Some(a), b"one"), digest(None, b"/x/a\0one\0"));
    }

    /// `dir/g.json` written with `content` and read the first time: its path, the
    /// hash of what was read, and the record of it.
    fn first_read(dir: &Path, content: &str) -> (std::path::PathBuf, String, Option<Seen>) {
        let path = dir.join("g.json");
        std::fs::write(&path, content).unwrap();
        let mut seen = None;
        let Content::Changed(bytes, hash) = read_changed(&path, false, None, &mut seen).unwrap()
        else {
            panic!("nothing was known, so the content is new");
        };
        assert_eq!(bytes, content.as_bytes());
        (path, hash, seen)
    }

    #[test]
    fn a_rewrite_in_place_is_read_even_with_the_same_size_and_an_old_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let (path, first, mut seen) = first_read(dir.path(), "aaaa");
        // Known and recorded: the same file again is unchanged.
        let again = read_changed(&path, false, Some(&first), &mut seen).unwrap();
        assert!(matches!(&again, Content::Unchanged(h) if *h == first));
        // Same size, and the modification time put back: the change time is recent,
        // so the recorded identity is not trusted and the content is read.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, "bbbb").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let Content::Changed(bytes, _) =
            read_changed(&path, false, Some(&first), &mut seen).unwrap()
        else {
            panic!("the rewrite must be seen");
        };
        assert_eq!(bytes, b"bbbb");
    }

    #[test]
    fn after_startup_an_unchanged_file_is_unchanged_and_a_replaced_one_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        std::fs::write(&path, "loaded").unwrap();
        let loaded = digest(None, b"loaded");
        let mut seen = seen_after_load(&path, &loaded);
        assert!(!seen.as_ref().unwrap().settled);
        let answer = read_changed(&path, false, Some(&loaded), &mut seen).unwrap();
        assert!(matches!(answer, Content::Unchanged(h) if h == loaded));
        // Replaced between the load and the record: the record's hash is the loaded
        // content's, and the stream shows the difference.
        std::fs::write(&path, "other!").unwrap();
        let mut seen = seen_after_load(&path, &loaded);
        let answer = read_changed(&path, false, Some(&loaded), &mut seen).unwrap();
        assert!(matches!(answer, Content::Changed(b, _) if b == b"other!"));
        assert!(seen_after_load(&dir.path().join("missing"), &loaded).is_none());
    }

    #[test]
    fn a_settled_file_recorded_as_known_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let (path, hash, mut seen) = first_read(dir.path(), "content");
        // As if it had been read long after its last change.
        seen.as_mut().unwrap().settled = true;
        // A different recorded hash proves the answer came from the record, not from
        // the file: the record is what `read_changed` trusts for a settled identity.
        seen.as_mut().unwrap().hash = "recorded".into();
        let answer = read_changed(&path, false, Some("recorded"), &mut seen).unwrap();
        assert!(matches!(answer, Content::Unchanged(h) if h == "recorded"));
        // Another known hash than the record's: hashed as it streams by, found to
        // differ, then read from the start.
        let answer = read_changed(&path, false, Some("other"), &mut seen).unwrap();
        assert!(matches!(answer, Content::Changed(b, h) if b == b"content" && h == hash));
        // A new file at the path (a rename) is a new identity: read, though the
        // record still claims the known hash.
        seen.as_mut().unwrap().settled = true;
        seen.as_mut().unwrap().hash = "recorded".into();
        std::fs::write(dir.path().join("next"), "renamed").unwrap();
        std::fs::rename(dir.path().join("next"), &path).unwrap();
        let answer = read_changed(&path, false, Some("recorded"), &mut seen).unwrap();
        assert!(
            matches!(answer, Content::Changed(b, h) if b == b"renamed" && h == digest(None, b"renamed"))
        );
    }
}
