//! The cluster record kept in the `MySet`'s status, written with optimistic concurrency.
//!
//! Locally the record is `cluster.json`, written by the one controller holding the cluster's
//! lock. On Kubernetes it is `status.record`, and every write is a `PUT .../status` carrying
//! the resource version last seen: if anyone else wrote the status since, the API server
//! answers 409. A conflict caused only by others' fields (a spec edit, a label) is retried
//! on the fresh object; a conflict where the record itself changed means another operator
//! acted on this cluster, and the write fails, so nothing is done on a stale record.

use crate::crd::{InstanceStatus, MySet, MySetStatus, PrimaryChange};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, PostParams};
use myset_api::ClusterState;

/// How often a write is retried after conflicts that left the record alone.
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("the MySet {0} no longer exists")]
    Gone(String),
    #[error(
        "the cluster record of MySet {name} was changed by another writer (its term is {theirs}, ours {ours}); this operator stops acting on the stale record"
    )]
    Superseded {
        name: String,
        ours: u64,
        theirs: u64,
    },
    #[error("the status of MySet {name} kept changing under {attempts} writes; try again")]
    Busy { name: String, attempts: usize },
    #[error("cannot write the status of MySet {name}: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The one writer of a `MySet`'s status in this operator.
pub struct StatusStore {
    api: Api<MySet>,
    name: String,
    /// The object as last read or written: its resource version is the precondition of the
    /// next write. The lock is what serialises this operator's status writes, so it is held
    /// across the write by design (as the controller holds its record lock while persisting).
    known: tokio::sync::Mutex<MySet>,
}

impl StatusStore {
    /// Starts from `myset` as read from the API server (its resource version included).
    pub fn new(api: Api<MySet>, myset: MySet) -> Self {
        StatusStore {
            api,
            name: myset.metadata.name.clone().unwrap_or_default(),
            known: tokio::sync::Mutex::new(myset),
        }
    }

    /// The record as last read or written.
    pub async fn record(&self) -> Option<ClusterState> {
        record_of(&*self.known.lock().await)
    }

    /// Persists the controller's record, with the fields people read copied from it.
    pub async fn save_record(&self, record: &ClusterState) -> Result<(), StatusError> {
        self.write(true, |status| {
            status.primary = Some(record.primary);
            status.term = record.term;
            status.last_primary_change =
                record.last_primary_change.as_ref().map(|c| PrimaryChange {
                    time: Time(timestamp(c.at_ms)),
                    term: c.term,
                    from: c.from,
                    to: c.to,
                    kind: c.kind,
                    reason: c.reason.clone(),
                });
            status.record = Some(record.clone());
        })
        .await
    }

    /// Writes what was observed; the record is left as it is.
    pub async fn report(
        &self,
        instances: Vec<InstanceStatus>,
        conditions: Vec<Condition>,
        observed_generation: Option<i64>,
    ) -> Result<(), StatusError> {
        self.write(false, |status| {
            status.instances = instances.clone();
            status.conditions = merge_conditions(&status.conditions, &conditions);
            status.observed_generation = observed_generation;
        })
        .await
    }

    /// `change` is applied to the latest known status and written with its resource version.
    /// With `guards_record`, a conflict where the stored record differs from the one this
    /// writer knows is fatal; otherwise (an observation) the write goes on top of it.
    async fn write(
        &self,
        guards_record: bool,
        change: impl Fn(&mut MySetStatus),
    ) -> Result<(), StatusError> {
        let mut known = self.known.lock().await;
        for _ in 0..CONFLICT_RETRIES {
            let mut next = known.clone();
            change(next.status.get_or_insert_with(MySetStatus::default));
            match self
                .api
                .replace_status(&self.name, &PostParams::default(), &next)
                .await
            {
                Ok(written) => {
                    *known = written;
                    return Ok(());
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    return Err(StatusError::Gone(self.name.clone()))
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let fresh = self
                        .api
                        .get_opt(&self.name)
                        .await
                        .map_err(|source| self.api_error(source))?
                        .ok_or_else(|| StatusError::Gone(self.name.clone()))?;
                    let (ours, theirs) = (record_of(&known), record_of(&fresh));
                    if guards_record && ours != theirs {
                        return Err(StatusError::Superseded {
                            name: self.name.clone(),
                            ours: ours.map_or(0, |r| r.term),
                            theirs: theirs.map_or(0, |r| r.term),
                        });
                    }
                    *known = fresh;
                }
                Err(source) => return Err(self.api_error(source)),
            }
        }
        Err(StatusError::Busy {
            name: self.name.clone(),
            attempts: CONFLICT_RETRIES,
        })
    }

    fn api_error(&self, source: kube::Error) -> StatusError {
        StatusError::Api {
            name: self.name.clone(),
            source,
        }
    }
}

fn record_of(myset: &MySet) -> Option<ClusterState> {
    myset.status.as_ref().and_then(|s| s.record.clone())
}

fn timestamp(at_ms: u64) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_millisecond(at_ms as i64).unwrap_or_default()
}

/// The new conditions, keeping each one's `lastTransitionTime` while its status is unchanged,
/// as Kubernetes conventions ask.
fn merge_conditions(old: &[Condition], new: &[Condition]) -> Vec<Condition> {
    new.iter()
        .map(|c| match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status => Condition {
                last_transition_time: o.last_transition_time.clone(),
                ..c.clone()
            },
            _ => c.clone(),
        })
        .collect()
}
