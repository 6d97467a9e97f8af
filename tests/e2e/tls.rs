//! TLS and mTLS between the real binaries, with a CA and certificates
//! made here: the daemon runs jobs over https, the admin CLI works, an
//! untrusted or missing certificate is refused clearly, bad flags exit 64.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::cli::{run, stderr, stdout};
use crate::common::TIMEOUT;
use crate::common::procs::{self, Proc};

/// A CA, a server certificate for localhost and 127.0.0.1, and a client
/// certificate, all as PEM files in `dir`.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        let leaf = |name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose| {
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(sans).unwrap();
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        leaf(
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        leaf("client", &["d1"], ExtendedKeyUsagePurpose::ClientAuth);
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_string()
    }

    fn server_flags(&self) -> Vec<String> {
        let (cert, key) = (self.path("server.crt"), self.path("server.key"));
        vec!["--tls-cert".into(), cert, "--tls-key".into(), key]
    }

    fn client_flags(&self) -> Vec<String> {
        let (cert, key) = (self.path("client.crt"), self.path("client.key"));
        vec![
            "--tls-client-cert".into(),
            cert,
            "--tls-client-key".into(),
            key,
        ]
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// An admin command against `url` with `flags`; returns its stdout,
/// panicking with its stderr unless it succeeded.
async fn admin(url: &str, token: &str, args: &[&str], flags: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--url", url]);
    all.extend(flags);
    let out = run(&all, &[("PROVISIONERD_TOKEN", token)]).await;
    assert_eq!(out.status.code(), Some(0), "{all:?}: {}", stderr(&out));
    stdout(&out)
}

/// Serves TLS (`mutual`: client certificates required) and creates a key.
async fn tls_stack(root: &Path, pki: &Pki, mutual: bool) -> (Proc, String, String, String) {
    let mut flags = pki.server_flags();
    if mutual {
        flags.extend(["--tls-client-ca".into(), pki.path("ca.crt")]);
    }
    let (serve, url, token) =
        procs::serve_with(&root.join("data"), "127.0.0.1:0", "60s", &strs(&flags)).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let mut client = vec!["--tls-ca".to_string(), pki.path("ca.crt")];
    if mutual {
        client.extend(pki.client_flags());
    }
    let key = admin(&url, &token, &["keys", "create", "k"], &strs(&client)).await;
    (serve, url, token, key.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_runs_jobs_and_the_cli_works_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let (serve, url, token, key) = tls_stack(tmp.path(), &pki, false).await;
    assert!(
        serve.log_text().contains("tls=\"on\""),
        "{}",
        serve.log_text()
    );
    let ca = pki.path("ca.crt");
    let d = procs::start(&url, &key, "d1", &tmp.path().join("c1"), &["--tls-ca", &ca]);
    let dir = crate::template(tmp.path(), "quick", crate::QUICK);
    let tls = ["--tls-ca", ca.as_str()];
    let push = [
        "templates",
        "push",
        "quick",
        "--dir",
        dir.to_str().unwrap(),
        "--wait",
    ];
    admin(&url, &token, &push, &tls).await;
    let create = [
        "workspaces",
        "create",
        "w1",
        "--template",
        "quick",
        "--wait",
    ];
    let out = admin(&url, &token, &create, &tls).await;
    assert!(out.contains("built w1"), "{out}");
    let log = d.log_text();
    assert!(log.contains("connected to coordinator"), "{log}");
    assert!(!log.contains("unencrypted"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untrusted_coordinator_certificate_is_refused_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let (_serve, url, token, key) = tls_stack(tmp.path(), &pki, false).await;
    // No --tls-ca: the system's roots, which do not hold this CA.
    let mut d = procs::start(&url, &key, "d1", &tmp.path().join("c1"), &[]);
    assert_eq!(d.exit_code(TIMEOUT).await, 77, "{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert!(log.contains("pass --tls-ca"), "{log}");
    let out = run(
        &["daemons", "list", "--url", &url],
        &[("PROVISIONERD_TOKEN", &token)],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid peer certificate"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let (serve, url, token, key) = tls_stack(tmp.path(), &pki, true).await;
    assert!(
        serve.log_text().contains("tls=\"mutual"),
        "{}",
        serve.log_text()
    );
    let ca = pki.path("ca.crt");

    let mut bare = procs::start(
        &url,
        &key,
        "bare",
        &tmp.path().join("c0"),
        &["--tls-ca", &ca],
    );
    // Refused per request with a status that says what to fix, not by a
    // handshake alert that may be lost in the race with the close.
    assert_eq!(bare.exit_code(TIMEOUT).await, 77, "{}", bare.log_text());
    let log = bare.log_text();
    assert!(log.contains("client certificate required"), "{log}");
    assert!(log.contains("--tls-client-cert"), "{log}");
    let out = run(
        &["daemons", "list", "--url", &url, "--tls-ca", &ca],
        &[("PROVISIONERD_TOKEN", &token)],
    )
    .await;
    assert_ne!(
        out.status.code(),
        Some(0),
        "no client cert, yet: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("client certificate required"),
        "{}",
        stderr(&out)
    );
    let with_cert = ["--tls-ca".to_string(), ca.clone()]
        .into_iter()
        .chain(pki.client_flags())
        .collect::<Vec<_>>();
    let listed = admin(&url, &token, &["daemons", "list"], &strs(&with_cert)).await;
    assert!(!listed.contains("bare"), "{listed}");

    let mut flags = vec!["--tls-ca".to_string(), ca.clone()];
    flags.extend(pki.client_flags());
    let _d = procs::start(&url, &key, "d1", &tmp.path().join("c1"), &strs(&flags));
    let dir = crate::template(tmp.path(), "quick", crate::QUICK);
    let push = [
        "templates",
        "push",
        "quick",
        "--dir",
        dir.to_str().unwrap(),
        "--wait",
    ];
    let out = admin(&url, &token, &push, &strs(&flags)).await;
    assert!(out.contains("terraform"), "the import ran on d1: {out}");
}

#[tokio::test]
async fn bad_tls_flags_exit_64_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    let (cert, key, ca) = (
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt"),
    );
    let missing = pki.path("missing.pem");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["serve", "--data-dir", data, "--tls-cert", &cert],
            "--tls-cert: needs --tls-key",
        ),
        (
            vec![
                "serve",
                "--data-dir",
                data,
                "--tls-cert",
                &key,
                "--tls-key",
                &key,
            ],
            "no PEM certificate",
        ),
        (
            vec![
                "serve",
                "--data-dir",
                data,
                "--tls-cert",
                &cert,
                "--tls-key",
                &missing,
            ],
            "missing.pem: cannot read",
        ),
        (
            vec!["serve", "--data-dir", data, "--listen", "0.0.0.0:0"],
            "--insecure",
        ),
        (
            vec![
                "start",
                "--url",
                "http://127.0.0.1:1",
                "--key",
                "k",
                "--tls-ca",
                &ca,
            ],
            "--tls-ca: given with the plain URL",
        ),
        (
            vec![
                "start",
                "--url",
                "https://127.0.0.1:1",
                "--key",
                "k",
                "--tls-client-cert",
                &cert,
            ],
            "--tls-client-cert: needs --tls-client-key",
        ),
        (
            vec![
                "keys",
                "list",
                "--url",
                "http://127.0.0.1:1",
                "--token",
                "t",
                "--tls-ca",
                &ca,
            ],
            "--tls-ca: given with the plain URL",
        ),
        (
            vec![
                "keys",
                "list",
                "--url",
                "https://127.0.0.1:1",
                "--token",
                "t",
                "--tls-ca",
                &key,
            ],
            "--tls-ca",
        ),
    ];
    for (args, want) in cases {
        let out = run(&args, &[]).await;
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

/// A TCP connection that never starts its TLS handshake is closed at
/// `--handshake-timeout`, as on a plain coordinator.
#[tokio::test]
async fn a_connection_that_never_starts_tls_is_closed_at_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let mut flags = pki.server_flags();
    flags.extend(["--handshake-timeout".into(), "1s".into()]);
    let (serve, url, _token) = procs::serve_with(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        "60s",
        &strs(&flags),
    )
    .await;
    let addr = url.trim_start_matches("https://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let closed = async { while let Ok(1..) = s.read(&mut buf).await {} };
    tokio::time::timeout(std::time::Duration::from_secs(15), closed)
        .await
        .unwrap_or_else(|_| panic!("never closed:\n{}", serve.log_text()));
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(8),
        "closed after {took:?}"
    );
}
