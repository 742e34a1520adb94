//! Scenario tests of the controller's orchestration against a fake runtime and fake agents:
//! no process, no mariadbd, a paused clock. Each scenario checks what a user relies on: one
//! writable primary at a time, no acknowledged write lost, terms that only grow, and events
//! whose fields say what happened.

mod fake;

use fake::{Scenario, World};
use myset_api::{ChangeKind, EventKind};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(30);

fn kinds(s: &Scenario) -> Vec<EventKind> {
    s.world.events().iter().map(|e| e.kind).collect()
}

fn assert_single_primary(s: &Scenario) {
    let history = s.world.with(|w| w.split_brain.clone());
    assert!(
        history.is_empty(),
        "two writable primaries at once: {history:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_primary_is_replaced_by_the_most_advanced_replica_and_rejoins() {
    let s = Scenario::new(3).await;
    assert_eq!(s.write(5), 5);
    let term = s.term();
    s.world.freeze(0);
    assert!(s.run_until(SOON, |s| s.primary() != 0).await, "no failover");
    assert_eq!(s.term(), term + 1);
    let promoted = s
        .world
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::Promoted)
        .expect("a promoted event");
    assert_eq!(promoted.from, Some(0));
    assert_eq!(promoted.to, Some(s.primary()));
    assert_eq!(promoted.term, Some(term + 1));
    let change = s.controller.state().last_primary_change.unwrap();
    assert_eq!(change.kind, ChangeKind::Failover);
    assert!(s.no_write_lost());
    assert_eq!(s.write(3), 3, "the new primary takes writes");
    // The old primary was killed, restarted held, checked, and rejoins.
    assert!(
        s.run_until(SOON, |s| kinds(s).contains(&EventKind::Rejoined))
            .await
    );
    assert!(
        s.run_until(SOON, |s| s.controller.status().converged())
            .await
    );
    assert_single_primary(&s);
}

/// The controller's own loop, not the passes a scenario drives: a failover comes when the delay
/// since the primary's last good answer runs out, not up to a probe period later (a partitioned
/// primary's probe hangs for its whole timeout, which used to push the judgement that would
/// have seen the delay run out past it, so it came a tick later).
#[tokio::test(start_paused = true)]
async fn the_loop_fails_over_when_the_delay_runs_out_not_a_tick_later() {
    let s = Scenario::new(3).await;
    let delay = Duration::from_millis(s.controller.state().failover_delay_ms);
    // One replica's agent is slow to answer, as on a busy machine: a pass ends when its
    // slowest call does.
    s.world
        .with(|w| w.status_latency.insert(2, Duration::from_millis(300)));
    let running = tokio::spawn(s.controller.clone().run_loop());
    // Just after a probe tick's good answer: the worst case for a tick-only judgement.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let before = s.primary();
    s.world.partition(before);
    let partitioned_at = tokio::time::Instant::now();
    while s.primary() == before && partitioned_at.elapsed() < SOON {
        tokio::time::sleep(Duration::from_millis(10)).await;
        s.world.propagate();
    }
    let took = partitioned_at.elapsed();
    s.controller.request_stop();
    running.await.expect("the loop ends");
    assert_ne!(s.primary(), before, "no failover");
    // The last good answer came at most a probe period before the partition; the judgement
    // then waits for at most one quick check (100 ms, each bounded by 250 ms).
    assert!(
        took <= delay + Duration::from_millis(400),
        "the failover came {took:?} after the partition (delay {delay:?})"
    );
    assert!(s.no_write_lost());
}

#[tokio::test(start_paused = true)]
async fn every_member_gets_ports_of_its_own() {
    let s = Scenario::new(3).await;
    s.controller.request_scale(5, false).await.unwrap();
    assert!(
        s.run_until(SOON, |s| s.controller.status().converged()
            && s.controller.state().members.len() == 5)
            .await
    );
    let state = s.controller.state();
    let ports: std::collections::BTreeSet<u16> = state
        .placements
        .values()
        .flat_map(|p| [p.server.port, p.agent.port])
        .collect();
    assert_eq!(ports.len(), 10, "shared ports: {:?}", state.placements);
}

