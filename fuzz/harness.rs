//! The bodies of the fuzz targets, shared by the libFuzzer binaries
//! (`fuzz/fuzz_targets/*.rs`, nightly) and the corpus regression test
//! (`tests/fuzz_corpus.rs`, stable), so what CI replays is exactly what was
//! fuzzed. Each entry point takes arbitrary bytes; a panic is a finding.
//!
//! Beyond "never panics", every target asserts the properties that would
//! catch a real bug where one exists: what a decoder accepts its encoder
//! reproduces, a COPY stream split anywhere is transformed exactly like the
//! whole, the lexer pre-filter never lets through a statement the analysis
//! would have changed, and so on. See docs/fuzzing.md.

#![allow(dead_code)]

use std::collections::HashMap;

use bytes::BytesMut;
use pgveil::copy::{CopyEncoding, CopyError, CopyOptions, CopyTransformer};
use pgveil::protocol::messages as msg;
use pgveil::protocol::rows;
use pgveil::protocol::{self as proto, Direction, StartupPacket};
use pgveil::rules::{Access, ColumnRule, LogicalType, Mask, RuleSet, TableName};
use pgveil::schema::{ColumnInfo, SchemaSnapshot, TableInfo};
use pgveil::sql::{self, Analysis, Context, Encryptor, ParamPlan, ParamUse};

/// The example rules every SQL input is analysed under.
pub const EXAMPLE_RULES: &str = include_str!("../rules/customers.toml");

// ---------------------------------------------------------------- frontend

/// Input: one byte choosing the frame cap (small, so oversize is reached),
/// then a byte stream read as frames in both directions; every decoder runs
/// on every frame. Also read whole as a startup packet.
pub fn frontend(data: &[u8]) {
    let Some((&c, stream)) = data.split_first() else {
        return;
    };
    let cap = 5 + usize::from(c) * 16;
    startup(stream);
    for dir in [Direction::Frontend, Direction::Backend] {
        let mut pos = 0;
        while pos < stream.len() {
            let rest = &stream[pos..];
            match proto::next_frame(rest, dir, cap) {
                Ok(Some(n)) => {
                    let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
                    assert!(n >= 5 && n <= rest.len() && n <= cap, "frame size {n}");
                    assert_eq!(n, len as usize + 1, "frame size disagrees with its length");
                    decoders(&rest[..n]);
                    pos += n;
                }
                // Resynchronise one byte later: reaches the decoders from
                // every offset of the input, not only the first frame.
                Ok(None) | Err(_) => pos += 1,
            }
        }
    }
}

fn startup(stream: &[u8]) {
    if let Some(h) = stream.get(..4) {
        if let Ok(n) = proto::startup_len([h[0], h[1], h[2], h[3]]) {
            assert!((8..=proto::MAX_STARTUP_LEN).contains(&n));
            if let Some(p) = stream.get(..n) {
                let _ = proto::parse_startup(p);
            }
        }
    }
    match proto::parse_startup(stream) {
        Ok(StartupPacket::Startup { params, raw }) => {
            // The parser is strict, so rebuilding from the parameters gives
            // back every byte after the length prefix.
            let mut again = raw[4..8].to_vec();
            for (k, v) in &params {
                again.extend_from_slice(k.as_bytes());
                again.push(0);
                again.extend_from_slice(v.as_bytes());
                again.push(0);
            }
            again.push(0);
            assert_eq!(again, raw[4..], "startup packet does not round-trip");
        }
        Ok(StartupPacket::Cancel { pid, secret }) => {
            assert_eq!(&stream[8..12], &pid.to_be_bytes());
            assert_eq!(&stream[12..], &secret[..]);
        }
        Ok(StartupPacket::Ssl | StartupPacket::GssEnc) => assert_eq!(stream.len(), 8),
        Err(_) => {}
    }
}

/// A frame built by the crate's own encoders must equal the input frame
/// after the tag byte (the decoders run on frames of every tag).
#[track_caller]
fn same_body(encoded: &[u8], frame: &[u8], what: &str) {
    assert_eq!(
        &encoded[1..],
        &frame[1..],
        "{what} does not re-encode byte for byte"
    );
}

/// One whole frame, whatever its tag: its length field counts the rest.
#[track_caller]
fn framed(out: &[u8], what: &str) {
    let len = out
        .get(1..5)
        .map(|l| i32::from_be_bytes([l[0], l[1], l[2], l[3]]));
    assert_eq!(
        len,
        Some(out.len() as i32 - 1),
        "{what} built a frame with a wrong length"
    );
}

