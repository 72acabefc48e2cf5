//! Securing a TCP connection: libp2p's TLS 1.3 handshake (`/tls/1.0.0`, libp2p/specs `tls/tls.md`)
//! offered first, noise (`/noise`) second.
//!
//! Why a TLS handshake of our own and not libp2p-tls's `Config`: that one lists ChaCha20-Poly1305
//! first, and a TLS 1.3 server follows the client's order, so two rust-libp2p peers always settle on
//! ChaCha20. Where the CPU has AES instructions, AES-GCM seals and opens 4–6 times faster (measured
//! here with ring: 7–8 GB/s against 1.85 GB/s), and a bulk bitswap transfer pays the cipher once on
//! each end — noise, whose libp2p profile is fixed to ChaCha20-Poly1305, was a fifth of both
//! stations' CPU in a 250 MB fetch. So the suites here are ordered by the hardware: AES-GCM first
//! where AES is in silicon, ChaCha20 first where it is not (small ARM boards). Kubo 0.22 dials with
//! noise first, and takes TLS (AES-128-GCM here) when a station dials it.
//!
//! What is libp2p-tls's and reused: the certificate (self-signed, carrying the host's public key and
//! its signature over the certificate's key in the libp2p extension) and the parser that checks it
//! (validity period, self-signature, extension signature). What is ours: the cipher order, the
//! verifiers (exactly one certificate; the peer id is the extension's key) and the upgrade. The
//! dialled peer id is checked by the swarm, as with noise.

use futures::future::{BoxFuture, Either};
use futures::{AsyncRead, AsyncWrite, FutureExt};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::identity::Keypair;
use libp2p::{noise, PeerId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

/// The multistream name of libp2p's TLS handshake.
pub const PROTOCOL: &str = "/tls/1.0.0";
/// The ALPN both sides must name (libp2p/specs tls.md).
const ALPN: &[u8] = b"libp2p";

/// Whether this CPU encrypts AES-GCM in hardware (AES rounds and carry-less multiplication).
pub fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// ring's TLS 1.3 suites, fastest first for this CPU. TLS 1.2 is not offered (the spec forbids it).
fn provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = if aes_in_hardware() {
        vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ]
    } else {
        vec![
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
        ]
    };
    p
}

/// The TLS side of the upgrade: one certificate for this host, as server and as client.
#[derive(Clone)]
pub struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn config_error(e: impl std::fmt::Display) -> super::Error {
    super::Error::Start(format!("tls: {e}"))
}

impl Tls {
    pub fn new(identity: &Keypair) -> Result<Self, super::Error> {
        let (cert, key) = libp2p::tls::certificate::generate(identity).map_err(config_error)?;
        let provider = Arc::new(provider());
        // Not `with_single_cert`: that one checks the certificate with a CA's rules, and those refuse
        // the libp2p extension (it is critical and unknown to them).
        let signer = provider.key_provider.load_private_key(key).map_err(config_error)?;
        let certified = Arc::new(rustls::sign::SingleCertAndKey::from(rustls::sign::CertifiedKey::new(
            vec![cert],
            signer,
        )));
        let versions = &[&rustls::version::TLS13];
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(config_error)?
            .with_client_cert_verifier(Arc::new(Verifier))
            .with_cert_resolver(certified.clone());
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier))
            .with_client_cert_resolver(certified);
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Tls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    async fn accept<C>(self, socket: C) -> io::Result<(PeerId, futures_rustls::TlsStream<C>)>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = futures_rustls::TlsAcceptor::from(self.server).accept(socket).await?;
        let peer = peer_of(stream.get_ref().1)?;
        Ok((peer, stream.into()))
    }

    async fn connect<C>(self, socket: C) -> io::Result<(PeerId, futures_rustls::TlsStream<C>)>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        // The spec: no server name indication. An unspecified IP address makes rustls send none.
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
        let stream = futures_rustls::TlsConnector::from(self.client)
            .connect(name, socket)
            .await?;
        let peer = peer_of(stream.get_ref().1)?;
        Ok((peer, stream.into()))
    }
}

/// The peer id a finished handshake proved (the verifier has checked the certificate already).
fn peer_of(conn: &rustls::CommonState) -> io::Result<PeerId> {
    let certs = conn.peer_certificates().unwrap_or_default();
    let peer = peer_of_certificates(certs).map_err(io::Error::other)?;
    tracing::debug!(%peer, suite = ?conn.negotiated_cipher_suite().map(|s| s.suite()), "tls handshake done");
    Ok(peer)
}

