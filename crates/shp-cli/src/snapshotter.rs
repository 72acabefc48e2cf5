//! `shp snapshotter --address SOCK [--root DIR] [--from URL …]`: containerd's remote snapshotter,
//! in the foreground until SIGTERM or SIGINT (which unmount every layer it mounted).

use crate::mount::HttpSource;
use anyhow::Result;
use shp_core::Home;
use shp_rootfs::lazy::BlockSource;
use shp_snapshotter::snapshots::Lazy;
use shp_snapshotter::{grpc, Snapshotter};
use shp_station::transport::{FetchOptions, HttpTransport, Transport};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A prefetch waits until reads on demand have been quiet this long (or [`PREFETCH_MAX_WAIT`] has
/// passed): on a thin link, a whole-image fetch running while a container starts would take the
/// bandwidth its first reads need.
const PREFETCH_QUIET: Duration = Duration::from_secs(2);
const PREFETCH_MAX_WAIT: Duration = Duration::from_secs(30);

/// The stations' blocks on demand, remembering when the last one was asked for.
struct Demand {
    inner: HttpSource,
    born: Instant,
    /// Milliseconds after `born` of the last request.
    last: AtomicU64,
}

impl Demand {
    fn quiet_for(&self) -> Duration {
        let now = self.born.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

impl BlockSource for Demand {
    fn get(&self, cid: &shp_core::Cid) -> std::result::Result<Vec<u8>, String> {
        let r = self.inner.get(cid);
        self.last
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
        r
    }
    fn get_many(
        &self,
        cids: &[shp_core::Cid],
        found: &mut dyn FnMut(shp_core::Cid, Vec<u8>),
    ) -> std::result::Result<(), String> {
        let r = self.inner.get_many(cids, found);
        self.last
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
        r
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

/// Images the home lacks, from stations over HTTP: their registry names an image's root CID
/// (`x-shp-root`), their gateway serves its blocks.
struct Stations {
    home: Arc<Home>,
    urls: Vec<String>,
    source: Arc<Demand>,
    prefetch: bool,
    prefetching: Mutex<HashSet<String>>,
}

/// `HOST/REPO:TAG`, `HOST/REPO@DIGEST` (containerd's image reference) → (repo, tag or digest).
fn split_ref(r: &str) -> Option<(String, String)> {
    let (_host, rest) = r.split_once('/')?;
    if let Some((repo, digest)) = rest.split_once('@') {
        return Some((repo.to_string(), digest.to_string()));
    }
    match rest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => Some((repo.to_string(), tag.to_string())),
        _ => Some((rest.to_string(), "latest".to_string())),
    }
}

impl Lazy for Stations {
    fn resolve(&self, image_ref: Option<&str>, manifest: Option<&str>) -> Option<String> {
        let (repo, reference) = split_ref(image_ref?)?;
        for t in &self.source.inner.0 {
            for r in [Some(reference.as_str()), manifest].into_iter().flatten() {
                match t.image_root(&repo, r) {
                    Ok(Some(root)) => return Some(root.to_string()),
                    Ok(None) => {}
                    Err(e) => eprintln!("shp snapshotter: asking {} for {repo}:{r}: {e}", t.name()),
                }
            }
        }
        None
    }

    fn source(&self) -> Arc<dyn BlockSource> {
        self.source.clone()
    }

    fn prefetch(&self, root: &str) {
        if !self.prefetch || !self.prefetching.lock().expect("lock").insert(root.to_string()) {
            return;
        }
        let (home, urls, demand) = (self.home.clone(), self.urls.clone(), self.source.clone());
        let Ok(cid) = root.parse::<shp_core::Cid>() else { return };
        std::thread::spawn(move || {
            let asked = Instant::now();
            while demand.quiet_for() < PREFETCH_QUIET && asked.elapsed() < PREFETCH_MAX_WAIT {
                std::thread::sleep(Duration::from_millis(200));
            }
            let peers = match urls
                .iter()
                .map(|u| HttpTransport::new(u))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(p) => p,
                Err(e) => return eprintln!("shp snapshotter: prefetch of {cid}: {e}"),
            };
            let peers: Vec<&dyn Transport> = peers.iter().map(|p| p as &dyn Transport).collect();
            match shp_station::transport::fetch_into_home(&home, &cid, &peers, None, FetchOptions::default()) {
                Ok(r) => eprintln!(
                    "shp snapshotter: prefetched {cid}: {} blocks ({} bytes on the wire), {} already held; pinned in the home",
                    r.blocks_fetched, r.bytes_fetched, r.blocks_present
                ),
                Err(e) => eprintln!("shp snapshotter: prefetch of {cid} failed (reads still fetch what they touch): {e}"),
            }
        });
    }
}

pub fn run(home: Home, root: &Path, address: &Path, from: &[String], prefetch: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Handlers first: a SIGTERM sent as soon as the banner is read must stop us cleanly.
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in = rt.enter();
        (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)
    };
    let home = Arc::new(home);
    let lazy: Option<Arc<dyn Lazy>> = if from.is_empty() {
        None
    } else {
        let peers = from
            .iter()
            .map(|u| HttpTransport::new(u))
            .collect::<Result<Vec<_>, _>>()?;
        Some(Arc::new(Stations {
            home: home.clone(),
            urls: from.to_vec(),
            source: Arc::new(Demand {
                inner: HttpSource(peers),
                born: Instant::now(),
                last: AtomicU64::new(0),
            }),
            prefetch,
            prefetching: Mutex::new(HashSet::new()),
        }))
    };
    // The socket first: a second snapshotter for the same socket stops before touching anything.
    let listener = {
        let _in = rt.enter();
        grpc::bind(address)?
    };
    let sn = match Snapshotter::open(root, home, lazy) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            let _ = std::fs::remove_file(address);
            return Err(anyhow::Error::from(e).context(format!("snapshotter root {}", root.display())));
        }
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "snapshotter listening on {} (root {}, {} layer(s) mounted from the store)",
            address.display(),
            sn.root().display(),
            sn.mounted()
        )?;
        out.flush()?;
    }
    rt.block_on(grpc::serve(sn, listener, address, async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        eprintln!("shp snapshotter: {which}: stopping (layers are unmounted)");
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_ref;

    #[test]
    fn image_refs_split_into_repo_and_reference() {
        let s = split_ref;
        assert_eq!(s("127.0.0.1:5000/app:v1"), Some(("app".into(), "v1".into())));
        assert_eq!(s("localhost:5000/a/b"), Some(("a/b".into(), "latest".into())));
        assert_eq!(
            s("docker.io/library/busybox@sha256:00"),
            Some(("library/busybox".into(), "sha256:00".into()))
        );
        assert_eq!(s("nohost"), None);
    }
}
