//! Federated queries on a running node. Every node that answers verifies the signed request
//! itself against the metadata it has applied (waiting a bounded time to reach the index the
//! entry node pinned), aggregates its own rows inside the grant's scope (leaving out regions that
//! have their own child node), fans the request out to its children through the sans-IO
//! `FanOut`, and merges what comes back. The entry node then applies disclosure control once.
//!
//! Only partial aggregates cross a node boundary.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tiermesh_crypto::hex;
use tiermesh_crypto::PublicKey;
use tiermesh_federation::disclosure::disclose;
use tiermesh_federation::fanout::{self, FanOut, MissingReason, SubAnswer};
use tiermesh_federation::grant::{
    verify_request, ReplayCache, Rights, SignedRequest, VerifiedSignatures,
};
use tiermesh_federation::meta::MetaState;
use tiermesh_federation::query::{
    execute_partial, ColumnRef, Dimension, Plan, PlanCache, Predicate, Source,
};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;
use tiermesh_federation::wire::{
    FederatedAnswer, GrantList, GrantListing, Message, SubQuery, GRANT_LIST_MAX,
};
use tiermesh_storage::audit_log::{AuditLog, AuditRecord, Decision};
use tiermesh_storage::Store;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::metrics::{Metrics, QueryRole};
use crate::raft_driver::SharedMeta;

/// How long a node behind the pinned metadata index waits to catch up before answering "stale".
pub const STALE_WAIT_MS: u64 = 2_000;
/// Pause between two looks at the applied index while waiting.
const STALE_POLL_MS: u64 = 20;
/// Children answering one sub-query at once (the fan-out bound).
pub const FANOUT_MAX: usize = 4_096;

/// What a node needs to answer queries.
pub struct QueryService {
    pub own_key: PublicKey,
    pub meta: SharedMeta,
    pub store: Arc<Mutex<Store>>,
    replay: Mutex<ReplayCache>,
    /// Grant-link signatures this node has verified (the same chain comes with every query).
    signatures: Mutex<VerifiedSignatures>,
    /// Plans of SQL this node was asked before.
    plans: Mutex<PlanCache>,
    /// Every sub-query answered or refused is appended here before the answer leaves; `None`
    /// only for nodes started without a directory for it (never by `tiermesh run`).
    pub audit: Option<Arc<Mutex<AuditLog>>>,
    /// What the admin port reports.
    pub metrics: Arc<Metrics>,
}

/// What the audit log records of one decision, besides the request itself.
struct Facts {
    decision: Decision,
    reason: String,
    rows_scanned: u64,
    groups_returned: u64,
    cells_suppressed: u64,
    scope: Vec<RegionCode>,
    metadata_index: u64,
}

impl Facts {
    fn refused(reason: &str, metadata_index: u64) -> Facts {
        Facts {
            decision: Decision::Refused,
            reason: reason.to_string(),
            rows_scanned: 0,
            groups_returned: 0,
            cells_suppressed: 0,
            scope: Vec::new(),
            metadata_index,
        }
    }
}

/// Refuses with `message`, and says so in the audit log.
fn refusal(message: String, metadata_index: u64) -> (Message, Facts) {
    let facts = Facts::refused(&message, metadata_index);
    (Message::Error { message }, facts)
}

/// The regions of `own` inside `scope` (the part of its rows a query may touch).
fn touched(own: RegionCode, scope: &[RegionCode]) -> Vec<RegionCode> {
    scope
        .iter()
        .filter_map(|region| {
            if own.contains(*region) {
                Some(*region)
            } else if region.contains(own) {
                Some(own)
            } else {
                None
            }
        })
        .collect()
}

