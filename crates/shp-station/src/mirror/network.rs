//! The mirror's libp2p source: a manifest by digest that neither the home nor an HTTP peer
//! holds is looked for among the station's libp2p peers (connected ones, then DHT providers of
//! the digest; see [`crate::p2p::oci`]) before the upstream is asked. A peer that holds the image
//! names the root of its DAG; the DAG is fetched over bitswap from every peer that holds it (only
//! the blocks the home lacks, each checked against its CID), the image's top manifest is checked
//! against the digest asked for, and the image is named `HOST/REPO@DIGEST` — so its blobs are then
//! served from the home and the upstream sees no request for them.
//!
//! While the upstream cannot be reached, a tag is asked of the connected libp2p peers too (after
//! the HTTP peers): a peer answers with the digest its refs name by that tag, or the one its own
//! mirror last learnt from the upstream, and the image comes the same way. The station answers
//! such questions from its own mirror's record ([`Mirror::tag_digest`]).

use super::{Manifest, Mirror, Target};
use crate::p2p::oci::Want;
use crate::p2p::Node;
use shp_core::cid::format_digest;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long each step of finding holders may take (asking the connected peers; the DHT).
pub const NETWORK_WAIT: Duration = Duration::from_secs(2);

/// The station's libp2p host, for the mirror to find images among its peers.
#[derive(Clone)]
pub struct Network {
    pub node: Arc<Node>,
    /// The runtime the node runs on (the mirror works on blocking threads).
    pub rt: tokio::runtime::Handle,
}

impl Mirror {
    /// A manifest by digest from the libp2p peers that hold its image as a DAG (see the module
    /// docs); `None` when no peer does or the fetch failed (logged; the upstream comes next).
    pub(super) fn manifest_from_network(&self, t: &Target, digest: &str, what: &str) -> Option<Manifest> {
        let d = shp_core::cid::parse_digest(digest).ok()?;
        self.via_network(t, &Want::Digest(d), what)
    }

    /// What the libp2p peers say a tag is, with its image (asked only while the upstream cannot
    /// be reached, as a tag is mutable and a peer's word for it cannot be checked).
    pub(super) fn tag_from_network(&self, t: &Target, tag: &str, what: &str) -> Option<Manifest> {
        self.via_network(t, &Want::Tag(self.tag_key(t, tag)), what)
    }

    /// What a peer asking this station's libp2p host about `key` (`HOST/REPO:TAG`) is told: the
    /// digest the upstream last gave for it (see [`crate::p2p::oci::Catalog::set_tags`]).
    pub fn tag_digest(&self, key: &str) -> Option<[u8; 32]> {
        let e = self.state.tag(key)?;
        shp_core::cid::parse_digest(&e.digest).ok()
    }

    fn via_network(&self, t: &Target, want: &Want, what: &str) -> Option<Manifest> {
        let net = self.net.as_ref()?;
        if t.hop {
            return None;
        }
        // The repository's image served last is the fetch's delta base (stations send the
        // changed blocks as deltas against it).
        let base = self.previous_version(&format!("{}/{}", self.upstream(t).host, t.repo));
        let fetched =
            match crate::p2p::oci::fetch_image_blocking(&net.node, &net.rt, &self.home, want, base, NETWORK_WAIT) {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!("mirror: {what} from libp2p peers failed (the upstream comes next): {e}");
                    return None;
                }
            };
        let digest = format_digest(&fetched.digest);
        let name = self.ref_name(t, &digest);
        let holders = fetched
            .holders
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        if let Err(e) = self.adopt(&fetched.root, &digest, &name) {
            tracing::warn!(%name, peers = %holders, "mirror: refused the DAG libp2p peers sent: {e}");
            return None;
        }
        let (bytes, media_type) = match top_manifest(&self.home, &fetched.root) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%name, "mirror: the fetched image's manifest cannot be read: {e}");
                return None;
            }
        };
        let m = match self.checked(t, bytes, media_type, Some(&digest), what) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%name, "mirror: {e}");
                return None;
            }
        };
        self.counters.network_images.fetch_add(1, Ordering::Relaxed);
        let r = &fetched.report;
        tracing::info!(
            %name,
            root = %fetched.root,
            peers = %holders,
            blocks_fetched = r.blocks_fetched,
            blocks_delta = r.blocks_delta,
            bytes_fetched = r.bytes_fetched,
            blocks_present = r.blocks_present,
            "mirrored image's DAG fetched from libp2p peers"
        );
        Some(m)
    }
}

/// The bytes and media type of the top manifest of the image at `root` (read back from the DAG,
/// so its digest is checked by the caller).
fn top_manifest(home: &shp_core::Home, root: &shp_core::Cid) -> shp_core::Result<(Vec<u8>, String)> {
    let img = shp_core::image::ImageRoot::load(home.store(), root)?;
    let blobs = img.blobs(home.store())?;
    let top = blobs
        .into_iter()
        .find(|b| b.parent.is_none())
        .ok_or_else(|| shp_core::Error::Schema {
            cid: root.to_string(),
            reason: "the image has no top manifest".into(),
        })?;
    let mut bytes = Vec::with_capacity(top.node.size as usize);
    top.node
        .open(home.store())
        .read_to_end(&mut bytes)
        .map_err(shp_core::dag::unwrap_io)?;
    Ok((bytes, top.media_type))
}
