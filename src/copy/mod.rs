//! Streaming codec for `COPY … FROM STDIN` / `COPY … TO STDOUT` in text and CSV formats.
//!
//! The proxy must encrypt the tagged fields of every row a client streams into a table, and
//! decrypt them on the way out, without ever holding the whole stream. CopyData messages split
//! rows at arbitrary byte positions (inside an escape, inside a quoted CSV field), so this module
//! re-implements PostgreSQL's own line splitter (`CopyReadLineText`) and field parsers
//! (`CopyReadAttributesText` / `CopyReadAttributesCSV`) as a resumable state machine: if the proxy
//! split a row differently from the server, a tagged value could reach the database unencrypted.
//!
//! Only tagged fields are decoded and re-encoded; every other byte (untagged fields, delimiters,
//! the header, the original line terminator) is forwarded verbatim, so the server sees exactly
//! what the client sent apart from the tagged values.
//!
//! Where PostgreSQL versions disagree, the choice here is the fail-closed one:
//! - `\.` in text format must be alone on its line (PostgreSQL 18 rule; 15–17 silently truncate
//!   the line instead); otherwise the stream is refused.
//! - `\.` alone on a line ends the data in both formats (PostgreSQL ≤ 17; 18 reads it as a CSV
//!   value). The marker and everything after it are dropped rather than forwarded, which is what
//!   the server would have done with them, and never lets untransformed rows through.
//!
//! Pure: no I/O, no logging. Errors carry line numbers and field indexes, never row contents.

use thiserror::Error;

mod binary;
mod field;
mod line;
#[cfg(test)]
mod tests;

pub use binary::BinaryTransformer;
use field::{decode_csv, decode_text, render_csv, render_text, split_csv, split_text, Span};
use line::Splitter;

/// Default cap on one buffered row; a client streaming a row without end would otherwise make
/// the proxy buffer without bound.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Errors of the COPY codec. Messages never include data values.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CopyError {
    #[error("invalid COPY options: {0}")]
    Options(&'static str),
    #[error("COPY data, line {line}: {msg}")]
    Format { line: u64, msg: &'static str },
    #[error("COPY data, line {line}: expected {expected} fields, found {found}")]
    FieldCount {
        line: u64,
        expected: usize,
        found: usize,
    },
    #[error("COPY data, line {line}: row longer than the limit of {limit} bytes")]
    LineTooLong { line: u64, limit: usize },
    #[error("COPY data, line {line}, field {field} (0-based): {msg}")]
    Field {
        line: u64,
        field: usize,
        msg: String,
    },
    #[error("invalid bytea text value")]
    Bytea,
    #[error("COPY stream already failed or finished")]
    Closed,
}

/// The two textual COPY formats (binary COPY is not transformable here and must be refused by
/// the caller when it touches encrypted columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
}

/// How the COPY byte stream may be parsed given its character encoding.
///
/// PostgreSQL parses COPY byte-wise only for encodings in which every byte < 0x80 is an ASCII
/// character. Client-only encodings such as SJIS or BIG5 embed ASCII bytes (backslash, quote)
/// inside multibyte characters; parsing them byte-wise would split fields differently from the
/// server, so they are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyEncoding {
    /// UTF-8: decoded tagged values are also checked to be valid UTF-8, as the server would.
    Utf8,
    /// Another ASCII-safe encoding (LATIN1, EUC_JP, …): byte-wise parsing is exact.
    AsciiSafe,
    /// An encoding that embeds ASCII bytes in multibyte characters, or an unknown one.
    Unsupported,
}

