//! Accept errors: a growing delay instead of a spinning loop, one log line
//! when an episode starts and one when it ends.

use std::io;
use std::time::Duration;

use nix::errno::Errno;
use tokio::time::Instant;

const FIRST: Duration = Duration::from_millis(5);
const MOST: Duration = Duration::from_secs(1);

/// The delay after an accept error (growing while errors follow each
/// other), and the episode they belong to for the log: it ends only after
/// `QUIET` without an error, so a flood that keeps hitting the file limit
/// logs one warning, not one per brush with it.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    delay: Option<Duration>,
    episode: Option<Episode>,
}

#[derive(Debug)]
struct Episode {
    since: Instant,
    last: Instant,
    errors: u64,
    /// Logged at warn: its end is logged too.
    warned: bool,
}

/// How long accepts must go without an error for an episode to end.
const QUIET: Duration = Duration::from_secs(5);

impl Backoff {
    /// An accept failed: how long to wait before the next one.
    pub(super) fn failed(&mut self, e: &io::Error) -> Duration {
        let now = Instant::now();
        match &mut self.episode {
            Some(ep) => {
                ep.errors += 1;
                ep.last = now;
            }
            None => {
                let warned = is_resource_shortage(e);
                if warned {
                    tracing::warn!(
                        error = %e,
                        "accept connections: out of resources; retrying with a growing delay \
                         (up to 1s)"
                    );
                } else {
                    tracing::debug!(error = %e, "accept connection failed; retrying");
                }
                self.episode = Some(Episode {
                    since: now,
                    last: now,
                    errors: 1,
                    warned,
                });
            }
        }
        let delay = self.delay.map_or(FIRST, |d| (d * 2).min(MOST));
        self.delay = Some(delay);
        delay
    }

    /// An accept succeeded: the next error starts from the shortest delay.
    pub(super) fn succeeded(&mut self) {
        self.delay = None;
        if let Some(ep) = self.episode.take_if(|ep| ep.last.elapsed() >= QUIET)
            && ep.warned
        {
            tracing::info!(
                errors = ep.errors,
                seconds = (ep.last - ep.since).as_secs_f64(),
                "accepting connections again"
            );
        }
    }
}

/// The process or the system is out of file descriptors.
fn is_fd_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE)
    )
}

/// Errors about the machine, not one connection (an ECONNABORTED is a
/// client that gave up before it was accepted).
fn is_resource_shortage(e: &io::Error) -> bool {
    is_fd_shortage(e)
        || matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::ENOBUFS | Errno::ENOMEM)
        )
}

/// The soft open-file limit, if readable.
pub(super) fn open_file_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Raises the soft open-file limit to the hard one, as Go's runtime does
/// for Coder: the default soft limit (often 1,024) is far below what a
/// coordinator with a thousand daemons needs, and the hard limit is what
/// the administrator allows. Logs what the limit became. For the binary,
/// at start (a process-wide setting).
pub fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "read the open-file limit");
            return;
        }
    };
    if soft >= hard {
        tracing::info!(
            open_file_limit = soft,
            "open-file limit (already the hard limit)"
        );
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => tracing::info!(
            open_file_limit = hard,
            was = soft,
            "open-file limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!(
            open_file_limit = soft,
            hard_limit = hard,
            error = %e,
            "raise the open-file limit to the hard limit"
        ),
    }
}
