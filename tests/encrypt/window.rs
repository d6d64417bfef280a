//! Adversarial tests of the proxy during a conversion (`snapshot::overlay`):
//! a restricted role during the walk, the shadow column under every
//! spelling, and statements made before the swap used after it.

use tokio_postgres::Client;

use super::apps::window_refusal;
use super::common::*;
use super::support::*;

/// What the `email` mask makes of row `id`'s email (the proxy's own mask
/// function; the SQL form in the derived table must agree with it).
fn masked_email(id: i64) -> Option<String> {
    use pgveil::rules::{LogicalType, Mask};
    expected(id).0.map(|e| {
        let m =
            pgveil::mask::apply(Mask::Email, LogicalType::Text, e.as_bytes(), &[]).expect("mask");
        String::from_utf8(m).expect("utf8")
    })
}

async fn email_of(c: &Client, id: i64) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(
        c.query_one("SELECT email FROM people WHERE id = $1", &[&id])
            .await?
            .get(0),
    )
}

/// A refusal naming pgveil's decision, never a value.
async fn assert_denied(c: &Client, sql: &str) {
    for r in [
        c.simple_query(sql).await.map(|_| ()),
        c.query(sql, &[]).await.map(|_| ()),
    ] {
        let e = r.expect_err(sql);
        let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
        let text = format!("{e:?}");
        assert!(
            ["42501", "0A000"].contains(&code.as_str()),
            "{sql}: {code} {text}"
        );
        assert!(
            !text.contains("example.com") && !text.contains("\\\\x01"),
            "{sql}: {text}"
        );
    }
}

/// The walk is done (`--no-swap`), the proxy runs the final rules.
fn walked(tag: &str) -> (Fixture, Proxy) {
    let t = Fixture::new(tag, 2_000);
    t.support_role();
    t.write_rules(Stage::WithSupport, "email");
    let out = t.encrypt(&["--install-only"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let proxy = t.proxy(&t.keyring, true);
    let out = t.encrypt(&["--no-swap"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(t.column_type("email"), "text");
    assert_eq!(t.column_type("pgveil_enc_email"), "bytea");
    (t, proxy)
}

#[test]
fn during_the_walk_roles_get_their_access_and_nobody_gets_the_shadow() {
    let (t, proxy) = walked("walkdeny");
    rt().block_on(async {
        let app = connect(proxy.port, &t.db, APP_USER, APP_PASSWORD)
            .await
            .unwrap();
        let support = connect(proxy.port, &t.db, SUPPORT_ROLE, SUPPORT_PASSWORD)
            .await
            .unwrap();
        assert_eq!(email_of(&app, 7).await.unwrap(), expected(7).0);
        // The masked derived table: the mask computed by the database over
        // the plaintext, the same the proxy computes after the swap.
        let got = email_of(&support, 7).await.unwrap();
        assert_eq!(got, masked_email(7));
        assert_ne!(got, expected(7).0);
        // ... everywhere in the statement, not only in the result.
        let n: i64 = support
            .query_one(
                "SELECT count(*) FROM people WHERE email = $1",
                &[&expected(7).0.unwrap()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "a WHERE on the masked column sees masks only");
        assert_denied(&support, "SELECT ssn FROM people WHERE id = 7").await;
        for c in [&app, &support] {
            for sql in [
                "SELECT pgveil_enc_email FROM people",
                "SELECT \"pgveil_enc_email\" FROM public.people WHERE id = 7",
                "SELECT p.pgveil_enc_email FROM people p",
                "SELECT id FROM people WHERE pgveil_enc_email IS NOT NULL",
                "SELECT * FROM people WHERE id = 7",
                "SELECT p.* FROM people p WHERE id = 7",
                "TABLE people",
                "SELECT people FROM people WHERE id = 7",
                "SELECT row_to_json(p) FROM people p WHERE id = 7",
                "SELECT x FROM (SELECT pgveil_enc_email AS x FROM people) s",
                "UPDATE people SET note = 'x' WHERE id = 7 RETURNING pgveil_enc_email",
            ] {
                assert_denied(c, sql).await;
            }
        }
        // Writes of the column go in as plaintext; the trigger clears the
        // shadow so the tool converts them.
        app.execute(
            "UPDATE people SET email = 'w7@example.com' WHERE id = 7",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(
            email_of(&app, 7).await.unwrap().as_deref(),
            Some("w7@example.com")
        );
    });
    assert_eq!(
        t.sql("SELECT pgveil_enc_email IS NULL FROM people WHERE id = 7"),
        "t"
    );
}

#[test]
fn statements_from_before_the_swap_are_refused_or_right_after_it() {
    let (t, proxy) = walked("swapstale");
    rt().block_on(async {
        let mut app = connect(proxy.port, &t.db, APP_USER, APP_PASSWORD)
            .await
            .unwrap();
        let support = connect(proxy.port, &t.db, SUPPORT_ROLE, SUPPORT_PASSWORD)
            .await
            .unwrap();
        let stmt = app
            .prepare("SELECT email FROM people WHERE id = $1")
            .await
            .unwrap();
        let before: Option<String> = app.query_one(&stmt, &[&9i64]).await.unwrap().get(0);
        assert_eq!(before, expected(9).0);
        let writer = connect(proxy.port, &t.db, APP_USER, APP_PASSWORD)
            .await
            .unwrap();
        let out = t.encrypt(&[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(t.column_type("email"), "bytea");
        // Right after the swap, maybe inside the window: right or refused
        // (another session, which may be closed for it).
        let r = writer
            .query_opt(
                "UPDATE people SET note = 'y' WHERE id = 9 RETURNING email",
                &[],
            )
            .await;
        match r {
            Ok(row) => assert_eq!(
                row.map(|r| r.get::<_, Option<String>>(0)),
                Some(expected(9).0)
            ),
            Err(e) => {
                assert!(window_refusal(&e), "{e:?}");
                eprintln!("RETURNING right after the swap: refused ({:?})", e.code());
            }
        }
        // The statement prepared before the swap, once the session has read
        // its catalog again: judged again, so refused (its shape changed) or
        // right; never the stored bytes.
        std::thread::sleep(pgveil::snapshot::overlay::OVERLAY_MAX_AGE);
        match app.query_one(&stmt, &[&9i64]).await {
            Ok(row) => assert_eq!(row.get::<_, Option<String>>(0), expected(9).0),
            Err(e) => {
                assert!(window_refusal(&e), "{e:?}");
                eprintln!(
                    "statement prepared before the swap: refused ({:?})",
                    e.code()
                );
            }
        }
        if app.is_closed() {
            app = connect(proxy.port, &t.db, APP_USER, APP_PASSWORD)
                .await
                .unwrap();
        }
        // Prepared again, under the final rules: decrypted by the proxy.
        let stmt = app
            .prepare("SELECT email FROM people WHERE id = $1")
            .await
            .unwrap();
        let after: Option<String> = app.query_one(&stmt, &[&9i64]).await.unwrap().get(0);
        assert_eq!(after, expected(9).0);
        assert_eq!(email_of(&support, 11).await.unwrap(), masked_email(11));
        let rows = app
            .query(
                "SELECT id FROM people WHERE email = $1",
                &[&expected(11).0.unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
    });
}