#[tokio::test(start_paused = true)]
async fn a_switchover_moves_the_primary_without_losing_a_write() {
    let s = Scenario::new(3).await;
    s.write(4);
    let moved_to = s.controller.switchover(Some(2)).await.expect("switchover");
    assert_eq!(moved_to, 2);
    assert_eq!(s.primary(), 2);
    assert!(s.no_write_lost());
    assert_eq!(s.write(2), 2);
    assert!(
        s.run_until(SOON, |s| s.controller.status().converged())
            .await
    );
    assert_eq!(s.world.agent(0).spec.primary, s.world.agent(1).spec.primary);
    assert_single_primary(&s);
    // A switchover to the primary itself is refused, with a reason.
    let err = s.controller.switchover(Some(2)).await.unwrap_err();
    assert!(err.to_string().contains("already the primary"), "{err}");
    assert!(kinds(&s).contains(&EventKind::SwitchoverFailed));
}

#[tokio::test(start_paused = true)]
async fn a_former_primary_with_writes_nobody_else_has_is_recloned_not_rejoined() {
    let s = Scenario::new(3).await;
    s.write(3);
    s.world.partition(0);
    // A client beside the cut-off primary writes once more: the primary commits it, but no
    // replica receives it, so under semi-sync the client never gets an acknowledgement.
    assert_eq!(s.world.write_on(0, 1, true), 0);
    assert!(s.run_until(SOON, |s| s.primary() != 0).await, "no failover");
    s.world.heal(0);
    assert!(
        s.run_until(SOON, |s| kinds(s).contains(&EventKind::Errant))
            .await,
        "the diverged primary was not set aside: {:?}",
        kinds(&s)
    );
    assert!(!kinds(&s).contains(&EventKind::Rejoined));
    // Re-cloned from a healthy member: it now holds exactly the new primary's history.
    assert!(
        s.run_until(SOON, |s| s.controller.status().converged())
            .await
    );
    let (old, new) = (s.world.agent(0), s.world.agent(s.primary()));
    assert_eq!(old.executed, new.executed);
    assert!(s.no_write_lost());
}

#[tokio::test(start_paused = true)]
async fn a_replica_with_errant_transactions_is_never_promoted() {
    let s = Scenario::new(3).await;
    s.write(3);
    // Replica 1 is the most advanced, but only because of a write of its own.
    s.world.with(|w| {
        let a = w.agents.get_mut(&1).unwrap();
        a.executed = (101, a.executed.1 + 5);
        a.received = a.executed;
    });
    s.world.freeze(0);
    assert!(s.run_until(SOON, |s| s.primary() != 0).await);
    assert_eq!(s.primary(), 2, "the errant replica was promoted");
    assert!(s.no_write_lost());
}

#[tokio::test(start_paused = true)]
async fn a_fence_that_fails_on_one_replica_does_not_stop_a_failover_of_a_killed_primary() {
    let s = Scenario::new(3).await;
    s.write(2);
    s.world.with(|w| w.fence_fails.insert(1));
    s.world.freeze(0);
    assert!(s.run_until(SOON, |s| s.primary() != 0).await);
    // The old primary was killed, so the unfenced replica cannot be acking it: promoting the
    // fenced one is safe.
    assert_eq!(s.primary(), 2);
    assert!(s.no_write_lost());
    assert_single_primary(&s);
}

#[tokio::test(start_paused = true)]
async fn a_failed_fence_holds_the_failover_while_the_old_primary_may_still_run() {
    let s = Scenario::new(3).await;
    s.write(2);
    s.world.with(|w| w.fence_fails.insert(1));
    // Cut off, not frozen: it cannot be killed, and replica 1 may still receive from it.
    s.world.partition(0);
    assert!(
        !s.run_until(Duration::from_secs(20), |s| s.primary() != 0)
            .await,
        "promoted while an unfenced replica could still acknowledge the old primary"
    );
    let failed = s
        .world
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::FailoverFailed)
        .expect("the held failover is reported");
    assert!(failed.message.contains("could not be fenced"), "{failed:?}");
    // Once the fence works again, the failover goes through.
    s.world.with(|w| w.fence_fails.clear());
    assert!(s.run_until(SOON, |s| s.primary() != 0).await);
    assert!(s.no_write_lost());
}

