//! A running node in the mesh (`tiermesh run`): the QUIC endpoint, the connection handlers, the
//! per-peer senders, and the Raft driver thread, wired together.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use protobuf::Message as _;
use raft::prelude::Message as RaftMessage;
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::meta::{raft_id_of, MetaState};
use tiermesh_federation::wire::{self, Message, MESSAGE_BYTES_MAX};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use crate::raft_driver::{Driver, Input, Outbox};
use crate::transport::{self, Trust};

/// Raft messages queued for one peer; past this, new ones are dropped (Raft resends).
pub const PEER_QUEUE_MESSAGES: usize = 1024;
/// First wait before reconnecting to a peer that failed.
pub const RECONNECT_BACKOFF_MIN_MS: u64 = 50;
/// Longest wait between reconnection attempts.
pub const RECONNECT_BACKOFF_MAX_MS: u64 = 2_000;
/// Wait for the driver's answer to a request.
pub const DRIVER_ANSWER_TIMEOUT_MS: u64 = 10_000;
/// Wait for the leader's answer to a forwarded write. A leader that was killed keeps its QUIC
/// connection open until the idle timeout; past this wait the client is told to retry, by which
/// time the followers have elected another leader.
pub const FORWARD_TIMEOUT_MS: u64 = 1_500;
/// Connections one key may hold open to a node at once; more are closed with the reason.
pub const CONNECTIONS_PER_KEY_MAX: usize = 64;
/// Connections a node holds open at once, all keys together; more are refused.
pub const CONNECTIONS_OPEN_MAX: usize = 4096;
/// How long an entry node may take to confirm with the Raft leader (read-index) that it has
/// applied every committed entry before it checks a client's grant; past it, it refuses.
pub const METADATA_CONFIRM_MS: u64 = 2_000;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Peers trusted before the registry knows them (key and address), e.g. the national node
    /// for a node joining the mesh.
    pub bootstrap_peers: Vec<(PublicKey, SocketAddr)>,
    /// Raft tick.
    pub tick_ms: u64,
    /// Online imports from the node's operators; `None` refuses them.
    pub import: Option<crate::online_import::ImportSettings>,
    /// The folder of the node's audit log and audit key (`DIR/audit`); `None` keeps no log
    /// (only for nodes without a directory of their own).
    pub audit_dir: Option<std::path::PathBuf>,
    /// What the node counts (shown on its admin port, if it has one).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// One peer's sender: a queue and whether the last attempt reached it.
struct PeerSender {
    queue: tokio_mpsc::Sender<Vec<u8>>,
    reachable: Arc<AtomicBool>,
}

/// Routes to peers, shared by the driver (which sends) and the connection handlers (which learn
/// connections that peers opened to us).
struct Peers {
    endpoint: quinn::Endpoint,
    runtime: tokio::runtime::Handle,
    senders: Mutex<HashMap<u64, PeerSender>>,
    /// The newest connection served with each peer, by its raft id, whichever side opened it:
    /// a route back even before the registry knows the peer's address, and the freshest sign
    /// of life after the peer restarted.
    inbound: Mutex<HashMap<u64, quinn::Connection>>,
    /// Addresses from the registry and the bootstrap list.
    addresses: Mutex<HashMap<u64, SocketAddr>>,
    /// The driver's inbox: connections we open are served like accepted ones, so a peer may
    /// answer on the connection we opened.
    inbox: mpsc::Sender<Input>,
    /// Federated queries.
    queries: Arc<crate::federated::QueryService>,
    /// Online imports.
    imports: Arc<crate::online_import::ImportService>,
    /// Connections open per peer key (bounded by `CONNECTIONS_PER_KEY_MAX`).
    open: Mutex<HashMap<PublicKey, usize>>,
}

impl Peers {
    fn address_of(&self, raft_id: u64) -> Option<SocketAddr> {
        self.addresses.lock().ok()?.get(&raft_id).copied()
    }

    fn inbound(&self, raft_id: u64) -> Option<quinn::Connection> {
        let connection = self.inbound.lock().ok()?.get(&raft_id).cloned()?;
        connection.close_reason().is_none().then_some(connection)
    }

