//! One active operator at a time: a `coordination.k8s.io/v1` Lease, taken and renewed with
//! optimistic concurrency as client-go's leader election does. Replicas of the operator that
//! do not hold it wait; one that cannot renew in time stops acting (the process exits, and
//! its Deployment restarts it as a follower).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    /// Who this operator is: its Pod name, unique among the replicas.
    pub identity: String,
    /// A holder that has not renewed for this long has lost the lease.
    pub duration: Duration,
    /// How often the holder renews, and a follower tries to take it.
    pub retry: Duration,
}

impl LeaseSettings {
    pub fn new(identity: String) -> Self {
        LeaseSettings {
            name: "myset-operator".into(),
            identity,
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        }
    }
}

/// What to do about the lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// Nobody holds it, or its holder stopped renewing: take it over.
    Take,
    /// This operator holds it: renew it.
    Renew,
    /// Another operator holds it and renews it.
    Wait { holder: String },
}

/// Decides from the Lease's spec (None: no Lease yet) at `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseStep {
    let Some(spec) = spec else {
        return LeaseStep::Take;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return LeaseStep::Take;
    }
    if holder == me {
        return LeaseStep::Renew;
    }
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    match last {
        Some(last) if last.as_second() + duration > now.as_second() => LeaseStep::Wait {
            holder: holder.to_string(),
        },
        _ => LeaseStep::Take,
    }
}

/// The Lease's spec after `step` by `me` at `now`.
pub fn next_spec(
    current: Option<&LeaseSpec>,
    step: &LeaseStep,
    settings: &LeaseSettings,
    now: Timestamp,
) -> LeaseSpec {
    let mut spec = current.cloned().unwrap_or_default();
    if *step == LeaseStep::Take {
        spec.holder_identity = Some(settings.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        let taken_over = current.and_then(|c| c.holder_identity.as_ref()).is_some();
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(taken_over));
    }
    spec.lease_duration_seconds = Some(settings.duration.as_secs() as i32);
    spec.renew_time = Some(MicroTime(now));
    spec
}

/// Held while this operator is the leader; `lost` resolves once it may no longer act.
pub struct Leadership {
    lost: watch::Receiver<bool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Leadership {
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Waits until this operator holds the lease, then keeps renewing it in the background.
pub async fn acquire(api: Api<Lease>, settings: LeaseSettings) -> Leadership {
    loop {
        match try_step(&api, &settings).await {
            Ok(LeaseStep::Take | LeaseStep::Renew) => break,
            Ok(LeaseStep::Wait { holder }) => {
                tracing::info!(%holder, "another operator leads; waiting for its lease to lapse")
            }
            Err(e) => tracing::warn!("cannot take the operator lease: {e}"),
        }
        tokio::time::sleep(settings.retry).await;
    }
    tracing::info!(identity = %settings.identity, "leading");
    let (tx, lost) = watch::channel(false);
    let renewer = tokio::spawn(async move {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(settings.retry).await;
            match try_step(&api, &settings).await {
                Ok(LeaseStep::Renew | LeaseStep::Take) => renewed = tokio::time::Instant::now(),
                Ok(LeaseStep::Wait { holder }) => {
                    tracing::error!(%holder, "the operator lease was taken over");
                    break;
                }
                Err(e) => tracing::warn!("cannot renew the operator lease: {e}"),
            }
            // Stop before the lease can lapse, so two leaders never act at once.
            if renewed.elapsed() + settings.retry >= settings.duration {
                tracing::error!("the operator lease could not be renewed in time");
                break;
            }
        }
        let _ = tx.send(true);
    });
    Leadership { lost, renewer }
}

/// Reads the Lease and takes or renews it if it may; a write that loses a race (409) is
/// reported as a wait for the winner.
pub async fn try_step(api: &Api<Lease>, settings: &LeaseSettings) -> kube::Result<LeaseStep> {
    let current = api.get_opt(&settings.name).await?;
    let now = Timestamp::now();
    let step = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &settings.identity,
        now,
    );
    if let LeaseStep::Wait { .. } = step {
        return Ok(step);
    }
    let spec = next_spec(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &step,
        settings,
        now,
    );
    let written = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&settings.name, &PostParams::default(), &lease)
                .await
        }
    };
    match written {
        Ok(_) => Ok(step),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let holder = api
                .get_opt(&settings.name)
                .await?
                .and_then(|l| l.spec?.holder_identity)
                .unwrap_or_default();
            Ok(LeaseStep::Wait { holder })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_or_empty_lease_is_taken() {
        assert_eq!(decide(None, "a", at(0)), LeaseStep::Take);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", at(0)),
            LeaseStep::Take
        );
    }

    #[test]
    fn the_holder_renews_and_others_wait_until_it_lapses() {
        let lease = held_by("a", 0);
        assert_eq!(decide(Some(&lease), "a", at(100)), LeaseStep::Renew);
        assert_eq!(
            decide(Some(&lease), "b", at(14)),
            LeaseStep::Wait { holder: "a".into() }
        );
        assert_eq!(decide(Some(&lease), "b", at(15)), LeaseStep::Take);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let settings = LeaseSettings::new("b".into());
        let old = held_by("a", 0);
        let taken = next_spec(Some(&old), &LeaseStep::Take, &settings, at(20));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        let renewed = next_spec(Some(&taken), &LeaseStep::Renew, &settings, at(22));
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(22))));
        let first = next_spec(None, &LeaseStep::Take, &settings, at(0));
        assert_eq!(first.lease_transitions, Some(0));
    }
}
