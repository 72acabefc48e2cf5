//! Refs: the names that keep DAGs alive. `name → image root`, `digest → blob node` (blobs stored
//! on their own, as a content store does) and pins (roots kept without a name, e.g. CAR imports).
//!
//! A name is stored as it was given (`busybox`, `docker.io/holdout/curl:latest`) and matched as
//! docker reads it ([`crate::name`]): `busybox` finds `docker.io/library/busybox:latest` and the
//! other way round. Naming an image drops any other spelling of the same name, so one name never
//! has two entries (homes written before names were normalised may have; an exact spelling then
//! wins, see [`Refs::lookup`]).
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
    /// UnixFS views: the CID a view was built from (a layer's tar node, an image manifest's blob
    /// node) → the view's root. A view lives as long as what it was built from: gc walks it only
    /// when its key is live, and drops the entry when not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub views: BTreeMap<String, String>,
}

impl Refs {
    /// The root `name` names: the entry spelt exactly so, else the one entry that is the same name
    /// once normalised (`app:v1` ≡ `docker.io/library/app:v1`). Two such entries naming different
    /// roots (a home written before names were normalised) are an error naming both.
    pub fn lookup(&self, name: &str) -> Result<Option<&str>> {
        if let Some(root) = self.names.get(name) {
            return Ok(Some(root));
        }
        let key = crate::name::key(name);
        let mut found: Option<(&str, &str)> = None;
        for (n, root) in self.names.iter().filter(|(n, _)| crate::name::key(n) == key) {
            match found {
                Some((first, r)) if r != root => {
                    return Err(Error::InvalidReference {
                        reference: name.to_string(),
                        reason: format!(
                            "ambiguous: {first:?} and {n:?} are this name and name different images (use the exact spelling, or name the image again)"
                        ),
                    })
                }
                Some(_) => {}
                None => found = Some((n, root)),
            }
        }
        Ok(found.map(|(_, root)| root))
    }

    /// Names `root` `name`, replacing what the name (in any spelling) named before.
    pub fn set_name(&mut self, name: &str, root: String) {
        self.remove_name(name);
        self.names.insert(name.to_string(), root);
    }

    /// Removes the name in every spelling; whether there was one.
    pub fn remove_name(&mut self, name: &str) -> bool {
        let key = crate::name::key(name);
        let before = self.names.len();
        self.names.retain(|n, _| n != name && crate::name::key(n) != key);
        self.names.len() != before
    }

    /// The names of images of the repository `name` belongs to (`docker.io/library/app:v1` and
    /// `app@sha256:…` are of one repository), with their roots, in name order; names that are not
    /// image references are left out. What an update of `name` can be told apart from.
    pub fn of_repository(&self, name: &str) -> Vec<(&str, &str)> {
        let Ok(want) = crate::name::Name::parse(name).map(|n| n.repository()) else {
            return Vec::new();
        };
        self.names
            .iter()
            .filter(|(n, _)| crate::name::Name::parse(n).is_ok_and(|n| n.repository() == want))
            .map(|(n, r)| (n.as_str(), r.as_str()))
            .collect()
    }

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

/// Checks a name an image is to be given (`--tag`, a source's ref name or tag, a registry push): an
/// image name as docker reads it ([`crate::name::Name::parse`]: lowercase repository, a valid tag
/// and/or `@sha256:` digest) that does not look like a CID (identifiers are tried as CIDs first).
pub fn check_name(name: &str) -> Result<()> {
    crate::name::Name::parse(name)?;
    if name.parse::<Cid>().is_ok() {
        return Err(Error::InvalidReference {
            reference: name.to_string(),
            reason: "a name must not look like a CID".into(),
        });
    }
    Ok(())
}

/// Where a home's refs live: its refs file, or (feature `s3`) the bucket of its store.
pub enum RefsStore {
    File(RefsFile),
    #[cfg(feature = "s3")]
    Bucket(crate::store::s3::BucketRefs),
}

impl RefsStore {
    pub fn load(&self) -> Result<Refs> {
        match self {
            RefsStore::File(f) => f.load(),
            #[cfg(feature = "s3")]
            RefsStore::Bucket(b) => b.load(),
        }
    }

