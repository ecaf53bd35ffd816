#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::*;
use crate::config::ReloadConfig;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf for `127.0.0.1`, signed by `ca`: (certificate PEM, key PEM).
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, name: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn server_config(dir: &Path, client_ca: bool) -> ServerTlsConfig {
    let authority = ca("server ca");
    let (cert, key) = leaf(&authority, "server");
    ServerTlsConfig {
        cert: write(dir, "tls.crt", &cert),
        key: write(dir, "tls.key", &key),
        client_ca: client_ca.then(|| write(dir, "client-ca.crt", &authority.pem())),
        reload: ReloadConfig::default(),
    }
}

fn reload_count(registry: &Registry, outcome: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "elevate_tls_reload_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| m.get_label().iter().any(|l| l.value() == outcome))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[test]
fn a_pair_loads_and_a_bad_one_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path(), true);
    let tls = ServerTls::load(config.clone(), &Registry::new()).unwrap();
    assert!(tls.has_client_ca());
    assert_eq!(
        tls.current().alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );

    // A key of another certificate.
    let other = leaf(&ca("other"), "other");
    let mismatched = ServerTlsConfig {
        key: write(dir.path(), "other.key", &other.1),
        ..config.clone()
    };
    let err = ServerTls::load(mismatched, &Registry::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other.key") && err.contains("tls.crt"),
        "{err}"
    );

    let cases = [
        ("cert", "not pem at all\n", "holds no PEM certificate"),
        ("key", "not pem at all\n", "holds no PEM private key"),
        ("client_ca", "not pem at all\n", "holds no PEM certificate"),
    ];
    for (which, text, needle) in cases {
        let path = write(dir.path(), &format!("bad-{which}.pem"), text);
        let mut bad = config.clone();
        match which {
            "cert" => bad.cert = path.clone(),
            "key" => bad.key = path.clone(),
            _ => bad.client_ca = Some(path.clone()),
        }
        let err = ServerTls::load(bad, &Registry::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{which}: {err}");
        assert!(err.contains(&*path.to_string_lossy()), "{which}: {err}");
    }
    let missing = ServerTlsConfig {
        cert: dir.path().join("absent.crt"),
        ..config
    };
    let err = ServerTls::load(missing, &Registry::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot read `") && err.contains("absent.crt"),
        "{err}"
    );
}

#[test]
fn reload_swaps_a_good_pair_keeps_the_old_on_a_bad_one_and_counts_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path(), false);
    let registry = Registry::new();
    let tls = ServerTls::load(config.clone(), &registry).unwrap();
    let first = tls.current();
    assert_eq!(
        tls.reload(),
        Reloaded::Unchanged,
        "same bytes: nothing to do"
    );
    assert!(Arc::ptr_eq(&first, &tls.current()));

    let (cert, key) = leaf(&ca("rotated ca"), "rotated");
    let cert_for_key = cert.clone();
    std::fs::write(&config.cert, &cert).unwrap();
    std::fs::write(&config.key, &key).unwrap();
    assert_eq!(tls.reload(), Reloaded::Changed);
    let second = tls.current();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(reload_count(&registry, "ok"), 1);

    // Half a rotation: a new certificate with the old key.
    let (cert, _) = leaf(&ca("third ca"), "third");
    std::fs::write(&config.cert, &cert).unwrap();
    assert_eq!(tls.reload(), Reloaded::Rejected);
    assert!(
        Arc::ptr_eq(&second, &tls.current()),
        "a bad pair replaced the good one"
    );
    std::fs::write(&config.cert, "garbage").unwrap();
    assert_eq!(tls.reload(), Reloaded::Rejected);
    std::fs::remove_file(&config.key).unwrap();
    assert_eq!(tls.reload(), Reloaded::Rejected);
    assert!(Arc::ptr_eq(&second, &tls.current()));
    assert_eq!(reload_count(&registry, "error"), 3);
    assert_eq!(reload_count(&registry, "ok"), 1);
    let status = tls.status().unwrap();
    assert_eq!((status.reloads, status.failures), (1, 3));
    let error = status.last_error.unwrap();
    assert!(
        error.contains("cannot read") && error.contains("tls.key"),
        "{error}"
    );
    assert!(status.last_attempt.unwrap() >= status.last_reload);

    std::fs::write(&config.key, &key).unwrap();
    std::fs::write(&config.cert, &cert_for_key).unwrap();
    // Back to the live files: nothing to swap, and the error is over.
    assert_eq!(tls.reload(), Reloaded::Unchanged);
    assert!(Arc::ptr_eq(&second, &tls.current()));
    let status = tls.status().unwrap();
    assert_eq!(status.last_error, None);
    assert_eq!(status.reloads, 1);
}

#[test]
fn the_feed_needs_a_verified_client_only_when_a_client_ca_is_set() {
    let cases = [
        (false, false, true),
        (false, true, true),
        (true, false, false),
        (true, true, true),
    ];
    for (client_ca, client_verified, may) in cases {
        let peer = TlsPeer {
            client_ca,
            client_verified,
        };
        assert_eq!(peer.may_read_feed(), may, "{peer:?}");
    }
    let state = PeerState::new(true);
    assert!(
        !state.peer().may_read_feed(),
        "before the handshake: refused"
    );
    state.verified();
    assert!(state.peer().may_read_feed());
}

#[test]
fn a_client_config_trusts_the_named_ca_and_checks_its_own_pair() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("feed ca");
    let ca_path = write(dir.path(), "ca.crt", &authority.pem());
    let (cert, key) = leaf(&authority, "sidecar");
    let cert = write(dir.path(), "client.crt", &cert);
    let key = write(dir.path(), "client.key", &key);
    let config = ClientTlsConfig {
        ca: Some(ca_path.clone()),
        identity: Some((cert.clone(), key.clone())),
    };
    let client = client_config(&config).unwrap();
    assert!(client.client_auth_cert_resolver.has_certs());
    let digest = client_files_digest(&config).unwrap();

    let (_, other_key) = leaf(&authority, "other");
    std::fs::write(&key, other_key).unwrap();
    assert_ne!(client_files_digest(&config).unwrap(), digest);
    let err = client_config(&config).unwrap_err().to_string();
    assert!(
        err.contains("client.crt") && err.contains("client.key"),
        "{err}"
    );

    let no_ca = ClientTlsConfig {
        ca: Some(dir.path().join("none.crt")),
        identity: None,
    };
    let err = client_config(&no_ca).unwrap_err().to_string();
    assert!(err.contains("none.crt"), "{err}");
}
