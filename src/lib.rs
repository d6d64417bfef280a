//! pgveil: a transparent encrypting, masking and auditing proxy for
//! PostgreSQL.
//!
//! Map of the crate, lowest layer first (a module only imports modules
//! above it in this list; see `docs/` and the design guide for the why):
//! - [`error`]: every SQLSTATE pgveil sends and how an error becomes an ErrorResponse.
//! - [`protocol`]: wire framing and every message codec; pure, no I/O.
//! - [`ident`]: identifiers as PostgreSQL reads them (`TableName`).
//! - [`values`]: text and binary forms of the logical types, canonicalised.
//! - [`rules`]: the DBA's rule files, parsed and validated, and `check`.
//! - [`schema`]: the upstream catalog snapshot used to verify origins.
//! - [`policy`]: pure decisions: role resolution, per-column access, restriction.
//! - [`crypto`]: keyring files, key derivation, AES-GCM-SIV column ciphers.
//! - [`mask`]: the masks, applied in the proxy and rendered as SQL.
//! - [`copy`]: COPY text/CSV row decoding and re-encoding.
//! - [`sql`]: analysis and rewrite of statements; the refusal catalogue.
//! - [`snapshot`]: the live rules + keys + name matcher, swapped on reload.
//! - [`metrics`]: every Prometheus metric and the HTTP endpoint.
//! - [`audit`]: the append-only, hash-chained audit stream, verify and search.
//! - [`config`]: the proxy's configuration file and flags.
//! - [`net`]: plain/TLS streams, rustls acceptor and connector; libpq-style connection parameters.
//! - [`admin`]: the admin console (`psql -d pgveil`): session registry, commands, views.
//! - [`session`]: one task per client: startup, auth relay, the two relay loops.
//! - [`subject`]: data subjects (issue 15): tokens, and the tables `pgveil install` creates.
//! - [`migrate`]: `pgveil encrypt`: online backfill, swap, rekey and rename of existing data.
//! - [`server`]: listener, workers, connection limit, graceful shutdown.
//! - [`pgtemp`]: throwaway PostgreSQL clusters for tests, benches and the demo.
//! - [`demo`]: `pgveil demo`, the guided tour.
//! - [`cli`]: the subcommands (`serve`, `check`, `explain`, `keygen`, `install`, `audit`, …).

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod demo;
pub mod error;
pub mod ident;
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
pub mod snapshot;
pub mod sql;
pub mod subject;
pub mod values;
