//! The shp station: serves a home as an OCI Distribution registry (`/v2/`) and an IPFS trustless
//! gateway (`/ipfs/`) on one port, and pulls DAGs from other stations and gateways over
//! pluggable transports.
//!
//! Modules (one job each; data flows from the HTTP edge into `shp_core::Home` and back):
//! - `server`    — `shp start`: config, listener, routing, logging, graceful shutdown.
//! - `registry`  — the OCI Distribution Spec 1.1 endpoints.
//! - `auth`      — push (and optionally pull) authentication.
//! - `drain`     — reads what a handler left of a request body, so clients see early errors.
//! - `gateway`   — the trustless gateway (`/ipfs/<cid>`, raw blocks and CARs, UnixFS paths).
//! - `transport` — the `Transport` trait, its HTTP implementation, and the multi-peer fetcher.
//! - `remote`    — a client for remote registries (`docker://HOST/REPO:TAG`).
//! - `mirror`    — pull-through: the registry fetches what it lacks from upstream registries.
//! - `p2p`       — the libp2p host: bitswap client and server, private networks, mDNS.
//! - `control`   — the control socket the CLI steers a running station through.
//! - `views`     — UnixFS views of every image the station holds, built in the background.
#![forbid(unsafe_code)]
// `registry::ApiError` (status, code, message, detail) is built once per failed request and turned
// into a response at once: its size is not worth boxing on every error path.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod control;
pub mod drain;
pub mod gateway;
pub mod mirror;
pub mod p2p;
pub mod registry;
pub mod remote;
pub mod server;
pub mod transport;
pub mod views;