/// Opens connections to other nodes (the mesh's peer table).
pub trait Dialer: Send + Sync + 'static {
    /// A connection to the node `key` at `addr`.
    fn dial(
        &self,
        key: PublicKey,
        addr: String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<quinn::Connection>> + Send>,
    >;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl QueryService {
    /// A service over the node's store and applied metadata.
    pub fn new(
        own_key: PublicKey,
        meta: SharedMeta,
        store: Arc<Mutex<Store>>,
        audit: Option<Arc<Mutex<AuditLog>>>,
        metrics: Arc<Metrics>,
    ) -> Arc<QueryService> {
        Arc::new(QueryService {
            own_key,
            meta,
            store,
            replay: Mutex::new(ReplayCache::new()),
            signatures: Mutex::new(VerifiedSignatures::new()),
            plans: Mutex::new(PlanCache::new()),
            audit,
            metrics,
        })
    }

    /// Appends the decision about `request` to the audit log, durably, then lets `answer` go;
    /// if the log cannot be written, the node refuses instead (no answer leaves unrecorded).
    async fn audited(
        &self,
        request: &SignedRequest,
        role: QueryRole,
        started: Instant,
        (answer, facts): (Message, Facts),
    ) -> Message {
        self.observe(role, started, &facts);
        let appended = self.append(request, role, facts).await;
        release(answer, appended)
    }

    /// Counts the decision and logs it (in the query's span).
    fn observe(&self, role: QueryRole, started: Instant, facts: &Facts) {
        let refused = facts.decision == Decision::Refused;
        self.metrics.query_decided(
            role,
            started.elapsed(),
            refused.then_some(facts.reason.as_str()),
            facts.rows_scanned,
            facts.groups_returned,
            facts.cells_suppressed,
        );
        if refused {
            tracing::info!(reason = %facts.reason, "refused");
        } else {
            tracing::info!(
                rows_scanned = facts.rows_scanned,
                groups = facts.groups_returned,
                suppressed = facts.cells_suppressed,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "answered"
            );
        }
    }

    /// Starts appending the record of a decision (fsynced); the append runs on a blocking
    /// thread from the moment of the call, and the future says how it ended.
    fn append(
        &self,
        request: &SignedRequest,
        role: QueryRole,
        facts: Facts,
    ) -> impl std::future::Future<Output = Result<(), String>> {
        let appending = self.audit.as_ref().map(|audit| {
            let record = audit_record(request, role, facts);
            let audit = Arc::clone(audit);
            tokio::task::spawn_blocking(move || {
                let mut log = audit
                    .lock()
                    .map_err(|_| "the audit log is poisoned".to_string())?;
                log.append(record, now_ms())
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            })
        });
        async move {
            match appending {
                None => Ok(()),
                Some(task) => task
                    .await
                    .map_err(|_| "the audit task failed".to_string())
                    .and_then(|inner| inner),
            }
        }
    }

    fn snapshot(&self) -> Arc<MetaState> {
        self.meta
            .read()
            .map(|state| Arc::clone(&state))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// Metadata at or past `index`, waiting up to `STALE_WAIT_MS`.
    async fn metadata_at(&self, index: u64) -> Result<Arc<MetaState>, MissingReason> {
        let started = std::time::Instant::now();
        loop {
            let state = self.snapshot();
            if state.applied_index() >= index {
                return Ok(state);
            }
            if started.elapsed() >= Duration::from_millis(STALE_WAIT_MS) {
                return Err(MissingReason::Stale {
                    node_index: state.applied_index(),
                    needed: index,
                });
            }
            tokio::time::sleep(Duration::from_millis(STALE_POLL_MS)).await;
        }
    }

    fn verify(&self, request: &SignedRequest, state: &MetaState) -> Result<(Rights, Plan), String> {
        let now = now_ms() / 1000;
        let mut replay = self
            .replay
            .lock()
            .map_err(|_| "the replay cache is unavailable".to_string())?;
        let mut signatures = self
            .signatures
            .lock()
            .map_err(|_| "the signature cache is unavailable".to_string())?;
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| "the plan cache is unavailable".to_string())?;
        verify_request(
            request,
            state,
            now,
            &|id| state.is_revoked(id),
            &mut replay,
            &mut signatures,
            &mut plans,
        )
        .map_err(|error| error.to_string())
    }

    /// The entry node's side: pin the metadata index, verify, answer the subtree, release once.
    /// `confirmed`: the leader's commit index as a read-index confirmed it; the node pins
    /// metadata at or past it (so every revocation committed before the query arrived counts).
    /// Without it (the leader out of reach) the query is refused, and the refusal audited.
    pub async fn client_query(
        self: &Arc<Self>,
        dialer: Arc<dyn Dialer>,
        request: SignedRequest,
        confirmed: Result<u64, String>,
    ) -> Message {
        let started = Instant::now();
        let span = query_span(&request, QueryRole::Entry);
        async move {
            let decided = match confirmed {
                Ok(index) => {
                    self.decide_client_query(dialer, request.clone(), index)
                        .await
                }
                Err(reason) => refusal(reason, self.snapshot().applied_index()),
            };
            self.audited(&request, QueryRole::Entry, started, decided)
                .await
        }
        .instrument(span)
        .await
    }

    async fn decide_client_query(
        self: &Arc<Self>,
        dialer: Arc<dyn Dialer>,
        request: SignedRequest,
        confirmed_index: u64,
    ) -> (Message, Facts) {
        let state = match self.metadata_at(confirmed_index).await {
            Ok(state) => state,
            Err(_) => {
                return refusal(
                    format!(
                        "refused: this node has not applied the metadata through index \
                         {confirmed_index} that the leader committed"
                    ),
                    self.snapshot().applied_index(),
                )
            }
        };
        let metadata_index = state.applied_index();
        if request.request.entry_node != self.own_key {
            return refusal(
                "the request names another entry node; sign it for the node you send it to"
                    .to_string(),
                metadata_index,
            );
        }
        let (rights, plan) = match self.verify(&request, &state) {
            Ok(verified) => verified,
            Err(reason) => return refusal(format!("refused: {reason}"), metadata_index),
        };
        let Some(own) = state.node(&self.own_key) else {
            return refusal(
                "this node is not registered in the mesh".to_string(),
                metadata_index,
            );
        };
        let own_region = own.region;
        if let Some(outside) = rights
            .scope
            .iter()
            .find(|region| !own_region.contains(**region))
        {
            return refusal(
                format!(
                    "the grant's scope {outside} is not inside this node's region {own_region}; \
                     send the query to a node above it"
                ),
                metadata_index,
            );
        }
        let deadline = request.request.deadline_ms;
        let (answer, _) = self
            .answer_subtree(
                dialer,
                &state,
                request,
                &rights,
                &plan,
                metadata_index,
                deadline,
                None,
            )
            .await;
        let disclosed = disclose(answer.partial, &plan, rights.min_cell);
        let facts = Facts {
            decision: Decision::Answered,
            reason: String::new(),
            rows_scanned: disclosed.result.rows_scanned,
            groups_returned: disclosed.result.rows.len() as u64,
            cells_suppressed: (disclosed.primary + disclosed.secondary) as u64,
            scope: touched(own_region, &rights.scope),
            metadata_index,
        };
        let message = Message::QueryAnswer(Box::new(FederatedAnswer {
            result: disclosed.result,
            coverage: answer.coverage,
            metadata_index,
            suppressed_primary: disclosed.primary as u64,
            suppressed_secondary: disclosed.secondary as u64,
        }));
        (message, facts)
    }

    /// The recorded grants touching `region` (all when `None`), with their revocations.
    pub fn grant_list(&self, region: Option<tiermesh_federation::region::RegionCode>) -> Message {
        let state = self.snapshot();
        let mut grants: Vec<GrantListing> = state
            .grants()
            .into_iter()
            .filter(|grant| {
                region.is_none_or(|region| {
                    grant.links.iter().any(|signed| {
                        signed
                            .link
                            .scope
                            .iter()
                            .any(|scope| scope.contains(region) || region.contains(*scope))
                    })
                })
            })
            .map(|grant| {
                let revoked = grant
                    .ids()
                    .into_iter()
                    .filter_map(|id| state.revocation(&id).map(|record| (id, record.clone())))
                    .collect();
                GrantListing { grant, revoked }
            })
            .collect();
        let truncated = grants.len() > GRANT_LIST_MAX;
        grants.truncate(GRANT_LIST_MAX);
        Message::GrantList(Box::new(GrantList {
            metadata_index: state.applied_index(),
            grants,
            truncated,
        }))
    }

    /// A child's side: verify for itself, then answer its subtree.
    pub async fn sub_query(self: &Arc<Self>, dialer: Arc<dyn Dialer>, sub: SubQuery) -> Message {
        let started = Instant::now();
        let request = sub.request.clone();
        let span = query_span(&request, QueryRole::Sub);
        async move {
            match self.decide_sub_query(dialer, sub, started).await {
                Ok(recorded) => recorded,
                Err(refused) => {
                    self.audited(&request, QueryRole::Sub, started, refused)
                        .await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// `Ok`: the answer, already recorded (its own part, while the children worked); `Err`: a
    /// refusal still to record.
    async fn decide_sub_query(
        self: &Arc<Self>,
        dialer: Arc<dyn Dialer>,
        sub: SubQuery,
        started: Instant,
    ) -> Result<Message, (Message, Facts)> {
        let state = match self.metadata_at(sub.metadata_index).await {
            Ok(state) => state,
            Err(MissingReason::Stale { node_index, needed }) => {
                return Err(refusal(
                    format!(
                        "stale metadata: this node has applied index {node_index}, the query \
                         needs {needed}"
                    ),
                    node_index,
                ))
            }
            Err(_) => {
                return Err(refusal(
                    "metadata unavailable".to_string(),
                    self.snapshot().applied_index(),
                ))
            }
        };
        let metadata_index = sub.metadata_index;
        let (rights, plan) = match self.verify(&sub.request, &state) {
            Ok(verified) => verified,
            Err(reason) => return Err(refusal(format!("refused: {reason}"), metadata_index)),
        };
        let scope = state
            .node(&self.own_key)
            .map(|own| touched(own.region, &rights.scope))
            .unwrap_or_default();
        let (answer, appended) = self
            .answer_subtree(
                dialer,
                &state,
                sub.request,
                &rights,
                &plan,
                metadata_index,
                sub.hop_deadline_ms,
                Some(EarlyRecord { scope, started }),
            )
            .await;
        Ok(release(Message::SubQueryAnswer(Box::new(answer)), appended))
    }

    #[allow(clippy::too_many_arguments)] // one query's whole context; grouping it would only rename it
    async fn answer_subtree(
        self: &Arc<Self>,
        dialer: Arc<dyn Dialer>,
        state: &MetaState,
        request: SignedRequest,
        rights: &Rights,
        plan: &Plan,
        metadata_index: u64,
        deadline_ms: u64,
        early: Option<EarlyRecord>,
    ) -> (SubAnswer, Result<(), String>) {
        // Children whose region the query's own filter rules out are not asked: they could
        // only answer nothing (and are neither answered nor missing in the coverage).
        let mut children =
            fanout::prune_by_filter(fanout::targets(state, &self.own_key, &rights.scope), plan);
        children.truncate(FANOUT_MAX);
        let child_regions: Vec<RegionCode> = children.iter().map(|child| child.region).collect();
        let (mut fan, commands) = FanOut::start(now_ms(), deadline_ms, None, children);
        let (answers, mut received) = mpsc::channel(commands.len().max(1));
        for command in commands {
            let fanout::Command::Send {
                to,
                region: _,
                deadline,
            } = command;
            let Some(addr) = state.node(&to).map(|node| node.addr.clone()) else {
                fan.handle_failure(
                    now_ms(),
                    to,
                    MissingReason::Unreachable("no address".into()),
                );
                continue;
            };
            let sub = Message::SubQuery(Box::new(SubQuery {
                request: request.clone(),
                metadata_index,
                hop_deadline_ms: deadline,
            }));
            let dialer = Arc::clone(&dialer);
            let answers = answers.clone();
            let hop = tracing::debug_span!("child", node = %to);
            tokio::spawn(
                async move {
                    let wait = Duration::from_millis(deadline.saturating_sub(now_ms()));
                    let outcome = match tokio::time::timeout(wait, dialer.dial(to, addr)).await {
                        Err(_) => Err(MissingReason::Timeout),
                        Ok(Err(error)) => Err(MissingReason::Unreachable(format!("{error:#}"))),
                        Ok(Ok(connection)) => {
                            let wait = Duration::from_millis(deadline.saturating_sub(now_ms()));
                            match crate::transport::request(&connection, &sub, wait).await {
                                Ok(Message::SubQueryAnswer(answer)) => Ok(*answer),
                                Ok(Message::Error { message }) => {
                                    Err(MissingReason::Refused(message))
                                }
                                Ok(_) => Err(MissingReason::Refused("unexpected answer".into())),
                                Err(error) if format!("{error}").contains("no answer within") => {
                                    Err(MissingReason::Timeout)
                                }
                                Err(error) => Err(MissingReason::Unreachable(format!("{error:#}"))),
                            }
                        }
                    };
                    if let Err(reason) = &outcome {
                        tracing::debug!("missing: {reason:?}");
                    }
                    let _ = answers.send((to, outcome)).await;
                }
                .instrument(hop),
            );
        }
        drop(answers);
        // The requests are out: this node's own rows are scanned while the children work.
        let own = state.node(&self.own_key).and_then(|node| {
            let touches = rights
                .scope
                .iter()
                .any(|scope| scope.contains(node.region) || node.region.contains(*scope));
            touches.then(|| {
                let local = local_plan(plan, &rights.scope, &child_regions);
                let (partial, version) = match self.store.lock() {
                    Ok(store) => (
                        execute_partial(&local, store.image()),
                        store.image().data_version,
                    ),
                    Err(_) => (Default::default(), 0),
                };
                (node.region, self.own_key, version, partial)
            })
        });
        // A node below the entry records its own part now, so that the fsync runs while its
        // children work; the answer still leaves only once the record is durable.
        let recorded = early.map(|early| {
            let (rows_scanned, groups_returned) =
                own.as_ref().map_or((0, 0), |(_, _, _, partial)| {
                    (partial.rows_scanned, partial.groups.len() as u64)
                });
            let facts = Facts {
                decision: Decision::Answered,
                reason: String::new(),
                rows_scanned,
                groups_returned,
                cells_suppressed: 0,
                scope: early.scope,
                metadata_index,
            };
            self.observe(QueryRole::Sub, early.started, &facts);
            self.append(&request, QueryRole::Sub, facts)
        });
        if let Some((region, key, version, partial)) = own {
            fan.add_own(region, key, version, partial);
        }
        while !fan.is_done() {
            let wake = fan.poll_deadline().unwrap_or_else(now_ms);
            let sleep = Duration::from_millis(wake.saturating_sub(now_ms()));
            tokio::select! {
                next = received.recv() => match next {
                    Some((from, Ok(answer))) => fan.handle_answer(now_ms(), from, answer),
                    Some((from, Err(reason))) => fan.handle_failure(now_ms(), from, reason),
                    None => fan.handle_timeout(now_ms()),
                },
                () = tokio::time::sleep(sleep) => fan.handle_timeout(now_ms()),
            }
        }
        let answer = fan.finish();
        let appended = match recorded {
            Some(appending) => appending.await,
            None => Ok(()),
        };
        (answer, appended)
    }
}

/// What a node below the entry records of its own part before its children answer.
struct EarlyRecord {
    /// The regions of its own rows the query may touch.
    scope: Vec<RegionCode>,
    /// When the sub-query arrived.
    started: Instant,
}

/// The answer, once its audit record is durable; a refusal when the record could not be written.
fn release(answer: Message, appended: Result<(), String>) -> Message {
    match appended {
        Ok(()) => answer,
        Err(reason) => {
            tracing::error!("audit log: {reason}");
            error(&format!(
                "refused: this node cannot record the query in its audit log ({reason})"
            ))
        }
    }
}

/// The audit record of a decision about `request`.
fn audit_record(request: &SignedRequest, role: QueryRole, facts: Facts) -> AuditRecord {
    let query = &request.request;
    let mut digest_input = query.sql.as_bytes().to_vec();
    digest_input.extend_from_slice(format!("\nas of {}", query.as_of).as_bytes());
    AuditRecord {
        seq: 0,
        time_ms: now_ms(),
        query_id: hex::encode(&query.query_id),
        // The grant may be malformed (refused for it): no leaf, no id.
        grant_id: query
            .grant
            .links
            .last()
            .map_or_else(String::new, |leaf| hex::encode(&leaf.link.id)),
        requester: query
            .grant
            .links
            .last()
            .map_or_else(String::new, |leaf| leaf.link.audience.to_string()),
        plan_digest: hex::encode(&tiermesh_crypto::sha256(&digest_input)),
        role: role.as_str().to_string(),
        scope: facts.scope.iter().map(ToString::to_string).collect(),
        rows_scanned: facts.rows_scanned,
        groups_returned: facts.groups_returned,
        cells_suppressed: facts.cells_suppressed,
        decision: facts.decision,
        reason: facts.reason,
        metadata_index: facts.metadata_index,
    }
}

/// The span every log line about one federated query sits in, at every node it reaches: the
/// query id is the trace id, so `grep QUERY_ID` over the nodes' logs gives the whole trace.
fn query_span(request: &SignedRequest, role: QueryRole) -> tracing::Span {
    tracing::info_span!(
        "query",
        id = %hex::encode(&request.request.query_id),
        role = role.as_str(),
    )
}

fn error(message: &str) -> Message {
    Message::Error {
        message: message.to_string(),
    }
}

/// The plan this node runs over its own rows: the query's filter, inside the grant's scope, and
/// outside the regions that have their own child node (they answer for themselves).
pub fn local_plan(plan: &Plan, scope: &[RegionCode], child_regions: &[RegionCode]) -> Plan {
    let column = match plan.source {
        Source::Persons => ColumnRef {
            table: Table::Persons,
            name: "household_id",
        },
        _ => ColumnRef {
            table: Table::Households,
            name: "region_code",
        },
    };
    let like = |region: &RegionCode, negated: bool| Predicate::LikePrefix {
        operand: Dimension::Column(column),
        prefix: region.prefix(),
        negated,
    };
    let mut conditions = Vec::new();
    if let Some(filter) = &plan.filter {
        conditions.push(filter.clone());
    }
    if !scope.contains(&RegionCode::NATIONAL) {
        conditions.push(Predicate::Or(
            scope.iter().map(|region| like(region, false)).collect(),
        ));
    }
    conditions.extend(child_regions.iter().map(|region| like(region, true)));
    let mut local = plan.clone();
    local.filter = match conditions.len() {
        0 => None,
        1 => conditions.pop(),
        _ => Some(Predicate::And(conditions)),
    };
    local
}
