//! Server → client: statement accounting for every session, and for
//! sessions under rules the reply handling that retypes, decrypts, masks and
//! substitutes refusals.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use super::copy::{CopyDir, CopyStream};
use super::relay::{fill, lock, Assembler, State};
use super::rows::{self, RowPlan};
use super::tagged::{refusal_error, Catalog, Expect, Tracker};
use super::{SessionError, Shared};
use crate::metrics::metrics;
use crate::net::Stream;
use crate::policy::Policy;
use crate::protocol::messages::{put_query, ready_status};
use crate::protocol::{next_frame, put_error, Direction, ProtocolError, Severity};
use crate::sql::Refusal;

/// Refuses statements that name tagged tables in a session that has no
/// catalog snapshot (rules were added after it connected).
pub(super) fn refuse_without_catalog(
    frame: &[u8],
    start: Instant,
    policy: &Policy,
    expect: &mut std::collections::VecDeque<Expect>,
) -> Result<Option<BytesMut>, ProtocolError> {
    if frame[0] != b'Q' {
        if frame[0] == b'F' {
            expect.push_back(Expect::FunctionCall { start });
        }
        return Ok(None);
    }
    let text = crate::protocol::messages::query_text(frame)?;
    if !crate::sql::mentions_tagged(&policy.names, text) {
        expect.push_back(Expect::Query {
            start,
            plans: None,
            idx: 0,
            refusal: None,
        });
        return Ok(None);
    }
    let r = Refusal {
        sqlstate: "55000",
        message:
            "pgveil rules changed after this session connected; reconnect to use tagged tables"
                .into(),
        hint: None,
    };
    let mut out = BytesMut::new();
    put_query(&mut out, super::tagged::REFUSED_SQL);
    expect.push_back(Expect::Query {
        start,
        plans: None,
        idx: 0,
        refusal: Some(r),
    });
    Ok(Some(out))
}

enum BAction {
    Forward,
    Replace(BytesMut),
    Drop,
}

fn error_frame(code: &str, msg: &str) -> BytesMut {
    let mut out = BytesMut::new();
    put_error(&mut out, Severity::Error, code, msg, None);
    out
}

/// The current result's row plan: from the running Query's RowDescription
/// or from the executing portal's statement.
fn current_row(tr: &Tracker, head: Option<&Expect>) -> Option<(Arc<RowPlan>, Vec<i16>)> {
    if let Some(r) = &tr.row {
        return Some(r.clone());
    }
    if let Some(Expect::Execute { portal: Some(p) }) = head {
        let row = p.stmt.row.lock().ok()?.clone()?;
        return Some((row, p.formats.clone()));
    }
    None
}

/// The plan of the statement whose results are arriving.
fn current_plan(head: Option<&Expect>) -> Option<Arc<crate::sql::StatementPlan>> {
    match head {
        Some(Expect::Query {
            plans: Some(p),
            idx,
            ..
        }) => p.get(*idx).cloned().map(Arc::new),
        Some(Expect::Execute { portal: Some(p) }) => p.stmt.plan.clone(),
        _ => None,
    }
}