#[tokio::test(start_paused = true)]
async fn a_promotion_that_times_out_still_yields_exactly_one_primary() {
    let s = Scenario::new(3).await;
    s.write(2);
    // The agent takes longer than the controller waits; it finishes the promotion anyway.
    s.world.with(|w| w.promote_delay = Duration::from_secs(120));
    s.world.freeze(0);
    assert!(
        s.run_until(Duration::from_secs(300), |s| s.primary() != 0)
            .await
    );
    let chosen = s.primary();
    assert!(
        s.world
            .events()
            .iter()
            .any(|e| e.kind == EventKind::FailoverHeld && e.ordinal == Some(chosen)),
        "the unconfirmed promotion is not reported"
    );
    assert!(
        s.run_until(Duration::from_secs(300), |s| s.world.writable()
            == vec![chosen])
            .await,
        "writable: {:?}",
        s.world.writable()
    );
    assert!(s.no_write_lost());
    assert_single_primary(&s);
}

#[tokio::test(start_paused = true)]
async fn an_agent_at_a_newer_term_moves_the_cluster_past_it() {
    let s = Scenario::new(3).await;
    let term = s.term();
    s.world
        .with(|w| w.agents.get_mut(&2).unwrap().spec.term = term + 7);
    s.tick().await;
    assert!(
        s.term() > term + 7,
        "term {} not past {}",
        s.term(),
        term + 7
    );
    // The agents accept the controller again: every one is at the new term.
    assert!(
        s.run_until(SOON, |s| (0..3)
            .all(|o| s.world.agent(o).spec.term == s.term()))
            .await
    );
    assert_eq!(s.primary(), 0, "no change of primary on that account");
    assert!(s
        .world
        .events()
        .iter()
        .any(|e| e.kind == EventKind::TermAdopted && e.term == Some(term + 8)));
}

#[tokio::test(start_paused = true)]
async fn a_controller_restarted_in_the_middle_of_a_failover_finishes_it() {
    let s = Scenario::new(3).await;
    s.write(3);
    s.world.freeze(0);
    // The dying controller made the new term durable, then was killed before promoting.
    let mut record = s.controller.state();
    record.term += 1;
    s.controller.request_stop();
    let world: std::sync::Arc<World> = s.world.clone();
    drop(s);
    let s = Scenario::resume(world, record.clone());
    assert!(s.run_until(SOON, |s| s.primary() != 0).await, "no failover");
    assert!(s.term() > record.term);
    assert!(s.no_write_lost());
    assert!(
        s.run_until(SOON, |s| s.controller.status().converged())
            .await
    );
    assert_single_primary(&s);
}

#[tokio::test(start_paused = true)]
async fn a_primary_started_late_after_a_full_restart_is_not_failed_over() {
    let s = Scenario::new(3).await;
    s.write(3);
    // The whole cluster stops (`myset down`); its record stays.
    let record = s.controller.state();
    s.controller.request_stop();
    s.world.with(|w| {
        for (o, a) in w.agents.iter_mut() {
            a.running = false;
            w.disk.insert(*o, a.executed);
        }
        // At the next start, the primary cannot be observed for 2.5 s: less than the
        // failover delay, counted from when it is started, not from the controller's start.
        w.slow_start.insert(0, Duration::from_millis(2500));
    });
    let world = s.world.clone();
    drop(s);
    let s = Scenario::resume(world, record);
    // The instances start 1.5 s after the controller (as when their network namespaces are
    // not ready at its first pass).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        s.run_until(SOON, |s| s.controller.status().converged())
            .await,
        "{:?}",
        s.controller.status()
    );
    assert_eq!(
        s.primary(),
        0,
        "the slowly starting primary was failed over"
    );
    assert!(!kinds(&s).contains(&EventKind::Failover));
    assert!(s.no_write_lost());
}

