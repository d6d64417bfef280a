//! The Rust and libpq rows of the matrix: tokio-postgres in this process,
//! psql and pgbench as child processes.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use futures_util::future::try_join_all;
use tokio_postgres::types::Type;

use crate::common::*;
use crate::fixture::{Fixture, ADMIN, MASK, PW};
use crate::matrix::Outcome;

const DRIVER: &str = "tokio-postgres";

/// The version Cargo.lock resolved, so the matrix names what ran.
fn version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let lock =
            std::fs::read_to_string(crate::fixture::repo().join("Cargo.lock")).unwrap_or_default();
        lock.split("[[package]]")
            .find(|p| p.contains("name = \"tokio-postgres\"\n"))
            .and_then(|p| p.split("version = \"").nth(1))
            .and_then(|v| v.split('"').next())
            .unwrap_or("?")
            .to_string()
    })
}

/// The row every driver writes (id 1), as SQL literals.
pub const ROW_SQL: &str = "'alice@example.com', 'bob@example.org', '1990-01-02', \
     '2024-05-06 07:08:09.123456+00', 12344, 9007199254740993, 12345.678, true, \
     '\\x0001feff', 'row one'";
pub const COLS: &str = "t, v, d, ts, i4, i8, n, b, bi, note";

/// What drvmask reads for that row, in PostgreSQL's text output (UTC).
pub const MASKED_TEXT: [&str; 10] = [
    "a****@*******.***",
    "b**@example.org",
    "1990-01-01",
    "2024-05-01 00:00:00+00",
    "12340",
    "9007199254741000",
    "12350",
    "f",
    "\\x",
    "r** ***",
];

fn outcome(feature: &str, r: Result<String, String>) -> Outcome {
    match r {
        Ok(detail) => Outcome::new(DRIVER, version(), feature, "pass", &detail),
        Err(e) => Outcome::new(DRIVER, version(), feature, "fail", &e),
    }
}

