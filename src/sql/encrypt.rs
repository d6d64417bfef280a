//! Substitution of plaintext literals and parameters by ciphertext.
//!
//! Ciphertext literals are written `E'\\x…'::bytea`: the `E''` form reads the
//! same whatever `standard_conforming_strings` says, so a session that turned
//! it off cannot make the server store something else than we encrypted.

use sqlparser::ast::{
    Array, ArrayElemTypeDef, CastKind, DataType, Expr, TypedString, UnaryOperator, Value,
};

use crate::rules::model::{ColumnRule, LogicalType};

use super::refuse;
use super::{Context, Refusal};

/// A value position as the rewrite sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Null,
    /// `DEFAULT` in VALUES or SET.
    Default,
    /// A literal's text (unescaped), to canonicalise and encrypt.
    Literal(String),
    /// `$n` (1-based).
    Param(usize),
}

/// Recognises literals, parameters, NULL and DEFAULT, looking through casts
/// to the column's own logical type (drivers write `$1::text`); a cast to
/// another type could change the value, so it is not looked through.
pub fn operand(e: &Expr, ty: LogicalType) -> Option<Operand> {
    match e {
        Expr::Nested(inner) => operand(inner, ty),
        Expr::Identifier(id)
            if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default") =>
        {
            Some(Operand::Default)
        }
        Expr::Value(v) => value_operand(&v.value),
        Expr::UnaryOp { op, expr } => match (op, expr.as_ref()) {
            (UnaryOperator::Minus, Expr::Value(v)) => match &v.value {
                Value::Number(n, _) => Some(Operand::Literal(format!("-{n}"))),
                _ => None,
            },
            (UnaryOperator::Plus, Expr::Value(v)) => match &v.value {
                Value::Number(n, _) => Some(Operand::Literal(n.to_string())),
                _ => None,
            },
            _ => None,
        },
        Expr::TypedString(TypedString {
            data_type, value, ..
        }) if type_matches(data_type, ty) => {
            value_operand(&value.value).filter(|o| matches!(o, Operand::Literal(_)))
        }
        Expr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr,
            data_type,
            format: None,
        } if type_matches(data_type, ty) => {
            operand(expr, ty).filter(|o| !matches!(o, Operand::Default))
        }
        _ => None,
    }
}

fn value_operand(v: &Value) -> Option<Operand> {
    Some(match v {
        Value::Null => Operand::Null,
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s)
        | Value::NationalStringLiteral(s) => Operand::Literal(s.clone()),
        Value::DollarQuotedString(d) => Operand::Literal(d.value.clone()),
        Value::Number(n, _) => Operand::Literal(n.to_string()),
        Value::Boolean(b) => Operand::Literal(b.to_string()),
        Value::Placeholder(p) => {
            let n: usize = p.strip_prefix('$')?.parse().ok()?;
            if n == 0 {
                return None;
            }
            Operand::Param(n)
        }
        _ => return None,
    })
}

/// Whether a cast / typed-literal type is the logical type itself (or a text
/// spelling for text columns), so looking through it cannot change the value.
pub fn type_matches(dt: &DataType, ty: LogicalType) -> bool {
    let s = dt.to_string().to_ascii_lowercase();
    let base = s.split('(').next().unwrap_or("").trim();
    match ty {
        LogicalType::Text | LogicalType::Varchar => {
            matches!(
                base,
                "text" | "varchar" | "character varying" | "char varying"
            )
        }
        LogicalType::Date => base == "date",
        LogicalType::Timestamptz => matches!(base, "timestamptz" | "timestamp with time zone"),
        LogicalType::Int4 => matches!(base, "int" | "int4" | "integer"),
        LogicalType::Int8 => matches!(base, "int8" | "bigint"),
        LogicalType::Numeric => matches!(base, "numeric" | "decimal"),
        LogicalType::Bool => matches!(base, "bool" | "boolean"),
        LogicalType::Bytea => base == "bytea",
    }
}

/// `E'\\x…'::bytea`.
pub fn bytea_literal(bytes: &[u8]) -> Expr {
    Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(Expr::value(Value::EscapedStringLiteral(format!(
            "\\x{}",
            hex::encode(bytes)
        )))),
        data_type: DataType::Bytea,
        format: None,
    }
}

/// `$n::bytea` or `$n::bytea[]`.
pub fn param_cast(n: usize, array: bool) -> Expr {
    Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(Expr::value(Value::Placeholder(format!("${n}")))),
        data_type: if array {
            bytea_array()
        } else {
            DataType::Bytea
        },
        format: None,
    }
}

pub fn bytea_array() -> DataType {
    DataType::Array(ArrayElemTypeDef::SquareBracket(
        Box::new(DataType::Bytea),
        None,
    ))
}

/// `ARRAY[E'\\x…'::bytea, …]` (for SQL-level EXECUTE arguments).
pub fn bytea_array_literal(items: &[Vec<u8>]) -> Expr {
    Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(Expr::Array(Array {
            elem: items.iter().map(|b| bytea_literal(b)).collect(),
            named: true,
        })),
        data_type: bytea_array(),
        format: None,
    }
}

fn canonical(ctx: &Context, rule: &ColumnRule, text: &str) -> Result<Vec<u8>, Refusal> {
    (ctx.canonicalize)(rule.ty, text.as_bytes()).map_err(|e| refuse::encrypt_failed(rule, &e))
}

/// Ciphertext literal for storing `text` in `rule`'s column.
pub fn write_literal(ctx: &Context, rule: &ColumnRule, text: &str) -> Result<Expr, Refusal> {
    let c = canonical(ctx, rule, text)?;
    let ct = ctx
        .encryptor
        .encrypt_for_write(rule, &c)
        .map_err(|e| refuse::encrypt_failed(rule, &e))?;
    Ok(bytea_literal(&ct))
}

/// One ciphertext literal per live key version, for equality.
pub fn match_literals(
    ctx: &Context,
    rule: &ColumnRule,
    text: &str,
) -> Result<Vec<Vec<u8>>, Refusal> {
    let c = canonical(ctx, rule, text)?;
    let cts = ctx
        .encryptor
        .encrypt_for_match(rule, &c)
        .map_err(|e| refuse::encrypt_failed(rule, &e))?;
    if cts.is_empty() {
        return Err(refuse::encrypt_failed(rule, "no live key"));
    }
    Ok(cts)
}