#[tokio::test(start_paused = true)]
async fn a_failover_never_waits_behind_a_slow_scale_down() {
    let s = Scenario::new(3).await;
    s.write(2);
    // Stopping a member gracefully takes two minutes.
    s.world.with(|w| w.stop_delay = Duration::from_secs(120));
    s.controller.request_scale(2, false).await.unwrap();
    s.tick().await;
    s.world.freeze(0);
    let started = tokio::time::Instant::now();
    assert!(s.run_until(SOON, |s| s.primary() != 0).await, "no failover");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(s.primary(), 1, "the leaving member was promoted");
    assert!(
        s.controller.state().members.contains(&2),
        "the removal should still be under way"
    );
    // The removal completes later, on its own.
    assert!(
        s.run_until(Duration::from_secs(300), |s| s
            .controller
            .status()
            .converged()
            && s.controller.state().members.len() == 2)
            .await
    );
    assert!(s.no_write_lost());
    assert_single_primary(&s);
}

#[tokio::test(start_paused = true)]
async fn status_tells_blocked_and_degraded_states() {
    let s = Scenario::new(1).await;
    let status = s.controller.status();
    assert_eq!(status.durability, myset_api::Durability::Semisync);
    assert_eq!(status.durability_in_force, myset_api::Durability::Async);
    assert!(status
        .conditions
        .iter()
        .any(|c| matches!(c, myset_api::Condition::NoFailoverCandidate { .. })));
    assert_eq!(status.controller_pid, Some(std::process::id()));
}

/// Galera: a member cut off, the two others taking writes and then crashing, the first one
/// back alone without a quorum: the controller stops it and recovers the cluster from the
/// runtime's reading of every member's position, bootstrapping the newest.
#[tokio::test(start_paused = true)]
async fn a_galera_cluster_lost_member_by_member_is_recovered_from_the_newest_member() {
    let world = World::new();
    let mut state = myset_api::ClusterState::new("t", 3, "127.0.0.1", 0, 0);
    state.topology = myset_api::Topology::Galera;
    let s = Scenario::resume(world, state);
    assert!(
        s.run_until(SOON, |s| s.controller.status().converged())
            .await,
        "{:?}",
        s.controller.status()
    );
    assert_eq!(s.world.galera_write(0, 5), 5);
    s.world.freeze(0);
    assert_eq!(
        s.world.galera_write(1, 5),
        5,
        "two of three keep the quorum"
    );
    let crash = |o: u32| {
        s.world.with(|w| {
            let a = w.agents.get_mut(&o).unwrap();
            a.running = false;
            w.disk.insert(o, a.executed);
        })
    };
    crash(1);
    crash(2);
    s.world.heal(0);
    assert!(
        s.run_until(Duration::from_secs(60), |s| {
            s.controller.status().converged() && s.world.with(|w| w.galera_view) == 3
        })
        .await,
        "not recovered: {:?}",
        s.world.events()
    );
    let events = s.world.events();
    assert!(events.iter().any(|e| e.kind == EventKind::GaleraNoPrimary));
    let bootstrap = events
        .iter()
        .find(|e| e.kind == EventKind::GaleraBootstrap)
        .expect("a bootstrap");
    assert_eq!(bootstrap.ordinal, Some(1), "{bootstrap:?}");
    for o in 0..3 {
        assert_eq!(s.world.agent(o).executed.1, 10, "member {o}");
    }
    assert_single_primary(&s);
}

/// Runs a settings change or rolling restart while the loop ticks and a client writes.
async fn while_writing<T: Send + 'static>(
    s: &Scenario,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let task = tokio::spawn(work);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    while !task.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rolling restart hangs"
        );
        s.tick().await;
        s.write(1);
    }
    task.await.expect("the rolling task")
}

