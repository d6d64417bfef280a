//! What a DBA sees about a rule file: one [`Diagnostic`] per problem and the
//! report that lists them. Below both the parser and the live-schema check,
//! which each produce diagnostics, so neither imports the other.

use std::fmt;

/// One problem in a rule file, as shown to the DBA.
///
/// `line` is 1-based; 0 means the problem concerns the whole file or
/// directory (unreadable, missing). Messages quote rule-file text only,
/// never database values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: error: {}", self.file, self.message)?;
        } else {
            write!(f, "{}:{}: error: {}", self.file, self.line, self.message)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// All diagnostics of a failed load, as one error value for callers that
/// propagate errors (startup, reload logging).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_report(.0))]
pub struct RuleErrors(pub Vec<Diagnostic>);

impl From<Vec<Diagnostic>> for RuleErrors {
    fn from(v: Vec<Diagnostic>) -> Self {
        RuleErrors(v)
    }
}

/// All diagnostics, one per paragraph, then a count line. Empty input gives
/// an empty string, so the caller chooses its own success message (see
/// [`render_ok`]).
pub fn render_report(diags: &[Diagnostic]) -> String {
    if diags.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    let n = diags.len();
    out.push_str(&format!("{n} error{}\n", if n == 1 { "" } else { "s" }));
    out
}
