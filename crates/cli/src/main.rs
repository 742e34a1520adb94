//! `myset`: a thin binary over the myset crates.

/// `println!` that ends the process quietly when stdout's reader has gone away
/// (`myset events | head`), where `println!` would panic. See [`display::print_line`].
macro_rules! say {
    () => { $crate::display::print_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::display::print_line(format_args!($($arg)*)) };
}

mod args;
mod backup;
mod chaos;
mod commands;
mod display;
mod everyday;
mod kube;
mod operator;
mod settings;
mod wait;

use args::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // One TLS provider for the Kubernetes client, chosen here: when a build enables both of
    // rustls's providers (feature unification across a workspace can), rustls cannot pick one
    // itself and panics at the first connection. Failing means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::parse_args(args) {
        Ok(cli) => cli,
        // Help and version to stdout with success; a mistake to stderr with exit code 2, in
        // clap's full words: what is missing or unknown, "did you mean", the allowed values
        // and the usage line, which a first line alone would cut off.
        Err(e) => e.exit(),
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
    }
    // SIGPIPE stays ignored, as Rust sets it, in every command: a write to a pipe or socket
    // whose reader went away is an error where it happens, never a silent death. (With its
    // default action the chaos harness died mid-run, and a backup fed to an mbstream that
    // stopped reading would end without a word.) Output to stdout goes through `say!` and
    // `display::write_out`, which end quietly when stdout's reader has gone (`| head`).
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
            eprintln!("error: {}", display::error_line(&e));
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
