//! What a mirror keeps beside the DAG, in `HOME/mirror/`:
//! - `manifests/<hex>` and `manifests/<hex>.type`: every manifest and index fetched from an
//!   upstream, byte for byte, with the media type the upstream gave it. A manifest is needed before
//!   its blobs are (the client reads it first), so it cannot wait for the image's import; an index
//!   is kept here only (its platforms are imported one by one, as clients ask for them). Read back
//!   through a sha256 check: a file that does not hash to its name is removed and fetched again.
//! - `tags.json`: `HOST/REPO:TAG` → the digest the upstream last gave for it and when (Unix
//!   seconds), for the tag TTL and for serving a cached tag while the upstream is down.
//! - `used.json`: each image name the mirror made (`HOST/REPO@DIGEST`) → when it was last served
//!   (Unix seconds, to within [`TOUCH_EVERY`]), for `--mirror-keep`.
//!
//! Writes go to a temp file renamed into place, so a crash leaves the old or the new file.

use sha2::{Digest, Sha256};
use shp_core::cid::format_digest;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// A manifest as an upstream sent it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:…` of `bytes`.
    pub digest: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TagEntry {
    pub digest: String,
    /// Unix seconds of the last time the upstream confirmed it.
    pub fetched: u64,
}

/// A name's last use is written at most this often (seconds).
pub const TOUCH_EVERY: u64 = 600;

pub struct State {
    dir: PathBuf,
    tags: Mutex<BTreeMap<String, TagEntry>>,
    used: Mutex<BTreeMap<String, u64>>,
}

fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> io::Result<T> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("state files live in a directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl State {
    /// Opens (or starts) the state in `home/mirror`. A `tags.json` that cannot be read is an
    /// error naming it: the tags would otherwise be forgotten silently.
    pub fn open(home: &Path) -> io::Result<State> {
        let dir = home.join("mirror");
        let tags = read_json(&dir.join("tags.json"))?;
        let used = read_json(&dir.join("used.json"))?;
        Ok(State {
            dir,
            tags: Mutex::new(tags),
            used: Mutex::new(used),
        })
    }

    fn manifest_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("manifests")
            .join(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    /// The manifest with this digest, if it is kept here and still hashes to it.
    pub fn manifest(&self, digest: &str) -> Option<Manifest> {
        let p = self.manifest_path(digest);
        let bytes = std::fs::read(&p).ok()?;
        if format_digest(&Sha256::digest(&bytes).into()) != digest {
            tracing::warn!(file = %p.display(), "a kept manifest does not hash to its name: removed");
            let _ = std::fs::remove_file(&p);
            return None;
        }
        let mut t = p.into_os_string();
        t.push(".type");
        let media_type = std::fs::read_to_string(&t).ok()?.trim().to_string();
        Some(Manifest {
            bytes,
            media_type,
            digest: digest.to_string(),
        })
    }

    /// Keeps a manifest (its digest already checked by the caller).
    pub fn put_manifest(&self, m: &Manifest) -> io::Result<()> {
        let p = self.manifest_path(&m.digest);
        let mut t = p.clone().into_os_string();
        t.push(".type");
        // The type first: a manifest file is only read with its type beside it.
        write_atomic(Path::new(&t), m.media_type.as_bytes())?;
        write_atomic(&p, &m.bytes)
    }

    pub fn tag(&self, key: &str) -> Option<TagEntry> {
        self.tags.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// Records what the upstream said a tag is, now.
    pub fn set_tag(&self, key: &str, digest: &str) -> io::Result<()> {
        let mut tags = self.tags.lock().unwrap_or_else(|e| e.into_inner());
        tags.insert(
            key.to_string(),
            TagEntry {
                digest: digest.to_string(),
                fetched: now_secs(),
            },
        );
        let bytes = serde_json::to_vec_pretty(&*tags).expect("tags serialize");
        write_atomic(&self.dir.join("tags.json"), &bytes)
    }

    /// Forgets a tag the upstream says no longer exists.
    pub fn drop_tag(&self, key: &str) -> io::Result<()> {
        let mut tags = self.tags.lock().unwrap_or_else(|e| e.into_inner());
        if tags.remove(key).is_none() {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&*tags).expect("tags serialize");
        write_atomic(&self.dir.join("tags.json"), &bytes)
    }

    /// Records that the image `name` was served now (written at most every [`TOUCH_EVERY`] s).
    pub fn touch(&self, name: &str) -> io::Result<()> {
        let now = now_secs();
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.get(name).is_some_and(|t| now.saturating_sub(*t) < TOUCH_EVERY) {
            return Ok(());
        }
        used.insert(name.to_string(), now);
        let bytes = serde_json::to_vec_pretty(&*used).expect("used serializes");
        write_atomic(&self.dir.join("used.json"), &bytes)
    }

    /// When the image `name` was last served (Unix seconds), if the mirror served it.
    pub fn last_used(&self, name: &str) -> Option<u64> {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).get(name).copied()
    }

    /// The names not served for `keep` seconds.
    pub fn unused_for(&self, keep: u64) -> Vec<String> {
        let now = now_secs();
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.iter()
            .filter(|(_, t)| now.saturating_sub(**t) >= keep)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Forgets a name (and its kept manifest: a later pull fetches it again).
    pub fn forget(&self, name: &str) -> io::Result<()> {
        if let Some((_, digest)) = name.rsplit_once('@') {
            let p = self.manifest_path(digest);
            let _ = std::fs::remove_file(&p);
            let mut t = p.into_os_string();
            t.push(".type");
            let _ = std::fs::remove_file(t);
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.remove(name).is_none() {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&*used).expect("used serializes");
        write_atomic(&self.dir.join("used.json"), &bytes)
    }

    #[cfg(test)]
    pub fn tag_count(&self) -> usize {
        self.tags.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_tags_survive_a_reopen_and_a_changed_file_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let s = State::open(d.path()).unwrap();
        let bytes = br#"{"schemaVersion":2}"#.to_vec();
        let digest = format_digest(&Sha256::digest(&bytes).into());
        let m = Manifest {
            bytes: bytes.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.clone(),
        };
        s.put_manifest(&m).unwrap();
        s.set_tag("docker.io/library/a:1", &digest).unwrap();
        let s = State::open(d.path()).unwrap();
        let back = s.manifest(&digest).unwrap();
        assert_eq!(back.bytes, bytes);
        assert_eq!(back.media_type, m.media_type);
        assert_eq!(s.tag("docker.io/library/a:1").unwrap().digest, digest);
        assert!(s.tag("docker.io/library/a:2").is_none());
        // Bytes changed behind the mirror's back: not served, and gone.
        std::fs::write(s.manifest_path(&digest), b"{}").unwrap();
        assert!(s.manifest(&digest).is_none());
        assert!(!s.manifest_path(&digest).exists());
        s.drop_tag("docker.io/library/a:1").unwrap();
        assert_eq!(State::open(d.path()).unwrap().tag_count(), 0);
        // Last use: kept across a reopen; unused_for(0) is everything, a long keep nothing.
        let name = format!("docker.io/library/a@{digest}");
        s.put_manifest(&m).unwrap();
        s.touch(&name).unwrap();
        let s = State::open(d.path()).unwrap();
        assert_eq!(s.unused_for(0), vec![name.clone()]);
        assert!(s.unused_for(3600).is_empty());
        s.forget(&name).unwrap();
        assert!(s.manifest(&digest).is_none(), "the manifest goes with the name");
        assert!(State::open(d.path()).unwrap().unused_for(0).is_empty());
    }

    #[test]
    fn an_unreadable_tags_file_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("mirror")).unwrap();
        std::fs::write(d.path().join("mirror/tags.json"), b"{not json").unwrap();
        let e = State::open(d.path()).err().unwrap().to_string();
        assert!(e.contains("tags.json"), "{e}");
    }
}