impl CopyEncoding {
    /// Classifies a PostgreSQL encoding name (as in ParameterStatus `client_encoding` or the COPY
    /// `ENCODING` option). Names are normalised the way PostgreSQL does (case and punctuation are
    /// ignored). Unknown names are `Unsupported`, so that a misclassification fails closed.
    pub fn from_pg_name(name: &str) -> Self {
        let n: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match n.as_str() {
            "utf8" | "unicode" => Self::Utf8,
            "sqlascii" | "eucjp" | "euccn" | "euckr" | "euctw" | "eucjis2004" | "muleinternal"
            | "koi8" | "koi8r" | "koi8u" | "win" | "alt" | "abc" | "tcvn" | "tcvn5712"
            | "vscii" | "win866" | "win874" | "windows866" | "windows874" => Self::AsciiSafe,
            _ => {
                let latin = n
                    .strip_prefix("latin")
                    .and_then(|d| d.parse::<u8>().ok())
                    .is_some_and(|d| (1..=10).contains(&d));
                let iso = n
                    .strip_prefix("iso8859")
                    .and_then(|d| d.parse::<u8>().ok())
                    .is_some_and(|d| (1..=16).contains(&d) && d != 11 && d != 12);
                let win = n
                    .strip_prefix("windows")
                    .or_else(|| n.strip_prefix("win"))
                    .and_then(|d| d.parse::<u16>().ok())
                    .is_some_and(|d| (1250..=1258).contains(&d));
                if latin || iso || win {
                    Self::AsciiSafe
                } else {
                    Self::Unsupported
                }
            }
        }
    }
}

/// The COPY options that change how rows are split and fields decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: u8,
    /// The NULL string, compared with the raw (still escaped/quoted) field text.
    pub null: Vec<u8>,
    /// The `DEFAULT` marker (PostgreSQL 16+), compared like `null`. A field equal to it is not a
    /// value, so it is forwarded untouched and never given to the field function.
    pub default: Option<Vec<u8>>,
    /// The first line is a header: forwarded untouched, not parsed.
    pub header: bool,
    /// CSV only.
    pub quote: u8,
    /// CSV only; equal to `quote` unless `ESCAPE` is given.
    pub escape: u8,
    /// CSV `FORCE_NOT_NULL`, by field index (shorter than the row = false for the rest).
    pub force_not_null: Vec<bool>,
    /// CSV `FORCE_NULL`, by field index.
    pub force_null: Vec<bool>,
    pub encoding: CopyEncoding,
    pub max_line_bytes: usize,
}

