//! `elevate keygen`: an Ed25519 key pair for signing the grant feed.
//!
//! Writes `DIR/NAME.key` (PKCS#8 PEM, mode 0600: the workflow's `--feed-signing-key`)
//! and `DIR/NAME.pub` (SubjectPublicKeyInfo PEM: the sidecars' `--feed-public-key`),
//! and prints the key id on stdout, so a script can keep it. Existing files are never
//! overwritten: replacing a signing key is a rotation, done on purpose.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{EXIT_FAILURE, EXIT_INVALID, EXIT_OK};
use crate::signing::FeedSigner;

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write the key files to (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// File name stem: NAME.key and NAME.pub
    #[arg(long, default_value = "feed")]
    pub name: String,
}

pub fn run(args: &KeygenArgs) -> u8 {
    let name = args.name.as_str();
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        eprintln!("error: `--name {name}` must be a plain file name stem like `feed`");
        return EXIT_INVALID;
    }
    match generate(&args.out, name) {
        Ok((id, private, public)) => {
            eprintln!(
                "wrote {} (private, keep it on the workflow) and {} (public, for sidecars)",
                private.display(),
                public.display()
            );
            super::print(&format!("{id}\n"));
            EXIT_OK
        }
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_FAILURE
        }
    }
}

fn generate(dir: &Path, name: &str) -> Result<(String, PathBuf, PathBuf), String> {
    let key = FeedSigner::generate().map_err(|e| e.to_string())?;
    let private_pem = key.private_pem().map_err(|e| e.to_string())?;
    let public_pem = key.public_pem().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    for path in [&private, &public] {
        if path.exists() {
            return Err(format!(
                "`{}` exists; not overwriting a key (pick another `--name` or directory)",
                path.display()
            ));
        }
    }
    write_new(&private, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public, public_pem.as_bytes(), 0o644) {
        // Half a key pair is worse than none: the next run would refuse to overwrite it.
        let _ = std::fs::remove_file(&private);
        return Err(e);
    }
    Ok((key.id().to_owned(), private, public))
}

/// Creates `path` with `mode` from the start, so the private key is never readable by
/// others, not even between the create and a chmod.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = options
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    result.map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::signing::TrustedKey;

    #[test]
    fn writes_a_private_key_only_its_owner_reads_and_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys");
        let (id, private, public) = generate(&out, "feed").unwrap();
        assert_eq!(private, out.join("feed.key"));
        let signer = FeedSigner::load(&private).unwrap();
        assert_eq!(signer.id(), id);
        assert_eq!(TrustedKey::load(&public).unwrap().id(), id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = generate(&out, "feed").unwrap_err();
        assert!(err.contains("not overwriting"), "{err}");
        assert_eq!(FeedSigner::load(&private).unwrap().id(), id, "untouched");
    }
}
