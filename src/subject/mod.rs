//! Data subjects (issue 15): the people whose rows the `[[subject]]` rule
//! entries describe.
//!
//! This module holds what the rest of pgveil needs to name a subject without
//! holding personal data: the subject token, and `pgveil install`, which
//! creates the tables where per-subject keys and erasures will live.

pub mod install;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ident::TableName;

/// A subject's token: HMAC-SHA256, under the keyring's subject-token key
/// ([`crate::crypto::Keyring::subject_token_key`]), of the subject table
/// and the key value as text.
///
/// Why a keyed HMAC: the audit, metrics and the access report name subjects
/// by token, and a customer id is personal data. Without the key a token
/// reveals nothing and cannot be recomputed by guessing ids (unlike a plain
/// hash of a small integer); with it, pgveil can find every record of one
/// subject. The table is part of the input so that customer 42 and
/// employee 42 are different subjects; children use their subject's table
/// (see [`crate::rules::SubjectRule::subject`]). Each part is prefixed with
/// its length, so `("a", "bc")` and `("ab", "c")` never collide.
pub fn token(key_material: &[u8], table: &TableName, id: &str) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key_material) else {
        unreachable!("HMAC takes keys of any length")
    };
    for part in [
        table.schema.as_bytes(),
        table.name.as_bytes(),
        id.as_bytes(),
    ] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The token as the audit record spells it (lower-case hex).
pub fn token_hex(key_material: &[u8], table: &TableName, id: &str) -> String {
    hex::encode(token(key_material, table, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keyring;

    fn t(schema: &str, name: &str) -> TableName {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    #[test]
    fn token_is_stable_keyed_and_distinct_per_table_and_id() {
        let key = [7u8; 32];
        let customers = t("public", "customers");
        let a = token(&key, &customers, "42");
        assert_eq!(a, token(&key, &customers, "42"), "stable");
        assert_ne!(a, token(&key, &customers, "43"));
        assert_ne!(a, token(&key, &t("public", "employees"), "42"));
        assert_ne!(a, token(&key, &t("sales", "customers"), "42"));
        assert_ne!(a, token(&[8u8; 32], &customers, "42"), "keyed");
        // Length prefixes: moving bytes between parts changes the token.
        assert_ne!(
            token(&key, &t("ab", "c"), "1"),
            token(&key, &t("a", "bc"), "1")
        );
        let hex = token_hex(&key, &customers, "42");
        assert_eq!(hex.len(), 64);
        assert_ne!(hex, "42", "never the id itself");
        assert_ne!(&a[..2], b"42");
    }

    #[test]
    fn keyring_token_key_survives_rotation_and_differs_per_ring() {
        let Ok(mut ring) = Keyring::generate() else {
            panic!("keygen")
        };
        let Some(before) = ring.subject_token_key() else {
            panic!("no key")
        };
        let customers = t("public", "customers");
        let tok = token(&before[..], &customers, "42");
        assert!(ring.rotate().is_ok());
        let Some(after) = ring.subject_token_key() else {
            panic!("no key")
        };
        assert_eq!(tok, token(&after[..], &customers, "42"));
        let Ok(other) = Keyring::generate() else {
            panic!("keygen")
        };
        let Some(k2) = other.subject_token_key() else {
            panic!("no key")
        };
        assert_ne!(tok, token(&k2[..], &customers, "42"));
    }
}
