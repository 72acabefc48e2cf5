//! What the snapshotter remembers across restarts: every snapshot (name, parent, kind, labels,
//! times) and, for a layer served from shp's store, which image and layer it shows. One JSON
//! file, `ROOT/metadata.json`, replaced atomically (written aside, synced, renamed) after every
//! change, so a kill at any moment leaves the last complete state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapKind {
    View,
    Active,
    Committed,
}

/// A committed snapshot whose tree is a layer of an image in shp's store, mounted read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    /// The image's root CID.
    pub image: String,
    /// The layer's digest (as in the manifest).
    pub layer: String,
    /// Read through the snapshotter's peers for what the home lacks (the image was found on a
    /// peer, not in the home).
    #[serde(default)]
    pub lazy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snap {
    /// Names its directories (`ROOT/snapshots/ID`, `ROOT/layers/ID`); never reused.
    pub id: u64,
    pub parent: String,
    pub kind: SnapKind,
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the Unix epoch.
    pub created: i128,
    pub updated: i128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Remote>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub next_id: u64,
    /// By name (containerd's key for active and view snapshots, the committed name otherwise).
    pub snaps: BTreeMap<String, Snap>,
}

impl Default for State {
    fn default() -> State {
        State {
            version: VERSION,
            next_id: 1,
            snaps: BTreeMap::new(),
        }
    }
}

fn file(root: &Path) -> PathBuf {
    root.join("metadata.json")
}

impl State {
    /// The state kept in `root` (empty when there is none yet).
    pub fn load(root: &Path) -> std::io::Result<State> {
        let path = file(root);
        match std::fs::read(&path) {
            Ok(b) => {
                let s: State = serde_json::from_slice(&b).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
                })?;
                if s.version != VERSION {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: version {} (this shp reads {VERSION})", path.display(), s.version),
                    ));
                }
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }

    pub fn save(&self, root: &Path) -> std::io::Result<()> {
        let path = file(root);
        let tmp = root.join("metadata.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("state serializes"))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(root)?.sync_all()
    }

    /// The names of `name`'s ancestors, nearest first.
    pub fn ancestors(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = self.snaps.get(name).map(|s| s.parent.clone()).unwrap_or_default();
        while !at.is_empty() && out.len() <= self.snaps.len() {
            out.push(at.clone());
            at = self.snaps.get(&at).map(|s| s.parent.clone()).unwrap_or_default();
        }
        out
    }

    pub fn has_children(&self, name: &str) -> bool {
        self.snaps.values().any(|s| s.parent == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_refuses_another_version() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(State::load(d.path()).unwrap(), State::default());
        let mut s = State::default();
        s.snaps.insert(
            "a".into(),
            Snap {
                id: 1,
                parent: String::new(),
                kind: SnapKind::Committed,
                labels: [("k".to_string(), "v".to_string())].into(),
                created: 1,
                updated: 2,
                remote: Some(Remote {
                    image: "bafy".into(),
                    layer: "sha256:00".into(),
                    lazy: true,
                }),
            },
        );
        s.snaps.insert(
            "b".into(),
            Snap {
                id: 2,
                parent: "a".into(),
                kind: SnapKind::Active,
                labels: Default::default(),
                created: 3,
                updated: 3,
                remote: None,
            },
        );
        s.next_id = 3;
        s.save(d.path()).unwrap();
        assert_eq!(State::load(d.path()).unwrap(), s);
        assert_eq!(s.ancestors("b"), vec!["a".to_string()]);
        assert!(s.has_children("a") && !s.has_children("b"));
        let text = std::fs::read_to_string(d.path().join("metadata.json")).unwrap();
        std::fs::write(
            d.path().join("metadata.json"),
            text.replace("\"version\": 1", "\"version\": 9"),
        )
        .unwrap();
        let e = State::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("version 9"), "{e}");
    }
}
