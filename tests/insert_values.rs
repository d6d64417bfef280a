//! Issue 11 defect 4 through the real proxy: SQLAlchemy 2's default
//! multi-row INSERT (`INSERT … SELECT p0::VARCHAR, … FROM (VALUES ($1::VARCHAR,
//! …), …) AS imp_sen(…) ORDER BY sen_counter RETURNING …`), every value a bound
//! parameter, lands encrypted and reads back in plaintext for admin.

mod common;

use common::customers::*;

const SQLA: &str = "INSERT INTO customers (full_name, email, ssn, birth_date) \
    SELECT p0::VARCHAR, p1::VARCHAR, p2::VARCHAR, p3::DATE FROM \
    (VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, $4::DATE, 0), \
            ($5::VARCHAR, $6::VARCHAR, $7::VARCHAR, $8::DATE, 1)) \
    AS imp_sen(p0, p1, p2, p3, sen_counter) ORDER BY sen_counter \
    RETURNING customers.id, customers.email";

#[tokio::test]
async fn sqlalchemy_insertmanyvalues_is_encrypted_and_reads_back() {
    let env = setup("insert_values");
    let admin = as_role(&env, "admin").await;
    let d1 = chrono::NaiveDate::from_ymd_opt(1984, 7, 19).expect("date");
    let d2 = chrono::NaiveDate::from_ymd_opt(1991, 1, 2).expect("date");
    let rows = admin
        .query(
            SQLA,
            &[
                &"Ann Vale",
                &"ann.vale@example.com",
                &"111-22-3333",
                &d1,
                &"Bo Stone",
                &"bo.stone@example.com",
                &"444-55-6666",
                &d2,
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("insert through the proxy: {e}\n{}", env.proxy.log()));
    assert_eq!(rows.len(), 2);
    let emails: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(emails, ["ann.vale@example.com", "bo.stone@example.com"]);
    // At rest: ciphertext only.
    let raw = cluster().sql(
        &env.db,
        "SELECT encode(email, 'escape') || encode(ssn, 'escape') || encode(birth_date, 'escape') FROM customers",
    );
    for plain in [
        "ann.vale", "bo.stone", "111-22", "444-55", "1984-07", "1991-01",
    ] {
        assert!(!raw.contains(plain), "{plain} stored in plaintext: {raw}");
    }
    // Read back through the proxy, and found by equality.
    let r = admin
        .query_one(
            "SELECT ssn, birth_date FROM customers WHERE email = $1",
            &[&"bo.stone@example.com"],
        )
        .await
        .expect("read back");
    assert_eq!(r.get::<_, String>(0), "444-55-6666");
    assert_eq!(r.get::<_, chrono::NaiveDate>(1), d2);
    // A computed value is still refused, not stored.
    let err = admin
        .execute(
            "INSERT INTO customers (full_name, email) SELECT p0, lower(p1) FROM (VALUES ($1::VARCHAR, $2::VARCHAR)) AS v(p0, p1)",
            &[&"C", &"C@EXAMPLE.COM"],
        )
        .await
        .expect_err("computed value into an encrypted column");
    assert_eq!(common::sqlstate(&err).as_deref(), Some("0A000"), "{err}");
}
