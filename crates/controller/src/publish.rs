//! Endpoints carried outside the controller's own proxies (the local runtime's nftables). The
//! controller still decides where rw and ro route: a publisher follows the very lists the
//! proxies follow, so no routing decision is made twice.

use crate::controller::{Controller, Step};
use myset_api::{Address, EndpointPath};
use myset_runtime::Runtime;
use std::sync::Arc;
use std::time::Duration;

/// Routes the rw and ro endpoints where the controller says. The methods block (they run
/// tools); the controller calls them off the async threads, one at a time.
pub trait EndpointPublisher: Send + Sync + 'static {
    /// How it carries the endpoints, for `status`.
    fn path(&self) -> EndpointPath;
    /// Makes new connections to rw go to `rw` and those to ro spread over `ro`, replacing
    /// what was published before in one step. None or empty: such connections are refused.
    fn publish(&self, rw: Option<&Address>, ro: &[Address]) -> anyhow::Result<()>;
    /// Ends the connections still open through rw to `server`, which no longer takes writes.
    fn cut(&self, server: &Address) -> anyhow::Result<()>;
    /// Removes everything published; new connections are refused.
    fn withdraw(&self) -> anyhow::Result<()>;
}

/// The rw server whose connections must be cut once `next` is published in place of
/// `published`: the one rw no longer goes to.
pub(crate) fn to_cut<'a>(
    published: Option<&'a Address>,
    next: Option<&Address>,
) -> Option<&'a Address> {
    published.filter(|old| Some(*old) != next)
}

/// How long a failed publication waits before it is tried again with the latest lists.
const RETRY: Duration = Duration::from_secs(1);

/// How often, with endpoints the kernel carries, each member `ro` routes to is checked the way
/// the proxy checks a member before handing it a client (it connects and greets in time). The
/// kernel cannot skip a dead or hung member as the proxy does, so such a member leaves the
/// lists within this period plus the greeting bound instead of at the next probe.
const MEMBER_CHECK: Duration = Duration::from_millis(100);

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow::anyhow!("endpoint publisher panicked: {e}"))?
}

impl<R: Runtime> Controller<R> {
    /// Publishes the rw and ro lists each time they change, until the controller stops; then
    /// withdraws them. Cuts the connections to a server rw left once the change is published,
    /// so a client that reconnects reaches the new primary.
    pub(crate) async fn follow_endpoints(self: Arc<Self>, publisher: Arc<dyn EndpointPublisher>) {
        let mut rw = self.rw.subscribe();
        let mut ro = self.ro.subscribe();
        let mut published_rw: Option<Address> = None;
        tokio::spawn(self.clone().check_members());
        // Until the first observation, ro would be empty: a table left by a controller that
        // died keeps routing to the members it knew meanwhile, rather than ro being refused.
        let first_observation = self.timing.probe_period + self.timing.probe_timeout;
        tokio::select! {
            _ = tokio::time::timeout(first_observation, ro.changed()) => {}
            _ = self.stop.cancelled() => {}
        }
        loop {
            let next_rw = rw.borrow_and_update().first().cloned();
            let next_ro = ro.borrow_and_update().clone();
            let result = {
                let (p, w) = (publisher.clone(), next_rw.clone());
                blocking(move || p.publish(w.as_ref(), &next_ro)).await
            };
            let failed = result.is_err();
            if result.is_ok() {
                if let Some(old) = to_cut(published_rw.as_ref(), next_rw.as_ref()).cloned() {
                    let p = publisher.clone();
                    let server = old.clone();
                    if let Err(e) = blocking(move || p.cut(&server)).await {
                        tracing::warn!(%old, "cannot cut rw's connections: {e:#}");
                    }
                }
                published_rw = next_rw;
            }
            self.report_step(Step::Endpoints, result);
            let retry = async {
                if failed {
                    tokio::time::sleep(RETRY).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = rw.changed() => {}
                _ = ro.changed() => {}
                _ = retry => {}
                _ = self.stop.cancelled() => break,
            }
        }
        let p = publisher.clone();
        if let Err(e) = blocking(move || p.withdraw()).await {
            self.report_step(Step::Endpoints, Err(e));
        }
    }
}

impl<R: Runtime> Controller<R> {
    /// Checks every member `ro` routes to each [`MEMBER_CHECK`], and takes one that refuses
    /// or does not greet in time out of the lists, until the controller stops.
    async fn check_members(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(MEMBER_CHECK) => {}
                _ = self.stop.cancelled() => return,
            }
            let ro = self.ro.borrow().clone();
            let count = ro.len();
            let checks = ro.iter().map(|backend| async move {
                (backend, crate::proxy::check_greets(backend, count).await)
            });
            let failed: Vec<_> = futures::future::join_all(checks)
                .await
                .into_iter()
                .filter_map(|(backend, result)| Some((backend.clone(), result.err()?)))
                .collect();
            if !failed.is_empty() {
                let state = self.state();
                for (backend, why) in failed {
                    self.take_out_server(&state, &backend, why);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> Address {
        Address {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn only_a_server_rw_leaves_is_cut() {
        assert_eq!(to_cut(Some(&at(1)), Some(&at(2))), Some(&at(1)));
        assert_eq!(to_cut(Some(&at(1)), None), Some(&at(1)));
        assert_eq!(to_cut(Some(&at(1)), Some(&at(1))), None);
        assert_eq!(to_cut(None, Some(&at(1))), None);
    }
}