    /// A live connection to the peer: the newest one served with it, else the one `cached`,
    /// else a new outbound one.
    ///
    /// The newest comes first: a peer killed and restarted leaves the connection cached here
    /// looking open until the idle timeout (writes to it are only buffered), while the restarted
    /// peer's own connection to us is registered as soon as it dials (a restarted voter does
    /// when it campaigns). Staying on the cached one would keep the restarted peer unreached,
    /// and behind, for that long.
    async fn connection(
        self: &Arc<Self>,
        raft_id: u64,
        cached: &mut Option<quinn::Connection>,
    ) -> Result<quinn::Connection> {
        if let Some(newest) = self.inbound(raft_id) {
            *cached = Some(newest.clone());
            return Ok(newest);
        }
        if let Some(connection) = cached.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(connection.clone());
        }
        let addr = self
            .address_of(raft_id)
            .ok_or_else(|| anyhow!("no address known for peer {raft_id:016x}"))?;
        let connection = transport::connect(&self.endpoint, addr).await?;
        tokio::spawn(serve_connection(
            connection.clone(),
            self.inbox.clone(),
            Arc::clone(self),
        ));
        *cached = Some(connection.clone());
        Ok(connection)
    }

    fn sender(self: &Arc<Self>, raft_id: u64) -> Option<tokio_mpsc::Sender<Vec<u8>>> {
        let mut senders = self.senders.lock().ok()?;
        if let Some(sender) = senders.get(&raft_id) {
            if !sender.queue.is_closed() {
                return Some(sender.queue.clone());
            }
        }
        let (queue, mut receiver) = tokio_mpsc::channel::<Vec<u8>>(PEER_QUEUE_MESSAGES);
        let reachable = Arc::new(AtomicBool::new(false));
        let peers = Arc::clone(self);
        let flag = Arc::clone(&reachable);
        self.runtime.spawn(async move {
            let mut cached = None;
            let mut backoff = RECONNECT_BACKOFF_MIN_MS;
            while let Some(bytes) = receiver.recv().await {
                let sent = match peers.connection(raft_id, &mut cached).await {
                    Ok(connection) => transport::send_oneway(&connection, &bytes).await,
                    Err(error) => Err(error),
                };
                match sent {
                    Ok(()) => {
                        flag.store(true, Ordering::Relaxed);
                        backoff = RECONNECT_BACKOFF_MIN_MS;
                    }
                    Err(error) => {
                        flag.store(false, Ordering::Relaxed);
                        cached = None;
                        tracing::debug!("peer {raft_id:016x}: {error:#}");
                        // Drop what queued up meanwhile: Raft resends what still matters.
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                        while receiver.try_recv().is_ok() {}
                        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX_MS);
                    }
                }
            }
        });
        senders.insert(
            raft_id,
            PeerSender {
                queue: queue.clone(),
                reachable,
            },
        );
        Some(queue)
    }
}

impl crate::federated::Dialer for Arc<Peers> {
    fn dial(
        &self,
        key: PublicKey,
        addr: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<quinn::Connection>> + Send>>
    {
        let peers = Arc::clone(self);
        Box::pin(async move {
            let raft_id = raft_id_of(&key);
            if let (Ok(addr), Ok(mut addresses)) = (addr.parse(), peers.addresses.lock()) {
                addresses.insert(raft_id, addr);
            }
            let mut cached = None;
            peers.connection(raft_id, &mut cached).await
        })
    }
}

/// The driver's outbox over QUIC.
struct QuicOutbox {
    peers: Arc<Peers>,
}

impl Outbox for QuicOutbox {
    fn send(&self, messages: Vec<RaftMessage>, state: &MetaState) {
        if let Ok(mut addresses) = self.peers.addresses.lock() {
            for node in state.nodes() {
                if let Ok(addr) = node.addr.parse() {
                    addresses.insert(node.raft_id, addr);
                }
            }
        }
        for message in messages {
            let to = message.to;
            tracing::trace!(
                "send {:?} to {to:016x} (index {}, {} entries, snapshot {})",
                message.get_msg_type(),
                message.index,
                message.entries.len(),
                message.snapshot.is_some()
            );
            let bytes = match message
                .write_to_bytes()
                .map_err(|error| anyhow!("{error}"))
                .and_then(|raft| Ok(wire::encode(&Message::Raft { bytes: raft })?))
            {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!("cannot encode a Raft message: {error:#}");
                    continue;
                }
            };
            if let Some(queue) = self.peers.sender(to) {
                // A full queue means the peer is slow or gone; Raft will resend.
                let _ = queue.try_send(bytes);
            }
        }
    }

