//! Providing and finding content: Kademlia, as Kubo runs it.
//!
//! - On the public network (`shp init --public`) the station joins the IPFS DHT (`/ipfs/kad/1.0.0`).
//!   Otherwise it speaks `/ipfs/lan/kad/1.0.0`, the protocol of Kubo's LAN DHT (the one Kubo runs
//!   among peers at private and loopback addresses), so stations and Kubo nodes on a LAN share one
//!   DHT. Under a network key only the key's holders connect (pnet), so that DHT is private by
//!   construction, as Kubo's is.
//! - The station announces what it holds: every root its refs keep (names, pins, blob refs) and, of
//!   images, every blob node (manifests, configs, layers), as provider records keyed by the CID's
//!   multihash (Kubo's key, so Kubo finds them too). The [`Announcer`] task watches the refs and
//!   starts or stops providing as they change; kad republishes the records itself.
//! - Finding: `get_providers` for a fetch's root; each provider found is dialled at once (kad keeps
//!   the addresses its query learnt), so a pull asks every provider over bitswap beside the peers
//!   already connected.
//!
//! Memory is bounded whatever peers send: at most [`MAX_KEYS`] keys in the provider store (ours and
//! others'), [`kad`]'s `K` providers per key.

use libp2p::kad::{self, store::MemoryStore, store::MemoryStoreConfig};
use libp2p::{PeerId, StreamProtocol};
use shp_core::cid::Cid;
use shp_core::Home;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
/// Kubo's LAN DHT: the DHT of stations that are not on the public network.
pub const LAN_KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/lan/kad/1.0.0");

/// The DHT protocol of a host: the public one with `"public": true`, else the LAN one.
pub fn protocol(public: bool) -> StreamProtocol {
    if public {
        KAD_PROTOCOL
    } else {
        LAN_KAD_PROTOCOL
    }
}

/// Most provider-record keys the store keeps (our own and those peers put).
pub const MAX_KEYS: usize = 1 << 16;

/// How often the announcer looks at the refs.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);

/// Most keys one home announces (the rest are logged once, not provided).
pub const MAX_ANNOUNCED: usize = 1 << 14;

/// The Kademlia behaviour. `server`: answer DHT queries (a station with listeners on a private or
/// local network); otherwise kad decides from confirmed external addresses (public network) or
/// stays a client (a short-lived node without listeners).
pub(crate) fn behaviour(local: PeerId, proto: StreamProtocol, server: Option<bool>) -> kad::Behaviour<MemoryStore> {
    let store = MemoryStore::with_config(
        local,
        MemoryStoreConfig {
            max_provided_keys: MAX_KEYS,
            ..Default::default()
        },
    );
    let mut cfg = kad::Config::new(proto);
    cfg.set_query_timeout(Duration::from_secs(30));
    let mut k = kad::Behaviour::with_config(local, store, cfg);
    match server {
        Some(true) => k.set_mode(Some(kad::Mode::Server)),
        Some(false) => k.set_mode(Some(kad::Mode::Client)),
        None => k.set_mode(None),
    }
    k
}

/// The DHT key of a CID: its multihash (sha2-256), as Kubo keys provider records.
pub fn key(cid: &Cid) -> kad::RecordKey {
    let mut mh = Vec::with_capacity(34);
    mh.extend_from_slice(&[0x12, 0x20]);
    mh.extend_from_slice(cid.digest());
    kad::RecordKey::new(&mh)
}

/// What the announcer asks the host to do.
#[derive(Debug)]
pub(crate) enum Announce {
    Provide(Vec<Cid>),
    Unprovide(Vec<Cid>),
}

/// What announcing `root` means: the root and, for an image, the OCI digest of its top manifest
/// and every blob node (a blob ref, a pin of another DAG or a UnixFS view is announced by its root
/// alone).
pub fn announced(home: &Home, root: &Cid) -> Vec<Cid> {
    let mut cids = vec![*root];
    if let Ok(img) = shp_core::image::ImageRoot::load(home.store(), root) {
        // The top manifest's OCI digest too, so a mirror finds the image by the digest a
        // runtime asks for (see `super::oci`).
        if let Ok(top) = shp_core::blob::BlobNode::load(home.store(), &img.top) {
            cids.push(super::oci::digest_key(top.digest));
        }
        match img.blobs(home.store()) {
            Ok(blobs) => cids.extend(blobs.into_iter().map(|b| b.node.cid)),
            Err(e) => tracing::warn!(%root, "announcing only the root of an incomplete image: {e}"),
        }
    }
    cids
}

/// The refs' roots, and each new root with what announcing it means.
type Scan = (Vec<Cid>, Vec<(Cid, Vec<Cid>)>);

/// Watches `home`'s refs every [`ANNOUNCE_EVERY`] and sends what to start and stop providing.
/// Ends when the host goes away.
pub(crate) fn spawn_announcer(home: Arc<Home>, tx: mpsc::UnboundedSender<Announce>) {
    tokio::spawn(async move {
        // Roots seen, with the CIDs each brought: only new roots are walked.
        let mut by_root: HashMap<Cid, Vec<Cid>> = HashMap::new();
        let mut provided: BTreeSet<Cid> = BTreeSet::new();
        let mut warned = false;
        loop {
            let h = home.clone();
            let known: Vec<Cid> = by_root.keys().copied().collect();
            let res = tokio::task::spawn_blocking(move || -> shp_core::Result<Scan> {
                let refs = h.refs()?;
                let mut roots = refs.roots()?;
                // The UnixFS views of images too, so IPFS tools find who serves them.
                roots.extend(refs.views.values().filter_map(|v| v.parse::<Cid>().ok()));
                roots.sort();
                roots.dedup();
                let mut fresh = Vec::new();
                for r in &roots {
                    if known.contains(r) {
                        continue;
                    }
                    fresh.push((*r, announced(&h, r)));
                }
                Ok((roots, fresh))
            })
            .await;
            match res {
                Ok(Ok((roots, fresh))) => {
                    let live: BTreeSet<Cid> = roots.iter().copied().collect();
                    by_root.retain(|r, _| live.contains(r));
                    by_root.extend(fresh);
                    let mut want: BTreeSet<Cid> = by_root.values().flatten().copied().collect();
                    if want.len() > MAX_ANNOUNCED {
                        if !warned {
                            tracing::warn!(
                                keys = want.len(),
                                "announcing only the first {MAX_ANNOUNCED} of the CIDs this home holds"
                            );
                            warned = true;
                        }
                        want = want.into_iter().take(MAX_ANNOUNCED).collect();
                    }
                    let start: Vec<Cid> = want.difference(&provided).copied().collect();
                    let stop: Vec<Cid> = provided.difference(&want).copied().collect();
                    if !stop.is_empty() && tx.send(Announce::Unprovide(stop)).is_err() {
                        return;
                    }
                    if !start.is_empty() && tx.send(Announce::Provide(start)).is_err() {
                        return;
                    }
                    provided = want;
                }
                Ok(Err(e)) => tracing::warn!("announcer: cannot read the refs: {e}"),
                Err(e) => tracing::warn!("announcer: {e}"),
            }
            tokio::time::sleep(ANNOUNCE_EVERY).await;
            if tx.is_closed() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_multihashes() {
        let c = Cid::hash(0x55, b"hello");
        let k = key(&c);
        assert_eq!(&k.as_ref()[..2], &[0x12, 0x20]);
        assert_eq!(&k.as_ref()[2..], c.digest());
        // The same digest under another codec is the same content, so the same key (as in Kubo).
        assert_eq!(key(&Cid::from_digest(0x71, *c.digest())), k);
    }
}
