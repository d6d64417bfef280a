//! tokio-postgres (extended protocol, binary results) through the real proxy.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use futures_util::future::{join_all, try_join_all};
use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use common::*;

async fn setup(tag: &str) -> (Proxy, tokio_postgres::Client, String) {
    let c = shared();
    let db = c.fresh_db(tag);
    let p = Proxy::start(&c.url(), &[]);
    let client = connect(p.port, &db, APP_USER, APP_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("connect through proxy: {e:?}"));
    (p, client, db)
}

#[tokio::test]
async fn prepared_statements_with_typed_parameters_and_binary_results() {
    let (_p, client, _db) = setup("types").await;
    let stmt = client
        .prepare_typed(
            "SELECT $1::int4, $2::int8, $3::text, $4::bool, $5::float8, $6::date, \
             $7::timestamptz, $8::bytea, ($9::text)::numeric::text",
            &[
                Type::INT4,
                Type::INT8,
                Type::TEXT,
                Type::BOOL,
                Type::FLOAT8,
                Type::DATE,
                Type::TIMESTAMPTZ,
                Type::BYTEA,
                Type::TEXT,
            ],
        )
        .await
        .unwrap();
    // Describe went through: parameter and column types are the server's.
    assert_eq!(stmt.params().len(), 9);
    assert_eq!(stmt.columns()[1].type_(), &Type::INT8);
    assert_eq!(stmt.columns()[6].type_(), &Type::TIMESTAMPTZ);

    let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let ts: DateTime<Utc> = Utc.with_ymd_and_hms(2023, 12, 31, 23, 59, 58).unwrap();
    let bytes: Vec<u8> = (0..=255u8).collect();
    let text = "héllo 'quoted' \\ \u{1F600}";
    for round in 0..3 {
        let row = client
            .query_one(
                &stmt,
                &[
                    &(42 + round),
                    &-9_000_000_000_i64,
                    &text,
                    &true,
                    &3.25_f64,
                    &date,
                    &ts,
                    &bytes,
                    &"12345678901234567890.123456789",
                ],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 42 + round);
        assert_eq!(row.get::<_, i64>(1), -9_000_000_000);
        assert_eq!(row.get::<_, &str>(2), text);
        assert!(row.get::<_, bool>(3));
        assert_eq!(row.get::<_, f64>(4), 3.25);
        assert_eq!(row.get::<_, NaiveDate>(5), date);
        assert_eq!(row.get::<_, DateTime<Utc>>(6), ts);
        assert_eq!(row.get::<_, Vec<u8>>(7), bytes);
        assert_eq!(row.get::<_, &str>(8), "12345678901234567890.123456789");
    }
    // NULL parameters and results.
    let row = client
        .query_one("SELECT $1::int8 IS NULL, $1::int8", &[&None::<i64>])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<i64>>(1), None);
}