fn decoders(f: &[u8]) {
    query_and_parse(f);
    bind(f);
    descriptions(f);
    small_messages(f);
    data_row(f);
    errors(f);
}

fn query_and_parse(f: &[u8]) {
    if let Ok(s) = msg::query_text(f) {
        let mut out = BytesMut::new();
        msg::put_query(&mut out, s);
        same_body(&out, f, "Query");
    }
    if let Ok(p) = msg::decode_parse(f) {
        let mut out = BytesMut::new();
        msg::encode_parse(&p, &mut out).expect("a decoded Parse encodes");
        same_body(&out, f, "Parse");
        assert_eq!(msg::decode_parse(&out).as_ref(), Ok(&p));
    }
}

fn bind(f: &[u8]) {
    let full = msg::decode_bind(f);
    let formats = msg::bind_result_formats(f);
    match &full {
        Ok(b) => {
            assert_eq!(formats.as_ref(), Ok(&b.result_column_format_codes));
            let (portal, stmt) = msg::bind_names(f).expect("names of a valid Bind");
            assert_eq!(portal, b.portal_name.as_deref().unwrap_or(""));
            assert_eq!(stmt, b.statement_name.as_deref().unwrap_or(""));
            let mut out = BytesMut::new();
            msg::encode_bind(b, &mut out).expect("a decoded Bind encodes");
            same_body(&out, f, "Bind");
            assert_eq!(msg::decode_bind(&out).as_ref(), Ok(b));
        }
        Err(_) => assert!(
            formats.is_err(),
            "bind_result_formats accepts an invalid Bind"
        ),
    }
}

fn descriptions(f: &[u8]) {
    if let Ok(r) = msg::decode_row_description(f) {
        let mut out = BytesMut::new();
        msg::encode_row_description(&r, &mut out).expect("a decoded RowDescription encodes");
        same_body(&out, f, "RowDescription");
        assert_eq!(msg::decode_row_description(&out).as_ref(), Ok(&r));
    }
    if let Ok(p) = msg::decode_parameter_description(f) {
        let mut out = BytesMut::new();
        msg::encode_parameter_description(&p, &mut out).expect("encodes");
        same_body(&out, f, "ParameterDescription");
        assert_eq!(msg::decode_parameter_description(&out).as_ref(), Ok(&p));
    }
}

fn small_messages(f: &[u8]) {
    if let Ok((kind, name)) = msg::describe_or_close(f) {
        let mut out = BytesMut::new();
        rows::put_describe(&mut out, kind, name);
        same_body(&out, f, "Describe/Close");
    }
    if let Ok(portal) = msg::execute_portal(f) {
        assert_eq!(f.len(), 5 + portal.len() + 1 + 4);
        assert_eq!(&f[5..5 + portal.len()], portal.as_bytes());
    }
    let _ = msg::auth_code(f);
    if let Ok(Some(out)) = msg::strip_sasl_plus(f) {
        framed(&out, "strip_sasl_plus");
        let mut rest = &out[9..];
        while let Some((m, r)) = proto::take_cstr(rest) {
            assert!(!m.ends_with("-PLUS"), "channel binding survived stripping");
            if m.is_empty() {
                break;
            }
            rest = r;
        }
    }
    if let Ok((pid, secret)) = msg::backend_key(f) {
        assert_eq!(&f[5..9], &pid.to_be_bytes());
        assert_eq!(&f[9..], &secret[..]);
    }
    let _ = msg::ready_status(f);
    let _ = msg::command_rows(f);
}

fn data_row(f: &[u8]) {
    let Ok(vals) = rows::data_row_values(f) else {
        assert!(rows::text_row(f).is_err());
        return;
    };
    let n = vals.len();
    let decoded: Result<Vec<Option<&[u8]>>, _> = vals.collect();
    assert_eq!(decoded.is_ok(), rows::text_row(f).is_ok());
    let Ok(decoded) = decoded else {
        return;
    };
    assert_eq!(decoded.len(), n);
    let mut w = rows::DataRowWriter::new(n, f.len());
    for v in &decoded {
        w.push(*v);
    }
    let out = w.finish();
    framed(&out, "DataRowWriter");
    let again: Vec<Option<&[u8]>> = rows::data_row_values(&out)
        .expect("re-encoded DataRow reads")
        .collect::<Result<_, _>>()
        .expect("re-encoded DataRow values read");
    assert_eq!(again, decoded, "DataRow does not round-trip");
}

