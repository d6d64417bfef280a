//! Refusal messages and the per-role access decisions, in one place so that
//! the masking issue can change what a role may do without touching the
//! analysis.
//!
//! Every message names the rule (`schema.table.column`, file:line) and says
//! what *is* supported; none ever contains a value from the statement.

use crate::rules::model::{Access, ColumnRule, EncryptMode, RuleSet, TableName};

use super::lex::{fold_into, Lexer};
use super::{ColumnAction, Refusal};

pub use crate::error::sqlstate::{
    BAD_COPY_FILE_FORMAT, FEATURE_NOT_SUPPORTED, INSUFFICIENT_PRIVILEGE, INVALID_PARAMETER_VALUE,
    OBJECT_NOT_IN_PREREQUISITE_STATE, SYNTAX_ERROR, SYSTEM_ERROR,
};

fn loc(rule: &ColumnRule) -> String {
    if rule.source.file.is_empty() {
        rule.qualified()
    } else {
        format!(
            "{} (rule {}:{})",
            rule.qualified(),
            rule.source.file,
            rule.source.line
        )
    }
}

fn mode(rule: &ColumnRule) -> &'static str {
    match rule.encrypt {
        Some(EncryptMode::Deterministic) => "deterministically encrypted",
        Some(EncryptMode::Randomized) => "encrypted (randomized)",
        None => "protected",
    }
}

pub const SUPPORTED: &str = "On an encrypted column pgveil supports: selecting the column itself, \
    = / <> / IN / NOT IN against literals or parameters and IS [NOT] NULL (deterministic columns only, \
    except IS NULL), joins between two columns under the same rule, and writes of literals, parameters, \
    NULL and DEFAULT.";

/// Whether the column is something the analysis must track: encrypted at
/// rest, or not readable in plaintext by this session.
pub use crate::policy::{access, sensitive};

/// A column in the output the client receives, as a plain reference with a
/// verified origin: the action the session applies, or a refusal.
///
/// Encrypted columns are decrypted and then served as the role's access says
/// (the session masks or nulls them by RowDescription origin). A
/// plaintext-at-rest column reaches this point with its origin intact only
/// when nothing replaced it by its masked form (the target of an
/// UPDATE/DELETE/INSERT in RETURNING, or a `deny` column of a masked derived
/// table): the session does not touch such values, so anything but
/// `plaintext` is refused.
pub fn check_output(rule: &ColumnRule, roles: &[String]) -> Result<ColumnAction, Refusal> {
    match (access(rule, roles), rule.encrypt.is_some()) {
        (Access::Plaintext, _) => Ok(ColumnAction::Plaintext),
        (Access::Mask(_), true) => Ok(ColumnAction::Masked),
        (Access::Null, true) => Ok(ColumnAction::Null),
        _ => Err(denied(rule, "read")),
    }
}

/// A column used to filter or join by equality. Deterministic encrypted
/// columns: roles with plaintext or a mask may search them. That is an
/// equality oracle (a masked role can confirm a guessed value, or learn which
/// rows share one); it is accepted because the mask already identifies the
/// row to that role and applications need lookups by email or SSN. Roles with
/// `null` or `deny` may not. Plaintext-at-rest columns that are not readable
/// in plaintext never reach a comparison unmasked (the derived table replaces
/// them), except on a write target, where any predicate would be an oracle
/// over the raw value: refused.
pub fn check_predicate(rule: &ColumnRule, roles: &[String]) -> Result<(), Refusal> {
    match (access(rule, roles), rule.encrypt.is_some()) {
        (Access::Plaintext, _) | (Access::Mask(_), true) => Ok(()),
        _ => Err(denied(rule, "search or compare")),
    }
}

/// Any other use of a sensitive column: `deny` columns and unmasked
/// plaintext-at-rest columns are a permission matter (42501); computing on
/// ciphertext is a feature matter (0A000).
pub fn misuse(rule: &ColumnRule, roles: &[String], construct: &str) -> Refusal {
    match access(rule, roles) {
        Access::Deny => denied(rule, "use"),
        Access::Plaintext => unsupported(rule, construct),
        _ if rule.encrypt.is_none() => denied(rule, "use"),
        _ => unsupported(rule, construct),
    }
}

