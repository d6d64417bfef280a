//! Keyring files: creation with mode 0600, atomic rotation, loading with a
//! permission check, and the `PGVEIL_KEYRING` environment variable.
//!
//! Unix only: the permission model is the point of this module. A keyring
//! readable by group or others is refused, because any local user who can
//! read the master keys can decrypt every column. The environment variable
//! path has no such check (there is no file to inspect); container runtimes
//! protect it instead.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::keyring::{Keyring, KeyringError, ENV_VAR};

impl Keyring {
    /// Writes the keyring to a new file with mode 0600. Fails if `path`
    /// exists: overwriting a keyring would destroy the keys of existing data.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyringError> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    KeyringError::AlreadyExists {
                        path: path.to_path_buf(),
                    }
                } else {
                    KeyringError::Write {
                        path: path.to_path_buf(),
                        source: e,
                    }
                }
            })?;
        let res = write_secret(&mut f, &self.to_file_string());
        if let Err(source) = res {
            drop(f);
            let _ = fs::remove_file(path);
            return Err(KeyringError::Write {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(())
    }

    /// Loads the keyring at `path`, adds a new active key and replaces the
    /// file atomically (temporary file in the same directory, fsync, rename),
    /// so a crash leaves either the old or the new keyring, never half of one.
    /// The file keeps mode 0600. If `path` is a symlink, the link itself is
    /// replaced by a regular file. Returns the rotated keyring.
    pub fn rotate_file(path: &Path) -> Result<Keyring, KeyringError> {
        let mut ring = Keyring::load_file(path)?;
        ring.rotate()?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{base}.tmp.{}.{:08x}",
            std::process::id(),
            // Unique enough with the pid; create_new refuses a collision.
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        let write_err = |source| KeyringError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err)?;
        let res = write_secret(&mut f, &ring.to_file_string()).and_then(|()| {
            drop(f);
            fs::rename(&tmp, path)
        });
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        // Make the rename itself durable; failure here is not fatal because
        // the new file is complete either way.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(ring)
    }

    /// Reads a keyring file, refusing one that others may read or that
    /// anyone but its owner may change (see [`mode_is_private`]).
    /// The check uses the opened file (fstat), so it follows symlinks and
    /// cannot race with a swap of the path.
    pub fn load_file(path: &Path) -> Result<Keyring, KeyringError> {
        let read_err = |source| KeyringError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut f = File::open(path).map_err(read_err)?;
        let meta = f.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(KeyringError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if !mode_is_private(mode) {
            return Err(KeyringError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = Zeroizing::new(String::with_capacity(meta.len() as usize + 1));
        f.read_to_string(&mut text).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                KeyringError::Malformed {
                    origin: path.display().to_string(),
                    line: None,
                    reason: "not UTF-8 text".into(),
                }
            } else {
                read_err(e)
            }
        })?;
        Keyring::parse(&text, &path.display().to_string())
    }

    /// Reads the keyring from `PGVEIL_KEYRING` if it is set. `Ok(None)` when
    /// the variable is absent or empty.
    pub fn from_env() -> Result<Option<Keyring>, KeyringError> {
        match std::env::var(ENV_VAR) {
            Ok(v) => {
                let v = Zeroizing::new(v);
                if v.trim().is_empty() {
                    return Ok(None);
                }
                Keyring::parse(&v, ENV_VAR).map(Some)
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(KeyringError::Malformed {
                origin: ENV_VAR.into(),
                line: None,
                reason: "not UTF-8 text".into(),
            }),
        }
    }
}

fn write_secret(f: &mut File, text: &str) -> io::Result<()> {
    // Set the mode explicitly too: the mode given at creation is filtered by
    // the umask, and a umask could have removed the owner's write bit.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Whether a keyring file's mode keeps its keys private: no permission at all
/// for others, and at most read for the group. Group read is allowed because
/// Kubernetes mounts a Secret as `root:<fsGroup>` with `defaultMode` 0440 (or
/// 0640) and the container runs as a non-root member of that group; the group
/// is then the pod, not other users of a host. Group write or execute is
/// refused because a member could swap the keys under the proxy.
pub fn mode_is_private(mode: u32) -> bool {
    mode & 0o037 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keyring::Purpose;
    use crate::rules::model::TableName;

    fn set_mode(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn file_modes_0600_0440_accepted_world_or_group_write_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring.toml");
        let ring = Keyring::generate().unwrap();
        ring.write_new_file(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = Keyring::load_file(&p).unwrap();
        assert_eq!(loaded.key_ids(), vec![1]);
        for mode in [0o644, 0o604, 0o660, 0o444, 0o670, 0o650, 0o601] {
            set_mode(&p, mode);
            let msg = Keyring::load_file(&p).unwrap_err().to_string();
            assert!(msg.contains(&format!("chmod 600 {}", p.display())), "{msg}");
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        }
        for mode in [0o400, 0o440, 0o640] {
            set_mode(&p, mode);
            assert!(
                Keyring::load_file(&p).is_ok(),
                "{mode:04o}: owner-only or group read (Kubernetes Secret with fsGroup) is fine"
            );
        }
    }

    #[test]
    fn write_new_refuses_existing_and_rotate_file_keeps_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ring.toml");
        let ring = Keyring::generate().unwrap();
        ring.write_new_file(&p).unwrap();
        let before = fs::read_to_string(&p).unwrap();
        let err = Keyring::generate().unwrap().write_new_file(&p).unwrap_err();
        assert!(matches!(err, KeyringError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            before,
            "existing keyring untouched"
        );

        let rotated = Keyring::rotate_file(&p).unwrap();
        assert_eq!((rotated.active_id(), rotated.key_ids()), (2, vec![1, 2]));
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let reloaded = Keyring::load_file(&p).unwrap();
        assert_eq!(reloaded.key_ids(), vec![1, 2]);
        let t = TableName {
            schema: "s".into(),
            name: "t".into(),
        };
        assert_eq!(
            *reloaded.derive(1, Purpose::Encrypt, &t, "c").unwrap(),
            *ring.derive(1, Purpose::Encrypt, &t, "c").unwrap(),
            "old key survives rotation byte for byte"
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");

        set_mode(&p, 0o644);
        assert!(matches!(
            Keyring::rotate_file(&p),
            Err(KeyringError::InsecurePermissions { .. })
        ));
    }

    #[test]
    fn missing_file_and_directory_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            Keyring::load_file(&missing),
            Err(KeyringError::Read { .. })
        ));
        set_mode(dir.path(), 0o700);
        assert!(matches!(
            Keyring::load_file(dir.path()),
            Err(KeyringError::NotAFile { .. })
        ));
    }
}
