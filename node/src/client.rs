//! The command line's side of the mesh: connect to a node as an officer (or any registered key),
//! send one request, retry while the mesh elects a leader.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::wire::{MeshStatus, Message};

use crate::transport::{self, ServerTrust};

/// How long a command keeps retrying a request the mesh cannot take yet (no leader).
pub const RETRY_FOR_MS: u64 = 15_000;
/// First pause between retries; doubles up to `RETRY_PAUSE_MAX_MS`.
pub const RETRY_PAUSE_MIN_MS: u64 = 100;
/// Longest pause between retries.
pub const RETRY_PAUSE_MAX_MS: u64 = 1_000;

/// Loads a PKCS#8 Ed25519 key file (as written by `tiermesh keygen` or `tiermesh init`).
pub fn load_key(path: &Path) -> Result<SigningKey> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the key file {}", path.display()))?;
    SigningKey::from_pkcs8(&bytes)
        .with_context(|| format!("{} is not an Ed25519 key file", path.display()))
}

/// Resolves `HOST:PORT`.
pub fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("'{addr}' is not HOST:PORT"))?
        .next()
        .ok_or_else(|| anyhow!("'{addr}' resolves to no address"))
}

/// A connection to one node for a command.
pub struct Session {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    /// The key the node presented.
    pub server_key: Option<PublicKey>,
}

/// Runs `future` to its end on a new single-threaded runtime (the CLI's client commands).
pub fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// Polls `session`'s status every `poll_ms` until `condition` holds, for at most `deadline_ms`.
pub async fn wait_for_status(
    session: &Session,
    what: &str,
    deadline_ms: u64,
    poll_ms: u64,
    condition: impl Fn(&MeshStatus) -> bool,
) -> Result<MeshStatus> {
    let deadline = Instant::now() + Duration::from_millis(deadline_ms);
    loop {
        let last = match session.status(false).await {
            Ok(status) if condition(&status) => return Ok(status),
            Ok(status) => format!("{status:?}"),
            Err(error) => format!("{error:#}"),
        };
        if Instant::now() > deadline {
            bail!("{what}: not within {} s; last: {last}", deadline_ms / 1000);
        }
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
    }
}

/// Makes the registered nodes `keys` voters, signed by `officer`: waits (at most
/// `deadline_ms`) until each is in the Raft configuration as a learner, then commits one role
/// change per key.
pub async fn promote_to_voters(
    session: &Session,
    officer: &SigningKey,
    keys: &[PublicKey],
    deadline_ms: u64,
    poll_ms: u64,
) -> Result<()> {
    use tiermesh_federation::meta::{sign_role_change, RoleChange};
    use tiermesh_federation::wire::Role;
    wait_for_status(
        session,
        "the nodes to promote in the Raft configuration",
        deadline_ms,
        poll_ms,
        |status| {
            keys.iter().all(|key| {
                status
                    .role_of(key)
                    .is_some_and(|role| role != Role::Pending)
            })
        },
    )
    .await?;
    for key in keys {
        let change = sign_role_change(
            officer,
            RoleChange {
                node: *key,
                voter: true,
                nonce: crate::random_u64()?,
            },
        );
        session
            .commit(&Message::ChangeRole(change))
            .await
            .with_context(|| format!("promoting {key} to voter"))?;
    }
    Ok(())
}

impl Session {
    /// The node's view of the mesh; `fresh` answers through a Raft read-index.
    pub async fn status(&self, fresh: bool) -> Result<MeshStatus> {
        let request = if fresh {
            Message::FreshStatusRequest
        } else {
            Message::StatusRequest
        };
        match self.request(&request).await? {
            Message::StatusReply(status) => Ok(status),
            Message::Error { message } => bail!("the node answered: {message}"),
            other => bail!("unexpected answer {other:?}"),
        }
    }

    /// Connects to `addr` presenting `key`; `server_key` pins the node's key when given.
    pub async fn connect(
        key: &SigningKey,
        addr: &str,
        server_key: Option<PublicKey>,
    ) -> Result<Session> {
        let target = resolve(addr)?;
        let trust = server_key.map_or(ServerTrust::Any, ServerTrust::Pinned);
        let endpoint = transport::client_endpoint(key, trust, target)?;
        let connection = transport::connect(&endpoint, target).await.with_context(|| {
            format!(
                "is a node running at {addr}, and is key {} registered in its mesh (as a node or an officer)?",
                key.public_key()
            )
        })?;
        let server_key = transport::peer_key(&connection);
        Ok(Session {
            endpoint,
            connection,
            server_key,
        })
    }

    /// One request, one answer.
    pub async fn request(&self, message: &Message) -> Result<Message> {
        transport::request(
            &self.connection,
            message,
            Duration::from_millis(transport::REQUEST_TIMEOUT_MS),
        )
        .await
    }

    /// One request with its own wait.
    pub async fn request_with_timeout(
        &self,
        message: &Message,
        timeout_ms: u64,
    ) -> Result<Message> {
        transport::request(&self.connection, message, Duration::from_millis(timeout_ms)).await
    }

    /// Sends a write (`Propose`, `ChangeRole`) until it commits, retrying while the mesh has no
    /// leader or the leader changed, for at most `RETRY_FOR_MS`. Returns the applied index.
    pub async fn commit(&self, message: &Message) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_millis(RETRY_FOR_MS);
        let mut pause = RETRY_PAUSE_MIN_MS;
        loop {
            let reason = match self.request(message).await {
                Ok(Message::ProposeReply { result }) | Ok(Message::ChangeRoleReply { result }) => {
                    match result {
                        Ok(index) => return Ok(index),
                        Err(reason) if retryable(&reason) => reason,
                        Err(reason) => bail!("refused: {reason}"),
                    }
                }
                Ok(Message::Error { message }) => bail!("the node answered: {message}"),
                Ok(other) => bail!("unexpected answer {other:?}"),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() + Duration::from_millis(pause) > deadline {
                bail!("not committed within {} s: {reason}", RETRY_FOR_MS / 1000);
            }
            tokio::time::sleep(Duration::from_millis(pause)).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX_MS);
        }
    }

    /// Closes the connection cleanly.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

/// Failures that a retry may cure: elections and leadership changes.
fn retryable(reason: &str) -> bool {
    [
        "no Raft leader",
        "try again",
        "unreachable",
        "forwarding to the leader failed",
    ]
    .iter()
    .any(|needle| reason.contains(needle))
}
