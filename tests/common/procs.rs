//! The `provisionerd` binary as a child process: for what only a real
//! process shows — signals, exit codes, `kill -9`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::TIMEOUT;

/// A running `provisionerd` process; its stderr goes to `log`. Killed
/// (SIGKILL) if still running when dropped.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `provisionerd ARGS` with stderr to `log`.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], log: &Path) -> Proc {
        Self::spawn_program(env!("CARGO_BIN_EXE_provisionerd"), args, envs, log)
    }

    /// [`Proc::spawn`] of `program` (e.g. a wrapper that runs provisionerd).
    pub fn spawn_program(program: &str, args: &[&str], envs: &[(&str, &str)], log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("create process log");
        let child = Command::new(program)
            .args(args)
            // RUST_LOG=info unless the test sets its own.
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            // Tests read the text format; one that wants JSON passes --log-format.
            .env("PROVISIONERD_LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn provisionerd");
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().expect("process still running") as i32)
    }

    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig).expect("signal provisionerd");
    }

    /// `kill -9`, and reaps it.
    pub async fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = tokio::time::timeout(TIMEOUT, self.child.wait()).await;
    }

    /// Waits up to `timeout` for the exit code; panics with the log if the
    /// process does not exit.
    pub async fn exit_code(&mut self, timeout: Duration) -> i32 {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait provisionerd").code().unwrap_or(-1),
            Err(_) => panic!(
                "provisionerd did not exit within {timeout:?}; log:\n{}",
                self.log_text()
            ),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !self.log_text().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "log never showed {needle:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `provisionerd serve` on `listen` (e.g. "127.0.0.1:0"); returns the
/// process, its URL and the admin token once it listens.
pub async fn serve(data_dir: &Path, listen: &str, lease: &str) -> (Proc, String, String) {
    serve_with(data_dir, listen, lease, &[]).await
}

/// [`serve`] with `extra` flags (e.g. `--tls-cert`).
pub async fn serve_with(
    data_dir: &Path,
    listen: &str,
    lease: &str,
    extra: &[&str],
) -> (Proc, String, String) {
    std::fs::create_dir_all(data_dir).unwrap();
    let address = data_dir.join("address");
    let _ = std::fs::remove_file(&address);
    let log = data_dir.with_extension(format!("serve-{}.log", std::process::id()));
    let data = data_dir.to_str().unwrap();
    let mut args = vec![
        "serve",
        "--data-dir",
        data,
        "--listen",
        listen,
        "--job-lease",
        lease,
    ];
    args.extend(extra);
    // The tests' engine: PostgreSQL when PROVISIONERD_TEST_DATABASE_URL is set.
    let url = provisionerd::coordinator::store::testdb::url_for(data_dir).unwrap();
    if let Some(url) = &url
        && !extra.contains(&"--database-url")
    {
        args.extend(["--database-url", url.as_str()]);
    }
    let p = Proc::spawn(&args, &[], &log);
    wait_serving(p, data_dir).await
}

/// [`serve_with`] started under an open-file limit (`ulimit -n`): soft
/// `soft`, hard `hard`.
pub async fn serve_with_nofile(
    data_dir: &Path,
    soft: u64,
    hard: u64,
    extra: &[&str],
) -> (Proc, String, String) {
    std::fs::create_dir_all(data_dir).unwrap();
    let _ = std::fs::remove_file(data_dir.join("address"));
    let log = data_dir.with_extension(format!("serve-{}.log", std::process::id()));
    // exec: the limit is set in the shell, which then becomes provisionerd.
    let script = format!("ulimit -S -n {soft} && ulimit -H -n {hard} && exec \"$0\" \"$@\"");
    let mut args = vec![
        "-c",
        &script,
        env!("CARGO_BIN_EXE_provisionerd"),
        "serve",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend(extra);
    let p = Proc::spawn_program(
        "/bin/sh",
        &args,
        &[("RUST_LOG", "info,provisionerd::coordinator::listener=debug")],
        &log,
    );
    wait_serving(p, data_dir).await
}

/// Waits until `p` serves (its address file written and the listening
/// line logged); returns it, its URL and the admin token.
async fn wait_serving(p: Proc, data_dir: &Path) -> (Proc, String, String) {
    let address = data_dir.join("address");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let url = loop {
        if let Ok(s) = std::fs::read_to_string(&address)
            && p.log_text().contains("coordinator listening")
        {
            break s.trim().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "coordinator did not start:\n{}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let token = std::fs::read_to_string(data_dir.join("admin-token"))
        .expect("admin token")
        .trim()
        .to_string();
    (p, url, token)
}

/// `provisionerd start` with `extra` flags; the project's terraform and a
/// 10s cancel grace unless `extra` sets them.
pub fn start(url: &str, key: &str, name: &str, cache_dir: &Path, extra: &[&str]) -> Proc {
    start_with_env(url, key, name, cache_dir, extra, &[])
}

/// A daemon named `name` (cache dir `root/name`) whose terraform can fetch
/// the stand-in coder provider (`tests/coder-provider`).
pub fn start_coder(url: &str, key: &str, name: &str, root: &Path) -> Proc {
    let tfrc = super::coder_cli_config();
    start_with_env(
        url,
        key,
        name,
        &root.join(name),
        &[],
        &[("TF_CLI_CONFIG_FILE", tfrc.to_str().unwrap())],
    )
}

/// [`start`] with more environment variables for the daemon (and so for
/// its terraform, e.g. `TF_CLI_CONFIG_FILE`).
pub fn start_with_env(
    url: &str,
    key: &str,
    name: &str,
    cache_dir: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Proc {
    let tf = super::terraform();
    let cache = cache_dir.to_str().unwrap();
    let mut args = vec!["start", "--url", url, "--name", name, "--cache-dir", cache];
    if !extra.contains(&"--terraform-path") {
        args.extend(["--terraform-path", tf.to_str().unwrap()]);
    }
    if !extra.contains(&"--cancel-grace") {
        args.extend(["--cancel-grace", "10s"]);
    }
    args.extend(extra);
    let log = cache_dir.with_extension("daemon.log");
    let mut all = vec![("PROVISIONERD_KEY", key)];
    all.extend_from_slice(envs);
    Proc::spawn(&args, &all, &log)
}

/// Live processes whose working directory is under `dir`. A daemon's job
/// work root holds terraform and its provisioners' shells: anything found
/// there is a job's process. Zombies do not count (their cwd is unreadable).
pub fn processes_under(dir: &Path) -> Vec<(i32, String)> {
    let Ok(root) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        // A removed directory reads as "<path> (deleted)".
        let cwd = cwd.to_string_lossy().into_owned();
        let cwd = cwd.strip_suffix(" (deleted)").unwrap_or(&cwd);
        if Path::new(cwd).starts_with(&root) {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out
}

/// Waits up to `timeout` until no process is left under `dir`.
pub async fn wait_no_processes_under(dir: &Path, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = processes_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes still running under {} after {timeout:?}: {left:?}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `path` exists (`exists`) or is gone: for a file a daemon
/// creates or removes after what the test saw (a log line, a job's end),
/// which a single check right after would race.
pub async fn wait_path(path: &Path, exists: bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while path.exists() != exists {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} {} after {TIMEOUT:?}",
            path.display(),
            if exists {
                "never appeared"
            } else {
                "still exists"
            }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fake `terraform` for failure modes real terraform will not show: it
/// ignores SIGINT and never finishes (only SIGKILL ends it). Its pid goes
/// to `started` in its working dir, so a test knows it runs.
pub fn sigint_ignoring_terraform(dir: &Path) -> PathBuf {
    let path = dir.join("terraform-ignores-sigint");
    std::fs::write(
        &path,
        "#!/bin/sh\n\
         trap '' INT\n\
         echo \"fake terraform $1: ignoring SIGINT\"\n\
         echo $$ > started\n\
         sleep 300 &\n\
         wait\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}
