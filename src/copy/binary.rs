//! Streaming codec for `COPY … (FORMAT binary)`, in both directions.
//!
//! Drivers use binary COPY for bulk loads (asyncpg's `copy_records_to_table`
//! always does; psycopg does when asked), so refusing it for tables with
//! encrypted columns refused their main bulk path. The format is simple and
//! unambiguous, unlike text and CSV: a signature, flags and a header
//! extension, then per tuple an `int16` field count and, per field, an
//! `int32` length (`-1` for NULL) and that many bytes; an `int16` of `-1`
//! ends the data. Every length is explicit, so the proxy and the server
//! cannot split a tuple differently.
//!
//! Only tagged fields are decoded and re-encoded; the header and every other
//! field are forwarded byte for byte. Where the server would reject the data
//! (bad signature, OIDs, a wrong field count, a negative length other than
//! `-1`, bytes after the trailer), this codec refuses it first: a stream it
//! cannot follow exactly must never reach the server half-transformed.
//!
//! Pure: no I/O, no logging. Errors carry tuple numbers and field indexes,
//! never values.

use super::{CopyError, FieldFn};

/// `PGCOPY\n\377\r\n\0`: the fixed start of every binary COPY stream.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Signature, flags (`int32`) and header extension length (`int32`).
const HEADER_FIXED: usize = SIGNATURE.len() + 8;
/// Flag bit 16: each tuple carries an OID, which PostgreSQL ≥ 12 rejects.
const FLAG_OIDS: u32 = 1 << 16;
/// The high 16 bits are critical flags: a reader must refuse unknown ones.
const CRITICAL_FLAGS: u32 = 0xffff_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Tuples,
    /// The trailer was seen: nothing may follow.
    Ended,
    Closed,
}

/// Streaming binary COPY tuple transformer (see the module docs).
pub struct BinaryTransformer {
    fields: Vec<bool>,
    max_tuple_bytes: usize,
    /// Unconsumed input; always starts at a header or tuple boundary.
    buf: Vec<u8>,
    tuple_no: u64,
    state: State,
}

/// Shows no buffered data: the buffer holds row values.
impl std::fmt::Debug for BinaryTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryTransformer")
            .field("fields", &self.fields.len())
            .field("tuple_no", &self.tuple_no)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn format_err(tuple: u64, msg: &'static str) -> CopyError {
    CopyError::Format { line: tuple, msg }
}

fn i16_at(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl BinaryTransformer {
    /// `fields[i]`: field i is transformed (given to the field function);
    /// the others pass through. `max_tuple_bytes` bounds what is buffered
    /// for one tuple.
    pub fn new(fields: Vec<bool>, max_tuple_bytes: usize) -> Self {
        BinaryTransformer {
            fields,
            max_tuple_bytes: max_tuple_bytes.max(1),
            buf: Vec::new(),
            tuple_no: 0,
            state: State::Header,
        }
    }

    /// Consumes one chunk of the stream (split anywhere); returns what to
    /// send on: every complete header or tuple, transformed.
    pub fn feed(&mut self, data: &[u8], f: &mut FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        if self.state == State::Closed {
            return Err(CopyError::Closed);
        }
        self.buf.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.buf.len() + 64);
        match self.process(&mut out, f) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.state = State::Closed;
                self.buf.clear();
                Err(e)
            }
        }
    }

    /// End of the stream. PostgreSQL accepts a stream that stops at a
    /// tuple boundary without the trailer; anything partial is refused.
    pub fn finish(&mut self, f: &mut FieldFn<'_>) -> Result<Vec<u8>, CopyError> {
        let out = self.feed(&[], f)?;
        let partial = !self.buf.is_empty();
        self.state = State::Closed;
        self.buf.clear();
        if partial {
            return Err(format_err(
                self.tuple_no + 1,
                "the binary COPY data ends inside a header or tuple",
            ));
        }
        Ok(out)
    }

    fn process(&mut self, out: &mut Vec<u8>, f: &mut FieldFn<'_>) -> Result<(), CopyError> {
        let mut buf = std::mem::take(&mut self.buf);
        let res = self.consume(&buf, out, f);
        if let Ok(pos) = res {
            buf.drain(..pos);
        }
        self.buf = buf;
        res?;
        if self.buf.len() > self.max_tuple_bytes {
            return Err(CopyError::LineTooLong {
                line: self.tuple_no + 1,
                limit: self.max_tuple_bytes,
            });
        }
        Ok(())
    }

    /// Transforms every complete header or tuple of `buf`; returns how many
    /// bytes that used.
    fn consume(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        f: &mut FieldFn<'_>,
    ) -> Result<usize, CopyError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            let used = match self.state {
                State::Header => header_len(rest)?,
                State::Tuples => self.tuple(rest, out, f)?,
                State::Ended if rest.is_empty() => None,
                State::Ended => {
                    return Err(format_err(
                        self.tuple_no,
                        "data after the binary COPY trailer",
                    ))
                }
                State::Closed => return Err(CopyError::Closed),
            };
            let Some(n) = used else { break };
            if self.state == State::Header {
                out.extend_from_slice(&rest[..n]);
                self.state = State::Tuples;
            }
            pos += n;
        }
        Ok(pos)
    }

    /// One tuple (or the trailer) at the start of `b`, written to `out`;
    /// `None` while it is incomplete.
    fn tuple(
        &mut self,
        b: &[u8],
        out: &mut Vec<u8>,
        f: &mut FieldFn<'_>,
    ) -> Result<Option<usize>, CopyError> {
        let Some(count) = i16_at(b, 0) else {
            return Ok(None);
        };
        let no = self.tuple_no + 1;
        if count == -1 {
            out.extend_from_slice(&b[..2]);
            self.state = State::Ended;
            return Ok(Some(2));
        }
        if usize::try_from(count).ok() != Some(self.fields.len()) {
            return Err(CopyError::FieldCount {
                line: no,
                expected: self.fields.len(),
                found: usize::try_from(count).unwrap_or(0),
            });
        }
        // First find the whole tuple, so a transform never runs twice.
        let mut spans = Vec::with_capacity(self.fields.len());
        let mut p = 2;
        for _ in 0..self.fields.len() {
            let Some(len) = i32_at(b, p) else {
                return Ok(None);
            };
            let start = p + 4;
            let end = match len {
                -1 => start,
                n if n >= 0 => start + n as usize,
                _ => return Err(format_err(no, "a field length is negative")),
            };
            if end > b.len() {
                return Ok(None);
            }
            spans.push((len >= 0, start, end));
            p = end;
        }
        out.extend_from_slice(&b[..2]);
        for (i, &(present, start, end)) in spans.iter().enumerate() {
            if !self.fields[i] {
                out.extend_from_slice(&b[start - 4..end]);
                continue;
            }
            let value = present.then(|| &b[start..end]);
            match f(i, value).map_err(|msg| CopyError::Field {
                line: no,
                field: i,
                msg,
            })? {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    let len = i32::try_from(v.len())
                        .map_err(|_| format_err(no, "a transformed field is too long"))?;
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&v);
                }
            }
        }
        self.tuple_no = no;
        Ok(Some(p))
    }
}

