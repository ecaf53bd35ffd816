//! `elevate fmt`: format Cedar policy files with Cedar's own formatter
//! (`cedar-policy-formatter`, the one behind `cedar format`), in place or as a check.
//!
//! The formatter checks that the policies it prints parse to the same policies, ids
//! and annotations; comments are not policies, so this module checks them itself: a
//! file whose comments would not all survive is left alone, with an error. A file is
//! rewritten only when it changes, atomically (a temporary file beside it, renamed
//! over it), so a watching sidecar reads the old policies or the new ones, never half.
//!
//! Exit codes: 0 done (or nothing to change), 2 `--check` found files that would
//! change, 3 a file is not valid Cedar or a path holds no policy file, 1 any other
//! failure (a file cannot be written, or formatting would lose a comment).

use std::path::{Path, PathBuf};

use clap::Args;

use super::{EXIT_DENY, EXIT_FAILURE, EXIT_INVALID, EXIT_OK, print};
use crate::config;
use crate::policy::{self, SourceFile};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 formatted or already formatted, 2 --check: some files would change, \
                  3 a file is not valid Cedar, 1 other failure (cannot write, or a comment would be lost)."
)]
pub struct FmtArgs {
    /// List the files that would change and exit 2 if any; write nothing
    #[arg(long)]
    pub check: bool,
    /// `.cedar` files, or directories of them [default: policies]
    pub paths: Vec<PathBuf>,
}

/// Why a file cannot be formatted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("cannot format: {0}")]
    Invalid(String),
    #[error("not formatting: the formatter would drop the comment `{0}`")]
    DropsComment(String),
}

/// `text` as Cedar's formatter prints it, with every comment kept.
///
/// # Errors
/// The text is not valid Cedar, or a comment would not survive formatting.
pub fn format_policies(text: &str) -> Result<String, FormatError> {
    let config = cedar_policy_formatter::Config::default();
    let formatted = cedar_policy_formatter::policies_str_to_pretty(text, &config).map_err(|e| {
        let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
        FormatError::Invalid(chain.join(": ").replace('\n', " "))
    })?;
    check_comments_kept(text, &formatted)?;
    Ok(formatted)
}

/// Every comment of `original` is in `formatted`, as many times: the formatter may
/// move a comment, never lose one.
fn check_comments_kept(original: &str, formatted: &str) -> Result<(), FormatError> {
    let mut kept = comments(formatted);
    for comment in comments(original) {
        match kept.iter().position(|c| *c == comment) {
            Some(i) => {
                kept.swap_remove(i);
            }
            None => return Err(FormatError::DropsComment(comment.to_owned())),
        }
    }
    Ok(())
}

/// Every `//` comment of Cedar source, trimmed, in order. Strings are skipped, so a
/// `//` inside an annotation or a literal (`"https://..."`) is not a comment.
fn comments(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '/' && chars.peek().is_some_and(|&(_, next)| next == '/') {
            let rest = text.get(i..).unwrap_or_default();
            let line = rest.split('\n').next().unwrap_or_default();
            found.push(line.trim_end());
            while chars.peek().is_some_and(|&(_, next)| next != '\n') {
                chars.next();
            }
        }
    }
    found
}

/// Replaces `path` with `text` so that a reader sees the old file or the new one:
/// a temporary file beside it, fsynced, renamed over it. The temporary name starts
/// with `.` and does not end in `.cedar`, so a sidecar watching the directory
/// ignores it. A symlink (a ConfigMap's, a checkout's) stays a symlink: its target
/// is replaced. The file keeps its permissions.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let target = std::fs::canonicalize(path)?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map_or_else(|| "policies".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.fmt-{}", std::process::id()));
    let permissions = std::fs::metadata(&target)?.permissions();
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.set_permissions(permissions)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

pub fn run(args: &FmtArgs) -> u8 {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(config::DEFAULT_POLICIES)]
    } else {
        args.paths.clone()
    };
    let mut files: Vec<SourceFile> = Vec::new();
    let mut invalid = false;
    for path in &paths {
        match policy::load_policy_files(path) {
            Ok(found) => files.extend(found),
            Err(err) => {
                eprintln!("error: {err}");
                invalid = true;
            }
        }
    }
    let mut failed = false;
    let mut changed = 0usize;
    let mut listing = String::new();
    for file in &files {
        let formatted = match format_policies(&file.text) {
            Ok(f) => f,
            Err(err) => {
                eprintln!("error: `{}`: {err}", file.path.display());
                match err {
                    FormatError::Invalid(_) => invalid = true,
                    FormatError::DropsComment(_) => failed = true,
                }
                continue;
            }
        };
        if formatted == file.text {
            continue;
        }
        changed += 1;
        if args.check {
            listing.push_str(&format!("{}\n", file.path.display()));
        } else if let Err(err) = write_atomic(&file.path, &formatted) {
            eprintln!("error: cannot write `{}`: {err}", file.path.display());
            failed = true;
        } else {
            listing.push_str(&format!("formatted {}\n", file.path.display()));
        }
    }
    print(&listing);
    let verb = if args.check {
        "would change"
    } else {
        "changed"
    };
    eprintln!("{changed} of {} policy files {verb}", files.len());
    if invalid {
        EXIT_INVALID
    } else if failed {
        EXIT_FAILURE
    } else if args.check && changed > 0 {
        EXIT_DENY
    } else {
        EXIT_OK
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    #[test]
    fn comments_skip_strings_and_keep_order() {
        let text = "// one\n@id(\"a//b\")\npermit (principal, action, resource) // two\nwhen { \"x\\\"//y\" == \"\" };\n//\n";
        assert_eq!(comments(text), vec!["// one", "// two", "//"]);
    }

    #[test]
    fn formatting_keeps_comments_and_annotations() {
        let text = "// lead\n@id(\"p\")   @max_duration(\"PT1H\")\npermit(principal,action,resource)   // tail\nwhen {   principal has suspended // inner\n};\n// end\n";
        let formatted = format_policies(text).unwrap();
        for needle in [
            "// lead",
            "// tail",
            "// inner",
            "// end",
            "@id(\"p\")",
            "@max_duration(\"PT1H\")",
        ] {
            assert!(formatted.contains(needle), "{needle} lost:\n{formatted}");
        }
        assert_eq!(format_policies(&formatted).unwrap(), formatted);
    }

    #[test]
    fn a_lost_comment_is_refused() {
        let original = "// keep me\npermit (principal, action, resource); // and me\n";
        let lost = "permit (principal, action, resource); // and me\n";
        assert_eq!(
            check_comments_kept(original, lost),
            Err(FormatError::DropsComment("// keep me".into()))
        );
        // A comment that appears twice must survive twice.
        let twice = "// x\n// x\npermit (principal, action, resource);\n";
        assert!(
            check_comments_kept(twice, "// x\npermit (principal, action, resource);\n").is_err()
        );
        assert!(check_comments_kept(original, original).is_ok());
    }

    #[test]
    fn comments_in_awkward_places_survive() {
        let text = "permit(principal == // eq\n User::\"a\", action in [Action::\"r\", // list\n Action::\"w\"], resource)\nwhen { true } // a\nunless // b\n{ false }; // semi\n";
        let formatted = format_policies(text).unwrap();
        assert_eq!(comments(&formatted), comments(text));
    }

    #[test]
    fn invalid_cedar_is_reported() {
        assert!(matches!(
            format_policies("permit (principal, action"),
            Err(FormatError::Invalid(_))
        ));
    }
}
