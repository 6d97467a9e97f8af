//! Reaping orphans when the daemon is PID 1 (a container without an init,
//! `unshare --pid`): a process whose parent dies is re-parented to PID 1,
//! and its exit stays a zombie until PID 1 waits for it. Terraform's
//! providers after a SIGKILL of its group, or a provisioner's background
//! command, end up here.
//!
//! Reaping must not take the exit of a child tokio waits for (terraform,
//! `terraform version`): tokio would then fail to wait for it. Every child
//! `process::run` spawns leads its own process group (`process_group(0)`),
//! and an orphan from inside a job is a member of terraform's group, not a
//! leader. So only zombies that lead no group are reaped, by pid; an
//! orphan that made itself a group leader (`setsid`) stays a zombie —
//! rare, and harmless but for a pid-table entry.

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// Reaps this process's zombie children that lead no process group;
/// returns how many. Call it on SIGCHLD when running as PID 1.
pub fn reap_orphans() -> usize {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut reaped = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if is_orphan_zombie(&stat, me, pid)
            && waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_ok()
        {
            reaped += 1;
        }
    }
    reaped
}

/// From `/proc/<pid>/stat`: a zombie child of `me` that is not the leader
/// of its process group.
fn is_orphan_zombie(stat: &str, me: u32, pid: i32) -> bool {
    super::parse_stat(stat)
        .is_some_and(|st| st.is_zombie() && u32::try_from(st.ppid) == Ok(me) && st.pgrp != pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_zombie_children_that_lead_no_group_are_orphans() {
        assert!(is_orphan_zombie("42 (sleep) Z 1 40 40 0", 1, 42));
        assert!(is_orphan_zombie("42 (a) b) c) Z 1 40 40 0", 1, 42));
        // A group leader: a child tokio waits for.
        assert!(!is_orphan_zombie("40 (terraform) Z 1 40 40 0", 1, 40));
        assert!(!is_orphan_zombie("42 (sleep) S 1 40 40 0", 1, 42));
        assert!(!is_orphan_zombie("42 (sleep) Z 7 40 40 0", 1, 42));
        assert!(!is_orphan_zombie("garbage", 1, 42));
    }
}
