//! Fixture of the `pgveil encrypt` tests: a `people` table of plaintext
//! rows whose values are a function of the id (so any value can be checked
//! without keeping a copy), rules, a keyring and the real binary.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use pgveil::crypto::{looks_like_ciphertext, parse_header, ColumnCipher, Keyring};
use pgveil::rules::{EncryptMode, TableName};

use super::common::*;

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn pgveil_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgveil"))
        .args(args)
        .output()
        .expect("run pgveil")
}

/// The original plaintext of row `id`: (email, ssn, born).
pub fn expected(id: i64) -> (Option<String>, Option<String>, Option<String>) {
    let email = (id % 50 != 0).then(|| format!("user{id}@example.com"));
    let ssn = format!("{:03}-{:02}-{:04}", id % 1000, id % 100, id % 10000);
    let base = chrono::NaiveDate::from_ymd_opt(1950, 1, 1).expect("date");
    let born = base + chrono::Duration::days(id % 20000);
    (email, Some(ssn), Some(born.format("%Y-%m-%d").to_string()))
}

#[derive(Clone, Copy)]
pub enum Stage {
    /// The rules once converted, deployed from the start (pgveil serves each
    /// column as what it is meanwhile).
    Target,
    /// The same, plus [`SUPPORT_ROLE`] reading email masked (`email` mask)
    /// and denied the other columns.
    WithSupport,
}

/// A restricted role of the tests that need one (see [`Fixture::support_role`]).
pub const SUPPORT_ROLE: &str = "enc_support";
pub const SUPPORT_PASSWORD: &str = "enc-Pa55word";

pub struct Fixture {
    pub db: String,
    pub n: i64,
    pub rules: PathBuf,
    pub proxy_rules: PathBuf,
    pub keyring: PathBuf,
    pub dir: tempfile::TempDir,
}

fn rule(name: &str, ty: &str, enc: Option<&str>, extra_access: &str) -> String {
    let enc = enc
        .map(|e| format!("encrypt = \"{e}\"\n"))
        .unwrap_or_default();
    format!(
        "[[column]]\ntable = \"public.people\"\nname = \"{name}\"\ntype = \"{ty}\"\n{enc}class = \"pii\"\n\
         [column.access]\n{APP_USER} = \"plaintext\"\n{extra_access}\n"
    )
}

fn write_atomic(dir: &Path, text: &str) {
    let tmp = dir.join(".people.toml.tmp");
    std::fs::write(&tmp, text).expect("write rules");
    std::fs::rename(&tmp, dir.join("people.toml")).expect("rename rules");
}

