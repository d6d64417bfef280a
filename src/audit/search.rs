//! `pgveil audit search`: filter records and print them.
//!
//! Search reads the segments in chain order and streams matching records; it
//! does not verify the chain (run `verify` for that). A partial last line of
//! a segment is a crash artefact, not a record, and is skipped; any other
//! unparsable line is yielded as an error so the caller can warn instead of
//! silently answering an auditor from a damaged log.
//!
//! The table formatter escapes control characters: fields such as
//! `application_name` are client-controlled and could otherwise carry
//! terminal escape sequences to the auditor's screen.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::merge::Merger;
use super::record::{AuditRecord, RecordKind, Timestamp, OUTCOME_OK};
use super::segment::{list_segments, SegmentEntry};

/// Which records to return. Every set field must match; text matches are
/// ASCII case-insensitive (Postgres folds unquoted names to lower case, and
/// auditors type names as they remember them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Inclusive lower bound on `time`.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound on `time`.
    pub until: Option<Timestamp>,
    /// Login role or any effective role.
    pub role: Option<String>,
    /// `schema.table`, or `table` to match it in any schema. Matches the
    /// `tables` list and the table part of tagged columns.
    pub table: Option<String>,
    /// `schema.table.column`, `table.column` or `column`.
    pub column: Option<String>,
    /// Classification of any tagged column.
    pub class: Option<String>,
    /// `ok`, a SQLSTATE, or `error` for anything but `ok`.
    pub outcome: Option<String>,
    pub kind: Option<RecordKind>,
}

/// `a.b.c` ends with the dotted components of `pattern` (`b.c`, `c`).
fn suffix_match(name: &str, pattern: &str) -> bool {
    let n: Vec<&str> = name.rsplit('.').collect();
    let p: Vec<&str> = pattern.rsplit('.').collect();
    p.len() <= n.len() && p.iter().zip(&n).all(|(a, b)| a.eq_ignore_ascii_case(b))
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Filter {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = Timestamp::parse(&r.time) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        if self.kind.is_some_and(|k| k != r.kind) {
            return false;
        }
        if let Some(role) = &self.role {
            let login = r.login_role.as_deref().is_some_and(|l| eq(l, role));
            if !login && !r.effective_roles.iter().any(|e| eq(e, role)) {
                return false;
            }
        }
        if let Some(t) = &self.table {
            let in_tables = r.tables.iter().any(|x| suffix_match(x, t));
            let in_columns = r.columns.iter().any(|c| {
                c.column
                    .rsplit_once('.')
                    .is_some_and(|(table, _)| suffix_match(table, t))
            });
            if !in_tables && !in_columns {
                return false;
            }
        }
        if let Some(c) = &self.column {
            if !r.columns.iter().any(|x| suffix_match(&x.column, c)) {
                return false;
            }
        }
        if let Some(class) = &self.class {
            if !r.columns.iter().any(|x| eq(&x.class, class)) {
                return false;
            }
        }
        if let Some(o) = &self.outcome {
            let ok = r.outcome == OUTCOME_OK;
            let hit = if eq(o, "error") {
                !ok
            } else {
                eq(&r.outcome, o)
            };
            if !hit {
                return false;
            }
        }
        true
    }
}

/// A line that could not be read as a record.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{segment} line {line}: not a valid audit record ({reason})")]
    Malformed {
        segment: String,
        line: u64,
        reason: String,
    },
}

/// Matching records in chain order, one per statement: a `pending`
/// statement record is given out with the outcome its later `outcomes`
/// record holds (see [`super::merge`]), and the `outcomes` records are
/// folded away, unless the filter asks for that kind. Errors for the
/// directory itself are returned at once; per-line problems are yielded as
/// `Err` items.
pub fn search(dir: &Path, filter: &Filter) -> Result<SearchIter, SearchError> {
    let segs = list_segments(dir).map_err(|source| SearchError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(SearchIter {
        raw: RawIter {
            segs: segs.into(),
            current: None,
            buf: Vec::new(),
        },
        merger: (filter.kind != Some(RecordKind::Outcomes)).then(Merger::default),
        out: VecDeque::new(),
        filter: filter.clone(),
        done: false,
    })
}

/// Iterator returned by [`search`].
pub struct SearchIter {
    raw: RawIter,
    merger: Option<Merger<SearchError>>,
    out: VecDeque<Result<AuditRecord, SearchError>>,
    filter: Filter,
    done: bool,
}

impl Iterator for SearchIter {
    type Item = Result<AuditRecord, SearchError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            while let Some(item) = self.out.pop_front() {
                match item {
                    Ok(r) if !self.filter.matches(&r) => {}
                    other => return Some(other),
                }
            }
            if self.done {
                return None;
            }
            match (self.raw.next(), &mut self.merger) {
                (Some(item), Some(m)) => m.push(item, &mut self.out),
                (Some(item), None) => self.out.push_back(item),
                (None, m) => {
                    if let Some(m) = m {
                        m.finish(&mut self.out);
                    }
                    self.done = true;
                }
            }
        }
    }
}

