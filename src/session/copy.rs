//! COPY through a session under rules: the tagged fields of each row are
//! encrypted on the way in (COPY … FROM STDIN) and decrypted, masked or
//! nulled on the way out (COPY … TO STDOUT), in flight, in text, CSV and
//! binary format.
//!
//! The server announces the copy (CopyInResponse / CopyOutResponse); the
//! backend loop then opens a [`CopyStream`] from the running statement's
//! plan. Rows may be split across CopyData messages anywhere; the
//! [`crate::copy::CopyTransformer`] reassembles them.

use std::sync::Arc;

use bytes::BytesMut;

use crate::copy::{
    bytea_hex, parse_bytea_text, BinaryTransformer, CopyFormat as WireFormat, CopyOptions,
    CopyTransformer, DEFAULT_MAX_LINE_BYTES,
};
use crate::metrics::metrics;
use crate::protocol::rows::copy_data;
use crate::rules::{Access, ColumnRule};
use crate::snapshot::Snapshot;
use crate::sql::{refuse, CopyFormat, CopyPlan, Encryptor, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDir {
    In,
    Out,
}

/// The row splitter for the stream's format.
enum Codec {
    Textual(CopyTransformer),
    Binary(BinaryTransformer),
}

pub struct CopyStream {
    pub dir: CopyDir,
    /// The server's overall format code for this copy (0 text/CSV, 1 binary),
    /// checked against CopyInResponse/CopyOutResponse before any data.
    pub format_code: u8,
    transformer: Option<Codec>,
    rules: Vec<Option<Arc<ColumnRule>>>,
    roles: Arc<Vec<String>>,
    /// The stream failed; the rest of it is dropped.
    pub failed: Option<Refusal>,
    /// CopyFail went to the server for this stream.
    pub fail_sent: bool,
}

impl std::fmt::Debug for CopyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyStream")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn options(plan: &CopyPlan) -> CopyOptions {
    let mut o = match plan.format {
        CopyFormat::Csv => CopyOptions::csv(),
        CopyFormat::Text | CopyFormat::Binary => CopyOptions::text(),
    };
    o.delimiter = plan.delimiter as u8;
    o.null = plan.null.as_bytes().to_vec();
    o.header = plan.header;
    if matches!(o.format, WireFormat::Csv) {
        o.quote = plan.quote as u8;
        o.escape = plan.escape as u8;
    }
    o
}

impl CopyStream {
    /// A stream that failed to open: its data is refused.
    pub fn failed(dir: CopyDir, r: Refusal) -> Self {
        CopyStream {
            dir,
            format_code: 0,
            transformer: None,
            rules: Vec::new(),
            roles: Arc::new(Vec::new()),
            failed: Some(r),
            fail_sent: false,
        }
    }

    pub fn open(dir: CopyDir, plan: &CopyPlan, roles: Arc<Vec<String>>) -> Result<Self, Refusal> {
        let fields: Vec<bool> = plan.fields.iter().map(Option::is_some).collect();
        let (codec, format_code) = match plan.format {
            CopyFormat::Binary => (
                Codec::Binary(BinaryTransformer::new(fields, DEFAULT_MAX_LINE_BYTES)),
                1,
            ),
            _ => (
                Codec::Textual(
                    CopyTransformer::new(options(plan), fields)
                        .map_err(|e| refuse::copy_unsupported(&e.to_string()))?,
                ),
                0,
            ),
        };
        Ok(CopyStream {
            dir,
            format_code,
            transformer: Some(codec),
            rules: plan
                .fields
                .iter()
                .map(|f| f.clone().map(Arc::new))
                .collect(),
            roles,
            failed: None,
            fail_sent: false,
        })
    }
}

fn field_fn<'a>(
    dir: CopyDir,
    binary: bool,
    rules: &'a [Option<Arc<ColumnRule>>],
    roles: &'a [String],
    policy: &'a Snapshot,
) -> impl FnMut(usize, Option<&[u8]>) -> Result<Option<Vec<u8>>, String> + 'a {
    move |i, v| {
        let Some(rule) = rules.get(i).and_then(|r| r.as_ref()) else {
            return Ok(v.map(<[u8]>::to_vec));
        };
        let Some(v) = v else { return Ok(None) };
        let named = |e: crate::values::ValueError| format!("{}: {e}", rule.qualified());
        match dir {
            CopyDir::In => {
                // Binary input is the logical type's wire form (the client
                // saw the logical type in the table's RowDescription); the
                // stored column is bytea, whose binary form is the raw bytes.
                let canonical = if binary {
                    crate::values::binary_to_text(rule.ty, v).map_err(named)?
                } else {
                    crate::values::canonical_text(rule.ty, v).map_err(named)?
                };
                let ct = policy.encrypt_for_write(rule, &canonical)?;
                Ok(Some(if binary { ct } else { bytea_hex(&ct) }))
            }
            CopyDir::Out if binary => {
                let plain = decrypt_field(rule, roles, policy, v)?;
                plain
                    .map(|p| crate::values::text_to_binary(rule.ty, &p).map_err(named))
                    .transpose()
            }
            CopyDir::Out => {
                let raw = parse_bytea_text(v)
                    .map_err(|_| format!("a value in {} is not ciphertext", rule.qualified()))?;
                decrypt_field(rule, roles, policy, &raw)
            }
        }
    }
}