    fn forward(
        &self,
        leader: u64,
        state: &MetaState,
        message: Message,
        reply: oneshot::Sender<Result<u64, String>>,
    ) {
        let peers = Arc::clone(&self.peers);
        if let Some(node) = state.node_by_raft_id(leader) {
            if let (Ok(addr), Ok(mut addresses)) = (node.addr.parse(), peers.addresses.lock()) {
                addresses.insert(leader, addr);
            }
        }
        self.peers.runtime.spawn(async move {
            let mut cached = None;
            let outcome = match peers.connection(leader, &mut cached).await {
                Ok(connection) => {
                    match transport::request(
                        &connection,
                        &message,
                        Duration::from_millis(FORWARD_TIMEOUT_MS),
                    )
                    .await
                    {
                        Ok(Message::ProposeReply { result })
                        | Ok(Message::ChangeRoleReply { result }) => result,
                        Ok(Message::Error { message }) => Err(message),
                        Ok(other) => Err(format!("the leader answered {other:?}")),
                        Err(error) => Err(format!("forwarding to the leader failed: {error:#}")),
                    }
                }
                Err(error) => Err(format!("the leader is unreachable: {error:#}")),
            };
            let _ = reply.send(outcome);
        });
    }

    fn reachable(&self, raft_id: u64) -> Option<bool> {
        let senders = self.peers.senders.lock().ok()?;
        senders
            .get(&raft_id)
            .map(|sender| sender.reachable.load(Ordering::Relaxed))
    }
}

/// A running node.
pub struct RunningNode {
    /// The address it listens on.
    pub addr: SocketAddr,
    inbox: mpsc::Sender<Input>,
    endpoint: quinn::Endpoint,
    driver: Option<std::thread::JoinHandle<Result<()>>>,
    driver_ended: Option<oneshot::Receiver<()>>,
    queries: Arc<crate::federated::QueryService>,
    runtime: tokio::runtime::Handle,
}

impl RunningNode {
    /// Resolves when the Raft driver has stopped on its own (a storage failure): the node can
    /// no longer serve and should exit.
    pub async fn driver_ended(&mut self) {
        match self.driver_ended.as_mut() {
            Some(ended) => {
                let _ = ended.await;
            }
            None => std::future::pending().await,
        }
    }

    /// Reads the node's state for the admin port (from any thread outside the runtime): the
    /// driver's status, waited for at most `HEALTH_STATUS_WAIT_MS`, and the store's counts.
    pub fn state_reader(&self) -> crate::metrics::StateReader {
        let inbox = self.inbox.clone();
        let queries = Arc::clone(&self.queries);
        let endpoint = self.endpoint.clone();
        let runtime = self.runtime.clone();
        Arc::new(move || {
            let own = queries.own_key;
            let raft = runtime.block_on(async {
                let status = ask_within(
                    &inbox,
                    |reply| Input::Status { reply },
                    crate::metrics::HEALTH_STATUS_WAIT_MS,
                )
                .await
                .ok()?;
                Some(crate::metrics::RaftState {
                    term: status.term,
                    commit: status.commit,
                    applied: status.applied,
                    role: status.role_label(&own),
                    nodes: status.nodes.len(),
                })
            });
            let (data_version, households, persons) = match queries.store.lock() {
                Ok(store) => {
                    let image = store.image();
                    (
                        image.data_version,
                        image.households_len() as u64,
                        image.persons_len() as u64,
                    )
                }
                Err(_) => (0, 0, 0),
            };
            let audit_records = queries
                .audit
                .as_ref()
                .and_then(|log| log.lock().ok().map(|log| log.leaves().len() as u64))
                .unwrap_or(0);
            crate::metrics::NodeState {
                raft,
                data_version,
                households,
                persons,
                audit_records,
                connections: endpoint.open_connections() as u64,
            }
        })
    }

    /// Stops the driver and closes the endpoint.
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.inbox.send(Input::Stop);
        self.endpoint.close(0u32.into(), b"shutting down");
        let driver = self.driver.take();
        let joined = tokio::task::spawn_blocking(move || driver.map(|handle| handle.join()))
            .await
            .context("joining the driver")?;
        match joined {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the Raft driver thread panicked"),
            None => Ok(()),
        }
    }
}

