//! Column rules: the DBA-facing rule files (`rules/*.toml`), their validated
//! model, and the checks behind `pgveil check`. See `docs/rules.md`.

pub mod check;
pub mod diagnostic;
pub mod model;
pub mod parse;
mod toml_tree;

pub use check::{check_against_schema, render_ok, summarize_samples, SampleFinding, SampleOutcome};
pub use diagnostic::{render_report, Diagnostic, RuleErrors};
pub use model::{
    Access, ColumnRule, EncryptMode, LogicalType, Mask, RuleSet, SourceLoc, SubjectRule, TableName,
};
pub use parse::{load_dir, parse_str, parse_str_set};