struct Current {
    name: String,
    reader: BufReader<File>,
    line: u64,
}

/// Every record of the segments, in chain order, unmerged and unfiltered.
struct RawIter {
    segs: VecDeque<SegmentEntry>,
    current: Option<Current>,
    buf: Vec<u8>,
}

impl Iterator for RawIter {
    type Item = Result<AuditRecord, SearchError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let cur = match &mut self.current {
                Some(c) => c,
                None => {
                    let seg = self.segs.pop_front()?;
                    match File::open(&seg.path) {
                        Ok(f) => self.current.insert(Current {
                            name: seg.name,
                            reader: BufReader::new(f),
                            line: 0,
                        }),
                        Err(source) => {
                            return Some(Err(SearchError::Io {
                                path: seg.path,
                                source,
                            }))
                        }
                    }
                }
            };
            self.buf.clear();
            match cur.reader.read_until(b'\n', &mut self.buf) {
                Err(source) => {
                    let name = cur.name.clone();
                    self.current = None;
                    return Some(Err(SearchError::Io {
                        path: PathBuf::from(name),
                        source,
                    }));
                }
                // End of segment, or a torn final line: next segment.
                Ok(0) => self.current = None,
                Ok(_) if self.buf.last() != Some(&b'\n') => self.current = None,
                Ok(n) => {
                    cur.line += 1;
                    match serde_json::from_slice::<AuditRecord>(&self.buf[..n - 1]) {
                        Ok(r) => return Some(Ok(r)),
                        Err(e) => {
                            return Some(Err(SearchError::Malformed {
                                segment: cur.name.clone(),
                                line: cur.line,
                                reason: e.to_string(),
                            }))
                        }
                    }
                }
            }
        }
    }
}

/// How `pgveil audit search` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON record per line, exactly as stored (minus nothing).
    Json,
    /// Aligned columns for reading.
    Table,
}

/// One record as a JSON line (without the newline).
pub fn format_json_line(r: &AuditRecord) -> String {
    // Serialising our own struct cannot fail; fall back to an empty object
    // rather than panic.
    serde_json::to_string(r).unwrap_or_else(|_| "{}".to_string())
}

/// Escapes control characters (including ESC and newlines) so a cell is
/// one visible line.
fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let v: Vec<char> = if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            v
        })
        .collect()
}

const HEADERS: [&str; 11] = [
    "SEQ", "TIME", "KIND", "ROLE", "DATABASE", "CLIENT", "STMT", "TABLES", "COLUMNS", "ROWS",
    "OUTCOME",
];

