//! COPY statements: which fields of the data rows belong to which rule,
//! and the plan the session follows to encrypt (FROM STDIN) or decrypt
//! (TO STDOUT) them.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};

use crate::rules::model::ColumnRule;

use super::query::{Analyzer, Mode, R};
use super::refuse::{self, sensitive};
use super::resolve::{fold, Scope};
use super::{ColumnAction, CopyFormat, CopyPlan, StatementKind};

/// Per field its rule, whether the field list is known, and a label.
type CopyFields<'a> = (Vec<Option<&'a ColumnRule>>, bool, String);

impl<'a> Analyzer<'a, '_> {
    pub(super) fn copy(&mut self, st: &mut Statement) -> R<()> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            values,
        } = st
        else {
            return Ok(());
        };
        self.plan.kind = StatementKind::Copy;
        let opts = CopyOpts::parse(options, legacy_options);
        let Some((fields, known, label)) = self.copy_fields(source)? else {
            return Ok(());
        };
        let roles = self.roles();
        let any_enc = fields.iter().flatten().any(|r| r.encrypt.is_some());
        let any_sens = fields.iter().flatten().any(|r| sensitive(r, roles));
        if !any_sens {
            for r in fields.iter().flatten() {
                self.use_col(
                    r,
                    if *to {
                        ColumnAction::Plaintext
                    } else {
                        ColumnAction::EncryptedWrite
                    },
                );
            }
            return Ok(());
        }
        if !known {
            return Err(refuse::needs_schema(&label, "COPY without a column list"));
        }
        if opts.force_on_encrypted(&fields) {
            return Err(refuse::unsupported_statement(
                "FORCE_QUOTE / FORCE_NULL / FORCE_NOT_NULL on encrypted columns",
                &label,
            ));
        }
        let stdio = matches!(target, CopyTarget::Stdin | CopyTarget::Stdout);
        if !*to {
            if !any_enc {
                return Ok(());
            }
            if !stdio || !values.is_empty() {
                return Err(refuse::unsupported_statement(
                    "COPY FROM a server file, a program or inline data",
                    &label,
                ));
            }
            let mut plan = opts.plan(fields.len());
            for (i, r) in fields.iter().enumerate() {
                if let Some(r) = r.filter(|r| r.encrypt.is_some()) {
                    plan.fields[i] = Some(r.clone());
                    self.use_col(r, ColumnAction::EncryptedWrite);
                }
            }
            self.plan.copy_in = Some(plan);
            return Ok(());
        }
        self.copy_out(&opts, &fields, stdio, &label)
    }

    /// Field i of a COPY -> its rule; whether that list is known; a label
    /// for messages. `None`: the table is not tagged.
    fn copy_fields(&mut self, source: &mut CopySource) -> R<Option<CopyFields<'a>>> {
        let root = Scope::default();
        Ok(Some(match source {
            CopySource::Table {
                table_name,
                columns,
            } => {
                let Some(t) = self.res.table(table_name) else {
                    return Ok(None);
                };
                self.record_table(&t);
                let rel = self.res.relation(&t);
                if columns.is_empty() {
                    let fields = rel.cols.iter().map(|c| c.origin).collect();
                    (fields, rel.complete, t.to_string())
                } else {
                    let fields = columns
                        .iter()
                        .map(|c| rel.column(&fold(c)).flatten())
                        .collect();
                    (fields, true, t.to_string())
                }
            }
            CopySource::Query(q) => {
                let (cols, complete) = self.query(q, &root, Mode::Derived)?;
                (
                    cols.iter().map(|c| c.origin).collect(),
                    complete,
                    "a query".to_string(),
                )
            }
        }))
    }

    /// The plan of a `COPY … TO STDOUT` over sensitive fields.
    fn copy_out(
        &mut self,
        opts: &CopyOpts,
        fields: &[Option<&'a ColumnRule>],
        stdio: bool,
        label: &str,
    ) -> R<()> {
        if !stdio {
            return Err(refuse::unsupported_statement(
                "COPY TO a server file or program",
                label,
            ));
        }
        let mut plan = opts.plan(fields.len());
        for (i, r) in fields.iter().enumerate() {
            let Some(r) = r else { continue };
            let action = refuse::check_output(r, self.roles())?;
            if action == ColumnAction::Masked {
                // COPY data carries no origin per value the session could mask by.
                return Err(refuse::unsupported_statement(
                    "COPY TO of a masked column",
                    label,
                ));
            }
            self.use_col(r, action);
            if r.encrypt.is_some() || action == ColumnAction::Null {
                plan.fields[i] = Some((*r).clone());
                plan.actions[i] = Some(action);
            }
        }
        self.plan.copy_out = Some(plan);
        Ok(())
    }
}

