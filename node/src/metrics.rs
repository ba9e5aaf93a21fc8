//! What a running node counts, and its admin HTTP port: Prometheus `/metrics` and `/healthz`.
//!
//! Counters are bumped where the work happens (a query decided, a connection opened, an import
//! finished); the Raft and store gauges are read when a scrape arrives, so that they are never
//! older than the scrape. The admin server is a blocking `tiny_http` server on its own thread:
//! it never holds a lock the query path needs for longer than one status read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Seconds the admin port waits for the Raft driver's status before it reports the node unhealthy.
pub const HEALTH_STATUS_WAIT_MS: u64 = 1_000;

/// Which side of a federated query a node played.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum QueryRole {
    /// The node the client asked: it checked the grant first and released the merged answer.
    Entry,
    /// A node below it, answering its subtree.
    Sub,
}

impl QueryRole {
    /// The label value, as the audit log also spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryRole::Entry => "entry",
            QueryRole::Sub => "sub",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    role: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RaftRoleLabels {
    role: &'static str,
}

/// The node's counters and gauges, registered once.
pub struct Metrics {
    registry: Registry,
    queries: Family<RoleLabels, Counter>,
    query_seconds: Family<RoleLabels, Histogram>,
    refusals: Family<RefusalLabels, Counter>,
    rows_scanned: Family<RoleLabels, Counter>,
    groups_returned: Family<RoleLabels, Counter>,
    cells_suppressed: Counter,
    connections_open: Gauge,
    connections_refused: Counter,
    imports: Family<OutcomeLabels, Counter>,
    import_rows: Family<OutcomeLabels, Counter>,
    raft_term: Gauge,
    raft_commit: Gauge,
    raft_applied: Gauge,
    raft_role: Family<RaftRoleLabels, Gauge>,
    mesh_nodes: Gauge,
    data_version: Gauge,
    rows: Family<TableLabels, Gauge>,
    audit_records: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

/// The short, bounded label of a refusal reason (the full text is in the audit log).
pub fn refusal_kind(reason: &str) -> &'static str {
    const KINDS: &[(&str, &str)] = &[
        ("revoked", "revoked"),
        ("expired", "expired"),
        ("not yet valid", "not_yet_valid"),
        ("signature", "bad_signature"),
        ("replay", "replayed"),
        ("seen", "replayed"),
        ("stale", "stale_metadata"),
        ("cannot confirm", "metadata_unconfirmed"),
        ("has not applied", "metadata_unconfirmed"),
        ("personal", "personal_column"),
        ("audience", "wrong_audience"),
        ("entry node", "wrong_entry_node"),
        ("scope", "scope"),
        ("column", "column"),
        ("audit log", "audit_log"),
        ("clock", "clock_skew"),
        ("fresh", "clock_skew"),
        ("not registered", "not_registered"),
    ];
    let lower = reason.to_ascii_lowercase();
    KINDS
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map_or("other", |(_, kind)| kind)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, registered under the `tiermesh` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tiermesh");
        let queries = Family::<RoleLabels, Counter>::default();
        registry.register(
            "queries",
            "Federated sub-queries decided by this node (answered or refused)",
            queries.clone(),
        );
        let query_seconds = Family::<RoleLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
        });
        registry.register(
            "query_duration_seconds",
            "Time from a query's arrival at this node to its recorded answer or refusal",
            query_seconds.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "query_refusals",
            "Queries refused by this node, by reason",
            refusals.clone(),
        );
        let rows_scanned = Family::<RoleLabels, Counter>::default();
        registry.register(
            "query_rows_scanned",
            "Rows read by answered queries (this node's subtree)",
            rows_scanned.clone(),
        );
        let groups_returned = Family::<RoleLabels, Counter>::default();
        registry.register(
            "query_groups_returned",
            "Groups sent back by answered queries",
            groups_returned.clone(),
        );
        let cells_suppressed = Counter::default();
        registry.register(
            "query_cells_suppressed",
            "Cells suppressed by disclosure control at this entry node",
            cells_suppressed.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "QUIC connections open to this node",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "QUIC connections refused (unknown key, or over a connection bound)",
            connections_refused.clone(),
        );
        let imports = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "imports",
            "Online imports (import --connect) finished, by outcome",
            imports.clone(),
        );
        let import_rows = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "import_rows",
            "Rows of online imports: stored, rejected, with warnings",
            import_rows.clone(),
        );
        let raft_term = Gauge::default();
        registry.register("raft_term", "The Raft term", raft_term.clone());
        let raft_commit = Gauge::default();
        registry.register(
            "raft_commit_index",
            "The Raft commit index this node knows",
            raft_commit.clone(),
        );
        let raft_applied = Gauge::default();
        registry.register(
            "raft_applied_index",
            "The metadata index this node has applied",
            raft_applied.clone(),
        );
        let raft_role = Family::<RaftRoleLabels, Gauge>::default();
        registry.register(
            "raft_role",
            "1 for this node's Raft role (leader, voter, learner, pending, unregistered)",
            raft_role.clone(),
        );
        let mesh_nodes = Gauge::default();
        registry.register(
            "mesh_nodes",
            "Nodes in the applied registry",
            mesh_nodes.clone(),
        );
        let data_version = Gauge::default();
        registry.register(
            "data_version",
            "The store's data version (RocksDB sequence number of the last write)",
            data_version.clone(),
        );
        let rows = Family::<TableLabels, Gauge>::default();
        registry.register("rows", "Rows stored, by table", rows.clone());
        let audit_records = Gauge::default();
        registry.register(
            "audit_records",
            "Records in this node's audit log",
            audit_records.clone(),
        );
        Metrics {
            registry,
            queries,
            query_seconds,
            refusals,
            rows_scanned,
            groups_returned,
            cells_suppressed,
            connections_open,
            connections_refused,
            imports,
            import_rows,
            raft_term,
            raft_commit,
            raft_applied,
            raft_role,
            mesh_nodes,
            data_version,
            rows,
            audit_records,
        }
    }

    /// One decided query: `refusal` is the reason when it was refused.
    #[allow(clippy::too_many_arguments)]
    pub fn query_decided(
        &self,
        role: QueryRole,
        elapsed: Duration,
        refusal: Option<&str>,
        rows_scanned: u64,
        groups_returned: u64,
        cells_suppressed: u64,
    ) {
        let role = role.as_str();
        let labels = RoleLabels { role };
        self.queries.get_or_create(&labels).inc();
        self.query_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        match refusal {
            Some(reason) => {
                self.refusals
                    .get_or_create(&RefusalLabels {
                        role,
                        reason: refusal_kind(reason),
                    })
                    .inc();
            }
            None => {
                self.rows_scanned
                    .get_or_create(&labels)
                    .inc_by(rows_scanned);
                self.groups_returned
                    .get_or_create(&labels)
                    .inc_by(groups_returned);
                self.cells_suppressed.inc_by(cells_suppressed);
            }
        }
    }

    /// A connection was refused.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// An online import ended: `None` when it failed.
    pub fn import_finished(&self, rows: Option<(u64, u64, u64)>) {
        let outcome = if rows.is_some() { "ok" } else { "failed" };
        self.imports.get_or_create(&OutcomeLabels { outcome }).inc();
        if let Some((stored, rejected, warnings)) = rows {
            for (outcome, count) in [
                ("stored", stored),
                ("rejected", rejected),
                ("warnings", warnings),
            ] {
                self.import_rows
                    .get_or_create(&OutcomeLabels { outcome })
                    .inc_by(count);
            }
        }
    }

    /// The gauges read at scrape time.
    pub fn set_node_state(&self, state: &NodeState) {
        if let Some(raft) = &state.raft {
            self.raft_term.set(raft.term as i64);
            self.raft_commit.set(raft.commit as i64);
            self.raft_applied.set(raft.applied as i64);
            self.mesh_nodes.set(raft.nodes as i64);
            for role in ["leader", "voter", "learner", "pending", "unregistered"] {
                self.raft_role
                    .get_or_create(&RaftRoleLabels { role })
                    .set(i64::from(role == raft.role));
            }
        }
        self.data_version.set(state.data_version as i64);
        self.rows
            .get_or_create(&TableLabels {
                table: "households",
            })
            .set(state.households as i64);
        self.rows
            .get_or_create(&TableLabels { table: "persons" })
            .set(state.persons as i64);
        self.audit_records.set(state.audit_records as i64);
        self.connections_open.set(state.connections as i64);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The Raft side of a node at scrape time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftState {
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    /// As `MeshStatus::role_label` says it.
    pub role: &'static str,
    pub nodes: usize,
}

/// What a scrape reads of the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// `None` when the Raft driver did not answer in time (the node is unhealthy).
    pub raft: Option<RaftState>,
    pub data_version: u64,
    pub households: u64,
    pub persons: u64,
    pub audit_records: u64,
    pub connections: u64,
}

