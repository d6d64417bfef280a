//! Issue 12: output-only masking. A plaintext-at-rest masked column that a statement only
//! returns (a bare reference in the select list) may be masked in the DataRow instead of in
//! SQL; everywhere a masked value could flow into SQL (predicates, ORDER BY, GROUP BY,
//! windows, subqueries, DISTINCT, set operations, CTEs, LATERAL, copies, RETURNING, views,
//! whole-row values) the server must still compute on masked values, or the statement must be
//! refused as before.
//!
//! Two kinds of checks: leak and oracle cases for the shared harness (`fast_path_cases`), and
//! exact answers (`exact_answers`): what the role sees must be what the server computes over
//! the masked values, which differs from the raw values' answer on purpose (support's
//! `partial(1,0)` sorts `Z** …` before `Z****** …`; analyst's NULLs fall into one group).

use crate::cases::{case, oracle, Case, Step};
use crate::harness::*;

const N: &str = "Zebulon Quixote-Marchbanks";
const N_WRONG: &str = "Zebulon Quixote-Marchbankz";
/// Sorts just below the raw `N` (and above its masked forms).
const N_LOW: &str = "Zebulon Quixote-Marchbanka";

/// One extended-protocol round trip: Parse/Bind(result format)/[Describe]/Execute/Sync.
fn extended(sql: &str, params: &[Option<&[u8]>], result_fmt: i16, describe_first: bool) -> Step {
    let mut frames = vec![parse("", sql, &[]), bind("", "", params, 0, result_fmt)];
    if describe_first {
        frames.push(describe(b'P', ""));
    }
    frames.push(execute("", 0));
    frames.push(sync());
    Step::Raw(frames.concat(), 1)
}

fn ext_case(name: &str, sql: &str, result_fmt: i16, describe_first: bool) -> Case {
    let mut c = case(name, &[]);
    c.steps.push(extended(sql, &[], result_fmt, describe_first));
    c
}

fn ext_oracle(name: &str, right: &str, wrong: &str) -> Case {
    let mut c = case(name, &[]);
    c.steps.push(extended(right, &[], 0, true));
    c.wrong = Some(vec![extended(wrong, &[], 0, true)]);
    c
}

