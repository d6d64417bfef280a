//! Column encryption: AES-256-GCM-SIV under per-column keys, and the stored
//! ciphertext format.
//!
//! # Stored format (the bytes of the `bytea`)
//!
//! ```text
//! version (1 byte, = 1) | key id (u32, big endian) | nonce (12) | ciphertext | tag (16)
//! ```
//!
//! The associated data is `"pgveil" | version | key id | schema | table |
//! column` (text parts length-prefixed). The header is therefore
//! authenticated, and a ciphertext copied into another column or table fails
//! authentication there, on top of the per-column key already differing.
//!
//! # Modes
//!
//! - Deterministic: the nonce is `HMAC-SHA256(prf_key, plaintext)[..12]`,
//!   with a per-column, per-key PRF key distinct from the encryption key. Equal
//!   plaintexts give equal ciphertexts within one column *and key version*, so
//!   during rotation equality must compare against every version
//!   ([`ColumnCipher::encrypt_all_versions`]).
//! - Randomized: a fresh random nonce from the OS per value. GCM-SIV stays
//!   safe even if a nonce ever repeated (it only reveals equality then).
//!
//! Keys are bound to the *names* schema, table and column: renaming any of
//! them in the rules without re-encrypting makes existing values undecryptable.
//!
//! Cached cipher objects hold AES round keys; they are wiped on drop only if
//! the `aes` crate's `zeroize` feature is enabled in the final build.

use std::fmt;

use aes_gcm_siv::aead::AeadInPlace;
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce, Tag};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroize;

use super::keyring::{Keyring, Purpose};
use crate::rules::model::{EncryptMode, TableName};

/// Ciphertext format version written by this build.
pub const FORMAT_VERSION: u8 = 1;
/// Nonce length of AES-GCM-SIV.
pub const NONCE_LEN: usize = 12;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// version + key id + nonce.
pub const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// The shortest valid ciphertext: header and tag around an empty plaintext.
pub const MIN_CIPHERTEXT_LEN: usize = HEADER_LEN + TAG_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Errors of encryption and decryption. They name the column (a rule name)
/// and at most a key id; never a value or key material, so they are safe to
/// send to a client or log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("value is not a pgveil ciphertext: {0}")]
    NotCiphertext(&'static str),
    #[error("ciphertext format version {0} is not supported (this pgveil reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u8),
    #[error(
        "a value of {column} was encrypted under key id {key_id}, which is not in the keyring"
    )]
    UnknownKey { column: String, key_id: u32 },
    #[error(
        "a value of {column} does not decrypt: it was encrypted for another column or table, or it was altered"
    )]
    Authentication { column: String },
    #[error("{column} uses randomized encryption; equality needs deterministic encryption")]
    NotDeterministic { column: String },
    #[error("key id {key_id} is not in the keyring")]
    MissingKey { key_id: u32 },
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("a value of {column} is too large to encrypt")]
    TooLarge { column: String },
}

/// The parsed header of a stored value; borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub version: u8,
    pub key_id: u32,
    pub nonce: &'a [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag (at least `TAG_LEN` long).
    pub body: &'a [u8],
}

/// Splits a stored value into header fields. Checks length and version only;
/// whether it decrypts is for [`ColumnCipher::decrypt`] to find out.
pub fn parse_header(stored: &[u8]) -> Result<Header<'_>, CryptoError> {
    let (&version, rest) = stored
        .split_first()
        .ok_or(CryptoError::NotCiphertext("empty"))?;
    if version != FORMAT_VERSION {
        // Plaintext left behind in a bytea column usually lands here.
        return Err(if stored.len() < MIN_CIPHERTEXT_LEN {
            CryptoError::NotCiphertext("too short")
        } else {
            CryptoError::UnsupportedVersion(version)
        });
    }
    if stored.len() < MIN_CIPHERTEXT_LEN {
        return Err(CryptoError::NotCiphertext("too short"));
    }
    let (id, rest) = rest.split_at(4);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let key_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    let nonce: &[u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::NotCiphertext("too short"))?;
    Ok(Header {
        version,
        key_id,
        nonce,
        body,
    })
}

