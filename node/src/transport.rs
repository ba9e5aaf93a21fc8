//! QUIC between nodes (quinn): mutual TLS where each side's certificate carries its Ed25519
//! node key, and a peer is accepted only if that key is trusted (in the applied registry, or a
//! bootstrap key). One request per bidirectional stream, one Raft message batch per
//! unidirectional stream; every read is bounded by `MESSAGE_BYTES_MAX`.
//!
//! Boundary: certificates and stream bytes from the network. A peer proves possession of the key
//! we trust: the handshake signature is checked against that key itself, not against whatever
//! else a certificate parser finds in the certificate.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::wire::{self, Message, MESSAGE_BYTES_MAX};

/// ALPN protocol name of TierMesh's QUIC connections.
pub const ALPN: &[u8] = b"tiermesh/1";
/// Concurrent streams a peer may open on one connection, each direction.
pub const STREAMS_MAX: u32 = 64;
/// Connections accepted at once by a node.
pub const CONNECTIONS_MAX: usize = 1024;
/// A connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT_MS: u64 = 30_000;
/// Keep-alive interval, well inside the idle timeout.
pub const KEEP_ALIVE_MS: u64 = 5_000;
/// Flow-control window of one stream: one whole message.
pub const STREAM_WINDOW_BYTES: u32 = MESSAGE_BYTES_MAX as u32 + 1024;
/// Flow-control window of one connection.
pub const CONNECTION_WINDOW_BYTES: u32 = 4 * STREAM_WINDOW_BYTES;
/// Round-trip time assumed before the first measurement.
pub const INITIAL_RTT_MS: u64 = 50;
/// Wait for a QUIC handshake before giving up (and retrying with backoff).
pub const CONNECT_TIMEOUT_MS: u64 = 500;
/// Default wait for the answer to one request.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The keys this node accepts as peers. Shared between the TLS verifiers and the Raft driver,
/// which replaces it whenever the applied registry changes.
#[derive(Debug, Default)]
pub struct Trust {
    keys: RwLock<HashSet<PublicKey>>,
}

impl Trust {
    /// A trust set holding `keys`.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Arc<Trust> {
        Arc::new(Trust {
            keys: RwLock::new(keys.into_iter().collect()),
        })
    }

    /// True when `key` may connect.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys
            .read()
            .map(|keys| keys.contains(key))
            .unwrap_or(false)
    }

    /// Replaces the whole set.
    pub fn replace(&self, keys: impl IntoIterator<Item = PublicKey>) {
        if let Ok(mut guard) = self.keys.write() {
            *guard = keys.into_iter().collect();
        }
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.read().map(|keys| keys.len()).unwrap_or(0)
    }

    /// True when nothing is trusted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a client judges the server it connects to.
#[derive(Clone, Debug)]
pub enum ServerTrust {
    /// Any key in the trust set (node to node).
    Trusted(Arc<Trust>),
    /// Exactly this key (`--server-key`).
    Pinned(PublicKey),
    /// Any Ed25519 key; the caller reports which one answered.
    Any,
}

/// A self-signed certificate carrying the node's Ed25519 key, and that key for TLS.
pub fn certificate(key: &SigningKey) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let key_pair = rcgen::KeyPair::try_from(key.pkcs8()).context("loading the node key for TLS")?;
    let params = rcgen::CertificateParams::new(vec!["tiermesh".to_string()])
        .context("certificate parameters")?;
    let certificate = params
        .self_signed(&key_pair)
        .context("signing the node certificate")?;
    let private = PrivateKeyDer::try_from(key.pkcs8().to_vec())
        .map_err(|error| anyhow!("the node key is not PKCS#8: {error}"))?;
    Ok((certificate.der().clone(), private))
}

/// The Ed25519 key a certificate carries.
pub fn certificate_key(certificate: &CertificateDer<'_>) -> Result<PublicKey, rustls::Error> {
    let (rest, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    if !rest.is_empty() {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ));
    }
    let spki = parsed.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(rustls::Error::General(
            "the certificate's key is not Ed25519".to_string(),
        ));
    }
    let bytes: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    Ok(PublicKey(bytes))
}

fn spki_of(key: &PublicKey) -> Vec<u8> {
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(&key.0);
    spki
}

