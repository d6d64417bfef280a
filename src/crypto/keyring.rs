//! The keyring: the master keys from which every column key is derived.
//!
//! # File format
//!
//! A keyring is a small TOML document (the same text whether it sits in a
//! file passed with `--keyring FILE` or in the `PGVEIL_KEYRING` environment
//! variable, which is how container secrets usually arrive):
//!
//! ```toml
//! format = 1          # keyring format version; only 1 exists
//! active = 2          # id of the key that encrypts new writes
//!
//! [[key]]
//! id = 1                         # u32, written into every ciphertext header
//! created = 1714000000           # Unix seconds, UTC (informational)
//! material = "<64 hex digits>"   # the 256-bit master key
//!
//! [[key]]
//! id = 2
//! created = 1719000000
//! material = "<64 hex digits>"
//! ```
//!
//! Every key listed stays usable for decryption; `active` only picks the key
//! for new writes. `pgveil keygen --rotate` adds a key with the next id and
//! makes it active, so ids grow with age and the smallest id is the oldest.
//! Retiring a key means re-encrypting its rows first, then deleting its
//! `[[key]]` block by hand; values still written under it become unreadable.
//!
//! # Handling of key material
//!
//! Master keys live in [`Zeroizing`] buffers and are wiped when the keyring is
//! dropped. Parsing goes through `toml`, whose internal buffers we cannot wipe;
//! we do wipe the parsed strings we own, so residue is limited to what the
//! parser allocates internally. No error or `Debug` output ever contains key
//! material: parse errors are built here from scratch (never by echoing the
//! TOML parser's message, which quotes the offending line).
//!
//! Files are created with mode 0600, and [`Keyring::load_file`] refuses a file
//! that group or others may read: a master key readable by other local users
//! defeats the encryption. The environment-variable path has no such check,
//! because there is no file to inspect.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::rules::model::TableName;

/// The environment variable that may hold the keyring text.
pub const ENV_VAR: &str = "PGVEIL_KEYRING";

/// The only keyring format version this build reads and writes.
pub const KEYRING_FORMAT: i64 = 1;

/// Size of a master key and of every derived subkey, in bytes.
pub const KEY_LEN: usize = 32;

/// Largest `created` we accept: 9999-12-31T23:59:59Z. Anything beyond is a
/// typo, and the bound keeps the date formatting below in range.
const MAX_CREATED: i64 = 253_402_300_799;

/// HKDF salt: a fixed domain separator, so keys derived here can never
/// coincide with keys some other tool derives from the same master key.
const HKDF_SALT: &[u8] = b"pgveil column keys v1";

/// Errors loading, parsing, generating or writing a keyring. None of them
/// carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read keyring {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write keyring {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "keyring {} already exists; refusing to overwrite it (use `pgveil keygen --rotate {}` to add a key)",
        path.display(), path.display()
    )]
    AlreadyExists { path: PathBuf },
    #[error("keyring {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error(
        "keyring {} is readable by others or writable by its group (mode {mode:04o}); it holds master keys. Fix: chmod 600 {} (0640/0440 are accepted for a group-owned Kubernetes Secret)",
        path.display(), path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("malformed keyring ({origin}{}): {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Malformed {
        /// The file path or `PGVEIL_KEYRING`.
        origin: String,
        line: Option<usize>,
        reason: String,
    },
    #[error(
        "the keyring already uses the largest key id ({}); no key can be added",
        u32::MAX
    )]
    IdsExhausted,
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// Which subkey to derive from a master key. Each purpose gets its own HKDF
/// label, so compromising one subkey tells nothing about the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// AES-256-GCM-SIV key of a column.
    Encrypt,
    /// HMAC-SHA256 key whose output (truncated) is a deterministic nonce.
    NoncePrf,
    /// HMAC-SHA256 key of the `hash` mask pseudonyms.
    Pseudonym,
    /// HMAC-SHA256 key of data-subject tokens (issue 15), one per ring.
    SubjectToken,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Encrypt => b"aes-256-gcm-siv",
            Purpose::NoncePrf => b"deterministic-nonce-prf",
            Purpose::Pseudonym => b"hash-mask-pseudonym",
            Purpose::SubjectToken => b"subject-token",
        }
    }
}

/// One master key. Material is wiped on drop.
#[derive(Clone)]
struct MasterKey {
    id: u32,
    created: i64,
    material: Zeroizing<[u8; KEY_LEN]>,
}

