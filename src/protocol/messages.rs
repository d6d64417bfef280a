//! Decoders and encoders for the messages pgveil looks inside.
//!
//! `pgwire`'s message types are used for the structured extended-protocol
//! messages (Parse, Bind, RowDescription, ParameterDescription); small
//! messages whose pgwire decoders impose limits unsuited to a proxy (Query is
//! capped at 10 kB there) are read by hand. Every function takes one complete
//! frame as produced by [`super::next_frame`].

use bytes::{BufMut, BytesMut};
use pgwire::messages::data::{FieldDescription, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{Bind, Parse};
use pgwire::messages::Message;

use super::{patch_len, put_cstr, take_cstr, ProtocolError};

/// A bounds-checked reader over one message body. pgwire's own decoders
/// assume well-formed input (they panic on a short buffer), so pgveil
/// validates every byte itself and uses pgwire's types only as containers.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(frame: &'a [u8], what: &'static str) -> Result<Self, ProtocolError> {
        let buf = frame.get(5..).ok_or(ProtocolError::Malformed(what))?;
        Ok(Reader { buf, what })
    }
    fn err(&self) -> ProtocolError {
        ProtocolError::Malformed(self.what)
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.err());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn count(&mut self) -> Result<usize, ProtocolError> {
        usize::try_from(self.i16()?).map_err(|_| self.err())
    }
    fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        let (s, rest) = take_cstr(self.buf).ok_or(self.err())?;
        self.buf = rest;
        Ok(s)
    }
    fn opt_cstr(&mut self) -> Result<Option<String>, ProtocolError> {
        let s = self.cstr()?;
        Ok((!s.is_empty()).then(|| s.to_string()))
    }
    fn end(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err())
        }
    }
}

fn encode<M: Message>(m: &M, out: &mut BytesMut, what: &'static str) -> Result<(), ProtocolError> {
    m.encode(out).map_err(|_| ProtocolError::Malformed(what))
}

/// The SQL text of a Query ('Q') frame.
pub fn query_text(frame: &[u8]) -> Result<&str, ProtocolError> {
    let body = frame.get(5..).ok_or(ProtocolError::Malformed("Query"))?;
    match take_cstr(body) {
        Some((s, [])) => Ok(s),
        _ => Err(ProtocolError::Malformed("Query")),
    }
}

pub fn put_query(out: &mut BytesMut, sql: &str) {
    let start = out.len();
    out.put_u8(b'Q');
    out.put_i32(0);
    put_cstr(out, sql);
    patch_len(out, start);
}

pub fn decode_parse(frame: &[u8]) -> Result<Parse, ProtocolError> {
    let mut r = Reader::new(frame, "Parse")?;
    let name = r.opt_cstr()?;
    let query = r.cstr()?.to_string();
    let n = r.count()?;
    let mut oids = Vec::with_capacity(n.min(r.buf.len() / 4));
    for _ in 0..n {
        oids.push(r.i32()? as u32);
    }
    r.end()?;
    Ok(Parse::new(name, query, oids))
}

pub fn encode_parse(p: &Parse, out: &mut BytesMut) -> Result<(), ProtocolError> {
    encode(p, out, "Parse")
}

pub fn decode_bind(frame: &[u8]) -> Result<Bind, ProtocolError> {
    let mut r = Reader::new(frame, "Bind")?;
    let portal = r.opt_cstr()?;
    let stmt = r.opt_cstr()?;
    let nf = r.count()?;
    let mut formats = Vec::with_capacity(nf.min(r.buf.len() / 2));
    for _ in 0..nf {
        formats.push(r.i16()?);
    }
    let np = r.count()?;
    let mut params = Vec::with_capacity(np.min(r.buf.len() / 4));
    for _ in 0..np {
        let len = r.i32()?;
        params.push(match len {
            -1 => None,
            l if l >= 0 => Some(bytes::Bytes::copy_from_slice(r.bytes(l as usize)?)),
            _ => return Err(r.err()),
        });
    }
    let nr = r.count()?;
    let mut results = Vec::with_capacity(nr.min(r.buf.len() / 2));
    for _ in 0..nr {
        results.push(r.i16()?);
    }
    r.end()?;
    Ok(Bind::new(portal, stmt, formats, params, results))
}

