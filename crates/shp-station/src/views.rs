//! UnixFS views of what the station holds: every image named or pinned in the home gets its views
//! (`shp_rootfs::view`: its root file system and each layer, as UnixFS over the layers' own chunks)
//! built in the background soon after it arrives — a registry push, a mirror import, a fetch — so
//! the gateway serves `/ipfs/<view>/usr/bin/…` and the DHT announces the views without anyone
//! running `shp inspect` first. One image at a time, on the blocking pool; a view already built is
//! found, not built again.

use shp_core::cid::Cid;
use shp_core::Home;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How often the refs are looked at for images without views.
pub const VIEWS_EVERY: Duration = Duration::from_secs(5);

/// Builds the views of every image the home names or pins, now and as new ones arrive; runs until
/// the task is aborted (the station's shutdown).
pub async fn build_views(home: Arc<Home>) {
    let mut seen: HashSet<Cid> = HashSet::new();
    let mut tick = tokio::time::interval(VIEWS_EVERY);
    loop {
        tick.tick().await;
        let h = home.clone();
        let known = seen.clone();
        let res = tokio::task::spawn_blocking(move || -> shp_core::Result<Vec<(Cid, Result<usize, String>)>> {
            let refs = h.refs()?;
            let mut out = Vec::new();
            for s in refs.names.values().chain(refs.pins.iter()) {
                let Ok(root) = s.parse::<Cid>() else { continue };
                if known.contains(&root) || out.iter().any(|(r, _)| *r == root) {
                    continue;
                }
                if shp_core::image::ImageRoot::load(h.store(), &root).is_err() {
                    // A pin of another DAG (a CAR import, a UnixFS file): nothing to view.
                    out.push((root, Ok(0)));
                    continue;
                }
                let built = shp_rootfs::view::image_views(&h, &root.to_string())
                    .map(|v| v.iter().map(|m| m.layers.len() + usize::from(m.rootfs.is_some())).sum())
                    .map_err(|e| e.to_string());
                out.push((root, built));
            }
            Ok(out)
        })
        .await;
        match res {
            Ok(Ok(done)) => {
                for (root, r) in done {
                    match r {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(%root, views = n, "UnixFS views ready"),
                        Err(e) => tracing::warn!(%root, "no UnixFS views for this image: {e}"),
                    }
                    seen.insert(root);
                }
            }
            Ok(Err(e)) => tracing::warn!("UnixFS views: reading the refs: {e}"),
            Err(e) => tracing::warn!("UnixFS views: task failed: {e}"),
        }
    }
}