/// Whether a stored value has a plausible pgveil ciphertext header (length and
/// version). Used by `pgveil check` to count plaintext left in encrypted
/// columns; it proves nothing about authenticity and must never decide what
/// to decrypt.
pub fn looks_like_ciphertext(stored: &[u8]) -> bool {
    parse_header(stored).is_ok()
}

/// The cipher state of one key version of one column.
struct KeyVersion {
    id: u32,
    aead: Aes256GcmSiv,
    /// Keyed once; cloned per value (a copy, no key schedule).
    prf: HmacSha256,
    aad: Vec<u8>,
}

/// Encrypts and decrypts the values of one column. Built once per rules/keys
/// snapshot (all key derivation happens here), then cheap per value.
pub struct ColumnCipher {
    table: TableName,
    column: String,
    /// `schema.table.column`, for errors.
    qualified: String,
    mode: EncryptMode,
    /// Active key first, then the others newest first. Never empty.
    versions: Vec<KeyVersion>,
}

impl fmt::Debug for ColumnCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColumnCipher")
            .field("column", &self.qualified)
            .field("mode", &self.mode)
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl ColumnCipher {
    /// Derives the keys of `table.column` for every key of the ring.
    pub fn new(
        keyring: &Keyring,
        table: &TableName,
        column: &str,
        mode: EncryptMode,
    ) -> Result<Self, CryptoError> {
        let mut ids = keyring.key_ids();
        let active = keyring.active_id();
        // Active first, then newest to oldest: the order equality lists use.
        ids.sort_by_key(|&id| (id != active, std::cmp::Reverse(id)));
        let mut versions = Vec::with_capacity(ids.len());
        for id in ids {
            let missing = || CryptoError::MissingKey { key_id: id };
            let enc_key = keyring
                .derive(id, Purpose::Encrypt, table, column)
                .ok_or_else(missing)?;
            let prf_key = keyring
                .derive(id, Purpose::NoncePrf, table, column)
                .ok_or_else(missing)?;
            let aead = Aes256GcmSiv::new_from_slice(&enc_key[..]).map_err(|_| missing())?;
            let prf = <HmacSha256 as Mac>::new_from_slice(&prf_key[..]).map_err(|_| missing())?;
            versions.push(KeyVersion {
                id,
                aead,
                prf,
                aad: associated_data(id, table, column),
            });
        }
        if versions.is_empty() {
            return Err(CryptoError::MissingKey { key_id: active });
        }
        Ok(ColumnCipher {
            table: table.clone(),
            column: column.to_string(),
            qualified: format!("{table}.{column}"),
            mode,
            versions,
        })
    }

    pub fn table(&self) -> &TableName {
        &self.table
    }

    pub fn column(&self) -> &str {
        &self.column
    }

    pub fn mode(&self) -> EncryptMode {
        self.mode
    }

    /// The key id new values are written under.
    pub fn active_key_id(&self) -> u32 {
        self.versions[0].id
    }

    /// Key ids this cipher can decrypt, active first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.versions.iter().map(|v| v.id).collect()
    }

    /// Encrypts under the active key, in the column's mode.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.seal(&self.versions[0], plaintext)
    }

    /// Deterministic columns only: the ciphertext of `plaintext` under every
    /// key of the ring, active first. While rows written under older keys
    /// remain, `col = x` must become `col IN (<these>)` to find them all.
    pub fn encrypt_all_versions(&self, plaintext: &[u8]) -> Result<Vec<Vec<u8>>, CryptoError> {
        if self.mode != EncryptMode::Deterministic {
            return Err(CryptoError::NotDeterministic {
                column: self.qualified.clone(),
            });
        }
        self.versions
            .iter()
            .map(|v| self.seal(v, plaintext))
            .collect()
    }

    /// Decrypts a stored value, choosing the key by the id in its header.
    pub fn decrypt(&self, stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let h = parse_header(stored)?;
        let v = self
            .versions
            .iter()
            .find(|v| v.id == h.key_id)
            .ok_or_else(|| CryptoError::UnknownKey {
                column: self.qualified.clone(),
                key_id: h.key_id,
            })?;
        // parse_header guarantees body.len() >= TAG_LEN.
        let (ct, tag) = h.body.split_at(h.body.len() - TAG_LEN);
        let mut buf = ct.to_vec();
        match v.aead.decrypt_in_place_detached(
            Nonce::from_slice(h.nonce),
            &v.aad,
            &mut buf,
            Tag::from_slice(tag),
        ) {
            Ok(()) => Ok(buf),
            Err(_) => {
                buf.zeroize();
                Err(CryptoError::Authentication {
                    column: self.qualified.clone(),
                })
            }
        }
    }

    fn seal(&self, v: &KeyVersion, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        match self.mode {
            EncryptMode::Deterministic => {
                let mut mac = v.prf.clone();
                mac.update(plaintext);
                let full = mac.finalize().into_bytes();
                nonce.copy_from_slice(&full[..NONCE_LEN]);
            }
            EncryptMode::Randomized => OsRng
                .try_fill_bytes(&mut nonce)
                .map_err(|_| CryptoError::Random)?,
        }
        let mut out = Vec::with_capacity(MIN_CIPHERTEXT_LEN + plaintext.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&v.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = v
            .aead
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &v.aad, &mut out[HEADER_LEN..])
            .map_err(|_| CryptoError::TooLarge {
                column: self.qualified.clone(),
            })?;
        out.extend_from_slice(&tag);
        Ok(out)
    }
}

