//! Keys and column encryption.
//!
//! - [`keyring`]: the master keys (file format, derivation, rotation); the
//!   file handling (mode 0600, atomic rewrite, permission check) is in `keyfile`.
//! - [`cipher`]: AES-256-GCM-SIV per column, the stored `bytea` format.
//! - [`CryptoSnapshot`]: everything derived from one keyring and one rule
//!   set, built when either is (re)loaded and shared behind `arc-swap` like
//!   the rules, so the hot path only does a map lookup and the AEAD itself.
//!
//! # Key hierarchy
//!
//! ```text
//! master key k (keyring, id k)
//!   └─ HKDF-SHA256(salt = "pgveil column keys v1",
//!                  info = len|purpose | k (u32 BE) | len|schema | len|table | len|column)
//!        ├─ purpose "aes-256-gcm-siv"          → column encryption key, version k
//!        ├─ purpose "deterministic-nonce-prf"  → HMAC key: nonce = HMAC(plaintext)[..12]
//!        └─ purpose "hash-mask-pseudonym"      → HMAC key of the `hash` mask
//! ```
//!
//! The `hash` mask key is derived from the **oldest** key of the ring (the
//! smallest id), not the active one, so pseudonyms stay the same across
//! rotations; reports and joins on pseudonyms keep working. They change only
//! when that oldest key is removed from the ring. Pseudonym keys are per
//! column, so the same value in two columns gets unrelated pseudonyms.
//!
//! Nothing in this module logs, and no error or `Debug` output contains key
//! material or values.

pub mod cipher;
mod keyfile;
pub mod keyring;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use cipher::{looks_like_ciphertext, parse_header, ColumnCipher, CryptoError, Header};
pub use keyring::{Keyring, KeyringError};

use crate::rules::model::{RuleSet, TableName};
use keyring::{Purpose, KEY_LEN};

/// The HMAC-SHA256 key of the `hash` mask for one column.
pub struct HashKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    key_id: u32,
    /// The HMAC keyed once (its inner and outer pads hashed): cloning it
    /// costs nothing, keying it again costs two SHA-256 blocks per value.
    mac: Option<Hmac<Sha256>>,
}

impl HashKey {
    fn new(key: Zeroizing<[u8; KEY_LEN]>, key_id: u32) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key[..]).ok();
        HashKey { key, key_id, mac }
    }

    /// The keyed HMAC, to clone per value (see [`crate::mask::apply_keyed`]).
    pub fn mac(&self) -> Option<&Hmac<Sha256>> {
        self.mac.as_ref()
    }

    /// HMAC-SHA256 of `value` under this column's pseudonym key. The mask
    /// module decides how much of it to show and in which encoding.
    pub fn pseudonym(&self, value: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length; this cannot fail for 32 bytes,
        // and an all-zero output would be the visible symptom if it did.
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]) {
            Ok(mut mac) => {
                mac.update(value);
                mac.finalize().into_bytes().into()
            }
            Err(_) => [0u8; 32],
        }
    }

    /// The raw per-column pseudonym key, for the mask module's HMAC (Rust
    /// and SQL forms). Derived for this one column and purpose only; it is
    /// not keyring material.
    pub fn material(&self) -> &[u8] {
        &self.key[..]
    }

    /// The master key id this key derives from (the ring's oldest).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashKey")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Keys of one tagged column.
#[derive(Debug)]
struct ColumnKeys {
    cipher: Option<Arc<ColumnCipher>>,
    hash: Arc<HashKey>,
}

/// Everything derived from a keyring for a rule set: a [`ColumnCipher`] per
/// encrypted column and a [`HashKey`] per tagged column (the `hash` mask can
/// apply to plaintext-at-rest columns too). Immutable; rebuild on reload of
/// rules or keys.
pub struct CryptoSnapshot {
    active_key_id: u32,
    key_ids: Vec<u32>,
    /// Creation time (unix seconds) of each key in `key_ids`, for the admin
    /// console's `SHOW KEYS`; never the material.
    key_created: Vec<Option<i64>>,
    /// Nested so that lookups by `(&TableName, &str)` allocate nothing.
    columns: HashMap<TableName, HashMap<String, ColumnKeys>>,
}

impl fmt::Debug for CryptoSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoSnapshot")
            .field("active_key_id", &self.active_key_id)
            .field("key_ids", &self.key_ids)
            .field(
                "columns",
                &self.columns.values().map(HashMap::len).sum::<usize>(),
            )
            .finish()
    }
}

impl CryptoSnapshot {
    /// Derives every column key. Cost: a few HKDF and key-schedule runs per
    /// tagged column and key, done once per reload.
    pub fn new(keyring: &Keyring, rules: &RuleSet) -> Result<Self, CryptoError> {
        let oldest = keyring.oldest_id();
        let mut columns: HashMap<TableName, HashMap<String, ColumnKeys>> = HashMap::new();
        for rule in rules.columns() {
            let cipher = match rule.encrypt {
                Some(mode) => Some(Arc::new(ColumnCipher::new(
                    keyring,
                    &rule.table,
                    &rule.name,
                    mode,
                )?)),
                None => None,
            };
            let key = keyring
                .derive(oldest, Purpose::Pseudonym, &rule.table, &rule.name)
                .ok_or(CryptoError::MissingKey { key_id: oldest })?;
            let hash = Arc::new(HashKey::new(key, oldest));
            columns
                .entry(rule.table.clone())
                .or_default()
                .insert(rule.name.clone(), ColumnKeys { cipher, hash });
        }
        Ok(CryptoSnapshot {
            active_key_id: keyring.active_id(),
            key_created: keyring
                .key_ids()
                .iter()
                .map(|id| keyring.created(*id))
                .collect(),
            key_ids: keyring.key_ids(),
            columns,
        })
    }

