//! A home's `config.json`: which store holds its blocks and refs, and how blocks are compressed.
//!
//! ```text
//! {"version": 1,
//!  "compression": "zstd:3",                                  optional (store::Compression)
//!  "store": {"url": "s3://BUCKET/PREFIX", "options": {...}}} optional; absent: HOME/store on disk
//! ```
//! `store.options` are the `--store-opt KEY=VALUE` pairs (see `store::s3::OPTION_KEYS`); the
//! file is written readable by its owner only, as it may hold keys. Credentials are better left
//! to the environment or an AWS profile, which are read each time the home is opened.

use crate::error::{Error, Result};
use crate::refs::{RefsFile, RefsStore};
use crate::store::{Compression, DiskStore, HomeStore, LockMode};
use std::collections::BTreeMap;
use std::path::Path;

/// Where a home keeps its blocks and refs, when not on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// `s3://BUCKET/PREFIX`.
    pub url: String,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HomeConfig {
    pub compression: Option<Compression>,
    pub store: Option<StoreSpec>,
}

impl HomeConfig {
    /// Reads and checks `config.json`: version 1, a known compression, a store URL this build can
    /// open.
    pub fn read(path: &Path) -> Result<HomeConfig> {
        let bad = |r: String| Error::Store(format!("{}: {r}", path.display()));
        let text = std::fs::read(path).map_err(|e| Error::io_path(path, e))?;
        let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        match v.get("version").and_then(|v| v.as_u64()) {
            Some(1) => {}
            other => {
                return Err(bad(format!(
                    "unsupported config version {other:?} (this shp reads version 1)"
                )))
            }
        }
        let compression = match v.get("compression") {
            None => None,
            Some(serde_json::Value::String(c)) => Some(Compression::parse(c).map_err(|e| bad(e.to_string()))?),
            Some(other) => return Err(bad(format!("\"compression\" must be a string, not {other}"))),
        };
        let store = match v.get("store") {
            None | Some(serde_json::Value::Null) => None,
            Some(s) => {
                let url = s
                    .get("url")
                    .and_then(|u| u.as_str())
                    .ok_or_else(|| bad("\"store\" needs a \"url\" string".into()))?
                    .to_string();
                let mut options = BTreeMap::new();
                if let Some(o) = s.get("options") {
                    let o = o
                        .as_object()
                        .ok_or_else(|| bad("\"store.options\" must be an object of strings".into()))?;
                    for (k, v) in o {
                        let v = v
                            .as_str()
                            .ok_or_else(|| bad(format!("\"store.options.{k}\" must be a string")))?;
                        options.insert(k.clone(), v.to_string());
                    }
                }
                Some(StoreSpec { url, options })
            }
        };
        Ok(HomeConfig { compression, store })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut v = serde_json::Map::new();
        v.insert("version".into(), 1.into());
        if let Some(c) = &self.compression {
            v.insert("compression".into(), c.to_string().into());
        }
        if let Some(s) = &self.store {
            let opts: serde_json::Map<String, serde_json::Value> =
                s.options.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            let mut o = serde_json::Map::new();
            o.insert("url".into(), s.url.clone().into());
            o.insert("options".into(), opts.into());
            v.insert("store".into(), o.into());
        }
        let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(v)).expect("config serializes");
        text.push('\n');
        crate::image::write_verified(path, &mut text.as_bytes())?;
        if self.store.is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io_path(path, e))?;
        }
        Ok(())
    }

    /// Checks that this build can open `spec` (and that its options are known).
    pub fn check_store(spec: &StoreSpec) -> Result<()> {
        open_s3_location(spec).map(|_| ())
    }
}

#[cfg(feature = "s3")]
fn open_s3_location(spec: &StoreSpec) -> Result<crate::store::s3::S3Location> {
    let opts: Vec<(String, String)> = spec.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    crate::store::s3::S3Location::parse(&spec.url)?.with_opts(&opts)
}

#[cfg(not(feature = "s3"))]
fn open_s3_location(spec: &StoreSpec) -> Result<std::convert::Infallible> {
    Err(Error::Store(format!(
        "store {}: this build of shp has no S3 support (build it with the cargo feature \"s3\")",
        spec.url
    )))
}

/// Opens the store and refs a home's config names. `create` makes a missing bucket.
pub(crate) fn open_backend(
    dir: &Path,
    mode: LockMode,
    cfg: &HomeConfig,
    create: bool,
) -> Result<(HomeStore, RefsStore)> {
    let compression = cfg.compression.unwrap_or_default();
    match &cfg.store {
        None => Ok((
            HomeStore::Disk(DiskStore::open_with(&dir.join("store"), mode, compression)?),
            RefsStore::File(RefsFile::new(dir)),
        )),
        #[cfg(feature = "s3")]
        Some(spec) => {
            let loc = open_s3_location(spec)?;
            let store = crate::store::s3::S3Store::open(&loc, &dir.join("cache").join("s3"), compression, create)?;
            let refs = RefsStore::Bucket(crate::store::s3::BucketRefs::new(&store));
            Ok((HomeStore::S3(store), refs))
        }
        #[cfg(not(feature = "s3"))]
        Some(spec) => {
            let _ = (mode, create);
            match open_s3_location(spec)? {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_and_refuse_nonsense() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        let cfg = HomeConfig {
            compression: Some(Compression::parse("zstd:5").unwrap()),
            store: Some(StoreSpec {
                url: "s3://bkt/x".into(),
                options: [("region".to_string(), "eu-west-1".to_string())].into(),
            }),
        };
        cfg.write(&p).unwrap();
        assert_eq!(HomeConfig::read(&p).unwrap(), cfg);
        std::fs::write(&p, r#"{"version": 1, "store": {"options": {}}}"#).unwrap();
        assert!(HomeConfig::read(&p).unwrap_err().to_string().contains("url"));
        std::fs::write(&p, r#"{"version": 2}"#).unwrap();
        assert!(HomeConfig::read(&p).unwrap_err().to_string().contains("version"));
        std::fs::write(&p, r#"{"version": 1}"#).unwrap();
        assert_eq!(HomeConfig::read(&p).unwrap(), HomeConfig::default());
    }
}
