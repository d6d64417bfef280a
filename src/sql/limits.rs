//! Bounds on what the analysis will take, so no statement can exhaust a
//! worker's stack.
//!
//! The parser, the checks, the rewriter and re-serialisation all recurse
//! over the expression tree, and a flat `1 + 0 + 0 …` parses into a
//! left-deep tree as deep as it is long. Rather than rewrite every walker
//! (and sqlparser's `Display` and `Drop`) iteratively, the analysis of a
//! statement whose tokens could nest deeply runs on a stack sized for its
//! bound, on the same thread (no hand-off to another thread on the hot
//! path), and a statement over the bound is refused with PostgreSQL's own
//! code for it.

use super::lex::{Lexer, Tok};
use super::Refusal;
use crate::error::sqlstate::STATEMENT_TOO_COMPLEX;

/// Most nesting tokens one statement may hold. PostgreSQL itself stops at
/// about 4,500 nested operators (`stack depth limit exceeded`, 54001); it
/// flattens AND/OR chains, which sqlparser does not, so the bound leaves room
/// for long generated AND/OR chains (two tokens per condition).
pub const MAX_NESTING: usize = 10_000;

/// Up to this weight the analysis runs on the worker's own stack (2 MiB),
/// so ordinary statements pay nothing.
const INLINE_NESTING: usize = 256;

/// Stack bytes reserved per nesting token. Measured on a left-deep sum: a
/// debug build uses about 17 KiB per level (sqlparser's derived visitor
/// dominates: unoptimised frames of its large `match`), an optimised build
/// far less. Only touched pages are ever committed.
#[cfg(debug_assertions)]
const STACK_PER_LEVEL: usize = 32 << 10;
#[cfg(not(debug_assertions))]
const STACK_PER_LEVEL: usize = 16 << 10;
const STACK_BASE: usize = 4 << 20;

/// An upper bound on the depth of the tree a statement parses into: every
/// token that can open a nesting level (an operator, a parenthesis or
/// bracket, an operator keyword, a subquery's SELECT) counts one.
pub fn nesting_weight(sql: &str) -> usize {
    let mut n = 0usize;
    for tok in Lexer::new(sql) {
        let counts = match tok {
            Tok::Op(o) => !matches!(o, "," | ";" | ")" | "]" | "."),
            Tok::Word(w) => is_nesting_keyword(w),
            _ => false,
        };
        n += usize::from(counts);
    }
    n
}

fn is_nesting_keyword(w: &str) -> bool {
    const WORDS: &[&str] = &[
        "and", "or", "not", "is", "in", "like", "ilike", "similar", "between", "select", "case",
        "when", "exists", "any", "all", "some", "array", "collate", "at", "overlaps", "isnull",
        "notnull", "escape", "values", "row",
    ];
    w.len() <= 8 && WORDS.iter().any(|k| k.eq_ignore_ascii_case(w))
}

/// The refusal for a statement over [`MAX_NESTING`].
pub fn too_complex() -> Refusal {
    Refusal {
        sqlstate: STATEMENT_TOO_COMPLEX,
        message: format!(
            "pgveil: statement is too complex to analyse (more than {MAX_NESTING} operators or nesting levels)"
        ),
        hint: Some("split the statement, or pass long value lists as an array parameter".into()),
    }
}

/// Runs `f` (the analysis of one statement of weight `weight`) on a stack
/// large enough for it.
pub fn with_stack_for<T>(weight: usize, f: impl FnOnce() -> T) -> T {
    if weight <= INLINE_NESTING {
        return f();
    }
    let size = STACK_BASE.saturating_add(weight.saturating_mul(STACK_PER_LEVEL));
    stacker::grow(size, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_counts_operators_parens_and_keywords_not_lists() {
        assert_eq!(nesting_weight("SELECT 1"), 1);
        assert_eq!(nesting_weight("SELECT 1 + 0 + 0"), 3);
        assert_eq!(nesting_weight("SELECT a, b, c FROM t"), 1);
        assert_eq!(nesting_weight("SELECT ((1))"), 3);
        assert_eq!(nesting_weight("SELECT x FROM t WHERE a = 1 AND b = 2"), 4);
        assert_eq!(nesting_weight("SELECT 'a + b' -- + + +"), 1);
        let values = format!("INSERT INTO t VALUES {}", vec!["(1)"; 1000].join(","));
        assert_eq!(nesting_weight(&values), 1 + 1000);
    }

    #[test]
    fn deep_analysis_runs_on_a_grown_stack() {
        // A recursion as deep as the bound allows must not overflow.
        fn depth(n: usize) -> usize {
            let pad = [0u8; 512];
            if n == 0 {
                return pad.len();
            }
            std::hint::black_box(&pad);
            1 + depth(n - 1)
        }
        let n = 10_000;
        assert_eq!(with_stack_for(n, || depth(n)), n + 512);
    }
}