/// Starts a node: endpoint, driver thread, accept loop. Call inside a tokio runtime.
pub fn start(
    key: SigningKey,
    log: tiermesh_storage::RaftLog,
    store: Arc<Mutex<tiermesh_storage::Store>>,
    options: &RunOptions,
) -> Result<RunningNode> {
    let own = key.public_key();
    let imports = crate::online_import::ImportService::new(
        own,
        options.import.clone(),
        Arc::clone(&store),
        Arc::clone(&options.metrics),
    )?;
    // Operators connect only to import; the transport must know their keys like the bootstrap
    // peers' (they take no part in Raft: `is_node` checks the registry).
    let bootstrap_keys: Vec<PublicKey> = options
        .bootstrap_peers
        .iter()
        .map(|(key, _)| *key)
        .chain(imports.operator_keys())
        .collect();
    let trust = Trust::new(bootstrap_keys.iter().copied().chain([own]));
    let endpoint = transport::node_endpoint(options.listen, &key, Arc::clone(&trust))?;
    let addr = endpoint.local_addr().context("local address")?;
    let (inbox, receiver) = mpsc::channel::<Input>();
    let shared: crate::raft_driver::SharedMeta =
        Arc::new(std::sync::RwLock::new(Arc::new(MetaState::default())));
    let peers = Arc::new(Peers {
        open: Mutex::new(HashMap::new()),
        queries: crate::federated::QueryService::new(
            own,
            Arc::clone(&shared),
            store,
            match &options.audit_dir {
                Some(dir) => Some(Arc::new(Mutex::new(crate::audit_cli::open_log(dir, own)?))),
                None => None,
            },
            Arc::clone(&options.metrics),
        ),
        imports,
        inbox: inbox.clone(),
        endpoint: endpoint.clone(),
        runtime: tokio::runtime::Handle::current(),
        senders: Mutex::new(HashMap::new()),
        inbound: Mutex::new(HashMap::new()),
        addresses: Mutex::new(
            options
                .bootstrap_peers
                .iter()
                .map(|(key, addr)| (raft_id_of(key), *addr))
                .collect(),
        ),
    });
    let driver = Driver::new(
        log,
        own,
        QuicOutbox {
            peers: Arc::clone(&peers),
        },
        trust,
        shared,
        bootstrap_keys,
        options.tick_ms,
    )?;
    let (ended_sender, driver_ended) = oneshot::channel();
    let driver = std::thread::Builder::new()
        .name("raft-driver".to_string())
        .spawn(move || {
            let result = driver.run(receiver);
            let _ = ended_sender.send(());
            result
        })
        .context("starting the Raft driver thread")?;
    let queries = Arc::clone(&peers.queries);
    let accept_endpoint = endpoint.clone();
    let accept_inbox = inbox.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept_endpoint.accept().await {
            if accept_endpoint.open_connections() >= CONNECTIONS_OPEN_MAX {
                tracing::warn!("refusing a connection: {CONNECTIONS_OPEN_MAX} are open");
                peers.queries.metrics.connection_refused();
                incoming.refuse();
                continue;
            }
            let inbox = accept_inbox.clone();
            let peers = Arc::clone(&peers);
            tokio::spawn(async move {
                match incoming.await {
                    Ok(connection) => serve_connection(connection, inbox, peers).await,
                    Err(error) => {
                        peers.queries.metrics.connection_refused();
                        tracing::debug!("refused a connection: {error}");
                    }
                }
            });
        }
    });
    Ok(RunningNode {
        addr,
        inbox,
        endpoint,
        driver: Some(driver),
        driver_ended: Some(driver_ended),
        queries,
        runtime: tokio::runtime::Handle::current(),
    })
}

async fn serve_connection(
    connection: quinn::Connection,
    inbox: mpsc::Sender<Input>,
    peers: Arc<Peers>,
) {
    let Some(peer) = transport::peer_key(&connection) else {
        connection.close(1u32.into(), b"no peer key");
        return;
    };
    let admitted = peers.open.lock().is_ok_and(|mut open| {
        let count = open.entry(peer).or_insert(0);
        *count += 1;
        *count <= CONNECTIONS_PER_KEY_MAX
    });
    if !admitted {
        release(&peers, &peer);
        tracing::warn!("peer {peer}: more than {CONNECTIONS_PER_KEY_MAX} connections; closing one");
        peers.queries.metrics.connection_refused();
        connection.close(2u32.into(), b"too many connections from this key");
        return;
    }
    serve_admitted(connection, inbox, &peers, peer).await;
    release(&peers, &peer);
}

