//! Row splitting: a resumable port of PostgreSQL's `CopyReadLineText`.

use super::{CopyFormat, CopyOptions};

/// Line-terminator style; PostgreSQL fixes it from the first terminator and then insists on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eol {
    Unknown,
    Nl,
    Cr,
    CrNl,
}

/// Resumable port of PostgreSQL's `CopyReadLineText`: finds where a row ends, honouring
/// backslash escapes (text) or quotes (CSV). `pos` is where scanning resumes, so feeding a long
/// row one byte at a time stays linear.
#[derive(Debug)]
pub(super) struct Splitter {
    csv: bool,
    quote: u8,
    /// `None` when equal to the quote: PostgreSQL then treats the quote as a plain toggle.
    escape: Option<u8>,
    eol: Eol,
    in_quote: bool,
    last_was_esc: bool,
    pub(super) pos: usize,
}

impl Splitter {
    pub(super) fn new(opts: &CopyOptions) -> Self {
        let csv = opts.format == CopyFormat::Csv;
        Self {
            csv,
            quote: opts.quote,
            escape: (opts.escape != opts.quote).then_some(opts.escape),
            eol: Eol::Unknown,
            in_quote: false,
            last_was_esc: false,
            pos: 0,
        }
    }

    /// The line terminator the stream has established (`\n` while none is known yet).
    pub(super) fn terminator(&self) -> &'static [u8] {
        match self.eol {
            Eol::Unknown | Eol::Nl => b"\n",
            Eol::Cr => b"\r",
            Eol::CrNl => b"\r\n",
        }
    }

    fn end_line(&mut self, content_end: usize, line_end: usize) -> Option<(usize, usize)> {
        self.in_quote = false;
        self.last_was_esc = false;
        self.pos = line_end;
        Some((content_end, line_end))
    }

    /// Returns `(content_end, line_end)` of the row starting at `start`, or `None` when more
    /// input is needed. At `eof` a final row without terminator is returned.
    pub(super) fn next_line(
        &mut self,
        buf: &[u8],
        start: usize,
        eof: bool,
    ) -> Result<Option<(usize, usize)>, &'static str> {
        let (cr_msg, nl_msg) = if self.csv {
            (
                "unquoted carriage return found in data",
                "unquoted newline found in data",
            )
        } else {
            (
                "literal carriage return found in data",
                "literal newline found in data",
            )
        };
        let mut i = self.pos.max(start);
        loop {
            let Some(&c) = buf.get(i) else {
                self.pos = i;
                if !eof || i == start {
                    return Ok(None);
                }
                if self.in_quote {
                    return Err("unterminated CSV quoted field");
                }
                return Ok(self.end_line(i, i));
            };
            // CR and LF are never the quote or escape character (validated), so the quote state
            // before this byte is the state PostgreSQL tests after its quote bookkeeping.
            let unquoted = !self.csv || !self.in_quote;
            if c == b'\r' && unquoted {
                let next = buf.get(i + 1).copied();
                match self.eol {
                    Eol::Nl => return Err(cr_msg),
                    Eol::Cr => return Ok(self.end_line(i, i + 1)),
                    Eol::Unknown | Eol::CrNl => {
                        if next.is_none() && !eof {
                            self.pos = i;
                            return Ok(None);
                        }
                        if next == Some(b'\n') {
                            self.eol = Eol::CrNl;
                            return Ok(self.end_line(i, i + 2));
                        }
                        if self.eol == Eol::CrNl {
                            return Err(cr_msg);
                        }
                        self.eol = Eol::Cr;
                        return Ok(self.end_line(i, i + 1));
                    }
                }
            }
            if c == b'\n' && unquoted {
                if matches!(self.eol, Eol::Cr | Eol::CrNl) {
                    return Err(nl_msg);
                }
                self.eol = Eol::Nl;
                return Ok(self.end_line(i, i + 1));
            }
            if self.csv {
                if self.in_quote && Some(c) == self.escape {
                    self.last_was_esc = !self.last_was_esc;
                }
                if c == self.quote && !self.last_was_esc {
                    self.in_quote = !self.in_quote;
                }
                if Some(c) != self.escape {
                    self.last_was_esc = false;
                }
            } else if c == b'\\' {
                // A backslash always takes the next byte with it (even a newline), so that `\\.`
                // is data and `\<LF>` does not end the row.
                match buf.get(i + 1) {
                    None if !eof => {
                        self.pos = i;
                        return Ok(None);
                    }
                    None => {}
                    Some(b'.') if i != start => {
                        return Err("end-of-copy marker is not alone on its line")
                    }
                    Some(_) => i += 1,
                }
            }
            i += 1;
        }
    }
}