/// Result-column format codes of a Bind, without copying its parameters.
pub fn bind_result_formats(frame: &[u8]) -> Result<Vec<i16>, ProtocolError> {
    let mut r = Reader::new(frame, "Bind")?;
    r.cstr()?;
    r.cstr()?;
    let nf = r.count()?;
    r.bytes(nf * 2)?;
    for _ in 0..r.count()? {
        let len = r.i32()?;
        if len > 0 {
            r.bytes(len as usize)?;
        } else if len < -1 {
            return Err(r.err());
        }
    }
    let nr = r.count()?;
    let mut results = Vec::with_capacity(nr.min(r.buf.len() / 2));
    for _ in 0..nr {
        results.push(r.i16()?);
    }
    r.end()?;
    Ok(results)
}

pub fn encode_bind(b: &Bind, out: &mut BytesMut) -> Result<(), ProtocolError> {
    encode(b, out, "Bind")
}

pub fn decode_row_description(frame: &[u8]) -> Result<RowDescription, ProtocolError> {
    let mut r = Reader::new(frame, "RowDescription")?;
    let n = r.count()?;
    let mut fields = Vec::with_capacity(n.min(r.buf.len() / 19));
    for _ in 0..n {
        let name = r.cstr()?.to_string();
        let table = r.i32()?;
        let attnum = r.i16()?;
        let ty = r.i32()? as u32;
        let size = r.i16()?;
        let modifier = r.i32()?;
        let format = r.i16()?;
        fields.push(FieldDescription::new(
            name, table, attnum, ty, size, modifier, format,
        ));
    }
    r.end()?;
    Ok(RowDescription::new(fields))
}

pub fn encode_row_description(r: &RowDescription, out: &mut BytesMut) -> Result<(), ProtocolError> {
    encode(r, out, "RowDescription")
}

pub fn decode_parameter_description(frame: &[u8]) -> Result<ParameterDescription, ProtocolError> {
    let mut r = Reader::new(frame, "ParameterDescription")?;
    let n = r.count()?;
    let mut types = Vec::with_capacity(n.min(r.buf.len() / 4));
    for _ in 0..n {
        types.push(r.i32()? as u32);
    }
    r.end()?;
    Ok(ParameterDescription::new(types))
}

pub fn encode_parameter_description(
    p: &ParameterDescription,
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    encode(p, out, "ParameterDescription")
}

/// (portal, statement) names of a Bind ('B') frame, without decoding the
/// parameters.
pub fn bind_names(frame: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let mut r = Reader::new(frame, "Bind")?;
    let portal = r.cstr()?;
    let stmt = r.cstr()?;
    Ok((portal, stmt))
}

/// (kind, name) of a Describe ('D') or Close ('C') frame; kind is b'S' or b'P'.
pub fn describe_or_close(frame: &[u8]) -> Result<(u8, &str), ProtocolError> {
    let kind = *frame
        .get(5)
        .ok_or(ProtocolError::Malformed("Describe/Close"))?;
    if kind != b'S' && kind != b'P' {
        return Err(ProtocolError::Malformed("Describe/Close"));
    }
    match take_cstr(&frame[6..]) {
        Some((name, [])) => Ok((kind, name)),
        _ => Err(ProtocolError::Malformed("Describe/Close")),
    }
}

/// The function OID of a FunctionCall ('F') frame.
pub fn function_call_oid(frame: &[u8]) -> Result<u32, ProtocolError> {
    let mut r = Reader::new(frame, "FunctionCall")?;
    Ok(r.i32()? as u32)
}

/// Portal name of an Execute ('E') frame.
pub fn execute_portal(frame: &[u8]) -> Result<&str, ProtocolError> {
    match frame.get(5..).and_then(take_cstr) {
        Some((name, rest)) if rest.len() == 4 => Ok(name),
        _ => Err(ProtocolError::Malformed("Execute")),
    }
}