pub fn denied(rule: &ColumnRule, what: &str) -> Refusal {
    Refusal {
        sqlstate: INSUFFICIENT_PRIVILEGE,
        message: format!("pgveil: permission denied to {what} column {}", loc(rule)),
        hint: Some("The rules give this session's roles no plaintext access to it; leave it out of the statement.".into()),
    }
}

pub fn unsupported(rule: &ColumnRule, construct: &str) -> Refusal {
    let hint = if rule.encrypt.is_some() {
        SUPPORTED.to_string()
    } else {
        "This session may only read this column as it is served to it (plain reference in the select list).".to_string()
    };
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: {construct} cannot be applied to {} column {}; the statement was not sent",
            mode(rule),
            loc(rule)
        ),
        hint: Some(hint),
    }
}

pub fn randomized_equality(rule: &ColumnRule) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: column {} is encrypted with randomized encryption, which allows no equality search; \
             the statement was not sent",
            loc(rule)
        ),
        hint: Some("Only IS [NOT] NULL works on randomized columns; use encrypt = \"deterministic\" for equality search.".into()),
    }
}

pub fn join_mismatch(rule: &ColumnRule, other: Option<&ColumnRule>) -> Refusal {
    let other = match other {
        Some(o) => format!("column {}", loc(o)),
        None => "a column or expression that is not encrypted under the same rule".to_string(),
    };
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: cannot compare {} column {} with {other}: ciphertexts are bound to their own table and column key; \
             the statement was not sent",
            mode(rule),
            loc(rule)
        ),
        hint: Some("Equality between encrypted columns works only for the same table column (e.g. a self-join); compare against literals or parameters instead.".into()),
    }
}

pub fn write_unsupported(rule: &ColumnRule, what: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: cannot write {what} into encrypted column {}: pgveil can only encrypt literals and parameters; \
             nothing was written",
            loc(rule)
        ),
        hint: Some("Write a literal, a parameter, NULL or DEFAULT (or copy the same column of the same table).".into()),
    }
}

pub fn copy_elsewhere(rule: &ColumnRule, target: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: statement would copy {} column {} into {target}, where pgveil can no longer protect or decrypt it; \
             the statement was not sent",
            mode(rule),
            loc(rule)
        ),
        hint: Some("Read the column through pgveil and write the values back as literals or parameters.".into()),
    }
}

pub fn whole_row(table: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: whole-row references to table {table}, which has protected columns, are not supported \
             (e.g. row_to_json(t), t.* inside a function, SELECT t FROM t); the statement was not sent"
        ),
        hint: Some("List the columns you need, or use SELECT * / t.* directly in the select list.".into()),
    }
}

pub fn unsupported_statement(what: &str, table: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!("pgveil: {what} is not supported on table {table}, which has tagged columns; the statement was not sent"),
        hint: None,
    }
}

/// A DO block whose body names a tagged table (or that pgveil cannot read):
/// its code could write plaintext into an encrypted column.
pub fn do_block_tagged(table: Option<&str>) -> Refusal {
    let what = match table {
        Some(t) => format!("a DO block naming tagged table {t}"),
        None => "a DO block pgveil cannot read".to_string(),
    };
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: {what} is not sent: pgveil cannot encrypt what the block's code writes"
        ),
        hint: Some("Write through ordinary statements, or run maintenance code against PostgreSQL directly.".into()),
    }
}

/// Equality between two stored ciphertexts while several key versions are
/// live would miss rows written under different keys.
pub fn rotation_in_progress(rule: &ColumnRule, what: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: {what} on {} (rule {}:{}) is not exact while a key rotation is in progress; the statement was not sent",
            rule.qualified(),
            rule.source.file,
            rule.source.line
        ),
        hint: Some(
            "Equality against literals and parameters still matches every key version. \
             Finish the rotation (re-encrypt under the active key, then retire the old key) to join again."
                .into(),
        ),
    }
}

