//! Process exit codes. Documented in the README and in `provisionerd start
//! --help`; orchestrators (systemd `RestartPreventExitStatus`, Kubernetes)
//! key off them, so they never change meaning.

/// Clean exit: a drain or cancel completed, or a command succeeded.
pub const OK: u8 = 0;
/// A fatal runtime error (coordinator unreachable for a CLI command, a job
/// that failed under `--wait`, an internal error).
pub const FATAL: u8 = 1;
/// Bad configuration or usage (sysexits EX_USAGE).
pub const CONFIG: u8 = 64;
/// The daemon's cache dir is locked by another daemon (sysexits
/// EX_CANTCREAT).
pub const CACHE_DIR_LOCKED: u8 = 73;
/// The coordinator's data dir is locked by another coordinator: the same
/// code and meaning as [`CACHE_DIR_LOCKED`], for `serve`.
pub const DATA_DIR_LOCKED: u8 = 73;
/// The coordinator's database cannot be used as it is: damaged (SQLite's
/// `quick_check` failed, or it is not a SQLite file) or not a provisionerd
/// database (sysexits EX_DATAERR). Restarting cannot fix it.
pub const DATABASE_UNUSABLE: u8 = 65;
/// The coordinator refused the credentials, or TLS authentication failed
/// either way: its certificate is not trusted, or it refused ours
/// (sysexits EX_NOPERM).
pub const AUTH_REFUSED: u8 = 77;
/// The operator forced the stop (a further signal while canceling):
/// terraform's process group was killed without its grace period, and its
/// state may be incomplete.
pub const FORCED: u8 = 2;
/// The daemon's name is not available: it belongs to another provisioner
/// key, or a daemon of the same key kept it for longer than
/// `--name-conflict-timeout`. Restarting does not help; choose another
/// `--name` or stop the other daemon.
pub const NAME_TAKEN: u8 = 3;
