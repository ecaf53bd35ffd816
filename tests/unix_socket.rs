#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! `serve --listen unix:/path` as a real process, driven over a real Unix socket
//! with raw HTTP/1.1: the socket file's mode, a decision through it, a second server
//! refused while the first listens, a stale file replaced, and the file removed on
//! shutdown.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::repo_root;

fn spawn(socket: &Path, dir: &Path) -> Child {
    let root = repo_root();
    Command::new(env!("CARGO_BIN_EXE_elevate"))
        .current_dir(dir)
        .arg("serve")
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .arg("--policies")
        .arg(root.join("policies"))
        .arg("--schema")
        .arg(root.join("schema/elevate.cedarschema"))
        .arg("--entities")
        .arg(root.join("deploy/local/entities.json"))
        .arg("--grants")
        .arg(root.join("deploy/local/grants.json"))
        .arg("--routes")
        .arg(root.join("deploy/local/routes.toml"))
        .arg("--client-ip-header")
        .arg("X-Real-IP")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One request over the socket; the whole response as text.
fn request(socket: &Path, head: &str) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("{head}\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn wait_until_ready(socket: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if UnixStream::connect(socket).is_ok()
            && request(socket, "GET /readyz HTTP/1.1").starts_with("HTTP/1.1 200")
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("elevate exited with {status}:\n{err}");
        }
        assert!(Instant::now() < deadline, "elevate did not get ready");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap()
}

#[test]
fn serves_over_a_unix_socket_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    // A stale socket file, as a killed server leaves it: replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let mut child = spawn(&socket, dir.path());
    wait_until_ready(&socket, &mut child);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let allowed = request(
        &socket,
        "GET /v1/ext-authz/api/workspaces/ws-1/projects/checkout HTTP/1.1\r\n\
         X-Auth-Principal: alice\r\nX-Real-IP: 192.0.2.1",
    );
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(
        allowed
            .to_ascii_lowercase()
            .contains("x-elevate-principal: user::\"alice\""),
        "{allowed}"
    );
    let denied = request(
        &socket,
        "DELETE /v1/ext-authz/api/workspaces/ws-1/projects/checkout HTTP/1.1\r\n\
         X-Auth-Principal: alice\r\nX-Real-IP: 192.0.2.1",
    );
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");

    // A second server on the same path: refused, and the first keeps its socket.
    let mut second = spawn(&socket, dir.path());
    let status = second.wait().unwrap();
    assert!(!status.success());
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("in use"), "{err}");
    assert!(request(&socket, "GET /healthz HTTP/1.1").starts_with("HTTP/1.1 200"));

    assert!(terminate(&mut child).success());
    assert!(!socket.exists(), "the socket file outlived the server");
}