/// One stored ciphertext of a COPY TO, as the session's roles may see it:
/// the plaintext's canonical text, its mask, NULL, or an error (denied).
fn decrypt_field(
    rule: &ColumnRule,
    roles: &[String],
    policy: &Snapshot,
    raw: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    let access = crate::policy::access(rule, roles);
    if access == Access::Null {
        return Ok(None);
    }
    if access == Access::Deny {
        return Err(format!(
            "access to {} is denied for this role",
            rule.qualified()
        ));
    }
    let cipher = policy
        .crypto
        .as_ref()
        .and_then(|c| c.cipher(&rule.table, &rule.name))
        .ok_or_else(|| format!("no key for {}", rule.qualified()))?;
    let plain = cipher.decrypt(raw).map_err(|_| {
        format!(
            "a value in {} does not decrypt under that column's keys",
            rule.qualified()
        )
    })?;
    metrics()
        .crypto_ops
        .with_label_values(&["decrypt", &rule.class])
        .inc();
    match access {
        Access::Mask(m) => {
            let key = policy
                .crypto
                .as_ref()
                .and_then(|c| c.hash_key(&rule.table, &rule.name))
                .and_then(|k| k.mac());
            crate::mask::apply_keyed(m, rule.ty, &plain, key)
                .map(Some)
                .map_err(|e| format!("{}: {e}", rule.qualified()))
        }
        _ => Ok(Some(plain)),
    }
}

impl CopyStream {
    /// Transforms one CopyData payload; returns a replacement CopyData frame
    /// (possibly empty payload → None) or marks the stream failed.
    pub fn data(&mut self, payload: &[u8], policy: &Snapshot) -> Option<BytesMut> {
        self.step(policy, Some(payload))
    }

    /// End of data: the last row, if it had no newline.
    pub fn finish(&mut self, policy: &Snapshot) -> Option<BytesMut> {
        self.step(policy, None)
    }

    /// Marks the stream failed when the server's format code is not the one
    /// the plan was made for: the rows would be split by the wrong codec.
    pub fn check_format(&mut self, server_code: Option<u8>) {
        if self.failed.is_none() && server_code != Some(self.format_code) {
            self.failed = Some(refuse::copy_data_failed(
                "the server announced another COPY format than the statement's",
            ));
        }
    }

    fn step(&mut self, policy: &Snapshot, payload: Option<&[u8]>) -> Option<BytesMut> {
        if self.failed.is_some() {
            return None;
        }
        let codec = self.transformer.as_mut()?;
        let binary = matches!(codec, Codec::Binary(_));
        let mut f = field_fn(self.dir, binary, &self.rules, &self.roles, policy);
        let res = match (codec, payload) {
            (Codec::Textual(t), Some(p)) => t.feed(p, &mut f),
            (Codec::Textual(t), None) => t.finish(&mut f),
            (Codec::Binary(t), Some(p)) => t.feed(p, &mut f),
            (Codec::Binary(t), None) => t.finish(&mut f),
        };
        match res {
            Ok(out) if out.is_empty() => None,
            Ok(out) => Some(copy_data(&out)),
            Err(e) => {
                self.failed = Some(refuse::copy_data_failed(&e.to_string()));
                None
            }
        }
    }
}

/// A statement's place in the client's stream: the position of its Query or
/// Execute message (see `State::seq`) and its index within that Query.
pub type Origin = (u64, usize);

/// What the data of one COPY FROM STDIN statement becomes.
#[derive(Debug, Clone)]
pub enum DueKind {
    /// A COPY into tagged columns: its rows are encrypted.
    Transform(Arc<CopyPlan>),
    /// Another COPY (untagged, TO, or from a file): data passes as sent.
    Other,
    /// pgveil refused the statement: its data never reaches the server.
    Drop,
}

#[derive(Debug)]
struct Due {
    origin: Origin,
    kind: DueKind,
}

#[derive(Debug)]
enum RunMode {
    Stream(Box<CopyStream>),
    Plain,
    Drop,
}

#[derive(Debug)]
struct Run {
    origin: Option<Origin>,
    mode: RunMode,
}

