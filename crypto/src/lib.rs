//! Keys and signatures for TierMesh: Ed25519 (ring) over bytes, with randomness passed in.
//!
//! Invariant: no file, clock or socket here; a caller that needs a new key hands in a
//! `ring::rand::SecureRandom`.

use ring::digest;
use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

pub mod audit;
pub mod hex;

/// The prefix of every domain-separated message: `tiermesh/` ++ domain ++ 0x00 ++ body.
pub const DOMAIN_PREFIX: &[u8] = b"tiermesh/";

/// The SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The message actually signed for `body` under `domain`, so that a signature made for one
/// purpose (say, a node registration) can never be replayed as another (say, a grant).
///
/// The domain must not contain a NUL byte: the NUL is what separates it from the body.
pub fn domain_message(domain: &str, body: &[u8]) -> Vec<u8> {
    assert!(
        !domain.as_bytes().contains(&0),
        "a signature domain never contains NUL: {domain:?}"
    );
    let mut message = Vec::with_capacity(DOMAIN_PREFIX.len() + domain.len() + 1 + body.len());
    message.extend_from_slice(DOMAIN_PREFIX);
    message.extend_from_slice(domain.as_bytes());
    message.push(0);
    message.extend_from_slice(body);
    message
}

/// Signs `body` under `domain` (see [`domain_message`]).
pub fn sign_domain(key: &SigningKey, domain: &str, body: &[u8]) -> Vec<u8> {
    key.sign(&domain_message(domain, body))
}

/// What went wrong with a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The random source failed.
    #[error("the random number source failed")]
    Random,
    /// The bytes are not a PKCS#8 Ed25519 private key.
    #[error("not an Ed25519 private key in PKCS#8 form")]
    PrivateKey,
    /// The text is not a 64-hex-digit Ed25519 public key.
    #[error("a public key is 64 hex digits, got {length} characters")]
    PublicKey { length: usize },
    /// The signature does not verify.
    #[error("signature does not verify")]
    Signature,
    /// A consistency proof was asked from a tree smaller than the old size.
    #[error("no consistency proof from {old_size} leaves: the tree has only {size}")]
    OldSize { old_size: u64, size: u64 },
    /// An inclusion proof was asked for a leaf the tree does not have.
    #[error("no leaf {index} in a tree of {size} leaves")]
    LeafIndex { index: u64, size: u64 },
    /// A proof has more hashes than any tree of `u64` leaves needs.
    #[error("a proof of {length} hashes is longer than the {max} allowed")]
    ProofLength { length: usize, max: usize },
    /// The consistency proof does not show the old tree is a prefix of the new one.
    #[error("the tree of {new_size} leaves does not extend the tree of {old_size} leaves")]
    Consistency { old_size: u64, new_size: u64 },
    /// The inclusion proof does not place the leaf in the tree.
    #[error("leaf {index} is not proven to be in the tree of {size} leaves")]
    Inclusion { index: u64, size: u64 },
}

/// An Ed25519 key pair, kept with its PKCS#8 encoding so it can be stored.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public_key())
    }
}

/// An Ed25519 public key; serialised as its 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = CryptoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = CryptoError::PublicKey {
            length: text.chars().count(),
        };
        hex::decode_array(text).map(PublicKey).ok_or(error)
    }
}

impl PublicKey {
    /// Verifies an Ed25519 signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .map_err(|_| CryptoError::Signature)
    }

    /// Verifies a signature made by [`sign_domain`] over `body` under `domain`.
    pub fn verify_domain(
        &self,
        domain: &str,
        body: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        if domain.as_bytes().contains(&0) {
            return Err(CryptoError::Signature);
        }
        self.verify(&domain_message(domain, body), signature)
    }
}

impl SigningKey {
    /// Generates a new key from `random`.
    pub fn generate(random: &dyn SecureRandom) -> Result<SigningKey, CryptoError> {
        let document = Ed25519KeyPair::generate_pkcs8(random).map_err(|_| CryptoError::Random)?;
        SigningKey::from_pkcs8(document.as_ref())
    }

