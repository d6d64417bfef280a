//! Wire-level reproductions of the pgveil defects the driver matrix found,
//! each reduced to the bytes the driver sends, so they stay covered where
//! the driver itself is absent.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_postgres::types::Type;

use crate::common::wire::{fields, read_msg, startup_with};
use crate::common::*;
use crate::fixture::{self, ADMIN, PW};

/// psycopg 3 (and SQLAlchemy on it) dumps a Python int as the narrowest
/// binary integer and declares it in Parse: `12344` arrives as a 2-byte
/// int2 for an int4 column. pgveil read it as int4 and refused with 22P03
/// "wrong length"; PostgreSQL coerces int2 to int4 on assignment.
#[tokio::test]
async fn narrower_binary_integer_parameters_are_coerced_like_postgres() {
    let fx = fixture::start();
    let c = connect(fx.proxy.port, &fx.db, ADMIN, PW)
        .await
        .expect("connect");
    let st = c
        .prepare_typed(
            "INSERT INTO drv_tokio (id, i4, i8, n) VALUES ($1, $2, $3, $4)",
            &[Type::INT4, Type::INT2, Type::INT4, Type::INT2],
        )
        .await
        .expect("prepare");
    c.execute(&st, &[&1i32, &12344i16, &-70000i32, &-5i16])
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", fx.proxy.log()));
    let r = c
        .query_one("SELECT i4, i8 FROM drv_tokio WHERE id = 1", &[])
        .await
        .expect("read back");
    assert_eq!((r.get::<_, i32>(0), r.get::<_, i64>(1)), (12344, -70000));
    // The deterministic column matches whatever width the lookup uses.
    let st = c
        .prepare_typed("SELECT id FROM drv_tokio WHERE i4 = $1", &[Type::INT8])
        .await
        .expect("prepare lookup");
    let rows = c.query(&st, &[&12344i64]).await.expect("lookup");
    assert_eq!(rows.len(), 1);
    // Out of range for the column: PostgreSQL's class, nothing written.
    let st = c
        .prepare_typed(
            "INSERT INTO drv_tokio (id, i4) VALUES ($1, $2)",
            &[Type::INT4, Type::INT8],
        )
        .await
        .expect("prepare");
    let e = c
        .execute(&st, &[&2i32, &(1i64 << 40)])
        .await
        .expect_err("out of range");
    assert_eq!(sqlstate(&e).as_deref(), Some("22003"), "{e:?}");
}

async fn startup_outcome(port: u16, db: &str, encoding: &str) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let pkt = startup_with(&[
        ("user", TRUST_USER),
        ("database", db),
        ("client_encoding", encoding),
    ]);
    s.write_all(&pkt).await.expect("startup");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read_msg(&mut s).await {
                Ok(Some((b'Z', _))) => return Ok(()),
                Ok(Some((b'E', b))) => {
                    let f = fields(&b);
                    return Err(f.get(&'C').cloned().unwrap_or_default());
                }
                Ok(Some(_)) => {}
                other => return Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("timeout".into()))
}

/// asyncpg sends `client_encoding='utf-8'` (quotes included) in its
/// StartupMessage; PostgreSQL ignores punctuation in encoding names.
/// pgveil refused the masked role's login with 42501.
#[tokio::test]
async fn quoted_utf8_client_encoding_is_utf8() {
    let fx = fixture::start();
    for ok in ["'utf-8'", "UTF8", "utf_8", "Unicode"] {
        assert_eq!(
            startup_outcome(fx.proxy.port, &fx.db, ok).await,
            Ok(()),
            "{ok}"
        );
    }
    for bad in ["'LATIN1'", "SQL_ASCII", "WIN1252"] {
        assert_eq!(
            startup_outcome(fx.proxy.port, &fx.db, bad).await,
            Err("42501".into()),
            "{bad}"
        );
    }
}
