//! Keys and signatures for TierMesh: Ed25519 (ring) over bytes, with randomness passed in.
//!
//! Invariant: no file, clock or socket here; a caller that needs a new key hands in a
//! `ring::rand::SecureRandom`.

use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

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

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
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
        if text.len() != 64 {
            return Err(error);
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(text.get(index * 2..index * 2 + 2).ok_or(error.clone())?, 16)
                    .map_err(|_| error.clone())?;
        }
        Ok(PublicKey(bytes))
    }
}

impl PublicKey {
    /// Verifies an Ed25519 signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .map_err(|_| CryptoError::Signature)
    }
}

impl SigningKey {
    /// Generates a new key from `random`.
    pub fn generate(random: &dyn SecureRandom) -> Result<SigningKey, CryptoError> {
        let document = Ed25519KeyPair::generate_pkcs8(random).map_err(|_| CryptoError::Random)?;
        SigningKey::from_pkcs8(document.as_ref())
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
}
