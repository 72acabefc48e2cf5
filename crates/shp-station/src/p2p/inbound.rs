//! Inbound bitswap streams, every one of them.
//!
//! go-bitswap (Kubo) answers each message on a stream of its own, so a peer serving a deep window
//! opens streams in bursts. libp2p-stream's `accept` hands streams over through a channel of one
//! slot and drops what does not fit, which lost whole bursts of blocks. This behaviour accepts the
//! bitswap protocol itself and queues every negotiated stream for the engine (outbound streams still
//! go through libp2p-stream's `Control`). The swarm bounds what can pile up: streams being
//! negotiated per connection, and yamux's streams per connection.

use libp2p::core::upgrade::ReadyUpgrade;
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

/// The behaviour: one [`Handler`] per connection, all feeding one queue.
pub struct Inbound {
    protocol: StreamProtocol,
    queue: mpsc::UnboundedSender<(PeerId, Stream)>,
}

impl Inbound {
    /// A behaviour accepting `protocol`, and the receiving end of its queue.
    pub fn new(protocol: StreamProtocol) -> (Inbound, mpsc::UnboundedReceiver<(PeerId, Stream)>) {
        let (queue, rx) = mpsc::unbounded_channel();
        (Inbound { protocol, queue }, rx)
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            protocol: self.protocol.clone(),
            queue: self.queue.clone(),
        }
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

/// Accepts the protocol on one connection.
pub struct Handler {
    peer: PeerId,
    protocol: StreamProtocol,
    queue: mpsc::UnboundedSender<(PeerId, Stream)>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(self.protocol.clone()), ())
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
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol: stream, .. }) = event {
            let _ = self.queue.send((self.peer, stream));
        }
    }
}