    /// Read-modify-write, atomic against every other writer. `f` may run more than once (a
    /// shared bucket's update starts again when another station wrote first).
    pub fn update<T>(&self, f: impl FnMut(&mut Refs) -> Result<T>) -> Result<T> {
        match self {
            RefsStore::File(r) => r.update(f),
            #[cfg(feature = "s3")]
            RefsStore::Bucket(b) => b.update(f),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(names: &[(&str, &str)]) -> Refs {
        Refs {
            version: 1,
            names: names.iter().map(|(n, r)| (n.to_string(), r.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn lookups_match_every_spelling() {
        // a home written before names were normalised: `app:v1` as given
        let r = refs(&[("app:v1", "A"), ("docker.io/holdout/curl:latest", "C"), ("Legacy", "L")]);
        for (q, want) in [
            ("app:v1", Some("A")),
            ("docker.io/library/app:v1", Some("A")),
            ("index.docker.io/library/app:v1", Some("A")),
            ("library/app:v1", Some("A")),
            ("app", None),
            ("app:v2", None),
            ("holdout/curl", Some("C")),
            ("holdout/curl:latest", Some("C")),
            ("docker.io/holdout/curl", Some("C")),
            ("localhost/holdout/curl", None),
            ("Legacy", Some("L")),
            ("legacy", None),
        ] {
            assert_eq!(r.lookup(q).unwrap(), want, "{q}");
        }
    }

    #[test]
    fn names_of_one_repository_are_found_in_every_spelling() {
        let r = refs(&[
            ("app:v1", "A"),
            (
                "docker.io/library/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "B",
            ),
            ("docker.io/library/application:v1", "X"),
            ("localhost:5000/app:v1", "Y"),
            ("Legacy", "L"),
        ]);
        let found: Vec<&str> = r
            .of_repository("docker.io/library/app:v2")
            .into_iter()
            .map(|(_, root)| root)
            .collect();
        assert_eq!(found, ["A", "B"]);
        assert_eq!(r.of_repository("localhost:5000/app").len(), 1);
        assert!(r.of_repository("not a name").is_empty());
    }

    #[test]
    fn an_exact_spelling_wins_and_a_conflict_is_named() {
        let r = refs(&[("app", "A"), ("docker.io/library/app:latest", "B")]);
        assert_eq!(r.lookup("app").unwrap(), Some("A"));
        assert_eq!(r.lookup("docker.io/library/app:latest").unwrap(), Some("B"));
        let e = r.lookup("app:latest").unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("\"app\"") && e.contains("docker.io/library/app:latest"),
            "{e}"
        );
        // the same root under two spellings is no conflict
        let r = refs(&[("app", "A"), ("docker.io/library/app:latest", "A")]);
        assert_eq!(r.lookup("library/app").unwrap(), Some("A"));
    }

    #[test]
    fn naming_replaces_every_spelling_and_removal_drops_them() {
        let mut r = refs(&[
            ("busybox", "A"),
            ("docker.io/library/busybox:latest", "B"),
            ("busybox:1", "C"),
        ]);
        r.set_name("library/busybox:latest", "D".into());
        assert_eq!(
            r.names
                .iter()
                .map(|(n, c)| (n.as_str(), c.as_str()))
                .collect::<Vec<_>>(),
            [("busybox:1", "C"), ("library/busybox:latest", "D")]
        );
        assert!(r.remove_name("docker.io/library/busybox"));
        assert!(!r.remove_name("busybox"));
        assert!(r.remove_name("index.docker.io/busybox:1"));
        assert!(r.names.is_empty());
        let mut r = refs(&[("Legacy", "L")]);
        assert!(!r.remove_name("legacy"));
        assert!(r.remove_name("Legacy"));
    }

    #[test]
    fn names_are_checked_as_docker_names() {
        for ok in [
            "busybox",
            "app:v1",
            "docker.io/holdout/curl:latest",
            "localhost:5000/a/b:V1",
        ] {
            check_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        check_name(&format!("library/app@{d}")).unwrap();
        for (bad, why) in [
            ("", "not empty"),
            ("App", "must be lowercase"),
            ("bad name", "invalid"),
            ("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "CID"),
        ] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
    }
}
