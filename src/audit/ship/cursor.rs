//! The shipper's durable cursor: how far the sink has acknowledged.
//!
//! One small JSON file next to the segments (`ship-cursor.json`, a name
//! `list_segments` ignores). It is replaced atomically: written to a
//! temporary file, fsynced, renamed over the old one, and the directory
//! fsynced, so a crash leaves either the old or the new cursor, never a torn
//! one. The cursor only ever moves to records the sink acknowledged; a crash
//! after an ack but before the rename re-publishes at most one batch, which
//! JetStream drops as duplicates (`Nats-Msg-Id` = chain hash).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::record::GENESIS_HASH;
use crate::audit::segment::sync_dir;

use super::ShipError;

pub const CURSOR_FILE: &str = "ship-cursor.json";
const CURSOR_TMP: &str = "ship-cursor.json.tmp";

/// Position after the newest acknowledged record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub v: u32,
    /// Where this cursor's acknowledgements came from: a cursor for another
    /// stream or subject says nothing about this one.
    pub stream: String,
    pub subject: String,
    /// Seq and hash of the newest acknowledged record (0 / genesis: none).
    pub seq: u64,
    pub hash: String,
    /// Segment holding the next record to read, and the byte offset in it.
    /// `None`: start from the oldest segment.
    pub segment: Option<String>,
    pub offset: u64,
    /// JetStream sequence of the newest acknowledged record.
    pub stream_seq: u64,
}

impl Cursor {
    pub fn start(stream: &str, subject: &str) -> Self {
        Cursor {
            v: 1,
            stream: stream.to_string(),
            subject: subject.to_string(),
            seq: 0,
            hash: GENESIS_HASH.to_string(),
            segment: None,
            offset: 0,
            stream_seq: 0,
        }
    }
}

pub fn cursor_path(dir: &Path) -> PathBuf {
    dir.join(CURSOR_FILE)
}

/// The stored cursor for `stream`/`subject`, or a fresh one when there is
/// none, it belongs to another destination (then everything is shipped to
/// the new one), or it does not parse. A fresh cursor is always safe: the
/// shipper first asks the stream where this subject stands and skips what
/// it holds, so a lost cursor costs a rescan of the local files, never a
/// duplicate, and never stops the proxy from serving.
pub fn load(dir: &Path, stream: &str, subject: &str) -> Result<Cursor, ShipError> {
    let path = cursor_path(dir);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Cursor::start(stream, subject))
        }
        Err(source) => return Err(ShipError::Io { path, source }),
    };
    let c: Cursor = match serde_json::from_slice(&text) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "audit ship cursor unreadable; starting from the stream's position");
            return Ok(Cursor::start(stream, subject));
        }
    };
    if c.stream != stream || c.subject != subject {
        tracing::warn!(
            old_stream = %c.stream, old_subject = %c.subject,
            "audit ship destination changed; shipping the whole local audit to the new one"
        );
        return Ok(Cursor::start(stream, subject));
    }
    Ok(c)
}

/// Replaces the cursor file atomically and durably.
pub fn store(dir: &Path, c: &Cursor) -> Result<(), ShipError> {
    let tmp = dir.join(CURSOR_TMP);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ShipError::Io { path, source }
    };
    let body = serde_json::to_vec(c).map_err(|e| ShipError::Cursor(e.to_string()))?;
    let mut f: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(&body).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    let path = cursor_path(dir);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_resets_for_another_destination() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            load(d.path(), "S", "a.b").unwrap(),
            Cursor::start("S", "a.b")
        );
        let mut c = Cursor::start("S", "a.b");
        c.seq = 42;
        c.hash = "ab".repeat(32);
        c.segment = Some("audit-0000000001-00000000000000000001.jsonl".into());
        c.offset = 1234;
        c.stream_seq = 99;
        store(d.path(), &c).unwrap();
        store(d.path(), &c).unwrap();
        assert_eq!(load(d.path(), "S", "a.b").unwrap(), c);
        assert!(!d.path().join(CURSOR_TMP).exists());
        assert_eq!(load(d.path(), "T", "a.b").unwrap().seq, 0);
        assert_eq!(load(d.path(), "S", "a.c").unwrap().seq, 0);
        fs::write(cursor_path(d.path()), b"{\"v\":1,").unwrap();
        assert_eq!(
            load(d.path(), "S", "a.b").unwrap(),
            Cursor::start("S", "a.b")
        );
    }
}
