//! Value transforms on the wire: RowDescription and ParameterDescription
//! retyped to logical types, DataRow values decrypted (then masked or
//! nulled per role), Bind parameters encrypted.
//!
//! A value is decrypted only when its column's origin has been verified
//! (RowDescription table OID + attnum mapped through the catalog snapshot to
//! a rule), never because it looks like ciphertext.

use std::sync::Arc;

use bytes::BytesMut;
use pgwire::messages::data::RowDescription;
use thiserror::Error;

use crate::crypto::HashKey;
use crate::metrics::metrics;
use crate::protocol::messages::{
    decode_bind, decode_parameter_description, decode_row_description, encode_bind,
    encode_parameter_description, encode_row_description,
};
use crate::protocol::rows::{data_row_values, DataRowWriter};
use crate::protocol::ProtocolError;
use crate::rules::{Access, ColumnRule, LogicalType};
use crate::schema::SchemaSnapshot;
use crate::snapshot::Snapshot;
use crate::sql::{ParamPlan, ParamUse};

#[derive(Debug, Error)]
pub enum RowError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("a value in {0} does not decrypt under that column's keys (copied from another column, or written around pgveil); nothing was revealed")]
    Decrypt(String),
    #[error("a value in {0} cannot be converted: {1}")]
    Value(String, String),
    #[error("access to {0} is denied for this role by rule {1}")]
    Denied(String, String),
    /// The last field is the SQLSTATE: the input function's own for a value
    /// PostgreSQL would also refuse (see `values::ValueError`).
    #[error("parameter ${0} for {1}: {2}")]
    Param(usize, String, String, &'static str),
    #[error("a result column comes from a table or column pgveil does not know (changed since this session read the catalog); nothing was revealed, retry the statement")]
    UnknownOrigin,
}

impl crate::error::ClientError for RowError {
    fn sqlstate(&self) -> &'static str {
        use crate::error::sqlstate::*;
        match self {
            RowError::Protocol(_) => PROTOCOL_VIOLATION,
            RowError::Decrypt(_) => DATA_CORRUPTED,
            RowError::Value(..) => DATA_EXCEPTION,
            RowError::Denied(..) => INSUFFICIENT_PRIVILEGE,
            RowError::Param(.., code) => code,
            RowError::UnknownOrigin => OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }
}

/// What to do with one result column.
#[derive(Debug)]
pub struct ColPlan {
    pub rule: Arc<ColumnRule>,
    pub access: Access,
    /// Stored as ciphertext (decrypt first); else plaintext at rest, masked
    /// on the wire (output-only masking, see `sql::output_mask`).
    pub encrypted: bool,
    pub hash_key: Option<Arc<HashKey>>,
    /// Metric children resolved once per plan, not per value.
    decrypted: prometheus::IntCounter,
    acted: prometheus::IntCounter,
}

/// Per result column: `Some` for columns whose origin is an encrypted rule,
/// or a plaintext-at-rest rule the session may not read in plaintext.
#[derive(Debug, Default)]
pub struct RowPlan {
    pub cols: Vec<Option<ColPlan>>,
    /// Set when the result has a column whose origin pgveil must know but
    /// does not (a forwarded-as-written statement, see
    /// [`plan_row_description`]): every DataRow is refused.
    pub unknown_origin: bool,
    /// Rules version and catalog generation the access decisions were
    /// taken under.
    pub version: String,
    pub generation: u64,
}

impl RowPlan {
    /// What a plan judged under older rules or roles becomes: it refuses
    /// every row. Re-judging its entries is not enough, since a column the
    /// old roles read in plaintext (plaintext at rest) has no entry to
    /// re-judge. A re-checked statement learns its columns again instead
    /// (`frontend::extended::redescribe`), so this is only a backstop.
    pub fn stale(&self, policy: &Snapshot, generation: u64) -> RowPlan {
        RowPlan {
            cols: Vec::new(),
            unknown_origin: true,
            version: policy.rules.version.clone(),
            generation,
        }
    }
}

