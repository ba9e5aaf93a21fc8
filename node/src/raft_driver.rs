//! The Raft driver of a node: one thread owns the raft-rs `RawNode` over the RocksDB log and the
//! applied metadata state, and follows raft-rs's documented Ready order: send what may go at
//! once, install a snapshot, apply committed entries, persist new entries with the hard state in
//! one synced write, send what had to wait for that, advance, apply what the light ready brings.
//!
//! Inputs (peer messages, proposals, role changes, status questions) arrive on one channel;
//! outputs leave through `Outbox`. Time is the channel's receive timeout (one tick per
//! `tick_ms`).

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType, Message as RaftMessage};
use raft::{RawNode, StateRole};
use tiermesh_crypto::PublicKey;
use tiermesh_federation::meta::{raft_id_of, MetaCommand, MetaState, RoleChange, Signed};
use tiermesh_federation::wire::{self, MeshStatus, Message, NodeStatus, Role};
use tiermesh_storage::RaftLog;
use tokio::sync::oneshot;

use crate::transport::Trust;

/// Election timeout in ticks (randomised by raft-rs between this and twice this).
pub const ELECTION_TICKS: usize = 10;
/// Heartbeat interval in ticks.
pub const HEARTBEAT_TICKS: usize = 2;
/// Default tick: with 10 ticks per election a dead leader is replaced in 1-2 s.
pub const TICK_MS_DEFAULT: u64 = 100;
/// Entries applied between two log compactions.
pub const COMPACT_EVERY_ENTRIES: u64 = 1_000;
/// Most entries a leader keeps for a member that is behind before compacting anyway.
pub const COMPACT_HOLD_MAX_ENTRIES: u64 = 10 * COMPACT_EVERY_ENTRIES;
/// Largest batch of entries in one append message.
pub const APPEND_BYTES_MAX: u64 = 1 << 20;
/// Fresh (read-index) reads waiting at once.
pub const READS_PENDING_MAX: usize = 1024;
/// The largest metadata command accepted for proposal, encoded (a grant file is at most 64 KiB
/// too). Every Raft message carrying it, and every snapshot, must stay far below
/// `MESSAGE_BYTES_MAX`, or replication would stop at that entry.
pub const META_COMMAND_BYTES_MAX: usize = 64 * 1024;
/// Append messages in flight to one follower.
pub const INFLIGHT_APPENDS_MAX: usize = 256;