/// Authentication request code of an 'R' frame (0 = Ok, 10 = SASL, ...).
pub fn auth_code(frame: &[u8]) -> Result<i32, ProtocolError> {
    let b = frame
        .get(5..9)
        .ok_or(ProtocolError::Malformed("Authentication"))?;
    Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Rewrites an AuthenticationSASL frame without the `-PLUS` (channel
/// binding) mechanisms: the client's TLS session ends at the proxy, so a
/// binding to it could never verify upstream. Returns None when nothing is
/// left to offer.
pub fn strip_sasl_plus(frame: &[u8]) -> Result<Option<BytesMut>, ProtocolError> {
    let mut rest = frame
        .get(9..)
        .ok_or(ProtocolError::Malformed("AuthenticationSASL"))?;
    let mut keep = Vec::new();
    loop {
        let (m, r) = take_cstr(rest).ok_or(ProtocolError::Malformed("AuthenticationSASL"))?;
        if m.is_empty() {
            break;
        }
        if !m.ends_with("-PLUS") {
            keep.push(m);
        }
        rest = r;
    }
    if keep.is_empty() {
        return Ok(None);
    }
    let mut out = BytesMut::new();
    out.put_u8(b'R');
    out.put_i32(0);
    out.put_i32(10);
    for m in keep {
        put_cstr(&mut out, m);
    }
    out.put_u8(0);
    patch_len(&mut out, 0);
    Ok(Some(out))
}

/// (pid, secret) of a BackendKeyData frame.
pub fn backend_key(frame: &[u8]) -> Result<(i32, Vec<u8>), ProtocolError> {
    let b = frame
        .get(5..)
        .ok_or(ProtocolError::Malformed("BackendKeyData"))?;
    if b.len() < 8 {
        return Err(ProtocolError::Malformed("BackendKeyData"));
    }
    let pid = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Ok((pid, b[4..].to_vec()))
}

/// The transaction status byte of a ReadyForQuery frame.
pub fn ready_status(frame: &[u8]) -> u8 {
    frame.get(5).copied().unwrap_or(b'I')
}

/// The `ROWS` count at the end of a CommandComplete tag (`SELECT 3`,
/// `INSERT 0 5`, `COPY 10`); 0 when the tag carries none.
pub fn command_rows(frame: &[u8]) -> u64 {
    let tag = frame
        .get(5..)
        .and_then(take_cstr)
        .map(|(s, _)| s)
        .unwrap_or("");
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn sasl_plus_is_stripped() {
        let mut body = 10i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let f = frame(b'R', &body);
        let out = strip_sasl_plus(&f).unwrap().unwrap();
        let mut want = 10i32.to_be_bytes().to_vec();
        want.extend_from_slice(b"SCRAM-SHA-256\0\0");
        assert_eq!(&out[..], &frame(b'R', &want)[..]);

        let mut only_plus = 10i32.to_be_bytes().to_vec();
        only_plus.extend_from_slice(b"SCRAM-SHA-256-PLUS\0\0");
        assert!(strip_sasl_plus(&frame(b'R', &only_plus)).unwrap().is_none());
        assert!(strip_sasl_plus(&frame(b'R', &10i32.to_be_bytes())).is_err());
    }

    #[test]
    fn query_and_parse_round_trip() {
        let mut out = BytesMut::new();
        put_query(&mut out, "SELECT 1");
        assert_eq!(query_text(&out).unwrap(), "SELECT 1");
        assert!(query_text(&frame(b'Q', b"no terminator")).is_err());

        let p = Parse::new(Some("s1".into()), "SELECT $1".into(), vec![25]);
        let mut b = BytesMut::new();
        encode_parse(&p, &mut b).unwrap();
        assert_eq!(decode_parse(&b).unwrap(), p);
        assert!(decode_parse(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn small_message_helpers() {
        assert_eq!(command_rows(&frame(b'C', b"INSERT 0 5\0")), 5);
        assert_eq!(command_rows(&frame(b'C', b"BEGIN\0")), 0);
        assert_eq!(
            describe_or_close(&frame(b'D', b"Sfoo\0")).unwrap(),
            (b'S', "foo")
        );
        assert!(describe_or_close(&frame(b'D', b"Xfoo\0")).is_err());
        assert_eq!(execute_portal(&frame(b'E', b"p\0\0\0\0\0")).unwrap(), "p");
        assert!(execute_portal(&frame(b'E', b"p\0")).is_err());
    }
}