fn col_plan_with(r: &ColumnRule, policy: &Snapshot, access: Access) -> ColPlan {
    let action = match access {
        Access::Null => "null",
        Access::Deny => "denied",
        Access::Mask(_) => "masked",
        Access::Plaintext => "plaintext",
    };
    ColPlan {
        access,
        encrypted: r.encrypt.is_some(),
        decrypted: metrics()
            .crypto_ops
            .with_label_values(&["decrypt", &r.class]),
        acted: metrics()
            .masked_values
            .with_label_values(&[action, &r.class]),
        hash_key: policy
            .crypto
            .as_ref()
            .and_then(|c| c.hash_key(&r.table, &r.name))
            .cloned(),
        rule: Arc::new(r.clone()),
    }
}

fn type_size(ty: LogicalType) -> i16 {
    match ty {
        LogicalType::Int4 | LogicalType::Date => 4,
        LogicalType::Int8 | LogicalType::Timestamptz => 8,
        LogicalType::Bool => 1,
        _ => -1,
    }
}

/// A row plan, the RowDescription to send instead (None: as received), and
/// the result format codes the plan decodes.
pub type PlannedRows = (RowPlan, Option<BytesMut>, Vec<i16>);

/// Maps a RowDescription to a plan, and rewrites its types: encrypted
/// columns show their logical type; plaintext-at-rest columns masked on the
/// wire lose their type modifier (a mask can change the length, as its SQL
/// form would). Returns None when no column needs anything, and no frame
/// when the RowDescription stays as it is.
///
/// `strict` (a statement forwarded as written, its masked columns masked
/// here): a column with a table OID whose table or positive attnum the
/// catalog snapshot does not know could be a masked column under a new OID
/// or attnum, so the plan refuses every row rather than pass it through.
pub fn plan_row_description(
    frame: &[u8],
    schema: &SchemaSnapshot,
    policy: &Snapshot,
    roles: &[String],
    generation: u64,
    strict: bool,
) -> Result<Option<PlannedRows>, RowError> {
    let mut rd: RowDescription = decode_row_description(frame)?;
    let mut plan = RowPlan {
        cols: Vec::with_capacity(rd.fields.len()),
        unknown_origin: false,
        version: policy.rules.version.clone(),
        generation,
    };
    let (mut any, mut rewrite) = (false, false);
    for f in rd.fields.iter_mut() {
        let origin = (f.table_id != 0)
            .then(|| schema.origin(f.table_id as u32, f.column_id))
            .flatten();
        if strict && f.table_id != 0 && origin.is_none() {
            let known_table = schema.by_oid.contains_key(&(f.table_id as u32));
            if !known_table || f.column_id > 0 {
                plan.unknown_origin = true;
            }
        }
        let cp = origin
            .and_then(|(t, c)| policy.rules.column(t, &c.name))
            .and_then(|r| {
                let a = crate::policy::access(r, roles);
                (r.encrypt.is_some() || a != Access::Plaintext).then(|| col_plan_with(r, policy, a))
            });
        if let Some(cp) = &cp {
            any = true;
            if cp.encrypted {
                f.type_id = cp.rule.ty.oid();
                f.type_size = type_size(cp.rule.ty);
                f.type_modifier = -1;
                rewrite = true;
            } else {
                if !crate::sql::wire_type_matches(cp.rule.ty, f.type_id) {
                    plan.unknown_origin = true;
                }
                if f.type_modifier != -1 {
                    f.type_modifier = -1;
                    rewrite = true;
                }
            }
        }
        plan.cols.push(cp);
    }
    if !any && !plan.unknown_origin {
        return Ok(None);
    }
    let formats = rd.fields.iter().map(|f| f.format_code).collect();
    if !rewrite {
        return Ok(Some((plan, None, formats)));
    }
    let mut out = BytesMut::with_capacity(frame.len());
    encode_row_description(&rd, &mut out)?;
    Ok(Some((plan, Some(out), formats)))
}

