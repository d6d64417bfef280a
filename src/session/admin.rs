//! A console session (`psql -d pgveil`): authenticated against PostgreSQL
//! like any other, then answered by pgveil itself (see [`crate::admin`]).
//!
//! The client's startup is re-targeted at `admin_auth_database` so that
//! PostgreSQL checks the password (pgveil still never sees it), the upstream
//! connection is closed as soon as authentication succeeds, and only then is
//! the login role checked against `admin_roles`: a role that is not listed
//! learns nothing it could not learn from PostgreSQL itself.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::audit::{RecordCtx, SessionInfo};
use super::context::{SessionError, Shared};
use super::io::read_frame;
use super::startup::{authenticate, connect_upstream};
use crate::admin::views::ConsoleEnv;
use crate::admin::{AdminError, ClientIdentity, ClientSlot, ClientState};
use crate::audit::{AuditRecordInput, RecordKind, StatementKind};
use crate::error::error_response;
use crate::net::Stream;
use crate::protocol::messages::query_text;
use crate::protocol::rows::TERMINATE;
use crate::protocol::{encode_startup, put_ready_for_query, Direction, StartupPacket};

/// Serves one console connection to its end.
pub(super) async fn serve(
    mut client: Stream,
    packet: &StartupPacket,
    info: &SessionInfo,
    shared: &Shared,
) -> Result<(), SessionError> {
    let StartupPacket::Startup { params, .. } = packet else {
        return Err(SessionError::Refused("not a startup packet"));
    };
    // Only who the client is goes upstream: `replication`, `options` and
    // the like could select other pg_hba.conf lines or start other work.
    let db = &shared.config.admin_auth_database;
    let mut params: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "user" | "application_name"))
        .cloned()
        .collect();
    params.push(("database".to_string(), db.clone()));
    let (mut server, upstream) = match connect_upstream(shared).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(session = info.id, error = %e, "upstream connect failed");
            super::fatal_and_close(&mut client, &e).await;
            return Err(e);
        }
    };
    let raw = encode_startup(&params);
    let ex = match authenticate(
        &mut client,
        &mut server,
        &raw,
        BytesMut::new(),
        shared,
        false,
    )
    .await
    {
        Ok(ex) => ex,
        Err(e) => {
            if let SessionError::AuthFailed(code) = &e {
                super::auth_record(shared, info, &[], RecordKind::AuthFailed, code);
            }
            super::fatal_and_close(&mut client, &e).await;
            return Err(e);
        }
    };
    // PostgreSQL said who the client is; the console needs nothing more.
    let _ = server.write_all(TERMINATE).await;
    let _ = server.shutdown().await;
    drop(server);
    drop(upstream);
    if !shared.config.admin_roles.contains(&info.user) {
        let e = AdminError::NotAdmin;
        super::auth_record(shared, info, &[], RecordKind::AuthFailed, e_code(&e));
        let _ = client.write_all(&error_response(&e)).await;
        let _ = client.shutdown().await;
        return Ok(());
    }
    super::auth_record(shared, info, &[], RecordKind::AuthOk, "ok");
    let rules_version = shared.policy.load().rules.version.clone();
    let reg = shared
        .registry
        .register(ClientSlot::new(identity(info), &rules_version));
    client.write_all(&ex.ready).await?;
    client.flush().await?;
    console_loop(client, ex.cbuf, info, &reg.slot, shared).await
}

fn e_code(e: &AdminError) -> &'static str {
    crate::error::ClientError::sqlstate(e)
}

fn identity(info: &SessionInfo) -> ClientIdentity {
    ClientIdentity {
        id: info.id,
        peer: info.peer,
        user: info.user.clone(),
        database: info.database.clone(),
        application: info.application_name.clone(),
    }
}

/// Reads Query messages and answers each locally until the client leaves,
/// breaks the protocol, or pgveil drains.
async fn console_loop(
    mut client: Stream,
    mut cbuf: BytesMut,
    info: &SessionInfo,
    slot: &Arc<ClientSlot>,
    shared: &Shared,
) -> Result<(), SessionError> {
    let cap = shared.config.max_message_bytes;
    let mut draining = shared.draining.clone();
    let rec = RecordCtx {
        info: info.clone(),
        roles: Arc::new(Vec::new()),
    };
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut client, &mut cbuf, Direction::Frontend, cap) => f?,
            _ = draining.wait_for(|d| *d) => {
                super::fatal_and_close(&mut client, &SessionError::Shutdown).await;
                return Ok(());
            }
        };
        match frame[0] {
            b'Q' => {
                slot.set_state(ClientState::Active);
                let started = Instant::now();
                let sql = query_text(&frame)?;
                let env = ConsoleEnv {
                    registry: &shared.registry,
                    policy: &shared.policy,
                    audit: shared.audit.as_ref(),
                    config: &shared.config,
                };
                let reply = crate::admin::execute(sql, &env);
                audit_command(shared, &rec, &reply, started);
                let mut out = reply.out;
                put_ready_for_query(&mut out, b'I');
                client.write_all(&out).await?;
                client.flush().await?;
                let version = shared.policy.load().rules.version.clone();
                slot.ready(b'I', 1, false, &version);
            }
            b'X' => return Ok(()),
            _ => {
                let _ = client
                    .write_all(&error_response(&AdminError::ExtendedProtocol))
                    .await;
                let _ = client.shutdown().await;
                return Ok(());
            }
        }
    }
}

/// Every console command is an audit record: the canonical command name as
/// its fingerprint, never the text typed.
fn audit_command(shared: &Shared, rec: &RecordCtx, reply: &crate::admin::Reply, started: Instant) {
    let Some(a) = &shared.audit else { return };
    let mut r = AuditRecordInput::new(RecordKind::Statement, SystemTime::now());
    rec.fill(&mut r);
    r.statement_kind = Some(StatementKind::Other);
    r.fingerprint = Some(format!("pgveil admin: {}", reply.command));
    r.rows = reply.rows;
    r.duration_us = started.elapsed().as_micros() as u64;
    r.outcome = reply.outcome.to_string();
    r.rules_version = Some(shared.policy.load().rules.version.clone());
    r.detail = Some("admin console".into());
    if let Err(e) = a.record_nowait(r) {
        tracing::warn!(error = %e, command = reply.command, "admin console command not audited");
    }
}
