//! The admin console, after pgbouncer's convention: a client that connects
//! to the proxy port with database `pgveil`, as a login role listed in
//! `admin_roles`, authenticates against PostgreSQL as usual and then talks
//! to pgveil itself. Nothing it says is forwarded upstream.
//!
//! Layout (each file imports only files listed before it):
//! - `registry`: live sessions, each updating its own slot's atomics.
//! - `commands`: the console's statements, parsed.
//! - `views`: one table per `SHOW`, built from the registry, the policy in
//!   force, the audit handle and the configuration.
//!
//! This module does no I/O: the session layer owns the sockets and calls
//! [`execute`] per Query (see `session::admin`). What the console reveals
//! is operational only: key ids and dates, never key material; rule
//! structure, never values; and every command is audited by the caller.

pub mod commands;
pub mod registry;
pub mod views;

use bytes::BytesMut;
use thiserror::Error;

use crate::error::{put_error_response, sqlstate, ClientError, Severity};
use crate::protocol::results::{put_command_complete, put_empty_query, put_text_table};

pub use commands::Command;
pub use registry::{ClientIdentity, ClientSlot, ClientState, Registration, Registry};

pub use crate::config::CONSOLE_DATABASE;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(
        "pgveil: permission denied for the admin console (the login role is not in admin_roles)"
    )]
    NotAdmin,
    #[error("pgveil admin console: unknown command; the console answers SHOW CLIENTS, SHOW STATS, SHOW RULES, SHOW KEYS, SHOW AUDIT, SHOW CONFIG, SHOW VERSION, SHOW HELP and RELOAD")]
    UnknownCommand,
    #[error("pgveil: rules reload rejected; the previous rules stay in force: {0}")]
    ReloadRejected(String),
    #[error("the pgveil admin console speaks only the simple query protocol")]
    ExtendedProtocol,
}

impl ClientError for AdminError {
    fn sqlstate(&self) -> &'static str {
        match self {
            AdminError::NotAdmin => sqlstate::INSUFFICIENT_PRIVILEGE,
            AdminError::UnknownCommand => sqlstate::SYNTAX_ERROR,
            AdminError::ReloadRejected(_) => sqlstate::CONFIG_FILE_ERROR,
            AdminError::ExtendedProtocol => sqlstate::FEATURE_NOT_SUPPORTED,
        }
    }

    /// Refusing the login or the protocol ends the session; a bad command
    /// or a rejected reload is one statement's error.
    fn severity(&self) -> Severity {
        match self {
            AdminError::NotAdmin | AdminError::ExtendedProtocol => Severity::Fatal,
            AdminError::UnknownCommand | AdminError::ReloadRejected(_) => Severity::Error,
        }
    }
}

/// What one console command produced: the messages for the client (up to,
/// not including, ReadyForQuery) and what the audit record says.
#[derive(Debug)]
pub struct Reply {
    pub out: BytesMut,
    /// The command as audited: its canonical name, never free text.
    pub command: &'static str,
    /// `ok` or the SQLSTATE sent.
    pub outcome: &'static str,
    pub rows: u64,
}

/// Runs one console Query.
pub fn execute(sql: &str, env: &views::ConsoleEnv<'_>) -> Reply {
    let mut out = BytesMut::new();
    let cmd = Command::parse(sql);
    let result = match cmd {
        Some(Command::Empty) => {
            put_empty_query(&mut out);
            Ok(0)
        }
        Some(Command::Reload) => match env.policy.reload() {
            Ok(()) => {
                put_command_complete(&mut out, "RELOAD");
                Ok(0)
            }
            Err(e) => Err(AdminError::ReloadRejected(e.to_string())),
        },
        Some(c) => {
            let t = views::table(c, env);
            put_text_table(&mut out, &t);
            Ok(t.rows.len() as u64)
        }
        None => Err(AdminError::UnknownCommand),
    };
    let command = cmd.map_or("unknown", Command::name);
    match result {
        Ok(rows) => Reply {
            out,
            command,
            outcome: crate::audit::OUTCOME_OK,
            rows,
        },
        Err(e) => {
            put_error_response(&mut out, &e);
            Reply {
                out,
                command,
                outcome: e.sqlstate(),
                rows: 0,
            }
        }
    }
}
