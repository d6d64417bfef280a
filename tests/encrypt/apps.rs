//! The applications of the online-conversion test: a reader and a writer
//! using `people` through the proxy for the whole conversion, swap
//! included. Every answer must be the right value; an error is allowed only
//! while the swap window is open, and only as a clear refusal (a SQLSTATE of
//! [`WINDOW_CODES`], the connection closed by pgveil, or the driver refusing
//! to send text for a column the server now calls bytea), never with a
//! value in its text.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::common::*;
use super::support::*;

/// What a statement may get in the window between the swap and the
/// session's next catalog read (see `snapshot::overlay`): the derived
/// table's vanished shadow (42703), pgveil's "prepare it again" (0A000),
/// pgveil closing the session over a swapped column (08P01), and for
/// writes still treating the column as plaintext the ciphertext check
/// (23514) or a type error (42804, 42883).
pub const WINDOW_CODES: &[&str] = &["42703", "0A000", "08P01", "23514", "42804", "42883"];

/// Whether `e` is a refusal allowed in the window: never a value in it.
pub fn window_refusal(e: &tokio_postgres::Error) -> bool {
    let text = format!("{e:?}");
    assert!(
        !text.contains("example.com") && !text.contains("\\\\x01"),
        "a refusal carried a value: {text}"
    );
    // A driver that checks parameter types refuses to send text for the
    // column the server now reports as bytea (nothing is written).
    let wrong_type = std::error::Error::source(e).is_some_and(|s| {
        s.downcast_ref::<tokio_postgres::types::WrongType>()
            .is_some()
    });
    match e.code() {
        Some(c) => WINDOW_CODES.contains(&c.code()),
        None => e.is_closed() || wrong_type,
    }
}

#[derive(Default)]
struct Flags {
    stop: AtomicBool,
    /// The swap may happen from now on.
    window_open: AtomicBool,
    /// The swap is done and every session has read its catalog since.
    window_closed: AtomicBool,
    reads: AtomicU64,
    refused: AtomicU64,
    reads_after: AtomicU64,
    writes_after: AtomicU64,
}

impl Flags {
    fn in_window(&self) -> bool {
        self.window_open.load(Ordering::SeqCst) && !self.window_closed.load(Ordering::SeqCst)
    }

    fn after(&self) -> bool {
        self.window_closed.load(Ordering::SeqCst)
    }
}

/// What the applications did.
#[derive(Debug)]
pub struct Totals {
    pub reads: u64,
    pub refused: u64,
    pub reads_after: u64,
    pub writes_after: u64,
    pub acked: HashMap<i64, String>,
}

pub struct Apps {
    flags: Arc<Flags>,
    acked: Arc<Mutex<HashMap<i64, String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Apps {
    pub fn start(proxy: &Proxy, db: &str) -> Apps {
        let flags = Arc::new(Flags::default());
        let acked: Arc<Mutex<HashMap<i64, String>>> = Arc::default();
        let (port, db1, db2) = (proxy.port, db.to_string(), db.to_string());
        let f = flags.clone();
        let reader = std::thread::spawn(move || rt().block_on(read_loop(port, db1, f)));
        let (f, a) = (flags.clone(), acked.clone());
        let writer = std::thread::spawn(move || rt().block_on(write_loop(port, db2, f, a)));
        Apps {
            flags,
            acked,
            threads: vec![reader, writer],
        }
    }

    pub fn open_window(&self) {
        self.flags.window_open.store(true, Ordering::SeqCst);
    }

    pub fn close_window(&self) {
        self.flags.window_closed.store(true, Ordering::SeqCst);
    }

    pub fn reads(&self) -> u64 {
        self.flags.reads.load(Ordering::SeqCst)
    }

    /// Stops both; their assertions surface here.
    pub fn stop(self) -> Totals {
        self.flags.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join()
                .expect("an application saw a wrong value or an error");
        }
        let f = &self.flags;
        Totals {
            reads: f.reads.load(Ordering::SeqCst),
            refused: f.refused.load(Ordering::SeqCst),
            reads_after: f.reads_after.load(Ordering::SeqCst),
            writes_after: f.writes_after.load(Ordering::SeqCst),
            acked: self.acked.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }
}

async fn app_connect(port: u16, db: &str) -> tokio_postgres::Client {
    connect(port, db, APP_USER, APP_PASSWORD)
        .await
        .expect("application connects")
}

/// One read by id and one equality lookup of rows the writer never touches.
async fn read_once(c: &tokio_postgres::Client, id: i64) -> Result<(), tokio_postgres::Error> {
    let want = expected(id).0;
    let got: Option<String> = c
        .query_one("SELECT email FROM people WHERE id = $1", &[&id])
        .await?
        .get(0);
    assert_eq!(got, want, "id {id}");
    if let Some(w) = want {
        let rows = c
            .query("SELECT id FROM people WHERE email = $1", &[&w])
            .await?;
        assert_eq!(rows.len(), 1, "lookup of id {id}");
        assert_eq!(rows[0].get::<_, i64>(0), id);
    }
    Ok(())
}

async fn read_loop(port: u16, db: String, f: Arc<Flags>) {
    let mut c = app_connect(port, &db).await;
    let mut id: i64 = 1;
    while !f.stop.load(Ordering::SeqCst) {
        id = (id * 7919 + 13) % 14_999 + 1;
        let after = f.after();
        match read_once(&c, id).await {
            Ok(()) => {
                f.reads.fetch_add(1, Ordering::SeqCst);
                if after {
                    f.reads_after.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) if f.in_window() && window_refusal(&e) => {
                f.refused.fetch_add(1, Ordering::SeqCst);
                if c.is_closed() {
                    c = app_connect(port, &db).await;
                }
            }
            Err(e) => panic!("read id {id} outside the swap window: {e:?}"),
        }
    }
}

/// Inserts new rows and updates rows 15000..20000, with parameters and with
/// literals; records what was acknowledged.
async fn write_loop(port: u16, db: String, f: Arc<Flags>, acked: Arc<Mutex<HashMap<i64, String>>>) {
    let mut c = app_connect(port, &db).await;
    let mut n: i64 = 0;
    while !f.stop.load(Ordering::SeqCst) {
        n += 1;
        let (id, email) = if n % 2 == 0 {
            (1_000_000 + n, format!("new{n}@example.com"))
        } else {
            (15_000 + n % 5_000, format!("upd{n}@example.com"))
        };
        let after = f.after();
        let r = if n % 3 == 0 {
            c.simple_query(&format!(
                "INSERT INTO people (id, email) VALUES ({id}, '{email}') \
                 ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email"
            ))
            .await
            .map(|_| ())
        } else {
            c.execute(
                "INSERT INTO people (id, email) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email",
                &[&id, &email],
            )
            .await
            .map(|_| ())
        };
        match r {
            Ok(()) => {
                if let Ok(mut m) = acked.lock() {
                    m.insert(id, email);
                }
                if after {
                    f.writes_after.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) if f.in_window() && window_refusal(&e) => {
                // Not acknowledged: the row keeps its previous value.
                if c.is_closed() {
                    c = app_connect(port, &db).await;
                }
            }
            Err(e) => panic!(
                "write {n} outside the swap window (open {}, closed {}): {e:?}",
                f.window_open.load(Ordering::SeqCst),
                f.window_closed.load(Ordering::SeqCst)
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