pub fn needs_schema(table: &str, what: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: {what} on table {table} needs its column list, which is unknown without the live schema; \
             the statement was not sent"
        ),
        hint: Some(
            "With pgveil explain, add --upstream URL so the live schema is read; in a session this means              the catalog could not be read."
                .into(),
        ),
    }
}

/// The catalog no longer matches the rules (a tagged table or column was
/// renamed, moved or dropped outside pgveil): restricted sessions wait for
/// the DBA to update the rules.
pub fn rules_out_of_sync(d: crate::policy::Drift) -> Refusal {
    let r = d.rule();
    let what = match d {
        crate::policy::Drift::TableMissing(_) => format!(
            "the rules name table {}, which the database does not have under that name",
            r.table
        ),
        crate::policy::Drift::ColumnMissing(_) => format!(
            "the rules name column {}, which table {} does not have",
            r.qualified(),
            r.table
        ),
    };
    Refusal {
        sqlstate: OBJECT_NOT_IN_PREREQUISITE_STATE,
        message: format!(
            "pgveil: {what} (renamed, moved to another schema or dropped?; rule {}:{}); \
             the statement was not sent",
            r.source.file, r.source.line
        ),
        hint: Some(
            "Update the rule files to the new names (pgveil check --upstream shows the drift); \
             restricted sessions are refused until then."
                .into(),
        ),
    }
}

/// A relation the analysis cannot name (a `TABLE` command whose name does
/// not read back as one): it could be any table, so nothing is sent.
pub fn unreadable_relation() -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message:
            "pgveil cannot tell which relation this TABLE command reads; the statement was not sent"
                .into(),
        hint: Some("Write SELECT * FROM name instead.".into()),
    }
}

pub fn unparsable(table: &str) -> Refusal {
    Refusal {
        sqlstate: SYNTAX_ERROR,
        message: format!("pgveil cannot analyse this statement, which touches tagged table {table}; it was not sent"),
        hint: Some("Rewrite the statement in plainer SQL, or report it if it is valid PostgreSQL.".into()),
    }
}

/// `EXECUTE name arg` without parentheses is not PostgreSQL syntax; the
/// parser accepts it, so refusing keeps pgveil from forwarding a rewrite of
/// a statement the server would have read differently.
pub fn execute_without_parentheses(name: &str) -> Refusal {
    Refusal {
        sqlstate: SYNTAX_ERROR,
        message: format!(
            "pgveil: EXECUTE {name} needs its arguments in parentheses; the statement was not sent"
        ),
        hint: Some("Write EXECUTE name(arg, ...).".into()),
    }
}

pub fn mask_failed(table: &TableName, why: &str) -> Refusal {
    Refusal {
        sqlstate: INSUFFICIENT_PRIVILEGE,
        message: format!(
            "pgveil: table {table} must be served masked to this session, but its masked form cannot be built: {why}; \
             the statement was not sent"
        ),
        hint: None,
    }
}

pub fn no_pseudonym_key(rule: &ColumnRule) -> Refusal {
    Refusal {
        sqlstate: INSUFFICIENT_PRIVILEGE,
        message: format!(
            "pgveil: column {} is served with the hash mask, but no pseudonym key is available; \
             the statement was not sent",
            loc(rule)
        ),
        hint: Some(
            "Configure the keyring (pgveil keygen) so pseudonym keys can be derived.".into(),
        ),
    }
}

pub fn unparsable_restricted() -> Refusal {
    Refusal {
        sqlstate: SYNTAX_ERROR,
        message:
            "pgveil cannot analyse this statement, and this session's roles have restricted access \
                  to tagged columns, so it was not sent"
                .to_string(),
        hint: Some(
            "Rewrite the statement in plainer SQL, or report it if it is valid PostgreSQL.".into(),
        ),
    }
}

