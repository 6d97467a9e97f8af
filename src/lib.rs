//! provisionerd: an external terraform provisioner daemon with tag routing,
//! and the reference coordinator it talks to.
//!
//! Module map (see ARCHITECTURE.md for the loops and who owns which state):
//!
//! | module        | what it holds                                                  |
//! |---------------|----------------------------------------------------------------|
//! | [`proto`]     | generated gRPC types (`proto/provisionerd.proto`); `Debug`     |
//! |               | that redacts job secrets                                       |
//! | [`config`]    | the one clap definition of every command, flag and env var     |
//! | [`exit`]      | process exit codes and their meaning                           |
//! | [`grpc`]      | shared gRPC pieces: size limits, URL rule, credentials         |
//! | [`chunk`]     | blobs over one message: chunks, size and sha256 checks         |
//! | [`tags`]      | tag parsing, validation and the routing (match) rule           |
//! | [`template`]  | Coder-style templates without terraform: parameters, presets,  |
//! |               | workspace tags evaluated per job, parameter resolution         |
//! | [`archive`]   | tar a template directory; extract one safely into a work dir   |
//! | [`process`]   | the only place that spawns processes (process groups, signals) |
//! | [`dirlock`]   | the one directory lock (daemon cache dir, coordinator data dir) |
//! | [`runner`]    | runs one job with terraform; no network, no signals            |
//! | [`daemon`]    | `provisionerd start`: session, acquire loop, logs, recovery    |
//! | [`coordinator`] | `provisionerd serve`: store, dispatcher, gRPC services,      |
//! |               | prebuild reconciler, metrics and readiness, cluster events and |
//! |               | leader election between replicas                               |
//! | [`cli`]       | admin subcommands (keys, templates, workspaces, jobs, daemons, |
//! |               | prebuilds)                                                     |
//! | [`health`]    | the operations endpoint: /metrics, /healthz, /readyz, /drain   |

pub mod archive;
pub mod chunk;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod daemon;
pub mod dirlock;
pub mod exit;
pub mod grpc;
pub mod health;
pub mod process;
pub mod proto;
pub mod runner;
pub mod tags;
pub mod template;

/// The version daemons report when they register.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
