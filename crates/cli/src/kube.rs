//! `myset --kube ...` and `kubectl myset ...`: status, sql, switchover, scale and events on a
//! `MySet`, thin over `myset_operator::client`, printed by the same code as for a local
//! cluster.

use crate::args::{Cli, Command, KUBECTL_PLUGIN};
use crate::commands::{
    print_events, print_status, sql_over, sql_text, SqlOptions, SQL_CONNECT_TIMEOUT,
};
use crate::display;
use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use myset_operator::client;
use std::time::Duration;

/// How long `switchover` waits for the operator to act on its request.
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let namespace = cli.namespace.as_deref();
    let name = match &cli.command {
        Command::Status { name, .. }
        | Command::Sql { name, .. }
        | Command::Scale { name, .. }
        | Command::Switchover { name, .. }
        | Command::Events { name, .. } => name.name.clone(),
        other => bail!("{}", not_on_kubernetes(other)),
    };
    validate_name(&name)?;
    let (kube, ns) = client::connect(namespace).await?;
    match cli.command {
        Command::Status { output, .. } => {
            let myset = client::get_myset(&kube, &ns, &name).await?;
            print_status(&client::cluster_status(&myset), output)?;
            if output == crate::args::Output::Table {
                for warning in client::warnings(&myset) {
                    say!("warning: {warning}");
                }
            }
            Ok(())
        }
        Command::Events {
            output,
            follow: false,
            ..
        } => print_events(&client::events(&kube, &ns, &name).await?, output),
        Command::Events { output, .. } => {
            // No watch here: the Events are polled, and those newer than the last printed
            // follow (a Kubernetes Event's time is the cursor).
            let mut printed_until = f64::MIN;
            loop {
                let events = client::events(&kube, &ns, &name).await?;
                let fresh: Vec<_> = events
                    .into_iter()
                    .filter(|e| e.at > printed_until)
                    .collect();
                if let Some(last) = fresh.last() {
                    printed_until = last.at;
                }
                print_events(&fresh, output)?;
                tokio::time::sleep(crate::everyday::FOLLOW_POLL).await;
            }
        }
        Command::Scale {
            replicas,
            delete_data,
            timeout,
            ..
        } => {
            let bar = spinner();
            let result = client::scale(
                &kube,
                &ns,
                &name,
                replicas,
                delete_data,
                Duration::from_secs(timeout),
                |status| bar.set_message(summary(status)),
            )
            .await;
            bar.finish_and_clear();
            display::status_table(&result?);
            Ok(())
        }
        Command::Switchover { to, .. } => {
            let done = client::switchover(&kube, &ns, &name, to, SWITCHOVER_TIMEOUT).await?;
            display::switchover(&done.name, done.from, done.to, done.term);
            Ok(())
        }
        Command::Sql {
            target,
            execute,
            verbose,
            timeout,
            ..
        } => {
            let statements = sql_text(execute).await?;
            // The MySet first: its absence is the error to report, not its Secret's.
            client::get_myset(&kube, &ns, &name).await?;
            let (user, password) = client::user_credentials(&kube, &ns, &name).await?;
            let (what, stream) =
                client::sql_stream(&kube, &ns, &name, &target, SQL_CONNECT_TIMEOUT).await?;
            sql_over(
                stream,
                &what,
                &user,
                &password,
                &statements,
                SqlOptions {
                    timeout: Duration::from_secs(timeout),
                    verbose,
                },
                // The operator issues no certificates yet: its servers take plain connections.
                None,
            )
            .await
        }
        _ => unreachable!("other commands were refused above"),
    }
}

/// Why a command does not run on Kubernetes, and what to do there instead.
fn not_on_kubernetes(command: &Command) -> String {
    let what = match command {
        Command::Up(_) => {
            "`myset up` runs a local cluster; on Kubernetes, apply a MySet (see deploy/example-myset.yaml)"
        }
        Command::Down { .. } => {
            "`myset down` stops a local cluster; on Kubernetes the operator keeps a MySet running: scale it, or delete it with kubectl delete myset NAME"
        }
        Command::Destroy { .. } => {
            "`myset destroy` deletes a local cluster; on Kubernetes, delete the MySet with kubectl delete myset NAME (its PVCs go with it)"
        }
        Command::Kill { .. } => {
            "`myset kill` kills a local instance; on Kubernetes, delete its Pod with kubectl delete pod NAME-ORDINAL"
        }
        Command::Partition { .. } => {
            "`myset partition` cuts a local instance off its network namespace; it has no Kubernetes counterpart"
        }
        Command::Chaos { .. } => {
            "`myset chaos` runs on a local cluster of its own; it does not run on Kubernetes"
        }
        Command::Config { .. } | Command::Restart { .. } => {
            "`myset config` and `myset restart` run on a local cluster; on Kubernetes, set server options in the MySet's spec.server (all, primary, replica), which each member takes at its next start"
        }
        _ => "this command does not run on Kubernetes",
    };
    format!("{what} (--kube and {KUBECTL_PLUGIN} serve status, sql, switchover, scale and events)")
}

/// A Kubernetes object name (RFC 1123 subdomain), checked before it goes into a URL.
fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        bail!("invalid MySet name {name:?}: use lowercase letters, digits, '-' and '.' (for example demo)");
    }
    Ok(())
}

fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} {wide_msg}").expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn summary(status: &myset_api::ClusterStatus) -> String {
    status
        .instances
        .iter()
        .map(|i| {
            let ready = if i.ready { "ready" } else { "not ready" };
            format!("{}: {ready}", i.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_objects_are_refused() {
        for name in ["demo", "db-1", "a.b"] {
            assert!(validate_name(name).is_ok(), "{name}");
        }
        for name in ["", "../x", "a/b", "A", "-a", "a-", "a b"] {
            assert!(validate_name(name).is_err(), "{name}");
        }
    }
}