fn e2s(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// A numeric parameter in text format (the crate has no decimal type).
#[derive(Debug)]
struct NumText(&'static str);

impl tokio_postgres::types::ToSql for NumText {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
    fn encode_format(&self, _: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }
    tokio_postgres::types::to_sql_checked!();
}

/// A numeric result in its binary wire form.
#[derive(Debug, PartialEq)]
struct NumBin(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for NumBin {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(NumBin(raw.to_vec()))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

struct Row1 {
    d: NaiveDate,
    ts: DateTime<Utc>,
    bi: Vec<u8>,
}

fn row1() -> Row1 {
    Row1 {
        d: NaiveDate::from_ymd_opt(1990, 1, 2).expect("date"),
        ts: Utc
            .with_ymd_and_hms(2024, 5, 6, 7, 8, 9)
            .single()
            .expect("ts")
            + chrono::Duration::microseconds(123_456),
        bi: vec![0, 1, 0xfe, 0xff],
    }
}

async fn client(fx: &Fixture, role: &str) -> Result<tokio_postgres::Client, String> {
    connect(fx.proxy.port, &fx.db, role, PW).await.map_err(e2s)
}

/// Parameters of every type in binary (tokio-postgres always sends and
/// reads binary), numeric as text since the crate has no decimal type.
async fn params(c: &tokio_postgres::Client) -> Result<String, String> {
    let r = row1();
    let ins = c
        .prepare_typed(
            "INSERT INTO drv_tokio (id, t, v, d, ts, i4, i8, n, b, bi, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[Type::INT4],
        )
        .await
        .map_err(e2s)?;
    c.execute(
        &ins,
        &[
            &1i32,
            &"alice@example.com",
            &"bob@example.org",
            &r.d,
            &r.ts,
            &12344i32,
            &9_007_199_254_740_993i64,
            &NumText("12345.678"),
            &true,
            &r.bi,
            &"row one",
        ],
    )
    .await
    .map_err(e2s)?;
    let row = c
        .query_one(
            "SELECT t, v, d, ts, i4, i8, n, b, bi, note FROM drv_tokio WHERE id = 1",
            &[],
        )
        .await
        .map_err(e2s)?;
    let got = (
        row.get::<_, String>(0),
        row.get::<_, String>(1),
        row.get::<_, NaiveDate>(2),
        row.get::<_, DateTime<Utc>>(3),
        row.get::<_, i32>(4),
        row.get::<_, i64>(5),
        row.get::<_, NumBin>(6).0,
        row.get::<_, bool>(7),
        row.get::<_, Vec<u8>>(8),
    );
    let want = (
        "alice@example.com".to_string(),
        "bob@example.org".to_string(),
        r.d,
        r.ts,
        12344,
        9_007_199_254_740_993,
        // 12345.678 in numeric's binary form: 3 base-10000 digits, weight 1, dscale 3.
        vec![0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c],
        true,
        r.bi,
    );
    if got != want {
        return Err(format!("read back {got:?}"));
    }
    Ok(String::new())
}

async fn metadata(c: &tokio_postgres::Client) -> Result<String, String> {
    let st = c
        .prepare("SELECT t, d, ts, i4, i8, n, b, bi FROM drv_tokio WHERE t = $1 AND i4 = $2")
        .await
        .map_err(e2s)?;
    let cols: Vec<Type> = st.columns().iter().map(|c| c.type_().clone()).collect();
    let want = [
        Type::TEXT,
        Type::DATE,
        Type::TIMESTAMPTZ,
        Type::INT4,
        Type::INT8,
        Type::NUMERIC,
        Type::BOOL,
        Type::BYTEA,
    ];
    if cols != want {
        return Err(format!("column types {cols:?}"));
    }
    if st.params() != [Type::TEXT, Type::INT4] {
        return Err(format!("parameter types {:?}", st.params()));
    }
    Ok(String::new())
}

async fn lookup_prepared_pipeline(c: &tokio_postgres::Client) -> Vec<Outcome> {
    let lookup = async {
        let rows = c
            .query(
                "SELECT id FROM drv_tokio WHERE t = $1 AND i4 = $2",
                &[&"alice@example.com", &12344i32],
            )
            .await
            .map_err(e2s)?;
        (rows.len() == 1)
            .then(String::new)
            .ok_or(format!("{} rows", rows.len()))
    };
    let lookup = lookup.await;
    let prepared = async {
        let st = c
            .prepare("INSERT INTO drv_tokio (id, t, d, note) VALUES ($1, $2, $3, 'prep')")
            .await
            .map_err(e2s)?;
        let d = row1().d;
        for id in 10..15 {
            c.execute(&st, &[&id, &format!("p{id}@example.com"), &d])
                .await
                .map_err(e2s)?;
        }
        Ok(String::new())
    };
    let prepared = prepared.await;
    // tokio-postgres pipelines concurrent queries on one connection.
    let pipeline = async {
        let st = c
            .prepare("SELECT t, d FROM drv_tokio WHERE id = $1")
            .await
            .map_err(e2s)?;
        let ids: Vec<i32> = (10..15).collect();
        let args: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 1]> =
            ids.iter().map(|id| [id as _]).collect();
        let futs = args.iter().map(|a| c.query_one(&st, a));
        let rows = try_join_all(futs).await.map_err(e2s)?;
        for (i, r) in rows.iter().enumerate() {
            let t: String = r.get(0);
            if t != format!("p{}@example.com", i + 10) || r.get::<_, NaiveDate>(1) != row1().d {
                return Err(format!("row {i}: {t}"));
            }
        }
        Ok(String::new())
    };
    let pipeline = pipeline.await;
    vec![
        outcome("lookup", lookup),
        outcome("prepared", prepared),
        outcome("pipeline", pipeline),
    ]
}

async fn copy(c: &tokio_postgres::Client) -> Vec<Outcome> {
    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    let copy_in = async {
        let sink = c
            .copy_in("COPY drv_tokio (id, t, d, i4, note) FROM STDIN")
            .await
            .map_err(e2s)?;
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from_static(
            b"20\tcopy@example.com\t1990-01-02T00:00:00Z\t7\tcopied\n21\t\\N\t\\N\t\\N\tnulls\n",
        ))
        .await
        .map_err(e2s)?;
        let n = sink.finish().await.map_err(e2s)?;
        if n != 2 {
            return Err(format!("{n} rows copied"));
        }
        // The session stays in step after an extended-protocol COPY (defect 1).
        let r = c
            .query_one("SELECT t, d, i4 FROM drv_tokio WHERE id = 20", &[])
            .await
            .map_err(e2s)?;
        let got: (String, NaiveDate, i32) = (r.get(0), r.get(1), r.get(2));
        if got != ("copy@example.com".into(), row1().d, 7) {
            return Err(format!("{got:?}"));
        }
        Ok(String::new())
    };
    let copy_in = copy_in.await;
    let copy_out = async {
        let stream = c
            .copy_out(
                "COPY (SELECT id, t, d FROM drv_tokio WHERE id IN (1, 20) ORDER BY id) TO STDOUT",
            )
            .await
            .map_err(e2s)?;
        let chunks: Vec<_> = stream.collect().await;
        let mut text = Vec::new();
        for ch in chunks {
            text.extend_from_slice(&ch.map_err(e2s)?);
        }
        let text = String::from_utf8_lossy(&text);
        let want = "1\talice@example.com\t1990-01-02\n20\tcopy@example.com\t1990-01-02\n";
        (text == want).then(String::new).ok_or(format!("{text:?}"))
    };
    vec![
        outcome("copy_in", copy_in),
        outcome("copy_out", copy_out.await),
    ]
}

async fn cancel(c: &tokio_postgres::Client) -> Result<String, String> {
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let r = c.simple_query("SELECT pg_sleep(20)").await;
    canceller.await.map_err(|e| e.to_string())?.map_err(e2s)?;
    match r {
        Err(e) if sqlstate(&e).as_deref() == Some("57014") => {}
        other => return Err(format!("sleep not cancelled: {other:?}")),
    }
    c.simple_query("SELECT 1").await.map_err(e2s)?;
    Ok(String::new())
}

async fn notify(fx: &Fixture) -> Result<String, String> {
    use futures_util::StreamExt;
    let cfg = pg_config(fx.proxy.port, &fx.db, ADMIN, PW);
    let (listener, mut conn) = cfg.connect(tokio_postgres::NoTls).await.map_err(e2s)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(stream.for_each(move |m| {
        if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = m {
            let _ = tx.send(n.payload().to_string());
        }
        futures_util::future::ready(())
    }));
    listener
        .batch_execute("LISTEN drv_tokio")
        .await
        .map_err(e2s)?;
    let sender = client(fx, ADMIN).await?;
    sender
        .batch_execute("NOTIFY drv_tokio, 'hello tokio'")
        .await
        .map_err(e2s)?;
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(p)) if p == "hello tokio" => Ok(String::new()),
        other => Err(format!("no notification: {other:?}")),
    }
}

