//! `shp mount`, `shp mounts`, `shp umount`: images served as read-only FUSE file systems.

use anyhow::{bail, Context, Result};
use serde_json::json;
use shp_core::Home;
use shp_rootfs::lazy::BlockSource;
use shp_rootfs::mount::{is_shp_mount, MountOptions, MountRecord};
use shp_station::transport::{FetchOptions, HttpTransport, Transport};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Peers asked for a lazy mount's missing blocks, in order: bitswap peers (`--from MULTIADDR`,
/// through a node of the mount's own), then HTTP ones (stations, trustless gateways).
pub(crate) struct HttpSource(pub(crate) Vec<HttpTransport>);

impl BlockSource for HttpSource {
    fn get(&self, cid: &shp_core::Cid) -> std::result::Result<Vec<u8>, String> {
        first_of(self.0.iter().map(|t| t as &dyn Transport), cid)
    }
    fn get_many(
        &self,
        cids: &[shp_core::Cid],
        found: &mut dyn FnMut(shp_core::Cid, Vec<u8>),
    ) -> std::result::Result<(), String> {
        many_of(self.0.iter().map(|t| t as &dyn Transport), cids, found)
    }
    fn name(&self) -> String {
        self.0.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }
}

/// The block from the first of `peers` that has it; else why each failed.
fn first_of<'a>(
    peers: impl Iterator<Item = &'a dyn Transport>,
    cid: &shp_core::Cid,
) -> std::result::Result<Vec<u8>, String> {
    let mut why = Vec::new();
    for t in peers {
        match t.get_block(cid) {
            Ok(b) => return Ok(b),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(why.join("; "))
}

/// Those of `cids` that `peers` have, asking each in turn (one batch request where it can) for
/// what the ones before it did not send; an error only when no peer answered at all.
fn many_of<'a>(
    peers: impl Iterator<Item = &'a dyn Transport>,
    cids: &[shp_core::Cid],
    found: &mut dyn FnMut(shp_core::Cid, Vec<u8>),
) -> std::result::Result<(), String> {
    let mut left: std::collections::HashSet<shp_core::Cid> = cids.iter().copied().collect();
    let mut why = Vec::new();
    let mut answered = false;
    for t in peers {
        if left.is_empty() {
            break;
        }
        let ask: Vec<shp_core::Cid> = cids.iter().filter(|c| left.contains(c)).copied().collect();
        let r = t.get_blocks(&ask, &mut |cid, data| {
            left.remove(&cid);
            found(cid, data);
            Ok(())
        });
        match r {
            Ok(()) => answered = true,
            Err(e) => why.push(format!("{}: {e}", t.name())),
        }
    }
    if answered || why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

/// `--from` peers of both kinds: the bitswap ones dialled by a node of this mount's own.
struct PeerSource {
    dialed: Option<Arc<shp_station::p2p::fetch::Dialed>>,
    http: Vec<HttpTransport>,
}

impl PeerSource {
    fn transports(&self) -> Vec<&dyn Transport> {
        let bitswap = self
            .dialed
            .iter()
            .flat_map(|d| d.peers().iter().map(|p| p as &dyn Transport));
        bitswap.chain(self.http.iter().map(|t| t as &dyn Transport)).collect()
    }
}

impl BlockSource for PeerSource {
    fn get(&self, cid: &shp_core::Cid) -> std::result::Result<Vec<u8>, String> {
        first_of(self.transports().into_iter(), cid)
    }
    fn get_many(
        &self,
        cids: &[shp_core::Cid],
        found: &mut dyn FnMut(shp_core::Cid, Vec<u8>),
    ) -> std::result::Result<(), String> {
        many_of(self.transports().into_iter(), cids, found)
    }
    fn name(&self) -> String {
        self.transports()
            .iter()
            .map(|t| format!("{} ({})", t.name(), t.kind()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Parses `--from` values: multiaddrs (`/ip4/…/p2p/<id>`: bitswap) and URLs (HTTP); dials the
/// multiaddrs with a node of its own (the home's p2p settings: its network key).
fn peer_source(home: &Arc<Home>, home_dir: &Path, from: &[String]) -> Result<PeerSource> {
    let (addrs, urls): (Vec<&String>, Vec<&String>) = from.iter().partition(|f| f.starts_with('/'));
    let http = urls
        .iter()
        .map(|u| HttpTransport::new(u))
        .collect::<Result<Vec<_>, _>>()?;
    let dialed = if addrs.is_empty() {
        None
    } else {
        let addrs = addrs
            .iter()
            .map(|a| shp_station::p2p::parse_addr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let cfg = shp_station::server::Config::load(home_dir, &Default::default())?;
        let p2p = cfg
            .p2p
            .ok_or_else(|| anyhow::anyhow!("p2p is off in {}: --from MULTIADDR needs it", home_dir.display()))?;
        let d = shp_station::p2p::fetch::Dialed::connect(home.clone(), &p2p, &addrs).context("--from")?;
        Some(Arc::new(d))
    };
    Ok(PeerSource { dialed, http })
}

/// How a mount gets what the home lacks: `--from` peers, `--tag`, `--no-prefetch`.
pub struct Lazy {
    pub from: Vec<String>,
    pub tag: Option<String>,
    pub no_prefetch: bool,
}

/// Mounts `image` on `dir` and serves it until SIGTERM, SIGINT or SIGHUP, or until it is unmounted
/// from outside; then unmounts and forgets it. With `--from` peers, what the home lacks is read
/// from them as it is needed, and (unless `--no-prefetch`) the whole image is fetched into the home
/// meanwhile.
pub fn mount(
    home: Home,
    home_dir: &Path,
    image: &str,
    dir: &Path,
    opts: MountOptions,
    lazy: Lazy,
    json: bool,
) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("mount point {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("mount point {}: not a directory", dir.display());
    }
    let dir = std::fs::canonicalize(dir).with_context(|| format!("mount point {}", dir.display()))?;
    let shown = dir.display().to_string();
    if let Some(r) = MountRecord::find(home_dir, &shown).filter(MountRecord::alive) {
        bail!("{shown}: already mounted ({} by process {})", r.image, r.pid);
    }
    let home = Arc::new(home);
    let peers = if lazy.from.is_empty() {
        if lazy.tag.is_some() {
            bail!("--tag names what a lazy mount fetches: it needs --from");
        }
        None
    } else {
        Some(Arc::new(peer_source(&home, home_dir, &lazy.from)?))
    };
    let source = peers.clone().map(|p| p as Arc<dyn BlockSource>);
    let (fs, info) = shp_rootfs::mount::prepare(home, image, &opts, source).map_err(|e| match e {
        shp_rootfs::Error::Core(c) => anyhow::Error::from(c),
        e => anyhow::Error::from(e),
    })?;
    let stats = fs.stats();
    let lazy_store = fs.store();
    // The handlers are in place before the mount exists and before it is announced: a SIGTERM
    // that arrives as soon as a caller has read the mount point must unmount, not kill the
    // server with the default action and leave a dead mount behind.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut term, mut int, mut hup) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in = rt.enter();
        // A closed terminal must not leave a dead mount behind either.
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        )
    };
    let session = shp_rootfs::mount::mount(fs, &dir, image)?;
    let rec = MountRecord {
        dir: shown.clone(),
        image: image.to_string(),
        root: info.root.clone(),
        manifest: info.manifest.clone(),
        layers: info.layers.clone(),
        pid: std::process::id(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    rec.save(home_dir).context("recording the mount in HOME/mounts")?;
    {
        let mut out = std::io::stdout().lock();
        if json {
            let mut v = serde_json::to_value(&info)?;
            v["dir"] = json!(shown);
            v["pid"] = json!(rec.pid);
            writeln!(out, "{v}")?;
        } else {
            eprintln!(
                "mounted {image} on {shown}: {} layer(s), {} inodes, tree built in {} ms (SIGTERM or `shp umount {shown}` unmounts)",
                info.layers.len(),
                info.inodes,
                info.tree_ms
            );
            writeln!(out, "{shown}")?;
        }
        out.flush()?;
    }
    let prefetch = peers.filter(|_| !lazy.no_prefetch).map(|peers| {
        let home = lazy_store.home().clone();
        let root: shp_core::Cid = info.root.parse().expect("a root CID");
        let tag = lazy.tag.clone();
        std::thread::spawn(move || {
            let peers = peers.transports();
            match shp_station::transport::fetch_into_home(&home, &root, &peers, tag.as_deref(), FetchOptions::default()) {
                Ok(r) => eprintln!(
                    "shp mount: prefetched {root}: {} blocks ({} bytes on the wire), {} already held; the image is now in the home ({})",
                    r.blocks_fetched,
                    r.bytes_fetched,
                    r.blocks_present,
                    r.name.as_deref().map_or("pinned".to_string(), |n| format!("named {n}"))
                ),
                Err(e) => eprintln!("shp mount: prefetch of {root} failed (reads still fetch what they touch): {e}"),
            }
        })
    });
    let outside = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = term.recv() => return Ok::<bool, std::io::Error>(false),
                _ = int.recv() => return Ok(false),
                _ = hup.recv() => return Ok(false),
                _ = tick.tick() => if session.guard.is_finished() { return Ok(true) },
            }
        }
    })?;
    let res = if outside {
        session.join()
    } else {
        session.umount_and_join()
    };
    MountRecord::remove(home_dir, &shown);
    res.with_context(|| format!("serving {shown}"))?;
    if let Some(p) = prefetch {
        if !p.is_finished() {
            eprintln!("shp mount: waiting for the prefetch to finish (it lands in one batch)");
        }
        let _ = p.join();
    }
    use std::sync::atomic::Ordering::Relaxed;
    eprintln!(
        "unmounted {shown}: {} reads ({} failed), {} bytes served, {} chunks read ({} bytes); {} blocks ({} bytes) fetched from peers on demand",
        stats.reads.load(Relaxed),
        stats.failed.load(Relaxed),
        stats.bytes.load(Relaxed),
        stats.chunks.load(Relaxed),
        stats.chunk_bytes.load(Relaxed),
        lazy_store.fetched.load(Relaxed),
        lazy_store.fetched_bytes.load(Relaxed)
    );
    Ok(())
}

/// `shp mounts [--json]`.
pub fn list(home_dir: &Path, json: bool) -> Result<()> {
    let recs: Vec<MountRecord> = MountRecord::list(home_dir)
        .into_iter()
        .filter(MountRecord::alive)
        .collect();
    if json {
        println!("{}", serde_json::to_string(&recs)?);
    } else {
        for r in &recs {
            println!("{}\t{}\t{}\t{}", r.dir, r.image, r.layers.len(), r.pid);
        }
    }
    Ok(())
}

/// `shp umount DIR`: asks the serving process to unmount (SIGTERM) and waits for it; a mount
/// whose process is gone is unmounted here.
pub fn umount(home_dir: &Path, dir: &Path) -> Result<()> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let shown = dir.display().to_string();
    match MountRecord::find(home_dir, &shown) {
        Some(r) if r.alive() => {
            let pid = rustix::process::Pid::from_raw(r.pid as i32).context("a process id")?;
            rustix::process::kill_process(pid, rustix::process::Signal::TERM)
                .with_context(|| format!("signalling process {} (serving {shown})", r.pid))?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while MountRecord::find(home_dir, &shown).is_some() {
                if Instant::now() > deadline {
                    bail!("{shown}: process {} did not unmount in 20 s", r.pid);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        rec => {
            if is_shp_mount(&dir) {
                shp_rootfs::mount::unmount(&dir)?;
                MountRecord::remove(home_dir, &shown);
                Ok(())
            } else if rec.is_some() {
                MountRecord::remove(home_dir, &shown);
                Ok(())
            } else {
                bail!("{shown}: not an shp mount")
            }
        }
    }
}