fn settings(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_static_setting_restarts_replicas_then_switches_over_then_the_old_primary() {
    let s = Scenario::new(3).await;
    s.write(5);
    let c = s.controller.clone();
    let outcome = while_writing(&s, async move {
        c.set_config(
            myset_api::SettingsRole::All,
            settings(&[
                ("innodb_log_buffer_size", "33554432"),
                ("max_connections", "333"),
            ]),
        )
        .await
    })
    .await
    .expect("the settings are rolled out");
    assert_eq!(outcome.restarted, vec![1, 2, 0]);
    let (from, to) = outcome
        .switchover
        .expect("a switchover before the primary's turn");
    assert_eq!(from, 0);
    assert_eq!(s.primary(), to);
    for o in 0..3 {
        let a = s.world.agent(o);
        assert_eq!(a.server_starts, 1, "instance {o} restarted once");
        assert_eq!(a.live["innodb_log_buffer_size"], "33554432");
        assert_eq!(a.live["max_connections"], "333");
    }
    assert_eq!(
        s.controller.state().settings.all["max_connections"],
        "333",
        "the record holds the new settings"
    );
    assert!(s.no_write_lost());
    assert_eq!(s.write(3), 3, "writes go on");
    assert_single_primary(&s);
    let k = kinds(&s);
    assert!(k.contains(&EventKind::RollingRestartDone));
    assert!(!k.contains(&EventKind::Failover));
    let restarted: Vec<Option<u32>> = s
        .world
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::InstanceRestarted)
        .map(|e| e.ordinal)
        .collect();
    assert_eq!(restarted, vec![Some(1), Some(2), Some(0)]);
}

#[tokio::test(start_paused = true)]
async fn a_value_the_server_refuses_is_rolled_back_on_the_first_replica() {
    let s = Scenario::new(3).await;
    s.world.with(|w| {
        w.refused_settings = settings(&[("thread_handling", "bogus")]);
    });
    let c = s.controller.clone();
    let error = while_writing(&s, async move {
        c.set_config(
            myset_api::SettingsRole::All,
            settings(&[("thread_handling", "bogus")]),
        )
        .await
    })
    .await
    .expect_err("the change fails");
    let line = format!("{error:#}");
    assert!(
        line.contains("thread_handling") && line.contains("rolled back"),
        "{line}"
    );
    let first = s.world.agent(1);
    assert_eq!(first.restarts, 1, "one failed start");
    assert!(!first.start_failing, "it runs again with the old settings");
    assert!(!first.live.contains_key("thread_handling"));
    for o in [0, 2] {
        assert_eq!(
            s.world.agent(o).server_starts,
            0,
            "instance {o} was touched"
        );
    }
    assert_eq!(s.primary(), 0);
    assert!(s.controller.state().settings.is_empty());
    assert!(
        s.run_until(SOON, |s| s.controller.status().converged())
            .await
    );
    assert!(kinds(&s).contains(&EventKind::RollingRestartFailed));
    assert!(s.no_write_lost());
}

#[tokio::test(start_paused = true)]
async fn a_dynamic_setting_is_applied_live_to_its_role_only_and_follows_a_promotion() {
    let s = Scenario::new(3).await;
    let c = s.controller.clone();
    let outcome = while_writing(&s, async move {
        c.set_config(
            myset_api::SettingsRole::Replica,
            settings(&[("max_connections", "444")]),
        )
        .await
    })
    .await
    .expect("applied live");
    assert_eq!(outcome.applied_live, vec!["max_connections"]);
    assert!(outcome.restarted.is_empty());
    for o in 0..3 {
        let a = s.world.agent(o);
        assert_eq!(a.server_starts, 0);
        let expected = (o != 0).then(|| "444".to_string());
        assert_eq!(a.live.get("max_connections").cloned(), expected, "{o}");
    }
    // An unknown variable is refused before anything changes.
    let error = s
        .controller
        .set_config(
            myset_api::SettingsRole::All,
            settings(&[("no_such_variable", "1")]),
        )
        .await
        .expect_err("refused");
    assert!(format!("{error}").contains("no_such_variable is not a variable"));
    // The primary's settings go with the role: after a switchover the new primary's spec
    // carries them, the demoted one gets the replicas'.
    s.controller
        .set_config(
            myset_api::SettingsRole::Primary,
            settings(&[("max_connections", "555")]),
        )
        .await
        .expect("applied live");
    s.controller.switchover(Some(2)).await.expect("switchover");
    s.tick().await;
    let promoted = s.world.agent(2).spec;
    assert_eq!(
        promoted.settings.for_role(promoted.role)["max_connections"],
        "555"
    );
    let demoted = s.world.agent(0).spec;
    assert_eq!(
        demoted.settings.for_role(demoted.role)["max_connections"],
        "444"
    );
}