pub fn encrypt_failed(rule: &ColumnRule, why: &str) -> Refusal {
    Refusal {
        sqlstate: INVALID_PARAMETER_VALUE,
        message: format!(
            "pgveil: a value for column {} could not be prepared for encryption: {why}",
            loc(rule)
        ),
        hint: None,
    }
}

pub fn param_conflict(n: usize) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!(
            "pgveil: parameter ${n} is used both for an encrypted column and elsewhere (or for two different rules); \
             the statement was not sent"
        ),
        hint: Some("Use a separate parameter for each use.".into()),
    }
}

/// The first tagged table the text names (same lexer as the pre-filter), for
/// the message of a statement that does not parse.
pub fn first_tagged_name(rules: &RuleSet, sql: &str) -> Option<String> {
    let mut buf = String::new();
    let mut lx = Lexer::new(sql);
    for tok in lx.by_ref() {
        if fold_into(&tok, &mut buf) {
            if let Some(t) = rules.tables().find(|t| t.name == buf) {
                return Some(t.to_string());
            }
        }
    }
    if lx.suspicious {
        return Some("(a name pgveil cannot decode)".to_string());
    }
    None
}

/// The audit stream cannot be written: statements it would have to record
/// are refused until it recovers.
pub fn audit_unavailable() -> Refusal {
    Refusal {
        sqlstate: SYSTEM_ERROR,
        message: "pgveil cannot write its audit stream, so statements on tagged tables are refused until it recovers".into(),
        hint: Some("the operator should check the audit directory (disk space, permissions); service resumes by itself".into()),
    }
}

/// The session has no catalog to judge statements by: it could not be
/// read (or re-read after a change), so pgveil does not know the session's
/// roles and refuses rather than guess.
pub fn no_catalog() -> Refusal {
    Refusal {
        sqlstate: OBJECT_NOT_IN_PREREQUISITE_STATE,
        message: "pgveil could not read this session's roles and schema from the database, so it cannot judge statements; only transaction control is accepted until it can".into(),
        hint: Some("retry; if it persists, the operator should check pgveil's log (the catalog read failed or timed out)".into()),
    }
}

/// LISTEN by a restricted session: notification payloads carry whatever
/// another session (or a trigger) put in them.
pub fn listen_restricted() -> Refusal {
    Refusal {
        sqlstate: INSUFFICIENT_PRIVILEGE,
        message: "pgveil: LISTEN is not allowed for roles with restricted access to tagged columns (notification payloads can carry row values)".into(),
        hint: Some("consume notifications with a role that reads the tagged columns in plaintext".into()),
    }
}

/// The FunctionCall message bypasses SQL: nothing to analyse.
pub fn function_call_restricted() -> Refusal {
    Refusal {
        sqlstate: INSUFFICIENT_PRIVILEGE,
        message: "pgveil: the FunctionCall protocol message is not allowed for roles with restricted access to tagged columns".into(),
        hint: Some("call the function from a SQL statement instead".into()),
    }
}

/// A Parse whose text holds several statements on tagged tables.
pub fn one_statement_per_parse() -> Refusal {
    Refusal {
        sqlstate: SYNTAX_ERROR,
        message: "a prepared statement must hold exactly one SQL statement".into(),
        hint: None,
    }
}

/// A statement prepared under older rules whose plan no longer holds.
pub fn rules_changed_since_prepare() -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: "pgveil rules changed since this statement was prepared; prepare it again".into(),
        hint: Some("drivers re-prepare after DEALLOCATE or a new connection".into()),
    }
}

/// A COPY whose options pgveil cannot transform.
pub fn copy_unsupported(why: &str) -> Refusal {
    Refusal {
        sqlstate: FEATURE_NOT_SUPPORTED,
        message: format!("pgveil cannot process this COPY: {why}"),
        hint: None,
    }
}

/// COPY data pgveil could not transform (the rest of the COPY is refused).
pub fn copy_data_failed(why: &str) -> Refusal {
    Refusal {
        sqlstate: BAD_COPY_FILE_FORMAT,
        message: format!("pgveil could not process COPY data: {why}"),
        hint: None,
    }
}
