//! The `provisionerd` binary: parse config, init tracing, install signal
//! handlers, call the library. Nothing else lives here.

use std::io::Write;

use std::process::ExitCode;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use clap::Parser;
use provisionerd::config::{Cli, Command, LogFormat, OnSigterm};
use provisionerd::daemon::{Request, Shutdown, Stage};
use provisionerd::{cli, coordinator, daemon, exit};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::CONFIG
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(cli.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            return ExitCode::from(fail(exit::FATAL, format!("start runtime: {e}")));
        }
    };
    ExitCode::from(rt.block_on(run(cli.command)))
}

/// Logs to stderr: text for people (a terminal), JSON for collectors
/// (anything else), unless `--log-format` says.
fn init_tracing(format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn".into());
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let format = format.unwrap_or(if tty {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // A closed stderr (a pipe whose reader went away) must not take the
        // daemon down: by default tracing reports a failed write with
        // eprintln!, which panics on that same broken stderr.
        .log_internal_errors(false)
        // Colour only for people: logs collected from a pipe stay plain.
        .with_ansi(tty);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(output).init(),
        // Event fields at the top level; the innermost span's fields (a
        // job's `job_id` and `daemon`) under "span".
        LogFormat::Json => registry
            .with(output.json().flatten_event(true).with_span_list(false))
            .init(),
    }
}

fn fail(code: u8, msg: impl std::fmt::Display) -> u8 {
    // Not eprintln!: it panics when stderr is gone, and the exit code
    // matters more than the message then.
    let _ = writeln!(std::io::stderr(), "error: {msg}");
    code
}

async fn run(command: Command) -> u8 {
    let admin = match command {
        Command::Serve(args) => return serve(args).await,
        Command::Start(args) => return start(args).await,
        Command::Keys(c) => cli::keys(c).await,
        Command::Templates(c) => cli::templates(c).await,
        Command::Workspaces(c) => cli::workspaces(c).await,
        Command::Jobs(c) => cli::jobs(c).await,
        Command::Daemons(c) => cli::daemons(c).await,
        Command::Prebuilds(c) => cli::prebuilds(c).await,
        Command::Completion { shell } => match cli::completion(shell) {
            Ok(()) => Ok(()),
            Err(e) => {
                return fail(
                    exit::FATAL,
                    format!("write the {shell} completion script: {e}"),
                );
            }
        },
        Command::Man => match cli::man() {
            Ok(()) => Ok(()),
            Err(e) => return fail(exit::FATAL, format!("write the man page: {e}")),
        },
    };
    match admin {
        Ok(()) => exit::OK,
        Err(e) => fail(e.exit_code(), e),
    }
}

async fn serve(args: provisionerd::config::ServeArgs) -> u8 {
    let cfg = match args.validate() {
        Ok(c) => c,
        Err(e) => return fail(exit::CONFIG, e),
    };
    coordinator::listener::raise_open_file_limit();
    let coordinator = match coordinator::Coordinator::bind(cfg).await {
        Ok(c) => c,
        Err(e) => return fail(e.exit_code(), e),
    };
    let shutdown = CancellationToken::new();
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
    ] {
        let mut sig = match signal(kind) {
            Ok(sig) => sig,
            Err(e) => return fail(exit::FATAL, format!("install {name} handler: {e}")),
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            sig.recv().await;
            tracing::info!("signal received: shutting down");
            shutdown.cancel();
        });
    }
    match coordinator.run(shutdown).await {
        Ok(()) => exit::OK,
        Err(e) => fail(exit::FATAL, e),
    }
}

async fn start(args: provisionerd::config::StartArgs) -> u8 {
    let on_sigterm = args.on_sigterm;
    let cfg = match args.validate() {
        Ok(c) => c,
        Err(e) => return fail(exit::CONFIG, e),
    };
    let shutdown = Shutdown::new();
    let sigterm = match on_sigterm {
        OnSigterm::Drain => Request::Drain,
        OnSigterm::Cancel => Request::Cancel,
    };
    // A repeated signal escalates (drain → cancel → kill); see
    // `Shutdown::request`.
    let handlers = [
        (SignalKind::hangup(), "SIGHUP", Request::Drain),
        (SignalKind::terminate(), "SIGTERM", sigterm),
        (SignalKind::interrupt(), "SIGINT", Request::Cancel),
    ];
    for (kind, name, req) in handlers {
        let mut sig = match signal(kind) {
            Ok(sig) => sig,
            Err(e) => return fail(exit::FATAL, format!("install {name} handler: {e}")),
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            while sig.recv().await.is_some() {
                match shutdown.request(req) {
                    Stage::Draining => tracing::info!(
                        signal = name,
                        "drain requested: taking no more jobs; a running job is finished first"
                    ),
                    Stage::Canceling => tracing::warn!(
                        signal = name,
                        "cancel requested: interrupting the running job, then exiting"
                    ),
                    Stage::Killing => tracing::error!(
                        signal = name,
                        "stop forced: killing terraform's process group now"
                    ),
                    Stage::Running => {}
                }
            }
        });
    }
    // As PID 1 (a container without an init) orphans are re-parented to
    // us and must be reaped. Signals need nothing more: the kernel drops
    // only those PID 1 has no handler for, and ours are installed above.
    if std::process::id() == 1 {
        let mut sig = match signal(SignalKind::child()) {
            Ok(sig) => sig,
            Err(e) => return fail(exit::FATAL, format!("install SIGCHLD handler: {e}")),
        };
        tracing::info!("running as PID 1: reaping orphaned processes");
        tokio::spawn(async move {
            while sig.recv().await.is_some() {
                provisionerd::process::reap_orphans();
            }
        });
    }
    match daemon::run(cfg, shutdown).await {
        Ok(()) => exit::OK,
        Err(e) => fail(e.exit_code(), e),
    }
}