impl CopyOptions {
    /// PostgreSQL's text-format defaults: tab delimiter, `\N` for NULL, UTF-8.
    pub fn text() -> Self {
        Self {
            format: CopyFormat::Text,
            delimiter: b'\t',
            null: b"\\N".to_vec(),
            default: None,
            header: false,
            quote: b'"',
            escape: b'"',
            force_not_null: Vec::new(),
            force_null: Vec::new(),
            encoding: CopyEncoding::Utf8,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// PostgreSQL's CSV defaults: comma, unquoted empty string for NULL, `"` as quote and escape.
    pub fn csv() -> Self {
        Self {
            format: CopyFormat::Csv,
            delimiter: b',',
            null: Vec::new(),
            ..Self::text()
        }
    }

    /// Rejects option combinations the server rejects too, plus the ones this byte-wise parser
    /// cannot honour exactly (non-ASCII delimiter/quote, embedding encodings).
    fn validate(&self) -> Result<(), CopyError> {
        let e = |m| Err(CopyError::Options(m));
        let csv = self.format == CopyFormat::Csv;
        if self.encoding == CopyEncoding::Unsupported {
            return e("the client encoding is not supported for COPY through the proxy");
        }
        if self.max_line_bytes == 0 {
            return e("max_line_bytes must be positive");
        }
        if !self.delimiter.is_ascii() || matches!(self.delimiter, b'\r' | b'\n') {
            return e("delimiter must be an ASCII character other than newline or carriage return");
        }
        let markers = std::iter::once(&self.null).chain(self.default.as_ref());
        for m in markers {
            if m.iter().any(|&b| b == b'\r' || b == b'\n') {
                return e("NULL and DEFAULT strings cannot contain newline or carriage return");
            }
            if m.contains(&self.delimiter) {
                return e("the delimiter must not appear in the NULL or DEFAULT string");
            }
            if csv && m.contains(&self.quote) {
                return e("the quote character must not appear in the NULL or DEFAULT string");
            }
        }
        if self.default.as_ref() == Some(&self.null) {
            return e("NULL and DEFAULT strings cannot be the same");
        }
        if csv {
            for c in [self.quote, self.escape] {
                if !c.is_ascii() || matches!(c, b'\r' | b'\n' | 0) {
                    return e("quote and escape must be ASCII characters other than newline");
                }
            }
            if self.quote == self.delimiter {
                return e("delimiter and quote must be different");
            }
        } else {
            if b"\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(&self.delimiter) {
                return e("text-format delimiter cannot be a backslash, period, letter or digit");
            }
            if self
                .force_null
                .iter()
                .chain(&self.force_not_null)
                .any(|&b| b)
            {
                return e("FORCE_NULL and FORCE_NOT_NULL are CSV-only");
            }
        }
        Ok(())
    }
}

/// A field transform: receives the field index and its decoded value (`None` for NULL) and returns
/// the new decoded value (`None` for NULL), or an error message that must not contain the value.
pub type FieldFn<'a> = dyn FnMut(usize, Option<&[u8]>) -> Result<Option<Vec<u8>>, String> + 'a;

/// `\x` followed by lowercase hex: the text form of a `bytea` as the server reads and writes it
/// with the default `bytea_output = hex`.
pub fn bytea_hex(bytes: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(2 + bytes.len() * 2);
    out.extend_from_slice(b"\\x");
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
    out
}

/// Parses the text form of a `bytea` (what `byteain` accepts): the hex form `\x…` (whitespace
/// allowed between byte pairs) or the legacy escape form (`\\`, `\ooo`, other bytes literal).
pub fn parse_bytea_text(v: &[u8]) -> Result<Vec<u8>, CopyError> {
    if let Some(hex) = v.strip_prefix(b"\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut i = 0;
        while i < hex.len() {
            if matches!(hex[i], b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
                continue;
            }
            let hi = hex
                .get(i)
                .and_then(|&c| hex_val(c))
                .ok_or(CopyError::Bytea)?;
            let lo = hex
                .get(i + 1)
                .and_then(|&c| hex_val(c))
                .ok_or(CopyError::Bytea)?;
            out.push(hi << 4 | lo);
            i += 2;
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' {
            out.push(v[i]);
            i += 1;
        } else if v.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let d = v.get(i + 1..i + 4).ok_or(CopyError::Bytea)?;
            if !matches!(d[0], b'0'..=b'3') || !d[1..].iter().all(|c| matches!(c, b'0'..=b'7')) {
                return Err(CopyError::Bytea);
            }
            out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// `\.` seen: the rest of the input is dropped, as the server would ignore it.
    Ended,
    Closed,
}

/// Streaming COPY row transformer (see the module docs).
pub struct CopyTransformer {
    opts: CopyOptions,
    fields: Vec<bool>,
    any_transformed: bool,
    splitter: Splitter,
    /// Unconsumed input; always starts at the beginning of the current partial row.
    buf: Vec<u8>,
    line_no: u64,
    state: State,
    spans: Vec<Span>,
    scratch: Vec<u8>,
}

/// Shows no buffered data: the buffer holds row values.
impl std::fmt::Debug for CopyTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyTransformer")
            .field("format", &self.opts.format)
            .field("fields", &self.fields.len())
            .field("line_no", &self.line_no)
            .field("buffered_bytes", &self.buf.len())
            .field("state", &self.state)
            .finish()
    }
}