/// Reply handling for sessions under rules.
fn tagged_frame(frame: &[u8], st: &mut State, policy: &Policy, catalog: &Catalog) -> BAction {
    let tag = frame[0];
    match tag {
        b'1' | b'2' | b'3' => {
            if matches!(
                st.expect.front(),
                Some(Expect::Parse { .. } | Expect::Bind | Expect::Close)
            ) {
                st.expect.pop_front();
            }
            BAction::Forward
        }
        b't' => {
            if let Some(Expect::DescribeStmt {
                stmt,
                internal,
                seen_params,
            }) = st.expect.front_mut()
            {
                *seen_params = true;
                if *internal {
                    return BAction::Drop;
                }
                if let Some(plan) = &stmt.plan {
                    match rows::rewrite_parameter_description(frame, &plan.params) {
                        Ok(Some(out)) => return BAction::Replace(out),
                        Ok(None) => {}
                        Err(e) => {
                            return BAction::Replace(error_frame(e.sqlstate(), &e.to_string()))
                        }
                    }
                }
            }
            BAction::Forward
        }
        b'T' => {
            let planned =
                rows::plan_row_description(frame, &catalog.schema, policy, &catalog.roles);
            let (plan, rewritten, formats) = match planned {
                Ok(Some((p, out, f))) => (Some(Arc::new(p)), Some(out), f),
                Ok(None) => (None, None, Vec::new()),
                Err(e) => return BAction::Replace(error_frame(e.sqlstate(), &e.to_string())),
            };
            let fwd = |r: Option<BytesMut>| r.map_or(BAction::Forward, BAction::Replace);
            match st.expect.front() {
                Some(Expect::DescribeStmt { stmt, internal, .. }) => {
                    if let Ok(mut slot) = stmt.row.lock() {
                        *slot = plan;
                    }
                    let internal = *internal;
                    st.expect.pop_front();
                    if internal {
                        BAction::Drop
                    } else {
                        fwd(rewritten)
                    }
                }
                Some(Expect::DescribePortal { .. }) => {
                    st.expect.pop_front();
                    fwd(rewritten)
                }
                Some(Expect::Query { .. }) => {
                    st.tracker.row = plan.map(|p| (p, formats));
                    fwd(rewritten)
                }
                _ => fwd(rewritten),
            }
        }
        b'n' => match st.expect.front() {
            Some(Expect::DescribeStmt { internal, .. }) => {
                let internal = *internal;
                st.expect.pop_front();
                if internal {
                    BAction::Drop
                } else {
                    BAction::Forward
                }
            }
            Some(Expect::DescribePortal { .. }) => {
                st.expect.pop_front();
                BAction::Forward
            }
            _ => BAction::Forward,
        },
        b'D' => {
            if st.tracker.suppress_until_complete {
                return BAction::Drop;
            }
            let Some((plan, formats)) = current_row(&st.tracker, st.expect.front()) else {
                return BAction::Forward;
            };
            match rows::transform_data_row(frame, &plan, &formats, policy) {
                Ok(out) => BAction::Replace(out),
                Err(e) => {
                    // Stop this result here: the client gets an error instead
                    // of the rest of the rows, and never a value in the clear.
                    metrics().refused.with_label_values(&[e.sqlstate()]).inc();
                    st.tracker.suppress_until_complete = true;
                    BAction::Replace(error_frame(e.sqlstate(), &e.to_string()))
                }
            }
        }
        b'G' | b'H' => {
            let dir = if tag == b'G' {
                CopyDir::In
            } else {
                CopyDir::Out
            };
            let plan = current_plan(st.expect.front());
            let copy_plan = plan.as_ref().and_then(|p| match dir {
                CopyDir::In => p.copy_in.as_ref(),
                CopyDir::Out => p.copy_out.as_ref(),
            });
            st.copy = copy_plan.map(|cp| {
                CopyStream::open(dir, cp, Arc::new(catalog.roles.clone()))
                    .unwrap_or_else(|r| CopyStream::failed(dir, r))
            });
            BAction::Forward
        }
        b'd' => match st.copy.as_mut() {
            Some(cs) if cs.dir == CopyDir::Out => match cs.data(&frame[5..], policy) {
                Some(out) => BAction::Replace(out),
                None => BAction::Drop,
            },
            _ => BAction::Forward,
        },
        b'c' => match st.copy.as_mut() {
            Some(cs) if cs.dir == CopyDir::Out => {
                let mut out = cs.finish(policy).unwrap_or_default();
                if let Some(r) = &cs.failed {
                    // Replace the end of the copy with the error; the client
                    // never sees the rows that could not be processed.
                    let r = r.clone();
                    metrics().refused.with_label_values(&[r.sqlstate]).inc();
                    st.tracker.suppress_until_complete = true;
                    return BAction::Replace(refusal_error(&r));
                }
                out.extend_from_slice(frame);
                BAction::Replace(out)
            }
            _ => BAction::Forward,
        },
        b'C' | b'I' | b's' => {
            st.copy = None;
            let suppressed = std::mem::take(&mut st.tracker.suppress_until_complete);
            st.tracker.row = None;
            match st.expect.front_mut() {
                Some(Expect::Query { idx, .. }) => *idx += 1,
                Some(Expect::Execute { .. }) => {
                    st.expect.pop_front();
                }
                _ => {}
            }
            if suppressed {
                BAction::Drop
            } else {
                BAction::Forward
            }
        }
        b'E' => {
            st.tracker.row = None;
            st.tracker.suppress_until_complete = false;
            let copy_refusal = st.copy.take().and_then(|c| c.failed);
            let refusal = match st.expect.front() {
                _ if copy_refusal.is_some() => copy_refusal,
                Some(Expect::Query { refusal, .. }) => refusal.clone(),
                Some(Expect::Parse { refusal }) => refusal.clone(),
                _ => None,
            };
            // Extended protocol: the server now skips to Sync; so do we.
            while let Some(e) = st.expect.front() {
                if e.is_sync_point() {
                    break;
                }
                st.expect.pop_front();
            }
            match refusal {
                Some(r) => BAction::Replace(refusal_error(&r)),
                None => BAction::Forward,
            }
        }
        _ => BAction::Forward,
    }
}

