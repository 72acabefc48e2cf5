//! Private-network keys: Kubo's `swarm.key` format (go-libp2p's "V1 PSK"), kept in `HOME/swarm.key`.
//!
//! ```text
//! /key/swarm/psk/1.0.0/
//! /base16/                  (or /base64/, or /bin/ followed by the 32 raw bytes)
//! 64 hex digits
//! ```
//!
//! The key is 32 bytes; with one, every connection runs libp2p's pnet handshake (XSalsa20 keyed by
//! it) before anything else, so a peer without the same key cannot even start noise. The file is
//! written mode 0600 and the key never appears in a log: only its fingerprint does.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The key file's name inside the home (Kubo's name).
pub const KEY_FILE: &str = "swarm.key";
const HEADER: &str = "/key/swarm/psk/1.0.0/";

#[derive(Debug, thiserror::Error)]
pub enum NetKeyError {
    #[error("{what}: not a swarm key: {reason} (expected {HEADER}, then /base16/, /base64/ or /bin/, then the key)")]
    Invalid { what: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: the swarm key is readable by others (mode {mode:o}); run chmod 600 on it")]
    Permissions { path: String, mode: u32 },
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// A 32-byte pre-shared network key.
#[derive(Clone, PartialEq, Eq)]
pub struct NetKey(pub [u8; 32]);

impl std::fmt::Debug for NetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NetKey({})", self.fingerprint())
    }
}

impl NetKey {
    /// A fresh random key.
    pub fn generate() -> Result<NetKey, NetKeyError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| NetKeyError::Random(e.to_string()))?;
        Ok(NetKey(k))
    }

    /// Parses a key file's bytes, or a bare 64-hex-digit key; `what` names the source in errors.
    pub fn parse(b: &[u8], what: &str) -> Result<NetKey, NetKeyError> {
        let bad = |reason: &str| NetKeyError::Invalid {
            what: what.to_string(),
            reason: reason.to_string(),
        };
        let (first, rest) = split_line(b);
        if first != HEADER.as_bytes() {
            // A bare key (what `shp init --net KEY` takes).
            return match std::str::from_utf8(b).ok().map(str::trim) {
                Some(s) if s.len() == 64 => hex32(s.as_bytes())
                    .map(NetKey)
                    .ok_or_else(|| bad("64 characters that are not all hex digits")),
                _ => Err(bad("the first line is not the header")),
            };
        }
        let (enc, body) = split_line(rest);
        let key = match enc {
            b"/base16/" => {
                let t = trim(body);
                if t.len() != 64 {
                    return Err(bad(&format!("{} hex digits, expected 64", t.len())));
                }
                hex32(t).ok_or_else(|| bad("the key is not hex"))?
            }
            b"/base64/" => {
                use base64::Engine;
                let t = trim(body);
                let v = base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(|e| bad(&format!("the key is not base64: {e}")))?;
                v.try_into()
                    .map_err(|v: Vec<u8>| bad(&format!("{} key bytes, expected 32", v.len())))?
            }
            b"/bin/" => {
                if body.len() < 32 {
                    return Err(bad(&format!("{} key bytes, expected 32", body.len())));
                }
                body[..32].try_into().expect("32 bytes")
            }
            other => {
                return Err(bad(&format!(
                    "unknown encoding {:?}",
                    String::from_utf8_lossy(&other[..other.len().min(32)])
                )))
            }
        };
        Ok(NetKey(key))
    }

    /// Reads a key file, refusing one that others can read.
    pub fn read_file(path: &Path) -> Result<NetKey, NetKeyError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| NetKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(NetKeyError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
        NetKey::parse(&std::fs::read(path).map_err(io)?, &path.display().to_string())
    }

    /// The home's key, if it has one.
    pub fn of_home(home: &Path) -> Result<Option<NetKey>, NetKeyError> {
        let p = home.join(KEY_FILE);
        if !p.exists() {
            return Ok(None);
        }
        NetKey::read_file(&p).map(Some)
    }

    /// The key file text (base16, as Kubo writes it).
    pub fn to_file_text(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("{HEADER}\n/base16/\n{hex}\n")
    }

    /// Writes the key file, mode 0600; refuses to replace an existing one.
    pub fn write_file(&self, path: &Path) -> Result<(), NetKeyError> {
        let io = |source| NetKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        f.write_all(self.to_file_text().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// What may be logged: libp2p's fingerprint of the key (a hash; it does not reveal the key).
    pub fn fingerprint(&self) -> String {
        libp2p::pnet::PreSharedKey::new(self.0).fingerprint().to_string()
    }
}

fn split_line(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b'\n') {
        Some(i) => {
            let line = &b[..i];
            (line.strip_suffix(b"\r").unwrap_or(line), &b[i + 1..])
        }
        None => (b, &[]),
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |i| i + 1);
    &b[s..e]
}

fn hex32(t: &[u8]) -> Option<[u8; 32]> {
    if t.len() != 64 {
        return None;
    }
    let mut k = [0u8; 32];
    for (i, pair) in t.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        k[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn file_text_roundtrip(k in any::<[u8; 32]>()) {
            let key = NetKey(k);
            prop_assert_eq!(NetKey::parse(key.to_file_text().as_bytes(), "t").unwrap(), key);
        }
    }

    #[test]
    fn every_encoding_go_libp2p_reads() {
        let k: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let hex: String = k.iter().map(|b| format!("{b:02X}")).collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(k);
        let mut bin = b"/key/swarm/psk/1.0.0/\n/bin/\n".to_vec();
        bin.extend_from_slice(&k);
        for text in [
            format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n").into_bytes(),
            format!("/key/swarm/psk/1.0.0/\r\n/base16/\r\n{hex}\r\n").into_bytes(),
            format!("/key/swarm/psk/1.0.0/\n/base64/\n{b64}").into_bytes(),
            bin,
            hex.clone().into_bytes(),
        ] {
            assert_eq!(NetKey::parse(&text, "t").unwrap().0, k);
        }
        for (text, why) in [
            ("/key/swarm/psk/2.0.0/\n/base16/\n00", "header"),
            ("/key/swarm/psk/1.0.0/\n/base32/\nAA", "unknown encoding"),
            ("/key/swarm/psk/1.0.0/\n/base16/\n00ff", "4 hex digits"),
            ("/key/swarm/psk/1.0.0/\n/bin/\nshort", "5 key bytes"),
        ] {
            let e = NetKey::parse(text.as_bytes(), "swarm.key").unwrap_err().to_string();
            assert!(e.contains(why) && e.starts_with("swarm.key"), "{e}");
        }
    }

    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(KEY_FILE);
        let k = NetKey::generate().unwrap();
        k.write_file(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(NetKey::read_file(&p).unwrap(), k);
        assert!(k.write_file(&p).is_err(), "an existing key is never replaced");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(NetKey::read_file(&p).unwrap_err().to_string().contains("chmod 600"));
        // Debug output names the fingerprint, never the key.
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&format!("{:02x}{:02x}{:02x}", k.0[0], k.0[1], k.0[2])));
    }
}
