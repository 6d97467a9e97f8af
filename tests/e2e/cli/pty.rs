//! The CLI on a pseudo-terminal: stdin and stderr are the terminal (what a
//! person at a shell has), stdout a pipe the test reads.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::TIMEOUT;

pub struct OnPty {
    child: tokio::process::Child,
    master: std::fs::File,
    /// Everything the terminal showed: stderr, and the echo of what was
    /// typed.
    screen: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

/// Starts `provisionerd ARGS` on a new pseudo-terminal.
pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> OnPty {
    let (master, slave) = open_pty();
    let slave_for_stdin = slave.try_clone().expect("dup the terminal");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisionerd"));
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::from(slave_for_stdin))
        .stderr(Stdio::from(slave))
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn provisionerd on the terminal");
    // The child holds the only copies of the terminal's side now, so the
    // reader sees its end (EIO) when the child exits.
    drop(cmd);
    let master = std::fs::File::from(master);
    let mut from = master.try_clone().expect("dup the terminal's master");
    let screen = Arc::new(Mutex::new(String::new()));
    let shown = screen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            shown
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    OnPty {
        child,
        master,
        screen,
        reader,
    }
}

/// A new pseudo-terminal, both sides close-on-exec from the start: tests
/// share one process under plain `cargo test`, and a child another test
/// spawns must not inherit this terminal (the reader would never see its
/// end). `openpty` gives no way to ask for that atomically.
fn open_pty() -> (std::os::fd::OwnedFd, std::fs::File) {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    use std::os::unix::fs::OpenOptionsExt;
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .expect("open a pseudo-terminal");
    grantpt(&master).expect("grant the pseudo-terminal");
    unlockpt(&master).expect("unlock the pseudo-terminal");
    let path = ptsname_r(&master).expect("name the pseudo-terminal");
    // std opens files close-on-exec.
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open(&path)
        .expect("open the terminal's side");
    (master.into(), slave)
}

impl OnPty {
    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until the terminal shows `needle` (the question, before it is
    /// answered: the answer must not be typed ahead of it).
    pub async fn wait_for(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !self.screen().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the terminal never showed {needle:?}:\n{}",
                self.screen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Types `line` and Enter.
    pub fn answer(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .expect("type on the terminal");
    }

    /// Waits for the exit; returns its code, stdout, and the whole screen.
    pub async fn finish(self) -> (i32, String, String) {
        let out = tokio::time::timeout(TIMEOUT, self.child.wait_with_output())
            .await
            .expect("provisionerd on the terminal exits")
            .expect("wait for provisionerd");
        // The reader ends once it has read everything the child wrote.
        let reader = self.reader;
        tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || reader.join()))
            .await
            .expect("the terminal reader ends")
            .unwrap()
            .unwrap();
        let screen = self.screen.lock().unwrap().clone();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            screen,
        )
    }
}
