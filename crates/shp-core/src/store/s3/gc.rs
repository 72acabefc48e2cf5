//! Garbage collection on a shared bucket, safe beside pushes on other stations.
//!
//! Packs are immutable, so gc works in two steps a grace period apart (`grace`, default 1 h):
//!
//! 1. **Condemn.** A pack whose index is older than the grace period and holds blocks no ref
//!    reaches is condemned: its live blocks (if any) are copied into new packs, and the pack is
//!    recorded in `gc/condemned.json` with the time. Readers prefer the copies from then on.
//! 2. **Delete.** A later gc deletes a pack condemned at least a grace period ago — unless a block
//!    of it is live again (a ref made since reaches it) or a *claim* names it.
//!
//! A batch that skipped blocks because a pack already held them writes a claim
//! (`claims/<name>.json`, the packs it relied on) when it commits, then reads
//! `gc/condemned.json`: a block it relied on in a condemned pack is copied into a pack of its own
//! (read back, verified, written again); a pack that is gone fails the batch with a clear,
//! retryable error, and nothing is committed. A deletion spares any pack named by a claim made
//! less than a grace period before the pack was condemned, so a batch that committed just before
//! a condemnation (its refs not yet written) keeps its blocks.
//!
//! The rule users must keep: **a batch's refs are written within the grace period of its commit**
//! (shp does it at once), and the clocks of the machines running gc and the bucket's agree to well
//! within the grace period. Packs younger than the grace period are never touched (a batch in
//! flight may be writing them), and packs without an index are deleted only when older than it.
//! Deleted packs stay listed (tombstones) for two grace periods; claims are kept for three.
//! One gc runs at a time per bucket (`gc/lock`, taken over when older than the grace period).

use super::bucket::{Bucket, PutOutcome};
use super::pack::PackBuilder;
use super::{random_name, S3Store};
use crate::cid::Cid;
use crate::error::{Error, Result};
use crate::store::{Blockstore, SweepStats};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Condemned {
    #[serde(default)]
    pub version: u32,
    /// pack name → when it was condemned (Unix seconds).
    #[serde(default)]
    pub packs: BTreeMap<String, u64>,
    /// pack name → when it was deleted (Unix seconds).
    #[serde(default)]
    pub deleted: BTreeMap<String, u64>,
}

