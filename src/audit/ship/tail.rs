//! Reads the local segments forward from the cursor, record by record.
//!
//! The shipper never gets records from the writer: it reads the files the
//! writer already wrote, on its own thread, so the statement path pays
//! nothing for shipping. Only complete lines are read (a line being written
//! has no newline yet), and only up to the writer's fsynced seq, so nothing
//! is shipped that a power loss could still take back.
//!
//! **Moving to the next segment.** The writer never appends to a segment
//! once it has created the next one. So the directory is listed *before*
//! the current segment is read to its end: if that listing already showed a
//! newer segment, the read saw everything the current one will ever hold,
//! and whatever follows its last newline is a torn tail (named by a
//! recovery record), not a record. Listing after the read could skip a
//! record appended between the two.
//!
//! Every line is checked like `verify` does (canonical bytes, hash, seq
//! continuity, `prev` link): the shipper publishes the chain, not just bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::audit::record::{ChainHasher, Timestamp};
use crate::audit::segment::{check_line, list_segments, SegmentEntry};

/// Most bytes read from a segment at once.
const READ_CHUNK: u64 = 1 << 20;

/// One complete, checked record line.
#[derive(Debug, Clone)]
pub struct Line {
    pub seq: u64,
    pub hash: String,
    pub time: Option<Timestamp>,
    /// The line exactly as on disk, without its newline.
    pub bytes: Bytes,
    pub segment: String,
    /// Offset just after this line's newline.
    pub end_offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The local chain does not continue where expected; `verify` the
    /// directory. Nothing after this point is shipped.
    #[error("{segment}: {problem}")]
    Chain { segment: String, problem: String },
}

pub struct LocalTail {
    dir: PathBuf,
    hasher: ChainHasher,
    seg: Option<SegmentEntry>,
    offset: u64,
    /// Seq the next record must have (`None`: whatever the oldest segment
    /// starts with, e.g. after old segments were archived).
    expect: Option<u64>,
    /// Hash the next record's `prev` must equal (`None`: not known).
    prev: Option<String>,
}

impl LocalTail {
    /// Positioned at the start of the oldest segment.
    pub fn from_start(dir: &Path, hasher: ChainHasher) -> Self {
        LocalTail {
            dir: dir.to_path_buf(),
            hasher,
            seg: None,
            offset: 0,
            expect: None,
            prev: None,
        }
    }

    /// Positioned after record `seq` (hash `hash`), which ends at `offset`
    /// of `segment`. Returns `None` when that segment is gone.
    pub fn at(
        dir: &Path,
        hasher: ChainHasher,
        segment: &str,
        offset: u64,
        seq: u64,
        hash: &str,
    ) -> Result<Option<Self>, TailError> {
        let segs = list(dir)?;
        let Some(seg) = segs.into_iter().find(|s| s.name == segment) else {
            return Ok(None);
        };
        Ok(Some(LocalTail {
            dir: dir.to_path_buf(),
            hasher,
            seg: Some(seg),
            offset,
            expect: Some(seq + 1),
            prev: Some(hash.to_string()),
        }))
    }

    /// Hash of the last record read (for comparison with the sink's).
    pub fn prev(&self) -> Option<&str> {
        self.prev.as_deref()
    }

    /// Segment and offset of the next record to read, once known.
    pub fn position(&self) -> Option<(String, u64)> {
        self.seg.as_ref().map(|s| (s.name.clone(), self.offset))
    }

    /// Reads up to `max` records with seq <= `limit`. An empty result means
    /// nothing new is durable yet.
    pub fn read(&mut self, max: usize, limit: u64) -> Result<Vec<Line>, TailError> {
        let mut out = Vec::new();
        loop {
            let segs = list(&self.dir)?;
            let seg = match &self.seg {
                Some(s) => s.clone(),
                None => match segs.first() {
                    Some(first) => {
                        self.seg = Some(first.clone());
                        self.offset = 0;
                        first.clone()
                    }
                    None => return Ok(out),
                },
            };
            let newer = segs.into_iter().find(|s| s.index > seg.index);
            let data = read_from(&seg.path, self.offset)?;
            let before = out.len();
            let stopped = self.take_lines(&seg, &data, max, limit, &mut out)?;
            if out.len() > before || stopped {
                return Ok(out);
            }
            // Nothing complete left here: move on only if the writer had
            // already moved on before we read.
            match newer {
                Some(next) => {
                    self.seg = Some(next);
                    self.offset = 0;
                }
                None => return Ok(out),
            }
        }
    }

    /// Parses complete lines of `data` (the segment from `self.offset`).
    /// True when it stopped early (batch full, or not yet durable).
    fn take_lines(
        &mut self,
        seg: &SegmentEntry,
        data: &[u8],
        max: usize,
        limit: u64,
        out: &mut Vec<Line>,
    ) -> Result<bool, TailError> {
        let mut pos = 0usize;
        while let Some(nl) = data[pos..].iter().position(|&b| b == b'\n') {
            if out.len() >= max {
                return Ok(true);
            }
            let raw = &data[pos..pos + nl];
            let chain = |problem: String| TailError::Chain {
                segment: seg.name.clone(),
                problem,
            };
            let rec = check_line(raw, &self.hasher)
                .map_err(|p| chain(format!("at offset {}: {p}", self.offset)))?;
            if rec.seq > limit {
                return Ok(true);
            }
            if self.expect.is_some_and(|e| e != rec.seq) {
                return Err(chain(format!(
                    "expected seq {}, found {}",
                    self.expect.unwrap_or(0),
                    rec.seq
                )));
            }
            if self.prev.as_ref().is_some_and(|p| *p != rec.prev) {
                return Err(chain(format!(
                    "seq {}: prev does not match the previous record",
                    rec.seq
                )));
            }
            self.offset += nl as u64 + 1;
            pos += nl + 1;
            self.expect = Some(rec.seq + 1);
            self.prev = Some(rec.hash.clone());
            out.push(Line {
                seq: rec.seq,
                time: Timestamp::parse(&rec.time).ok(),
                hash: rec.hash,
                bytes: Bytes::copy_from_slice(raw),
                segment: seg.name.clone(),
                end_offset: self.offset,
            });
        }
        Ok(false)
    }
}

fn list(dir: &Path) -> Result<Vec<SegmentEntry>, TailError> {
    list_segments(dir).map_err(|source| TailError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, TailError> {
    let io = |source| TailError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = Vec::new();
    f.take(READ_CHUNK).read_to_end(&mut buf).map_err(io)?;
    Ok(buf)
}
