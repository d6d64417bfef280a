//! Issue 10, renamed objects, for roles pgveil does not restrict. After
//! `RENAME COLUMN` or `RENAME TO` the rules name something the catalog
//! lacks; a plaintext-access role writing into the new name would store
//! plaintext where the rules want ciphertext (nothing encrypts a name no rule
//! covers). Writes into what may be the drifted relation are refused (55000,
//! naming the rule) until rules and catalog agree; reads and other tables'
//! writes go on; once the names agree again writes are encrypted.

mod common;

use common::customers::*;
use common::*;

/// Whether `needle` appears in clear anywhere in the table, read directly
/// (text columns as they are, bytea columns in their hex form).
fn in_clear(env: &Env, table: &str, needle: &str) -> bool {
    let out = cluster().sql(
        &env.db,
        &format!(
            "SELECT count(*) FROM {table} t WHERE position('{needle}' in t::text) > 0 \
             OR position(encode(convert_to('{needle}', 'UTF8'), 'hex') in t::text) > 0"
        ),
    );
    out.trim() != "0"
}

#[tokio::test]
async fn writes_into_a_renamed_column_are_refused_until_the_rules_follow() {
    let env = setup("drift_col");
    // Renamed outside pgveil, as a migration would; a new session reads the
    // catalog at connect.
    cluster().sql(&env.db, "ALTER TABLE customers RENAME COLUMN email TO mail");
    let admin = as_role(&env, ADMIN).await;
    let ins = admin
        .execute(
            "INSERT INTO customers (full_name, mail) VALUES ('d1', convert_to('leak1@example.com', 'UTF8'))",
            &[],
        )
        .await;
    let simple = admin
        .simple_query("INSERT INTO customers (full_name, mail) VALUES ('d2', 'leak2@example.com')")
        .await;
    let upd = admin
        .simple_query("UPDATE customers SET mail = 'leak3@example.com'")
        .await;
    let cte = admin
        .simple_query(
            "WITH w AS (INSERT INTO customers (full_name, mail) VALUES ('d4', 'leak4@example.com') RETURNING 1) SELECT * FROM w",
        )
        .await;
    for (what, leak) in [
        ("extended", "leak1"),
        ("simple", "leak2"),
        ("update", "leak3"),
        ("cte", "leak4"),
    ] {
        assert!(
            !in_clear(&env, "customers", leak),
            "{what}: plaintext stored"
        );
    }
    let e = ins.expect_err("extended INSERT into the renamed column refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("public.customers.email"),
        "names the rule's column: {msg}"
    );
    for r in [simple.map(|_| ()), upd.map(|_| ()), cte.map(|_| ())] {
        let e = r.expect_err("refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
    }
    // Reads are not writes: a plaintext role may still read the table.
    admin
        .simple_query("SELECT count(*) FROM customers")
        .await
        .expect("reads go on");
    // Names agree again: writes are encrypted as before.
    cluster().sql(&env.db, "ALTER TABLE customers RENAME COLUMN mail TO email");
    let admin = as_role(&env, ADMIN).await;
    admin
        .execute(
            "INSERT INTO customers (full_name, email) VALUES ('d5', $1)",
            &[&"back@example.com"],
        )
        .await
        .expect("write after the names agree");
    assert!(
        !in_clear(&env, "customers", "back@example"),
        "encrypted again"
    );
}

#[tokio::test]
async fn writes_while_a_tagged_table_is_missing_are_refused_everywhere() {
    let env = setup("drift_tab");
    cluster().sql(
        &env.db,
        "CREATE TABLE notes (id int, body text); GRANT ALL ON notes TO admin; \
         ALTER TABLE customers RENAME TO clients",
    );
    let admin = as_role(&env, ADMIN).await;
    let ins = admin
        .simple_query("INSERT INTO clients (full_name, email) VALUES ('t1', 'leak5@example.com')")
        .await;
    let copy = admin
        .simple_query("COPY clients (full_name, email) FROM STDIN")
        .await;
    // pgveil cannot tell which table now holds the protected rows, so any
    // write outside the system catalogs waits for the rules.
    let other = admin
        .simple_query("INSERT INTO notes VALUES (1, 'x')")
        .await;
    assert!(!in_clear(&env, "clients", "leak5"), "plaintext stored");
    for r in [ins.map(|_| ()), copy.map(|_| ()), other.map(|_| ())] {
        let e = r.expect_err("refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
    }
    admin
        .simple_query("SELECT count(*) FROM clients")
        .await
        .expect("reads go on");
}
