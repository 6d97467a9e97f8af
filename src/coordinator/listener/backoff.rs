//! Accept errors: a growing delay instead of a spinning loop, one log line
//! when an episode starts and one when it ends.

use std::io;
use std::time::Duration;

use nix::errno::Errno;
use tokio::time::Instant;

const FIRST: Duration = Duration::from_millis(5);
const MOST: Duration = Duration::from_secs(1);

/// The delays of one episode of accept errors (errors with no successful
/// accept between them).
#[derive(Debug, Default)]
pub(super) struct Backoff {
    episode: Option<Episode>,
}

#[derive(Debug)]
struct Episode {
    since: Instant,
    errors: u64,
    delay: Duration,
    /// Logged at warn: its end is logged too.
    warned: bool,
}

impl Backoff {
    /// An accept failed: how long to wait before the next one.
    pub(super) fn failed(&mut self, e: &io::Error) -> Duration {
        match &mut self.episode {
            Some(ep) => {
                ep.errors += 1;
                ep.delay = (ep.delay * 2).min(MOST);
                ep.delay
            }
            None => {
                let warned = is_resource_shortage(e);
                if warned {
                    tracing::warn!(
                        error = %e,
                        "accept connections: out of resources; retrying with a growing delay \
                         (up to 1s) until a connection is accepted"
                    );
                } else {
                    tracing::debug!(error = %e, "accept connection failed; retrying");
                }
                self.episode = Some(Episode {
                    since: Instant::now(),
                    errors: 1,
                    delay: FIRST,
                    warned,
                });
                FIRST
            }
        }
    }

    /// An accept succeeded: the episode, if any, is over.
    pub(super) fn succeeded(&mut self) {
        if let Some(ep) = self.episode.take()
            && ep.warned
        {
            tracing::info!(
                errors = ep.errors,
                seconds = ep.since.elapsed().as_secs_f64(),
                "accepting connections again"
            );
        }
    }
}

/// The process or the system is out of file descriptors.
pub(super) fn is_fd_shortage(e: &io::Error) -> bool {
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
        tracing::info!(open_file_limit = soft, "open-file limit (already the hard limit)");
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