/// `"pgveil" | version | key id | len|schema | len|table | len|column`.
fn associated_data(key_id: u32, table: &TableName, column: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + table.schema.len() + table.name.len() + column.len());
    aad.extend_from_slice(b"pgveil");
    aad.push(FORMAT_VERSION);
    aad.extend_from_slice(&key_id.to_be_bytes());
    for part in [
        table.schema.as_bytes(),
        table.name.as_bytes(),
        column.as_bytes(),
    ] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tn(s: &str, n: &str) -> TableName {
        TableName {
            schema: s.into(),
            name: n.into(),
        }
    }

    fn ring() -> Keyring {
        Keyring::generate().unwrap()
    }

    fn cipher(r: &Keyring, table: &str, col: &str, mode: EncryptMode) -> ColumnCipher {
        ColumnCipher::new(r, &tn("public", table), col, mode).unwrap()
    }

    #[test]
    fn round_trip_both_modes_including_empty_and_large() {
        let r = ring();
        for mode in [EncryptMode::Deterministic, EncryptMode::Randomized] {
            let c = cipher(&r, "customers", "email", mode);
            for pt in [&b""[..], b"alice@example.com", &vec![0xAB; 100_000]] {
                let ct = c.encrypt(pt).unwrap();
                assert_eq!(ct.len(), MIN_CIPHERTEXT_LEN + pt.len());
                assert_eq!(ct[0], FORMAT_VERSION);
                assert_eq!(&ct[1..5], &1u32.to_be_bytes());
                assert!(looks_like_ciphertext(&ct));
                if pt.len() >= 8 {
                    assert!(
                        !ct.windows(8).any(|w| w == &pt[..8]),
                        "plaintext visible in ciphertext"
                    );
                }
                assert_eq!(c.decrypt(&ct).unwrap(), pt);
            }
        }
    }

    #[test]
    fn deterministic_is_equal_randomized_differs() {
        let r = ring();
        let d = cipher(&r, "c", "email", EncryptMode::Deterministic);
        assert_eq!(d.encrypt(b"x@y.z").unwrap(), d.encrypt(b"x@y.z").unwrap());
        assert_ne!(d.encrypt(b"x@y.z").unwrap(), d.encrypt(b"x@y.zz").unwrap());
        // Nonces of different plaintexts differ (the PRF is actually applied).
        assert_ne!(
            d.encrypt(b"a").unwrap()[5..17],
            d.encrypt(b"b").unwrap()[5..17]
        );
        // A second cipher built from the same ring agrees: keys are derived,
        // not random per process.
        let d2 = cipher(&r, "c", "email", EncryptMode::Deterministic);
        assert_eq!(d.encrypt(b"q").unwrap(), d2.encrypt(b"q").unwrap());
        let z = cipher(&r, "c", "email", EncryptMode::Randomized);
        let (a, b) = (z.encrypt(b"x@y.z").unwrap(), z.encrypt(b"x@y.z").unwrap());
        assert_ne!(a, b);
        assert_ne!(a[5..17], b[5..17], "fresh nonce per value");
    }

    #[test]
    fn ciphertext_moved_to_other_column_or_table_fails() {
        let r = ring();
        for mode in [EncryptMode::Deterministic, EncryptMode::Randomized] {
            let email = cipher(&r, "customers", "email", mode);
            let ct = email.encrypt(b"alice@example.com").unwrap();
            let elsewhere = [
                ColumnCipher::new(&r, &tn("public", "customers"), "phone", mode).unwrap(),
                ColumnCipher::new(&r, &tn("public", "staff"), "email", mode).unwrap(),
                ColumnCipher::new(&r, &tn("audit", "customers"), "email", mode).unwrap(),
            ];
            for other in elsewhere {
                let err = other.decrypt(&ct).unwrap_err();
                assert!(matches!(err, CryptoError::Authentication { .. }), "{err:?}");
                let msg = err.to_string();
                assert!(
                    msg.contains(&other.qualified) && !msg.contains("alice"),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn any_tampered_byte_fails() {
        let r = ring();
        let c = cipher(&r, "c", "ssn", EncryptMode::Randomized);
        let ct = c.encrypt(b"123-45-6789").unwrap();
        for i in 0..ct.len() {
            let mut t = ct.clone();
            t[i] ^= 0x01;
            assert!(c.decrypt(&t).is_err(), "flip at byte {i} accepted");
        }
        assert!(
            c.decrypt(&ct[..ct.len() - 1]).is_err(),
            "truncated tag accepted"
        );
        let mut longer = ct.clone();
        longer.push(0);
        assert!(c.decrypt(&longer).is_err(), "appended byte accepted");
    }

    #[test]
    fn rotation_decrypts_old_and_lists_all_versions_active_first() {
        let mut r = ring();
        let old = cipher(&r, "c", "email", EncryptMode::Deterministic);
        let ct1 = old.encrypt(b"bob@example.com").unwrap();
        r.rotate().unwrap();
        r.rotate().unwrap();
        let c = cipher(&r, "c", "email", EncryptMode::Deterministic);
        assert_eq!(c.active_key_id(), 3);
        assert_eq!(c.key_ids(), vec![3, 2, 1]);
        assert_eq!(c.decrypt(&ct1).unwrap(), b"bob@example.com");
        let ct3 = c.encrypt(b"bob@example.com").unwrap();
        assert_eq!(parse_header(&ct3).unwrap().key_id, 3);
        assert_eq!(c.decrypt(&ct3).unwrap(), b"bob@example.com");
        let all = c.encrypt_all_versions(b"bob@example.com").unwrap();
        let ids: Vec<u32> = all
            .iter()
            .map(|ct| parse_header(ct).unwrap().key_id)
            .collect();
        assert_eq!(ids, vec![3, 2, 1]);
        assert_eq!(all[0], ct3, "active version equals what a new write stores");
        assert!(
            all.contains(&ct1),
            "the old stored value is among the equality candidates"
        );
        for ct in &all {
            assert_eq!(c.decrypt(ct).unwrap(), b"bob@example.com");
        }
        // The old cipher (keyring before rotation) cannot read key 3.
        let err = old.decrypt(&ct3).unwrap_err();
        assert_eq!(
            err,
            CryptoError::UnknownKey {
                column: "public.c.email".into(),
                key_id: 3
            }
        );
    }

    #[test]
    fn active_key_is_not_always_the_newest() {
        // A hand-edited ring may point `active` at an older key.
        let mut r = ring();
        r.rotate().unwrap();
        let text = r.to_file_string().replace("active = 2", "active = 1");
        let r1 = Keyring::parse(&text, "t").unwrap();
        let c = cipher(&r1, "c", "email", EncryptMode::Deterministic);
        assert_eq!(c.key_ids(), vec![1, 2]);
        assert_eq!(parse_header(&c.encrypt(b"v").unwrap()).unwrap().key_id, 1);
    }

    #[test]
    fn randomized_has_no_equality_versions() {
        let c = cipher(&ring(), "c", "notes", EncryptMode::Randomized);
        assert!(matches!(
            c.encrypt_all_versions(b"x"),
            Err(CryptoError::NotDeterministic { .. })
        ));
    }

    #[test]
    fn header_parsing_rejects_short_and_garbage_without_panic() {
        assert_eq!(parse_header(&[]), Err(CryptoError::NotCiphertext("empty")));
        let c = cipher(&ring(), "c", "email", EncryptMode::Deterministic);
        for n in 0..MIN_CIPHERTEXT_LEN {
            let mut v = vec![0u8; n];
            if let Some(b) = v.first_mut() {
                *b = FORMAT_VERSION;
            }
            assert!(!looks_like_ciphertext(&v), "length {n}");
            assert!(c.decrypt(&v).is_err());
        }
        assert!(!looks_like_ciphertext(
            b"alice@example.com and some more text"
        ));
        assert_eq!(
            parse_header(&[2u8; 40]).unwrap_err(),
            CryptoError::UnsupportedVersion(2)
        );
        let mut x: u32 = 0x1234_5678;
        for len in [33usize, 34, 50, 200] {
            for _ in 0..200 {
                let mut v: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                v[0] = FORMAT_VERSION;
                v[1..5].copy_from_slice(&1u32.to_be_bytes());
                assert!(looks_like_ciphertext(&v));
                assert!(matches!(
                    c.decrypt(&v),
                    Err(CryptoError::Authentication { .. })
                ));
            }
        }
        let ct = c.encrypt(b"abc").unwrap();
        let h = parse_header(&ct).unwrap();
        assert_eq!((h.version, h.key_id, h.body.len()), (1, 1, 3 + TAG_LEN));
    }

    #[test]
    fn associated_data_binds_key_id_and_names_unambiguously() {
        let a = associated_data(1, &tn("a", "bc"), "d");
        for other in [
            associated_data(2, &tn("a", "bc"), "d"),
            associated_data(1, &tn("ab", "c"), "d"),
            associated_data(1, &tn("a", "b"), "cd"),
            associated_data(1, &tn("a", "bc"), "e"),
        ] {
            assert_ne!(a, other);
        }
        // AAD alone (same key, other names) must make decryption fail.
        let c = cipher(&ring(), "c", "email", EncryptMode::Deterministic);
        let ct = c.encrypt(b"v").unwrap();
        let v = &c.versions[0];
        let h = parse_header(&ct).unwrap();
        let (body, tag) = h.body.split_at(h.body.len() - TAG_LEN);
        let wrong = associated_data(v.id, &tn("public", "c"), "phone");
        let mut buf = body.to_vec();
        let res = v.aead.decrypt_in_place_detached(
            Nonce::from_slice(h.nonce),
            &wrong,
            &mut buf,
            Tag::from_slice(tag),
        );
        assert!(res.is_err());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let r = ring();
        let c = cipher(&r, "c", "email", EncryptMode::Deterministic);
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("public.c.email") && dbg.contains("key_ids"),
            "{dbg}"
        );
        let key = r
            .derive(1, Purpose::Encrypt, &tn("public", "c"), "email")
            .unwrap();
        assert!(!dbg.contains(&hex::encode(&key[..])[..16]));
        assert!(!dbg.contains(&format!("{:?}", &key[..4]).trim_end_matches(']').to_string()));
    }
}
