//! Issue 5 proof: the audit stream through the real proxy and a real PostgreSQL.
//!
//! - every statement shape (simple, multi-statement, pipelined extended, COPY in/out,
//!   refused, failed) gives exactly the expected records, plus auth and reload records;
//! - no record anywhere in the audit directory holds a literal or parameter value;
//! - `pgveil audit verify` catches edits, deletions, swaps, truncation and a dropped
//!   segment of a real multi-segment directory and names where; `audit search` filters;
//! - with the audit directory out of space, statements on tagged tables are refused
//!   (58030), none is served without a record, and service resumes by itself.

mod common;

#[path = "audit/attribution.rs"]
mod attribution;
#[path = "audit/completeness.rs"]
mod completeness;
#[path = "audit/fault.rs"]
mod fault;
#[path = "audit/records.rs"]
mod records;
#[path = "audit/support.rs"]
mod support;
#[path = "audit/tamper.rs"]
mod tamper;
#[path = "audit/unsettled.rs"]
mod unsettled;
