//! A libp2p peer's TLS certificate chain (what a station checks in every `/tls/1.0.0` handshake): the
//! input cut into one or more DER certificates never panics the check, and whatever it accepts names
//! the peer id whose key signed the certificate's key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;
use shp_station::p2p::tls::peer_of_certificates;

fuzz_target!(|data: &[u8]| {
    // The first byte says how many certificates the rest is cut into (1 to 3, equal parts).
    let Some((&n, rest)) = data.split_first() else { return };
    let n = 1 + (n % 3) as usize;
    let part = rest.len().div_ceil(n).max(1);
    let chain: Vec<CertificateDer<'_>> = rest.chunks(part).map(CertificateDer::from).collect();
    if let Ok(peer) = peer_of_certificates(&chain) {
        assert_eq!(chain.len(), 1, "a chain of {} accepted", chain.len());
        // Accepted once, accepted again with the same peer id (the check has no state).
        assert_eq!(peer_of_certificates(&chain).unwrap(), peer);
    }
});
