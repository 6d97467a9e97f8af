//! Why a pending job waits: the connected daemons that could take it, or
//! for each connected daemon what keeps it out. Answers the question users
//! of every tag-routed runner ask most ("why is my job pending?").

use super::store::DaemonRow;
use crate::tags::{self, Tags};

/// Lines explaining where a job tagged `job_tags` can run, given every
/// known daemon (offline ones are left out).
pub fn explain(job_tags: &Tags, daemons: &[DaemonRow]) -> Vec<String> {
    let connected: Vec<&DaemonRow> = daemons.iter().filter(|d| d.connected).collect();
    if connected.is_empty() {
        return vec![format!(
            "no daemon is connected; it needs one whose key has {}",
            wanted(job_tags)
        )];
    }
    let mut able = Vec::new();
    let mut kept_out = Vec::new();
    for d in connected {
        match (tags::mismatch(&d.tags, job_tags), d.status()) {
            (Some(why), _) => kept_out.push(format!("daemon {} {why}", d.name)),
            (None, "draining" | "canceling" | "not-ready") => {
                kept_out.push(format!("daemon {} matches but is {}", d.name, d.status()))
            }
            (None, status) => able.push(format!("{} ({status})", d.name)),
        }
    }
    if able.is_empty() {
        let mut lines = vec![format!(
            "no connected daemon can take it; it needs a key with {}",
            wanted(job_tags)
        )];
        lines.extend(kept_out);
        lines
    } else {
        vec![format!(
            "daemons that can take it (it runs when one is free): {}",
            able.join(", ")
        )]
    }
}

fn wanted(job_tags: &Tags) -> String {
    if job_tags.is_empty() {
        "no tags (an untagged job goes only to untagged daemons)".to_string()
    } else {
        format!("the tags {}", tags::display(job_tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::store::Report;
    use crate::proto::DaemonState;

    fn daemon(name: &str, tags: &[&str], connected: bool, state: DaemonState) -> DaemonRow {
        DaemonRow {
            id: name.to_string(),
            name: name.to_string(),
            key_name: "k".to_string(),
            tags: tags::parse_pairs(tags).unwrap(),
            version: "0".to_string(),
            connected,
            last_seen_at: 0,
            current_job_id: None,
            report: Report {
                state: Some(state),
                job_id: None,
            },
            offered_job_id: None,
        }
    }

    #[test]
    fn says_which_tag_keeps_each_connected_daemon_out() {
        let job = tags::parse_pairs(&["is_prebuild=true"]).unwrap();
        let ds = [
            daemon("people", &[], true, DaemonState::Idle),
            daemon("eu", &["region=eu"], true, DaemonState::Busy),
            daemon("gone", &["is_prebuild=true"], false, DaemonState::Idle),
            daemon("pool", &["is_prebuild=true"], true, DaemonState::Draining),
        ];
        assert_eq!(
            explain(&job, &ds),
            vec![
                "no connected daemon can take it; it needs a key with the tags is_prebuild=true",
                "daemon people lacks is_prebuild=true",
                "daemon eu lacks is_prebuild=true",
                "daemon pool matches but is draining",
            ]
        );
    }

    #[test]
    fn names_the_daemons_that_can_take_it() {
        let ds = [
            daemon("a", &[], true, DaemonState::Busy),
            daemon("b", &["x=y"], true, DaemonState::Idle),
        ];
        assert_eq!(
            explain(&Tags::new(), &ds),
            vec!["daemons that can take it (it runs when one is free): a (busy)"]
        );
        assert_eq!(
            explain(&Tags::new(), &[]),
            vec![
                "no daemon is connected; it needs one whose key has no tags (an untagged job goes only to untagged daemons)"
            ]
        );
    }
}