    /// The cipher of an encrypted column; `None` for an untagged or
    /// plaintext-at-rest column.
    pub fn cipher(&self, table: &TableName, column: &str) -> Option<&Arc<ColumnCipher>> {
        self.columns.get(table)?.get(column)?.cipher.as_ref()
    }

    /// The `hash` mask key of a tagged column (encrypted or not).
    pub fn hash_key(&self, table: &TableName, column: &str) -> Option<&Arc<HashKey>> {
        self.columns.get(table)?.get(column).map(|k| &k.hash)
    }

    /// Id of the key new values are written under.
    pub fn active_key_id(&self) -> u32 {
        self.active_key_id
    }

    /// Every key id of the ring, ascending.
    pub fn key_ids(&self) -> &[u32] {
        &self.key_ids
    }

    /// When key `id` was created (unix seconds), if the ring recorded it.
    pub fn key_created(&self, id: u32) -> Option<i64> {
        let i = self.key_ids.iter().position(|k| *k == id)?;
        self.key_created.get(i).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::{Access, ColumnRule, EncryptMode, LogicalType, SourceLoc};
    use std::collections::BTreeMap;

    fn rule(table: &str, name: &str, encrypt: Option<EncryptMode>) -> ColumnRule {
        ColumnRule {
            table: TableName {
                schema: "public".into(),
                name: table.into(),
            },
            name: name.into(),
            ty: LogicalType::Text,
            encrypt,
            class: "pii".into(),
            access: BTreeMap::new(),
            default: Access::Deny,
            source: SourceLoc::default(),
        }
    }

    fn rules() -> RuleSet {
        RuleSet::new(
            vec![
                rule("customers", "email", Some(EncryptMode::Deterministic)),
                rule("customers", "notes", Some(EncryptMode::Randomized)),
                rule("customers", "card", None),
                rule("staff", "email", Some(EncryptMode::Deterministic)),
            ],
            "v1".into(),
        )
    }

    fn t(name: &str) -> TableName {
        TableName {
            schema: "public".into(),
            name: name.into(),
        }
    }

    #[test]
    fn snapshot_indexes_columns_and_modes() {
        let ring = Keyring::generate().unwrap();
        let s = CryptoSnapshot::new(&ring, &rules()).unwrap();
        assert_eq!(
            s.cipher(&t("customers"), "email").unwrap().mode(),
            EncryptMode::Deterministic
        );
        assert_eq!(
            s.cipher(&t("customers"), "notes").unwrap().mode(),
            EncryptMode::Randomized
        );
        assert!(
            s.cipher(&t("customers"), "card").is_none(),
            "plaintext-at-rest has no cipher"
        );
        assert!(
            s.hash_key(&t("customers"), "card").is_some(),
            "but it has a hash key"
        );
        assert!(s.cipher(&t("customers"), "name").is_none());
        assert!(s.cipher(&t("orders"), "email").is_none());
        let a = s.cipher(&t("customers"), "email").unwrap();
        let b = s.cipher(&t("staff"), "email").unwrap();
        let ct = a.encrypt(b"x@y.z").unwrap();
        assert!(b.decrypt(&ct).is_err(), "same column name, other table");
        assert_eq!(a.decrypt(&ct).unwrap(), b"x@y.z");
        assert_eq!((s.active_key_id(), s.key_ids()), (1, &[1u32][..]));
    }

    #[test]
    fn pseudonyms_survive_rotation_and_differ_per_column() {
        let mut ring = Keyring::generate().unwrap();
        let before = CryptoSnapshot::new(&ring, &rules()).unwrap();
        ring.rotate().unwrap();
        let after = CryptoSnapshot::new(&ring, &rules()).unwrap();
        let h = |s: &CryptoSnapshot, tb: &str, c: &str| {
            s.hash_key(&t(tb), c).unwrap().pseudonym(b"alice")
        };
        assert_eq!(
            h(&before, "customers", "email"),
            h(&after, "customers", "email")
        );
        assert_eq!(
            after.hash_key(&t("customers"), "email").unwrap().key_id(),
            1
        );
        assert_ne!(h(&after, "customers", "email"), h(&after, "staff", "email"));
        assert_ne!(
            h(&after, "customers", "email"),
            after
                .hash_key(&t("customers"), "email")
                .unwrap()
                .pseudonym(b"bob")
        );
        // The encryption side did move to the new key.
        let c = after.cipher(&t("customers"), "email").unwrap();
        assert_eq!(c.active_key_id(), 2);
        // A fresh ring gives different pseudonyms: the key really is secret.
        let other = CryptoSnapshot::new(&Keyring::generate().unwrap(), &rules()).unwrap();
        assert_ne!(
            h(&after, "customers", "email"),
            h(&other, "customers", "email")
        );
    }

    #[test]
    fn debug_is_redacted() {
        let ring = Keyring::generate().unwrap();
        let s = CryptoSnapshot::new(&ring, &rules()).unwrap();
        let hk = s.hash_key(&t("customers"), "email").unwrap();
        let dbg = format!("{s:?} {hk:?}");
        assert!(
            dbg.contains("<redacted>") && dbg.contains("columns: 4"),
            "{dbg}"
        );
        let raw = hex::encode(&hk.key[..]);
        assert!(!dbg.contains(&raw[..12]));
        assert!(!dbg.contains(&format!("{}, {}", hk.key[0], hk.key[1])));
    }
}
