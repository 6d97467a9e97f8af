//! The admin commands' flags. Short flags follow Coder's CLI where its users
//! reach for them (`-o`, `-c`, `-t`, `-y`, `-s`, `-i`, `-l`).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::ClientTlsArgs;
use crate::grpc::Secret;

// `jobs`, `daemons`, `prebuilds`.
mod jobs;
pub use jobs::*;

// Flags every admin command shares (a plain comment: a doc comment would
// become the description of every subcommand that flattens it).
#[derive(Debug, Args, Clone)]
pub struct AdminArgs {
    /// Coordinator URL; several (comma-separated, or the flag repeated):
    /// the first that connects is used.
    #[arg(
        long,
        env = "PROVISIONERD_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7800"
    )]
    pub url: Vec<String>,
    /// Admin token (written to DATA_DIR/admin-token on the coordinator's
    /// first start); wins over --token-file.
    #[arg(long, env = "PROVISIONERD_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// Read the admin token from this file (trimmed).
    #[arg(long, env = "PROVISIONERD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct OutputArg {
    /// Output format; `json` field names are a stable interface.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Output,
}

/// The table columns of a list command, as Coder's `-c`.
#[derive(Debug, Args, Clone)]
pub struct ColumnArg {
    /// Table columns to show, in this order (comma-separated or repeated;
    /// names as the headers, case-insensitive, `-` for a space, e.g.
    /// `-c name,last-seen`). JSON output always has every field.
    #[arg(
        short = 'c',
        long = "column",
        value_delimiter = ',',
        value_name = "COLUMNS"
    )]
    pub columns: Vec<String>,
}

/// Confirmation of a destructive command.
#[derive(Debug, Args, Clone)]
pub struct YesArg {
    /// Do not ask: needed without a terminal (scripts), where the command
    /// otherwise refuses (exit 64).
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
}

/// Paging of a list command: the CLI fetches pages of at most 1000 rows
/// until it has `--limit` rows, and prints on stderr how to continue.
#[derive(Debug, Args, Clone)]
pub struct PageArgs {
    /// At most this many rows [default: all; 0: all].
    #[arg(short = 'l', long)]
    pub limit: Option<u32>,
    /// Start after this cursor: the one a previous listing printed ("More …
    /// follow: list them with --after CURSOR"), which is the last name it
    /// listed.
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create a key; its secret is printed once.
    Create {
        name: String,
        /// Tag `key=value` (repeatable).
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List keys and their tags.
    List {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        cols: ColumnArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete a key; daemons using it are disconnected. Asks first on a
    /// terminal; without one, needs --yes.
    Delete {
        name: String,
        #[command(flatten)]
        yes: YesArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCmd {
    /// Push a template directory as a new version and import it.
    Push {
        /// Template name.
        name: String,
        /// Directory holding the template's .tf files.
        #[arg(long)]
        dir: PathBuf,
        /// Tag `key=value` added to the version's jobs (repeatable).
        #[arg(long = "provisioner-tag")]
        tags: Vec<String>,
        /// Template variable `name=value` (repeatable).
        #[arg(long = "var")]
        vars: Vec<String>,
        /// The version's name, unique in the template (letters, digits,
        /// `.`, `_`, `-`) [default: vN, N counting the template's versions].
        #[arg(long = "name", value_name = "VERSION_NAME")]
        version_name: Option<String>,
        /// What changed in this version (shown by `templates versions
        /// list`).
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// Make the version active once its import succeeds;
        /// `--activate=false` imports it and leaves the active version as
        /// it is (promote it later with `templates versions promote`).
        #[arg(
            long,
            default_value_t = true,
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            action = clap::ArgAction::Set,
            value_name = "BOOL"
        )]
        activate: bool,
        /// Stream the import's logs; exit non-zero if it fails.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// A template's versions: list, promote (roll back), archive.
    #[command(subcommand)]
    Versions(VersionsCmd),
    /// Show what a template's newest version declares: variables,
    /// parameters, workspace tag expressions, presets and README.
    Show {
        name: String,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List templates, their active versions and variables.
    List {
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
pub enum VersionsCmd {
    /// List a template's versions, newest first: status, which is active,
    /// and how many workspaces use each.
    List {
        /// Template name.
        template: String,
        /// Also list archived versions.
        #[arg(long)]
        include_archived: bool,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        cols: ColumnArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a version whose import succeeded the active one: new
    /// workspaces, `always` workspaces' starts and the prebuild pools use
    /// it. Promoting an older version is a rollback.
    Promote(VersionArgs),
    /// Hide a version from lists and refuse it for new workspaces (the
    /// active version cannot be archived; workspaces on it keep working).
    Archive(VersionArgs),
    /// Undo `archive`.
    Unarchive(VersionArgs),
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Template name.
    pub template: String,
    /// The version's name (or id).
    pub version: String,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub admin: AdminArgs,
}

// One definition for the CLI and the store.
pub use crate::coordinator::store::AutomaticUpdates;

#[derive(Debug, Subcommand)]
pub enum WorkspacesCmd {
    /// Create a workspace and build it.
    Create {
        name: String,
        #[arg(long)]
        template: String,
        /// Owner; `prebuilds` marks prebuild work [default: admin].
        #[arg(long)]
        owner: Option<String>,
        /// Template variable `name=value` (repeatable).
        #[arg(long = "var")]
        vars: Vec<String>,
        /// Template parameter (`coder_parameter`) `name=value` (repeatable).
        #[arg(long = "param")]
        params: Vec<String>,
        /// Apply a `coder_workspace_preset` by name; `--param` may then only
        /// set parameters the preset does not. Without it the template's
        /// default preset applies; `none`: no preset. A preset with
        /// prebuilds claims an eligible prebuilt workspace if there is one.
        #[arg(long)]
        preset: Option<String>,
        /// Build from this template version (name or id) instead of the
        /// active one; a version whose import did not succeed, or an
        /// archived one, is refused.
        #[arg(long, value_name = "VERSION")]
        template_version: Option<String>,
        /// Whether a start moves the workspace to the template's active
        /// version (`always`) or keeps it on its own (`never`).
        #[arg(long, value_enum, default_value = "never")]
        automatic_updates: AutomaticUpdates,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Start a workspace (build with transition start).
    Start(BuildArgs),
    /// Stop a workspace (build with transition stop).
    Stop(BuildArgs),
    /// Start a workspace on the template's active version (whatever its
    /// automatic updates).
    Update(BuildArgs),
    /// Set whether a workspace's starts move it to the template's active
    /// version.
    Autoupdate {
        name: String,
        #[arg(value_enum)]
        policy: AutomaticUpdates,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Destroy a workspace's resources and remove it. Asks first on a
    /// terminal; without one, needs --yes.
    Delete(DeleteArgs),
    /// List workspaces and their latest builds.
    List {
        /// Only this owner's (`--owner prebuilds`: the prebuild pools).
        #[arg(long)]
        owner: Option<String>,
        /// Only this template's.
        #[arg(long)]
        template: Option<String>,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        cols: ColumnArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a workspace, its latest build and its outputs.
    Show {
        name: String,
        #[command(flatten)]
        out: OutputArg,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    pub name: String,
    /// Change a parameter for this build, `name=value` (repeatable; start
    /// only — stop and delete keep the workspace's values).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Stream the build's logs; exit non-zero if it fails.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    #[command(flatten)]
    pub yes: YesArg,
}
