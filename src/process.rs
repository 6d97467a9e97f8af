//! The only module that spawns processes.
//!
//! Every child runs in its own process group so that one signal reaches it
//! and everything it started (terraform and its provisioners' shells). When
//! [`run`] returns, nothing in that group is alive any more: on cancel the
//! group gets exactly one SIGINT, then SIGKILL after the grace period; after
//! a normal exit, leftovers (background jobs a provisioner forgot) are
//! SIGKILLed once output has drained. If the `run` future is dropped, a guard
//! SIGKILLs the group and tokio reaps the leader.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod reap;
pub use reap::reap_orphans;

/// Longest line handed out; longer lines are split so that a child printing
/// without newlines cannot make us buffer without bound.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What to run. `env` is the child's complete environment.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(OsString, OsString)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output, without its line terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code when the child exited normally.
    pub code: Option<i32>,
    /// The signal that terminated the child, if any.
    pub signal: Option<i32>,
    /// Cancel fired and the group got its SIGINT.
    pub interrupted: bool,
    /// The group was still running after the grace period and got SIGKILL.
    pub killed: bool,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("spawn {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("wait for {program}: {source}")]
    Wait {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Runs `spec` to completion, sending its output line by line to `lines`
/// (stdout and stderr each in order). The channel is bounded on purpose: a
/// slow consumer slows the child down. If the receiver is dropped, output is
/// still drained and discarded so the child never blocks on a full pipe.
///
/// When `cancel` fires, the process group gets one SIGINT; if the leader has
/// not exited `grace` later, the group gets SIGKILL. `kill` (an operator
/// forcing the stop) cuts the grace short: SIGKILL to the group at once.
pub async fn run(
    spec: Spec,
    lines: mpsc::Sender<Line>,
    cancel: &CancellationToken,
    kill: &CancellationToken,
    grace: Duration,
) -> Result<Exit, ProcessError> {
    // Checked here so a missing program is a spawn error naming it, not a
    // shell's "not found" on the child's stderr.
    if let Err(source) = std::fs::metadata(&spec.program) {
        return Err(ProcessError::Spawn {
            program: spec.program,
            source,
        });
    }
    let mut child = command(&spec)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            program: spec.program.clone(),
            source,
        })?;
    // The leader's pid is the group id because of process_group(0).
    let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return Err(ProcessError::Spawn {
            program: spec.program,
            source: io::Error::other("child has no pid right after spawn"),
        });
    };
    tracing::debug!(program = %spec.program.display(), pid = pgid, "process started in its own group");
    let mut guard = GroupGuard {
        pgid: Pid::from_raw(pgid),
        armed: true,
    };

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let readers = async {
        tokio::join!(
            pump(stdout, Stream::Stdout, &lines),
            pump(stderr, Stream::Stderr, &lines)
        )
    };
    tokio::pin!(readers);

    let waiting = wait_or_cancel(&mut child, guard.pgid, cancel, kill, grace);
    tokio::pin!(waiting);
    let mut drained = false;
    let waited = loop {
        tokio::select! {
            w = &mut waiting => break w,
            _ = &mut readers, if !drained => drained = true,
        }
    };
    let (status, interrupted, killed) = waited.map_err(|source| ProcessError::Wait {
        program: spec.program.clone(),
        source,
    })?;

    // After a normal exit, background members may still be writing their
    // last lines; give them the grace period before killing the group.
    if !drained && !interrupted {
        drained = tokio::time::timeout(grace, &mut readers).await.is_ok();
    }
    signal_group(guard.pgid, Signal::SIGKILL);
    guard.armed = false;
    // The group is dead: its pipes close at once unless a process left the
    // group (setsid); a short wait keeps the cancel's time budget honest.
    if !drained
        && tokio::time::timeout(DRAIN_AFTER_KILL, &mut readers)
            .await
            .is_err()
    {
        // Only a process that left the group (setsid) can still hold the
        // pipes; we stop reading rather than wait for it forever.
        tracing::warn!(program = %spec.program.display(), "output pipes still open after the process group was killed; stopped reading");
    }

    Ok(Exit {
        code: status.code(),
        signal: status.signal(),
        interrupted,
        killed,
    })
}