async fn masked(fx: &Fixture) -> Result<String, String> {
    let c = client(fx, MASK).await?;
    let row = c
        .query_one(
            "SELECT t, v, d, ts, i4, i8, n, b, bi, note FROM drv_tokio WHERE id = 1",
            &[],
        )
        .await
        .map_err(e2s)?;
    let got = (
        row.get::<_, String>(0),
        row.get::<_, String>(1),
        row.get::<_, NaiveDate>(2).to_string(),
        row.get::<_, DateTime<Utc>>(3)
            .format("%Y-%m-%d %H:%M:%S+00")
            .to_string(),
        row.get::<_, i32>(4).to_string(),
        row.get::<_, i64>(5).to_string(),
        row.get::<_, NumBin>(6).0,
    );
    let want = (
        MASKED_TEXT[0].to_string(),
        MASKED_TEXT[1].to_string(),
        MASKED_TEXT[2].to_string(),
        MASKED_TEXT[3].to_string(),
        MASKED_TEXT[4].to_string(),
        MASKED_TEXT[5].to_string(),
        // 12350: digits 1, 2350, weight 1, dscale 0.
        vec![0, 2, 0, 1, 0, 0, 0, 0, 0, 1, 0x09, 0x2e],
    );
    if got != want {
        return Err(format!("masked {got:?}"));
    }
    let b: bool = row.get(7);
    let bi: Vec<u8> = row.get(8);
    if b || !bi.is_empty() || row.get::<_, String>(9) != MASKED_TEXT[9] {
        return Err(format!("redacted bool/bytea/note {b} {bi:?}"));
    }
    Ok(String::new())
}

async fn notify_masked(fx: &Fixture) -> Outcome {
    let r = async {
        let c = client(fx, MASK).await.map_err(Err)?;
        match c.batch_execute("LISTEN drv_tokio").await {
            Err(e) if sqlstate(&e).as_deref() == Some("42501") => Err(Ok(e2s(e))),
            Err(e) => Err(Err(e2s(e))),
            Ok(()) => Ok(String::new()),
        }
    };
    match r.await {
        Ok(d) => Outcome::new(DRIVER, version(), "notify_masked", "pass", &d),
        Err(Ok(why)) => Outcome::new(DRIVER, version(), "notify_masked", "refused", &why),
        Err(Err(e)) => Outcome::new(DRIVER, version(), "notify_masked", "fail", &e),
    }
}

/// Every tokio-postgres feature, in order (each depends on the rows the
/// earlier ones wrote).
pub async fn run(fx: &Fixture) -> Vec<Outcome> {
    let c = match client(fx, ADMIN).await {
        Ok(c) => c,
        Err(e) => return vec![outcome("params", Err(e))],
    };
    let mut out = vec![outcome("params", params(&c).await)];
    out.push(outcome(
        "binary",
        Ok("all parameters and results in binary".into()),
    ));
    out.push(outcome("metadata", metadata(&c).await));
    out.extend(lookup_prepared_pipeline(&c).await);
    out.extend(copy(&c).await);
    out.push(outcome("cancel", cancel(&c).await));
    out.push(outcome("notify", notify(fx).await));
    out.push(outcome("masked", masked(fx).await));
    out.push(notify_masked(fx).await);
    out
}