fn row(r: &AuditRecord) -> Vec<String> {
    let opt = |o: &Option<String>| o.as_deref().map_or_else(|| "-".to_string(), clean);
    let columns = r
        .columns
        .iter()
        .map(|c| {
            let mut s = format!("{}:{}", clean(&c.column), c.action.as_str());
            if let Some(m) = &c.mask {
                let _ = write!(s, "({})", clean(m));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(",");
    let or_dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    vec![
        r.seq.to_string(),
        clean(&r.time),
        r.kind.as_str().to_string(),
        opt(&r.login_role),
        opt(&r.database),
        opt(&r.client_addr),
        r.statement_kind.map_or("-", |k| k.as_str()).to_string(),
        or_dash(clean(&r.tables.join(","))),
        or_dash(columns),
        r.rows.to_string(),
        clean(&r.outcome),
    ]
}

/// Records as an aligned text table with a header line; the fingerprint is
/// the last, unpadded column.
pub fn format_table(records: &[AuditRecord]) -> String {
    let mut rows: Vec<Vec<String>> = vec![HEADERS.iter().map(|h| h.to_string()).collect()];
    let mut fps = vec!["FINGERPRINT".to_string()];
    for r in records {
        rows.push(row(r));
        fps.push(
            r.fingerprint
                .as_deref()
                .map_or_else(|| "-".to_string(), clean),
        );
    }
    let mut widths = [0usize; HEADERS.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (row, fp) in rows.iter().zip(&fps) {
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(out, "{cell:<w$}  ");
        }
        out.push_str(fp);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::audit::record::{
        AuditRecordInput, ChainHasher, ColumnAction, StatementKind, TaggedColumn, GENESIS_HASH,
    };
    use crate::audit::segment::segment_file_name;

    fn rec(seq: u64, secs: u64, role: &str, col: &str, class: &str, outcome: &str) -> AuditRecord {
        let mut i = AuditRecordInput::new(
            RecordKind::Statement,
            UNIX_EPOCH + Duration::from_secs(secs),
        );
        i.login_role = Some(role.into());
        i.effective_roles = vec![format!("{role}_group")];
        i.statement_kind = Some(StatementKind::Select);
        i.tables = vec![col.rsplit_once('.').unwrap().0.to_string()];
        i.columns = vec![TaggedColumn {
            column: col.into(),
            class: class.into(),
            action: ColumnAction::Masked,
            mask: Some("email".into()),
        }];
        i.outcome = outcome.into();
        i.fingerprint = Some("SELECT email FROM customers WHERE id = $1".into());
        let mut r = AuditRecord::from_input(i, seq, GENESIS_HASH.into());
        r.seal(&ChainHasher::new(None)).unwrap();
        r
    }

    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let a = [
            rec(
                1,
                1_700_000_000,
                "alice",
                "public.customers.email",
                "contact",
                "ok",
            ),
            rec(
                2,
                1_700_000_100,
                "bob",
                "public.orders.card",
                "payment",
                "42501",
            ),
        ];
        let b = [rec(
            3,
            1_700_000_200,
            "Alice",
            "sales.customers.ssn",
            "national_id",
            "ok",
        )];
        let join = |rs: &[AuditRecord]| {
            rs.iter()
                .map(|r| format_json_line(r) + "\n")
                .collect::<String>()
        };
        fs::write(d.path().join(segment_file_name(1, 1)), join(&a)).unwrap();
        // Second segment ends in a torn line, which search must skip.
        fs::write(
            d.path().join(segment_file_name(2, 3)),
            join(&b) + "{\"v\":1,\"se",
        )
        .unwrap();
        d
    }

    fn seqs(d: &Path, f: &Filter) -> Vec<u64> {
        search(d, f).unwrap().map(|r| r.unwrap().seq).collect()
    }

    #[test]
    fn filters_select_the_right_records() {
        let d = fixture();
        let p = d.path();
        assert_eq!(seqs(p, &Filter::default()), vec![1, 2, 3]);
        let f = |mutate: fn(&mut Filter)| {
            let mut f = Filter::default();
            mutate(&mut f);
            seqs(p, &f)
        };
        assert_eq!(f(|f| f.role = Some("alice".into())), vec![1, 3]);
        assert_eq!(f(|f| f.role = Some("bob_group".into())), vec![2]);
        assert_eq!(f(|f| f.table = Some("customers".into())), vec![1, 3]);
        assert_eq!(f(|f| f.table = Some("sales.customers".into())), vec![3]);
        assert_eq!(f(|f| f.table = Some("stomers".into())), Vec::<u64>::new());
        assert_eq!(f(|f| f.column = Some("email".into())), vec![1]);
        assert_eq!(f(|f| f.column = Some("customers.ssn".into())), vec![3]);
        assert_eq!(f(|f| f.class = Some("payment".into())), vec![2]);
        assert_eq!(f(|f| f.outcome = Some("error".into())), vec![2]);
        assert_eq!(f(|f| f.outcome = Some("ok".into())), vec![1, 3]);
        let since = Timestamp::parse("2023-11-14T22:15:00Z").unwrap();
        let until = Timestamp::parse("2023-11-14T22:16:40Z").unwrap();
        let mut t = Filter {
            since: Some(since),
            until: Some(until),
            ..Filter::default()
        };
        assert_eq!(seqs(p, &t), vec![2], "since inclusive, until exclusive");
        t.role = Some("alice".into());
        assert_eq!(seqs(p, &t), Vec::<u64>::new());
    }

    #[test]
    fn malformed_complete_line_is_reported_not_skipped() {
        let d = fixture();
        let path = d.path().join(segment_file_name(1, 1));
        let mut data = fs::read_to_string(&path).unwrap();
        data.push_str("garbage\n");
        fs::write(&path, data).unwrap();
        let items: Vec<_> = search(d.path(), &Filter::default()).unwrap().collect();
        assert_eq!(items.len(), 4);
        assert!(matches!(
            &items[2],
            Err(SearchError::Malformed { line: 3, .. })
        ));
        assert_eq!(items[3].as_ref().unwrap().seq, 3);
    }

    #[test]
    fn table_is_aligned_and_neutralises_control_characters() {
        let mut r = rec(10, 0, "eve\u{1b}[2J\nx", "public.t.c", "contact", "ok");
        r.application_name = Some("ignored".into());
        let r2 = rec(11, 0, "a", "public.t.c", "contact", "ok");
        let t = format_table(&[r, r2]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(!t.contains('\u{1b}'));
        assert!(lines[1].contains("eve\\u{1b}[2J\\nx"));
        let col = |l: &str| l.find("1970").unwrap();
        assert_eq!(col(lines[1]), col(lines[2]));
        assert_eq!(lines[0].find("TIME"), Some(col(lines[1])));
        assert!(lines[1].contains("public.t.c:masked(email)"));
    }
}