/// A set of master keys, one of which is active. Immutable once loaded, apart
/// from [`Keyring::rotate`]; shared as a snapshot like the rules.
#[derive(Clone)]
pub struct Keyring {
    /// Sorted by id, ascending; never empty.
    keys: Vec<MasterKey>,
    active: u32,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids and dates only: the material is the one thing never shown.
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                format!(
                    "{} (created {}, material redacted)",
                    k.id,
                    format_utc(k.created)
                )
            })
            .collect();
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("keys", &keys)
            .finish()
    }
}

impl Keyring {
    /// A new keyring holding one random key, id 1, active.
    pub fn generate() -> Result<Self, KeyringError> {
        Ok(Keyring {
            keys: vec![MasterKey {
                id: 1,
                created: now_unix(),
                material: random_key()?,
            }],
            active: 1,
        })
    }

    /// Adds a fresh random key with the next id and makes it active. Older
    /// keys stay for decryption. Returns the new key id.
    pub fn rotate(&mut self) -> Result<u32, KeyringError> {
        let next = self
            .keys
            .iter()
            .map(|k| k.id)
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or(KeyringError::IdsExhausted)?;
        self.keys.push(MasterKey {
            id: next,
            created: now_unix(),
            material: random_key()?,
        });
        self.active = next;
        Ok(next)
    }

    /// The id of the key new writes use.
    pub fn active_id(&self) -> u32 {
        self.active
    }

    /// Every key id, ascending (so the oldest first).
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// The smallest id, i.e. the oldest key. Pseudonyms of the `hash` mask
    /// derive from it so that they survive rotation.
    pub fn oldest_id(&self) -> u32 {
        // `keys` is never empty and sorted; 0 cannot be reached.
        self.keys.first().map(|k| k.id).unwrap_or(self.active)
    }

    /// When a key was created (Unix seconds), if the id exists.
    pub fn created(&self, id: u32) -> Option<i64> {
        self.key(id).map(|k| k.created)
    }

    fn key(&self, id: u32) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Derives a 256-bit subkey of master key `id` for one column and one
    /// purpose, with HKDF-SHA256. `None` if the id is not in the ring.
    ///
    /// The HKDF info is an unambiguous encoding of
    /// `purpose | key id | schema | table | column`: each text part is
    /// prefixed with its length (u32, big endian), the id is 4 bytes big
    /// endian. Without the lengths, `("ab", "c")` and `("a", "bc")` would
    /// share a key.
    pub(crate) fn derive(
        &self,
        id: u32,
        purpose: Purpose,
        table: &TableName,
        column: &str,
    ) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let master = self.key(id)?;
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &master.material[..]);
        let mut info =
            Vec::with_capacity(64 + table.schema.len() + table.name.len() + column.len());
        push_part(&mut info, purpose.label());
        info.extend_from_slice(&id.to_be_bytes());
        push_part(&mut info, table.schema.as_bytes());
        push_part(&mut info, table.name.as_bytes());
        push_part(&mut info, column.as_bytes());
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        // Expanding 32 bytes cannot exceed HKDF's 255 * 32 limit.
        hk.expand(&info, &mut out[..]).ok()?;
        Some(out)
    }

    /// The key of data-subject tokens ([`crate::subject::token`]), derived
    /// from the oldest master key. Not the active one: tokens must stay the
    /// same across rotations, or a subject access report could not match
    /// audit records written before a rotation to the subject.
    pub fn subject_token_key(&self) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let none = TableName {
            schema: String::new(),
            name: String::new(),
        };
        self.derive(self.oldest_id(), Purpose::SubjectToken, &none, "")
    }

    /// The keyring as file text (the format in the module docs). The result
    /// holds key material and is wiped when dropped.
    pub fn to_file_string(&self) -> Zeroizing<String> {
        use std::fmt::Write as _;
        // Reserve enough up front so the buffer never reallocates, which
        // would leave an unwiped copy of earlier keys behind.
        let mut s = Zeroizing::new(String::with_capacity(512 + 192 * self.keys.len()));
        let _ = writeln!(s, "# pgveil keyring: master keys for column encryption.");
        let _ = writeln!(
            s,
            "# SECRET. Keep mode 0600, never commit it, back it up safely:"
        );
        let _ = writeln!(
            s,
            "# values written under a lost key can never be read again."
        );
        let _ = writeln!(s, "format = {KEYRING_FORMAT}");
        let _ = writeln!(s, "active = {}  # key id used for new writes", self.active);
        for k in &self.keys {
            let mut hex_buf = Zeroizing::new([0u8; KEY_LEN * 2]);
            if hex::encode_to_slice(&k.material[..], &mut hex_buf[..]).is_err() {
                continue; // unreachable: the buffer is exactly twice the key
            }
            let hex_str = std::str::from_utf8(&hex_buf[..]).unwrap_or("");
            let _ = writeln!(s, "\n[[key]]");
            let _ = writeln!(s, "id = {}", k.id);
            let _ = writeln!(s, "created = {}  # {}", k.created, format_utc(k.created));
            s.push_str("material = \"");
            s.push_str(hex_str);
            s.push_str("\"\n");
        }
        s
    }

    /// Parses keyring text; `origin` (a path, or `PGVEIL_KEYRING`) only
    /// labels errors.
    pub fn parse(text: &str, origin: &str) -> Result<Keyring, KeyringError> {
        let malformed = |line: Option<usize>, reason: String| KeyringError::Malformed {
            origin: origin.to_string(),
            line,
            reason,
        };
        let mut table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                // Only the position: the parser's own message quotes the
                // offending line, which may be a key.
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                return Err(malformed(
                    line,
                    "not valid TOML (expected `name = value` lines and [[key]] tables, strings in double quotes)"
                        .into(),
                ));
            }
        };
        let res = from_table(&table).map_err(|reason| malformed(None, reason));
        scrub(&mut table);
        res
    }
}

