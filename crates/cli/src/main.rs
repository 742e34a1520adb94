//! `myset`: a thin binary over the myset crates.

mod args;
mod backup;
mod chaos;
mod commands;
mod display;
mod kube;
mod operator;
mod wait;

use args::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // One TLS provider for the Kubernetes client, chosen here: when a build enables both of
    // rustls's providers (feature unification across a workspace can), rustls cannot pick one
    // itself and panics at the first connection. Failing means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let program = if args
        .first()
        .is_some_and(|argv0| args::invoked_as_kubectl_plugin(argv0))
    {
        "kubectl myset"
    } else {
        "myset"
    };
    let cli = match Cli::parse_args(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // One line: clap's first line names the problem; point at --help for the fix.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see {program} --help)");
            return ExitCode::from(2);
        }
    };
    init_tracing(&cli.command);
    if matches!(
        cli.command,
        Command::Agent { .. } | Command::Controller { .. }
    ) {
        // Daemons have no terminal. When a controller dies while one of its agents is stopped
        // (SIGSTOP, a frozen host), the agent's process group becomes orphaned and the kernel
        // sends it SIGHUP, whose default action would kill the agent and its keeper with it.
        // SAFETY: setting a signal's disposition before any thread starts.
        unsafe {
            nix::libc::signal(nix::libc::SIGHUP, nix::libc::SIG_IGN);
        }
    } else if !matches!(cli.command, Command::Backup { .. } | Command::Restore(_)) {
        // A CLI whose output is piped into `head` should end quietly when the pipe closes,
        // as other command-line tools do, not panic on a failed print. Not the commands that
        // feed backups to mbstream: a garbled backup makes it stop reading, and that must be
        // an error they report, not a silent death by SIGPIPE.
        // SAFETY: setting a signal's disposition to the default before any thread starts.
        unsafe {
            nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL);
        }
    }
    // Entering a network namespace only moves the calling thread, so it happens before the
    // async runtime starts its threads (they inherit it).
    let host_netns = match enter_netns(&cli.command) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli, host_netns)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// For an agent told to run in a network namespace: enters it, and returns a handle on the
/// namespace it came from (where its cluster's controller runs).
fn enter_netns(command: &Command) -> anyhow::Result<Option<std::os::fd::OwnedFd>> {
    use anyhow::Context;
    let Command::Agent {
        netns: Some(name), ..
    } = command
    else {
        return Ok(None);
    };
    let here = std::fs::File::open("/proc/self/ns/net").context("cannot open /proc/self/ns/net")?;
    let path = std::path::Path::new("/run/netns").join(name);
    let target = std::fs::File::open(&path)
        .with_context(|| format!("no network namespace {}", path.display()))?;
    nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("cannot enter network namespace {name}"))?;
    Ok(Some(here.into()))
}

/// Daemons log to their log files (stderr is redirected there); the CLI stays quiet.
fn init_tracing(command: &Command) {
    let default = match command {
        Command::Agent { .. } | Command::Controller { .. } => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MYSET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
