//! How the controller talks to agents.

use myset_api::{
    Address, AgentStatus, GaleraPositionReport, InstanceSpec, LiveSettingsRequest, Order,
    OrderResult, ServerRestart, VariableInfo, VariablesRequest, CONTROLLER_TERM_HEADER,
    GALERA_POSITION_PATH, LIVE_SETTINGS_PATH, RESTART_PATH, VARIABLES_PATH,
};
use myset_core::galera::{ClusterUuid, MemberData, Position};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Nothing answered: the agent is down, frozen or cut off.
    #[error("agent {agent} did not answer: {detail}")]
    Unreachable { agent: Address, detail: String },
    /// The agent answered and refused or failed (a stale term, a failed order, ...).
    #[error("agent {agent} refused: {detail}")]
    Refused { agent: Address, detail: String },
}

/// The calls the controller makes to an instance's agent. Every call carries the controller's
/// current `term`; an agent refuses specs and orders of an older term than its own.
pub trait AgentApi: Send + Sync + 'static {
    /// The agent's report of its instance, bounded by `timeout`.
    fn status(
        &self,
        agent: &Address,
        term: u64,
        timeout: Duration,
    ) -> impl Future<Output = Result<AgentStatus, AgentError>> + Send;
    /// Tells the agent what its instance should be (sent to `spec.agent`, at `spec.term`).
    fn put_spec(
        &self,
        spec: &InstanceSpec,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), AgentError>> + Send;
    /// Sends an order of a change of primary and waits for its outcome, at most `timeout`.
    fn order(
        &self,
        agent: &Address,
        order: &Order,
        timeout: Duration,
    ) -> impl Future<Output = Result<OrderResult, AgentError>> + Send;
    /// Makes the agent take up its renewed certificate files, at most `timeout`.
    fn reload_tls(
        &self,
        agent: &Address,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), AgentError>> + Send {
        let _ = timeout;
        unsupported(agent, "these agents cannot reload certificates")
    }
    /// Galera: the last committed position of a member whose server is not running, as its
    /// agent reads it from its own data dir (on Kubernetes the controller cannot read a
    /// volume; the agent of a Pod waiting for its spec can). At most `timeout`.
    fn galera_position(
        &self,
        agent: &Address,
        timeout: Duration,
    ) -> impl Future<Output = Result<MemberData, AgentError>> + Send {
        let _ = timeout;
        unsupported(agent, "these agents cannot report a Galera position")
    }
    // `myset config set` and `myset restart`: agents that cannot (the fakes of tests that do
    // not exercise them) refuse.
    /// Which of `names` the agent's server knows, and which are dynamic.
    fn describe_variables(
        &self,
        agent: &Address,
        names: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<VariableInfo>, AgentError>> + Send {
        let _ = (names, timeout);
        unsupported(agent, "these agents cannot change server settings")
    }
    /// Sets dynamic variables live, all or none; answers their values before.
    fn apply_live(
        &self,
        agent: &Address,
        term: u64,
        settings: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, AgentError>> + Send {
        let _ = (term, settings, timeout);
        unsupported(agent, "these agents cannot change server settings")
    }
    /// Asks the agent to restart its server cleanly with the spec in force; returns at once.
    fn restart_server(
        &self,
        agent: &Address,
        term: u64,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), AgentError>> + Send {
        let _ = (term, timeout);
        unsupported(agent, "these agents cannot change server settings")
    }
}

/// The answer of agents that cannot do `what` (a default of the trait; the fakes of tests that
/// do not exercise it).
fn unsupported<T>(
    agent: &Address,
    what: &'static str,
) -> impl Future<Output = Result<T, AgentError>> + Send {
    let agent = agent.clone();
    async move {
        Err(AgentError::Refused {
            detail: what.into(),
            agent,
        })
    }
}

/// The position an agent reported, checked: a malformed UUID is a refusal, not a guess.
pub fn member_data(
    agent: &Address,
    report: GaleraPositionReport,
) -> Result<MemberData, AgentError> {
    Ok(match report {
        GaleraPositionReport::Empty => MemberData::Empty,
        GaleraPositionReport::At {
            uuid,
            seqno,
            safe_to_bootstrap,
        } => MemberData::At {
            position: Position {
                uuid: ClusterUuid::parse(&uuid).map_err(|e| AgentError::Refused {
                    agent: agent.clone(),
                    detail: format!("reported a malformed Galera UUID: {e}"),
                })?,
                seqno,
            },
            safe_to_bootstrap,
        },
    })
}

/// Agents reached over their token-authenticated HTTP(S) API.
#[derive(Clone)]
pub struct HttpAgents {
    access: myset_http::ApiAccess,
}

impl HttpAgents {
    pub fn new(access: myset_http::ApiAccess) -> Self {
        HttpAgents { access }
    }

    fn client(&self, agent: &Address, term: u64, timeout: Duration) -> myset_http::Client {
        self.access
            .client(agent, timeout)
            .with_header(CONTROLLER_TERM_HEADER, term.to_string())
    }
}

fn classify(agent: &Address, error: myset_http::CallError) -> AgentError {
    let detail = error.to_string();
    if error.answered() {
        AgentError::Refused {
            agent: agent.clone(),
            detail,
        }
    } else {
        AgentError::Unreachable {
            agent: agent.clone(),
            detail,
        }
    }
}

impl AgentApi for HttpAgents {
    async fn status(
        &self,
        agent: &Address,
        term: u64,
        timeout: Duration,
    ) -> Result<AgentStatus, AgentError> {
        self.client(agent, term, timeout)
            .get("/status")
            .await
            .map_err(|e| classify(agent, e))
    }

    async fn put_spec(&self, spec: &InstanceSpec, timeout: Duration) -> Result<(), AgentError> {
        self.client(&spec.agent, spec.term, timeout)
            .put("/spec", spec)
            .await
            .map_err(|e| classify(&spec.agent, e))
    }

    async fn order(
        &self,
        agent: &Address,
        order: &Order,
        timeout: Duration,
    ) -> Result<OrderResult, AgentError> {
        self.client(agent, order.term, timeout)
            .call("/order", order)
            .await
            .map_err(|e| classify(agent, e))
    }

    async fn galera_position(
        &self,
        agent: &Address,
        timeout: Duration,
    ) -> Result<MemberData, AgentError> {
        let report = self
            .client(agent, 0, timeout)
            .get(GALERA_POSITION_PATH)
            .await
            .map_err(|e| classify(agent, e))?;
        member_data(agent, report)
    }

    async fn describe_variables(
        &self,
        agent: &Address,
        names: &[String],
        timeout: Duration,
    ) -> Result<Vec<VariableInfo>, AgentError> {
        let body = VariablesRequest {
            names: names.to_vec(),
        };
        self.client(agent, 0, timeout)
            .call(VARIABLES_PATH, &body)
            .await
            .map_err(|e| classify(agent, e))
    }

    async fn apply_live(
        &self,
        agent: &Address,
        term: u64,
        settings: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<BTreeMap<String, String>, AgentError> {
        let body = LiveSettingsRequest {
            term,
            settings: settings.clone(),
        };
        self.client(agent, term, timeout)
            .call(LIVE_SETTINGS_PATH, &body)
            .await
            .map_err(|e| classify(agent, e))
    }

    async fn restart_server(
        &self,
        agent: &Address,
        term: u64,
        timeout: Duration,
    ) -> Result<(), AgentError> {
        self.client(agent, term, timeout)
            .call(RESTART_PATH, &ServerRestart { term })
            .await
            .map_err(|e| classify(agent, e))
    }

    async fn reload_tls(&self, agent: &Address, timeout: Duration) -> Result<(), AgentError> {
        self.client(agent, 0, timeout)
            .post(myset_api::TLS_RELOAD_PATH)
            .await
            .map_err(|e| classify(agent, e))
    }
}