/// The libp2p rules for a presented chain: exactly one certificate, valid now, self-signed, with a
/// valid libp2p extension; the peer id is the extension's public key.
pub fn peer_of_certificates(certs: &[CertificateDer<'_>]) -> Result<PeerId, rustls::Error> {
    match certs {
        [cert] => Ok(parse(cert)?.peer_id()),
        _ => Err(not_one_certificate(certs.len())),
    }
}

fn not_one_certificate(n: usize) -> rustls::Error {
    rustls::Error::General(format!(
        "a libp2p peer presents exactly one certificate, this one presented {n}"
    ))
}

/// libp2p-tls's parser, which checks the certificate as it parses it, with its error as rustls's.
fn parse<'a>(cert: &'a CertificateDer<'a>) -> Result<libp2p::tls::certificate::P2pCertificate<'a>, rustls::Error> {
    libp2p::tls::certificate::parse(cert)
        .map_err(|e| rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(e)))))
}

/// Checks the peer's certificate by libp2p's rules instead of a CA's, on both sides (libp2p requires
/// client certificates), and the handshake signature with the certificate's key.
#[derive(Debug)]
struct Verifier;

impl Verifier {
    fn signature(cert: &CertificateDer<'_>, message: &[u8], dss: &DigitallySignedStruct) -> Result<(), rustls::Error> {
        parse(cert)?
            .verify_signature(dss.scheme, message, dss.signature())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))
    }

    /// The schemes the certificate parser can check, elliptic curves first (the spec: RSA only when
    /// nothing else is supported).
    fn schemes() -> Vec<SignatureScheme> {
        use SignatureScheme::*;
        vec![
            ECDSA_NISTP384_SHA384,
            ECDSA_NISTP256_SHA256,
            ED25519,
            RSA_PSS_SHA512,
            RSA_PSS_SHA384,
            RSA_PSS_SHA256,
            RSA_PKCS1_SHA512,
            RSA_PKCS1_SHA384,
            RSA_PKCS1_SHA256,
        ]
    }

    fn chain(end: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(not_one_certificate(1 + intermediates.len()));
        }
        parse(end).map(|_| ())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Verifier::chain(end, intermediates).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("libp2p peers speak TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Verifier::signature(cert, message, dss).map(|()| HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Verifier::schemes()
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Verifier::chain(end, intermediates).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("libp2p peers speak TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Verifier::signature(cert, message, dss).map(|()| HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Verifier::schemes()
    }
}

/// Which handshake secured a connection (`shp peers --json`'s `security`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// libp2p's TLS 1.3 over TCP, or QUIC (whose handshake is TLS 1.3).
    Tls,
    Noise,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::Noise => "noise",
        }
    }
}

/// What the upgrade learnt, per peer, for the host to pick up when the connection is established.
/// Entries are taken out by the host; at most [`SEEN_MAX`] wait (upgrades whose connection was
/// then refused leave theirs behind).
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<HashMap<PeerId, Security>>>);

const SEEN_MAX: usize = 1024;

impl Seen {
    fn put(&self, peer: PeerId, s: Security) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= SEEN_MAX {
            m.clear();
        }
        m.insert(peer, s);
    }

    /// The handshake of `peer`'s newest connection over TCP, once.
    pub fn take(&self, peer: &PeerId) -> Option<Security> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(peer)
    }
}

/// The security upgrade of a TCP connection: TLS ([`Tls`]) or noise, whichever the two sides share,
/// TLS preferred.
#[derive(Clone)]
pub struct Secure {
    tls: Tls,
    noise: noise::Config,
    seen: Seen,
}

impl Secure {
    pub fn new(identity: &Keypair, seen: Seen) -> Result<Self, super::Error> {
        let noise = noise::Config::new(identity).map_err(|e| super::Error::Start(format!("noise: {e}")))?;
        Ok(Secure {
            tls: Tls::new(identity)?,
            noise,
            seen,
        })
    }
}

/// Why securing a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("tls: {0}")]
    Tls(io::Error),
    #[error("noise: {0}")]
    Noise(noise::Error),
}

/// A secured connection: TLS or noise.
pub type Secured<C> = Either<futures_rustls::TlsStream<C>, noise::Output<C>>;

impl UpgradeInfo for Secure {
    type Info = &'static str;
    type InfoIter = std::array::IntoIter<&'static str, 2>;

