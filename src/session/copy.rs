//! COPY through a session under rules: the tagged fields of each row are
//! encrypted on the way in (COPY … FROM STDIN) and decrypted, masked or
//! nulled on the way out (COPY … TO STDOUT), in flight, in text and CSV.
//!
//! The server announces the copy (CopyInResponse / CopyOutResponse); the
//! backend loop then opens a [`CopyStream`] from the running statement's
//! plan. Rows may be split across CopyData messages anywhere; the
//! [`crate::copy::CopyTransformer`] reassembles them.

use std::sync::Arc;

use bytes::BytesMut;

use crate::copy::{
    bytea_hex, parse_bytea_text, CopyFormat as WireFormat, CopyOptions, CopyTransformer,
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

pub struct CopyStream {
    pub dir: CopyDir,
    transformer: Option<CopyTransformer>,
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
        CopyFormat::Text => CopyOptions::text(),
        CopyFormat::Csv => CopyOptions::csv(),
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
            transformer: None,
            rules: Vec::new(),
            roles: Arc::new(Vec::new()),
            failed: Some(r),
            fail_sent: false,
        }
    }

    pub fn open(dir: CopyDir, plan: &CopyPlan, roles: Arc<Vec<String>>) -> Result<Self, Refusal> {
        let fields: Vec<bool> = plan.fields.iter().map(Option::is_some).collect();
        let transformer = CopyTransformer::new(options(plan), fields)
            .map_err(|e| refuse::copy_unsupported(&e.to_string()))?;
        Ok(CopyStream {
            dir,
            transformer: Some(transformer),
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
    rules: &'a [Option<Arc<ColumnRule>>],
    roles: &'a [String],
    policy: &'a Snapshot,
) -> impl FnMut(usize, Option<&[u8]>) -> Result<Option<Vec<u8>>, String> + 'a {
    move |i, v| {
        let Some(rule) = rules.get(i).and_then(|r| r.as_ref()) else {
            return Ok(v.map(<[u8]>::to_vec));
        };
        let Some(v) = v else { return Ok(None) };
        match dir {
            CopyDir::In => {
                let canonical = crate::values::canonical_text(rule.ty, v)
                    .map_err(|e| format!("{}: {e}", rule.qualified()))?;
                let ct = policy.encrypt_for_write(rule, &canonical)?;
                Ok(Some(bytea_hex(&ct)))
            }
            CopyDir::Out => {
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
                let raw = parse_bytea_text(v)
                    .map_err(|_| format!("a value in {} is not ciphertext", rule.qualified()))?;
                let cipher = policy
                    .crypto
                    .as_ref()
                    .and_then(|c| c.cipher(&rule.table, &rule.name))
                    .ok_or_else(|| format!("no key for {}", rule.qualified()))?;
                let plain = cipher.decrypt(&raw).map_err(|_| {
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
                            .map(|k| k.material().to_vec())
                            .unwrap_or_default();
                        crate::mask::apply(m, rule.ty, &plain, &key)
                            .map(Some)
                            .map_err(|e| format!("{}: {e}", rule.qualified()))
                    }
                    _ => Ok(Some(plain)),
                }
            }
        }
    }
}

impl CopyStream {
    /// Transforms one CopyData payload; returns a replacement CopyData frame
    /// (possibly empty payload → None) or marks the stream failed.
    pub fn data(&mut self, payload: &[u8], policy: &Snapshot) -> Option<BytesMut> {
        self.step(policy, |t, f| t.feed(payload, f))
    }

    /// End of data: the last row, if it had no newline.
    pub fn finish(&mut self, policy: &Snapshot) -> Option<BytesMut> {
        self.step(policy, |t, f| t.finish(f))
    }

    fn step(
        &mut self,
        policy: &Snapshot,
        op: impl FnOnce(
            &mut CopyTransformer,
            &mut crate::copy::FieldFn<'_>,
        ) -> Result<Vec<u8>, crate::copy::CopyError>,
    ) -> Option<BytesMut> {
        if self.failed.is_some() {
            return None;
        }
        let t = self.transformer.as_mut()?;
        let mut f = field_fn(self.dir, &self.rules, &self.roles, policy);
        match op(t, &mut f) {
            Ok(out) if out.is_empty() => None,
            Ok(out) => Some(copy_data(&out)),
            Err(e) => {
                self.failed = Some(refuse::copy_data_failed(&e.to_string()));
                None
            }
        }
    }
}