/// Rewrites a ParameterDescription so encrypted parameters show their
/// logical type (drivers then send plaintext of that type), or the type the
/// client declared for them where that is the same value in another
/// spelling: PostgreSQL repeats declared types, and drivers (pgjdbc) check.
pub fn rewrite_parameter_description(
    frame: &[u8],
    params: &[ParamPlan],
    declared: &[u32],
) -> Result<Option<BytesMut>, RowError> {
    if !params
        .iter()
        .any(|p| matches!(p, ParamPlan::Encrypt { .. }))
    {
        return Ok(None);
    }
    let mut pd = decode_parameter_description(frame)?;
    for (i, t) in pd.types.iter_mut().enumerate() {
        if let Some(ParamPlan::Encrypt { rule, .. }) = params.get(i) {
            let d = declared.get(i).copied().unwrap_or(0);
            *t = if same_value_type(rule.ty, d)
                || crate::values::coerces_declared_integer(rule.ty, d)
            {
                d
            } else {
                rule.ty.oid()
            };
        }
    }
    let mut out = BytesMut::new();
    encode_parameter_description(&pd, &mut out)?;
    Ok(Some(out))
}

/// OIDs of `text` and `varchar`: the same text and binary forms.
const TEXT_OIDS: [u32; 2] = [25, 1043];

/// Whether a parameter declared as `oid` carries the logical type's values
/// in the same text and binary forms, so pgveil reads it unchanged.
pub fn same_value_type(ty: LogicalType, oid: u32) -> bool {
    match ty {
        LogicalType::Text | LogicalType::Varchar => TEXT_OIDS.contains(&oid),
        other => oid != 0 && oid == other.oid(),
    }
}

/// The format of column `i` given Bind's result-format codes.
pub fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats.len() {
        0 => 0,
        1 => formats[0],
        _ => formats.get(i).copied().unwrap_or(0),
    }
}