/// Forgets one open connection of `peer`.
fn release(peers: &Peers, peer: &PublicKey) {
    if let Ok(mut open) = peers.open.lock() {
        if let Some(count) = open.get_mut(peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(peer);
            }
        }
    }
}

async fn serve_admitted(
    connection: quinn::Connection,
    inbox: mpsc::Sender<Input>,
    peers: &Arc<Peers>,
    peer: PublicKey,
) {
    let peer_raft_id = raft_id_of(&peer);
    if let Ok(mut inbound) = peers.inbound.lock() {
        inbound.insert(peer_raft_id, connection.clone());
    }
    loop {
        tokio::select! {
            stream = connection.accept_uni() => {
                let Ok(mut stream) = stream else { break };
                let inbox = inbox.clone();
                let peers = Arc::clone(peers);
                tokio::spawn(async move {
                    let bytes = match stream.read_to_end(MESSAGE_BYTES_MAX).await {
                        Ok(bytes) => bytes,
                        Err(error) => {
                            tracing::debug!("peer {peer}: unreadable stream: {error}");
                            return;
                        }
                    };
                    match wire::decode(&bytes) {
                        Ok(Message::Raft { bytes }) => match RaftMessage::parse_from_bytes(&bytes) {
                            // A peer speaks only for itself, and only nodes take part in Raft
                            // (officers and grant audiences may connect, not vote).
                            Ok(message) if message.from == peer_raft_id && is_node(&peers, &peer) => {
                                tracing::trace!("received {:?} from {:016x}", message.get_msg_type(), message.from);
                                let _ = inbox.send(Input::Raft(message));
                            }
                            Ok(message) => tracing::warn!(
                                "peer {peer} sent a Raft message claiming to be {:016x}", message.from
                            ),
                            Err(error) => tracing::warn!("peer {peer}: bad Raft message: {error}"),
                        },
                        Ok(other) => tracing::warn!("peer {peer}: unexpected one-way message {other:?}"),
                        Err(error) => tracing::warn!("peer {peer}: {error}"),
                    }
                });
            }
            stream = connection.accept_bi() => {
                let Ok((mut send, mut receive)) = stream else { break };
                let inbox = inbox.clone();
                let peers = Arc::clone(peers);
                tokio::spawn(async move {
                    let answer = match receive.read_to_end(MESSAGE_BYTES_MAX).await {
                        Ok(bytes) => match wire::decode(&bytes) {
                            Ok(Message::ClientQuery(request)) => {
                                let dialer: Arc<dyn crate::federated::Dialer> = Arc::new(Arc::clone(&peers));
                                // Confirm with the leader (read-index) that this node has applied
                                // everything committed, revocations included, before checking
                                // the grant; a node that cannot confirm refuses.
                                let confirmed = match ask_within(&inbox, |reply| Input::FreshStatus { reply }, METADATA_CONFIRM_MS).await {
                                    Ok(Ok(status)) => Ok(status.applied),
                                    Ok(Err(reason)) | Err(reason) => Err(format!(
                                        "refused: this node cannot confirm its metadata is current \
                                         (no read-index from the Raft leader within {METADATA_CONFIRM_MS} ms: \
                                         {reason}); it answers no query rather than risk a revoked grant"
                                    )),
                                };
                                peers.queries.client_query(dialer, *request, confirmed).await
                            }
                            Ok(Message::GrantListRequest { region }) => peers.queries.grant_list(region),
                            Ok(Message::AuditHeadRequest { known_size }) => {
                                crate::audit_cli::head_reply(peers.queries.audit.as_ref(), known_size)
                            }
                            Ok(Message::SubQuery(sub)) => {
                                let dialer: Arc<dyn crate::federated::Dialer> = Arc::new(Arc::clone(&peers));
                                peers.queries.sub_query(dialer, *sub).await
                            }
                            Ok(request @ (Message::ImportChunk(_) | Message::ImportCommit(_))) => {
                                peers.imports.handle(peer, request).await
                            }
                            Ok(request) => answer(request, &inbox).await,
                            Err(error) => Message::Error { message: error.to_string() },
                        },
                        Err(error) => Message::Error { message: format!("unreadable request: {error}") },
                    };
                    // An answer too large for one message (a GROUP BY with too many groups)
                    // goes back as a clear refusal, never as a silently empty stream.
                    let bytes = wire::encode(&answer).or_else(|error| {
                        wire::encode(&Message::Error {
                            message: format!(
                                "the answer cannot be sent: {error}; ask for fewer groups \
                                 (a coarser GROUP BY or a narrower WHERE)"
                            ),
                        })
                    });
                    if let Ok(bytes) = bytes {
                        let _ = send.write_all(&bytes).await;
                        let _ = send.finish();
                    }
                });
            }
        }
    }
}

