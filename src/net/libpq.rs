//! Connection parameters the way libpq resolves them, for the commands that
//! connect to a database themselves (`check --upstream`, `explain
//! --upstream`): the URL first, then `PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, then the
//! password file (`PGPASSFILE` or `~/.pgpass`).
//!
//! Why not hand the URL to tokio-postgres: it does not read the libpq
//! environment or the password file, and knows only three sslmodes. An
//! operator expects `check` to connect exactly as `psql` would.
//!
//! Pure: the environment and the password file's text are passed in.

use std::path::PathBuf;

use super::SslMode;

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnParams {
    /// A host name, an address, or a Unix-socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
}

impl ConnParams {
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }
}

/// Resolves `url` (`postgres://[user[:password]@][host][:port][/dbname][?sslmode=…&sslrootcert=…&host=…&port=…]`,
/// any part optional) against the environment `env` and the password file
/// text `pgpass`.
pub fn resolve(
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
    pgpass: Option<&str>,
) -> Result<ConnParams, String> {
    let u = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if u.scheme() != "postgres" && u.scheme() != "postgresql" {
        return Err(format!("`{url}` must start with postgres://"));
    }
    let decode = pct_decode;
    let mut host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .map(|h| decode(h).trim_matches(['[', ']']).to_string());
    let mut sslmode = None;
    let mut sslrootcert = None;
    let mut query_port: Option<u16> = None;
    for (k, v) in u.query_pairs() {
        match k.as_ref() {
            "sslmode" => {
                sslmode = Some(SslMode::parse(&v).ok_or_else(|| unknown_mode(&v))?);
            }
            "sslrootcert" => sslrootcert = Some(PathBuf::from(v.as_ref())),
            "host" => host = Some(v.into_owned()),
            "port" => {
                query_port = Some(v.parse().map_err(|_| format!("port `{v}` is not a port"))?)
            }
            other => return Err(format!("unknown connection parameter `{other}`")),
        }
    }
    let host = host
        .or_else(|| env("PGHOST"))
        .unwrap_or_else(|| "localhost".to_string());
    let port = match u.port().or(query_port) {
        Some(p) => p,
        None => match env("PGPORT") {
            Some(p) => p
                .parse()
                .map_err(|_| format!("PGPORT `{p}` is not a port"))?,
            None => 5432,
        },
    };
    let user = Some(u.username())
        .filter(|s| !s.is_empty())
        .map(decode)
        .or_else(|| env("PGUSER"))
        .unwrap_or_else(|| "postgres".to_string());
    let dbname = Some(u.path().trim_start_matches('/'))
        .filter(|s| !s.is_empty())
        .map(decode)
        .or_else(|| env("PGDATABASE"))
        .unwrap_or_else(|| user.clone());
    let sslmode = match sslmode {
        Some(m) => m,
        None => match env("PGSSLMODE") {
            Some(m) => SslMode::parse(&m).ok_or_else(|| unknown_mode(&m))?,
            None => SslMode::Prefer,
        },
    };
    let password = u
        .password()
        .map(decode)
        .or_else(|| env("PGPASSWORD"))
        .or_else(|| pgpass.and_then(|t| pgpass_lookup(t, &host, port, &dbname, &user)));
    Ok(ConnParams {
        sslrootcert: sslrootcert.or_else(|| env("PGSSLROOTCERT").map(PathBuf::from)),
        host,
        port,
        user,
        password,
        dbname,
        sslmode,
    })
}

/// `%XX` decoding of a URL part (a socket directory in the host, `@` in a
/// password); an invalid escape is kept as written.
pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unknown_mode(m: &str) -> String {
    format!("sslmode `{m}` unknown; use disable, allow, prefer, require, verify-ca or verify-full")
}

/// The password of the first matching `.pgpass` line
/// (`hostname:port:database:username:password`, `*` matching anything,
/// `\:` and `\\` escaped). A Unix-socket connection matches `localhost`.
pub fn pgpass_lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        let [h, p, d, u, pw] = fields.as_slice() else {
            continue;
        };
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        if m(h, host) && m(p, &port) && m(d, db) && m(u, user) {
            return Some(pw.clone());
        }
    }
    None
}

/// Splits on unescaped `:` into at most five fields, unescaping `\:` and `\\`.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

/// Where the password file is: `PGPASSFILE`, else `$HOME/.pgpass`.
pub fn pgpass_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_url_wins_over_the_environment() {
        let e = env(&[
            ("PGHOST", "envhost"),
            ("PGPORT", "7777"),
            ("PGUSER", "envuser"),
            ("PGSSLMODE", "require"),
        ]);
        let p = resolve(
            "postgres://u:p%40ss@db.internal:6543/app?sslmode=verify-ca",
            &e,
            None,
        )
        .unwrap();
        assert_eq!(
            (
                p.host.as_str(),
                p.port,
                p.user.as_str(),
                p.password.as_deref(),
                p.dbname.as_str(),
                p.sslmode
            ),
            (
                "db.internal",
                6543,
                "u",
                Some("p@ss"),
                "app",
                SslMode::VerifyCa
            )
        );
    }

    #[test]
    fn the_environment_fills_the_gaps() {
        let e = env(&[
            ("PGHOST", "/var/run/postgresql"),
            ("PGPORT", "7777"),
            ("PGUSER", "ops"),
            ("PGDATABASE", "appdb"),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/ca.pem"),
        ]);
        let p = resolve("postgres://", &e, None).unwrap();
        assert!(p.is_unix_socket());
        assert_eq!(
            (p.port, p.user.as_str(), p.dbname.as_str()),
            (7777, "ops", "appdb")
        );
        assert_eq!(p.sslmode, SslMode::VerifyFull);
        assert_eq!(p.sslrootcert, Some(PathBuf::from("/ca.pem")));
        let p = resolve("postgres://%2Ftmp%2Fpg:5433", &env(&[]), None).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("/tmp/pg", 5433));
        let p = resolve("postgres://?host=/tmp", &env(&[]), None).unwrap();
        assert_eq!(
            (p.host.as_str(), p.user.as_str(), p.sslmode),
            ("/tmp", "postgres", SslMode::Prefer)
        );
        assert!(resolve("postgres://h?sslmode=bogus", &env(&[]), None).is_err());
        assert!(resolve("postgres://h?foo=1", &env(&[]), None).is_err());
    }

    #[test]
    fn pgpass_matches_first_line_with_wildcards_and_escapes() {
        let text = "# comment\nother:5432:*:ops:nope\ndb:*:app*:ops:x\ndb:6543:*:ops:pa\\:ss\\\\1\n*:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, "db", 6543, "app", "ops").as_deref(),
            Some("pa:ss\\1")
        );
        assert_eq!(
            pgpass_lookup(text, "elsewhere", 1, "x", "y").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("/s:1:d:u:p\n", "/sock", 1, "d", "u"), None);
        assert_eq!(
            pgpass_lookup("localhost:1:d:u:p\n", "/sock", 1, "d", "u").as_deref(),
            Some("p")
        );
        let p = resolve(
            "postgres://db:6543/app?sslmode=disable",
            &env(&[("PGUSER", "ops")]),
            Some(text),
        )
        .unwrap();
        assert_eq!(p.password.as_deref(), Some("pa:ss\\1"));
    }
}