fn parse_bytea_text(v: &[u8]) -> Option<Vec<u8>> {
    let hex_part = v.strip_prefix(b"\\x")?;
    // Sized once: `hex::decode` collects through an iterator that grows the
    // vector step by step, for every value of every row.
    let mut out = vec![0u8; hex_part.len() / 2];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Decrypts (then masks / nulls) one stored value into what the client gets.
fn reveal(
    cp: &ColPlan,
    policy: &Snapshot,
    stored: &[u8],
    format: i16,
) -> Result<Option<Vec<u8>>, RowError> {
    let rule = &cp.rule;
    let q = || rule.qualified();
    match cp.access {
        Access::Null => {
            cp.acted.inc();
            return Ok(None);
        }
        Access::Deny => {
            cp.acted.inc();
            return Err(RowError::Denied(
                q(),
                format!("{}:{}", rule.source.file, rule.source.line),
            ));
        }
        _ => {}
    }
    if !cp.encrypted {
        return mask_plaintext(cp, stored, format);
    }
    let raw = if format == 1 {
        stored.to_vec()
    } else {
        parse_bytea_text(stored).ok_or_else(|| RowError::Decrypt(q()))?
    };
    let cipher = policy
        .crypto
        .as_ref()
        .and_then(|c| c.cipher(&rule.table, &rule.name))
        .ok_or_else(|| RowError::Decrypt(q()))?;
    let plain = cipher.decrypt(&raw).map_err(|_| RowError::Decrypt(q()))?;
    cp.decrypted.inc();
    let text = match cp.access {
        Access::Mask(m) => {
            let key = cp.hash_key.as_ref().and_then(|k| k.mac());
            cp.acted.inc();
            crate::mask::apply_keyed(m, rule.ty, &plain, key)
                .map_err(|e| RowError::Value(q(), e.to_string()))?
        }
        _ => plain,
    };
    if format == 1 {
        crate::values::text_to_binary(rule.ty, &text)
            .map(Some)
            .map_err(|e| RowError::Value(q(), e.to_string()))
    } else {
        Ok(Some(text))
    }
}

/// Masks one plaintext-at-rest value (output-only masking): the value is the
/// column's own text or binary form, which for the types `output_mask`
/// admits does not depend on session settings.
fn mask_plaintext(cp: &ColPlan, stored: &[u8], format: i16) -> Result<Option<Vec<u8>>, RowError> {
    let rule = &cp.rule;
    let Access::Mask(m) = cp.access else {
        return Ok(Some(stored.to_vec()));
    };
    let q = || rule.qualified();
    let text = if format == 1 {
        std::borrow::Cow::Owned(
            crate::values::binary_to_text(rule.ty, stored)
                .map_err(|e| RowError::Value(q(), e.to_string()))?,
        )
    } else {
        std::borrow::Cow::Borrowed(stored)
    };
    let key = cp.hash_key.as_ref().and_then(|k| k.mac());
    cp.acted.inc();
    let masked = crate::mask::apply_keyed(m, rule.ty, &text, key)
        .map_err(|e| RowError::Value(q(), e.to_string()))?;
    if format == 1 {
        crate::values::text_to_binary(rule.ty, &masked)
            .map(Some)
            .map_err(|e| RowError::Value(q(), e.to_string()))
    } else {
        Ok(Some(masked))
    }
}

/// Rewrites one DataRow frame per the plan.
pub fn transform_data_row(
    frame: &[u8],
    plan: &RowPlan,
    formats: &[i16],
    policy: &Snapshot,
) -> Result<BytesMut, RowError> {
    if plan.unknown_origin {
        return Err(RowError::UnknownOrigin);
    }
    let values = data_row_values(frame)?;
    let mut out = DataRowWriter::new(values.len(), frame.len() + 64);
    for (i, value) in values.enumerate() {
        let value = value?;
        let new = match (plan.cols.get(i).and_then(|c| c.as_ref()), value) {
            (Some(cp), Some(v)) => reveal(cp, policy, v, format_of(formats, i))?,
            (Some(cp), None) if cp.access == Access::Deny => {
                return Err(RowError::Denied(
                    cp.rule.qualified(),
                    format!("{}:{}", cp.rule.source.file, cp.rule.source.line),
                ))
            }
            (_, v) => {
                out.push(v);
                continue;
            }
        };
        out.push(new.as_deref());
    }
    Ok(out.finish())
}

/// Encrypts the parameters of a Bind whose statement plan asks for it.
pub fn encrypt_bind(
    frame: &[u8],
    params: &[ParamPlan],
    declared: &[u32],
    policy: &Snapshot,
) -> Result<Option<BytesMut>, RowError> {
    if !params
        .iter()
        .any(|p| matches!(p, ParamPlan::Encrypt { .. }))
    {
        return Ok(None);
    }
    let mut b = decode_bind(frame)?;
    let n = b.parameters.len();
    let mut codes: Vec<i16> = (0..n)
        .map(|i| format_of(&b.parameter_format_codes, i))
        .collect();
    for (i, plan) in params.iter().enumerate() {
        let ParamPlan::Encrypt { rule, usage } = plan else {
            continue;
        };
        let Some(slot) = b.parameters.get_mut(i) else {
            continue;
        };
        let Some(v) = slot.as_ref() else { continue };
        let perr = |e: String| {
            RowError::Param(
                i + 1,
                rule.qualified(),
                e,
                crate::error::sqlstate::INVALID_TEXT_REPRESENTATION,
            )
        };
        let verr = |e: crate::values::ValueError| {
            use crate::error::ClientError;
            RowError::Param(i + 1, rule.qualified(), e.to_string(), e.sqlstate())
        };
        let text = if codes[i] == 1 {
            let d = declared.get(i).copied().unwrap_or(0);
            crate::values::binary_param_to_text(rule.ty, d, v).map_err(verr)?
        } else {
            v.to_vec()
        };
        let canonical = crate::values::canonical_text(rule.ty, &text).map_err(verr)?;
        use crate::sql::Encryptor;
        match usage {
            ParamUse::Write => {
                let ct = policy.encrypt_for_write(rule, &canonical).map_err(perr)?;
                *slot = Some(ct.into());
                codes[i] = 1;
            }
            ParamUse::Match => {
                let cts = policy.encrypt_for_match(rule, &canonical).map_err(perr)?;
                let elems: Vec<String> = cts
                    .iter()
                    .map(|c| format!("\"\\\\x{}\"", hex::encode(c)))
                    .collect();
                *slot = Some(format!("{{{}}}", elems.join(",")).into_bytes().into());
                codes[i] = 0;
            }
        }
    }
    b.parameter_format_codes = codes;
    let mut out = BytesMut::with_capacity(frame.len() + 64);
    encode_bind(&b, &mut out)?;
    Ok(Some(out))
}
