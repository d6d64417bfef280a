//! Finding the PostgreSQL binaries the throwaway cluster runs: the
//! `PGVEIL_PG_BIN` override, `PATH`, or the newest Debian install.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{PgTempError, BIN_ENV};

/// The directory of PostgreSQL server binaries, and lookup of the client tools beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBin {
    pub(super) dir: PathBuf,
}

impl PgBin {
    /// Finds the binaries: `$PGVEIL_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`,
    /// else `pg_config --bindir`, else the directory of an `initdb` on `PATH`.
    pub fn find() -> Result<Self, PgTempError> {
        if let Some(dir) = std::env::var_os(BIN_ENV) {
            let dir = PathBuf::from(dir);
            return if has_server_tools(&dir) {
                Ok(Self { dir })
            } else {
                Err(PgTempError::BinariesMissing {
                    looked: format!("{BIN_ENV}={} has no initdb/pg_ctl/postgres", dir.display()),
                })
            };
        }
        let mut looked = Vec::new();
        if let Some(dir) = newest_debian_bindir(Path::new("/usr/lib/postgresql")) {
            return Ok(Self { dir });
        }
        looked.push("/usr/lib/postgresql/*/bin".to_string());
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            if out.status.success() {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if has_server_tools(&dir) {
                    return Ok(Self { dir });
                }
                looked.push(format!("pg_config --bindir ({})", dir.display()));
            }
        } else {
            looked.push("pg_config (not installed)".to_string());
        }
        if let Some(initdb) = which("initdb") {
            let real = fs::canonicalize(&initdb).unwrap_or(initdb);
            if let Some(dir) = real.parent() {
                if has_server_tools(dir) {
                    return Ok(Self {
                        dir: dir.to_path_buf(),
                    });
                }
            }
        }
        looked.push("PATH".to_string());
        Err(PgTempError::BinariesMissing {
            looked: looked.join(", "),
        })
    }

    /// Uses an explicit directory (no validation beyond the presence of the server tools).
    pub fn from_dir(dir: impl Into<PathBuf>) -> Result<Self, PgTempError> {
        let dir = dir.into();
        if has_server_tools(&dir) {
            Ok(Self { dir })
        } else {
            Err(PgTempError::BinariesMissing {
                looked: dir.display().to_string(),
            })
        }
    }

    /// The server binary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a tool: the one beside the server binaries (matching version) if present,
    /// else the first on `PATH`.
    pub fn tool(&self, name: &str) -> Result<PathBuf, PgTempError> {
        let beside = self.dir.join(name);
        if is_executable(&beside) {
            return Ok(beside);
        }
        which(name).ok_or_else(|| PgTempError::ToolMissing {
            tool: name.to_string(),
            dir: self.dir.clone(),
        })
    }
}

fn has_server_tools(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|t| is_executable(&dir.join(t)))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// Picks the highest version directory (`15`, `16`, `9.6` …) that holds the server tools.
pub(super) fn newest_debian_bindir(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in fs::read_dir(root).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = parse_version(&name) else {
            continue;
        };
        let bin = entry.path().join("bin");
        if !has_server_tools(&bin) {
            continue;
        }
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, p)| p)
}

fn parse_version(s: &str) -> Option<Vec<u32>> {
    s.split('.').map(|p| p.parse().ok()).collect()
}
