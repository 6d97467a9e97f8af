//! The flags of `jobs`, `daemons` and `prebuilds`: the queue, the daemons
//! that work it, and the prebuild reconciler that fills it.

use std::time::Duration;

use clap::Subcommand;

use super::{AdminArgs, ColumnArg, OutputArg, PageArgs, YesArg};
use crate::config::parse_duration;

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// List jobs, newest first.
    List {
        /// Only jobs in these states (comma-separated or repeated): pending,
        /// running, succeeded, failed, canceling, canceled.
        #[arg(short = 's', long, value_delimiter = ',')]
        status: Vec<String>,
        /// Only jobs initiated by this user (e.g. `prebuilds`).
        #[arg(short = 'i', long)]
        initiator: Option<String>,
        /// At most this many jobs, newest first (fetched in pages of at
        /// most 1000; 0: all).
        #[arg(short = 'l', long, default_value_t = 100)]
        limit: u32,
        /// Start after this job: the cursor a previous listing printed
        /// ("More jobs follow: list them with --after ID"), its last job.
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        cols: ColumnArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one job.
    Show {
        /// Job id.
        id: String,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Cancel a job: a pending job ends at once, a running one is
    /// interrupted by its daemon (terraform gets SIGINT) and ends canceled
    /// — or as it finished, if terraform got there first.
    ///
    /// Several ids cancel each in turn (each reported; the exit status is 1
    /// if any failed); `-` reads ids from stdin (whitespace-separated), so
    /// `jobs list --status pending --initiator prebuilds -o json | jq -r
    /// '.[].id' | provisionerd jobs cancel -y -` clears the prebuild queue.
    ///
    /// Canceling a running job asks first on a terminal (a pending one is
    /// canceled without asking); without a terminal, or with `-` (stdin
    /// holds the ids), a running job needs --yes.
    Cancel {
        /// Job ids, or `-` to read them from stdin.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Wait until the job has ended, then print it; exit 0 however it
        /// ended (its status tells).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        yes: YesArg,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print a job's logs.
    Logs {
        /// Job id.
        id: String,
        /// Keep streaming until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DaemonsCmd {
    /// List daemons: tags, status (idle, busy, draining, canceling as the
    /// daemon reports it, or offline), current job. Daemons offline for
    /// longer than --max-age are left out.
    List {
        /// Only daemons in these states (comma-separated or repeated):
        /// idle, offered, busy, draining, canceling, not-ready, offline.
        #[arg(short = 's', long, value_delimiter = ',')]
        status: Vec<String>,
        /// Only daemons whose key's tags include this `key=value`
        /// (repeatable: all of them).
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        /// Leave out daemons offline and last seen longer ago than this
        /// (0: show them all).
        #[arg(short = 'm', long, default_value = "24h", value_parser = parse_duration)]
        max_age: Duration,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        cols: ColumnArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrebuildsCmd {
    /// Stop the reconciler creating and deleting prebuilt workspaces (kept
    /// across coordinator restarts) until `resume`.
    Pause {
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Let the reconciler work again (it runs at once).
    Resume {
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Whether reconciliation is paused, and per preset: desired, running,
    /// in-flight creates, failures, backoff and hard limit.
    Status {
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a preset's failed creates so far stop counting, lifting its
    /// hard limit (after fixing what made them fail).
    Reset {
        /// The template.
        template: String,
        /// The preset (of the template's active version).
        preset: String,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
}