/// Server → client.
pub(super) async fn backend(
    sr: &mut ReadHalf<Stream>,
    cw: &mut WriteHalf<Stream>,
    mut buf: BytesMut,
    state: &Mutex<State>,
    catalog: Option<Arc<Catalog>>,
    shared: &Shared,
) -> Result<(), SessionError> {
    let m = metrics();
    // The server is trusted for content but not for sizes: a corrupt length
    // must not make the proxy allocate without bound.
    let cap = i32::MAX as usize;
    loop {
        let t0 = Instant::now();
        let mut pos = 0;
        let mut asm = Assembler::new();
        let policy = shared.policy.load();
        {
            let mut st = lock(state);
            let st = &mut *st;
            while let Some(n) = next_frame(&buf[pos..], Direction::Backend, cap)
                .map_err(|_| SessionError::UpstreamLost)?
            {
                let tag = buf[pos];
                if tag == b'E' {
                    st.head_failed = true;
                }
                if let (Some(cat), false) = (&catalog, policy.is_empty()) {
                    match tagged_frame(&buf[pos..pos + n], st, &policy, cat) {
                        BAction::Forward => {}
                        BAction::Replace(new) => asm.replace(&buf, pos, pos + n, &new),
                        BAction::Drop => asm.replace(&buf, pos, pos + n, &[]),
                    }
                } else if tag == b'E' {
                    if let Some(Expect::Query {
                        refusal: Some(r), ..
                    }) = st.expect.front()
                    {
                        let new = refusal_error(r);
                        asm.replace(&buf, pos, pos + n, &new);
                    }
                }
                if tag == b'Z' {
                    let status = ready_status(&buf[pos..pos + n]);
                    let failed = std::mem::take(&mut st.head_failed);
                    // Pop through the sync point this ReadyForQuery answers.
                    while let Some(e) = st.expect.pop_front() {
                        match e {
                            Expect::Query { start, .. } | Expect::FunctionCall { start } => {
                                if failed {
                                    &m.simple_error
                                } else {
                                    &m.simple_ok
                                }
                                .inc();
                                m.statement_latency.observe(start.elapsed().as_secs_f64());
                                break;
                            }
                            Expect::Sync { start, executes } => {
                                if executes > 0 {
                                    if failed {
                                        &m.extended_error
                                    } else {
                                        &m.extended_ok
                                    }
                                    .inc_by(executes as u64);
                                }
                                m.statement_latency.observe(start.elapsed().as_secs_f64());
                                break;
                            }
                            _ => {}
                        }
                    }
                    st.tracker.row = None;
                    st.idle = st.expect.is_empty() && status == b'I';
                }
                pos += n;
            }
        }
        if pos > 0 {
            let chunk = asm.finish(&mut buf, pos);
            m.bytes_to_clients.inc_by(chunk.len() as u64);
            cw.write_all(&chunk).await?;
            cw.flush().await?;
            m.proxy_latency.observe(t0.elapsed().as_secs_f64());
        }
        match fill(sr, &mut buf).await {
            Ok(0) | Err(_) => return Err(SessionError::UpstreamLost),
            Ok(_) => {}
        }
    }
}
