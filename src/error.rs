//! The one error map: every SQLSTATE pgveil sends, and how a typed error
//! becomes the ErrorResponse a client reads.
//!
//! SQLSTATE codes are spelled out here and nowhere else (the refusal
//! catalogue in `sql::refuse` names them through these constants), so a
//! failure reaches every client with one code and one wording, and
//! `docs/glossary.md` can list them all from one file.
//!
//! Why a trait and not one `match` over every error type: this module sits
//! below everything that can fail (protocol, sql, session, server). A single
//! `match` here would have to import those modules while they import these
//! codes, a cycle the design forbids. Each error type instead implements
//! [`ClientError`] once, next to its definition, in terms of the constants
//! below; the encoding into an ErrorResponse happens only in
//! [`error_response`].

use bytes::BytesMut;

pub use crate::protocol::Severity;

/// Every SQLSTATE pgveil sends (PostgreSQL's condition names, upper-cased).
pub mod sqlstate {
    pub const CONNECTION_EXCEPTION: &str = "08000";
    pub const CLIENT_UNABLE_TO_ESTABLISH: &str = "08001";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const DATA_EXCEPTION: &str = "22000";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const INVALID_DATETIME_FORMAT: &str = "22007";
    pub const DATETIME_FIELD_OVERFLOW: &str = "22008";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    pub const SYSTEM_ERROR: &str = "58030";
    pub const CONFIG_FILE_ERROR: &str = "F0000";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const DATA_CORRUPTED: &str = "XX001";
    pub const INVALID_TIME_ZONE_DISPLACEMENT_VALUE: &str = "22009";
    pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
}

/// An error a client may be told about. Implemented once per error type.
pub trait ClientError: std::fmt::Display {
    /// The SQLSTATE, one of [`sqlstate`]'s constants.
    fn sqlstate(&self) -> &'static str;

    /// Fatal errors end the session; the default is a statement error.
    fn severity(&self) -> Severity {
        Severity::Error
    }

    /// What the client reads. Never contains a value from a statement.
    fn client_message(&self) -> String {
        self.to_string()
    }

    fn hint(&self) -> Option<String> {
        None
    }
}

/// The ErrorResponse for `e`.
pub fn error_response(e: &dyn ClientError) -> BytesMut {
    let mut out = BytesMut::new();
    put_error_response(&mut out, e);
    out
}

/// Appends the ErrorResponse for `e` to `out`.
pub fn put_error_response(out: &mut BytesMut, e: &dyn ClientError) {
    crate::protocol::put_error(
        out,
        e.severity(),
        e.sqlstate(),
        &e.client_message(),
        e.hint().as_deref(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E;
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("nope")
        }
    }
    impl ClientError for E {
        fn sqlstate(&self) -> &'static str {
            sqlstate::INSUFFICIENT_PRIVILEGE
        }
        fn hint(&self) -> Option<String> {
            Some("ask".into())
        }
    }

    #[test]
    fn response_carries_code_message_and_hint() {
        let out = error_response(&E);
        assert_eq!(out[0], b'E');
        assert_eq!(crate::protocol::error_code(&out).as_deref(), Some("42501"));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("Mnope\0") && text.contains("Hask\0"),
            "{text:?}"
        );
        assert!(text.contains("SERROR\0"), "{text:?}");
    }

    #[test]
    fn every_code_is_five_characters_unique_and_in_the_glossary() {
        use sqlstate::*;
        let all = [
            CONNECTION_EXCEPTION,
            CLIENT_UNABLE_TO_ESTABLISH,
            CONNECTION_FAILURE,
            PROTOCOL_VIOLATION,
            FEATURE_NOT_SUPPORTED,
            DATA_EXCEPTION,
            NUMERIC_VALUE_OUT_OF_RANGE,
            INVALID_DATETIME_FORMAT,
            DATETIME_FIELD_OVERFLOW,
            INVALID_PARAMETER_VALUE,
            INVALID_TEXT_REPRESENTATION,
            BAD_COPY_FILE_FORMAT,
            INVALID_AUTHORIZATION,
            INVALID_PASSWORD,
            INSUFFICIENT_PRIVILEGE,
            SYNTAX_ERROR,
            TOO_MANY_CONNECTIONS,
            STATEMENT_TOO_COMPLEX,
            OBJECT_NOT_IN_PREREQUISITE_STATE,
            ADMIN_SHUTDOWN,
            IDLE_SESSION_TIMEOUT,
            SYSTEM_ERROR,
            CONFIG_FILE_ERROR,
            INTERNAL_ERROR,
            DATA_CORRUPTED,
            INVALID_TIME_ZONE_DISPLACEMENT_VALUE,
            INVALID_BINARY_REPRESENTATION,
        ];
        let glossary = include_str!("../docs/glossary.md");
        let mut seen = std::collections::HashSet::new();
        for c in all {
            assert!(
                glossary.contains(&format!("| {c} |")),
                "docs/glossary.md does not list {c}"
            );
            assert_eq!(c.len(), 5, "{c}");
            assert!(c
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
            assert!(seen.insert(c), "duplicate {c}");
        }
    }
}