/// Pinned-key verification for both directions.
#[derive(Debug)]
struct KeyVerifier {
    server: Option<ServerTrust>,
    clients: Option<Arc<Trust>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl KeyVerifier {
    fn accept(&self, key: &PublicKey, trust: &ServerTrust) -> bool {
        match trust {
            ServerTrust::Trusted(set) => set.contains(key),
            ServerTrust::Pinned(pinned) => pinned == key,
            ServerTrust::Any => true,
        }
    }

    fn verify13(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        // Check the signature against the key we judged, not a second parse of the certificate.
        let key = certificate_key(certificate)?;
        let spki = SubjectPublicKeyInfoDer::from(spki_of(&key));
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }
}

fn unknown_key(key: &PublicKey) -> rustls::Error {
    rustls::Error::General(format!("peer key {key} is not registered in this mesh"))
}

impl ServerCertVerifier for KeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = certificate_key(end_entity)?;
        let trust = self.server.as_ref().ok_or_else(|| unknown_key(&key))?;
        if self.accept(&key, trust) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(unknown_key(&key))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only; kept for the trait.
        verify_tls12_signature(message, certificate, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, certificate, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for KeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = certificate_key(end_entity)?;
        match &self.clients {
            Some(trust) if trust.contains(&key) => Ok(ClientCertVerified::assertion()),
            _ => Err(unknown_key(&key)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, certificate, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, certificate, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config
        .max_concurrent_bidi_streams(STREAMS_MAX.into())
        .max_concurrent_uni_streams(STREAMS_MAX.into())
        .stream_receive_window(STREAM_WINDOW_BYTES.into())
        .receive_window(CONNECTION_WINDOW_BYTES.into())
        .send_window(u64::from(CONNECTION_WINDOW_BYTES))
        .keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_MS)))
        // The first handshake packet is resent after about 3 x initial RTT; quinn's default
        // (333 ms) is tuned for the open Internet, tier links are much shorter.
        .initial_rtt(Duration::from_millis(INITIAL_RTT_MS));
    if let Ok(timeout) = quinn::IdleTimeout::try_from(Duration::from_millis(IDLE_TIMEOUT_MS)) {
        config.max_idle_timeout(Some(timeout));
    }
    config
}

fn client_config(key: &SigningKey, server: ServerTrust) -> Result<quinn::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(KeyVerifier {
        server: Some(server),
        clients: None,
        algorithms: provider.signature_verification_algorithms,
    });
    let (certificate, private) = certificate(key)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![certificate], private)
        .context("client certificate")?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No 0-RTT: a replayed early request must never reach a node.
    tls.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(tls).context("QUIC client TLS")?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

fn server_config(key: &SigningKey, clients: Arc<Trust>) -> Result<quinn::ServerConfig> {
    let provider = provider();
    let verifier = Arc::new(KeyVerifier {
        server: None,
        clients: Some(clients),
        algorithms: provider.signature_verification_algorithms,
    });
    let (certificate, private) = certificate(key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![certificate], private)
        .context("server certificate")?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).context("QUIC server TLS")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    config.max_incoming(CONNECTIONS_MAX);
    config.migration(false);
    Ok(config)
}

/// A node's endpoint: accepts peers whose key is in `trust`, and connects to peers it trusts.
pub fn node_endpoint(
    listen: SocketAddr,
    key: &SigningKey,
    trust: Arc<Trust>,
) -> Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::server(server_config(key, trust.clone())?, listen)
        .with_context(|| format!("listening on {listen} (UDP)"))?;
    endpoint.set_default_client_config(client_config(key, ServerTrust::Trusted(trust))?);
    Ok(endpoint)
}

/// A client-only endpoint for the command line.
pub fn client_endpoint(
    key: &SigningKey,
    server: ServerTrust,
    target: SocketAddr,
) -> Result<quinn::Endpoint> {
    let bind: SocketAddr = if target.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let mut endpoint = quinn::Endpoint::client(bind).context("opening a UDP socket")?;
    endpoint.set_default_client_config(client_config(key, server)?);
    Ok(endpoint)
}

/// Connects to `addr`.
pub async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Result<quinn::Connection> {
    let connecting = endpoint
        .connect(addr, "tiermesh")
        .with_context(|| format!("connecting to {addr}"))?;
    // Without a bound, a handshake to a peer that is not listening yet waits for QUIC's
    // retransmission timer (1 s, 2 s, ...) instead of the caller's retry with backoff.
    match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connecting).await {
        Ok(result) => result.with_context(|| format!("TLS handshake with {addr}")),
        Err(_) => bail!("no QUIC handshake with {addr} within {CONNECT_TIMEOUT_MS} ms"),
    }
}

/// The verified key of the peer at the other end of a connection.
pub fn peer_key(connection: &quinn::Connection) -> Option<PublicKey> {
    let identity = connection.peer_identity()?;
    let certificates = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certificate_key(certificates.first()?).ok()
}

/// Sends one request on a new bidirectional stream and waits for its answer.
pub async fn request(
    connection: &quinn::Connection,
    message: &Message,
    timeout: Duration,
) -> Result<Message> {
    let bytes = wire::encode(message)?;
    let exchange = async {
        let (mut send, mut receive) = connection.open_bi().await.context("opening a stream")?;
        send.write_all(&bytes)
            .await
            .context("sending the request")?;
        send.finish().context("finishing the request")?;
        let answer = receive
            .read_to_end(MESSAGE_BYTES_MAX)
            .await
            .context("reading the answer")?;
        Ok::<_, anyhow::Error>(wire::decode(&answer)?)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => bail!("no answer within {} ms", timeout.as_millis()),
    }
}

/// Sends one message on a new unidirectional stream.
pub async fn send_oneway(connection: &quinn::Connection, bytes: &[u8]) -> Result<()> {
    let mut send = connection.open_uni().await.context("opening a stream")?;
    send.write_all(bytes).await.context("sending")?;
    send.finish().context("finishing")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_carry_the_node_key() {
        let key = SigningKey::generate(&ring::rand::SystemRandom::new()).expect("key");
        let (certificate, _) = certificate(&key).expect("certificate");
        assert_eq!(
            certificate_key(&certificate).expect("key"),
            key.public_key()
        );
        assert!(
            certificate_key(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])).is_err()
        );
        assert_eq!(spki_of(&key.public_key()).len(), 44);
    }
}