fn errors(f: &[u8]) {
    let fields = proto::error_fields(&f[5..]);
    let code = proto::error_code(f);
    assert_eq!(
        code,
        fields
            .iter()
            .find(|(c, _)| *c == b'C')
            .map(|(_, v)| v.clone())
    );
    let s = proto::scrub_error(f);
    framed(&s, "scrub_error");
    let scrubbed = proto::error_fields(&s[5..]);
    let echoes = code
        .as_deref()
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23"));
    for (c, v) in &scrubbed {
        assert!(
            !matches!(c, b'D' | b'H' | b'W' | b'q' | b'p' | b'P'),
            "value-bearing field {} survived scrubbing",
            *c as char
        );
        if *c == b'M' && echoes {
            assert!(
                v.contains("hidden by pgveil"),
                "class 22/23 message survived scrubbing"
            );
        }
    }
    assert_eq!(proto::error_code(&s), code);
    let mut out = BytesMut::new();
    let msg_text = String::from_utf8_lossy(&f[5..]);
    proto::put_error(
        &mut out,
        proto::Severity::Error,
        "XX000",
        &msg_text,
        Some(&msg_text),
    );
    assert_eq!(
        proto::next_frame(&out, Direction::Backend, usize::MAX),
        Ok(Some(out.len()))
    );
    assert_eq!(proto::error_code(&out).as_deref(), Some("XX000"));
}

// ---------------------------------------------------------------- sql

/// Ciphertext stand-in: fixed bytes, so the analysis is deterministic.
struct FixedEnc;

impl Encryptor for FixedEnc {
    fn encrypt_for_write(&self, _: &ColumnRule, _: &[u8]) -> Result<Vec<u8>, String> {
        Ok(vec![0xab; 24])
    }
    fn encrypt_for_match(&self, _: &ColumnRule, _: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        Ok(vec![vec![0xcd; 24], vec![0xef; 24]])
    }
    fn live_versions(&self, _: &ColumnRule) -> usize {
        2
    }
}

fn canonicalize(ty: LogicalType, v: &[u8]) -> Result<Vec<u8>, String> {
    pgveil::values::canonical_text(ty, v).map_err(|e| e.to_string())
}

fn hash_key(_: &ColumnRule) -> Option<String> {
    Some("5a".repeat(32))
}

/// The example rules, the table they expect (see rules/customers.toml), an
/// untagged table and a protected view, built once per process.
pub struct SqlEnv {
    rules: RuleSet,
    schema: SchemaSnapshot,
    names: sql::TaggedNames,
    prepared: HashMap<String, Vec<ParamPlan>>,
}

fn table(oid: u32, cols: &[(&str, u32, &str)]) -> TableInfo {
    TableInfo {
        oid,
        relkind: 'r',
        columns: cols
            .iter()
            .enumerate()
            .map(|(i, (n, ty, tn))| ColumnInfo {
                name: n.to_string(),
                attnum: i as i16 + 1,
                type_oid: *ty,
                type_name: tn.to_string(),
            })
            .collect(),
    }
}

impl SqlEnv {
    pub fn new() -> Self {
        let cols = pgveil::rules::parse_str("rules/customers.toml", EXAMPLE_RULES)
            .expect("the example rules parse");
        let rules = RuleSet::new(cols, "fuzz".into());
        let t = |n: &str| TableName {
            schema: "public".into(),
            name: n.into(),
        };
        let b = (17, "bytea");
        let mut tables = HashMap::new();
        tables.insert(
            t("customers"),
            table(
                16_400,
                &[
                    ("id", 20, "bigint"),
                    ("full_name", 25, "text"),
                    ("email", b.0, b.1),
                    ("ssn", b.0, b.1),
                    ("phone", b.0, b.1),
                    ("birth_date", b.0, b.1),
                    ("card_number", b.0, b.1),
                ],
            ),
        );
        tables.insert(
            t("orders"),
            table(16_410, &[("id", 20, "bigint"), ("total", 1700, "numeric")]),
        );
        let mut schema = SchemaSnapshot::new(vec!["public".into()], tables);
        schema.protected_views.insert(t("customer_view"));
        let email = rules
            .column(&t("customers"), "email")
            .expect("email rule")
            .clone();
        let enc = |usage| ParamPlan::Encrypt {
            rule: Box::new(email.clone()),
            usage,
        };
        let mut prepared = HashMap::new();
        prepared.insert(
            "wp".to_string(),
            vec![ParamPlan::Plain, enc(ParamUse::Write)],
        );
        prepared.insert("wm".to_string(), vec![enc(ParamUse::Match)]);
        SqlEnv {
            names: sql::TaggedNames::new(&rules),
            rules,
            schema,
            prepared,
        }
    }

