//! The Galera topology: every member writable, wsrep replicating. There is no failover (the
//! Primary component is Galera's own quorum); what the controller decides is how members start:
//! the first member of a new cluster creates it, the others join a running one, and after a
//! full outage the member holding the newest committed writes bootstraps it again
//! ([`myset_core::galera::choose_bootstrap`]) while the others wait to join.

use crate::controller::Controller;
use myset_api::{ClusterState, Event, EventKind, GaleraStart, Topology};
use myset_core::galera::{Bootstrap, ClusterUuid, MemberData};
use myset_runtime::Runtime;
use std::collections::BTreeMap;

/// How the members that are not running start, decided once per pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GaleraPlan {
    /// A member is Ready: everyone else joins the cluster it is in.
    JoinAll,
    /// `ordinal` forms the cluster (new, or from its recovered position); the others wait.
    Form { ordinal: u32, start: GaleraStart },
    /// Nothing starts; the reason says why.
    Wait(String),
}

impl GaleraPlan {
    /// What `ordinal` does under this plan: Ok(start) or Err(why it waits).
    pub(crate) fn for_member(&self, ordinal: u32) -> Result<GaleraStart, String> {
        match self {
            GaleraPlan::JoinAll => Ok(GaleraStart::Join),
            GaleraPlan::Form { ordinal: o, start } if *o == ordinal => Ok(start.clone()),
            GaleraPlan::Form { ordinal: o, .. } => {
                Err(format!("waiting for member {o} to form the cluster"))
            }
            GaleraPlan::Wait(why) => Err(why.clone()),
        }
    }
}

impl<R: Runtime> Controller<R> {
    /// Decides how stopped members start. `ready`: the Ready members.
    pub(crate) async fn galera_plan(&self, state: &ClusterState, ready: &[u32]) -> GaleraPlan {
        if !ready.is_empty() {
            return GaleraPlan::JoinAll;
        }
        let running: Vec<u32> = state
            .members
            .iter()
            .copied()
            .filter(|&o| self.runtime.agent_pid(o).is_some())
            .collect();
        if !running.is_empty() {
            return self.galera_without_primary(state, &running).await;
        }
        *self
            .galera_no_primary_since
            .lock()
            .expect("no-primary lock") = None;
        if !state.initialized {
            let Some(&first) = state.members.iter().next() else {
                return GaleraPlan::Wait("no members".into());
            };
            return GaleraPlan::Form {
                ordinal: first,
                start: GaleraStart::NewCluster,
            };
        }
        // A full outage: every member's position first, then the choice. Read at once: a
        // runtime may wait a while for each (a Pod to be scheduled, a recovery to run).
        let mut known = BTreeMap::new();
        let mut unreadable = Vec::new();
        let reads = state
            .members
            .iter()
            .map(|&o| async move { (o, self.runtime.galera_position(o).await) });
        for (o, read) in futures::future::join_all(reads).await {
            match read {
                Ok(data) => {
                    known.insert(o, data);
                }
                Err(e) => unreadable.push(format!("{}: {e:#}", state.instance_name(o))),
            }
        }
        let cluster = state
            .galera_uuid
            .as_deref()
            .and_then(|u| ClusterUuid::parse(u).ok());
        let positions: Vec<String> = known
            .iter()
            .map(|(o, d)| match d {
                MemberData::Empty => format!("{o}: no data"),
                MemberData::At {
                    position,
                    safe_to_bootstrap,
                } => format!(
                    "{o}: {position}{}",
                    if *safe_to_bootstrap {
                        " (safe_to_bootstrap)"
                    } else {
                        ""
                    }
                ),
            })
            .collect();
        let force = state.galera_force_bootstrap;
        match myset_core::galera::choose_bootstrap(&state.members, &known, cluster.as_ref(), force)
        {
            Bootstrap::New { ordinal } => GaleraPlan::Form {
                ordinal,
                start: GaleraStart::NewCluster,
            },
            Bootstrap::From {
                ordinal,
                position,
                overriding,
            } => {
                let why = match force {
                    Some(_) if overriding.is_empty() => {
                        "as forced by `up --force-bootstrap` (no known member is further ahead)"
                            .to_string()
                    }
                    Some(_) => {
                        let lost: Vec<String> = overriding
                            .iter()
                            .map(|(o, seqno)| {
                                format!("{} at seqno {seqno}", state.instance_name(*o))
                            })
                            .collect();
                        format!(
                            "as forced by `up --force-bootstrap`: writes newer than its own on {} are lost",
                            lost.join(", ")
                        )
                    }
                    None => "the newest position".to_string(),
                };
                self.record_event(
                    Event::new(
                        EventKind::GaleraBootstrap,
                        format!(
                            "after a full outage, {} bootstraps the cluster from {position}, {why}; positions: [{}]",
                            state.instance_name(ordinal),
                            positions.join(", ")
                        ),
                    )
                    .ordinal(ordinal),
                );
                GaleraPlan::Form {
                    ordinal,
                    start: GaleraStart::Bootstrap {
                        position: position.to_string(),
                    },
                }
            }
            Bootstrap::Refused(refusal) => {
                let mut why = format!("no automatic bootstrap: {refusal}");
                if !unreadable.is_empty() {
                    why.push_str(&format!(" (unreadable: {})", unreadable.join("; ")));
                }
                let mut held = self.hold_reason.lock().expect("hold lock");
                if held.as_deref() != Some(why.as_str()) {
                    *held = Some(why.clone());
                    drop(held);
                    self.record_event(Event::new(EventKind::GaleraBootstrapRefused, why.clone()));
                }
                GaleraPlan::Wait(why)
            }
        }
    }

