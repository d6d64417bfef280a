//! How a refused message is kept in step with the server.
//!
//! pgveil never just drops a refused client message: the server's state
//! (aborted transaction, skip-until-Sync in the extended protocol) must end
//! up exactly as if the statement had failed there. So the refused message
//! is replaced by a stand-in the server rejects by itself, and the backend
//! swaps the server's error for pgveil's refusal.

use bytes::BytesMut;

use crate::error::error_response;
use crate::metrics::metrics;
use crate::protocol::messages::{encode_parse, put_query};
use crate::protocol::rows::{put_bind_no_params, put_execute};
use crate::protocol::ProtocolError;
use crate::sql::Refusal;

/// SQL that fails at parse time, whatever the schema or transaction state.
pub const REFUSED_SQL: &str = "pgveil refused this statement";

/// A statement name no client can have prepared here (it holds a control
/// character), so a Bind to it always fails.
const REFUSED_STATEMENT: &str = "pgveil refused bind \u{1}";

/// Counts and logs a refusal (never the statement text).
pub fn note(r: &Refusal) {
    metrics().refused.with_label_values(&[r.sqlstate]).inc();
    tracing::info!(sqlstate = r.sqlstate, reason = %r.message, "statement refused");
}

/// The Query the server receives instead of a refused one.
pub fn query_stand_in(r: &Refusal) -> BytesMut {
    note(r);
    let mut out = BytesMut::new();
    put_query(&mut out, REFUSED_SQL);
    out
}

/// The Parse the server receives instead of a refused one (same statement
/// name, so a later Bind to it fails as it would have).
pub fn parse_stand_in(r: &Refusal, name: Option<String>) -> Result<BytesMut, ProtocolError> {
    note(r);
    let p = pgwire::messages::extendedquery::Parse::new(name, REFUSED_SQL.into(), vec![]);
    let mut out = BytesMut::new();
    encode_parse(&p, &mut out)?;
    Ok(out)
}

/// The Bind the server receives instead of a refused one.
pub fn bind_stand_in(r: &Refusal) -> BytesMut {
    metrics().refused.with_label_values(&[r.sqlstate]).inc();
    let mut out = BytesMut::new();
    put_bind_no_params(&mut out, "", REFUSED_STATEMENT);
    out
}

/// A portal name no client can have bound here.
const REFUSED_PORTAL: &str = "pgveil refused execute \u{1}";

/// The Execute the server receives instead of a refused one.
pub fn execute_stand_in(r: &Refusal) -> BytesMut {
    note(r);
    let mut out = BytesMut::new();
    put_execute(&mut out, REFUSED_PORTAL, 0);
    out
}

/// The ErrorResponse the client gets for a refusal.
pub fn response(r: &Refusal) -> BytesMut {
    error_response(r)
}