    fn analyse(&self, text: &str, role: &str, online: bool) -> Analysis {
        let roles = vec![role.to_string()];
        let ctx = Context {
            rules: &self.rules,
            schema: online.then_some(&self.schema),
            roles: &roles,
            encryptor: &FixedEnc,
            canonicalize: &canonicalize,
            sql_prepared: Some(&self.prepared),
            restricted: false,
            hash_key_hex: &hash_key,
        };
        let a = sql::analyse(text, &ctx);
        if let Analysis::Rewritten {
            sql: out,
            statements,
        } = &a
        {
            rewritten_parses(text, out, statements.len());
            // What is forwarded is analysed again by nothing, but it must at
            // least not crash the analysis either (e.g. after a reload).
            let _ = sql::analyse(out, &ctx);
        }
        a
    }
}

impl Default for SqlEnv {
    fn default() -> Self {
        Self::new()
    }
}

fn parses(chunk: &str) -> Result<(), String> {
    if sql::statement_kind(chunk) == sql::StatementKind::Copy {
        return Ok(()); // parsed only with inline data; see sql::parse_one
    }
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    match sqlparser::parser::Parser::parse_sql(&dialect, chunk) {
        Ok(v) if v.len() == 1 => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// What the proxy forwards instead of the client's text must be exactly one
/// statement per plan (else the server runs one nobody analysed), and a
/// statement the parser read must still read after re-serialisation.
/// (Statements forwarded as written, because they name nothing tagged or
/// pass the restricted text check, need not parse.)
fn rewritten_parses(input: &str, out: &str, plans: usize) {
    let chunks = sql::split_statements(out);
    assert_eq!(
        chunks.len(),
        plans,
        "plans and forwarded statements differ for {input:?}: {out:?}"
    );
    for (orig, c) in sql::split_statements(input).iter().zip(&chunks) {
        if parses(orig).is_ok() {
            if let Err(e) = parses(c) {
                panic!("re-serialised SQL does not parse: {c:?} (from {orig:?}): {e}");
            }
        }
    }
}

thread_local! {
    static SQL_ENV: SqlEnv = SqlEnv::new();
}

/// Input: SQL text (lossy UTF-8, NUL-free like every Query/Parse text).
/// Analysed as the restricted roles (masks, and hash/null/deny) with and
/// without a schema, and as the plaintext role, whose pre-filter must agree.
pub fn sql(data: &[u8]) {
    let text = String::from_utf8_lossy(data).replace('\0', "");
    SQL_ENV.with(|env| sql_in(env, &text));
}

fn sql_in(env: &SqlEnv, text: &str) {
    let chunks = sql::split_statements(text);
    let mut prev_end = 0;
    for c in &chunks {
        let start = c.as_ptr() as usize - text.as_ptr() as usize;
        assert!(
            start >= prev_end && start + c.len() <= text.len(),
            "split out of order"
        );
        prev_end = start + c.len();
        let _ = sql::statement_kind(c);
    }
    fingerprint(text);
    for (role, online) in [
        ("support", true),
        ("analyst", true),
        ("support", false),
        ("nobody", true),
    ] {
        if let (Analysis::Passthrough, false) = (env.analyse(text, role, online), chunks.is_empty())
        {
            panic!("restricted role {role} got a passthrough for {text:?}");
        }
    }
    let admin = env.analyse(text, "admin", true);
    let mentions = chunks.iter().any(|c| sql::mentions_tagged(&env.names, c));
    if !mentions {
        assert_eq!(
            admin,
            Analysis::Passthrough,
            "pre-filter would skip a statement the analysis changes: {text:?}"
        );
    }
}

/// Literal text never reaches a fingerprint (it goes into the audit). When
/// the text ends in the lexer's neutral state (a word appended on its own
/// line shows up as a word, not swallowed by an open string, comment or
/// quoted name), canary literals appended in every spelling are replaced.
fn fingerprint(text: &str) {
    let fp = sql::fingerprint(text);
    assert!(fp.len() <= 8 * 1024 + 8, "fingerprint not capped");
    let neutral = sql::fingerprint(&format!("{text}\n zq9word")).ends_with(" zq9word");
    if neutral {
        let canary =
            format!("{text}\n'zq9canary' E'zq9canary' $$zq9canary$$ U&'zq9canary' x'zq9canary'");
        let fp = sql::fingerprint(&canary);
        assert!(
            !fp.contains("zq9canary"),
            "literal leaked into fingerprint {fp:?}"
        );
    }
}

// ---------------------------------------------------------------- copy

/// A cursor over the option bytes at the start of an input.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

fn bits(mask: u8, n: usize) -> Vec<bool> {
    (0..n).map(|i| mask & (1 << (i % 8)) != 0).collect()
}

/// The layout of a COPY input (also what `scripts/fuzz-seed.sh` writes):
/// flags, delimiter, quote, escape, field count, tagged mask, FORCE_NULL
/// mask, FORCE_NOT_NULL mask, line cap, NULL length + bytes, DEFAULT length +
/// bytes (0xff = none), split count + split points (u16 each), then data.
fn copy_input(data: &[u8]) -> (CopyOptions, Vec<bool>, u8, Vec<usize>, &[u8]) {
    let mut b = Bytes(data);
    let flags = b.u8();
    let csv = flags & 1 != 0;
    let mut o = if csv {
        CopyOptions::csv()
    } else {
        CopyOptions::text()
    };
    o.header = flags & 2 != 0;
    o.encoding = match (flags >> 2) & 3 {
        0 => CopyEncoding::Utf8,
        1 => CopyEncoding::AsciiSafe,
        2 => CopyEncoding::from_pg_name("LATIN1"),
        _ => CopyEncoding::Unsupported,
    };
    let variant = flags >> 4;
    for slot in [&mut o.delimiter, &mut o.quote, &mut o.escape] {
        let v = b.u8();
        if v != 0 {
            *slot = v;
        }
    }
    let n = usize::from(b.u8() % 9);
    let fields = bits(b.u8(), n);
    let (fnn, fn_) = (b.u8(), b.u8());
    if csv {
        o.force_null = bits(fnn, n);
        o.force_not_null = bits(fn_, n);
    }
    let cap = b.u8();
    if cap != 0 {
        o.max_line_bytes = usize::from(cap) * 4;
    }
    let nl = b.u8();
    if nl != 0xff {
        o.null = b.take(usize::from(nl % 5));
    }
    let dl = b.u8();
    if dl != 0xff {
        o.default = Some(b.take(usize::from(dl % 5)));
    }
    let splits = (0..b.u8() % 9)
        .map(|_| usize::from(u16::from_be_bytes([b.u8(), b.u8()])))
        .collect();
    (o, fields, variant, splits, b.0)
}

/// The field function the session would install, in a few shapes: the
/// identity, bytea hex (what encryption produces), NULL for everything, or
/// an error on a value that starts with `!`.
fn field_fn(variant: u8) -> impl FnMut(usize, Option<&[u8]>) -> Result<Option<Vec<u8>>, String> {
    move |i, v| match variant % 4 {
        0 => Ok(v.map(<[u8]>::to_vec)),
        1 => Ok(v.map(pgveil::copy::bytea_hex)),
        2 => Ok(None),
        _ => match v {
            Some(b) if b.first() == Some(&b'!') => Err(format!("field {i} refused")),
            _ => Ok(v.map(|b| [b"<", b, b">"].concat())),
        },
    }
}

type Seen = Vec<(usize, Option<Vec<u8>>)>;

/// A streaming COPY codec as the harness drives it (text/CSV or binary).
trait Codec {
    fn feed(&mut self, d: &[u8], f: &mut pgveil::copy::FieldFn<'_>) -> Result<Vec<u8>, CopyError>;
    fn finish(&mut self, f: &mut pgveil::copy::FieldFn<'_>) -> Result<Vec<u8>, CopyError>;
}

impl Codec for CopyTransformer {
    fn feed(&mut self, d: &[u8], f: &mut pgveil::copy::FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        CopyTransformer::feed(self, d, f)
    }
    fn finish(&mut self, f: &mut pgveil::copy::FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        CopyTransformer::finish(self, f)
    }
}

impl Codec for pgveil::copy::BinaryTransformer {
    fn feed(&mut self, d: &[u8], f: &mut pgveil::copy::FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        pgveil::copy::BinaryTransformer::feed(self, d, f)
    }
    fn finish(&mut self, f: &mut pgveil::copy::FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        pgveil::copy::BinaryTransformer::finish(self, f)
    }
}

/// Feeds `pieces` through `t`, recording every field the field function saw;
/// `closed`: a finished stream must refuse more data.
fn drive(
    t: &mut dyn Codec,
    variant: u8,
    pieces: &[&[u8]],
    closed: bool,
) -> Result<(Vec<u8>, Seen), CopyError> {
    let mut seen = Vec::new();
    let mut g = field_fn(variant);
    let mut f = |i: usize, v: Option<&[u8]>| {
        seen.push((i, v.map(<[u8]>::to_vec)));
        g(i, v)
    };
    let mut out = Vec::new();
    for p in pieces {
        out.extend(t.feed(p, &mut f)?);
    }
    out.extend(t.finish(&mut f)?);
    if closed {
        assert!(
            t.feed(b"x", &mut f).is_err(),
            "a finished stream takes more data"
        );
    }
    Ok((out, seen))
}

fn run_copy(
    o: &CopyOptions,
    fields: &[bool],
    variant: u8,
    pieces: &[&[u8]],
) -> Result<(Vec<u8>, Seen), CopyError> {
    let mut t = CopyTransformer::new(o.clone(), fields.to_vec())?;
    drive(&mut t, variant, pieces, true)
}

/// The same stream through the binary-format transformer.
fn run_binary(
    fields: &[bool],
    variant: u8,
    pieces: &[&[u8]],
) -> Result<(Vec<u8>, Seen), CopyError> {
    let mut t = pgveil::copy::BinaryTransformer::new(fields.to_vec(), 1 << 16);
    drive(&mut t, variant, pieces, false)
}

/// Input: see [`copy_input`]. The output of the stream fed whole equals the
/// output fed in pieces, and with the identity function the output decodes
/// to the same values again.
pub fn copy(data: &[u8]) {
    let (o, fields, variant, splits, stream) = copy_input(data);
    let whole = run_copy(&o, &fields, variant, &[stream]);
    let mut cuts: Vec<usize> = splits.into_iter().map(|s| s % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut at = 0;
    for c in cuts {
        pieces.push(&stream[at..c]);
        at = c;
    }
    pieces.push(&stream[at..]);
    same_copy(&whole, &run_copy(&o, &fields, variant, &pieces), "split");
    let binary = run_binary(&fields, variant, &[stream]);
    same_copy(
        &binary,
        &run_binary(&fields, variant, &pieces),
        "split (binary)",
    );
    if stream.len() <= 256 {
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        same_copy(
            &binary,
            &run_binary(&fields, variant, &bytewise),
            "byte-wise (binary)",
        );
    }
    if stream.len() <= 256 {
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        same_copy(
            &whole,
            &run_copy(&o, &fields, variant, &bytewise),
            "byte-wise",
        );
    }
    // Text format with NULL '' cannot write an empty string at all (the
    // server's own COPY TO has the same ambiguity), so it has no round trip.
    let representable = o.format == pgveil::copy::CopyFormat::Csv || !o.null.is_empty();
    if let (Ok((out, seen)), 0, true) = (&whole, variant % 4, representable) {
        // Re-escaping may lengthen a row past a small line cap.
        let unbounded = CopyOptions {
            max_line_bytes: pgveil::copy::DEFAULT_MAX_LINE_BYTES,
            ..o.clone()
        };
        let again = run_copy(&unbounded, &fields, 0, &[out]);
        let (out2, seen2) = again.expect("the identity transform's output is valid COPY data");
        assert_eq!(&seen2, seen, "re-encoded COPY values decode differently");
        assert_eq!(&out2, out, "the identity transform is not stable");
    }
}

/// Fed whole or in pieces, a stream is accepted or refused alike, and when
/// accepted the bytes forwarded are identical (the error's wording may
/// differ: which limit is hit first can depend on what is buffered).
#[track_caller]
fn same_copy(
    whole: &Result<(Vec<u8>, Seen), CopyError>,
    other: &Result<(Vec<u8>, Seen), CopyError>,
    how: &str,
) {
    match (whole, other) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "COPY output differs when fed {how}"),
        (Err(_), Err(_)) => {}
        _ => panic!("COPY fed whole gives {whole:?}, fed {how} gives {other:?}"),
    }
}

// ---------------------------------------------------------------- rules

/// Input: a rule file's text. Whatever parses is internally consistent
/// (masks fit types, access spellings round-trip) and renders; whatever
/// does not yields diagnostics with in-range lines.
pub fn rules(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(64) {
        access(line);
        if let Some((_, v)) = line.split_once('=') {
            access(v.trim().trim_matches('"'));
        }
    }
    let lines = text.lines().count() + 1;
    match pgveil::rules::parse_str("fuzz.toml", &text) {
        Ok(cols) => {
            for c in &cols {
                for a in c.access.values().chain([&c.default]) {
                    assert_eq!(Access::parse(&a.to_string()), Ok(*a));
                    if let Access::Mask(m) = a {
                        assert!(m.applies_to(c.ty), "rule accepted mask {m} on {:?}", c.ty);
                    }
                }
                assert!(c.source.line <= lines, "rule line out of range");
            }
            let set = RuleSet::new(cols, "fuzz".into());
            let _ = pgveil::rules::render_ok(&set);
            SQL_ENV.with(|env| {
                let _ = pgveil::rules::check_against_schema(&set, &env.schema);
            });
            let _ = sql::TaggedNames::new(&set);
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in &diags {
                assert!(d.line <= lines, "diagnostic line {} of {lines}", d.line);
            }
            let _ = pgveil::rules::render_report(&diags);
        }
    }
}

fn access(s: &str) {
    if let Ok(a) = Access::parse(s) {
        assert_eq!(Access::parse(&a.to_string()), Ok(a), "{s:?}");
        if let Access::Mask(Mask::Round(n)) = a {
            assert!(n > 0);
        }
    }
}

// ---------------------------------------------------------------- values

/// Input: a type selector, a mask selector, then a value in text (and, read
/// again, binary) form. Canonical text is a fixed point; binary and text
/// forms convert into each other; every mask that applies yields a valid
/// canonical value of the type.
pub fn values(data: &[u8]) {
    let mut b = Bytes(data);
    let ty = LogicalType::ALL[usize::from(b.u8()) % LogicalType::ALL.len()];
    let m = b.u8();
    let input = b.0;
    if let Ok(bin_text) = pgveil::values::binary_to_text(ty, input) {
        canonical_fixed_point(ty, &bin_text);
    }
    let Ok(c) = pgveil::values::canonical_text(ty, input) else {
        return;
    };
    canonical_fixed_point(ty, &c);
    let masks = [
        Mask::Redact,
        Mask::Partial {
            first: u32::from(m & 7),
            last: u32::from(m >> 5),
        },
        Mask::Email,
        Mask::Hash,
        Mask::Year,
        Mask::Month,
        Mask::Round(i64::from(m).max(1) * if m & 1 == 0 { 1 } else { 1_000_000_007 }),
    ];
    for mask in masks.into_iter().filter(|k| k.applies_to(ty)) {
        let out = pgveil::mask::apply(mask, ty, &c, b"fuzz-key")
            .unwrap_or_else(|e| panic!("mask {mask} on a valid {ty:?}: {e}"));
        let again = pgveil::values::canonical_text(ty, &out)
            .unwrap_or_else(|e| panic!("mask {mask} gave an invalid {ty:?}: {e}"));
        assert_eq!(again, out, "mask {mask} output not canonical");
    }
}

fn canonical_fixed_point(ty: LogicalType, c: &[u8]) {
    let again = pgveil::values::canonical_text(ty, c)
        .unwrap_or_else(|e| panic!("canonical {ty:?} not accepted: {e}"));
    assert_eq!(again, c, "canonical {ty:?} text is not a fixed point");
    let bin = pgveil::values::text_to_binary(ty, c)
        .unwrap_or_else(|e| panic!("canonical {ty:?} has no binary form: {e}"));
    let back = pgveil::values::binary_to_text(ty, &bin)
        .unwrap_or_else(|e| panic!("binary {ty:?} form not read back: {e}"));
    assert_eq!(back, c, "{ty:?} text -> binary -> text differs");
}