impl FromStr for Keyring {
    type Err = KeyringError;

    /// Parses keyring text that did not come from a file (e.g. the
    /// `PGVEIL_KEYRING` variable); errors are labelled `PGVEIL_KEYRING`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Keyring::parse(s, ENV_VAR)
    }
}

/// Validates a parsed keyring document. Messages name fields and ids, never
/// values of `material`.
fn from_table(t: &toml::Table) -> Result<Keyring, String> {
    for k in t.keys() {
        if !matches!(k.as_str(), "format" | "active" | "key") {
            return Err(format!(
                "unknown top-level entry `{}` (expected format, active, [[key]])",
                short(k)
            ));
        }
    }
    match t.get("format") {
        None => {}
        Some(toml::Value::Integer(KEYRING_FORMAT)) => {}
        Some(toml::Value::Integer(n)) => {
            return Err(format!(
                "format = {n} is not supported; this pgveil reads format {KEYRING_FORMAT}"
            ))
        }
        Some(_) => return Err("`format` must be an integer".into()),
    }
    let active = match t.get("active") {
        Some(toml::Value::Integer(n)) => u32::try_from(*n)
            .map_err(|_| format!("`active` must be a key id between 0 and {}", u32::MAX))?,
        Some(_) => return Err("`active` must be an integer key id".into()),
        None => return Err("missing `active = <key id>`".into()),
    };
    let list = match t.get("key") {
        Some(toml::Value::Array(a)) if !a.is_empty() => a,
        Some(toml::Value::Array(_)) | None => {
            return Err("no keys: add at least one [[key]] table".into())
        }
        Some(_) => return Err("`key` must be an array of [[key]] tables".into()),
    };
    let mut keys: Vec<MasterKey> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let n = i + 1;
        let kt = v
            .as_table()
            .ok_or_else(|| format!("key #{n} is not a [[key]] table"))?;
        for name in kt.keys() {
            if !matches!(name.as_str(), "id" | "created" | "material") {
                return Err(format!(
                    "key #{n}: unknown entry `{}` (expected id, created, material)",
                    short(name)
                ));
            }
        }
        let id = match kt.get("id") {
            Some(toml::Value::Integer(x)) => u32::try_from(*x)
                .map_err(|_| format!("key #{n}: `id` must be between 0 and {}", u32::MAX))?,
            Some(_) => return Err(format!("key #{n}: `id` must be an integer")),
            None => return Err(format!("key #{n}: missing `id`")),
        };
        let created = match kt.get("created") {
            Some(toml::Value::Integer(x)) if (0..=MAX_CREATED).contains(x) => *x,
            Some(toml::Value::Integer(_)) => {
                return Err(format!(
                    "key id {id}: `created` must be Unix seconds between 0 and {MAX_CREATED}"
                ))
            }
            Some(_) => {
                return Err(format!(
                    "key id {id}: `created` must be an integer (Unix seconds)"
                ))
            }
            None => 0,
        };
        let material = match kt.get("material") {
            Some(toml::Value::String(s)) => decode_material(s).ok_or_else(|| {
                format!("key id {id}: `material` must be exactly 64 hex digits (a 256-bit key)")
            })?,
            Some(_) => {
                return Err(format!(
                    "key id {id}: `material` must be a string of 64 hex digits"
                ))
            }
            None => return Err(format!("key id {id}: missing `material`")),
        };
        if keys.iter().any(|k| k.id == id) {
            return Err(format!("key id {id} appears twice"));
        }
        if let Some(other) = keys.iter().find(|k| k.material[..] == material[..]) {
            return Err(format!(
                "keys {} and {id} have the same material; each key must be generated separately",
                other.id
            ));
        }
        keys.push(MasterKey {
            id,
            created,
            material,
        });
    }
    if !keys.iter().any(|k| k.id == active) {
        return Err(format!(
            "`active = {active}` names no [[key]] in this keyring"
        ));
    }
    keys.sort_by_key(|k| k.id);
    Ok(Keyring { keys, active })
}

