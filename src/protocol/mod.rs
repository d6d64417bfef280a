//! Postgres wire protocol (v3) framing and the few messages pgveil acts on.
//!
//! Pure: no I/O. The session layer reads bytes into a buffer and asks
//! [`next_frame`] where the next complete message ends. Every frame is checked
//! (known tag, length >= 4, under the configured cap) before anything looks
//! inside it, so a malformed message becomes a [`ProtocolError`] and a FATAL
//! 08P01, never a panic. Messages pgveil does not act on are forwarded as the
//! original bytes; only the ones it rewrites are decoded (with `pgwire`'s
//! message types where they fit, see [`messages`]).

pub mod messages;
#[cfg(test)]
mod proptests;
pub mod results;
pub mod rows;

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Protocol 3.0 in a StartupMessage.
pub const PROTOCOL_V3: i32 = 196_608;
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// A startup packet is small; anything bigger is hostile or broken.
pub const MAX_STARTUP_LEN: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("invalid message length {len} for message type '{tag}'")]
    BadLength { tag: char, len: i64 },
    #[error("message of type '{tag}' is {len} bytes, over the {cap}-byte limit")]
    TooLarge { tag: char, len: usize, cap: usize },
    #[error("unknown message type 0x{tag:02x}")]
    UnknownTag { tag: u8 },
    #[error("invalid startup packet length {0}")]
    BadStartupLength(i64),
    #[error("unsupported frontend protocol {major}.{minor}")]
    UnsupportedVersion { major: i32, minor: i32 },
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// COPY data whose statement depends on timing pgveil cannot see (see
    /// `session::copy::CopyIn`): the connection closes rather than guess.
    #[error("COPY data pgveil cannot attribute to one statement: {0}")]
    UnattributedCopy(&'static str),
}

/// Which side sent the bytes; the valid tags differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to proxy (frontend messages).
    Frontend,
    /// Server to proxy (backend messages).
    Backend,
}

/// Frontend message tags accepted after startup.
pub fn is_frontend_tag(tag: u8) -> bool {
    matches!(
        tag,
        b'Q' | b'P'
            | b'B'
            | b'E'
            | b'D'
            | b'C'
            | b'H'
            | b'S'
            | b'X'
            | b'F'
            | b'd'
            | b'c'
            | b'f'
            | b'p'
    )
}

/// Backend message tags.
pub fn is_backend_tag(tag: u8) -> bool {
    matches!(
        tag,
        b'R' | b'S'
            | b'K'
            | b'Z'
            | b'T'
            | b'D'
            | b'C'
            | b'E'
            | b'N'
            | b'A'
            | b'1'
            | b'2'
            | b'3'
            | b'n'
            | b's'
            | b't'
            | b'I'
            | b'G'
            | b'H'
            | b'W'
            | b'd'
            | b'c'
            | b'v'
            | b'V'
    )
}

/// Looks at the start of `buf` and returns the total size (tag + length
/// field + body) of the next complete message, `Ok(None)` if more bytes are
/// needed, or an error if the header is invalid. Only the 5-byte header is
/// inspected, so a huge declared length is rejected before it is buffered.
#[inline]
pub fn next_frame(buf: &[u8], dir: Direction, cap: usize) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < 5 {
        // Validate the tag as early as possible: a single garbage byte should
        // not make us wait for four more.
        if let Some(&tag) = buf.first() {
            check_tag(tag, dir)?;
        }
        return Ok(None);
    }
    let tag = buf[0];
    check_tag(tag, dir)?;
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(ProtocolError::BadLength {
            tag: tag as char,
            len: len as i64,
        });
    }
    let total = len as usize + 1;
    if total > cap {
        return Err(ProtocolError::TooLarge {
            tag: tag as char,
            len: total,
            cap,
        });
    }
    if buf.len() < total {
        Ok(None)
    } else {
        Ok(Some(total))
    }
}

#[inline]
fn check_tag(tag: u8, dir: Direction) -> Result<(), ProtocolError> {
    let ok = match dir {
        Direction::Frontend => is_frontend_tag(tag),
        Direction::Backend => is_backend_tag(tag),
    };
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::UnknownTag { tag })
    }
}

/// The first packet of a connection (no tag byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Ssl,
    GssEnc,
    Cancel {
        pid: i32,
        secret: Vec<u8>,
    },
    Startup {
        params: Vec<(String, String)>,
        raw: Vec<u8>,
    },
}

