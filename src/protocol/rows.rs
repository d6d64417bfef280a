//! DataRow decoding and encoding, and the small frames the session builds
//! itself (Describe, a parameterless Bind, CopyData, CopyFail, Terminate).
//!
//! DataRow is read by hand rather than through pgwire: it is the hottest
//! message pgveil rewrites, and borrowing each value straight from the
//! frame avoids one allocation per value.

use bytes::{BufMut, BytesMut};

use super::{patch_len, put_cstr, ProtocolError};

const DATA_ROW: &str = "DataRow";

/// The values of one DataRow frame, borrowed from it (`None` = SQL NULL).
pub struct DataRowValues<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> DataRowValues<'a> {
    /// Number of columns the row announces.
    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

/// Starts reading a DataRow frame (tag, length and column count checked).
pub fn data_row_values(frame: &[u8]) -> Result<DataRowValues<'_>, ProtocolError> {
    let body = frame.get(5..).ok_or(ProtocolError::Malformed(DATA_ROW))?;
    let n = body.get(..2).ok_or(ProtocolError::Malformed(DATA_ROW))?;
    let n = i16::from_be_bytes([n[0], n[1]]);
    let left = usize::try_from(n).map_err(|_| ProtocolError::Malformed(DATA_ROW))?;
    Ok(DataRowValues {
        rest: &body[2..],
        left,
    })
}

impl<'a> Iterator for DataRowValues<'a> {
    type Item = Result<Option<&'a [u8]>, ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let bad = || Some(Err(ProtocolError::Malformed(DATA_ROW)));
        let Some(len) = self.rest.get(..4) else {
            self.left = 0;
            return bad();
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        self.rest = &self.rest[4..];
        if len < 0 {
            return Some(Ok(None));
        }
        let l = len as usize;
        let Some(v) = self.rest.get(..l) else {
            self.left = 0;
            return bad();
        };
        self.rest = &self.rest[l..];
        Some(Ok(Some(v)))
    }
}

/// Builds a DataRow frame value by value.
pub struct DataRowWriter {
    out: BytesMut,
}

impl DataRowWriter {
    /// A row of `columns` values; `size_hint` is the expected frame size.
    pub fn new(columns: usize, size_hint: usize) -> Self {
        let mut out = BytesMut::with_capacity(size_hint + 7);
        out.put_u8(b'D');
        out.put_i32(0);
        out.put_i16(i16::try_from(columns).unwrap_or(i16::MAX));
        DataRowWriter { out }
    }

    pub fn push(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.out.put_i32(-1),
            Some(v) => {
                self.out.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                self.out.extend_from_slice(v);
            }
        }
    }

    pub fn finish(mut self) -> BytesMut {
        patch_len(&mut self.out, 0);
        self.out
    }
}

/// A text-format DataRow as strings (pgveil's own catalog queries). Fails
/// on a malformed row instead of guessing: a catalog read that cannot be
/// trusted must not be used.
pub fn text_row(frame: &[u8]) -> Result<Vec<Option<String>>, ProtocolError> {
    data_row_values(frame)?
        .map(|v| v.map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned())))
        .collect()
}

/// Describe ('D') of a statement (`kind` b'S') or portal (b'P').
pub fn put_describe(out: &mut BytesMut, kind: u8, name: &str) {
    let start = out.len();
    out.put_u8(b'D');
    out.put_i32(0);
    out.put_u8(kind);
    put_cstr(out, name);
    patch_len(out, start);
}

/// A Bind of portal `portal` to statement `stmt` with no parameters and
/// default result formats.
pub fn put_bind_no_params(out: &mut BytesMut, portal: &str, stmt: &str) {
    let start = out.len();
    out.put_u8(b'B');
    out.put_i32(0);
    put_cstr(out, portal);
    put_cstr(out, stmt);
    out.put_i16(0);
    out.put_i16(0);
    out.put_i16(0);
    patch_len(out, start);
}

/// An Execute of `portal` returning at most `max_rows` rows (0 = all).
pub fn put_execute(out: &mut BytesMut, portal: &str, max_rows: i32) {
    let start = out.len();
    out.put_u8(b'E');
    out.put_i32(0);
    put_cstr(out, portal);
    out.put_i32(max_rows);
    patch_len(out, start);
}

/// A CopyData frame carrying `payload`.
pub fn copy_data(payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(payload.len() + 5);
    out.put_u8(b'd');
    out.put_i32(0);
    out.extend_from_slice(payload);
    patch_len(&mut out, 0);
    out
}

/// The overall format code (0 textual, 1 binary) of a CopyInResponse,
/// CopyOutResponse or CopyBothResponse frame; `None` when it is malformed.
pub fn copy_response_format(frame: &[u8]) -> Option<u8> {
    match frame.first() {
        Some(b'G' | b'H' | b'W') if frame.len() >= 6 => frame.get(5).copied(),
        _ => None,
    }
}

/// A CopyFail frame with `message`.
pub fn copy_fail(message: &str) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u8(b'f');
    out.put_i32(0);
    put_cstr(&mut out, message);
    patch_len(&mut out, 0);
    out
}

/// The Terminate frame.
pub const TERMINATE: &[u8] = b"X\0\0\0\x04";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_response_format_reads_the_overall_code() {
        assert_eq!(copy_response_format(b"G\0\0\0\x07\x01\0\0"), Some(1));
        assert_eq!(copy_response_format(b"H\0\0\0\x07\0\0\0"), Some(0));
        assert_eq!(copy_response_format(b"G\0\0\0"), None);
        assert_eq!(copy_response_format(b"D\0\0\0\x07\x01\0\0"), None);
    }

    fn row(values: &[Option<&[u8]>]) -> BytesMut {
        let mut w = DataRowWriter::new(values.len(), 64);
        for v in values {
            w.push(*v);
        }
        w.finish()
    }

    #[test]
    fn data_row_round_trips() {
        let vals: [Option<&[u8]>; 4] = [Some(b"a"), None, Some(b""), Some(b"\\x00ff")];
        let f = row(&vals);
        assert_eq!(
            u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize,
            f.len() - 1
        );
        let got: Vec<_> = data_row_values(&f)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, vals.to_vec());
        assert_eq!(
            text_row(&f).unwrap(),
            vec![
                Some("a".into()),
                None,
                Some(String::new()),
                Some("\\x00ff".into())
            ]
        );
    }

    #[test]
    fn truncated_or_negative_rows_are_errors() {
        let f = row(&[Some(b"abcdef")]);
        for cut in 5..f.len() {
            let r: Result<Vec<_>, _> = data_row_values(&f[..cut]).and_then(|v| v.collect());
            assert!(r.is_err(), "cut at {cut}");
        }
        let mut neg = BytesMut::from(&b"D\0\0\0\x06"[..]);
        neg.put_i16(-1);
        assert!(data_row_values(&neg).is_err());
    }

    #[test]
    fn small_frames_are_well_formed() {
        let mut d = BytesMut::new();
        put_describe(&mut d, b'S', "s1");
        assert_eq!(&d[..], b"D\0\0\0\x08Ss1\0");
        let mut b = BytesMut::new();
        put_bind_no_params(&mut b, "", "x");
        assert_eq!(
            crate::protocol::next_frame(&b, crate::protocol::Direction::Frontend, 1 << 20).unwrap(),
            Some(b.len())
        );
        assert_eq!(&copy_fail("no")[..], b"f\0\0\0\x07no\0");
        assert_eq!(&copy_data(b"1\n")[..], b"d\0\0\0\x061\n");
    }
}
