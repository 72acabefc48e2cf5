//! Inbound bitswap streams, every one of them.
//!
//! go-bitswap (Kubo) answers each message on a stream of its own, so a peer serving a deep window
//! opens streams in bursts. libp2p-stream's `accept` hands streams over through a channel of one
//! slot and drops what does not fit, which lost whole bursts of blocks. This behaviour accepts the
//! bitswap protocol itself and queues every negotiated stream for the engine (outbound streams still
//! go through libp2p-stream's `Control`). The swarm bounds what can pile up: streams being
//! negotiated per connection, and yamux's streams per connection. It accepts several protocols (plain
//! bitswap and shp's sealed variant) and tells the engine which one each stream speaks.

use libp2p::core::upgrade::{InboundUpgrade, ReadyUpgrade, UpgradeInfo};
use libp2p::core::{transport::PortUse, Endpoint};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour,
    SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A stream from a peer, and the protocol it negotiated.
pub type Accepted = (PeerId, Stream, StreamProtocol);

/// The behaviour: one [`Handler`] per connection, all feeding one queue.
pub struct Inbound {
    protocols: Protocols,
    queue: mpsc::UnboundedSender<Accepted>,
}

impl Inbound {
    /// A behaviour accepting `protocols` (the dialer picks one), and the receiving end of its queue.
    pub fn new(protocols: &[StreamProtocol]) -> (Inbound, mpsc::UnboundedReceiver<Accepted>) {
        let (queue, rx) = mpsc::unbounded_channel();
        (
            Inbound {
                protocols: Protocols(protocols.to_vec()),
                queue,
            },
            rx,
        )
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            protocols: self.protocols.clone(),
            queue: self.queue.clone(),
        }
    }
}

/// The protocols a handler offers; an accepted stream comes out with the one negotiated.
#[derive(Clone)]
pub struct Protocols(Vec<StreamProtocol>);

impl UpgradeInfo for Protocols {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Protocols {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, info: StreamProtocol) -> Self::Future {
        std::future::ready(Ok((stream, info)))
    }
}

impl NetworkBehaviour for Inbound {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Accepts the protocols on one connection.
pub struct Handler {
    peer: PeerId,
    protocols: Protocols,
    queue: mpsc::UnboundedSender<Accepted>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Protocols;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(self.protocols.clone(), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, proto),
            ..
        }) = event
        {
            let _ = self.queue.send((self.peer, stream, proto));
        }
    }
}