impl Fixture {
    pub fn new(tag: &str, n: i64) -> Fixture {
        let c = shared();
        let db = c.fresh_db(tag);
        c.sql(
            &db,
            &format!(
                "CREATE TABLE people (id bigint PRIMARY KEY, email text, ssn varchar(11), born date, note text); \
                 INSERT INTO people SELECT i, CASE WHEN i % 50 = 0 THEN NULL ELSE 'user' || i || '@example.com' END, \
                 lpad((i % 1000)::text, 3, '0') || '-' || lpad((i % 100)::text, 2, '0') || '-' || lpad((i % 10000)::text, 4, '0'), \
                 DATE '1950-01-01' + (i % 20000)::int, 'n' FROM generate_series(1, {n}) i; \
                 ALTER TABLE people OWNER TO {APP_USER};"
            ),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("rules");
        let proxy_rules = dir.path().join("proxy-rules");
        std::fs::create_dir(&rules).expect("mkdir");
        std::fs::create_dir(&proxy_rules).expect("mkdir");
        let keyring = dir.path().join("keyring.toml");
        let out = pgveil_cmd(&["keygen", "--out", keyring.to_str().expect("utf8")]);
        assert!(out.status.success(), "{}", stderr(&out));
        let f = Fixture {
            db,
            n,
            rules,
            proxy_rules,
            keyring,
            dir,
        };
        f.write_rules(Stage::Target, "email");
        f
    }

    pub fn write_rules(&self, stage: Stage, email: &str) {
        let support = match stage {
            Stage::Target => String::new(),
            Stage::WithSupport => format!("{SUPPORT_ROLE} = \"email\"\n"),
        };
        let text = rule(email, "text", Some("deterministic"), &support)
            + &rule("ssn", "text", Some("deterministic"), "")
            + &rule("born", "date", Some("randomized"), "");
        write_atomic(&self.rules, &text);
        write_atomic(&self.proxy_rules, &text);
    }

    /// Creates [`SUPPORT_ROLE`] (once per cluster) and lets it read `people`.
    pub fn support_role(&self) {
        static ROLE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        ROLE.get_or_init(|| {
            shared()
                .pg
                .create_login_role(
                    SUPPORT_ROLE,
                    SUPPORT_PASSWORD,
                    pgveil::pgtemp::PasswordEncryption::Scram,
                )
                .expect("create role");
        });
        self.sql(&format!("GRANT SELECT, UPDATE ON people TO {SUPPORT_ROLE}"));
    }

    fn command(&self, keyring: Option<&Path>, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgveil"));
        cmd.arg("encrypt")
            .arg("--upstream")
            .arg(shared().url())
            .arg("--rules")
            .arg(&self.rules)
            .args(["--table", "public.people"])
            .args(extra)
            .env("PGUSER", APP_USER)
            .env("PGPASSWORD", APP_PASSWORD)
            .env("PGDATABASE", &self.db)
            .env_remove("PGVEIL_KEYRING");
        if let Some(k) = keyring {
            cmd.arg("--keyring").arg(k);
        }
        cmd
    }

    pub fn encrypt(&self, extra: &[&str]) -> Output {
        self.encrypt_with_keyring(Some(&self.keyring), extra)
    }

    pub fn encrypt_with_keyring(&self, keyring: Option<&Path>, extra: &[&str]) -> Output {
        self.command(keyring, extra)
            .output()
            .expect("run pgveil encrypt")
    }

    pub fn spawn_encrypt(&self, extra: &[&str]) -> Child {
        self.command(Some(&self.keyring), extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgveil encrypt")
    }

    /// `pgveil check --upstream` output (stdout and stderr).
    pub fn check(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_pgveil"))
            .arg("check")
            .arg("--rules")
            .arg(&self.rules)
            .arg("--upstream")
            .arg(shared().url())
            .arg("--keyring")
            .arg(&self.keyring)
            .env("PGUSER", APP_USER)
            .env("PGPASSWORD", APP_PASSWORD)
            .env("PGDATABASE", &self.db)
            .output()
            .expect("run pgveil check");
        format!("{}{}", stdout(&out), stderr(&out))
    }

    pub fn sql(&self, sql: &str) -> String {
        shared().sql(&self.db, sql).trim().to_string()
    }

    pub fn rows_done(&self) -> Option<i64> {
        let out = shared()
            .pg
            .psql(
                &self.db,
                "SELECT rows_done FROM pgveil.conversion WHERE table_name = 'people'",
            )
            .ok()?;
        out.trim().parse().ok()
    }

    pub fn column_type(&self, col: &str) -> String {
        self.sql(&format!(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'public.people'::regclass AND attname = '{col}' AND NOT attisdropped"
        ))
    }

    /// A copy of the keyring without key `id` (mode 0600).
    pub fn retire_key(&self, id: u32) -> PathBuf {
        let text = std::fs::read_to_string(&self.keyring).expect("read keyring");
        let mut parts = text.split("\n[[key]]\n");
        let mut out = parts.next().unwrap_or("").to_string();
        for block in parts {
            if !block.starts_with(&format!("id = {id}\n")) {
                out.push_str("\n[[key]]\n");
                out.push_str(block);
            }
        }
        let path = self.dir.path().join(format!("keyring-without-{id}.toml"));
        std::fs::write(&path, out).expect("write keyring");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Keyring::load_file(&path).expect("retired keyring loads");
        path
    }

    /// The proxy under the proxy's rules directory; `keep_rules` keeps
    /// what the test wrote there, otherwise the target rules are rewritten.
    pub fn proxy(&self, keyring: &Path, keep_rules: bool) -> Proxy {
        if !keep_rules {
            self.write_rules(Stage::Target, &self.target_email_name());
        }
        Proxy::start(
            &shared().url(),
            &[
                "--rules",
                self.proxy_rules.to_str().expect("utf8"),
                "--keyring",
                keyring.to_str().expect("utf8"),
            ],
        )
    }

    fn target_email_name(&self) -> String {
        let text = std::fs::read_to_string(self.rules.join("people.toml")).unwrap_or_default();
        if text.contains("name = \"mail\"") {
            "mail".into()
        } else {
            "email".into()
        }
    }

    fn ciphers(&self, keyring: &Path) -> [ColumnCipher; 3] {
        let ring = Keyring::load_file(keyring).expect("keyring");
        let t = TableName {
            schema: "public".into(),
            name: "people".into(),
        };
        let c = |n: &str, m| ColumnCipher::new(&ring, &t, n, m).expect("cipher");
        [
            c("email", EncryptMode::Deterministic),
            c("ssn", EncryptMode::Deterministic),
            c("born", EncryptMode::Randomized),
        ]
    }

    /// Directly in the database: every column bytea, every value ciphertext
    /// under `key_id` that decrypts (once) to its original; no shadow column
    /// or trigger left.
    pub fn assert_all_encrypted_and_original(&self, keyring: &Path, key_id: u32) {
        for c in ["email", "ssn", "born"] {
            assert_eq!(self.column_type(c), "bytea", "{c}");
        }
        assert_eq!(
            self.sql(&leftovers_sql()),
            "0",
            "shadow columns or trigger left"
        );
        let ciphers = self.ciphers(keyring);
        rt().block_on(async {
            let c = connect(shared().pg.port(), &self.db, APP_USER, APP_PASSWORD)
                .await
                .expect("connect");
            let rows = c
                .query("SELECT id, email, ssn, born FROM people ORDER BY id", &[])
                .await
                .expect("select");
            assert_eq!(rows.len() as i64, self.n);
            for r in rows {
                let id: i64 = r.get(0);
                let want = expected(id);
                let want = [want.0, want.1, want.2];
                for (i, cipher) in ciphers.iter().enumerate() {
                    let v: Option<Vec<u8>> = r.get(i + 1);
                    let got = v.map(|v| {
                        assert!(
                            looks_like_ciphertext(&v),
                            "id {id} col {i}: plaintext at rest"
                        );
                        assert_eq!(parse_header(&v).unwrap().key_id, key_id, "id {id} col {i}");
                        let p = cipher
                            .decrypt(&v)
                            .unwrap_or_else(|e| panic!("id {id} col {i}: {e}"));
                        assert!(
                            !looks_like_ciphertext(&p),
                            "id {id} col {i}: encrypted twice"
                        );
                        String::from_utf8(p).expect("utf8")
                    });
                    assert_eq!(got, want[i], "id {id} col {i}");
                }
            }
        });
    }

    /// Every stored email is ciphertext that decrypts; the acknowledged
    /// application writes hold what the application wrote.
    pub fn assert_no_plaintext_at_rest(&self, acked: &HashMap<i64, String>) {
        assert_eq!(self.column_type("email"), "bytea");
        assert_eq!(self.sql(&leftovers_sql()), "0");
        let [email, ..] = self.ciphers(&self.keyring);
        rt().block_on(async {
            let c = connect(shared().pg.port(), &self.db, APP_USER, APP_PASSWORD)
                .await
                .expect("connect");
            for r in c
                .query("SELECT id, email FROM people", &[])
                .await
                .expect("select")
            {
                let id: i64 = r.get(0);
                let Some(v) = r.get::<_, Option<Vec<u8>>>(1) else {
                    continue;
                };
                let p = email.decrypt(&v).unwrap_or_else(|e| panic!("id {id}: {e}"));
                let p = String::from_utf8(p).expect("utf8");
                match acked.get(&id) {
                    Some(w) => assert_eq!(&p, w, "id {id}"),
                    None if id <= self.n => assert_eq!(Some(p), expected(id).0, "id {id}"),
                    None => {}
                }
            }
        });
    }
}

fn leftovers_sql() -> String {
    "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.people'::regclass \
     AND attname LIKE 'pgveil_enc_%' AND NOT attisdropped) + \
     (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.people'::regclass AND tgname = 'zz_pgveil_sync')"
        .into()
}