/// The shell that starts every child with SIGPIPE ignored.
const SHELL: &str = "/bin/sh";

/// The command for `spec`, started through `/bin/sh` so that SIGPIPE is
/// ignored in the child (an ignored signal stays ignored across exec; the
/// standard library resets it to the default otherwise, and this crate
/// forbids the unsafe `pre_exec` that could set it directly). Why: if the
/// daemon dies, terraform's output pipes break; with SIGPIPE at its default
/// a Go program is killed by its next log line — mid-apply, before writing
/// its state. Ignored, the write just fails and terraform carries on until
/// the restarted daemon interrupts it cleanly. `exec` keeps the pid, so
/// the process group and the reaping are unchanged. Without a shell (a
/// minimal image), the program is started directly.
fn command(spec: &Spec) -> Command {
    if !std::path::Path::new(SHELL).is_file() {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args);
        return cmd;
    }
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c")
        .arg("trap '' PIPE; exec \"$0\" \"$@\"")
        .arg(&spec.program)
        .args(&spec.args);
    cmd
}

/// How long to wait for the pipes to close once the whole group is dead.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);

/// Waits for the leader; on cancel sends one SIGINT, then SIGKILL after
/// `grace` or as soon as `kill` fires. Returns the status and whether
/// SIGINT / SIGKILL were sent.
async fn wait_or_cancel(
    child: &mut Child,
    pgid: Pid,
    cancel: &CancellationToken,
    kill: &CancellationToken,
    grace: Duration,
) -> io::Result<(ExitStatus, bool, bool)> {
    let interrupt = tokio::select! {
        status = child.wait() => return Ok((status?, false, false)),
        _ = cancel.cancelled() => true,
        // A forced stop without a cancel first: no SIGINT at all.
        _ = kill.cancelled() => false,
    };
    if interrupt {
        signal_group(pgid, Signal::SIGINT);
        tokio::select! {
            status = child.wait() => return Ok((status?, true, false)),
            () = tokio::time::sleep(grace) => {}
            _ = kill.cancelled() => {}
        }
    }
    signal_group(pgid, Signal::SIGKILL);
    Ok((child.wait().await?, interrupt, true))
}

fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        // The group is already gone: nothing left to signal.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => tracing::warn!(%pgid, ?signal, %err, "signal process group"),
    }
}

/// SIGKILLs the group if `run` is dropped before it finished cleaning up.
struct GroupGuard {
    pgid: Pid,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Reads `reader` to EOF, sending each line. Lines over [`MAX_LINE_BYTES`]
/// are split (never in the middle of a UTF-8 sequence).
async fn pump<R: AsyncRead + Unpin>(reader: Option<R>, stream: Stream, tx: &mpsc::Sender<Line>) {
    let Some(reader) = reader else { return };
    let mut reader = BufReader::with_capacity(16 * 1024, reader);
    let mut buf: Vec<u8> = Vec::new();
    let mut open = true;
    let mut emit = async |bytes: &[u8]| {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        // Valid UTF-8 (nearly always) is copied once, without the lossy
        // conversion's slower scan.
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        };
        if open && tx.send(Line { stream, text }).await.is_err() {
            // Nobody listens any more; keep draining so the child never
            // blocks on a full pipe.
            open = false;
        }
    };
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) => chunk,
            Err(err) => {
                // Dropping the pipe makes the child see EPIPE instead of
                // blocking on a pipe nobody reads.
                tracing::warn!(?stream, %err, "read child output");
                break;
            }
        };
        if chunk.is_empty() {
            if !buf.is_empty() {
                emit(&buf).await;
            }
            return;
        }
        let room = MAX_LINE_BYTES - buf.len();
        if let Some(i) = chunk.iter().take(room + 1).position(|&b| b == b'\n') {
            buf.extend_from_slice(&chunk[..i]);
            reader.consume(i + 1);
            emit(&buf).await;
            buf.clear();
            continue;
        }
        let n = room.min(chunk.len());
        buf.extend_from_slice(&chunk[..n]);
        reader.consume(n);
        if buf.len() == MAX_LINE_BYTES {
            let cut = utf8_cut(&buf);
            emit(&buf[..cut]).await;
            buf.drain(..cut);
        }
    }
}