/// Reads the node's state for a scrape or a health check.
pub type StateReader = Arc<dyn Fn() -> NodeState + Send + Sync>;

/// A running admin port.
pub struct AdminServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "AdminServer({})", self.addr)
    }
}

impl AdminServer {
    /// Serves `/metrics` and `/healthz` on `addr` (TCP) until dropped.
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>, read: StateReader) -> Result<Self> {
        let server = tiny_http::Server::http(addr)
            .map_err(|error| anyhow::anyhow!("{error}"))
            .with_context(|| format!("opening the admin port {addr} (TCP)"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .context("the admin port has no IP address")?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("admin-http".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    let response = respond(&request, &metrics, &read);
                    if let Err(error) = request.respond(response) {
                        tracing::debug!("admin port: {error}");
                    }
                }
            })
            .context("starting the admin thread")?;
        Ok(AdminServer {
            addr,
            server,
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Ok(mut thread) = self.thread.lock() {
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

fn content_type(value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(&b"Content-Type"[..], value.as_bytes())
        .expect("the content types of this module are ASCII")
}

fn respond(
    request: &tiny_http::Request,
    metrics: &Metrics,
    read: &StateReader,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = request.url().split('?').next().unwrap_or("");
    let text = |status: u16, body: String, kind: &str| {
        tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_header(content_type(kind))
    };
    if request.method() != &tiny_http::Method::Get && request.method() != &tiny_http::Method::Head {
        return text(405, "only GET\n".into(), "text/plain; charset=utf-8");
    }
    match path {
        "/metrics" => {
            metrics.set_node_state(&read());
            text(
                200,
                metrics.encode(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        "/healthz" => {
            let state = read();
            match &state.raft {
                Some(raft) => text(
                    200,
                    format!(
                        "ok: raft {} term {} applied {} of {} committed, data version {}\n",
                        raft.role, raft.term, raft.applied, raft.commit, state.data_version
                    ),
                    "text/plain; charset=utf-8",
                ),
                None => text(
                    503,
                    "unhealthy: the Raft driver did not answer\n".into(),
                    "text/plain; charset=utf-8",
                ),
            }
        }
        _ => text(
            404,
            "not found; try /metrics or /healthz\n".into(),
            "text/plain; charset=utf-8",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons_map_to_few_labels() {
        assert_eq!(refusal_kind("refused: grant link 2 is revoked"), "revoked");
        assert_eq!(
            refusal_kind("stale metadata: this node has applied index 4"),
            "stale_metadata"
        );
        assert_eq!(refusal_kind("something new"), "other");
    }

    #[test]
    fn a_decided_query_shows_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.query_decided(QueryRole::Entry, Duration::from_millis(3), None, 120, 4, 1);
        metrics.query_decided(
            QueryRole::Sub,
            Duration::from_millis(1),
            Some("refused: the grant expired"),
            0,
            0,
            0,
        );
        let text = metrics.encode();
        assert!(
            text.contains("tiermesh_queries_total{role=\"entry\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tiermesh_query_refusals_total{role=\"sub\",reason=\"expired\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tiermesh_query_rows_scanned_total{role=\"entry\"} 120"),
            "{text}"
        );
        assert!(
            text.contains("tiermesh_query_duration_seconds_bucket"),
            "{text}"
        );
    }
}