/// The length of the complete header at the start of `b`; `None` while it
/// is incomplete.
fn header_len(b: &[u8]) -> Result<Option<usize>, CopyError> {
    let sig = b.len().min(SIGNATURE.len());
    if b[..sig] != SIGNATURE[..sig] {
        return Err(format_err(0, "the binary COPY signature is not recognized"));
    }
    if b.len() < HEADER_FIXED {
        return Ok(None);
    }
    let flags = i32_at(b, SIGNATURE.len()).unwrap_or(0) as u32;
    if flags & FLAG_OIDS != 0 {
        return Err(format_err(0, "binary COPY with OIDs is not supported"));
    }
    if flags & CRITICAL_FLAGS != 0 {
        return Err(format_err(
            0,
            "unrecognized critical flags in the binary COPY header",
        ));
    }
    let ext = i32_at(b, SIGNATURE.len() + 4).unwrap_or(-1);
    let Ok(ext) = usize::try_from(ext) else {
        return Err(format_err(
            0,
            "invalid binary COPY header (negative extension length)",
        ));
    };
    let total = HEADER_FIXED.saturating_add(ext);
    Ok((b.len() >= total).then_some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&0i32.to_be_bytes());
        h.extend_from_slice(&0i32.to_be_bytes());
        h
    }

    fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                None => t.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    t.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    t.extend_from_slice(v);
                }
            }
        }
        t
    }

    fn upper(_: usize, v: Option<&[u8]>) -> Result<Option<Vec<u8>>, String> {
        Ok(v.map(|v| v.to_ascii_uppercase()))
    }

    fn stream() -> Vec<u8> {
        let mut s = header();
        s.extend(tuple(&[Some(b"\x00\x00\x00\x01"), Some(b"abc")]));
        s.extend(tuple(&[Some(b"\x00\x00\x00\x02"), None]));
        s.extend(tuple(&[None, Some(b"")]));
        s.extend_from_slice(&(-1i16).to_be_bytes());
        s
    }

    fn expected() -> Vec<u8> {
        let mut s = header();
        s.extend(tuple(&[Some(b"\x00\x00\x00\x01"), Some(b"ABC")]));
        s.extend(tuple(&[Some(b"\x00\x00\x00\x02"), None]));
        s.extend(tuple(&[None, Some(b"")]));
        s.extend_from_slice(&(-1i16).to_be_bytes());
        s
    }

    /// Every split point gives the same output as one chunk: CopyData
    /// messages may cut a stream anywhere.
    #[test]
    fn any_split_gives_the_same_output() {
        let s = stream();
        for cut in 0..=s.len() {
            for cut2 in cut..=s.len() {
                let mut t = BinaryTransformer::new(vec![false, true], 1 << 20);
                let mut out = t.feed(&s[..cut], &mut upper).unwrap();
                out.extend(t.feed(&s[cut..cut2], &mut upper).unwrap());
                out.extend(t.feed(&s[cut2..], &mut upper).unwrap());
                out.extend(t.finish(&mut upper).unwrap());
                assert_eq!(out, expected(), "cuts at {cut}, {cut2}");
            }
        }
    }

    #[test]
    fn transform_runs_once_per_field_even_when_a_tuple_arrives_in_pieces() {
        let s = stream();
        let mut calls = 0;
        let mut count = |_: usize, v: Option<&[u8]>| {
            calls += 1;
            Ok(v.map(<[u8]>::to_vec))
        };
        let mut t = BinaryTransformer::new(vec![false, true], 1 << 20);
        for b in s.chunks(1) {
            t.feed(b, &mut count).unwrap();
        }
        t.finish(&mut count).unwrap();
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_missing_trailer_at_a_tuple_boundary_is_accepted_but_a_partial_tuple_is_not() {
        let s = stream();
        let no_trailer = &s[..s.len() - 2];
        let mut t = BinaryTransformer::new(vec![false, true], 1 << 20);
        t.feed(no_trailer, &mut upper).unwrap();
        assert!(t.finish(&mut upper).is_ok());
        let mut t = BinaryTransformer::new(vec![false, true], 1 << 20);
        t.feed(&no_trailer[..no_trailer.len() - 1], &mut upper)
            .unwrap();
        assert!(matches!(
            t.finish(&mut upper),
            Err(CopyError::Format { .. })
        ));
    }

    #[test]
    fn malformed_streams_are_refused_before_anything_tagged_passes() {
        let with = |mutate: &dyn Fn(&mut Vec<u8>)| {
            let mut s = stream();
            mutate(&mut s);
            let mut t = BinaryTransformer::new(vec![false, true], 1 << 20);
            t.feed(&s, &mut upper).and_then(|_| t.finish(&mut upper))
        };
        // Signature.
        assert!(with(&|s| s[0] = b'X').is_err());
        // OIDs flag (bit 16) and unknown critical flags; low bits are not critical.
        assert!(with(&|s| s[12] = 1).is_err());
        assert!(with(&|s| s[14] = 1).is_ok());
        assert!(with(&|s| s[11] = 0x80).is_err());
        // Negative extension length.
        assert!(with(&|s| s[15] = 0xff).is_err());
        // Field count differs from the plan.
        assert!(matches!(
            with(&|s| s[HEADER_FIXED + 1] = 3),
            Err(CopyError::FieldCount { expected: 2, .. })
        ));
        // A length below -1.
        assert!(with(
            &|s| s[HEADER_FIXED + 2..HEADER_FIXED + 6].copy_from_slice(&(-2i32).to_be_bytes())
        )
        .is_err());
        // Bytes after the trailer.
        assert!(with(&|s| s.push(0)).is_err());
        // Truncated header.
        let mut t = BinaryTransformer::new(vec![true], 1 << 20);
        t.feed(&SIGNATURE[..5], &mut upper).unwrap();
        assert!(t.finish(&mut upper).is_err());
    }

    #[test]
    fn header_extension_is_forwarded_verbatim() {
        let mut s = SIGNATURE.to_vec();
        s.extend_from_slice(&0i32.to_be_bytes());
        s.extend_from_slice(&3i32.to_be_bytes());
        s.extend_from_slice(b"ext");
        s.extend(tuple(&[Some(b"q")]));
        let mut t = BinaryTransformer::new(vec![true], 1 << 20);
        let out = t.feed(&s, &mut upper).unwrap();
        assert_eq!(&out[..HEADER_FIXED + 3], &s[..HEADER_FIXED + 3]);
        assert_eq!(&out[HEADER_FIXED + 3..], &tuple(&[Some(b"Q")])[..]);
    }

    #[test]
    fn a_tuple_larger_than_the_limit_is_refused_and_the_stream_closes() {
        let mut s = header();
        s.extend(tuple(&[Some(&[7u8; 100][..])]));
        let mut t = BinaryTransformer::new(vec![true], 50);
        assert!(matches!(
            t.feed(&s[..80], &mut upper),
            Err(CopyError::LineTooLong { .. })
        ));
        assert_eq!(t.feed(&s[80..], &mut upper), Err(CopyError::Closed));
    }

    #[test]
    fn a_field_error_names_tuple_and_field_not_the_value() {
        let mut fail = |_: usize, _: Option<&[u8]>| Err("not a date".to_string());
        let mut t = BinaryTransformer::new(vec![false, true], 1 << 20);
        let e = t.feed(&stream(), &mut fail).unwrap_err();
        assert_eq!(
            e,
            CopyError::Field {
                line: 1,
                field: 1,
                msg: "not a date".into()
            }
        );
        assert!(!e.to_string().contains("abc"));
    }
}