#[tokio::test]
async fn table_round_trip_unnamed_statements_portals_and_large_rows() {
    let (_p, mut client, _db) = setup("rows").await;
    client
        .batch_execute(
            "CREATE TABLE t(id int8 PRIMARY KEY, name text, score float8, born date, data bytea)",
        )
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO t VALUES ($1, $2, $3, $4, $5)")
        .await
        .unwrap();
    for i in 0..200_i64 {
        let born = NaiveDate::from_ymd_opt(1970 + (i % 50) as i32, 1, 1).unwrap();
        let n = client
            .execute(
                &insert,
                &[
                    &i,
                    &format!("n{i}"),
                    &(i as f64 / 3.0),
                    &born,
                    &vec![i as u8; 3],
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    // Unnamed statement (query_typed) with an array parameter.
    let rows = client
        .query_typed(
            "SELECT id, name FROM t WHERE id = ANY($1) ORDER BY id",
            &[(&vec![3_i64, 5, 7], Type::INT8_ARRAY)],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(names, ["n3", "n5", "n7"]);

    // Named portal fetched in chunks (Execute with a row limit, PortalSuspended).
    let tx = client.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT id, score FROM t ORDER BY id")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut seen = 0_i64;
    loop {
        let chunk = tx.query_portal(&portal, 64).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        for r in &chunk {
            assert_eq!(r.get::<_, i64>(0), seen);
            seen += 1;
        }
    }
    assert_eq!(seen, 200);
    tx.commit().await.unwrap();

    // A row far bigger than any socket buffer.
    let row = client
        .query_one("SELECT repeat('x', 3000000), length(repeat('y', 10))", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0).len(), 3_000_000);

    // Transaction rollback leaves nothing behind.
    let tx = client.transaction().await.unwrap();
    tx.execute("DELETE FROM t", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200);
}

#[tokio::test]
async fn pipeline_of_queries_on_one_connection() {
    let (_p, client, _db) = setup("pipeline").await;
    let stmt = client.prepare("SELECT $1::int4 * 2").await.unwrap();
    let futs = (0..100).map(|i| {
        let client = &client;
        let stmt = &stmt;
        async move {
            client
                .query_one(stmt, &[&i])
                .await
                .map(|r| r.get::<_, i32>(0))
        }
    });
    let got = try_join_all(futs).await.unwrap();
    assert_eq!(got, (0..100).map(|i| i * 2).collect::<Vec<_>>());

    // An error in the middle of a pipeline fails only its own statement (skip-until-Sync).
    let a = client.query_one("SELECT 1::int4", &[]);
    let b = client.query_one("SELECT 1/0", &[]);
    let c = client.query_one("SELECT 3::int4", &[]);
    let d = client.simple_query("SELECT 4; SELECT 5");
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(sqlstate(&b.unwrap_err()).as_deref(), Some("22012"));
    assert_eq!(c.unwrap().get::<_, i32>(0), 3);
    let rows: Vec<String> = d
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["4", "5"]);

    // Many independent statements prepared and run concurrently.
    let futs = (0..20).map(|i| {
        let client = &client;
        async move {
            let s = client
                .prepare(&format!("SELECT {i}::int8 + $1::int8"))
                .await?;
            client
                .query_one(&s, &[&1_i64])
                .await
                .map(|r| r.get::<_, i64>(0))
        }
    });
    let got: Vec<i64> = join_all(futs)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(got, (1..=20).collect::<Vec<i64>>());
}

#[tokio::test]
async fn cancel_request_stops_pg_sleep_with_57014() {
    let (p, client, _db) = setup("cancel").await;
    for extended in [false, true] {
        let token = client.cancel_token();
        let started = Instant::now();
        let query = async {
            if extended {
                client.query("SELECT pg_sleep(10)", &[]).await.map(|_| ())
            } else {
                client.simple_query("SELECT pg_sleep(10)").await.map(|_| ())
            }
        };
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            token.cancel_query(NoTls).await
        };
        let (res, cancelled) = tokio::join!(query, cancel);
        let elapsed = started.elapsed();
        cancelled.unwrap_or_else(|e| panic!("sending CancelRequest to the proxy: {e:?}"));
        let err = res.expect_err("pg_sleep(10) should have been cancelled");
        assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
        // Loose bound: proves the query was cancelled rather than finishing its 10 s.
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        // The session is still usable afterwards.
        let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
    // A CancelRequest with an unknown key is ignored and harms nothing.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .unwrap();
    let mut m = 16_i32.to_be_bytes().to_vec();
    m.extend(80_877_102_i32.to_be_bytes());
    m.extend(12345_i32.to_be_bytes());
    m.extend(67890_i32.to_be_bytes());
    tokio::io::AsyncWriteExt::write_all(&mut s, &m)
        .await
        .unwrap();
    drop(s);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn simple_protocol_multi_statement_and_session_state() {
    let (_p, client, _db) = setup("simple").await;
    let msgs = client
        .simple_query(
            "CREATE TABLE s(x int); INSERT INTO s VALUES (1), (2); SELECT x FROM s ORDER BY x; \
             SET application_name = 'renamed'",
        )
        .await
        .unwrap();
    let completes = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completes, 4);
    let app: String = client
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "renamed");
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, APP_USER);
}
