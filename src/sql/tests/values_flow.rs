//! Issue 11 defect 4: SQLAlchemy 2's multi-row INSERT, whose values flow
//! from bound parameters through a VALUES derived table into the target.

use super::super::*;
use super::{admin, hex_of, refused, rewritten};

const SQLA: &str = "INSERT INTO customers (name, email, ssn, age) \
    SELECT p0::VARCHAR, p1::VARCHAR, p2::VARCHAR, p3::INTEGER FROM \
    (VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, $4::INTEGER, 0), \
            ($5::VARCHAR, $6::VARCHAR, $7::VARCHAR, $8::INTEGER, 1)) \
    AS imp_sen(p0, p1, p2, p3, sen_counter) ORDER BY sen_counter RETURNING customers.id, customers.email";

#[test]
fn parameters_through_values_lists_are_encrypted_into_their_targets() {
    let (sql, plans) = rewritten(admin(SQLA));
    let p = &plans[0];
    let enc = |n: usize| match &p.params[n - 1] {
        ParamPlan::Encrypt {
            rule,
            usage: ParamUse::Write,
        } => rule.name.clone(),
        other => format!("{other:?}"),
    };
    assert_eq!(
        (enc(2), enc(3), enc(4), enc(6), enc(7), enc(8)),
        (
            "email".into(),
            "ssn".into(),
            "age".into(),
            "email".into(),
            "ssn".into(),
            "age".into()
        )
    );
    assert_eq!(p.params[0], ParamPlan::Plain);
    assert_eq!(p.params[4], ParamPlan::Plain);
    assert!(
        sql.contains("$2::BYTEA") && sql.contains("$8::BYTEA"),
        "{sql}"
    );
    // The select items of encrypted targets are the bare VALUES columns.
    assert!(sql.contains("SELECT p0::VARCHAR, p1, p2, p3 FROM"), "{sql}");
    assert!(sql.contains("ORDER BY sen_counter"), "{sql}");
    // Literals in the cells are encrypted too.
    let (sql, _) = rewritten(admin(
        "INSERT INTO customers (email) SELECT v.e FROM (VALUES ('a@x.org'), (NULL)) AS v(e)",
    ));
    assert!(
        sql.contains(&hex_of("ENC(public.customers.email:a@x.org)")),
        "{sql}"
    );
    assert!(!sql.contains("a@x.org"), "{sql}");
    // A restricted role writes the same way.
    let ex = super::masking::Ex::new();
    let (sql, _) = rewritten(ex.run(
        "support",
        "INSERT INTO customers (full_name, email, birth_date) SELECT p0::VARCHAR, p1::VARCHAR, \
         p2::DATE FROM (VALUES ($1::VARCHAR, $2::VARCHAR, $3::DATE, 0)) \
         AS imp_sen(p0, p1, p2, sen_counter) ORDER BY sen_counter RETURNING customers.id",
    ));
    assert!(
        sql.contains("$2::BYTEA") && sql.contains("$3::BYTEA"),
        "{sql}"
    );
}

#[test]
fn values_that_are_computed_in_the_database_are_still_refused() {
    for sql in [
        // An expression in a cell.
        "INSERT INTO customers (email) SELECT e FROM (VALUES (lower($1))) AS v(e)",
        // An expression over the column in the select list.
        "INSERT INTO customers (email) SELECT lower(e) FROM (VALUES ($1)) AS v(e)",
        // A cast to another type.
        "INSERT INTO customers (email) SELECT e::int::text FROM (VALUES ($1)) AS v(e)",
        // The column used twice (the ciphertext would also be compared).
        "INSERT INTO customers (email) SELECT e FROM (VALUES ($1)) AS v(e) ORDER BY e",
        "INSERT INTO customers (email, phone) SELECT e, e FROM (VALUES ($1)) AS v(e)",
        // Rows filtered, grouped or limited by the database.
        "INSERT INTO customers (email) SELECT e FROM (VALUES ($1)) AS v(e) WHERE e <> ''",
        "INSERT INTO customers (email) SELECT e FROM (VALUES ($1)) AS v(e) GROUP BY e",
        "INSERT INTO customers (email) SELECT e FROM (VALUES ($1), ($2)) AS v(e) LIMIT 1",
        "INSERT INTO customers (email) SELECT e FROM (VALUES ($1)) AS v(e), orders",
        "INSERT INTO customers (email) SELECT DISTINCT e FROM (VALUES ($1)) AS v(e)",
    ] {
        refused(admin(sql), "0A000");
    }
}