/// Something for the driver to do.
pub enum Input {
    /// A Raft message from the peer with this raft id (the transport checked the sender).
    Raft(RaftMessage),
    /// Commit a metadata command; the answer is its applied index.
    Propose {
        command: MetaCommand,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Make a registered node a voter or a learner.
    ChangeRole {
        change: Signed<RoleChange>,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Report the mesh as this node sees it.
    Status { reply: oneshot::Sender<MeshStatus> },
    /// Report the mesh once this node has applied everything committed when the question
    /// arrived, as confirmed by the leader (read-index).
    FreshStatus {
        reply: oneshot::Sender<Result<MeshStatus, String>>,
    },
    /// Stop the driver.
    Stop,
}

/// The applied metadata as other threads see it: replaced (not mutated) after each applied batch.
pub type SharedMeta = Arc<std::sync::RwLock<Arc<MetaState>>>;

/// Where the driver's outputs go.
pub trait Outbox: Send {
    /// Send Raft messages to their `to` peers (best effort: Raft tolerates loss).
    fn send(&self, messages: Vec<RaftMessage>, state: &MetaState);
    /// Forward a proposal to the leader, which answers `reply`.
    fn forward(
        &self,
        leader: u64,
        state: &MetaState,
        message: Message,
        reply: oneshot::Sender<Result<u64, String>>,
    );
    /// Whether the peer answered recently.
    fn reachable(&self, raft_id: u64) -> Option<bool>;
}

/// A proposal waiting for its entry to be applied.
struct Pending {
    reply: oneshot::Sender<Result<u64, String>>,
}

/// The driver's state.
pub struct Driver<O: Outbox> {
    raw: RawNode<RaftLog>,
    state: MetaState,
    outbox: O,
    trust: Arc<Trust>,
    shared: SharedMeta,
    bootstrap_keys: Vec<PublicKey>,
    own_key: PublicKey,
    pending: HashMap<u64, Pending>,
    /// Read-index requests sent to the leader, by context.
    reads_asked: HashMap<u64, oneshot::Sender<Result<MeshStatus, String>>>,
    /// Read-index requests confirmed at an index, waiting for the apply to reach it.
    reads_waiting: Vec<(u64, oneshot::Sender<Result<MeshStatus, String>>)>,
    next_proposal: u64,
    applied_since_compaction: u64,
    tick: Duration,
}

/// raft-rs logs through slog; this drain hands its records to `tracing`.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            _ => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

/// The slog logger raft-rs wants, forwarding to `tracing`.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

impl<O: Outbox> Driver<O> {
    /// A driver over an opened log. `bootstrap_keys` stay trusted besides the registry.
    pub fn new(
        log: RaftLog,
        own_key: PublicKey,
        outbox: O,
        trust: Arc<Trust>,
        shared: SharedMeta,
        bootstrap_keys: Vec<PublicKey>,
        tick_ms: u64,
    ) -> Result<Self> {
        let (applied, state) = match log.applied()? {
            Some((index, bytes)) => (
                index,
                MetaState::from_snapshot(&bytes)
                    .context("the applied metadata state is damaged")?,
            ),
            None => (0, MetaState::default()),
        };
        let config = raft::Config {
            id: raft_id_of(&own_key),
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied,
            max_size_per_msg: APPEND_BYTES_MAX,
            max_inflight_msgs: INFLIGHT_APPENDS_MAX,
            check_quorum: true,
            pre_vote: true,
            // Read-index by leader lease: the leader answers from its commit index without a
            // heartbeat round to every member (74 learners in the 77-node benchmark: about 6 ms
            // of each federated query). Safe while clocks drift little against the election
            // timeout: with check_quorum a leader cut off from its quorum steps down within one
            // election timeout, and the others elect no new leader before theirs has passed.
            read_only_option: raft::ReadOnlyOption::LeaseBased,
            ..Default::default()
        };
        config.validate().context("raft configuration")?;
        let raw = RawNode::new(&config, log, &raft_logger()).context("starting raft")?;
        let driver = Driver {
            raw,
            state,
            outbox,
            trust,
            shared,
            bootstrap_keys,
            own_key,
            pending: HashMap::new(),
            reads_asked: HashMap::new(),
            reads_waiting: Vec::new(),
            next_proposal: 1,
            applied_since_compaction: 0,
            tick: Duration::from_millis(tick_ms.max(1)),
        };
        driver.refresh_trust();
        driver.publish();
        Ok(driver)
    }

    /// The applied metadata.
    pub fn state(&self) -> &MetaState {
        &self.state
    }

    fn publish(&self) {
        if let Ok(mut shared) = self.shared.write() {
            *shared = Arc::new(self.state.clone());
        }
    }

    fn refresh_trust(&self) {
        let mut keys: Vec<PublicKey> = self.bootstrap_keys.clone();
        keys.push(self.own_key);
        keys.extend(self.state.nodes().map(|node| node.key));
        keys.extend(self.state.officers().map(|officer| officer.key));
        keys.extend(self.state.grant_audiences());
        self.trust.replace(keys);
    }

    /// Runs until `Input::Stop` or the channel closes.
    pub fn run(mut self, inbox: Receiver<Input>) -> Result<()> {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match inbox.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick += self.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.tick;
                }
            }
            if let Err(error) = self.on_ready() {
                tracing::error!("the Raft driver stops: {error:#}");
                return Err(error);
            }
        }
        Ok(())
    }

    fn leader(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Raft(message) => {
                if let Err(error) = self.raw.step(message) {
                    tracing::debug!("raft refused a message: {error}");
                }
            }
            Input::Propose { command, reply } => self.propose(command, reply),
            Input::ChangeRole { change, reply } => self.change_role(change, reply),
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Input::FreshStatus { reply } => {
                if self.reads_asked.len() + self.reads_waiting.len() >= READS_PENDING_MAX {
                    let _ = reply.send(Err("too many fresh reads waiting; try again".into()));
                    return;
                }
                if self.leader().is_none() {
                    let _ = reply.send(Err("no Raft leader is known yet; try again".into()));
                    return;
                }
                let id = self.next_proposal;
                self.next_proposal += 1;
                self.raw.read_index(id.to_be_bytes().to_vec());
                self.reads_asked.insert(id, reply);
            }
            Input::Stop => {}
        }
    }

    fn propose(&mut self, command: MetaCommand, reply: oneshot::Sender<Result<u64, String>>) {
        if matches!(command, MetaCommand::Bootstrap { .. }) {
            let _ = reply.send(Err(
                "a mesh is bootstrapped only by `tiermesh mesh create`".into()
            ));
            return;
        }
        if self.raw.raft.state != StateRole::Leader {
            match self.leader() {
                Some(leader) => {
                    self.outbox
                        .forward(leader, &self.state, Message::Propose { command }, reply)
                }
                None => {
                    let _ = reply.send(Err("no Raft leader is known yet; try again".into()));
                }
            }
            return;
        }
        let data = match wire::encode(&Message::Propose { command }) {
            Ok(data) if data.len() > META_COMMAND_BYTES_MAX => {
                let _ = reply.send(Err(format!(
                    "a metadata command is at most {META_COMMAND_BYTES_MAX} bytes encoded, this \
                     one is {}",
                    data.len()
                )));
                return;
            }
            Ok(data) => data,
            Err(error) => {
                let _ = reply.send(Err(error.to_string()));
                return;
            }
        };
        let id = self.next_proposal;
        self.next_proposal += 1;
        match self.raw.propose(id.to_be_bytes().to_vec(), data) {
            Ok(()) => {
                self.pending.insert(id, Pending { reply });
            }
            Err(error) => {
                let _ = reply.send(Err(format!("the leader refused the proposal: {error}")));
            }
        }
    }

    fn change_role(
        &mut self,
        change: Signed<RoleChange>,
        reply: oneshot::Sender<Result<u64, String>>,
    ) {
        if self.raw.raft.state != StateRole::Leader {
            match self.leader() {
                Some(leader) => {
                    self.outbox
                        .forward(leader, &self.state, Message::ChangeRole(change), reply)
                }
                None => {
                    let _ = reply.send(Err("no Raft leader is known yet; try again".into()));
                }
            }
            return;
        }
        if let Err(reason) = self.state.check_role_change(&change) {
            let _ = reply.send(Err(reason.to_string()));
            return;
        }
        let Some(node) = self.state.node(&change.body.node) else {
            let _ = reply.send(Err(format!("node {} is not registered", change.body.node)));
            return;
        };
        let mut conf_change = ConfChange {
            node_id: node.raft_id,
            ..Default::default()
        };
        conf_change.set_change_type(if change.body.voter {
            ConfChangeType::AddNode
        } else {
            ConfChangeType::AddLearnerNode
        });
        let id = self.next_proposal;
        self.next_proposal += 1;
        match self
            .raw
            .propose_conf_change(id.to_be_bytes().to_vec(), conf_change)
        {
            Ok(()) => {
                self.pending.insert(id, Pending { reply });
            }
            Err(error) => {
                let _ = reply.send(Err(format!("the role change was refused: {error}")));
            }
        }
    }

    /// Members of the Raft configuration: (voters, learners).
    fn members(&self) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let conf = self.raw.raft.prs().conf();
        let voters = conf.voters().ids().iter().collect();
        let learners = conf.learners().iter().copied().collect();
        (voters, learners)
    }

    fn status(&self) -> MeshStatus {
        let (voters, learners) = self.members();
        let is_leader = self.raw.raft.state == StateRole::Leader;
        let nodes = self
            .state
            .nodes()
            .map(|node| {
                let role = if voters.contains(&node.raft_id) {
                    Role::Voter
                } else if learners.contains(&node.raft_id) {
                    Role::Learner
                } else {
                    Role::Pending
                };
                let matched = if is_leader {
                    self.raw
                        .raft
                        .prs()
                        .get(node.raft_id)
                        .map(|progress| progress.matched)
                } else {
                    None
                };
                let reachable = if node.key == self.own_key {
                    Some(true)
                } else {
                    self.outbox.reachable(node.raft_id)
                };
                NodeStatus {
                    key: node.key,
                    raft_id: node.raft_id,
                    name: node.name.clone(),
                    region: node.region,
                    tier: node.region.tier(),
                    addr: node.addr.clone(),
                    role,
                    matched,
                    reachable,
                }
            })
            .collect();
        MeshStatus {
            responder: self.own_key,
            leader: self.leader(),
            term: self.raw.raft.term,
            commit: self.raw.raft.raft_log.committed,
            applied: self.state.applied_index(),
            nodes,
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        if let Some(soft) = ready.ss() {
            if soft.raft_state != StateRole::Leader {
                // Proposals and reads that waited on a former leader will not be answered:
                // dropping their senders tells the clients to try again.
                self.pending.clear();
            }
            self.reads_asked.clear();
        }
        if !ready.messages().is_empty() {
            self.outbox.send(ready.take_messages(), &self.state);
        }
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.raw
                .mut_store()
                .apply_snapshot(&snapshot)
                .context("installing a snapshot")?;
            self.state = MetaState::from_snapshot(&snapshot.data)
                .context("the leader's snapshot does not decode")?;
            self.refresh_trust();
            self.publish();
        }
        for read in ready.take_read_states() {
            if let Some(reply) =
                proposal_id(&read.request_ctx).and_then(|id| self.reads_asked.remove(&id))
            {
                self.reads_waiting.push((read.index, reply));
            }
        }
        let committed = ready.take_committed_entries();
        self.apply(committed)?;
        let hard_state = ready.hs().cloned();
        if !ready.entries().is_empty() || hard_state.is_some() {
            self.raw
                .mut_store()
                .persist(ready.entries(), hard_state.as_ref())
                .context("persisting Raft entries")?;
        }
        if !ready.persisted_messages().is_empty() {
            self.outbox
                .send(ready.take_persisted_messages(), &self.state);
        }
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw
                .mut_store()
                .set_commit(commit)
                .context("persisting the commit index")?;
        }
        if !light.messages().is_empty() {
            self.outbox.send(light.take_messages(), &self.state);
        }
        let committed = light.take_committed_entries();
        self.apply(committed)?;
        self.raw.advance_apply();
        self.answer_reads();
        self.reconcile_members();
        Ok(())
    }

    /// Answers the read-index requests whose index has been applied.
    fn answer_reads(&mut self) {
        if self.reads_waiting.is_empty() {
            return;
        }
        let applied = self.state.applied_index();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_waiting)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_waiting = waiting;
        for (_, reply) in ready {
            let _ = reply.send(Ok(self.status()));
        }
    }

    /// Applies committed entries in order, then saves the state with its index durably.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        let Some(last) = entries.last().map(|entry| entry.index) else {
            return Ok(());
        };
        let mut registry_changed = false;
        for entry in entries {
            let proposal = proposal_id(&entry.context);
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if entry.data.is_empty() {
                        // The empty entry a new leader appends.
                        self.state.advance(entry.index);
                        continue;
                    }
                    let outcome = match wire::decode(&entry.data) {
                        Ok(Message::Propose { command }) => self
                            .state
                            .apply(entry.index, &command)
                            .map(|_| entry.index)
                            .map_err(|error| error.to_string()),
                        Ok(_) | Err(_) => {
                            self.state.advance(entry.index);
                            Err("the entry is not a metadata command".to_string())
                        }
                    };
                    registry_changed |= outcome.is_ok();
                    self.answer(proposal, outcome);
                }
                EntryType::EntryConfChange => {
                    let outcome = match ConfChange::parse_from_bytes(&entry.data) {
                        Ok(change) => match self.raw.apply_conf_change(&change) {
                            Ok(conf_state) => {
                                self.raw
                                    .mut_store()
                                    .set_conf_state(&conf_state)
                                    .context("persisting the configuration")?;
                                Ok(entry.index)
                            }
                            Err(error) => Err(format!("configuration change refused: {error}")),
                        },
                        Err(error) => Err(format!("configuration change does not decode: {error}")),
                    };
                    self.state.advance(entry.index);
                    self.answer(proposal, outcome);
                }
                EntryType::EntryConfChangeV2 => {
                    self.state.advance(entry.index);
                    self.answer(
                        proposal,
                        Err("joint configuration changes are not used".into()),
                    );
                }
            }
        }
        let bytes = self.state.to_snapshot();
        // A leader holds compaction back while a live member still needs the entries (it would
        // otherwise be sent a snapshot), but never past COMPACT_HOLD_MAX_ENTRIES.
        let own_id = self.raw.raft.id;
        let member_behind = self.raw.raft.state == StateRole::Leader
            && self.raw.raft.prs().iter().any(|(id, progress)| {
                *id != own_id && progress.recent_active && progress.matched < last
            });
        let log = self.raw.mut_store();
        log.save_applied(last, &bytes)
            .context("saving the applied metadata")?;
        self.applied_since_compaction += 1;
        let backlog = last.saturating_sub(log.first_index_cached());
        if self.applied_since_compaction >= COMPACT_EVERY_ENTRIES.min(64)
            && backlog >= COMPACT_EVERY_ENTRIES
            && (!member_behind || backlog >= COMPACT_HOLD_MAX_ENTRIES)
        {
            log.compact(last, &bytes)
                .context("compacting the Raft log")?;
            self.applied_since_compaction = 0;
        }
        if registry_changed {
            self.refresh_trust();
        }
        self.publish();
        Ok(())
    }

    fn answer(&mut self, proposal: Option<u64>, outcome: Result<u64, String>) {
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        if let Some(pending) = proposal.and_then(|id| self.pending.remove(&id)) {
            let _ = pending.reply.send(outcome);
        }
    }

    /// The leader adds every registered node that is not yet a member as a learner, one
    /// configuration change at a time.
    fn reconcile_members(&mut self) {
        if self.raw.raft.state != StateRole::Leader || self.raw.raft.has_pending_conf() {
            return;
        }
        let (voters, learners) = self.members();
        let missing = self
            .state
            .nodes()
            .map(|node| node.raft_id)
            .find(|id| !voters.contains(id) && !learners.contains(id));
        if let Some(id) = missing {
            let mut change = ConfChange {
                node_id: id,
                ..Default::default()
            };
            change.set_change_type(ConfChangeType::AddLearnerNode);
            if let Err(error) = self.raw.propose_conf_change(Vec::new(), change) {
                tracing::debug!("adding learner {id:016x} refused: {error}");
            }
        }
    }
}

fn proposal_id(context: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = context.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