    /// No member is Ready and some run. If one is forming the cluster, or is in a Primary
    /// component (a donor, say), wait. If none is (the others died, so no quorum is left, or a
    /// joiner waits on a donor that died), they can never form one alone: once that has lasted
    /// the failover delay, stop them, so the next pass recovers the cluster as after a full
    /// outage, from every member's position.
    async fn galera_without_primary(&self, state: &ClusterState, running: &[u32]) -> GaleraPlan {
        let cut_off = {
            let observed = self.observed.lock().expect("observed lock");
            running.iter().all(|o| {
                let ob = observed.get(o);
                let forming = ob
                    .and_then(|ob| ob.sent.as_ref()?.galera.as_ref())
                    .is_some_and(|g| g.start != GaleraStart::Join);
                outside_any_primary(
                    ob.and_then(|ob| ob.status.as_ref()?.galera.as_ref()),
                    forming,
                )
            })
        };
        let since = {
            let mut since = self
                .galera_no_primary_since
                .lock()
                .expect("no-primary lock");
            if !cut_off {
                *since = None;
                return GaleraPlan::Wait(
                    "a member is starting; the others join once it is Ready".into(),
                );
            }
            *since.get_or_insert_with(tokio::time::Instant::now)
        };
        let delay = std::time::Duration::from_millis(state.failover_delay_ms);
        if since.elapsed() < delay {
            return GaleraPlan::Wait("the running members have no Primary component".into());
        }
        let names: Vec<String> = running.iter().map(|&o| state.instance_name(o)).collect();
        self.record_event(Event::new(
            EventKind::GaleraNoPrimary,
            format!(
                "{} alone without a Primary component for {}ms (the other members are gone): stopping them to recover the cluster from every member's position",
                names.join(", "),
                since.elapsed().as_millis()
            ),
        ));
        futures::future::join_all(running.iter().map(|&o| self.runtime.stop(o))).await;
        *self
            .galera_no_primary_since
            .lock()
            .expect("no-primary lock") = None;
        GaleraPlan::Wait("recovering after members without a Primary component stopped".into())
    }