/// Leak and oracle cases aimed at the fast path: each statement returns the masked column as a
/// bare reference (what the fast path serves from the DataRow) and also uses it somewhere a raw
/// value would be visible to the server.
pub fn fast_path_cases() -> Vec<Case> {
    let like = |p: &str| format!("SELECT id, full_name FROM customers WHERE full_name LIKE '{p}%'");
    let eq = |v: &str| format!("SELECT id, full_name FROM customers WHERE full_name = '{v}'");
    let ord = |v: &str| {
        format!("SELECT id, full_name FROM customers ORDER BY full_name COLLATE \"C\" < '{v}', id")
    };
    let grp = |v: &str| {
        format!("SELECT full_name, count(*) FROM customers GROUP BY full_name HAVING full_name LIKE '{v}%'")
    };
    let win = |v: &str| {
        format!("SELECT id, full_name, count(*) OVER (PARTITION BY full_name LIKE '{v}%') FROM customers ORDER BY id")
    };
    let sub = |v: &str| {
        format!("SELECT id, full_name FROM customers WHERE id IN (SELECT id FROM customers WHERE full_name LIKE '{v}%')")
    };
    let join = |v: &str| {
        format!("SELECT c.id, c.full_name FROM customers c JOIN customers d ON d.id = c.id AND d.full_name LIKE '{v}%'")
    };
    let cte = |v: &str| {
        format!("WITH m AS (SELECT id, full_name FROM customers) SELECT id, full_name FROM m WHERE full_name LIKE '{v}%'")
    };
    let lat = |v: &str| {
        format!(
            "SELECT c.id, c.full_name, l.hit FROM customers c, LATERAL (SELECT c.full_name LIKE '{v}%' AS hit) l ORDER BY c.id"
        )
    };
    let dist = |v: &str| {
        format!("SELECT DISTINCT full_name, full_name LIKE '{v}%' FROM customers ORDER BY 2, 1")
    };
    // Set operations: the probe must not echo the guess (an echoed literal differs between the
    // right and the wrong guess by itself); the dedup shows in a count, the order in tags.
    let union = |v: &str| {
        format!("SELECT count(*) FROM (SELECT full_name FROM customers WHERE id = 2 UNION SELECT '{v}') u")
    };
    let setop = |op: &'static str| {
        move |v: &str| {
            format!("SELECT count(*) FROM (SELECT full_name FROM customers WHERE id = 2 {op} SELECT '{v}') u")
        }
    };
    // The guess N_LOW sorts just below the raw name, N_WRONG just above; a masked value sorts
    // below both (support) or is NULL (analyst), so the tags come out the same either way.
    let union_order = |v: &str| {
        format!("SELECT k FROM (SELECT 1 AS k, full_name AS n FROM customers WHERE id = 2 UNION ALL SELECT 2, '{v}') u ORDER BY n, k")
    };
    let union_top = |v: &str| {
        format!("SELECT k FROM (SELECT full_name AS n, 1 AS k FROM customers WHERE id = 2 UNION ALL SELECT '{v}', 2 ORDER BY 1, 2) u")
    };
    let distinct_on = |v: &str| {
        format!("SELECT count(*) FROM (SELECT DISTINCT ON (n) k FROM (SELECT full_name AS n, 1 AS k FROM customers WHERE id = 2 UNION ALL SELECT '{v}', 2) u ORDER BY n, k) d")
    };
    let values = |v: &str| {
        format!("SELECT c.id, c.full_name FROM customers c JOIN (VALUES ('{v}')) g(n) ON c.full_name = g.n")
    };
    let values_order = |v: &str| {
        format!("SELECT k FROM (SELECT full_name, 1 FROM customers WHERE id = 2 UNION ALL VALUES ('{v}', 2)) u(n, k) ORDER BY n, k")
    };
    let using = |v: &str| {
        format!("SELECT c.id, c.full_name FROM customers c JOIN (SELECT '{v}'::text AS full_name) g USING (full_name)")
    };
    let natural = |v: &str| {
        format!("SELECT count(*) FROM customers c NATURAL JOIN (SELECT 2::bigint AS id, '{v}'::text AS full_name) g")
    };
    let in_list = |v: &str| {
        format!("SELECT id, full_name FROM customers WHERE full_name IN ('{v}', 'x') ORDER BY id")
    };
    let cmp_out =
        |v: &str| format!("SELECT id, full_name, full_name < '{v}' FROM customers ORDER BY id");
    let case_out = |v: &str| {
        format!("SELECT id, CASE WHEN full_name < '{v}' THEN 1 ELSE 2 END, full_name FROM customers ORDER BY id")
    };
    let agg = |v: &str| format!("SELECT min(full_name) < '{v}' FROM customers WHERE id = 2");
    let agg_order = |v: &str| {
        format!("SELECT string_agg(k::text, ',' ORDER BY n, k) FROM (SELECT full_name AS n, 1 AS k FROM customers WHERE id = 2 UNION ALL SELECT '{v}', 2) u")
    };
    let win_order = |v: &str| {
        format!("SELECT k, row_number() OVER (ORDER BY n, k) FROM (SELECT full_name AS n, 1 AS k FROM customers WHERE id = 2 UNION ALL SELECT '{v}', 2) u ORDER BY k")
    };
    let limit_order = |v: &str| {
        format!("SELECT k FROM (SELECT full_name AS n, 1 AS k FROM customers WHERE id = 2 UNION ALL SELECT '{v}', 2 ORDER BY 1, 2 LIMIT 1) u")
    };
    let sub_order = |v: &str| {
        format!("SELECT (SELECT k FROM (SELECT full_name AS n, 1 AS k FROM customers WHERE id = 2 UNION ALL SELECT '{v}', 2) u ORDER BY n, k LIMIT 1)")
    };
    let cte_order = |v: &str| {
        format!("WITH o AS (SELECT full_name AS n, 1 AS k FROM customers WHERE id = 2 UNION ALL SELECT '{v}', 2) SELECT k FROM o ORDER BY n, k")
    };
    let lat_order = |v: &str| {
        format!("SELECT l.k FROM (SELECT '{v}'::text AS g) g, LATERAL (SELECT 1 AS k FROM customers c WHERE c.id = 2 AND c.full_name < g.g) l")
    };
    let row_cmp = |v: &str| {
        format!("SELECT id, full_name, (full_name, id) < ('{v}', 0) FROM customers ORDER BY id")
    };
    let greatest = |v: &str| {
        format!("SELECT id, greatest(full_name, '{v}') = '{v}' FROM customers WHERE id = 2")
    };
    let exists = |v: &str| {
        format!("SELECT id, full_name FROM customers c WHERE EXISTS (SELECT 1 FROM customers d WHERE d.id = c.id AND d.full_name = '{v}')")
    };
    let pair =
        |name: &str, f: &dyn Fn(&str) -> String, r: &str, w: &str| oracle(name, &[&f(r)], &[&f(w)]);
    vec![
        case(
            "bare select, simple",
            &["SELECT id, full_name FROM customers ORDER BY id"],
        ),
        case(
            "bare select with alias",
            &["SELECT full_name AS n, id FROM customers ORDER BY id"],
        ),
        case(
            "bare select qualified",
            &["SELECT c.full_name, c.id FROM customers c ORDER BY c.id"],
        ),
        case("star", &["SELECT * FROM customers ORDER BY id"]).roles(&["support"]),
        case(
            "field of relation",
            &["SELECT (c).full_name FROM customers c"],
        ),
        case(
            "self join both sides",
            &["SELECT c.full_name, d.full_name FROM customers c JOIN customers d ON d.id = c.id"],
        ),
        ext_case(
            "bare select, extended text",
            "SELECT id, full_name FROM customers ORDER BY id",
            0,
            true,
        ),
        ext_case(
            "bare select, extended binary",
            "SELECT id, full_name FROM customers ORDER BY id",
            1,
            true,
        ),
        ext_case(
            "bare select, extended binary, no Describe",
            "SELECT full_name FROM customers",
            1,
            false,
        ),
        ext_case(
            "bare select, extended text, no Describe",
            "SELECT full_name FROM customers",
            0,
            false,
        ),
        case("whole row", &["SELECT c FROM customers c WHERE id = 2"]),
        case(
            "row value (t.*)",
            &["SELECT (c.*)::text FROM customers c WHERE id = 2"],
        ),
        case(
            "row_to_json beside a bare column",
            &["SELECT full_name, row_to_json(c) FROM customers c"],
        ),
        case("TABLE command", &["TABLE customers"]).roles(&["support"]),
        case("view", &["SELECT full_name FROM v_names"]),
        case(
            "COPY (query)",
            &["COPY (SELECT full_name FROM customers) TO STDOUT"],
        ),
        case(
            "CREATE TABLE AS",
            &[
                "CREATE TEMP TABLE o12 AS SELECT full_name FROM customers",
                "SELECT * FROM o12",
            ],
        ),
        case(
            "SELECT INTO",
            &[
                "SELECT full_name INTO TEMP o12b FROM customers",
                "SELECT * FROM o12b",
            ],
        ),
        case(
            "INSERT … SELECT then read back",
            &[
                "BEGIN",
                "INSERT INTO sink SELECT full_name FROM customers",
                "SELECT v FROM sink",
                "ROLLBACK",
            ],
        ),
        case(
            "UPDATE … RETURNING",
            &[
                "BEGIN",
                "UPDATE customers SET id = id WHERE id = 2 RETURNING full_name",
                "ROLLBACK",
            ],
        ),
        case(
            "cursor over a bare select",
            &[
                "BEGIN",
                "DECLARE o12c CURSOR FOR SELECT full_name FROM customers",
                "FETCH ALL o12c",
                "COMMIT",
            ],
        ),
        case(
            "SQL PREPARE / EXECUTE",
            &[
                "PREPARE o12p AS SELECT full_name FROM customers",
                "EXECUTE o12p",
            ],
        ),
        pair("WHERE LIKE", &like, "Zeb", "Zec"),
        pair("WHERE =", &eq, N, N_WRONG),
        pair("ORDER BY a comparison", &ord, "Zec", "Zea"),
        pair("GROUP BY / HAVING", &grp, "Zeb", "Zec"),
        pair("window PARTITION BY", &win, "Zeb", "Zec"),
        pair("IN (subquery)", &sub, "Zeb", "Zec"),
        pair("join condition", &join, "Zeb", "Zec"),
        pair("CTE", &cte, "Zeb", "Zec"),
        pair("LATERAL", &lat, "Zeb", "Zec"),
        pair("DISTINCT", &dist, "Zeb", "Zec"),
        pair("UNION", &union, N, N_WRONG),
        pair("INTERSECT", &setop("INTERSECT"), N, N_WRONG),
        pair("EXCEPT", &setop("EXCEPT"), N, N_WRONG),
        pair("UNION ALL, ORDER BY", &union_order, N_LOW, N_WRONG),
        pair("UNION ALL, ORDER BY at the top", &union_top, N_LOW, N_WRONG),
        pair("DISTINCT ON", &distinct_on, N, N_WRONG),
        pair("VALUES compared", &values, N, N_WRONG),
        pair("VALUES ordered with", &values_order, N_LOW, N_WRONG),
        pair("JOIN USING", &using, N, N_WRONG),
        pair("NATURAL JOIN", &natural, N, N_WRONG),
        pair("IN list", &in_list, N, N_WRONG),
        pair("comparison in the select list", &cmp_out, N_LOW, N_WRONG),
        pair("CASE in the select list", &case_out, N_LOW, N_WRONG),
        pair("aggregate over the column", &agg, N_LOW, N_WRONG),
        pair("aggregate ORDER BY", &agg_order, N_LOW, N_WRONG),
        pair("window ORDER BY", &win_order, N_LOW, N_WRONG),
        pair("LIMIT over an ordered union", &limit_order, N_LOW, N_WRONG),
        pair("scalar subquery ordered", &sub_order, N_LOW, N_WRONG),
        pair("CTE ordered", &cte_order, N_LOW, N_WRONG),
        pair("LATERAL ordered", &lat_order, N_LOW, N_WRONG),
        pair("row comparison", &row_cmp, N_LOW, N_WRONG),
        pair("greatest()", &greatest, N_LOW, N_WRONG),
        pair("EXISTS", &exists, N, N_WRONG),
        ext_oracle("WHERE LIKE, extended", &like("Zeb"), &like("Zec")),
        ext_oracle("ORDER BY a comparison, extended", &ord("Zec"), &ord("Zea")),
        ext_oracle("join condition, extended", &join("Zeb"), &join("Zec")),
    ]
}

