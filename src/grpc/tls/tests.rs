use super::*;

/// A self-signed certificate for localhost and its key, as PEM files.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn server_flags_are_checked_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "a");
    let (_, other_key) = self_signed(dir.path(), "b");
    assert!(ServerTls::load(None, None, None).unwrap().is_none());
    let tls = ServerTls::load(Some(&cert), Some(&key), Some(&cert))
        .unwrap()
        .unwrap();
    assert!(tls.mutual());
    assert!(!format!("{tls:?}").contains("PRIVATE KEY"), "{tls:?}");

    let err = |r: Result<Option<ServerTls>, TlsError>| r.unwrap_err().to_string();
    assert_eq!(
        err(ServerTls::load(Some(&cert), None, None)),
        "--tls-cert: needs --tls-key"
    );
    assert!(err(ServerTls::load(None, None, Some(&cert))).contains("--tls-client-ca: needs"));
    // The key where the certificate belongs, and the other way round.
    let e = err(ServerTls::load(Some(&key), Some(&key), None));
    assert!(
        e.starts_with("--tls-cert ") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = err(ServerTls::load(Some(&cert), Some(&cert), None));
    assert!(
        e.starts_with("--tls-key ") && e.contains("not a PEM private key"),
        "{e}"
    );
    let e = err(ServerTls::load(Some(&cert), Some(&other_key), None));
    assert!(e.starts_with("set up TLS for --tls-cert"), "{e}");
    let e = err(ServerTls::load(
        Some(&dir.path().join("nope")),
        Some(&key),
        None,
    ));
    assert!(e.contains("nope: cannot read"), "{e}");
}

#[test]
fn client_flags_need_an_https_url_and_go_in_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "a");
    let url = "https://localhost:7800";
    ClientTls::load(url, Some(&cert), Some(&cert), Some(&key)).unwrap();
    ClientTls::load("http://x:1", None, None, None).unwrap();
    let err = ClientTls::load("http://x:1", Some(&cert), None, None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("--tls-ca: given with the plain URL"),
        "{err}"
    );
    let err = ClientTls::load(url, None, Some(&cert), None).unwrap_err();
    assert_eq!(err.to_string(), "--tls-client-cert: needs --tls-client-key");
    let err = ClientTls::load(url, None, Some(&key), Some(&key)).unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

#[test]
fn loopback_hosts() {
    for quiet in ["127.0.0.1:7800", "localhost:1/x", "[::1]:7800", "127.1.2.3"] {
        assert!(is_loopback_host(quiet), "{quiet}");
    }
    for loud in [
        "10.0.0.1:7800",
        "coord:7800",
        "[2001:db8::1]:1",
        "localhost.evil:1",
    ] {
        assert!(!is_loopback_host(loud), "{loud}");
    }
}

#[test]
fn permanent_tls_failures_get_a_hint_and_others_none() {
    let untrusted = "transport error: invalid peer certificate: UnknownIssuer";
    assert!(refusal_hint(untrusted).unwrap().contains("--tls-ca"));
    let no_cert = "h2 protocol error: received fatal alert: CertificateRequired";
    assert!(refusal_hint(no_cert).unwrap().contains("--tls-client-cert"));
    assert_eq!(refusal_hint("transport error: connection refused"), None);
}