fn decode_material(s: &str) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let s = s.trim();
    if s.len() != KEY_LEN * 2 {
        return None;
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    hex::decode_to_slice(s, &mut out[..]).ok()?;
    Some(out)
}

/// Wipes the `material` strings of a parsed document before it is dropped.
fn scrub(t: &mut toml::Table) {
    if let Some(toml::Value::Array(list)) = t.get_mut("key") {
        for v in list.iter_mut() {
            if let Some(kt) = v.as_table_mut() {
                for (_, val) in kt.iter_mut() {
                    if let toml::Value::String(s) = val {
                        s.zeroize();
                    }
                }
            }
        }
    }
}

/// Entry names in messages are cut short: a stray pasted key could sit in a
/// name position, and we never print more than a hint of it.
fn short(name: &str) -> String {
    let mut s: String = name.chars().take(24).collect();
    if s.len() < name.len() {
        s.push('…');
    }
    s
}

fn push_part(buf: &mut Vec<u8>, part: &[u8]) {
    // Parts are identifiers (at most 63 bytes in Postgres) or fixed labels.
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(part);
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, KeyringError> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    OsRng
        .try_fill_bytes(&mut k[..])
        .map_err(|e| KeyringError::Random(e.to_string()))?;
    Ok(k)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0).min(MAX_CREATED))
        .unwrap_or(0)
}

