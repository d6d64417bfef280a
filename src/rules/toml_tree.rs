//! A TOML document as a tree whose every key and value carries its byte span
//! when the parser knows it.
//!
//! Why not `toml::Spanned<T>` or a `#[derive(Deserialize)]` struct: the rule
//! checker must report *every* error of a file with its line, and serde stops
//! at the first one. So the file is first read into this generic tree (which
//! only fails on TOML syntax) and validated by hand afterwards. `Spanned<T>`
//! itself cannot be used for the tree because the toml 0.8 parser has no span
//! for implicit tables (dotted keys such as `access.admin = "plaintext"`) and
//! `Spanned` then fails the whole document. [`Located`] speaks the same
//! deserializer protocol as `Spanned` but treats a missing span as `None`, so
//! a caller can fall back to the enclosing key's line.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

// The (doc-hidden) names through which toml's deserializer hands out spans;
// they are those of `serde_spanned::Spanned` and `toml_datetime::Datetime`.
// The unit tests in `rules::parse` assert line numbers, so a change in this
// protocol shows up as failing tests, not as silently missing lines.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const START_FIELD: &str = "$__serde_spanned_private_start";
const END_FIELD: &str = "$__serde_spanned_private_end";
const VALUE_FIELD: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[START_FIELD, END_FIELD, VALUE_FIELD];
const DATETIME_FIELD: &str = "$__toml_private_datetime";

/// A value with the byte range it was parsed from, if known.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located<T> {
    pub span: Option<Range<usize>>,
    pub value: T,
}

/// One TOML value. Tables keep document order so errors come out in the
/// order a DBA reads the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// Rule files never contain dates, so the value itself is not kept.
    Datetime,
    Array(Vec<Located<Node>>),
    Table(Vec<(Located<String>, Located<Node>)>),
}

impl Node {
    /// The TOML kind, for "expected a string, found an integer" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::String(_) => "a string",
            Node::Integer(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Boolean(_) => "a boolean",
            Node::Datetime => "a date-time",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

/// A TOML syntax error: the parser's message and where it points.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// Parses a whole document. Only malformed TOML fails; everything else is
/// left for the validator.
pub(crate) fn parse(text: &str) -> Result<Located<Node>, SyntaxError> {
    toml::from_str::<Located<Node>>(text).map_err(|e| SyntaxError {
        span: e.span(),
        message: e.message().trim().to_string(),
    })
}

impl<'de> Deserialize<'de> for Located<Node> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Asking for the span struct makes the toml deserializer wrap the
        // value in its span protocol when it has a span; otherwise it calls
        // the plain visitor methods, which `NodeVisitor` also accepts.
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for Located<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

/// Deserializes the node itself, without asking for a span again (asking
/// again inside the span protocol would recurse forever).
struct RawNode;

impl<'de> DeserializeSeed<'de> for RawNode {
    type Value = Located<Node>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

fn plain(value: Node) -> Located<Node> {
    Located { span: None, value }
}

/// Reads the rest of the span protocol after its first key (`start`).
fn finish_spanned<'de, A, T, S>(mut map: A, seed: S) -> Result<Located<T>, A::Error>
where
    A: MapAccess<'de>,
    S: DeserializeSeed<'de, Value = Located<T>>,
{
    let start: usize = map.next_value()?;
    let mut end = start;
    let mut value = None;
    while let Some(key) = map.next_key::<String>()? {
        if key == END_FIELD {
            end = map.next_value()?;
        } else if key == VALUE_FIELD {
            value = Some(map.next_value_seed(seed)?);
            break;
        } else {
            map.next_value::<IgnoredAny>()?;
        }
    }
    let mut v = value.ok_or_else(|| de::Error::missing_field("value"))?;
    v.span = Some(start..end.max(start));
    Ok(v)
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Located<Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(plain(Node::Boolean(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(plain(Node::Integer(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(|v| plain(Node::Integer(v)))
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(plain(Node::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(plain(Node::String(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(plain(Node::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Located<Node>>()? {
            items.push(item);
        }
        Ok(plain(Node::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // The first key tells the three kinds of map apart: the span
        // protocol, a date-time, or a real table.
        let Some(first) = map.next_key::<Located<String>>()? else {
            return Ok(plain(Node::Table(Vec::new())));
        };
        if first.span.is_none() && first.value == START_FIELD {
            return finish_spanned(map, RawNode);
        }
        if first.span.is_none() && first.value == DATETIME_FIELD {
            map.next_value::<IgnoredAny>()?;
            return Ok(plain(Node::Datetime));
        }
        let mut entries = vec![(first, map.next_value::<Located<Node>>()?)];
        while let Some(key) = map.next_key::<Located<String>>()? {
            let value = map.next_value::<Located<Node>>()?;
            entries.push((key, value));
        }
        Ok(plain(Node::Table(entries)))
    }
}

/// Like [`RawNode`] for keys.
struct RawKey;

impl<'de> DeserializeSeed<'de> for RawKey {
    type Value = Located<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let value = String::deserialize(d)?;
        Ok(Located { span: None, value })
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Located<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Located {
            span: None,
            value: v.to_string(),
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Located {
            span: None,
            value: v,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        match map.next_key::<String>()? {
            Some(k) if k == START_FIELD => finish_spanned(map, RawKey),
            _ => Err(de::Error::custom("expected a table key")),
        }
    }
}