    fn protocol_info(&self) -> Self::InfoIter {
        [PROTOCOL, "/noise"].into_iter()
    }
}

/// Finishes the handshake multistream chose and notes which one it was.
fn settle<C, T, N>(seen: Seen, chosen: Either<T, N>) -> BoxFuture<'static, Result<(PeerId, Secured<C>), SecureError>>
where
    C: Send + 'static,
    T: std::future::Future<Output = io::Result<(PeerId, futures_rustls::TlsStream<C>)>> + Send + 'static,
    N: std::future::Future<Output = Result<(PeerId, noise::Output<C>), noise::Error>> + Send + 'static,
{
    async move {
        let (peer, stream, how) = match chosen {
            Either::Left(tls) => {
                let (p, s) = tls.await.map_err(SecureError::Tls)?;
                (p, Either::Left(s), Security::Tls)
            }
            Either::Right(noise) => {
                let (p, s) = noise.await.map_err(SecureError::Noise)?;
                (p, Either::Right(s), Security::Noise)
            }
        };
        seen.put(peer, how);
        Ok((peer, stream))
    }
    .boxed()
}

impl<C> InboundConnectionUpgrade<C> for Secure
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Secured<C>);
    type Error = SecureError;
    type Future = BoxFuture<'static, Result<Self::Output, SecureError>>;

    fn upgrade_inbound(self, socket: C, info: &'static str) -> Self::Future {
        let chosen = if info == PROTOCOL {
            Either::Left(self.tls.accept(socket))
        } else {
            Either::Right(self.noise.upgrade_inbound(socket, info))
        };
        settle(self.seen, chosen)
    }
}

impl<C> OutboundConnectionUpgrade<C> for Secure
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Secured<C>);
    type Error = SecureError;
    type Future = BoxFuture<'static, Result<Self::Output, SecureError>>;

    fn upgrade_outbound(self, socket: C, info: &'static str) -> Self::Future {
        let chosen = if info == PROTOCOL {
            Either::Left(self.tls.connect(socket))
        } else {
            Either::Right(self.noise.upgrade_outbound(socket, info))
        };
        settle(self.seen, chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};
    use libp2p::tcp::tokio::TcpStream;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        (TcpStream(a.unwrap()), TcpStream(b.unwrap().0))
    }

    #[tokio::test]
    async fn a_handshake_proves_both_peer_ids_and_prefers_aes_where_the_cpu_has_it() {
        let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (a, b) = pair().await;
        let (ta, tb) = (Tls::new(&ka).unwrap(), Tls::new(&kb).unwrap());
        let (client, server) = tokio::join!(ta.connect(a), tb.accept(b));
        let ((seen_by_a, mut sa), (seen_by_b, mut sb)) = (client.unwrap(), server.unwrap());
        assert_eq!(seen_by_a, kb.public().to_peer_id());
        assert_eq!(seen_by_b, ka.public().to_peer_id());
        let suite = sa.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        let expected = if aes_in_hardware() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        } else {
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        };
        assert_eq!(suite, expected);
        // Bytes go through both ways, in more than one record.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (w, r) = tokio::join!(
            async {
                sa.write_all(&data).await.unwrap();
                sa.close().await.unwrap();
            },
            async {
                let mut got = Vec::new();
                sb.read_to_end(&mut got).await.unwrap();
                got
            }
        );
        let () = w;
        assert_eq!(r, data);
    }

    #[test]
    fn a_chain_is_one_libp2p_certificate() {
        let k = Keypair::generate_ed25519();
        let (cert, _) = libp2p::tls::certificate::generate(&k).unwrap();
        assert_eq!(
            peer_of_certificates(std::slice::from_ref(&cert)).unwrap(),
            k.public().to_peer_id()
        );
        let two = peer_of_certificates(&[cert.clone(), cert.clone()])
            .unwrap_err()
            .to_string();
        assert!(
            two.contains("exactly one certificate") && two.contains("presented 2"),
            "{two}"
        );
        assert!(peer_of_certificates(&[])
            .unwrap_err()
            .to_string()
            .contains("presented 0"));
        // A certificate whose extension is damaged (one byte of its signature flipped) is refused.
        let mut bad = cert.to_vec();
        let at = bad.len() - 120;
        bad[at] ^= 0x40;
        assert!(peer_of_certificates(&[CertificateDer::from(bad)]).is_err());
        // Not a certificate at all.
        assert!(peer_of_certificates(&[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])]).is_err());
    }
}
