//! The upstream may be a Unix-domain socket directory, as libpq accepts it
//! (`postgres://%2Fpath` or `?host=/path`): the proxy then reaches
//! PostgreSQL without TCP.

mod common;

use common::*;

fn percent_encode_path(p: &str) -> String {
    p.bytes()
        .map(|b| match b {
            b'/' => "%2F".to_string(),
            b if b.is_ascii_alphanumeric() || b"-_.".contains(&b) => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_directory_upstream_is_reached_over_the_unix_socket() {
    let c = shared();
    let db = c.fresh_db("unix_upstream");
    let dir = c.pg.socket_dir().to_str().expect("utf8").to_string();
    for upstream in [
        // sslmode is ignored on a Unix socket, as libpq does.
        format!(
            "postgres://?host={dir}&port={}&sslmode=require",
            c.pg.port()
        ),
        format!("postgres://{}:{}", percent_encode_path(&dir), c.pg.port()),
    ] {
        let p = Proxy::start(&upstream, &[]);
        let client = connect(p.port, &db, APP_USER, APP_PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{upstream}: {e}\n{}", p.log()));
        let rows = client
            .simple_query("SELECT (inet_server_addr() IS NULL)::text")
            .await
            .expect("query");
        let local = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(
            local.as_deref(),
            Some("true"),
            "{upstream}: not a Unix-socket session"
        );
    }
}