    /// Derives a key from a 32-byte Ed25519 seed, for deterministic simulations and tests; the
    /// seed must come from a real random source anywhere a key protects something.
    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey, CryptoError> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| CryptoError::PrivateKey)?;
        let mut pkcs8 = Vec::with_capacity(PKCS8_V2_PREFIX.len() + 32 + PKCS8_V2_MIDDLE.len() + 32);
        pkcs8.extend_from_slice(&PKCS8_V2_PREFIX);
        pkcs8.extend_from_slice(seed);
        pkcs8.extend_from_slice(&PKCS8_V2_MIDDLE);
        pkcs8.extend_from_slice(pair.public_key().as_ref());
        // Re-parse so the stored document is exactly what `from_pkcs8` accepts.
        SigningKey::from_pkcs8(&pkcs8)
    }

    /// Loads a key from its PKCS#8 encoding.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey, CryptoError> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).map_err(|_| CryptoError::PrivateKey)?;
        Ok(SigningKey {
            pair,
            pkcs8: bytes.to_vec(),
        })
    }

    /// The PKCS#8 encoding, for storage.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// The DER of a PKCS#8 v2 Ed25519 document before the 32-byte seed (RFC 8410, as ring writes it).
const PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// The DER between the seed and the 32-byte public key.
const PKCS8_V2_MIDDLE: [u8; 3] = [0x81, 0x21, 0x00];

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn keys_sign_verify_and_round_trip() {
        let key = SigningKey::generate(&SystemRandom::new()).expect("key");
        let again = SigningKey::from_pkcs8(key.pkcs8()).expect("reload");
        assert_eq!(key.public_key(), again.public_key());
        let signature = key.sign(b"message");
        assert_eq!(key.public_key().verify(b"message", &signature), Ok(()));
        assert_eq!(
            key.public_key().verify(b"other", &signature),
            Err(CryptoError::Signature)
        );
        let text = key.public_key().to_string();
        assert_eq!(text.parse::<PublicKey>(), Ok(key.public_key()));
        assert!("abc".parse::<PublicKey>().is_err());
        assert!(SigningKey::from_pkcs8(b"junk").is_err());
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        let digest = sha256(b"abc");
        assert_eq!(
            hex::encode(&digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn domain_signatures_are_separated() {
        let key = SigningKey::generate(&SystemRandom::new()).expect("key");
        let public = key.public_key();
        let signature = sign_domain(&key, "node-registration", b"body");
        assert_eq!(
            public.verify_domain("node-registration", b"body", &signature),
            Ok(())
        );
        assert_eq!(
            public.verify(b"tiermesh/node-registration\0body", &signature),
            Ok(())
        );
        let refusals: [(&str, &[u8]); 4] = [
            ("officer-appointment", b"body"),
            ("node-registration", b"bodx"),
            ("node-registratio", b"nbody"),
            ("node-registration\0", b"body"),
        ];
        for (domain, body) in refusals {
            assert_eq!(
                public.verify_domain(domain, body, &signature),
                Err(CryptoError::Signature),
                "{domain:?} {body:?}"
            );
        }
        assert_eq!(
            public.verify(b"body", &signature),
            Err(CryptoError::Signature)
        );
    }

    #[test]
    fn seeded_keys_are_deterministic_and_reload() {
        let key = SigningKey::from_seed(&[7; 32]).expect("seeded key");
        let again = SigningKey::from_seed(&[7; 32]).expect("seeded key");
        let other = SigningKey::from_seed(&[8; 32]).expect("seeded key");
        assert_eq!(key.public_key(), again.public_key());
        assert_ne!(key.public_key(), other.public_key());
        assert_eq!(key.pkcs8(), again.pkcs8());
        let reloaded = SigningKey::from_pkcs8(key.pkcs8()).expect("reload");
        assert_eq!(reloaded.public_key(), key.public_key());
        assert_eq!(key.sign(b"m"), again.sign(b"m"));
    }
}