// ---- exact answers ----------------------------------------------------------------------------

/// The DataRow values of every result in `msgs` (text format), and whether anything was refused.
fn rows(msgs: &Msgs) -> (bool, Vec<Vec<Option<String>>>) {
    let mut out = Vec::new();
    for (tag, body) in msgs {
        if *tag != b'D' || body.len() < 2 {
            continue;
        }
        let n = i16::from_be_bytes([body[0], body[1]]) as usize;
        let mut at = 2;
        let mut row = Vec::new();
        for _ in 0..n {
            let len = i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
            at += 4;
            if len < 0 {
                row.push(None);
            } else {
                let l = len as usize;
                row.push(Some(
                    String::from_utf8_lossy(&body[at..at + l]).into_owned(),
                ));
                at += l;
            }
        }
        out.push(row);
    }
    (refused(msgs), out)
}

async fn run(role: &str, steps: &[Step]) -> (bool, Vec<Vec<Option<String>>>) {
    let (mut s, _) = login(role, &[])
        .await
        .unwrap_or_else(|(w, _)| panic!("login {role}: {w}"));
    let mut msgs = Vec::new();
    for step in steps {
        let (m, timed_out) = match step {
            Step::Q(sql) => exchange(&mut s, &crate::common::wire::query(sql), 1).await,
            Step::Raw(b, n) => exchange(&mut s, b, *n).await,
            _ => panic!("only Q and Raw steps here"),
        };
        assert!(!timed_out, "{role}: no ReadyForQuery");
        msgs.extend(m);
    }
    rows(&msgs)
}

