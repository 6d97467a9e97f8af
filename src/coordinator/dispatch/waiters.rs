//! The daemons waiting for a job, grouped by tag set. Daemons with equal
//! tags may take exactly the same jobs, so one claim that finds nothing
//! answers for the whole group, and an enqueued job concerns only the
//! groups whose tags match it.

use std::collections::{HashMap, VecDeque};

use super::Outbound;
use crate::tags::{self, Tags};

pub(super) struct Waiter {
    pub daemon_id: String,
    pub tx: Outbound,
    /// When it started waiting (ms since epoch), for the dispatch latency.
    pub since_ms: i64,
    /// Arrival order, across groups (ties of `since_ms`).
    seq: u64,
}

struct Group {
    tags: Tags,
    /// Longest-waiting first.
    queue: VecDeque<Waiter>,
}

#[derive(Default)]
pub(super) struct Waiters {
    /// By the tag set's canonical JSON.
    groups: HashMap<String, Group>,
    /// Daemon id → its group's key.
    group_of: HashMap<String, String>,
    seq: u64,
}

impl Waiters {
    /// Adds a waiting daemon (at the back of its group, forgetting any
    /// earlier wait of it); returns its group's key.
    pub fn add(&mut self, daemon_id: String, tags: Tags, tx: Outbound, since_ms: i64) -> String {
        self.remove(&daemon_id);
        let key = serde_json::to_string(&tags).unwrap_or_default();
        self.seq += 1;
        let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
            tags,
            queue: VecDeque::new(),
        });
        group.queue.push_back(Waiter {
            daemon_id: daemon_id.clone(),
            tx,
            since_ms,
            seq: self.seq,
        });
        self.group_of.insert(daemon_id, key.clone());
        key
    }

    /// Forgets a waiting daemon; false if it was not waiting.
    pub fn remove(&mut self, daemon_id: &str) -> bool {
        let Some(key) = self.group_of.remove(daemon_id) else {
            return false;
        };
        if let Some(group) = self.groups.get_mut(&key) {
            group.queue.retain(|w| w.daemon_id != daemon_id);
            if group.queue.is_empty() {
                self.groups.remove(&key);
            }
        }
        true
    }

    /// Every group's key.
    pub fn all(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// The groups that may take a job with `job` tags.
    pub fn concerned<'a>(&'a self, job: &'a Tags) -> impl Iterator<Item = &'a String> + 'a {
        self.groups
            .iter()
            .filter(move |(_, g)| tags::matches(&g.tags, job))
            .map(|(k, _)| k)
    }

    /// Of `keys`, the group whose first daemon has waited longest, with
    /// that daemon's id and the group's tags. Daemons whose session is gone
    /// are dropped on the way, and groups left empty.
    pub fn longest_waiting(&mut self, keys: &mut Vec<String>) -> Option<(String, String, Tags)> {
        let mut best: Option<(i64, u64, usize)> = None;
        let mut i = 0;
        while i < keys.len() {
            let Some(w) = self.front(&keys[i]) else {
                keys.swap_remove(i);
                continue;
            };
            let at = (w.since_ms, w.seq);
            if best.is_none_or(|(s, q, _)| at < (s, q)) {
                best = Some((at.0, at.1, i));
            }
            i += 1;
        }
        let (_, _, i) = best?;
        let group = &self.groups[&keys[i]];
        let first = group.queue.front()?;
        Some((keys[i].clone(), first.daemon_id.clone(), group.tags.clone()))
    }

    /// Takes the first daemon of group `key` (it is being offered a job).
    pub fn pop(&mut self, key: &str) -> Option<Waiter> {
        let group = self.groups.get_mut(key)?;
        let w = group.queue.pop_front()?;
        if group.queue.is_empty() {
            self.groups.remove(key);
        }
        self.group_of.remove(&w.daemon_id);
        Some(w)
    }

    /// The first daemon of group `key` whose session is still open.
    fn front(&mut self, key: &str) -> Option<&Waiter> {
        loop {
            let group = self.groups.get(key)?;
            match group.queue.front() {
                Some(w) if w.tx.is_closed() => {
                    let id = w.daemon_id.clone();
                    self.remove(&id);
                }
                Some(_) => return self.groups.get(key)?.queue.front(),
                None => {
                    self.groups.remove(key);
                    return None;
                }
            }
        }
    }
}
