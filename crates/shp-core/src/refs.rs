//! Refs: the names that keep DAGs alive. `name → image root`, `digest → blob node` (blobs stored
//! on their own, as a content store does) and pins (roots kept without a name, e.g. CAR imports).
//!
//! Stored as one JSON file replaced atomically (write, fsync, rename, fsync dir) under an exclusive
//! lock, so concurrent writers never lose each other's updates and a crash leaves the old or the
//! new file, never a torn one. Writers commit their blocks before they touch refs.

use crate::cid::Cid;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refs {
    pub version: u32,
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    #[serde(default)]
    pub blobs: BTreeMap<String, String>,
    #[serde(default)]
    pub pins: BTreeSet<String>,
    /// digest → blob node of every blob imported as part of an image. A cache that lets a push
    /// skip blobs the store holds; not a root (gc prunes entries it collects).
    #[serde(default)]
    pub index: BTreeMap<String, String>,
}

impl Refs {
    /// Every root the refs keep alive.
    pub fn roots(&self) -> Result<Vec<Cid>> {
        let mut out = Vec::new();
        for s in self.names.values().chain(self.blobs.values()).chain(self.pins.iter()) {
            out.push(s.parse()?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Checks a name given to `--tag`: printable, no whitespace, not a CID-looking string.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |r: &str| Error::InvalidReference {
        reference: name.to_string(),
        reason: r.to_string(),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("a name has 1 to 255 characters"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("a name has no whitespace or control characters"));
    }
    if name.parse::<Cid>().is_ok() {
        return Err(bad("a name must not look like a CID"));
    }
    Ok(())
}

/// The refs file of a home.
pub struct RefsFile {
    path: PathBuf,
    lock_path: PathBuf,
}

impl RefsFile {
    pub fn new(home: &Path) -> RefsFile {
        RefsFile {
            path: home.join("refs.json"),
            lock_path: home.join("refs.lock"),
        }
    }

    pub fn load(&self) -> Result<Refs> {
        match fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Store(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Refs {
                version: 1,
                ..Default::default()
            }),
            Err(e) => Err(Error::io_path(&self.path, e)),
        }
    }

    /// Read-modify-write under the refs lock.
    pub fn update<T>(&self, f: impl FnOnce(&mut Refs) -> Result<T>) -> Result<T> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| Error::io_path(&self.lock_path, e))?;
        lock.lock().map_err(|e| Error::io_path(&self.lock_path, e))?;
        let mut refs = self.load()?;
        let out = f(&mut refs)?;
        refs.version = 1;
        let tmp = self.path.with_extension(format!("json.tmp{}", std::process::id()));
        {
            let mut file = File::create(&tmp).map_err(|e| Error::io_path(&tmp, e))?;
            file.write_all(&serde_json::to_vec_pretty(&refs).expect("refs serialize"))?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| Error::io_path(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io_path(dir, e))?;
        }
        Ok(out)
    }
}
