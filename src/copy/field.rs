//! Field splitting, de-escaping and re-encoding for one complete row (text and CSV).

use super::{hex_val, CopyOptions};

/// Raw extent of one field within its line.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
    /// CSV: a quote appeared in the field, so it cannot be the NULL or DEFAULT marker.
    pub(super) quoted: bool,
}

/// Field extents of a text-format row: unescaped delimiters separate fields.
pub(super) fn split_text(line: &[u8], delim: u8, spans: &mut Vec<Span>) {
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c == delim {
            spans.push(Span {
                start,
                end: i,
                quoted: false,
            });
            start = i + 1;
        } else if c == b'\\' {
            i += 1;
        }
        i += 1;
    }
    spans.push(Span {
        start,
        end: line.len(),
        quoted: false,
    });
}

/// De-escapes a raw text-format field exactly as `CopyReadAttributesText` does.
pub(super) fn decode_text(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        // A trailing lone backslash (only possible on a final unterminated row) is dropped.
        let Some(&e) = raw.get(i) else { break };
        i += 1;
        let b = match e {
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                (v & 0xff) as u8
            }
            b'x' => match raw.get(i).and_then(|&d| hex_val(d)) {
                Some(h) => {
                    i += 1;
                    match raw.get(i).and_then(|&d| hex_val(d)) {
                        Some(l) => {
                            i += 1;
                            h << 4 | l
                        }
                        None => h,
                    }
                }
                None => b'x',
            },
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            other => other,
        };
        out.push(b);
    }
}

/// Escapes a value for text format. If the result would read back as the NULL or DEFAULT
/// marker (possible with custom markers), the first byte is written as an octal, then hex,
/// escape instead; those forms differ from each other and from the plain one, so one of the
/// three always avoids both markers. The empty value has no escaped form: when a marker is
/// empty it cannot be spelled, and the row is refused (fuzz finding: written as is, the
/// server would read it as the marker, i.e. DEFAULT or NULL, not the value seen here).
pub(super) fn render_text(
    v: &[u8],
    opts: &CopyOptions,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    if v.is_empty() && (opts.null.is_empty() || opts.default.as_deref() == Some(b"")) {
        return Err("an empty value cannot be written when NULL or DEFAULT is the empty string");
    }
    let start = out.len();
    for form in 0..3 {
        out.truncate(start);
        let mut rest = v;
        if form > 0 {
            if let Some((&first, tail)) = v.split_first() {
                let esc = if form == 1 {
                    format!("\\{first:03o}")
                } else {
                    format!("\\x{first:02x}")
                };
                out.extend_from_slice(esc.as_bytes());
                rest = tail;
            }
        }
        for &b in rest {
            let esc = match b {
                0x08 => b'b',
                0x0c => b'f',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                0x0b => b'v',
                b'\\' => b'\\',
                d if d == opts.delimiter => d,
                _ => {
                    out.push(b);
                    continue;
                }
            };
            out.extend_from_slice(&[b'\\', esc]);
        }
        let r = &out[start..];
        if v.is_empty() || (r != opts.null.as_slice() && opts.default.as_deref() != Some(r)) {
            return Ok(());
        }
    }
    Ok(())
}

/// Field extents of a CSV row, following `CopyReadAttributesCSV`: a field may mix quoted and
/// unquoted parts; delimiters inside quotes are data.
pub(super) fn split_csv(
    line: &[u8],
    delim: u8,
    quote: u8,
    escape: u8,
    spans: &mut Vec<Span>,
) -> Result<(), &'static str> {
    let mut i = 0;
    loop {
        let start = i;
        let mut quoted = false;
        let end;
        let mut found_delim = false;
        'field: loop {
            loop {
                let Some(&c) = line.get(i) else {
                    end = i;
                    break 'field;
                };
                i += 1;
                if c == delim {
                    end = i - 1;
                    found_delim = true;
                    break 'field;
                }
                if c == quote {
                    quoted = true;
                    break;
                }
            }
            loop {
                let Some(&c) = line.get(i) else {
                    return Err("unterminated CSV quoted field");
                };
                i += 1;
                if c == escape && matches!(line.get(i), Some(&n) if n == escape || n == quote) {
                    i += 1;
                    continue;
                }
                if c == quote {
                    break;
                }
            }
        }
        spans.push(Span { start, end, quoted });
        if !found_delim {
            return Ok(());
        }
    }
}

/// Removes CSV quoting from one raw field (already known to be well formed).
pub(super) fn decode_csv(raw: &[u8], quote: u8, escape: u8, out: &mut Vec<u8>) {
    let mut in_quote = false;
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if !in_quote {
            if c == quote {
                in_quote = true;
            } else {
                out.push(c);
            }
        } else if c == escape && matches!(raw.get(i), Some(&n) if n == escape || n == quote) {
            out.push(raw[i]);
            i += 1;
        } else if c == quote {
            in_quote = false;
        } else {
            out.push(c);
        }
    }
}

/// Quotes a value for CSV when the server could otherwise misread it: it contains a delimiter,
/// quote, escape, CR or LF; it equals the NULL or DEFAULT marker; or it is a lone `\.` that
/// would end the data.
pub(super) fn render_csv(v: &[u8], opts: &CopyOptions, single: bool, out: &mut Vec<u8>) {
    let needs_quote = v == opts.null.as_slice()
        || opts.default.as_deref() == Some(v)
        || (single && v == b"\\.")
        || v.iter().any(|&b| {
            b == opts.delimiter || b == opts.quote || b == opts.escape || b == b'\n' || b == b'\r'
        });
    if !needs_quote {
        out.extend_from_slice(v);
        return;
    }
    out.push(opts.quote);
    for &b in v {
        if b == opts.quote || b == opts.escape {
            out.push(opts.escape);
        }
        out.push(b);
    }
    out.push(opts.quote);
}