impl CopyTransformer {
    /// `fields[i]` says whether field `i` of every row is given to the field function; its length
    /// is the number of fields each row must have (the COPY column list).
    pub fn new(opts: CopyOptions, fields: Vec<bool>) -> Result<Self, CopyError> {
        opts.validate()?;
        Ok(Self {
            splitter: Splitter::new(&opts),
            any_transformed: fields.iter().any(|&t| t),
            opts,
            fields,
            buf: Vec::new(),
            line_no: 0,
            state: State::Running,
            spans: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Lines seen so far (header included), as in the server's "COPY t, line N".
    pub fn line_number(&self) -> u64 {
        self.line_no
    }

    /// Whether the `\.` end-of-data marker has been seen.
    pub fn saw_end_marker(&self) -> bool {
        self.state == State::Ended
    }

    /// Feeds one CopyData payload and returns the transformed bytes of every row completed so far
    /// (possibly empty); a partial row stays buffered. After an error the transformer is closed.
    pub fn feed(&mut self, data: &[u8], f: &mut FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        match self.state {
            State::Closed => return Err(CopyError::Closed),
            State::Ended => return Ok(Vec::new()),
            State::Running => {}
        }
        self.buf.extend_from_slice(data);
        self.run(false, f)
    }

    /// End of data (CopyDone): flushes a final row without terminator; errors if the stream
    /// ends inside a quoted CSV field.
    pub fn finish(&mut self, f: &mut FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        match self.state {
            State::Closed => Err(CopyError::Closed),
            State::Ended => {
                self.state = State::Closed;
                Ok(Vec::new())
            }
            State::Running => {
                let out = self.run(true, f);
                self.state = State::Closed;
                self.buf = Vec::new();
                out
            }
        }
    }

    fn run(&mut self, eof: bool, f: &mut FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        let r = self.drain_lines(eof, f);
        if r.is_err() {
            self.state = State::Closed;
            self.buf = Vec::new();
        }
        r
    }

    fn drain_lines(&mut self, eof: bool, f: &mut FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        let limit = self.opts.max_line_bytes;
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let next = self
                .splitter
                .next_line(&self.buf, start, eof)
                .map_err(|msg| CopyError::Format {
                    line: self.line_no + 1,
                    msg,
                })?;
            let Some((content_end, line_end)) = next else {
                break;
            };
            self.line_no += 1;
            let line_no = self.line_no;
            if line_end - start > limit {
                return Err(CopyError::LineTooLong {
                    line: line_no,
                    limit,
                });
            }
            let line = &self.buf[start..content_end];
            let term = &self.buf[content_end..line_end];
            if line == b"\\." {
                self.state = State::Ended;
                self.buf = Vec::new();
                return Ok(out);
            }
            if self.opts.format == CopyFormat::Text && line.starts_with(b"\\.") {
                return Err(CopyError::Format {
                    line: line_no,
                    msg: "end-of-copy marker corrupt",
                });
            }
            let row_start = out.len();
            if line_no == 1 && self.opts.header {
                out.extend_from_slice(line);
            } else {
                transform_row(
                    &self.opts,
                    &self.fields,
                    self.any_transformed,
                    line,
                    line_no,
                    &mut self.spans,
                    &mut self.scratch,
                    &mut out,
                    f,
                )?;
            }
            out.extend_from_slice(term);
            if term.is_empty() && out.len() == row_start && !line.is_empty() {
                // A final row without terminator whose one field became empty: the server
                // reads an empty final line as no row at all, so terminate it to keep the row.
                out.extend_from_slice(self.splitter.terminator());
            }
            start = line_end;
        }
        self.buf.drain(..start);
        self.splitter.pos -= start.min(self.splitter.pos);
        if self.buf.len() > limit {
            return Err(CopyError::LineTooLong {
                line: self.line_no + 1,
                limit,
            });
        }
        Ok(out)
    }
}

/// Splits, checks and rewrites one data row into `out` (terminator excluded).
#[allow(clippy::too_many_arguments)]
fn transform_row(
    opts: &CopyOptions,
    fields: &[bool],
    any_transformed: bool,
    line: &[u8],
    line_no: u64,
    spans: &mut Vec<Span>,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
    f: &mut FieldFn<'_>,
) -> Result<(), CopyError> {
    spans.clear();
    let csv = opts.format == CopyFormat::Csv;
    if csv {
        split_csv(line, opts.delimiter, opts.quote, opts.escape, spans)
            .map_err(|msg| CopyError::Format { line: line_no, msg })?;
    } else {
        split_text(line, opts.delimiter, spans);
    }
    // A zero-column COPY accepts only empty rows; otherwise counts must match exactly.
    let found = if fields.is_empty() && line.is_empty() {
        0
    } else {
        spans.len()
    };
    if found != fields.len() {
        return Err(CopyError::FieldCount {
            line: line_no,
            expected: fields.len(),
            found,
        });
    }
    if !any_transformed {
        out.extend_from_slice(line);
        return Ok(());
    }
    let single = fields.len() == 1;
    let mut pos = 0;
    for (i, span) in spans.iter().enumerate() {
        if !fields[i] {
            continue;
        }
        out.extend_from_slice(&line[pos..span.start]);
        pos = span.end;
        let raw = &line[span.start..span.end];
        let field_err = |msg: &str| CopyError::Field {
            line: line_no,
            field: i,
            msg: msg.to_owned(),
        };
        if !span.quoted && opts.default.as_deref() == Some(raw) {
            out.extend_from_slice(raw);
            continue;
        }
        let force = |v: &[bool]| v.get(i).copied().unwrap_or(false);
        let value = if !span.quoted && raw == opts.null.as_slice() {
            force(&opts.force_not_null).then_some(opts.null.as_slice())
        } else {
            scratch.clear();
            if csv {
                decode_csv(raw, opts.quote, opts.escape, scratch);
            } else {
                decode_text(raw, scratch);
            }
            if force(&opts.force_null) && *scratch == opts.null {
                None
            } else {
                Some(scratch.as_slice())
            }
        };
        if let Some(v) = value {
            // The server rejects these after de-escaping; the proxy must not turn them into
            // ciphertext the server would then accept.
            if v.contains(&0) {
                return Err(field_err("invalid byte sequence: NUL byte in value"));
            }
            if opts.encoding == CopyEncoding::Utf8 && std::str::from_utf8(v).is_err() {
                return Err(field_err("invalid byte sequence for encoding UTF8"));
            }
        }
        let new = f(i, value).map_err(|msg| CopyError::Field {
            line: line_no,
            field: i,
            msg,
        })?;
        render_field(new.as_deref(), opts, i, single, out).map_err(field_err)?;
    }
    out.extend_from_slice(&line[pos..]);
    Ok(())
}

/// Writes field `i`'s new value. Under FORCE_NOT_NULL the server reads the
/// unquoted NULL string as a value; only its quoted form, and only with
/// FORCE_NULL too, reads back as NULL (fuzz finding: written unquoted, a NULL
/// became an empty string at rest).
fn render_field(
    new: Option<&[u8]>,
    opts: &CopyOptions,
    i: usize,
    single: bool,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    let force = |v: &[bool]| v.get(i).copied().unwrap_or(false);
    let csv = opts.format == CopyFormat::Csv;
    match new {
        None if csv && force(&opts.force_not_null) => {
            if !force(&opts.force_null) {
                return Err("NULL cannot be written under FORCE_NOT_NULL");
            }
            out.push(opts.quote);
            out.extend_from_slice(&opts.null);
            out.push(opts.quote);
        }
        None => out.extend_from_slice(&opts.null),
        Some(v) if csv => {
            if force(&opts.force_null) && v == opts.null {
                return Err("value equals the NULL string under FORCE_NULL");
            }
            render_csv(v, opts, single, out);
        }
        Some(v) => render_text(v, opts, out)?,
    }
    Ok(())
}