/// Where to split `buf` so that a multi-byte character at its end stays
/// whole (it moves to the next piece).
fn utf8_cut(buf: &[u8]) -> usize {
    let len = buf.len();
    for back in 1..=len.min(4) {
        let b = buf[len - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the start
        }
        let need = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if need > back { len - back } else { len };
    }
    len
}

/// Whether a live (non-zombie) process is in process group `pgid`.
/// Zombies count as gone: reaping orphans is init's job, and some
/// containers' init never does it, which keeps `kill(-pgid, 0)` succeeding.
pub fn group_alive(pgid: i32) -> bool {
    if killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // Without /proc, trust the signal probe above.
        return true;
    };
    entries
        .flatten()
        .any(|entry| read_stat(&entry.path()).is_some_and(|st| !st.is_zombie() && st.pgrp == pgid))
}

/// What provisionerd reads of a process's `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `Z`, ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Parses the text of `/proc/<pid>/stat`: "pid (comm) state ppid pgrp …".
/// The command may hold spaces and parentheses, so fields are counted
/// after the last `)`. `None`: not in that shape.
pub fn parse_stat(stat: &str) -> Option<ProcStat> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let mut state = fields.next()?.chars();
    let (Some(state), None) = (state.next(), state.next()) else {
        return None;
    };
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { state, ppid, pgrp })
}