/// The client's side of COPY FROM STDIN, owned by the frontend.
///
/// Why not open the transform when the server announces the copy, as for
/// COPY TO: drivers such as asyncpg send their CopyData right behind the
/// statement without waiting for CopyInResponse, so the data can pass the
/// frontend before the backend has seen anything. The server consumes the
/// data in stream order — the first run of CopyData…CopyDone after a
/// statement belongs to its first COPY FROM STDIN — and so does this: each
/// Query or Execute queues its COPY statements ("dues") and each run takes
/// the next one. Any other message in between ends the server's copy-in, so
/// it clears the queue. Where only the server's timing could tell (a COPY
/// pgveil passes as sent ahead of one it must encrypt, and the server has not
/// yet said which one it reads), the session closes rather than guess.
#[derive(Debug, Default)]
pub struct CopyIn {
    dues: std::collections::VecDeque<Due>,
    run: Option<Run>,
    /// The statement the server announced copy-in for, until that copy ends.
    pub server: Option<Origin>,
    failed: Option<(Origin, Refusal)>,
}

/// What the frontend does with one CopyData / CopyDone / CopyFail.
pub enum CopyInAction {
    Forward,
    Replace(BytesMut),
}

impl CopyIn {
    /// A new statement: its COPY statements, in order, replace any left.
    pub fn expect(&mut self, seq: u64, kinds: impl IntoIterator<Item = (usize, DueKind)>) {
        self.dues = kinds
            .into_iter()
            .map(|(idx, kind)| Due {
                origin: (seq, idx),
                kind,
            })
            .collect();
        self.run = None;
    }

    /// A message that ends any copy-in the server is in.
    pub fn reset(&mut self) {
        self.dues.clear();
        self.run = None;
    }

    /// The refusal of a run that failed in pgveil, for its statement's error.
    pub fn take_failure(&mut self, origin: Option<Origin>) -> Option<Refusal> {
        match &self.failed {
            Some((o, _)) if Some(*o) == origin => self.failed.take().map(|f| f.1),
            _ => None,
        }
    }

    fn next_due(&mut self) -> Result<Option<Due>, &'static str> {
        let announced = self.server.and_then(|o| {
            let pos = self.dues.iter().position(|d| d.origin == o)?;
            self.dues.drain(..pos);
            self.dues.pop_front()
        });
        if announced.is_some() {
            return Ok(announced);
        }
        let due = self.dues.pop_front();
        let later_transform = self
            .dues
            .iter()
            .any(|d| matches!(d.kind, DueKind::Transform(_)));
        if matches!(
            &due,
            Some(Due {
                kind: DueKind::Other,
                ..
            })
        ) && later_transform
        {
            return Err("it was sent before the server started a COPY, and the query holds a COPY pgveil passes as sent ahead of one it encrypts");
        }
        Ok(due)
    }

    fn start_run(&mut self, roles: &[String]) -> Result<(), &'static str> {
        let due = self.next_due()?;
        let origin = due.as_ref().map(|d| d.origin);
        let mode = match due.map(|d| d.kind) {
            Some(DueKind::Transform(plan)) => RunMode::Stream(Box::new(
                CopyStream::open(CopyDir::In, &plan, Arc::new(roles.to_vec()))
                    .unwrap_or_else(|r| CopyStream::failed(CopyDir::In, r)),
            )),
            Some(DueKind::Drop) => RunMode::Drop,
            Some(DueKind::Other) | None => RunMode::Plain,
        };
        self.run = Some(Run { origin, mode });
        Ok(())
    }

    /// One client CopyData ('d'), CopyDone ('c') or CopyFail ('f').
    pub fn message(
        &mut self,
        frame: &[u8],
        roles: &[String],
        policy: &Snapshot,
    ) -> Result<CopyInAction, &'static str> {
        if self.run.is_none() {
            self.start_run(roles)?;
        }
        let Some(run) = self.run.as_mut() else {
            return Ok(CopyInAction::Forward);
        };
        let end = frame[0] != b'd';
        let action = match &mut run.mode {
            RunMode::Plain => CopyInAction::Forward,
            RunMode::Drop => CopyInAction::Replace(BytesMut::new()),
            RunMode::Stream(cs) => {
                let out = stream_message(cs, frame, policy);
                if let (Some(r), Some(o)) = (&cs.failed, run.origin) {
                    if self.failed.as_ref().is_none_or(|f| f.0 != o) {
                        self.failed = Some((o, r.clone()));
                    }
                }
                out
            }
        };
        if end {
            self.run = None;
        }
        Ok(action)
    }
}

/// One client copy message through a transforming stream. After a failure
/// pgveil sends the server one CopyFail and drops the rest of the run.
fn stream_message(cs: &mut CopyStream, frame: &[u8], policy: &Snapshot) -> CopyInAction {
    if cs.fail_sent {
        return CopyInAction::Replace(BytesMut::new());
    }
    let mut out = match frame[0] {
        b'd' => cs.data(&frame[5..], policy).unwrap_or_default(),
        b'c' => {
            let mut out = cs.finish(policy).unwrap_or_default();
            if cs.failed.is_none() {
                out.extend_from_slice(frame);
            }
            out
        }
        _ => return CopyInAction::Forward,
    };
    if let Some(r) = &cs.failed {
        cs.fail_sent = true;
        out = crate::protocol::rows::copy_fail(&r.message);
    }
    CopyInAction::Replace(out)
}