    /// Galera: the next recovery after a full outage bootstraps `ordinal` whatever the other
    /// members hold (their newer writes are lost; the `galera-bootstrap` event names them), as
    /// `myset up --force-bootstrap` does for a stopped local cluster. For when the majority
    /// rule refuses (members that cannot be read). Refused on a cluster of another topology,
    /// for a non-member, and while a member is Ready (the cluster runs: nothing to recover).
    pub async fn request_force_bootstrap(&self, ordinal: u32) -> anyhow::Result<()> {
        let state = self.state();
        if state.topology != Topology::Galera {
            anyhow::bail!(
                "a forced bootstrap is for Galera clusters; this one uses the {} topology",
                state.topology
            );
        }
        if !state.members.contains(&ordinal) {
            let members: Vec<String> = state.members.iter().map(u32::to_string).collect();
            anyhow::bail!(
                "member {ordinal} cannot bootstrap: not a member (members: {})",
                members.join(", ")
            );
        }
        if let Some(&ready) = self.ready_ordinals().first() {
            anyhow::bail!(
                "{} is Ready: the cluster runs, so there is nothing to bootstrap",
                state.instance_name(ready)
            );
        }
        self.update_state(|s| s.galera_force_bootstrap = Some(ordinal))
            .await?;
        // A refusal reported before is news again once the force is used or refused anew.
        *self.hold_reason.lock().expect("hold lock") = None;
        self.wake.notify_one();
        Ok(())
    }

    /// Galera: turns causal reads for the user's sessions on or off while the cluster runs
    /// (Kubernetes' `spec.causalReads`; locally `up --causal-reads` sets it in the stopped
    /// cluster's record). Members get it in their next spec; a server applies it at its next
    /// start (it is in the option file).
    pub async fn request_causal_reads(&self, on: bool) -> anyhow::Result<()> {
        let before = self.state();
        if before.causal_reads == on {
            return Ok(());
        }
        if on && before.topology != Topology::Galera {
            anyhow::bail!(
                "causal reads are for Galera clusters; this one uses the {} topology",
                before.topology
            );
        }
        self.update_state(|s| s.causal_reads = on).await?;
        self.event(
            EventKind::SettingsChanged,
            format!(
                "causal reads {} -> {}; each member's server applies it at its next start",
                switch(before.causal_reads),
                switch(on)
            ),
        );
        self.wake.notify_one();
        Ok(())
    }

    /// Records the cluster's UUID the first time a Ready member reports it, and forgets a
    /// forced bootstrap once the cluster is formed again.
    pub(crate) async fn galera_bookkeeping(&self) -> anyhow::Result<()> {
        let state = self.state();
        if state.galera_force_bootstrap.is_some() && !self.ready_ordinals().is_empty() {
            self.update_state(|s| s.galera_force_bootstrap = None)
                .await?;
        }
        if state.galera_uuid.is_some() {
            return Ok(());
        }
        let reported = {
            let observed = self.observed.lock().expect("observed lock");
            observed
                .values()
                .filter(|ob| ob.readiness.is_ready())
                .filter_map(|ob| ob.status.as_ref()?.galera.as_ref())
                .map(|g| g.cluster_uuid.clone())
                .next()
        };
        if let Some(uuid) = reported {
            self.update_state(|s| s.galera_uuid = Some(uuid)).await?;
        }
        Ok(())
    }
}

/// Whether a running Galera member, while no member is Ready, can be in no Primary component:
/// it says so, or its server does not answer (starting, joining, its agent unreachable) and
/// it is not the member forming the cluster. A joiner can only be waiting on a donor, and a
/// live donor would itself answer from a Primary component.
fn outside_any_primary(galera: Option<&myset_api::GaleraStatus>, forming: bool) -> bool {
    match galera {
        Some(g) => !g.primary_component,
        None => !forming,
    }
}

fn switch(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_member_forming_the_cluster_or_in_a_primary_component_is_waited_for() {
        let status = |primary_component| myset_api::GaleraStatus {
            state: myset_api::WsrepState::Synced,
            primary_component,
            cluster_size: 1,
            seqno: 1,
            cluster_uuid: String::new(),
            conf_id: 1,
        };
        assert!(!outside_any_primary(Some(&status(true)), false), "a donor");
        assert!(
            outside_any_primary(Some(&status(false)), false),
            "a survivor alone"
        );
        assert!(
            !outside_any_primary(None, true),
            "the member forming the cluster"
        );
        assert!(
            outside_any_primary(None, false),
            "a joiner whose donor died, or an agent that does not answer"
        );
    }
}