const CONDEMNED: &str = "gc/condemned.json";
const LOCK: &str = "gc/lock";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When an object was last written (Unix seconds, the bucket's clock).
fn modified(m: &object_store::ObjectMeta) -> u64 {
    m.last_modified.timestamp().max(0) as u64
}

impl Condemned {
    /// The record and its entity tag (None when there is none yet).
    pub fn load(bucket: &Bucket) -> Result<(Condemned, Option<super::bucket::ETag>)> {
        let c = bucket.client();
        let key = bucket.key(CONDEMNED);
        match bucket.block(async move { c.get(&key).await }) {
            Ok(None) => Ok((Condemned::default(), None)),
            Ok(Some((b, etag))) => {
                let rec: Condemned = serde_json::from_slice(&b)
                    .map_err(|e| Error::Store(format!("{}/{CONDEMNED}: not a gc record: {e}", bucket.url())))?;
                Ok((rec, Some(etag)))
            }
            Err(e) => Err(bucket.fail("GET", CONDEMNED, &e)),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Claim {
    packs: Vec<String>,
}

/// What a committing batch does about the blocks it did not write because `reused` packs had
/// them: claims the packs, and copies (through `rescue`) each such block whose pack gc condemned.
pub(super) fn claim(
    store: &S3Store,
    reused: &BTreeMap<String, Vec<Cid>>,
    rescue: &mut dyn FnMut(&Cid, &[u8]) -> Result<()>,
) -> Result<()> {
    let bucket = store.bucket();
    let rel = format!("claims/{}.json", random_name());
    let body = serde_json::to_vec(&Claim {
        packs: reused.keys().cloned().collect(),
    })
    .expect("claim serializes");
    let c = bucket.client();
    let key = bucket.key(&rel);
    bucket
        .block(async move { c.put(&key, Bytes::from(body)).await })
        .map_err(|e| bucket.fail("PUT", &rel, &e))?;
    let (condemned, _) = Condemned::load(bucket)?;
    let retry = |what: String| {
        Error::Raced(format!(
            "{}: {what} while this write relied on it; nothing was committed: run the command again",
            store.url()
        ))
    };
    for (pack, cids) in reused {
        if condemned.packs.contains_key(pack) || condemned.deleted.contains_key(pack) {
            for cid in cids {
                let elsewhere = {
                    let st = store.state.read().unwrap();
                    st.index.get(cid).is_some_and(|&(p, _)| {
                        st.packs[p as usize].as_ref().is_some_and(|p| {
                            &p.name != pack
                                && !condemned.packs.contains_key(&p.name)
                                && !condemned.deleted.contains_key(&p.name)
                        })
                    })
                };
                if elsewhere {
                    continue;
                }
                let data = store
                    .get(cid)
                    .map_err(|e| retry(format!("gc removed pack {pack} (block {cid}: {e})")))?;
                rescue(cid, &data)?;
            }
        } else {
            // Not condemned: it must still be there (a batch that ran longer than the
            // tombstones are kept could otherwise miss its deletion).
            let c = bucket.client();
            let key = bucket.key(&format!("packs/{pack}.idx"));
            let there = bucket
                .block(async move { c.head(&key).await })
                .map_err(|e| bucket.fail("HEAD", &format!("packs/{pack}.idx"), &e))?;
            if there.is_none() {
                return Err(retry(format!("pack {pack} was removed")));
            }
        }
    }
    Ok(())
}

/// gc's sweep on the bucket: keeps what `keep` accepts (see the module docs for the steps).
/// Reports the blocks condemned by this run and the bytes deleted by it.
pub(super) fn sweep(store: &S3Store, keep: &dyn Fn(&Cid) -> bool) -> Result<SweepStats> {
    let bucket = store.bucket();
    let _lock = GcLock::take(store)?;
    let t0 = now();
    let grace = store.grace.as_secs();
    let mut stats = SweepStats::default();
    let (mut rec, etag) = Condemned::load(bucket)?;

    let c = bucket.client();
    let (kp, kc) = (bucket.key("packs"), bucket.key("claims"));
    let (packs, claims) = bucket
        .block(async move { Ok::<_, String>((c.list(&kp).await?, c.list(&kc).await?)) })
        .map_err(|e| bucket.fail("LIST", "packs/ claims/", &e))?;
    let mut objects: HashMap<String, (u64, u64)> = HashMap::new(); // rel → (size, modified)
    for m in &packs {
        objects.insert(bucket.rel(&m.location).to_string(), (m.size, modified(m)));
    }
    store.refresh()?;

    // 1. Delete what was condemned at least a grace period ago and is still unwanted.
    let due: Vec<(String, u64)> = rec
        .packs
        .iter()
        .filter(|(_, &at)| at + grace <= t0)
        .map(|(n, &at)| (n.clone(), at))
        .collect();
    if !due.is_empty() {
        let oldest = due.iter().map(|(_, at)| *at).min().unwrap_or(t0);
        let mut claimed: Vec<(u64, BTreeSet<String>)> = Vec::new();
        for m in claims.iter().filter(|m| modified(m) + grace >= oldest) {
            let rel = bucket.rel(&m.location).to_string();
            let c = bucket.client();
            let key = m.location.clone();
            match bucket
                .block(async move { c.get(&key).await })
                .map_err(|e| bucket.fail("GET", &rel, &e))?
            {
                None => {}
                Some((b, _)) => {
                    // An unreadable claim cannot spare anything; it is removed when it ages out.
                    if let Ok(cl) = serde_json::from_slice::<Claim>(&b) {
                        claimed.push((modified(m), cl.packs.into_iter().collect()));
                    }
                }
            }
        }
        for (name, at) in due {
            let live_again = {
                let st = store.state.read().unwrap();
                st.known
                    .get(&name)
                    .and_then(|&id| st.packs[id as usize].as_ref())
                    .is_some_and(|p| p.index.entries.iter().any(|e| keep(&e.cid)))
            };
            let is_claimed = claimed
                .iter()
                .any(|(t, names)| t + grace >= at && names.contains(&name));
            if live_again || is_claimed {
                rec.packs.remove(&name);
                continue;
            }
            for ext in ["idx", "pack"] {
                let rel = format!("packs/{name}.{ext}");
                let c = bucket.client();
                let key = bucket.key(&rel);
                bucket
                    .block(async move { c.delete(&key).await })
                    .map_err(|e| bucket.fail("DELETE", &rel, &e))?;
                stats.bytes_freed += objects.get(&rel).map_or(0, |o| o.0);
            }
            rec.packs.remove(&name);
            rec.deleted.insert(name, t0);
        }
    }

    // 2. Packs nobody indexed (a batch that died), and old claims and tombstones.
    for (rel, &(size, modified)) in &objects {
        let Some(name) = rel.strip_prefix("packs/").and_then(|r| r.strip_suffix(".pack")) else {
            continue;
        };
        if modified + grace <= t0 && !objects.contains_key(&format!("packs/{name}.idx")) {
            let c = bucket.client();
            let key = bucket.key(rel);
            bucket
                .block(async move { c.delete(&key).await })
                .map_err(|e| bucket.fail("DELETE", rel, &e))?;
            stats.bytes_freed += size;
        }
    }
    for m in claims.iter().filter(|m| modified(m) + 3 * grace < t0) {
        let rel = bucket.rel(&m.location).to_string();
        let c = bucket.client();
        let key = m.location.clone();
        bucket
            .block(async move { c.delete(&key).await })
            .map_err(|e| bucket.fail("DELETE", &rel, &e))?;
    }
    rec.deleted.retain(|_, at| *at + 2 * grace >= t0);

    // 3. Condemn old packs holding dead blocks; copy their live blocks first.
    let candidates: Vec<(String, Vec<super::pack::Entry>)> = {
        let st = store.state.read().unwrap();
        st.packs
            .iter()
            .flatten()
            .filter(|p| !rec.packs.contains_key(&p.name) && !rec.deleted.contains_key(&p.name))
            .filter(|p| {
                objects
                    .get(&format!("packs/{}.idx", p.name))
                    .is_some_and(|&(_, modified)| modified + grace <= t0)
            })
            .filter(|p| p.index.entries.iter().any(|e| !keep(&e.cid)))
            .map(|p| (p.name.clone(), p.index.entries.clone()))
            .collect()
    };
    if !candidates.is_empty() {
        let condemned_names: BTreeSet<&String> = candidates.iter().map(|(n, _)| n).collect();
        let mut copier = Copier::new(store);
        for (name, entries) in &candidates {
            for e in entries {
                if !keep(&e.cid) {
                    stats.blocks_removed += 1;
                    continue;
                }
                // A live block with a copy in a pack that stays needs no other.
                let kept_elsewhere = {
                    let st = store.state.read().unwrap();
                    st.index.get(&e.cid).is_some_and(|&(p, _)| {
                        st.packs[p as usize]
                            .as_ref()
                            .is_some_and(|p| !condemned_names.contains(&p.name) && !rec.packs.contains_key(&p.name))
                    })
                };
                if !kept_elsewhere && !copier.has(&e.cid) {
                    let data = store.get(&e.cid).map_err(|err| {
                        Error::Store(format!("gc: copying live block {} out of pack {name}: {err}", e.cid))
                    })?;
                    copier.push(&e.cid, &data)?;
                }
            }
        }
        copier.finish()?;
        for (name, _) in candidates {
            rec.packs.insert(name, t0);
        }
    }

    rec.version = 1;
    let body = Bytes::from(serde_json::to_vec_pretty(&rec).expect("gc record serializes"));
    let c = bucket.client();
    let key = bucket.key(CONDEMNED);
    match bucket
        .block(async move { c.put_if(&key, body, etag).await })
        .map_err(|e| bucket.fail("PUT", CONDEMNED, &e))?
    {
        PutOutcome::Written => {}
        PutOutcome::Conflict => {
            return Err(Error::Store(format!(
                "{}: {CONDEMNED} changed while this gc ran (another gc took over its lock?); run gc again",
                store.url()
            )))
        }
    }
    store.refresh()?;
    Ok(stats)
}

/// Live blocks gc moves out of condemned packs, written as new packs.
struct Copier<'a> {
    store: &'a S3Store,
    cur: PackBuilder,
    comp: zstd::bulk::Compressor<'static>,
    seen: std::collections::HashSet<Cid>,
    done: Vec<(String, super::pack::Index, Bytes)>,
}

impl<'a> Copier<'a> {
    fn new(store: &'a S3Store) -> Copier<'a> {
        Copier {
            store,
            cur: PackBuilder::new(0),
            comp: zstd::bulk::Compressor::new(store.compression.level).expect("a checked zstd level"),
            seen: Default::default(),
            done: Vec::new(),
        }
    }

    fn has(&self, cid: &Cid) -> bool {
        self.seen.contains(cid)
    }

    fn push(&mut self, cid: &Cid, data: &[u8]) -> Result<()> {
        let z = crate::store::compress_block(&mut self.comp, data).map_err(|e| Error::Store(format!("zstd: {e}")))?;
        self.cur.push(cid, data, z);
        self.seen.insert(*cid);
        if self.cur.len() as u64 >= self.store.pack_size {
            self.upload()?;
        }
        Ok(())
    }

    fn upload(&mut self) -> Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.cur, PackBuilder::new(0));
        let name = random_name();
        let rel = format!("packs/{name}.pack");
        let bucket = self.store.bucket();
        let c = bucket.client();
        let key = bucket.key(&rel);
        let index = full.index();
        let bytes = Bytes::from(full.bytes);
        bucket
            .block(async move { c.put(&key, bytes).await })
            .map_err(|e| bucket.fail("PUT", &rel, &e))?;
        let idx = Bytes::from(index.encode());
        self.done.push((name, index, idx));
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.upload()?;
        let bucket = self.store.bucket();
        for (name, index, bytes) in std::mem::take(&mut self.done) {
            let rel = format!("packs/{name}.idx");
            let c = bucket.client();
            let key = bucket.key(&rel);
            let b = bytes.clone();
            bucket
                .block(async move { c.put(&key, b).await })
                .map_err(|e| bucket.fail("PUT", &rel, &e))?;
            self.store.cache.put_index(&format!("{name}.idx"), &bytes);
            let mut st = self.store.state.write().unwrap();
            if !st.known.contains_key(&name) {
                st.add(super::Pack {
                    name,
                    index,
                    condemned: false,
                });
            }
        }
        Ok(())
    }
}

/// `gc/lock`, held while a gc runs.
struct GcLock<'a> {
    store: &'a S3Store,
}

impl<'a> GcLock<'a> {
    fn take(store: &'a S3Store) -> Result<GcLock<'a>> {
        let bucket = store.bucket();
        let body = Bytes::from(format!(
            "{{\"host\": {:?}, \"pid\": {}, \"since\": {}}}",
            hostname(),
            std::process::id(),
            now()
        ));
        let c = bucket.client();
        let key = bucket.key(LOCK);
        let b = body.clone();
        let got = bucket
            .block(async move { c.put_if(&key, b, None).await })
            .map_err(|e| bucket.fail("PUT", LOCK, &e))?;
        if let PutOutcome::Written = got {
            return Ok(GcLock { store });
        }
        let c = bucket.client();
        let key = bucket.key(LOCK);
        let held = bucket
            .block(async move { c.get(&key).await })
            .map_err(|e| bucket.fail("GET", LOCK, &e))?;
        if let Some((b, etag)) = held {
            let since = serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v.get("since").and_then(|s| s.as_u64()))
                .unwrap_or(0);
            if since + store.grace.as_secs().max(60) < now() {
                let c = bucket.client();
                let key = bucket.key(LOCK);
                if let PutOutcome::Written = bucket
                    .block(async move { c.put_if(&key, body, Some(etag)).await })
                    .map_err(|e| bucket.fail("PUT", LOCK, &e))?
                {
                    return Ok(GcLock { store });
                }
            }
            return Err(Error::Store(format!(
                "{}: another gc is running on this bucket ({LOCK}: {}); run gc again when it is done",
                store.url(),
                String::from_utf8_lossy(&b).trim()
            )));
        }
        // Released between the two requests: try once more.
        GcLock::take(store)
    }
}

impl Drop for GcLock<'_> {
    fn drop(&mut self) {
        let bucket = self.store.bucket();
        let c = bucket.client();
        let key = bucket.key(LOCK);
        let _ = bucket.block(async move { c.delete(&key).await });
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}
