//! The station's identity: an ed25519 key pair kept in the home (`HOME/station.key`), made by
//! `shp init` (or the first `shp start` of an older home). Its public half is the station id,
//! written the way libp2p writes peer ids, so the same key can later be the station's libp2p
//! identity:
//!
//! ```text
//! PublicKey protobuf   08 01 12 20 <32-byte ed25519 public key>      (KeyType Ed25519 = 1)
//! multihash            00 24 <the 36 protobuf bytes>                  (identity hash: ≤ 42 bytes)
//! peer id              base58btc(multihash)                           "12D3KooW…"
//! ```
//!
//! The key file holds the libp2p `PrivateKey` protobuf (`08 01 12 40 <seed><public>`, 68 bytes),
//! mode 0600, written once and never replaced.

use ed25519_dalek::SigningKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The key file's name inside the home.
pub const KEY_FILE: &str = "station.key";

const PRIVATE_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x40];
const PUBLIC_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x20];

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("station key {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("station key {path} is not an ed25519 libp2p private key ({reason}); move it away to make a new identity")]
    Invalid { path: String, reason: String },
    #[error("no randomness for a new station key: {0}")]
    Random(String),
}

/// A station's key pair.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    fn path(home: &Path) -> PathBuf {
        home.join(KEY_FILE)
    }

    /// Loads the home's identity, making it first if the home has none. Returns whether it was made.
    pub fn load_or_create(home: &Path) -> Result<(Identity, bool), IdentityError> {
        let path = Identity::path(home);
        if path.exists() {
            return Ok((Identity::load(home)?, false));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        let id = Identity {
            key: SigningKey::from_bytes(&seed),
        };
        let io = |source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        };
        // Written to a private temporary name, then linked into place: a concurrent `init` either
        // wins or finds the winner's key, and a crash never leaves a torn key file.
        let tmp = home.join(format!(".{KEY_FILE}.tmp{}", std::process::id()));
        let res = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&id.private_protobuf())?;
            f.sync_all()?;
            std::fs::hard_link(&tmp, &path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match res {
            Ok(()) => Ok((id, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((Identity::load(home)?, false)),
            Err(e) => Err(io(e)),
        }
    }

    /// Loads the home's identity.
    pub fn load(home: &Path) -> Result<Identity, IdentityError> {
        let path = Identity::path(home);
        let bytes = std::fs::read(&path).map_err(|source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let invalid = |reason: &str| IdentityError::Invalid {
            path: path.display().to_string(),
            reason: reason.to_string(),
        };
        if bytes.len() != 68 || bytes[..4] != PRIVATE_PREFIX {
            return Err(invalid("expected 68 bytes starting 08 01 12 40"));
        }
        let seed: [u8; 32] = bytes[4..36].try_into().expect("32 bytes");
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes() != &bytes[36..] {
            return Err(invalid("the public half does not match the seed"));
        }
        Ok(Identity { key })
    }

    /// The libp2p `PrivateKey` protobuf encoding (seed then public key).
    pub(crate) fn private_protobuf(&self) -> Vec<u8> {
        let mut v = PRIVATE_PREFIX.to_vec();
        v.extend_from_slice(self.key.as_bytes());
        v.extend_from_slice(self.key.verifying_key().as_bytes());
        v
    }

    /// The raw 32-byte ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The station id: the libp2p peer id of the public key ("12D3KooW…").
    pub fn peer_id(&self) -> String {
        peer_id_of(&self.public_key())
    }
}

/// The libp2p peer id of an ed25519 public key.
pub fn peer_id_of(public: &[u8; 32]) -> String {
    let mut mh = vec![0x00, 36];
    mh.extend_from_slice(&PUBLIC_PREFIX);
    mh.extend_from_slice(public);
    base58btc(&mh)
}

// Base58btc lives beside the CID code (CIDv0 text is base58btc too); peer ids use the same.
pub use shp_core::cid::{base58btc, base58btc_decode};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base58_vectors() {
        // The vectors of the base58 IETF draft (draft-msporny-base58).
        assert_eq!(base58btc(b"Hello World!"), "2NEpo7TZRRrLZSi2U");
        assert_eq!(
            base58btc(b"The quick brown fox jumps over the lazy dog."),
            "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z"
        );
        assert_eq!(base58btc(&[0, 0, 0x28, 0x7f, 0xb4, 0xcd]), "11233QC4");
        assert_eq!(base58btc(&[]), "");
        for s in ["2NEpo7TZRRrLZSi2U", "11233QC4", "1"] {
            assert_eq!(base58btc(&base58btc_decode(s).unwrap()), s);
        }
        assert_eq!(base58btc_decode("0OIl"), None);
    }

    #[test]
    fn peer_id_is_libp2p_shaped() {
        // Decoding the peer id gives back the identity multihash of the protobuf public key.
        let zero = peer_id_of(&[0u8; 32]);
        assert!(zero.starts_with("12D3KooW"), "{zero}");
        let back = base58btc_decode(&zero).unwrap();
        assert_eq!(back.len(), 38);
        assert_eq!(&back[..6], &[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
        assert_eq!(&back[6..], &[0u8; 32]);
    }

    #[test]
    fn identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (a, made) = Identity::load_or_create(dir.path()).unwrap();
        assert!(made);
        let (b, made) = Identity::load_or_create(dir.path()).unwrap();
        assert!(!made);
        assert_eq!(a.peer_id(), b.peer_id());
        assert!(a.peer_id().starts_with("12D3KooW"));
        let path = dir.path().join(KEY_FILE);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 68);
        assert_eq!(&bytes[36..], &a.public_key());
        // A damaged key is refused with the file named, not silently replaced.
        let mut bad = bytes.clone();
        bad[40] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let e = Identity::load_or_create(dir.path()).err().unwrap().to_string();
        assert!(e.contains("station.key") && e.contains("does not match"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), bad);
    }
}
