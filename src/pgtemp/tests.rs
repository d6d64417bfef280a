use super::bin::newest_debian_bindir;
use super::*;

#[test]
fn versions_compare_numerically() {
    let dir = std::env::temp_dir().join(format!(
        "pgtemp-vers-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    ));
    for v in ["9.6", "10", "15", "notaversion"] {
        let bin = dir.join(v).join("bin");
        fs::create_dir_all(&bin).unwrap();
        for t in ["initdb", "pg_ctl", "postgres"] {
            let p = bin.join(t);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    // "16" exists but lacks the server tools (client-only install): must be skipped.
    fs::create_dir_all(dir.join("16").join("bin")).unwrap();
    let best = newest_debian_bindir(&dir);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(best, Some(dir.join("15").join("bin")));
}

#[test]
fn identifiers_are_checked() {
    assert!(check_ident("app_1").is_ok());
    assert!(check_ident("_x").is_ok());
    assert!(check_ident("1abc").is_err());
    assert!(check_ident("Abc").is_err());
    assert!(check_ident("a;drop").is_err());
    assert!(check_ident("").is_err());
}

#[test]
fn literals_are_quoted() {
    assert_eq!(quote_literal("it's"), "'it''s'");
}

#[test]
fn missing_binaries_error_names_the_package() {
    let e = PgBin::from_dir("/nonexistent/pg/bin").unwrap_err();
    assert!(e.to_string().contains(INSTALL_HINT), "{e}");
}

#[test]
fn options_debug_hides_password() {
    let o = PgTempOptions {
        superuser_password: Some("sekret".into()),
        ..Default::default()
    };
    assert!(!format!("{o:?}").contains("sekret"));
}

/// Full life cycle against the real binaries; skipped (with a note) when they are absent.
#[test]
fn cluster_starts_runs_sql_and_cleans_up() {
    let bin = match PgBin::find() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    let pg = PgTemp::start_with(bin, &PgTempOptions::default()).unwrap();
    let root = pg.root_dir().to_path_buf();
    assert!(!format!("{pg:?}").contains(pg.superuser_password()));
    assert_eq!(pg.psql("postgres", "SELECT 40 + 2").unwrap().trim(), "42");
    pg.create_login_role("alice", "pw'1", PasswordEncryption::Md5)
        .unwrap();
    pg.create_database("alicedb", "alice").unwrap();
    let enc = pg
        .psql(
            "postgres",
            "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'alice'",
        )
        .unwrap();
    assert_eq!(enc.trim(), "md5");
    assert!(pg.psql("postgres", "SELECT nope").is_err());
    pg.stop().unwrap();
    assert!(pg.psql("postgres", "SELECT 1").is_err());
    pg.restart().unwrap();
    assert_eq!(pg.psql("alicedb", "SELECT 1").unwrap().trim(), "1");
    drop(pg);
    assert!(!root.exists());
}
