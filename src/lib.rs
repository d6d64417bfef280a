//! pgveil: a transparent encrypting, masking and auditing proxy for
//! PostgreSQL.
//!
//! Map of the crate (see `docs/` and the design guide for the why):
//! - [`protocol`]: framing and the messages we act on; pure, no I/O.
//! - [`net`]: plain/TLS streams, rustls acceptor and connector.
//! - [`session`]: one task per client; startup, auth relay, relay loops.
//! - [`server`]: listener, workers, connection limit, graceful shutdown.
//! - [`config`]: the proxy's configuration file and flags.
//! - [`rules`]: the DBA's rule files, parsed and validated.
//! - [`schema`]: the upstream catalog snapshot used to verify origins.
//! - [`metrics`]: every Prometheus metric and the HTTP endpoint.

pub mod audit;
pub mod cli;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod demo;
pub mod mask;
pub mod metrics;
pub mod migrate;
pub mod net;
pub mod pgtemp;
pub mod policy;
pub mod protocol;
pub mod rules;
pub mod schema;
pub mod server;
pub mod session;
pub mod sql;
pub mod values;