/// COPY options in both the modern `WITH (…)` and the legacy spelling.
struct CopyOpts {
    binary: bool,
    csv: bool,
    delimiter: Option<char>,
    null: Option<String>,
    header: bool,
    quote: Option<char>,
    escape: Option<char>,
    forced: Vec<String>,
}

impl CopyOpts {
    fn parse(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Self {
        let mut o = CopyOpts {
            binary: false,
            csv: false,
            delimiter: None,
            null: None,
            header: false,
            quote: None,
            escape: None,
            forced: Vec::new(),
        };
        for opt in options {
            match opt {
                CopyOption::Format(f) => {
                    let f = fold(f);
                    o.binary = f == "binary";
                    o.csv = f == "csv";
                }
                CopyOption::Delimiter(c) => o.delimiter = Some(*c),
                CopyOption::Null(s) => o.null = Some(s.clone()),
                CopyOption::Header(h) => o.header = *h,
                CopyOption::Quote(c) => o.quote = Some(*c),
                CopyOption::Escape(c) => o.escape = Some(*c),
                CopyOption::ForceQuote(c)
                | CopyOption::ForceNotNull(c)
                | CopyOption::ForceNull(c) => o.forced.extend(c.iter().map(fold)),
                CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
            }
        }
        for opt in legacy {
            match opt {
                CopyLegacyOption::Binary => o.binary = true,
                CopyLegacyOption::Delimiter(c) => o.delimiter = Some(*c),
                CopyLegacyOption::Null(s) => o.null = Some(s.clone()),
                CopyLegacyOption::Header => o.header = true,
                CopyLegacyOption::Csv(csv) => {
                    o.csv = true;
                    for c in csv {
                        match c {
                            CopyLegacyCsvOption::Header => o.header = true,
                            CopyLegacyCsvOption::Quote(q) => o.quote = Some(*q),
                            CopyLegacyCsvOption::Escape(e) => o.escape = Some(*e),
                            CopyLegacyCsvOption::ForceQuote(c)
                            | CopyLegacyCsvOption::ForceNotNull(c) => {
                                o.forced.extend(c.iter().map(fold))
                            }
                        }
                    }
                }
                // Options Postgres does not have; the server rejects them.
                _ => {}
            }
        }
        o
    }

    fn force_on_encrypted(&self, fields: &[Option<&ColumnRule>]) -> bool {
        fields
            .iter()
            .flatten()
            .any(|r| r.encrypt.is_some() && self.forced.iter().any(|f| f == &r.name || f == "*"))
    }

    fn plan(&self, n: usize) -> CopyPlan {
        CopyPlan {
            fields: vec![None; n],
            actions: vec![None; n],
            format: if self.binary {
                CopyFormat::Binary
            } else if self.csv {
                CopyFormat::Csv
            } else {
                CopyFormat::Text
            },
            delimiter: self.delimiter.unwrap_or(if self.csv { ',' } else { '\t' }),
            null: self.null.clone().unwrap_or_else(|| {
                if self.csv {
                    String::new()
                } else {
                    "\\N".to_string()
                }
            }),
            header: self.header,
            quote: self.quote.unwrap_or('"'),
            escape: self.escape.or(self.quote).unwrap_or('"'),
        }
    }
}