/// Reads and parses `<proc_dir>/stat` (`proc_dir` is `/proc/<pid>`);
/// `None` if it cannot be read (the process is gone, or not ours to
/// inspect) or parsed.
pub fn read_stat(proc_dir: &std::path::Path) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(proc_dir.join("stat")).ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let st = super::parse_stat("42 (my (odd) cmd) x) Z 1 40 40 0 -1 4194560").unwrap();
        assert_eq!(
            st,
            super::ProcStat {
                state: 'Z',
                ppid: 1,
                pgrp: 40
            }
        );
        assert!(st.is_zombie());
        let st = super::parse_stat("7 (terraform) S 3 7 7 0").unwrap();
        assert_eq!((st.state, st.ppid, st.pgrp), ('S', 3, 7));
        assert!(!st.is_zombie());
        for bad in [
            "",
            "garbage",
            "42 (sleep)",
            "42 (sleep) Z 1",
            "42 (sleep) Z x 40",
            "42 (sleep) ZZ 1 40",
        ] {
            assert_eq!(super::parse_stat(bad), None, "{bad:?}");
        }
    }

    use super::*;
    use std::path::Path;
    use std::time::Instant;

    const LIMIT: Duration = Duration::from_secs(20);

    fn sh(dir: &Path, script: &str) -> Spec {
        Spec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: dir.to_path_buf(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("FOO".into(), "bar".into()),
            ],
        }
    }

    /// Runs `spec`, collecting every line; `cancel_when` cancels once the
    /// file exists in `dir`.
    async fn collect(
        spec: Spec,
        cancel_when: Option<&Path>,
        grace: Duration,
    ) -> (Result<Exit, ProcessError>, Vec<Line>) {
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let collector = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(line) = rx.recv().await {
                all.push(line);
            }
            all
        });
        let canceler = cancel_when.map(|path| {
            let (path, cancel) = (path.to_path_buf(), cancel.clone());
            tokio::spawn(async move {
                while !path.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                cancel.cancel();
            })
        });
        let result = tokio::time::timeout(
            LIMIT,
            run(spec, tx, &cancel, &CancellationToken::new(), grace),
        )
        .await
        .expect("process::run timed out");
        if let Some(canceler) = canceler {
            canceler.abort();
        }
        let lines = tokio::time::timeout(LIMIT, collector)
            .await
            .expect("collector timed out")
            .expect("collector panicked");
        (result, lines)
    }

    fn texts(lines: &[Line], stream: Stream) -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.clone())
            .collect()
    }

    async fn wait_group_gone(pgid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(pgid) {
            assert!(
                Instant::now() < deadline,
                "process group {pgid} still has live members"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn read_pgid(dir: &Path) -> i32 {
        let text = std::fs::read_to_string(dir.join("pid")).expect("read pid file");
        text.trim().parse().expect("pid file holds a number")
    }

    #[tokio::test]
    async fn all_lines_arrive_in_order_per_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = "i=0; while [ $i -lt 500 ]; do echo \"out $i\"; echo \"err $i\" >&2; \
                      i=$((i+1)); done; printf 'crlf\\r\\n'; printf 'last-without-newline'";
        let (result, lines) = collect(sh(dir.path(), script), None, Duration::from_secs(1)).await;
        let exit = result.expect("run sh");
        assert!(
            exit.success() && !exit.interrupted && !exit.killed,
            "{exit:?}"
        );
        let mut want_out: Vec<String> = (0..500).map(|i| format!("out {i}")).collect();
        want_out.push("crlf".into());
        want_out.push("last-without-newline".into());
        let want_err: Vec<String> = (0..500).map(|i| format!("err {i}")).collect();
        assert_eq!(texts(&lines, Stream::Stdout), want_out);
        assert_eq!(texts(&lines, Stream::Stderr), want_err);
    }

    #[tokio::test]
    async fn long_lines_are_split_and_env_is_exactly_the_spec() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script =
            "head -c 200000 /dev/zero | tr '\\0' a; echo; echo \"FOO=$FOO HOME=${HOME-unset}\"";
        let (result, lines) = collect(sh(dir.path(), script), None, Duration::from_secs(1)).await;
        assert!(result.expect("run sh").success());
        let out = texts(&lines, Stream::Stdout);
        let sizes: Vec<usize> = out.iter().map(String::len).collect();
        assert_eq!(
            sizes,
            vec![
                MAX_LINE_BYTES,
                MAX_LINE_BYTES,
                MAX_LINE_BYTES,
                200_000 - 3 * MAX_LINE_BYTES,
                18
            ]
        );
        assert!(out[..4].iter().all(|l| l.bytes().all(|b| b == b'a')));
        assert_eq!(out[4], "FOO=bar HOME=unset");
    }

    #[test]
    fn utf8_cut_keeps_characters_whole() {
        assert_eq!(utf8_cut(b"abc"), 3);
        assert_eq!(utf8_cut("ab\u{e9}".as_bytes()), 4);
        assert_eq!(utf8_cut(&"ab\u{20ac}".as_bytes()[..4]), 2);
        assert_eq!(utf8_cut(&"a\u{1f600}".as_bytes()[..4]), 1);
        assert_eq!(utf8_cut("a\u{1f600}".as_bytes()), 5);
    }

    #[tokio::test]
    async fn sigint_ignoring_group_is_killed_after_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = "trap '' INT; echo $$ > pid.tmp; mv pid.tmp pid; sleep 30; echo survived";
        let started = Instant::now();
        let pid = dir.path().join("pid");
        let (result, lines) = collect(
            sh(dir.path(), script),
            Some(&pid),
            Duration::from_millis(300),
        )
        .await;
        let exit = result.expect("run sh");
        assert!(exit.interrupted && exit.killed, "{exit:?}");
        assert_eq!(exit.signal, Some(Signal::SIGKILL as i32));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert!(!lines.iter().any(|l| l.text == "survived"));
        wait_group_gone(read_pgid(dir.path())).await;
    }

    #[tokio::test]
    async fn kill_cuts_the_grace_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Notes the SIGINT and carries on (its `sleep` dies of it): only
        // SIGKILL ends it.
        let script = "trap 'echo > got-int' INT; echo $$ > pid.tmp; mv pid.tmp pid; \
                      while :; do sleep 1; done";
        let (tx, _rx) = mpsc::channel(8);
        let (cancel, kill) = (CancellationToken::new(), CancellationToken::new());
        let (pid, got_int) = (dir.path().join("pid"), dir.path().join("got-int"));
        let trigger = {
            let (cancel, kill) = (cancel.clone(), kill.clone());
            async move {
                while !pid.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                cancel.cancel();
                // The kill comes after the SIGINT arrived, not a guessed
                // time after the cancel.
                while !got_int.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                kill.cancel();
            }
        };
        let started = Instant::now();
        // A grace far longer than LIMIT: only `kill` can end this in time.
        let run = run(sh(dir.path(), script), tx, &cancel, &kill, LIMIT * 3);
        let (result, ()) = tokio::time::timeout(LIMIT, async { tokio::join!(run, trigger) })
            .await
            .expect("kill did not end the run");
        let exit = result.expect("run sh");
        assert!(exit.interrupted && exit.killed, "{exit:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        wait_group_gone(read_pgid(dir.path())).await;
    }

    #[tokio::test]
    async fn cancel_sends_exactly_one_sigint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = "trap 'echo int >> count; exit 3' INT; echo $$ > pid.tmp; mv pid.tmp pid; \
                      while :; do sleep 0.05; done";
        let pid = dir.path().join("pid");
        let (result, _) = collect(sh(dir.path(), script), Some(&pid), Duration::from_secs(5)).await;
        let exit = result.expect("run sh");
        assert_eq!(
            (exit.code, exit.interrupted, exit.killed),
            (Some(3), true, false)
        );
        let count = std::fs::read_to_string(dir.path().join("count")).expect("read count");
        assert_eq!(count, "int\n");
        wait_group_gone(read_pgid(dir.path())).await;
    }

    #[tokio::test]
    async fn leftover_background_jobs_are_killed_after_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = "echo $$ > pid; sleep 30 & echo started";
        let started = Instant::now();
        let (result, lines) =
            collect(sh(dir.path(), script), None, Duration::from_millis(300)).await;
        let exit = result.expect("run sh");
        assert!(exit.success() && !exit.interrupted, "{exit:?}");
        assert_eq!(texts(&lines, Stream::Stdout), vec!["started".to_string()]);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        wait_group_gone(read_pgid(dir.path())).await;
    }

    #[tokio::test]
    async fn dropped_receiver_does_not_block_the_child() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let spec = sh(
            dir.path(),
            "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done",
        );
        let cancel = CancellationToken::new();
        let kill = CancellationToken::new();
        let run = run(spec, tx, &cancel, &kill, Duration::from_secs(1));
        let exit = tokio::time::timeout(LIMIT, run)
            .await
            .expect("run timed out");
        assert!(exit.expect("run sh").success());
    }

    #[tokio::test]
    async fn children_start_with_sigpipe_ignored_and_their_own_argv() {
        let dir = tempfile::tempdir().expect("tempdir");
        // SigIgn is a hex mask; SIGPIPE (13) is bit 12. The awk prints the
        // mask's last four hex digits' SIGPIPE bit, and $0/$1 show argv
        // passed through the wrapper unchanged.
        let mut spec = sh(
            dir.path(),
            "echo \"argv0=$0 argv1=$1\"; grep SigIgn /proc/$$/status",
        );
        spec.args.push("first arg".into());
        let (result, lines) = collect(spec, None, Duration::from_secs(1)).await;
        assert!(result.expect("run sh").success());
        let out = texts(&lines, Stream::Stdout);
        assert_eq!(out[0], "argv0=first arg argv1=", "{out:?}");
        let mask = out[1].trim_start_matches("SigIgn:").trim();
        let mask = u64::from_str_radix(mask, 16).expect("hex mask");
        assert_ne!(mask & (1 << 12), 0, "SIGPIPE not ignored: {mask:#x}");
    }

    #[tokio::test]
    async fn spawn_failure_names_the_program() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = sh(dir.path(), "true");
        spec.program = dir.path().join("no-such-program");
        let (tx, _rx) = mpsc::channel(1);
        let err = run(
            spec,
            tx,
            &CancellationToken::new(),
            &CancellationToken::new(),
            Duration::from_secs(1),
        )
        .await
        .expect_err("spawn must fail");
        let msg = err.to_string();
        assert!(
            msg.starts_with("spawn ") && msg.contains("no-such-program"),
            "{msg}"
        );
    }
}