impl StartupPacket {
    pub fn param(&self, key: &str) -> Option<&str> {
        match self {
            StartupPacket::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Validates a startup packet's declared length (the first 4 bytes).
pub fn startup_len(header: [u8; 4]) -> Result<usize, ProtocolError> {
    let len = i32::from_be_bytes(header);
    if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(ProtocolError::BadStartupLength(len as i64));
    }
    Ok(len as usize)
}

/// Parses a complete startup packet, `raw` including its length prefix.
pub fn parse_startup(raw: &[u8]) -> Result<StartupPacket, ProtocolError> {
    if raw.len() < 8 {
        return Err(ProtocolError::BadStartupLength(raw.len() as i64));
    }
    let code = i32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
    match code {
        SSL_REQUEST_CODE if raw.len() == 8 => Ok(StartupPacket::Ssl),
        GSSENC_REQUEST_CODE if raw.len() == 8 => Ok(StartupPacket::GssEnc),
        CANCEL_REQUEST_CODE if raw.len() >= 16 => {
            let pid = i32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
            Ok(StartupPacket::Cancel {
                pid,
                secret: raw[12..].to_vec(),
            })
        }
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {
            Err(ProtocolError::Malformed("startup"))
        }
        _ => {
            let major = code >> 16;
            let minor = code & 0xffff;
            if major != 3 {
                return Err(ProtocolError::UnsupportedVersion { major, minor });
            }
            let mut params = Vec::new();
            let mut rest = &raw[8..];
            loop {
                let (k, r) = take_cstr(rest).ok_or(ProtocolError::Malformed("startup"))?;
                if k.is_empty() {
                    if !r.is_empty() {
                        return Err(ProtocolError::Malformed("startup"));
                    }
                    break;
                }
                let (v, r) = take_cstr(r).ok_or(ProtocolError::Malformed("startup"))?;
                params.push((k.to_string(), v.to_string()));
                rest = r;
            }
            Ok(StartupPacket::Startup {
                params,
                raw: raw.to_vec(),
            })
        }
    }
}

/// Encodes a protocol-3.0 StartupMessage with these parameters (the
/// admin console re-targets a client's startup at a real database).
pub fn encode_startup(params: &[(String, String)]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i32(0);
    out.put_i32(PROTOCOL_V3);
    for (k, v) in params {
        put_cstr(&mut out, k);
        put_cstr(&mut out, v);
    }
    out.put_u8(0);
    let len = out.len() as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.to_vec()
}

/// Splits a NUL-terminated UTF-8 string off the front of `buf`.
pub fn take_cstr(buf: &[u8]) -> Option<(&str, &[u8])> {
    let nul = buf.iter().position(|b| *b == 0)?;
    let s = std::str::from_utf8(&buf[..nul]).ok()?;
    Some((s, &buf[nul + 1..]))
}

/// Severity of a proxy-generated error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

/// Appends an ErrorResponse built by the proxy. Only fixed, value-free text
/// ever goes in here.
pub fn put_error(
    out: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    hint: Option<&str>,
) {
    let sev = match severity {
        Severity::Error => "ERROR",
        Severity::Fatal => "FATAL",
    };
    let start = out.len();
    out.put_u8(b'E');
    out.put_i32(0);
    for (k, v) in [(b'S', sev), (b'V', sev), (b'C', code), (b'M', message)] {
        out.put_u8(k);
        put_cstr(out, v);
    }
    if let Some(h) = hint {
        out.put_u8(b'H');
        put_cstr(out, h);
    }
    out.put_u8(0);
    patch_len(out, start);
}

pub fn put_ready_for_query(out: &mut BytesMut, status: u8) {
    out.put_u8(b'Z');
    out.put_i32(5);
    out.put_u8(status);
}

/// Appends a NUL-terminated string, dropping interior NULs (which the
/// protocol cannot carry).
pub fn put_cstr(out: &mut BytesMut, s: &str) {
    out.extend(s.bytes().filter(|b| *b != 0));
    out.put_u8(0);
}

/// Writes the length field of the message that starts at `start` (its tag).
pub fn patch_len(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// Reads the fields of an ErrorResponse/NoticeResponse body (after the
/// 5-byte header).
pub fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some((&code, r)) = rest.split_first() {
        if code == 0 {
            break;
        }
        match r.iter().position(|b| *b == 0) {
            Some(n) => {
                out.push((code, String::from_utf8_lossy(&r[..n]).into_owned()));
                rest = &r[n + 1..];
            }
            None => break,
        }
    }
    out
}

/// The SQLSTATE of an ErrorResponse frame (whole frame including header).
pub fn error_code(frame: &[u8]) -> Option<String> {
    error_fields(frame.get(5..)?)
        .into_iter()
        .find(|(c, _)| *c == b'C')
        .map(|(_, v)| v)
}

/// Rebuilds an ErrorResponse/NoticeResponse without the fields that can echo
/// row values (detail, hint, context, internal query). For data exceptions
/// (class 22) and constraint violations (class 23), whose primary message
/// itself quotes the offending value (`invalid input syntax for type
/// integer: "123-45-6789"`), the message is replaced by a fixed one; the
/// SQLSTATE, severity and object names survive.
pub fn scrub_error(frame: &[u8]) -> BytesMut {
    let tag = frame.first().copied().unwrap_or(b'E');
    let fields = error_fields(frame.get(5..).unwrap_or_default());
    let code = fields
        .iter()
        .find(|(c, _)| *c == b'C')
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let echoes = code.starts_with("22") || code.starts_with("23");
    let mut out = BytesMut::new();
    out.put_u8(tag);
    out.put_i32(0);
    for (c, v) in fields {
        match c {
            b'D' | b'H' | b'W' | b'q' | b'p' | b'P' => continue,
            b'M' if echoes => {
                out.put_u8(c);
                put_cstr(
                    &mut out,
                    "a value was rejected by the database (details hidden by pgveil for this role)",
                );
            }
            _ => {
                out.put_u8(c);
                put_cstr(&mut out, &v);
            }
        }
    }
    out.put_u8(0);
    patch_len(&mut out, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 1 << 20;

    #[test]
    fn an_encoded_startup_parses_back() {
        let params = vec![
            ("user".to_string(), "ops".to_string()),
            ("database".to_string(), "postgres".to_string()),
        ];
        let raw = encode_startup(&params);
        let StartupPacket::Startup {
            params: back,
            raw: r,
        } = parse_startup(&raw).unwrap()
        else {
            panic!("not a startup packet")
        };
        assert_eq!(back, params);
        assert_eq!(r, raw);
    }

    #[test]
    fn frames_are_delimited_and_validated() {
        let mut b = BytesMut::new();
        b.put_u8(b'Q');
        b.put_i32(4 + 9);
        b.extend_from_slice(b"SELECT 1\0");
        b.put_u8(b'X');
        assert_eq!(next_frame(&b, Direction::Frontend, CAP), Ok(Some(14)));
        assert_eq!(next_frame(&b[..10], Direction::Frontend, CAP), Ok(None));
        assert_eq!(next_frame(&b[14..], Direction::Frontend, CAP), Ok(None));
    }

    #[test]
    fn bad_lengths_and_tags_are_errors() {
        for len in [0i32, 3, -1, i32::MIN] {
            let mut b = vec![b'Q'];
            b.extend_from_slice(&len.to_be_bytes());
            assert!(matches!(
                next_frame(&b, Direction::Frontend, CAP),
                Err(ProtocolError::BadLength { .. })
            ));
        }
        let mut b = vec![b'Q'];
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            next_frame(&b, Direction::Frontend, CAP),
            Err(ProtocolError::TooLarge { .. })
        ));
        assert_eq!(
            next_frame(b"!", Direction::Frontend, CAP),
            Err(ProtocolError::UnknownTag { tag: b'!' })
        );
        // 'T' is a backend message; a client may not send it.
        assert!(next_frame(b"T\0\0\0\x04", Direction::Frontend, CAP).is_err());
        assert!(next_frame(b"T\0\0\0\x06\0\0", Direction::Backend, CAP).is_ok());
    }

    #[test]
    fn startup_packets() {
        let mut raw = vec![0, 0, 0, 0];
        raw.extend_from_slice(&PROTOCOL_V3.to_be_bytes());
        raw.extend_from_slice(b"user\0alice\0database\0db\0\0");
        let n = raw.len() as i32;
        raw[..4].copy_from_slice(&n.to_be_bytes());
        let p = parse_startup(&raw).unwrap();
        assert_eq!(p.param("user"), Some("alice"));
        assert_eq!(p.param("database"), Some("db"));

        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        assert_eq!(parse_startup(&ssl), Ok(StartupPacket::Ssl));

        let mut bad = raw.clone();
        bad.truncate(bad.len() - 1); // missing final terminator
        assert!(parse_startup(&bad).is_err());
        let mut v2 = raw.clone();
        v2[4..8].copy_from_slice(&(2i32 << 16).to_be_bytes());
        assert!(matches!(
            parse_startup(&v2),
            Err(ProtocolError::UnsupportedVersion { .. })
        ));
        assert!(startup_len((-5i32).to_be_bytes()).is_err());
        assert!(startup_len(100_000i32.to_be_bytes()).is_err());
    }

    #[test]
    fn scrubbing_drops_value_bearing_fields() {
        let mut b = BytesMut::new();
        b.put_u8(b'E');
        b.put_i32(0);
        for (k, v) in [
            (b'S', "ERROR"),
            (b'C', "22P02"),
            (
                b'M',
                "invalid input syntax for type integer: \"123-45-6789\"",
            ),
            (b'D', "Key (ssn)=(123-45-6789) already exists."),
            (b'W', "SQL function f: 123-45-6789"),
            (b't', "customers"),
        ] {
            b.put_u8(k);
            put_cstr(&mut b, v);
        }
        b.put_u8(0);
        patch_len(&mut b, 0);
        let s = scrub_error(&b);
        assert!(
            !s.windows(4).any(|w| w == b"6789"),
            "value survived scrubbing"
        );
        assert_eq!(error_code(&s).as_deref(), Some("22P02"));
        assert!(error_fields(&s[5..]).contains(&(b't', "customers".into())));
        assert_eq!(next_frame(&s, Direction::Backend, CAP), Ok(Some(s.len())));
    }

    #[test]
    fn error_response_round_trips() {
        let mut b = BytesMut::new();
        put_error(
            &mut b,
            Severity::Fatal,
            "08P01",
            "bad\0message",
            Some("hint"),
        );
        assert_eq!(next_frame(&b, Direction::Backend, CAP), Ok(Some(b.len())));
        assert_eq!(error_code(&b).as_deref(), Some("08P01"));
        let f = error_fields(&b[5..]);
        assert!(f.contains(&(b'M', "badmessage".to_string())));
        assert!(f.contains(&(b'S', "FATAL".to_string())));
    }
}