fn is_node(peers: &Peers, key: &PublicKey) -> bool {
    peers
        .queries
        .meta
        .read()
        .map(|state| state.node(key).is_some() || !state.is_bootstrapped())
        .unwrap_or(false)
}

async fn ask<T>(
    inbox: &mpsc::Sender<Input>,
    make: impl FnOnce(oneshot::Sender<T>) -> Input,
) -> Result<T, String> {
    ask_within(inbox, make, DRIVER_ANSWER_TIMEOUT_MS).await
}

async fn ask_within<T>(
    inbox: &mpsc::Sender<Input>,
    make: impl FnOnce(oneshot::Sender<T>) -> Input,
    timeout_ms: u64,
) -> Result<T, String> {
    let (reply, answer) = oneshot::channel();
    inbox
        .send(make(reply))
        .map_err(|_| "the node is shutting down".to_string())?;
    match tokio::time::timeout(Duration::from_millis(timeout_ms), answer).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err("the proposal was dropped (leadership changed); try again".to_string()),
        Err(_) => Err("no answer in time; try again".to_string()),
    }
}

async fn answer(request: Message, inbox: &mpsc::Sender<Input>) -> Message {
    match request {
        Message::Propose { command } => {
            let result = ask(inbox, |reply| Input::Propose { command, reply }).await;
            Message::ProposeReply {
                result: result.and_then(|inner| inner),
            }
        }
        Message::ChangeRole(change) => {
            let result = ask(inbox, |reply| Input::ChangeRole { change, reply }).await;
            Message::ChangeRoleReply {
                result: result.and_then(|inner| inner),
            }
        }
        Message::StatusRequest => match ask(inbox, |reply| Input::Status { reply }).await {
            Ok(status) => Message::StatusReply(status),
            Err(message) => Message::Error { message },
        },
        Message::FreshStatusRequest => {
            match ask(inbox, |reply| Input::FreshStatus { reply }).await {
                Ok(Ok(status)) => Message::StatusReply(status),
                Ok(Err(message)) | Err(message) => Message::Error { message },
            }
        }
        other => Message::Error {
            message: format!("not a request: {}", message_name(&other)),
        },
    }
}

fn message_name(message: &Message) -> &'static str {
    match message {
        Message::Raft { .. } => "Raft",
        Message::Propose { .. } => "Propose",
        Message::ProposeReply { .. } => "ProposeReply",
        Message::ChangeRole(_) => "ChangeRole",
        Message::ChangeRoleReply { .. } => "ChangeRoleReply",
        Message::StatusRequest => "StatusRequest",
        Message::StatusReply(_) => "StatusReply",
        Message::Error { .. } => "Error",
        Message::FreshStatusRequest => "FreshStatusRequest",
        Message::ClientQuery(_) => "ClientQuery",
        Message::SubQuery(_) => "SubQuery",
        Message::SubQueryAnswer(_) => "SubQueryAnswer",
        Message::QueryAnswer(_) => "QueryAnswer",
        Message::ImportChunk(_) => "ImportChunk",
        Message::ImportChunkAck { .. } => "ImportChunkAck",
        Message::ImportCommit(_) => "ImportCommit",
        Message::ImportAnswer(_) => "ImportAnswer",
        Message::GrantListRequest { .. } => "GrantListRequest",
        Message::GrantList(_) => "GrantList",
        Message::AuditHeadRequest { .. } => "AuditHeadRequest",
        Message::AuditHead(_) => "AuditHead",
    }
}