/// RFC 3339 UTC rendering of Unix seconds, for the comment next to
/// `created` (civil-from-days, proleptic Gregorian calendar).
fn format_utc(secs: i64) -> String {
    let secs = secs.clamp(0, MAX_CREATED);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";

    fn doc(active: u32, keys: &[(u32, &str)]) -> String {
        let mut s = format!("format = 1\nactive = {active}\n");
        for (id, m) in keys {
            s.push_str(&format!(
                "[[key]]\nid = {id}\ncreated = 1714000000\nmaterial = \"{m}\"\n"
            ));
        }
        s
    }

    fn reason(e: KeyringError) -> String {
        e.to_string()
    }

    #[test]
    fn parses_and_round_trips_through_file_text() {
        let ring: Keyring = doc(2, &[(2, K2), (1, K1)]).parse().unwrap();
        assert_eq!(ring.active_id(), 2);
        assert_eq!(ring.key_ids(), vec![1, 2]);
        assert_eq!(ring.oldest_id(), 1);
        let again = Keyring::parse(&ring.to_file_string(), "t").unwrap();
        assert_eq!(again.key_ids(), vec![1, 2]);
        assert_eq!(again.active_id(), 2);
        assert_eq!(again.created(1), Some(1_714_000_000));
        let t = TableName {
            schema: "public".into(),
            name: "c".into(),
        };
        for id in [1, 2] {
            assert_eq!(
                *ring.derive(id, Purpose::Encrypt, &t, "email").unwrap(),
                *again.derive(id, Purpose::Encrypt, &t, "email").unwrap()
            );
        }
    }

    #[test]
    fn generate_and_rotate() {
        let mut ring = Keyring::generate().unwrap();
        assert_eq!((ring.active_id(), ring.key_ids()), (1, vec![1]));
        assert_eq!(ring.rotate().unwrap(), 2);
        assert_eq!(ring.rotate().unwrap(), 3);
        assert_eq!(
            (ring.active_id(), ring.key_ids(), ring.oldest_id()),
            (3, vec![1, 2, 3], 1)
        );
        let t = TableName {
            schema: "s".into(),
            name: "t".into(),
        };
        let a = ring.derive(1, Purpose::Encrypt, &t, "c").unwrap();
        let b = ring.derive(3, Purpose::Encrypt, &t, "c").unwrap();
        assert_ne!(*a, *b, "rotation must add fresh key material");
        assert!(ring.derive(4, Purpose::Encrypt, &t, "c").is_none());
    }

    #[test]
    fn derivation_separates_purpose_table_column_and_is_unambiguous() {
        let ring: Keyring = doc(1, &[(1, K1)]).parse().unwrap();
        let t = |s: &str, n: &str| TableName {
            schema: s.into(),
            name: n.into(),
        };
        let base = *ring
            .derive(1, Purpose::Encrypt, &t("a", "bc"), "d")
            .unwrap();
        let others = [
            *ring
                .derive(1, Purpose::NoncePrf, &t("a", "bc"), "d")
                .unwrap(),
            *ring
                .derive(1, Purpose::Pseudonym, &t("a", "bc"), "d")
                .unwrap(),
            *ring
                .derive(1, Purpose::Encrypt, &t("ab", "c"), "d")
                .unwrap(),
            *ring
                .derive(1, Purpose::Encrypt, &t("a", "b"), "cd")
                .unwrap(),
            *ring
                .derive(1, Purpose::Encrypt, &t("a", "bc"), "e")
                .unwrap(),
        ];
        for o in others {
            assert_ne!(base, o);
        }
    }

    #[test]
    fn malformed_documents_are_rejected_with_a_reason() {
        let bad_hex = "zz".repeat(32);
        let cases: Vec<(String, &str)> = vec![
            ("active = 1\n[[key]\nid = 1".into(), "line 2"),
            (doc(3, &[(1, K1)]), "names no [[key]]"),
            ("format = 1\nactive = 1\n".into(), "no keys"),
            (doc(1, &[(1, &K1[..62])]), "64 hex digits"),
            (doc(1, &[(1, &bad_hex)]), "64 hex digits"),
            (doc(1, &[(1, K1), (1, K2)]), "appears twice"),
            (doc(1, &[(1, K1), (2, K1)]), "same material"),
            (
                doc(1, &[(1, K1)]).replace("format = 1", "format = 2"),
                "not supported",
            ),
            (doc(1, &[(1, K1)]).replace("id = 1", "id = -1"), "`id`"),
            (
                doc(1, &[(1, K1)]).replace("id = 1", "id = 1\nsecret = 3"),
                "unknown entry `secret`",
            ),
            (
                doc(1, &[(1, K1)]).replace("active = 1", "active = 1\nextra = 1"),
                "unknown top-level",
            ),
            (
                doc(1, &[(1, K1)]).replace("active = 1\n", ""),
                "missing `active",
            ),
            (
                doc(1, &[(1, K1)]).replace("created = 1714000000", "created = \"yesterday\""),
                "`created`",
            ),
        ];
        for (text, want) in cases {
            let msg = reason(Keyring::parse(&text, "ring.toml").unwrap_err());
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
            assert!(msg.contains("ring.toml"), "{msg:?} should name the origin");
        }
    }

    #[test]
    fn errors_and_debug_never_show_key_material() {
        // A key pasted where a number belongs, and a broken TOML line that
        // contains a key: the parser would quote both.
        let t1 = doc(1, &[(1, K1)]).replace("id = 1", &format!("id = \"{K2}\""));
        let t2 = format!("active = 1\n[[key]]\nid = 1\nmaterial = \"{K2}\" junk\n");
        let t3 = doc(1, &[(1, &K2[..60])]);
        for t in [t1, t2, t3] {
            let e = Keyring::parse(&t, "x").unwrap_err();
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(&K2[..16]), "leaked: {shown}");
            }
        }
        let ring: Keyring = doc(2, &[(1, K1), (2, K2)]).parse().unwrap();
        let dbg = format!("{ring:?}");
        assert!(
            dbg.contains("redacted") && dbg.contains("active: 2"),
            "{dbg}"
        );
        for k in [K1, K2] {
            assert!(!dbg.contains(&k[..8]) && !dbg.to_lowercase().contains(&k[40..48]));
        }
        // Also not the raw bytes in decimal array form.
        assert!(!dbg.contains("160, 161"), "{dbg}");
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_714_000_000), "2024-04-24T23:06:40Z");
        assert_eq!(format_utc(MAX_CREATED), "9999-12-31T23:59:59Z");
    }
}
