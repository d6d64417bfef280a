//! Result sets pgveil answers itself (the admin console): RowDescription,
//! DataRow, CommandComplete and EmptyQueryResponse, all in text format.
//!
//! Pure encoding, no I/O. Why not pgwire's types: these are a handful of
//! bytes each, and every column pgveil reports is text, so a table of
//! strings is the whole model.

use bytes::{BufMut, BytesMut};

use super::rows::DataRowWriter;
use super::{patch_len, put_cstr};

/// OID of `text`: every column the console reports is text.
pub const TEXT_OID: i32 = 25;

/// A small text result: column names and rows of optional strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl TextTable {
    pub fn new(columns: &[&str]) -> Self {
        TextTable {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing trailing cells become NULL, extra ones are
    /// dropped, so a row never disagrees with the RowDescription.
    pub fn push(&mut self, row: Vec<Option<String>>) {
        let mut row = row;
        row.resize(self.columns.len(), None);
        self.rows.push(row);
    }

    /// A two-column `name | value` row.
    pub fn kv(&mut self, name: &str, value: impl ToString) {
        self.push(vec![Some(name.to_string()), Some(value.to_string())]);
    }
}

/// RowDescription of text columns with no table of origin.
pub fn put_text_row_description(out: &mut BytesMut, columns: &[String]) {
    let start = out.len();
    out.put_u8(b'T');
    out.put_i32(0);
    out.put_i16(i16::try_from(columns.len()).unwrap_or(i16::MAX));
    for c in columns {
        put_cstr(out, c);
        out.put_i32(0); // table oid
        out.put_i16(0); // attnum
        out.put_i32(TEXT_OID);
        out.put_i16(-1); // variable length
        out.put_i32(-1); // no type modifier
        out.put_i16(0); // text format
    }
    patch_len(out, start);
}

/// One DataRow of text values (None is SQL NULL).
pub fn put_text_data_row(out: &mut BytesMut, values: &[Option<String>]) {
    let size: usize = values
        .iter()
        .map(|v| 4 + v.as_ref().map_or(0, String::len))
        .sum();
    let mut w = DataRowWriter::new(values.len(), size);
    for v in values {
        w.push(v.as_deref().map(str::as_bytes));
    }
    out.extend_from_slice(&w.finish());
}

/// CommandComplete with `tag` (`SHOW`, `RELOAD`, `SELECT 3`).
pub fn put_command_complete(out: &mut BytesMut, tag: &str) {
    let start = out.len();
    out.put_u8(b'C');
    out.put_i32(0);
    put_cstr(out, tag);
    patch_len(out, start);
}

/// EmptyQueryResponse: the answer to a Query with no statement in it.
pub fn put_empty_query(out: &mut BytesMut) {
    out.put_u8(b'I');
    out.put_i32(4);
}

/// A whole table: RowDescription, one DataRow per row, CommandComplete
/// `SHOW` (as PostgreSQL tags SHOW).
pub fn put_text_table(out: &mut BytesMut, t: &TextTable) {
    put_text_row_description(out, &t.columns);
    for r in &t.rows {
        put_text_data_row(out, r);
    }
    put_command_complete(out, "SHOW");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{next_frame, Direction};

    /// Splits `buf` into frames with the same checks a client-side reader
    /// would apply, so an encoding mistake shows as a framing error.
    fn frames(buf: &[u8]) -> Vec<Vec<u8>> {
        let mut rest = buf;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let n = next_frame(rest, Direction::Backend, 1 << 20)
                .expect("valid frame")
                .expect("complete frame");
            out.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        out
    }

    #[test]
    fn a_table_is_description_rows_and_complete() {
        let mut t = TextTable::new(&["name", "value"]);
        t.kv("version", "abc");
        t.push(vec![Some("null".into())]);
        let mut out = BytesMut::new();
        put_text_table(&mut out, &t);
        let f = frames(&out);
        assert_eq!(f.iter().map(|f| f[0]).collect::<Vec<_>>(), b"TDDC".to_vec());
        let rd = crate::protocol::messages::decode_row_description(&f[0]).unwrap();
        assert_eq!(rd.fields.len(), 2);
        assert_eq!(rd.fields[1].name, "value");
        assert_eq!(rd.fields[0].type_id, TEXT_OID as u32);
        let row = crate::protocol::rows::text_row(&f[1]).unwrap();
        assert_eq!(row, vec![Some("version".into()), Some("abc".into())]);
        let row = crate::protocol::rows::text_row(&f[2]).unwrap();
        assert_eq!(row, vec![Some("null".into()), None]);
        assert_eq!(&f[3][5..], b"SHOW\0");
    }

    #[test]
    fn empty_query_and_complete() {
        let mut out = BytesMut::new();
        put_empty_query(&mut out);
        put_command_complete(&mut out, "RELOAD");
        let f = frames(&out);
        assert_eq!(f[0], b"I\0\0\0\x04");
        assert_eq!(&f[1][5..], b"RELOAD\0");
    }
}
