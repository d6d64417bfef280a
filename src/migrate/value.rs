//! What to do with one stored value: the only place that decides whether a
//! value is plaintext to encrypt, ciphertext to keep, or ciphertext to
//! re-encrypt. Pure, so every case is unit-tested without a database.
//!
//! The plaintext handed to the cipher is exactly what the proxy encrypts for
//! a client write: the value's text form, canonicalised for the rule's
//! logical type (`values::canonical_text`), under the column cipher of the
//! rule's own (final) schema, table and column names. Values converted here
//! therefore read back through the proxy like values written through it.

use crate::crypto::{looks_like_ciphertext, parse_header, ColumnCipher};
use crate::rules::LogicalType;

/// A value as read from the database.
#[derive(Debug, Clone, Copy)]
pub enum Stored<'a> {
    /// The text form (`col::text`) of a column that is not `bytea` yet.
    Text(&'a str),
    /// The raw bytes of a `bytea` column (ciphertext, or plaintext bytes).
    Bytes(&'a [u8]),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Already ciphertext under the right name (and key, with `--rekey`).
    Keep,
    /// Store this ciphertext instead.
    Write(Vec<u8>),
    /// Looks like ciphertext but decrypts under none of the column's keys
    /// (nor the old name's): left untouched and counted, never guessed at.
    Undecryptable,
    /// Plaintext that is not a valid value of the logical type: left
    /// untouched and counted.
    Invalid,
}

/// How one column's values are converted.
pub struct Converter<'a> {
    pub ty: LogicalType,
    /// Cipher of the rule's (final) name.
    pub cipher: &'a ColumnCipher,
    /// Cipher of the name the values were written under (`--renamed-from`).
    pub old: Option<&'a ColumnCipher>,
    /// Re-encrypt ciphertext under a key other than the active one.
    pub rekey: bool,
}

impl Converter<'_> {
    pub fn convert(&self, stored: Stored<'_>) -> Action {
        match stored {
            Stored::Text(t) => self.encrypt_plain(t.as_bytes()),
            Stored::Bytes(b) if looks_like_ciphertext(b) => self.ciphertext(b),
            Stored::Bytes(b) => {
                if self.ty == LogicalType::Bytea {
                    // A bytea plaintext's text form is its hex escape, as a
                    // client would send it through the proxy.
                    let text = format!("\\x{}", hex::encode(b));
                    self.encrypt_plain(text.as_bytes())
                } else {
                    self.encrypt_plain(b)
                }
            }
        }
    }

    fn ciphertext(&self, b: &[u8]) -> Action {
        if let Ok(plain) = self.cipher.decrypt(b) {
            let stale = parse_header(b).is_ok_and(|h| h.key_id != self.cipher.active_key_id());
            if self.rekey && stale {
                return self.seal(&plain);
            }
            return Action::Keep;
        }
        match self.old.map(|o| o.decrypt(b)) {
            Some(Ok(plain)) => self.seal(&plain),
            _ => Action::Undecryptable,
        }
    }

    fn encrypt_plain(&self, text: &[u8]) -> Action {
        match crate::values::canonical_text(self.ty, text) {
            Ok(c) => self.seal(&c),
            Err(_) => Action::Invalid,
        }
    }

    fn seal(&self, canonical: &[u8]) -> Action {
        match self.cipher.encrypt(canonical) {
            Ok(ct) => Action::Write(ct),
            Err(_) => Action::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keyring;
    use crate::rules::{EncryptMode, TableName};

    fn tn(n: &str) -> TableName {
        TableName {
            schema: "public".into(),
            name: n.into(),
        }
    }

    fn cipher(ring: &Keyring, t: &str, c: &str) -> ColumnCipher {
        ColumnCipher::new(ring, &tn(t), c, EncryptMode::Deterministic).unwrap()
    }

    #[test]
    fn plaintext_is_canonicalised_then_encrypted_as_the_proxy_would() {
        let ring = Keyring::generate().unwrap();
        let c = cipher(&ring, "t", "d");
        let conv = Converter {
            ty: LogicalType::Date,
            cipher: &c,
            old: None,
            rekey: false,
        };
        let Action::Write(ct) = conv.convert(Stored::Text("1984-07-19")) else {
            panic!("not written")
        };
        assert_eq!(c.decrypt(&ct).unwrap(), b"1984-07-19");
        // Deterministic: the same ciphertext the proxy would write for it.
        assert_eq!(ct, c.encrypt(b"1984-07-19").unwrap());
        assert_eq!(conv.convert(Stored::Text("not a date")), Action::Invalid);
        assert_eq!(
            conv.convert(Stored::Bytes(b"1984-07-19")),
            Action::Write(ct)
        );
    }

    #[test]
    fn ciphertext_is_kept_never_encrypted_twice_unless_rekeyed() {
        let mut ring = Keyring::generate().unwrap();
        let old = cipher(&ring, "t", "c").encrypt(b"a@b.c").unwrap();
        ring.rotate().unwrap();
        let c = cipher(&ring, "t", "c");
        let mut conv = Converter {
            ty: LogicalType::Text,
            cipher: &c,
            old: None,
            rekey: false,
        };
        assert_eq!(conv.convert(Stored::Bytes(&old)), Action::Keep);
        conv.rekey = true;
        let Action::Write(new) = conv.convert(Stored::Bytes(&old)) else {
            panic!("not rekeyed")
        };
        assert_eq!(parse_header(&new).unwrap().key_id, 2);
        assert_eq!(c.decrypt(&new).unwrap(), b"a@b.c");
        assert_eq!(conv.convert(Stored::Bytes(&new)), Action::Keep);
    }

    #[test]
    fn renamed_values_move_to_the_new_name_and_strangers_are_counted() {
        let ring = Keyring::generate().unwrap();
        let before = cipher(&ring, "t", "mail");
        let after = cipher(&ring, "t", "email");
        let ct = before.encrypt(b"a@b.c").unwrap();
        let stranger = cipher(&ring, "other", "x").encrypt(b"z").unwrap();
        let conv = Converter {
            ty: LogicalType::Text,
            cipher: &after,
            old: Some(&before),
            rekey: false,
        };
        let Action::Write(moved) = conv.convert(Stored::Bytes(&ct)) else {
            panic!("not moved")
        };
        assert_eq!(after.decrypt(&moved).unwrap(), b"a@b.c");
        assert_eq!(conv.convert(Stored::Bytes(&moved)), Action::Keep);
        assert_eq!(
            conv.convert(Stored::Bytes(&stranger)),
            Action::Undecryptable
        );
    }

    #[test]
    fn bytea_plaintext_uses_its_hex_text_form() {
        let ring = Keyring::generate().unwrap();
        let c = cipher(&ring, "t", "b");
        let conv = Converter {
            ty: LogicalType::Bytea,
            cipher: &c,
            old: None,
            rekey: false,
        };
        let Action::Write(ct) = conv.convert(Stored::Bytes(&[0xde, 0xad])) else {
            panic!()
        };
        assert_eq!(c.decrypt(&ct).unwrap(), b"\\xdead");
        let not_utf8 = Converter {
            ty: LogicalType::Text,
            ..conv
        };
        assert_eq!(
            not_utf8.convert(Stored::Bytes(&[0xff, 0xfe])),
            Action::Invalid
        );
    }
}