fn tool_version(tool: &str) -> String {
    let out = std::process::Command::new(tool).arg("--version").output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        // `psql (PostgreSQL) 15.18 (Debian …)`: the third word.
        .and_then(|s| s.split_whitespace().nth(2).map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn psql_as(fx: &Fixture, role: &str, sql: &str) -> ToolOut {
    psql(
        fx.proxy.port,
        &fx.db,
        role,
        PW,
        &["-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
        Some(sql),
    )
}

/// psql (simple protocol, literals, \copy) and pgbench (extended and
/// prepared modes, pipelines).
pub fn libpq_tools(fx: &Fixture) -> Vec<Outcome> {
    let v = tool_version("psql");
    let mut out = Vec::new();
    let mut push = |feature: &str, ok: bool, detail: String| {
        let status = if ok { "pass" } else { "fail" };
        out.push(Outcome::new(
            "psql",
            &v,
            feature,
            status,
            if ok { "" } else { &detail },
        ));
    };
    let ins = psql_as(
        fx,
        ADMIN,
        &format!(
            "INSERT INTO drv_psql (id, {COLS}) VALUES (1, {ROW_SQL});\n\
             SELECT {COLS} FROM drv_psql WHERE id = 1;\n"
        ),
    );
    let want = "alice@example.com|bob@example.org|1990-01-02|2024-05-06 07:08:09.123456+00|12344|9007199254740993|12345.678|t|\\x0001feff|row one";
    push("params", ins.stdout.trim() == want, format!("{ins:?}"));
    let look = psql_as(
        fx,
        ADMIN,
        "SELECT id FROM drv_psql WHERE t = 'alice@example.com';",
    );
    push("lookup", look.stdout.trim() == "1", format!("{look:?}"));
    let cin = psql_as(
        fx,
        ADMIN,
        "\\copy drv_psql (id, t, d, i4, note) FROM STDIN\n20\tcopy@example.com\t1990-01-02 +00\t7\tcopied\n\\.\n\
         SELECT t, d, i4 FROM drv_psql WHERE id = 20;\n",
    );
    push(
        "copy_in",
        cin.stdout.trim() == "copy@example.com|1990-01-02|7",
        format!("{cin:?}"),
    );
    let cout = psql_as(
        fx,
        ADMIN,
        "\\copy (SELECT id, t, d FROM drv_psql ORDER BY id) TO STDOUT\n",
    );
    push(
        "copy_out",
        cout.stdout == "1\talice@example.com\t1990-01-02\n20\tcopy@example.com\t1990-01-02\n",
        format!("{cout:?}"),
    );
    let m = psql_as(
        fx,
        MASK,
        &format!("SELECT {COLS} FROM drv_psql WHERE id = 1;"),
    );
    push(
        "masked",
        m.stdout.trim() == MASKED_TEXT.join("|"),
        format!("{m:?}"),
    );
    out.extend(pgbench(fx));
    out
}

fn pgbench(fx: &Fixture) -> Vec<Outcome> {
    let v = tool_version("pgbench");
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("drv.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 1000000000)\n\\set i4 random(1, 1000)\n\
         INSERT INTO drv_pgbench (id, t, d, i4, note) VALUES (:id, 'bench@example.com', '1990-01-02', :i4, 'b');\n\
         \\startpipeline\n\
         SELECT t, d FROM drv_pgbench WHERE t = 'bench@example.com' LIMIT 1;\n\
         SELECT count(*) FROM drv_pgbench WHERE i4 = :i4;\n\
         \\endpipeline\n",
    )
    .expect("write pgbench script");
    let mut out = Vec::new();
    for (feature, mode) in [("prepared", "prepared"), ("pipeline", "extended")] {
        let mut cmd = client_cmd("pgbench", fx.proxy.port, &fx.db, ADMIN, PW);
        cmd.args(["-n", "-c", "2", "-t", "10", "-M", mode, "-f"])
            .arg(&script);
        let r = run_tool(cmd, None, Duration::from_secs(60));
        let ok = r.status.success() && r.stdout.contains("number of failed transactions: 0");
        let detail = if ok { String::new() } else { format!("{r:?}") };
        out.push(Outcome::new(
            "pgbench",
            &v,
            feature,
            if ok { "pass" } else { "fail" },
            &detail,
        ));
    }
    out
}
