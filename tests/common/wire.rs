//! Hand-built protocol messages, for tests that must send what no driver would send.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Protocol 3.0 StartupMessage.
pub fn startup(user: &str, db: &str) -> Vec<u8> {
    startup_with(&[("user", user), ("database", db)])
}

/// A StartupMessage with arbitrary parameters.
pub fn startup_with(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608_i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    m.extend(body);
    m
}

/// An untagged pre-startup packet with a request code (SSLRequest = 80877103 …).
pub fn request(code: i32) -> Vec<u8> {
    let mut m = 8_i32.to_be_bytes().to_vec();
    m.extend(code.to_be_bytes());
    m
}

pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;

/// A tagged message with a correct length.
pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend(((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A simple Query.
pub fn query(sql: &str) -> Vec<u8> {
    let mut b = sql.as_bytes().to_vec();
    b.push(0);
    msg(b'Q', &b)
}

/// A tag followed by an arbitrary (possibly invalid) length field and no body.
pub fn header(tag: u8, len: i32) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend(len.to_be_bytes());
    m
}

/// Reads one backend message; `Ok(None)` on EOF at a message boundary.
pub async fn read_msg(s: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < 5 {
        let n = s.read(&mut head[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if !(4..=64 * 1024 * 1024).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("backend sent length {len}"),
        ));
    }
    let mut body = vec![0u8; len as usize - 4];
    s.read_exact(&mut body).await?;
    Ok(Some((head[0], body)))
}

/// Reads messages until the peer closes (or resets, or `limit` passes), returning them and
/// whether the connection was closed within the limit.
pub async fn read_until_close(s: &mut TcpStream, limit: Duration) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut out = Vec::new();
    let res = tokio::time::timeout(limit, async {
        loop {
            match read_msg(s).await {
                Ok(Some(m)) => out.push(m),
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    (out, res.is_ok())
}

/// Fields of an ErrorResponse/NoticeResponse body, keyed by field type ('C', 'S', 'M' …).
pub fn fields(body: &[u8]) -> BTreeMap<char, String> {
    let mut map = BTreeMap::new();
    let mut rest = body;
    while let Some((&t, tail)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        map.insert(
            t as char,
            String::from_utf8_lossy(&tail[..end]).into_owned(),
        );
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    map
}

/// The SQLSTATEs of the ErrorResponses among `msgs`.
pub fn error_codes(msgs: &[(u8, Vec<u8>)]) -> Vec<String> {
    msgs.iter()
        .filter(|(t, _)| *t == b'E')
        .filter_map(|(_, b)| fields(b).get(&'C').cloned())
        .collect()
}

/// Whether `msgs` holds a FATAL ErrorResponse with SQLSTATE `code`.
pub fn has_fatal(msgs: &[(u8, Vec<u8>)], code: &str) -> bool {
    msgs.iter().any(|(t, b)| {
        if *t != b'E' {
            return false;
        }
        let f = fields(b);
        let sev = f.get(&'V').or_else(|| f.get(&'S')).map(String::as_str);
        f.get(&'C').map(String::as_str) == Some(code) && sev == Some("FATAL")
    })
}

/// Opens a session as a trust-authenticated role and reads up to ReadyForQuery.
pub async fn login_trust(port: u16, user: &str, db: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to proxy");
    s.write_all(&startup(user, db)).await.expect("send startup");
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read_msg(&mut s).await {
                Ok(Some((b'Z', _))) => return Ok(()),
                Ok(Some((b'E', body))) => return Err(format!("login failed: {:?}", fields(&body))),
                Ok(Some((b'R', body))) if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                    return Err(format!("unexpected auth request {body:?} for a trust role"))
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("closed during login".to_string()),
                Err(e) => return Err(format!("read during login: {e}")),
            }
        }
    })
    .await;
    match ready {
        Ok(Ok(())) => s,
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("login timed out"),
    }
}

/// Sends a simple query on a logged-in raw session and collects messages up to ReadyForQuery.
pub async fn simple_query(s: &mut TcpStream, sql: &str) -> Vec<(u8, Vec<u8>)> {
    s.write_all(&query(sql)).await.expect("send query");
    let mut out = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read_msg(s).await {
                Ok(Some(m)) => {
                    let end = m.0 == b'Z';
                    out.push(m);
                    if end {
                        return;
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(done.is_ok(), "query timed out");
    out
}