fn q(sql: &str) -> Step {
    Step::Q(sql.to_string())
}

fn col(rows: &[Vec<Option<String>>], i: usize) -> Vec<Option<String>> {
    rows.iter().map(|r| r.get(i).cloned().flatten()).collect()
}

fn s(v: &[&str]) -> Vec<Option<String>> {
    v.iter().map(|x| Some(x.to_string())).collect()
}

/// support's `partial(1,0)` of a seeded full name.
fn masked(name: &str) -> String {
    let mut first = true;
    name.chars()
        .map(|c| {
            // Short-circuit: only an alphanumeric character uses up `first`.
            if !c.is_alphanumeric() || std::mem::take(&mut first) {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// Asserts one statement's answer for support and analyst; `None` expects a refusal.
async fn expect(
    steps: &[Step],
    i: usize,
    support: Option<Vec<Option<String>>>,
    analyst: Option<Vec<Option<String>>>,
) {
    for (role, want) in [("support", support), ("analyst", analyst)] {
        let (refused, got) = run(role, steps).await;
        match want {
            None => assert!(refused, "{role}: expected a refusal, got {got:?}"),
            Some(w) => {
                assert!(!refused, "{role}: refused");
                assert_eq!(col(&got, i), w, "{role}");
            }
        }
    }
}

/// The ids (customers holds ids 1, 2, 3 and, through the inheritance child, a second 2) in
/// the order the server sorts the *masked* names: support's masks sort Yolanda (1), then
/// `Z** …` (3) before `Z****** …` (2); the raw names would give 1, 2, 2, 3.
pub async fn exact_answers() {
    let _ = env();
    let sup = ["1", "3", "2", "2"];
    let ana = ["1", "2", "2", "3"];
    // Bare reads: the masked value, simple and extended, text and binary (binary text = text).
    let bare = "SELECT id, full_name FROM customers WHERE id = 3";
    let m3 = masked(SEEDS[2].full_name);
    expect(&[q(bare)], 1, Some(s(&[&m3])), Some(vec![None])).await;
    for fmt in [0, 1] {
        for d in [true, false] {
            let st = extended(bare, &[], fmt, d);
            let (support, analyst) = (
                run("support", std::slice::from_ref(&st)).await,
                run("analyst", std::slice::from_ref(&st)).await,
            );
            assert_eq!(
                col(&support.1, 1),
                s(&[&m3]),
                "support fmt {fmt} describe {d}"
            );
            assert_eq!(
                col(&analyst.1, 1),
                vec![None],
                "analyst fmt {fmt} describe {d}"
            );
        }
    }
    // ORDER BY the column, its alias, its position: masked order.
    for sql in [
        "SELECT id FROM customers ORDER BY full_name, id",
        "SELECT id, full_name AS n FROM customers ORDER BY n, id",
        "SELECT id, full_name FROM customers ORDER BY 2, 1",
    ] {
        expect(&[q(sql)], 0, Some(s(&sup)), Some(s(&ana))).await;
        expect(
            &[extended(sql, &[], 0, true)],
            0,
            Some(s(&sup)),
            Some(s(&ana)),
        )
        .await;
    }
    // GROUP BY / DISTINCT / window / UNION: analyst's NULLs are one group.
    expect(
        &[q(
            "SELECT count(*) FROM customers GROUP BY full_name ORDER BY 1",
        )],
        0,
        Some(s(&["1", "1", "2"])),
        Some(s(&["4"])),
    )
    .await;
    expect(
        &[q(
            "SELECT count(*) FROM (SELECT DISTINCT full_name FROM customers) d",
        )],
        0,
        Some(s(&["3"])),
        Some(s(&["1"])),
    )
    .await;
    expect(
        &[q(
            "SELECT count(*) OVER (PARTITION BY full_name) FROM customers ORDER BY id",
        )],
        0,
        Some(s(&["1", "2", "2", "1"])),
        Some(s(&["4", "4", "4", "4"])),
    )
    .await;
    expect(
        &[q(
            "SELECT rank() OVER (ORDER BY full_name) FROM customers ORDER BY id",
        )],
        0,
        Some(s(&["1", "3", "3", "2"])),
        Some(s(&["1", "1", "1", "1"])),
    )
    .await;
    expect(&[q("SELECT count(*) FROM (SELECT full_name FROM customers UNION SELECT full_name FROM customers) u")], 0, Some(s(&["3"])), Some(s(&["1"]))).await;
    // Subquery, CTE, LATERAL: the masked value comes out.
    expect(
        &[q("SELECT (SELECT full_name FROM customers WHERE id = 3)")],
        0,
        Some(s(&[&m3])),
        Some(vec![None]),
    )
    .await;
    expect(
        &[q(
            "WITH c AS (SELECT full_name FROM customers WHERE id = 3) SELECT full_name FROM c",
        )],
        0,
        Some(s(&[&m3])),
        Some(vec![None]),
    )
    .await;
    expect(&[q("SELECT l.n FROM (SELECT 3 AS k) k, LATERAL (SELECT full_name AS n FROM customers c WHERE c.id = k.k) l")], 0, Some(s(&[&m3])), Some(vec![None])).await;
    // Comparisons see the masked value: `=` on the raw name finds nothing, on the mask it does.
    let eq_raw = format!(
        "SELECT count(*) FROM customers WHERE full_name = '{}'",
        SEEDS[2].full_name
    );
    expect(&[q(&eq_raw)], 0, Some(s(&["0"])), Some(s(&["0"]))).await;
    let eq_mask = format!("SELECT count(*) FROM customers WHERE full_name = '{m3}'");
    expect(&[q(&eq_mask)], 0, Some(s(&["1"])), Some(s(&["0"]))).await;
    // Copies: INSERT … SELECT stores masked values; COPY (query) and CTAS stay refused.
    let ins = [
        q("BEGIN"),
        q("CREATE TEMP TABLE o12s (v text)"),
        q("INSERT INTO o12s SELECT full_name FROM customers WHERE id = 3"),
        q("SELECT v FROM o12s"),
        q("ROLLBACK"),
    ];
    expect(&ins, 0, Some(s(&[&m3])), Some(vec![None])).await;
    expect(
        &[q("COPY (SELECT full_name FROM customers) TO STDOUT")],
        0,
        None,
        None,
    )
    .await;
    expect(
        &[q(
            "CREATE TEMP TABLE o12t AS SELECT full_name FROM customers",
        )],
        0,
        None,
        None,
    )
    .await;
    expect(
        &[
            q("BEGIN"),
            q("UPDATE customers SET id = id WHERE id = 3 RETURNING full_name"),
            q("ROLLBACK"),
        ],
        0,
        // Issue 10: RETURNING of a write target is served masked.
        Some(s(&[&m3])),
        Some(vec![None]),
    )
    .await;
    expect(&[q("SELECT full_name FROM v_names")], 0, None, None).await;
    ordered_answers(&sup, &ana).await;
    compared_answers().await;
}

/// Every way the server can order or deduplicate the column sees the masked values: the raw
/// names would sort 1, 2, 2, 3 (or dedup the two id-2 rows differently).
async fn ordered_answers(sup: &[&str], ana: &[&str]) {
    let both = |sql: &'static str| (sql, s(sup), s(ana));
    let cases = [
        both("SELECT id, full_name FROM customers UNION ALL SELECT id, full_name FROM customers WHERE id < 0 ORDER BY 2, 1"),
        both("SELECT id, full_name FROM customers INTERSECT ALL SELECT id, full_name FROM customers ORDER BY 2, 1"),
        both("SELECT id FROM (SELECT id, full_name FROM customers UNION ALL SELECT 0, NULL WHERE false) u ORDER BY full_name, id"),
        both("WITH o AS (SELECT id, full_name FROM customers) SELECT id FROM o ORDER BY full_name, id"),
        both("SELECT id FROM customers ORDER BY full_name COLLATE \"C\", id"),
        both("SELECT id FROM customers ORDER BY customers.full_name, id"),
        both("SELECT id FROM customers ORDER BY \"full_name\", id"),
        both("SELECT id FROM customers c ORDER BY (c.full_name, c.id)"),
        both("SELECT id FROM customers ORDER BY full_name::text, id"),
        // ORDER BY names an output column first: `id` here is full_name.
        both("SELECT id AS k, full_name AS id FROM customers ORDER BY id, k"),
        both("SELECT k FROM (SELECT full_name AS id, id AS k FROM customers ORDER BY id, k) o"),
        (
            "SELECT id FROM customers ORDER BY full_name DESC NULLS LAST, id DESC OFFSET 0",
            s(&["2", "2", "3", "1"]),
            s(&["3", "2", "2", "1"]),
        ),
        (
            "SELECT id, full_name FROM customers EXCEPT SELECT id, full_name FROM customers WHERE id = 1 ORDER BY 2, 1",
            s(&["3", "2"]),
            s(&["2", "3"]),
        ),
        (
            "SELECT DISTINCT ON (full_name) id FROM customers ORDER BY full_name, id",
            s(&["1", "3", "2"]),
            s(&["1"]),
        ),
        (
            "SELECT min(id) FROM customers GROUP BY full_name ORDER BY full_name",
            s(&["1", "3", "2"]),
            s(&["1"]),
        ),
        (
            "SELECT id FROM customers ORDER BY full_name, id OFFSET 1 LIMIT 1",
            s(&["3"]),
            s(&["2"]),
        ),
        (
            "SELECT (SELECT id FROM customers ORDER BY full_name, id OFFSET 1 LIMIT 1)",
            s(&["3"]),
            s(&["2"]),
        ),
        (
            "SELECT count(*) FROM (SELECT id FROM customers ORDER BY full_name FETCH FIRST 2 ROWS WITH TIES) t",
            s(&["2"]),
            s(&["4"]),
        ),
        (
            "SELECT string_agg(id::text, ',' ORDER BY full_name, id) FROM customers",
            s(&["1,3,2,2"]),
            s(&["1,2,2,3"]),
        ),
        (
            "SELECT l.s FROM (SELECT 1) x, LATERAL (SELECT string_agg(id::text, ',' ORDER BY full_name, id) AS s FROM customers) l",
            s(&["1,3,2,2"]),
            s(&["1,2,2,3"]),
        ),
        (
            "SELECT row_number() OVER (ORDER BY full_name, id) FROM customers WHERE id <> 1 ORDER BY id, 1",
            s(&["2", "3", "1"]),
            s(&["1", "2", "3"]),
        ),
    ];
    for (sql, sup_want, ana_want) in cases {
        eprintln!("[output-masking] exact: {sql}");
        expect(&[q(sql)], 0, Some(sup_want.clone()), Some(ana_want.clone())).await;
        expect(
            &[extended(sql, &[], 0, false)],
            0,
            Some(sup_want),
            Some(ana_want),
        )
        .await;
    }
}

/// Comparisons and functions anywhere in the statement see the masked value: support's
/// `Z** …` sorts below `Za`, the raw `Zyx …` above; analyst's NULL compares to nothing.
async fn compared_answers() {
    let m3 = masked(SEEDS[2].full_name);
    let raw3 = SEEDS[2].full_name;
    let cases = [
        ("SELECT full_name < 'Za' FROM customers WHERE id = 3".to_string(), s(&["t"]), vec![None]),
        ("SELECT CASE WHEN full_name < 'Za' THEN 'lo' ELSE 'hi' END FROM customers WHERE id = 3".into(), s(&["lo"]), s(&["hi"])),
        ("SELECT greatest(full_name, 'Za') FROM customers WHERE id = 3".into(), s(&["Za"]), s(&["Za"])),
        ("SELECT min(full_name) FROM customers WHERE id > 1".into(), s(&[&m3]), vec![None]),
        ("SELECT array_agg(full_name) FROM customers WHERE id = 3".into(), s(&[&format!("{{\"{m3}\"}}")]), s(&["{NULL}"])),
        ("SELECT c.id FROM customers c JOIN customers d ON c.full_name < d.full_name WHERE d.id = 3 ORDER BY c.id".into(), s(&["1"]), s(&[])),
        (format!("SELECT count(*) FROM customers c JOIN (SELECT '{raw3}'::text AS full_name) g USING (full_name)"), s(&["0"]), s(&["0"])),
        (format!("SELECT count(*) FROM customers WHERE (full_name, id) IN (VALUES ('{raw3}', 3))"), s(&["0"]), s(&["0"])),
        (format!("SELECT count(*) FROM customers WHERE full_name IN ('{raw3}', 'x')"), s(&["0"]), s(&["0"])),
        (format!("SELECT count(*) FROM (SELECT full_name FROM customers INTERSECT SELECT '{raw3}') i"), s(&["0"]), s(&["0"])),
        (format!("SELECT count(*) FROM (SELECT full_name FROM customers WHERE id = 3 EXCEPT SELECT '{raw3}') e"), s(&["1"]), s(&["1"])),
        (format!("SELECT count(*) FROM (SELECT full_name FROM customers WHERE id = 3 UNION SELECT '{raw3}') u"), s(&["2"]), s(&["2"])),
    ];
    for (sql, sup_want, ana_want) in cases {
        eprintln!("[output-masking] exact: {sql}");
        expect(
            &[q(&sql)],
            0,
            Some(sup_want.clone()),
            Some(ana_want.clone()),
        )
        .await;
        expect(
            &[extended(&sql, &[], 0, false)],
            0,
            Some(sup_want),
            Some(ana_want),
        )
        .await;
    }
    // NATURAL JOIN is refused today (the derived table would have to keep every column); if
    // it is ever served, it must compare masked values.
    let natural = format!("SELECT count(*) FROM (SELECT 3::bigint AS id, '{raw3}'::text AS full_name) g NATURAL JOIN customers");
    for role in ["support", "analyst"] {
        let (refused, got) = run(role, &[q(&natural)]).await;
        assert!(
            refused || col(&got, 0) == s(&["0"]),
            "{role}: NATURAL JOIN: {got:?}"
        );
    }
}
