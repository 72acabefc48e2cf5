//! Which repositories of which registries are known to hold which blobs, so an export can ask
//! the registry for a cross-repository mount instead of uploading. A cache: `HOME/remote-blobs.json`
//! = `{"version": 1, "blobs": {"sha256:…": ["REGISTRY/REPO", …]}}` (most recent first, at most
//! `PER_BLOB` each). Losing it, or a lost update between two processes, only costs an upload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FILE: &str = "remote-blobs.json";
const PER_BLOB: usize = 8;

pub fn path(home: &Path) -> PathBuf {
    home.join(FILE)
}

/// digest → `REGISTRY/REPO` list. An absent or unreadable file is an empty cache.
pub fn load(home: &Path) -> BTreeMap<String, Vec<String>> {
    std::fs::read(path(home))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| serde_json::from_value(v.get("blobs")?.clone()).ok())
        .unwrap_or_default()
}

/// Records that `registry/repo` holds `digests`. Failures are logged, never fatal.
pub fn record<'a>(home: &Path, registry: &str, repo: &str, digests: impl Iterator<Item = &'a str>) {
    let here = format!("{registry}/{repo}");
    let mut all = load(home);
    for d in digests {
        let list = all.entry(d.to_string()).or_default();
        list.retain(|r| *r != here);
        list.insert(0, here.clone());
        list.truncate(PER_BLOB);
    }
    let doc = serde_json::json!({"version": 1, "blobs": all});
    let bytes = serde_json::to_vec(&doc).expect("json");
    if let Err(e) = shp_core::publish::publish(&path(home), |w| Ok(w.write_all(&bytes)?)) {
        tracing::warn!("could not update {}: {e}", path(home).display());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn remembers_most_recent_first() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::load(dir.path()).is_empty());
        super::record(dir.path(), "r:1", "a", ["sha256:x", "sha256:y"].into_iter());
        super::record(dir.path(), "r:1", "b", ["sha256:x"].into_iter());
        super::record(dir.path(), "r:1", "a", ["sha256:y"].into_iter());
        let m = super::load(dir.path());
        assert_eq!(m["sha256:x"], ["r:1/b", "r:1/a"]);
        assert_eq!(m["sha256:y"], ["r:1/a"]);
        for i in 0..20 {
            super::record(dir.path(), "r:1", &format!("n{i}"), ["sha256:x"].into_iter());
        }
        assert_eq!(super::load(dir.path())["sha256:x"].len(), super::PER_BLOB);
        std::fs::write(super::path(dir.path()), "garbage").unwrap();
        assert!(super::load(dir.path()).is_empty());
    }
}
