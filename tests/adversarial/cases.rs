//! The adversarial statements and protocol sequences, one function per threat class of
//! ARCHITECTURE.md §9. Each case is run as the restricted roles it names; see `run_case`.

use crate::common::wire::{header, query};
use crate::harness::*;

/// One step of a case.
pub enum Step {
    /// A simple Query; read up to ReadyForQuery.
    Q(String),
    /// Raw frontend bytes; read until this many ReadyForQuery messages arrived.
    Raw(Vec<u8>, usize),
    /// SQL run directly as superuser (setup/teardown inside a case); errors ignored.
    Su(String),
    /// Close the session and log in again with these extra startup parameters.
    Reconnect(Vec<(&'static str, &'static str)>),
    /// Forget the messages seen so far (what came before was legitimately plaintext).
    Mark,
}

pub struct Case {
    pub name: String,
    pub roles: Vec<&'static str>,
    pub startup: Vec<(&'static str, &'static str)>,
    pub steps: Vec<Step>,
    /// Case-specific forbidden strings (e.g. a character code a mask must hide).
    pub extra: Vec<String>,
    /// Oracle cases: the same probe with a wrong guess; what the client observes must not
    /// depend on whether the guess was right.
    pub wrong: Option<Vec<Step>>,
}

const RESTRICTED: [&str; 2] = ["support", "analyst"];

fn subst(sql: &str) -> String {
    let e = env();
    sql.replace("{DB}", &e.db)
}

/// A case of simple queries, each string one Query message.
pub fn case(name: &str, sqls: &[&str]) -> Case {
    Case {
        name: name.to_string(),
        roles: RESTRICTED.to_vec(),
        startup: Vec::new(),
        steps: sqls.iter().map(|s| Step::Q(subst(s))).collect(),
        extra: Vec::new(),
        wrong: None,
    }
}

/// An oracle case: `right` probes with the true value, `wrong` with a false one.
pub fn oracle(name: &str, right: &[&str], wrong: &[&str]) -> Case {
    let mut c = case(name, right);
    c.wrong = Some(wrong.iter().map(|s| Step::Q(subst(s))).collect());
    c
}

impl Case {
    pub fn roles(mut self, r: &[&'static str]) -> Case {
        self.roles = r.to_vec();
        self
    }
    pub fn startup(mut self, p: &[(&'static str, &'static str)]) -> Case {
        self.startup = p.to_vec();
        self
    }
    pub fn extra(mut self, x: &str) -> Case {
        self.extra.push(x.to_string());
        self
    }
    pub fn then(mut self, s: Step) -> Case {
        self.steps.push(s);
        self
    }
    pub fn q(self, sql: &str) -> Case {
        self.then(Step::Q(subst(sql)))
    }
}

/// A raw-protocol case: one Step::Raw per (frames, readies).
pub fn raw(name: &str, parts: Vec<(Vec<Vec<u8>>, usize)>) -> Case {
    let mut c = case(name, &[]);
    for (frames, n) in parts {
        c.steps.push(Step::Raw(frames.concat(), n));
    }
    c
}

pub fn expression_wrapping() -> Vec<Case> {
    vec![
        case("concat empty", &["SELECT full_name || '' FROM customers"]),
        case("upper/lower", &["SELECT upper(full_name), lower(full_name) FROM customers"]),
        case("reverse", &["SELECT reverse(full_name) FROM customers"]),
        case("hex", &["SELECT encode(convert_to(full_name, 'UTF8'), 'hex') FROM customers"]),
        case("base64", &["SELECT encode(convert_to(substr(full_name, 2), 'UTF8'), 'base64') FROM customers"]),
        case("md5", &["SELECT md5(full_name) FROM customers"]),
        case("substr", &["SELECT substr(full_name, 2) FROM customers"]),
        case("format", &["SELECT format('%s|%s', id, full_name) FROM customers"]),
        case("case/coalesce", &["SELECT CASE WHEN id > 0 THEN full_name END, COALESCE(NULL, full_name) FROM customers"]),
        case("scalar self subquery", &["SELECT (SELECT full_name) FROM customers"]),
        case("array literal", &["SELECT ARRAY[full_name]::text FROM customers"]),
        case("cast to bytea", &["SELECT full_name::bytea FROM customers"]),
        case("tsvector", &["SELECT to_tsvector('simple', full_name)::text FROM customers"]),
        case("user function on column", &["SELECT public.f_echo(full_name) FROM customers"]),
        case("regexp spread", &[r"SELECT regexp_replace(full_name, '(.)', '\1 ', 'g') FROM customers"]),
        case("chars as array", &["SELECT regexp_split_to_array(full_name, '')::text FROM customers"]),
        case("collate C", &[r#"SELECT full_name COLLATE "C" FROM customers"#]),
        case("ascii of 2nd char", &["SELECT 'k=' || ascii(substr(full_name, 2, 1)) FROM customers WHERE id = 2"])
            .extra("k=101"),
        case("encrypted: lower(email)", &["SELECT lower(email::text) FROM customers"]),
        case("encrypted: concat ssn", &["SELECT ssn || ''::bytea, phone || ''::bytea FROM customers"]),
    ]
}

pub fn whole_row_and_serialisers() -> Vec<Case> {
    vec![
        case("row alias", &["SELECT c FROM customers c"]),
        case("row by table name", &["SELECT customers FROM customers"]),
        case("row to text", &["SELECT c::text FROM customers c"]),
        case("row_to_json", &["SELECT row_to_json(c) FROM customers c"]),
        case(
            "to_jsonb(t.*)",
            &["SELECT to_jsonb(customers.*) FROM customers"],
        ),
        case(
            "json_build_object",
            &["SELECT json_build_object('n', full_name) FROM customers"],
        ),
        case("jsonb_agg rows", &["SELECT jsonb_agg(c) FROM customers c"]),
        case("(c).*", &["SELECT (c).* FROM customers c"]),
        case("ROW(c.*)", &["SELECT ROW(c.*)::text FROM customers c"]),
        case("format row", &["SELECT format('%s', c) FROM customers c"]),
        case(
            "table_to_xml",
            &["SELECT table_to_xml('public.customers', true, false, '')"],
        ),
        case(
            "schema_to_xml",
            &["SELECT schema_to_xml('public', true, false, '')"],
        ),
        case(
            "database_to_xml",
            &["SELECT database_to_xml(true, false, '')"],
        ),
        case(
            "xmlforest",
            &["SELECT xmlforest(full_name)::text FROM customers"],
        ),
        case(
            "jsonb_each_text",
            &["SELECT jsonb_each_text(to_jsonb(c)) FROM customers c"],
        ),
        case(
            "json_object_agg",
            &["SELECT json_object_agg(id, full_name) FROM customers"],
        ),
        case(
            "array_agg rows",
            &["SELECT array_agg(c)::text FROM customers c"],
        ),
    ]
}

pub fn aggregates_windows_setops() -> Vec<Case> {
    let rec = "WITH RECURSIVE r(i, ch) AS (SELECT 1, substr((SELECT full_name FROM customers WHERE id = 2), 1, 1) \
               UNION ALL SELECT i + 1, substr((SELECT full_name FROM customers WHERE id = 2), i + 1, 1) FROM r WHERE i < 30) \
               SELECT string_agg(ch, '' ORDER BY i) FROM r";
    vec![
        case("string_agg", &["SELECT string_agg(full_name, ',') FROM customers"]),
        case("array_agg", &["SELECT array_agg(full_name ORDER BY id) FROM customers"]),
        case("min/max", &["SELECT min(full_name), max(full_name) FROM customers"]),
        case("mode within group", &["SELECT mode() WITHIN GROUP (ORDER BY full_name) FROM customers"]),
        case("percentile_disc", &["SELECT percentile_disc(1) WITHIN GROUP (ORDER BY full_name) FROM customers"]),
        case("window first_value/lag", &["SELECT first_value(full_name) OVER (ORDER BY id DESC), lag(full_name) OVER (ORDER BY id) FROM customers"]),
        case("union", &["SELECT full_name FROM customers UNION SELECT 'x'"]),
        case("union all other side", &["SELECT 'x' UNION ALL SELECT full_name FROM customers"]),
        case("intersect", &["SELECT full_name FROM customers INTERSECT SELECT full_name FROM customers"]),
        case("except", &["SELECT full_name FROM customers EXCEPT SELECT ''"]),
        case("recursive cte char walk", &[rec]),
        case("cte", &["WITH c AS (SELECT * FROM customers) SELECT full_name FROM c"]),
        case("materialized cte", &["WITH c AS MATERIALIZED (SELECT full_name AS n FROM customers) SELECT n FROM c"]),
        case("lateral", &["SELECT l.full_name FROM generate_series(1, 1) g, LATERAL (SELECT full_name FROM customers) l"]),
        case("rollup", &["SELECT full_name, count(*) FROM customers GROUP BY ROLLUP (full_name)"]),
        case("distinct on", &["SELECT DISTINCT ON (id) full_name FROM customers"]),
        case("values subquery", &["VALUES ((SELECT full_name FROM customers WHERE id = 2))"]),
        case("self join on name", &["SELECT c2.full_name FROM customers c1 JOIN customers c2 ON c1.full_name = c2.full_name"]),
        case("natural join", &["SELECT * FROM customers NATURAL JOIN customers c2"]),
        case("xmlagg", &["SELECT xmlagg(xmlelement(name n, full_name))::text FROM customers"]),
        case("filter", &["SELECT string_agg(full_name, ',') FILTER (WHERE id > 0) FROM customers"]),
        case("order by masked name", &[r#"SELECT string_agg(id::text, ',' ORDER BY full_name COLLATE "C") || '#ord' FROM customers WHERE id IN (2, 3)"#])
            .extra("2,3#ord")
            // analyst sees NULL names: ties, so the order is not informative there.
            .roles(&["support"]),
    ]
}

pub fn name_tricks() -> Vec<Case> {
    let shadow = ["support_s", "analyst_s"];
    let sel = "SELECT full_name, email, phone FROM customers";
    vec![
        case("quoted", &[r#"SELECT "full_name" FROM "customers""#]),
        case("upper case", &["SELECT FULL_NAME FROM PUBLIC.CUSTOMERS"]),
        case("unicode escape column", &[r#"SELECT U&"\0066ull_name" FROM customers"#]),
        case("unicode escape table", &[r#"SELECT full_name FROM U&"\0063ustomers""#]),
        case("uescape", &[r#"SELECT full_name FROM U&"!0063ustomers" UESCAPE '!'"#]),
        case("six-digit escape", &[r#"SELECT U&"\+000066ull_name" FROM public.customers"#]),
        case("table alias", &["SELECT x.full_name FROM customers AS x"]),
        case("column alias list", &["SELECT b FROM customers AS c(a, b)"]),
        case("catalog-qualified", &["SELECT full_name FROM {DB}.public.customers"]),
        case("ONLY", &["SELECT full_name FROM ONLY customers"]),
        case("star inheritance", &["SELECT full_name FROM customers *"]),
        case("TABLE", &["TABLE customers"]),
        case("parenthesised", &["SELECT full_name FROM (customers)"]),
        case("tablesample", &["SELECT full_name FROM customers TABLESAMPLE SYSTEM (100)"]),
        case("spaced qualified", &[r#"SELECT "customers" . "full_name" FROM public . customers"#]),
        case("alias swap", &["SELECT id AS full_name, full_name AS id FROM customers"]),
        case("functional notation", &["SELECT full_name(c) FROM customers c"]),
        case("composite field selection", &["SELECT (c).full_name FROM customers c"]),
        case("comments inside qualified name", &["SELECT full_name FROM public/**/./**/customers"]),
        case("derived table named like the table", &["SELECT customers.full_name FROM (SELECT * FROM public.customers) customers"]),
        case("non-recursive CTE named like the table", &["WITH customers AS (SELECT full_name FROM customers) SELECT full_name FROM customers"]),
        case("recursive CTE named like the table", &["WITH RECURSIVE customers(full_name) AS (SELECT full_name FROM public.customers UNION ALL SELECT full_name FROM customers WHERE false) SELECT full_name FROM customers"]),
        case("CTE in a scalar subquery shadows nothing outside", &["SELECT (WITH customers AS (SELECT 1) SELECT 1) AS x, full_name FROM customers"]),
        case("CTE in EXISTS shadows nothing outside", &["SELECT full_name FROM customers WHERE EXISTS (WITH customers AS (SELECT 1) SELECT 1)"]),
        case("CTE in a UNION branch", &["SELECT full_name FROM customers UNION ALL (WITH customers AS (SELECT 'x'::text AS full_name) SELECT full_name FROM customers)"]),
        case("CTE in a FROM subquery", &["SELECT c.full_name FROM customers c, (WITH customers AS (SELECT 1) SELECT 1) s"]),
        case("inheritance child of the protected table", &["SELECT full_name FROM customers_archive", "SELECT * FROM customers_archive"]),
        case("dollar tag with a non-ASCII letter", &["SELECT $ä$ ' $ä$, full_name FROM customers -- '"]),
        // search_path shadowing: support_s/analyst_s own a schema of their name with an
        // innocent `customers` table, which the default "$user", public path finds first.
        case("shadow: default path reads own table", &[sel]).roles(&shadow),
        case("shadow: startup options search_path", &[sel])
            .roles(&shadow)
            .startup(&[("options", "-c search_path=public")]),
        case("shadow: startup param search_path", &[sel])
            .roles(&shadow)
            .startup(&[("search_path", "public")]),
        case("shadow: options role then search_path", &[sel])
            .roles(&["support_s"])
            .startup(&[("options", "-c role=support_s -c search_path=public")]),
        case("shadow: options --role then --search_path", &[sel])
            .roles(&["support_s"])
            .startup(&[("options", "--role=support_s --search_path=public")]),
        case("shadow: options role with tab separator", &[sel])
            .roles(&["support_s"])
            .startup(&[("options", "-c role=support_s\t-c search_path=public")]),
        case("shadow: options only role", &[sel])
            .roles(&["analyst_s"])
            .startup(&[("options", "-c role=analyst_s")]),
        case("shadow: SET search_path", &["SET search_path = public", sel]).roles(&shadow),
        case("shadow: set_config search_path", &["SELECT set_config('search_path', 'public', false)", sel]).roles(&shadow),
        case("shadow: SET LOCAL", &["BEGIN", "SET LOCAL search_path = public", sel, "COMMIT"]).roles(&shadow),
        case("shadow: dropped behind the proxy", &[sel])
            .roles(&["support_s"])
            .then(Step::Su("ALTER TABLE support_s.customers RENAME TO customers_x".into()))
            .q(sel)
            .then(Step::Su("ALTER TABLE support_s.customers_x RENAME TO customers".into())),
        case("shadow: dropped behind the proxy", &[sel])
            .roles(&["analyst_s"])
            .then(Step::Su("ALTER TABLE analyst_s.customers RENAME TO customers_x".into()))
            .q(sel)
            .then(Step::Su("ALTER TABLE analyst_s.customers_x RENAME TO customers".into())),
        case("shadow: renamed through the proxy", &[sel, "ALTER TABLE customers RENAME TO customers_y", sel, "ALTER TABLE customers_y RENAME TO customers"])
            .roles(&shadow),
        case("shadow: ALTER ROLE SET search_path", &["ALTER ROLE CURRENT_USER SET search_path = public"])
            .roles(&shadow)
            .then(Step::Reconnect(vec![]))
            .q(sel)
            .then(Step::Su("ALTER ROLE support_s RESET ALL; ALTER ROLE analyst_s RESET ALL".into())),
        case("shadow: role default search_path set by a DBA", &[])
            .roles(&shadow)
            .then(Step::Su("ALTER ROLE support_s SET search_path = public; ALTER ROLE analyst_s SET search_path = public".into()))
            .then(Step::Reconnect(vec![]))
            .q(sel)
            .then(Step::Su("ALTER ROLE support_s RESET ALL; ALTER ROLE analyst_s RESET ALL".into())),
        case("temp table shadow then drop", &["CREATE TEMP TABLE customers (id int, full_name text)", "SELECT full_name FROM customers", "DROP TABLE customers", "SELECT full_name FROM customers"]),
        case("temp view over protected", &["CREATE TEMP VIEW customers AS SELECT * FROM public.customers", "SELECT full_name FROM customers"]),
        case("pg_temp in path first", &["CREATE TEMP VIEW cv AS SELECT full_name FROM public.customers", "SELECT * FROM cv"]),
    ]
}

pub fn copying() -> Vec<Case> {
    vec![
        case("CTAS", &["CREATE TEMP TABLE t AS SELECT full_name FROM customers", "SELECT * FROM t"]),
        case("SELECT INTO", &["SELECT full_name INTO TEMP t2 FROM customers", "SELECT * FROM t2"]),
        case("INSERT SELECT temp", &["CREATE TEMP TABLE t3 (v text)", "INSERT INTO t3 SELECT full_name FROM customers", "SELECT v FROM t3"]),
        case("INSERT VALUES subquery", &["CREATE TEMP TABLE t4 (v text)", "INSERT INTO t4 VALUES ((SELECT full_name FROM customers WHERE id = 2))", "SELECT v FROM t4"]),
        case("INSERT SELECT * LIKE", &["CREATE TEMP TABLE t5 (LIKE customers)", "INSERT INTO t5 SELECT * FROM customers", "SELECT * FROM t5"]),
        case("INSERT into permanent sink", &["BEGIN", "INSERT INTO sink SELECT full_name FROM customers", "SELECT v FROM sink", "ROLLBACK"]),
        case("UPDATE other FROM protected", &["BEGIN", "INSERT INTO sink VALUES ('x')", "UPDATE sink SET v = c.full_name FROM customers c WHERE c.id = 2", "SELECT v FROM sink", "ROLLBACK"]),
        case("UPDATE other = subquery", &["BEGIN", "INSERT INTO sink VALUES ('x')", "UPDATE sink SET v = (SELECT full_name FROM customers WHERE id = 2)", "SELECT v FROM sink", "ROLLBACK"]),
        case("UPDATE RETURNING", &["BEGIN", "UPDATE customers SET card_number = card_number WHERE id = 2 RETURNING full_name", "ROLLBACK"]),
        case("DELETE RETURNING *", &["BEGIN", "DELETE FROM customers WHERE id = 2 RETURNING *", "ROLLBACK"]),
        case("INSERT SELECT RETURNING", &["BEGIN", "INSERT INTO customers (full_name) SELECT full_name || ' copy' FROM customers WHERE id = 2 RETURNING full_name", "ROLLBACK"]),
        case("UPDATE self RETURNING", &["BEGIN", "UPDATE customers SET full_name = full_name || '' WHERE id = 2 RETURNING full_name", "ROLLBACK"]),
        case("data-modifying CTE", &["BEGIN", "WITH d AS (DELETE FROM customers WHERE id = 2 RETURNING full_name) SELECT * FROM d", "ROLLBACK"]),
        case("COPY query TO STDOUT", &["COPY (SELECT full_name FROM customers) TO STDOUT"]),
        case("COPY table TO STDOUT", &["COPY customers TO STDOUT"]),
        case("COPY column TO STDOUT csv", &["COPY customers (full_name) TO STDOUT (FORMAT csv)"]),
        case("MERGE into another table", &["BEGIN", "MERGE INTO sink s USING customers c ON false WHEN NOT MATCHED THEN INSERT VALUES (c.full_name)", "SELECT v FROM sink", "ROLLBACK"]),
        case("INSERT ON CONFLICT from protected", &["BEGIN", "INSERT INTO uniq_sink SELECT full_name FROM customers ON CONFLICT (v) DO UPDATE SET v = excluded.v || '!'", "SELECT v FROM uniq_sink", "ROLLBACK"]),
        case("materialized view", &["CREATE MATERIALIZED VIEW mv_x AS SELECT full_name FROM customers", "SELECT * FROM mv_x", "DROP MATERIALIZED VIEW IF EXISTS mv_x"]),
        case("UPDATE self with plaintext then read via view", &["BEGIN", "UPDATE customers SET full_name = full_name WHERE id = 2", "SELECT full_name FROM v_names WHERE id = 2", "ROLLBACK"]),
    ]
}

pub fn reads_naming_no_table() -> Vec<Case> {
    vec![
        case(
            "cursor",
            &[
                "BEGIN",
                "DECLARE k CURSOR FOR SELECT full_name FROM customers",
                "FETCH ALL FROM k",
                "COMMIT",
            ],
        ),
        case(
            "cursor with hold",
            &[
                "DECLARE k2 CURSOR WITH HOLD FOR SELECT * FROM customers",
                "FETCH 10 k2",
                "CLOSE k2",
            ],
        ),
        case(
            "binary cursor",
            &[
                "BEGIN",
                "DECLARE k3 BINARY CURSOR FOR SELECT full_name, birth_date FROM customers",
                "FETCH ALL k3",
                "COMMIT",
            ],
        ),
        case(
            "cursor MOVE then FETCH",
            &[
                "BEGIN",
                "DECLARE k4 SCROLL CURSOR FOR SELECT full_name FROM customers ORDER BY id",
                "MOVE 1 IN k4",
                "FETCH NEXT FROM k4",
                "FETCH PRIOR FROM k4",
                "COMMIT",
            ],
        ),
        case(
            "SQL PREPARE/EXECUTE",
            &["PREPARE p AS SELECT full_name FROM customers", "EXECUTE p"],
        ),
        case(
            "SQL PREPARE with parameter",
            &[
                "PREPARE p2(bigint) AS SELECT * FROM customers WHERE id = $1",
                "EXECUTE p2(2)",
            ],
        ),
        case("view *", &["SELECT * FROM v_customers"]),
        case(
            "view with derived column",
            &["SELECT full_name, up FROM v_names"],
        ),
        case("materialized view", &["SELECT * FROM mv_names"]),
        case(
            "set-returning function",
            &["SELECT * FROM public.f_names()"],
        ),
        case("scalar function", &["SELECT public.f_first()"]),
        case(
            "security definer function",
            &["SELECT * FROM public.f_secdef()"],
        ),
        case(
            "dynamic SQL function",
            &["SELECT * FROM public.f_exec('SELECT full_name FROM public.customers')"],
        ),
        case(
            "view: encrypted columns raw",
            &["SELECT ssn, card_number, email FROM v_customers"],
        ),
    ]
}

pub fn sql_in_strings() -> Vec<Case> {
    let hidden = hex::encode("SELECT full_name FROM public.customers");
    let f_exec_hidden =
        format!("SELECT * FROM public.f_exec(convert_from(decode('{hidden}', 'hex'), 'UTF8'))");
    vec![
        case("DO notice", &["DO $$BEGIN RAISE NOTICE '%', (SELECT full_name FROM customers WHERE id = 2); END$$"]),
        case("DO exception", &["DO $$BEGIN RAISE EXCEPTION '%', (SELECT string_agg(full_name, ',') FROM customers); END$$"]),
        case("DO dynamic into setting", &["DO $x$DECLARE r text; BEGIN EXECUTE 'SELECT full_name FROM customers WHERE id = 2' INTO r; PERFORM set_config('app.leak', r, false); END$x$", "SELECT current_setting('app.leak', true)"]),
        case("query_to_xml", &["SELECT query_to_xml('SELECT full_name FROM customers', true, false, '')"]),
        case("query_to_xml_and_xmlschema", &["SELECT query_to_xml_and_xmlschema('SELECT * FROM customers', true, false, '')"]),
        case("ts_stat", &["SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', full_name) FROM customers')"]),
        case("hex-hidden SQL via function", &[f_exec_hidden.as_str()]),
        case("CREATE FUNCTION pg_temp", &["CREATE FUNCTION pg_temp.ff() RETURNS SETOF text LANGUAGE sql AS 'SELECT full_name FROM public.customers'", "SELECT * FROM pg_temp.ff()"]),
        case("CREATE FUNCTION public", &["CREATE FUNCTION public.ff_x() RETURNS SETOF text LANGUAGE sql AS $b$SELECT full_name FROM public.customers$b$", "SELECT * FROM public.ff_x()", "DROP FUNCTION IF EXISTS public.ff_x()"]),
    ]
}

pub fn out_of_band() -> Vec<Case> {
    let foid = env().f_first_oid;
    vec![
        case("NOTIFY payload", &["LISTEN ch", "SELECT pg_notify('ch', full_name) FROM customers", "SELECT 1"]),
        case("custom setting", &["SELECT set_config('app.x', full_name, false) FROM customers WHERE id = 2", "SHOW app.x"]),
        case("application_name ParameterStatus", &["SELECT set_config('application_name', full_name, false) FROM customers WHERE id = 2"]),
        case("large object round trip", &["BEGIN", "SELECT encode(lo_get(lo_from_bytea(0, convert_to(full_name, 'UTF8'))), 'escape') FROM customers", "ROLLBACK"]),
        case("RAISE via function", &["SELECT public.f_raise()"]),
        case("RAISE via procedure", &["CALL public.p_raise()"]),
        case("RAISE detail via function", &["SELECT public.f_fail()"]),
        case("notice per row via function", &["SELECT public.f_log(full_name) FROM customers"]),
        raw("FunctionCall message", vec![(vec![function_call(foid)], 1)]),
        case("pg_read_file", &["SELECT pg_read_file('postgresql.conf')"]),
    ]
}

pub fn errors_echoing_values() -> Vec<Case> {
    vec![
        case("cast int", &["SELECT full_name::int FROM customers"]),
        case("cast date", &["SELECT full_name::date FROM customers"]),
        case(
            "cast regclass",
            &["SELECT full_name::regclass FROM customers"],
        ),
        case("cast json", &["SELECT full_name::json FROM customers"]),
        case(
            "cast numeric",
            &["SELECT full_name::numeric FROM customers"],
        ),
        case("cast uuid", &["SELECT full_name::uuid FROM customers"]),
        case(
            "cast inet",
            &["SELECT CAST(full_name AS inet) FROM customers"],
        ),
        case(
            "array literal",
            &["SELECT ('{' || full_name || '}')::int[] FROM customers"],
        ),
        case(
            "xmlparse",
            &["SELECT xmlparse(document full_name) FROM customers"],
        ),
        case("jsonpath", &["SELECT full_name::jsonpath FROM customers"]),
        case(
            "tsquery",
            &["SELECT to_tsquery('simple', full_name) FROM customers"],
        ),
        case("interval", &["SELECT full_name::interval FROM customers"]),
        case(
            "cast in WHERE",
            &["SELECT 1 FROM customers WHERE full_name::int = 1"],
        ),
        case(
            "check violation DETAIL",
            &[
                "BEGIN",
                "UPDATE customers SET id = -id WHERE id = 2",
                "ROLLBACK",
            ],
        ),
        case(
            "unique violation DETAIL",
            &[
                "BEGIN",
                "INSERT INTO uniq_sink SELECT full_name FROM customers WHERE id = 2",
                "INSERT INTO uniq_sink SELECT full_name FROM customers WHERE id = 2",
                "ROLLBACK",
            ],
        ),
        case(
            "temp check DETAIL",
            &[
                "CREATE TEMP TABLE ck (v text CHECK (v = 'x'))",
                "INSERT INTO ck SELECT full_name FROM customers WHERE id = 2",
            ],
        ),
        case(
            "encrypted: cast",
            &[
                "SELECT ssn::text::int FROM customers",
                "SELECT email::text::int FROM customers",
            ],
        ),
    ]
}

pub fn statistics() -> Vec<Case> {
    vec![
        case("pg_stats customers", &["SELECT attname, most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'customers'"]),
        case("pg_stats *", &["SELECT * FROM pg_catalog.pg_stats WHERE schemaname = 'public'"]),
        case("pg_stats mv", &["SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'mv_names'"]),
        case("pg_stats via view name", &["SELECT s.histogram_bounds::text FROM pg_stats s JOIN pg_class c ON c.relname = s.tablename WHERE c.relname = 'customers'"]),
    ]
}

pub fn oracles() -> Vec<Case> {
    const N: &str = "Zebulon Quixote-Marchbanks";
    let eq = |v: &str| format!("SELECT count(*) FROM customers WHERE full_name = '{v}'");
    let (r, w) = (eq(N), eq("Zebulon Quixote-Marchbankz"));
    let cnt = |p: &str| format!("SELECT count(*) FROM customers WHERE {p}");
    let upd = |v: &str| format!("UPDATE customers SET id = id WHERE full_name = '{v}'");
    let (ur, uw) = (upd(N), upd("Zebulon Quixote-Marchbankz"));
    let del = |v: &str| format!("DELETE FROM customers WHERE full_name LIKE '{v}%'");
    let (dr, dw) = (del("Zeb"), del("Zec"));
    vec![
        oracle("equality", &[&r], &[&w]),
        oracle("LIKE prefix", &[&cnt("full_name LIKE 'Zeb%'")], &[&cnt("full_name LIKE 'Zec%'")]),
        oracle("binary search <", &[&cnt(r#"full_name COLLATE "C" < 'Zec'"#)], &[&cnt(r#"full_name COLLATE "C" < 'Zea'"#)]),
        oracle("regex", &[&cnt("full_name ~ '^Zeb'")], &[&cnt("full_name ~ '^Zec'")]),
        oracle(
            "CASE division by zero",
            &["SELECT CASE WHEN substr(full_name, 2, 1) = 'e' THEN 1/0 ELSE 1 END FROM customers WHERE id = 2"],
            &["SELECT CASE WHEN substr(full_name, 2, 1) = 'f' THEN 1/0 ELSE 1 END FROM customers WHERE id = 2"],
        ),
        oracle(
            "arithmetic division by zero",
            &["SELECT 1 / (ascii(substr(full_name, 2, 1)) - 101) FROM customers WHERE id = 2"],
            &["SELECT 1 / (ascii(substr(full_name, 2, 1)) - 102) FROM customers WHERE id = 2"],
        ),
        oracle("UPDATE row count", &["BEGIN", &ur, "ROLLBACK"], &["BEGIN", &uw, "ROLLBACK"]),
        oracle("DELETE row count", &["BEGIN", &dr, "ROLLBACK"], &["BEGIN", &dw, "ROLLBACK"]),
        oracle(
            "EXISTS",
            &["SELECT EXISTS (SELECT 1 FROM customers WHERE full_name LIKE '%Marchbanks')"],
            &["SELECT EXISTS (SELECT 1 FROM customers WHERE full_name LIKE '%Marchbankz')"],
        ),
        oracle(
            "join on VALUES",
            &[&format!("SELECT count(*) FROM customers JOIN (VALUES ('{N}')) v(n) ON v.n = full_name")],
            &["SELECT count(*) FROM customers JOIN (VALUES ('Zebulon Quixote-Marchbankz')) v(n) ON v.n = full_name"],
        ),
        oracle(
            "HAVING",
            &["SELECT count(*) FROM customers GROUP BY full_name HAVING full_name LIKE 'Ze%'"],
            &["SELECT count(*) FROM customers GROUP BY full_name HAVING full_name LIKE 'Zf%'"],
        ),
        oracle(
            "cursor WHERE",
            &["BEGIN", "DECLARE o CURSOR FOR SELECT id FROM customers WHERE full_name LIKE 'Zeb%'", "FETCH ALL o", "COMMIT"],
            &["BEGIN", "DECLARE o CURSOR FOR SELECT id FROM customers WHERE full_name LIKE 'Zec%'", "FETCH ALL o", "COMMIT"],
        ),
        oracle("view WHERE", &["SELECT count(*) FROM v_names WHERE full_name LIKE 'Zeb%'"], &["SELECT count(*) FROM v_names WHERE full_name LIKE 'Zec%'"]),
        oracle("function WHERE", &["SELECT count(*) FROM public.f_names() n WHERE n LIKE 'Zeb%'"], &["SELECT count(*) FROM public.f_names() n WHERE n LIKE 'Zec%'"]),
        oracle(
            "unique conflict",
            &["BEGIN", "INSERT INTO uniq_sink SELECT full_name FROM customers WHERE id = 2", &format!("INSERT INTO uniq_sink VALUES ('{N}')"), "ROLLBACK"],
            &["BEGIN", "INSERT INTO uniq_sink SELECT full_name FROM customers WHERE id = 2", "INSERT INTO uniq_sink VALUES ('Zebulon Quixote-Marchbankz')", "ROLLBACK"],
        ),
        oracle(
            "UPDATE other FROM protected row count",
            &["BEGIN", "INSERT INTO sink VALUES ('a')", "UPDATE sink SET v = 'b' FROM customers c WHERE c.full_name LIKE 'Zeb%'", "ROLLBACK"],
            &["BEGIN", "INSERT INTO sink VALUES ('a')", "UPDATE sink SET v = 'b' FROM customers c WHERE c.full_name LIKE 'Zec%'", "ROLLBACK"],
        ),
        oracle(
            "MERGE row count",
            &["BEGIN", "MERGE INTO sink s USING customers c ON c.full_name LIKE 'Zeb%' WHEN NOT MATCHED THEN INSERT VALUES ('x')", "ROLLBACK"],
            &["BEGIN", "MERGE INTO sink s USING customers c ON c.full_name LIKE 'Zec%' WHEN NOT MATCHED THEN INSERT VALUES ('x')", "ROLLBACK"],
        ),
        extended_param_oracle(),
        // analyst: ssn is unlisted (deny) and card_number is deny; even a WHERE on them reads them.
        oracle("deny column equality (ssn)", &[&cnt("ssn = '987-65-4329'")], &[&cnt("ssn = '987-65-4320'")]).roles(&["analyst"]),
        oracle("deny column equality (card)", &[&cnt("card_number = '5500 0000 0000 0004'")], &[&cnt("card_number = '5500 0000 0000 0005'")]).roles(&["analyst"]),
        oracle("null column equality (phone via IS NULL)", &[&cnt("phone IS NULL AND id = 2")], &[&cnt("phone IS NOT NULL AND id = 2")]).roles(&["analyst"]),
    ]
}

/// `WHERE full_name = $1` with the guess as a bound text parameter (extended protocol).
fn extended_param_oracle() -> Case {
    let probe = |v: &str| {
        Step::Raw(
            [
                parse(
                    "",
                    "SELECT count(*) FROM customers WHERE full_name = $1",
                    &[25],
                ),
                bind("", "", &[Some(v.as_bytes())], 0, 0),
                execute("", 0),
                sync(),
            ]
            .concat(),
            1,
        )
    };
    let mut c = case("bound parameter equality", &[]);
    c.steps.push(probe("Zebulon Quixote-Marchbanks"));
    c.wrong = Some(vec![probe("Zebulon Quixote-Marchbankz")]);
    c
}

pub fn parser_differentials() -> Vec<Case> {
    let tail = "SELECT '\\'', full_name FROM customers -- '";
    vec![
        case(
            "nested comment",
            &["SELECT 1 /* /* */ -- */ , full_name FROM customers"],
        ),
        case(
            "dollar quote hides quote",
            &["SELECT $$ ' $$, full_name FROM customers -- '"],
        ),
        case(
            "tagged dollar quote",
            &["SELECT $a$ $$ $a$, full_name FROM customers"],
        ),
        case(
            "E string escaped quote",
            &[r"SELECT E'\'', full_name FROM customers -- '"],
        ),
        case(
            "U& string",
            &[r"SELECT U&'\0027', full_name FROM customers"],
        ),
        case(
            "U& string UESCAPE",
            &["SELECT U&'!0041' UESCAPE '!', full_name FROM customers"],
        ),
        case(
            "line comment ended by CR",
            &["SELECT 1 --\r, full_name FROM customers"],
        ),
        case(
            "form feed whitespace",
            &["SELECT\x0cfull_name\x0cFROM\x0ccustomers"],
        ),
        case(
            "semicolon in string",
            &["SELECT ';' ; SELECT full_name FROM customers"],
        ),
        case(
            "scs off via SET",
            &["SET standard_conforming_strings = off", tail],
        ),
        case(
            "scs off via set_config",
            &[
                "SELECT set_config('standard_conforming_strings', 'off', false)",
                tail,
            ],
        ),
        case(
            "scs off via SET LOCAL",
            &[
                "BEGIN",
                "SET LOCAL standard_conforming_strings TO off",
                tail,
                "COMMIT",
            ],
        ),
        case("scs off via startup options", &[tail])
            .startup(&[("options", "-c standard_conforming_strings=off")]),
        case("scs off via startup parameter", &[tail])
            .startup(&[("standard_conforming_strings", "off")]),
        case(
            "client_encoding change",
            &[
                "SET client_encoding = 'SJIS'",
                "SELECT full_name FROM customers",
            ],
        ),
        raw(
            "NUL inside Query",
            vec![(
                vec![{
                    let mut b = b"SELECT 1;\0SELECT full_name FROM customers\0".to_vec();
                    let mut m = vec![b'Q'];
                    m.extend(((b.len() + 4) as i32).to_be_bytes());
                    m.append(&mut b);
                    m
                }],
                1,
            )],
        ),
    ]
}

pub fn protocol_state() -> Vec<Case> {
    let both = "SELECT full_name, email, phone, birth_date FROM customers ORDER BY id";
    let all =
        "SELECT full_name, email, ssn, phone, birth_date, card_number FROM customers ORDER BY id";
    let harmless = "SELECT 'x'::text AS full_name, 'y'::text AS email";
    vec![
        raw(
            "binary results with Describe",
            vec![(
                vec![
                    parse("", all, &[]),
                    bind("", "", &[], 0, 1),
                    describe(b'P', ""),
                    execute("", 0),
                    sync(),
                ],
                1,
            )],
        ),
        raw(
            "binary results, Execute without Describe",
            vec![(
                vec![
                    parse("", both, &[]),
                    bind("", "", &[], 0, 1),
                    execute("", 0),
                    sync(),
                ],
                1,
            )],
        ),
        raw(
            "text results, Execute without Describe",
            vec![(
                vec![
                    parse("", both, &[]),
                    bind("", "", &[], 0, 0),
                    execute("", 0),
                    sync(),
                ],
                1,
            )],
        ),
        raw(
            "re-Parse of a name fails, Bind uses the old one",
            vec![
                (vec![parse("s", both, &[]), sync()], 1),
                (vec![parse("s", harmless, &[]), sync()], 1),
                (vec![bind("", "s", &[], 0, 1), execute("", 0), sync()], 1),
            ],
        ),
        raw(
            "Close then re-Parse pipelined",
            vec![
                (vec![parse("s2", harmless, &[]), sync()], 1),
                (
                    vec![
                        close(b'S', "s2"),
                        parse("s2", both, &[]),
                        bind("", "s2", &[], 0, 1),
                        execute("", 0),
                        sync(),
                    ],
                    1,
                ),
            ],
        ),
        raw(
            "error then skip until Sync",
            vec![
                (
                    vec![
                        parse("", "SELEC nonsense", &[]),
                        parse("", both, &[]),
                        bind("", "", &[], 0, 1),
                        execute("", 0),
                        sync(),
                    ],
                    1,
                ),
                (vec![bind("", "", &[], 0, 1), execute("", 0), sync()], 1),
            ],
        ),
        raw(
            "pipeline: failing batch then protected batch",
            vec![(
                vec![
                    parse("", "SELECT 1/0", &[]),
                    bind("", "", &[], 0, 0),
                    execute("", 0),
                    sync(),
                    parse("", both, &[]),
                    bind("", "", &[], 0, 1),
                    execute("", 0),
                    sync(),
                ],
                2,
            )],
        ),
        raw(
            "portal suspended, rest fetched later",
            vec![(
                vec![
                    parse("", both, &[]),
                    bind("p", "", &[], 0, 0),
                    execute("p", 1),
                    execute("p", 0),
                    sync(),
                ],
                1,
            )],
        ),
        raw(
            "portal suspended with Flush",
            vec![
                (
                    vec![
                        parse("", both, &[]),
                        bind("p", "", &[], 0, 1),
                        execute("p", 1),
                        flush(),
                    ],
                    0,
                ),
                (vec![execute("p", 0), sync()], 1),
            ],
        ),
        raw(
            "unnamed statement replaced before Execute",
            vec![(
                vec![
                    parse("", both, &[]),
                    bind("p", "", &[], 0, 1),
                    parse("", harmless, &[]),
                    execute("p", 0),
                    sync(),
                ],
                1,
            )],
        ),
        raw(
            "Bind against the wrong statement",
            vec![
                (
                    vec![
                        parse("a", harmless, &[]),
                        parse("b", both, &[]),
                        describe(b'S', "a"),
                        sync(),
                    ],
                    1,
                ),
                (vec![bind("", "b", &[], 0, 1), execute("", 0), sync()], 1),
            ],
        ),
        raw(
            "protocol Parse then SQL EXECUTE",
            vec![
                (vec![parse("pp", both, &[]), sync()], 1),
                (vec![query("EXECUTE pp")], 1),
            ],
        ),
        raw(
            "SQL PREPARE then protocol Bind",
            vec![
                (vec![query(&format!("PREPARE sq AS {both}"))], 1),
                (
                    vec![
                        bind("", "sq", &[], 0, 1),
                        describe(b'P', ""),
                        execute("", 0),
                        sync(),
                    ],
                    1,
                ),
            ],
        ),
        raw(
            "DEALLOCATE and re-PREPARE under a known name",
            vec![
                (vec![parse("sw", harmless, &[]), sync()], 1),
                (
                    vec![query(&format!("DEALLOCATE sw; PREPARE sw AS {both}"))],
                    1,
                ),
                (
                    vec![
                        bind("", "sw", &[], 0, 1),
                        describe(b'P', ""),
                        execute("", 0),
                        sync(),
                    ],
                    1,
                ),
            ],
        ),
        raw(
            "binary parameter",
            vec![(
                vec![
                    parse("", "SELECT full_name FROM customers WHERE id = $1", &[20]),
                    bind("", "", &[Some(&2_i64.to_be_bytes())], 1, 1),
                    execute("", 0),
                    sync(),
                ],
                1,
            )],
        ),
        raw(
            "Query inside an unsynced extended batch",
            vec![(
                vec![
                    parse("s9", both, &[]),
                    bind("p9", "s9", &[], 0, 1),
                    query("SELECT 1"),
                    execute("p9", 0),
                    sync(),
                ],
                2,
            )],
        ),
        raw("huge length", vec![(vec![header(b'Q', 0x7fff_fff0)], 1)]),
    ]
}

pub fn encryption_misuse() -> Vec<Case> {
    vec![
        case("email ciphertext moved to ssn", &["BEGIN", "UPDATE customers SET ssn = email WHERE id = 2", "SELECT ssn FROM customers WHERE id = 2", "ROLLBACK"]),
        case("ssn ciphertext moved to email", &["BEGIN", "UPDATE customers SET email = ssn WHERE id = 2", "SELECT email FROM customers WHERE id = 2", "ROLLBACK"]),
        case("card ciphertext moved to phone", &["BEGIN", "UPDATE customers SET phone = card_number WHERE id = 2", "SELECT phone FROM customers WHERE id = 2", "ROLLBACK"]),
        case("ssn ciphertext into a new row's email", &["BEGIN", "INSERT INTO customers (full_name, email) SELECT 'copy', ssn FROM customers WHERE id = 2", "SELECT email FROM customers ORDER BY id DESC LIMIT 1", "ROLLBACK"]),
        case("ciphertext copied into a temp shadow table", &["CREATE TEMP TABLE customers (LIKE public.customers)", "INSERT INTO customers SELECT * FROM public.v_customers", "SELECT * FROM customers", "SELECT email, ssn FROM pg_temp.customers"]),
        case("renamed column", &["SELECT x FROM (SELECT ssn AS x FROM customers) s", "SELECT email FROM (SELECT card_number AS email FROM customers) s"]),
        case("union mixes columns", &["SELECT ssn FROM customers UNION ALL SELECT email FROM customers"]),
        case("scalar subquery", &["SELECT (SELECT ssn FROM customers WHERE id = 2) AS ssn, (SELECT card_number FROM customers WHERE id = 2) AS email"]),
        case("view ciphertext joined back", &["SELECT v.ssn, v.card_number FROM v_customers v JOIN customers c USING (id)"]),
    ]
}

pub fn escalation() -> Vec<Case> {
    let esc = ["support_e", "analyst_e"];
    let sel = "SELECT * FROM customers";
    let sel2 = "SELECT full_name, email, phone, birth_date FROM customers";
    vec![
        case("SET ROLE admin", &["SET ROLE admin", sel, sel2]).roles(&esc),
        case("SET SESSION AUTHORIZATION", &["SET SESSION AUTHORIZATION admin", sel, sel2]).roles(&esc),
        case("RESET ROLE / SET ROLE NONE", &["RESET ROLE", sel2, "SET ROLE NONE", sel2]).roles(&esc),
        case("set_config role", &["SELECT set_config('role', 'admin', false)", sel, sel2]).roles(&esc),
        case("set_config session_authorization", &["SELECT set_config('session_authorization', 'admin', false)", sel2]).roles(&esc),
        case("SET LOCAL ROLE", &["BEGIN", "SET LOCAL ROLE admin", sel2, "COMMIT"]).roles(&esc),
        case("DISCARD ALL", &["DISCARD ALL", sel2]).roles(&esc),
        case("SET ROLE to an inherited role", &["SET ROLE support", sel2]).roles(&["support_e"]),
        case("SET ROLE to an inherited role", &["SET ROLE analyst", sel2]).roles(&["analyst_e"]),
        case("GRANT admin to self", &["GRANT admin TO CURRENT_USER", sel2]).roles(&esc),
        case("startup role=admin", &[sel2]).roles(&esc).startup(&[("options", "-c role=admin")]),
        case("ALTER ROLE SET role", &["ALTER ROLE CURRENT_USER SET role = 'admin'"])
            .roles(&esc)
            .then(Step::Reconnect(vec![]))
            .q(sel2)
            .then(Step::Su("ALTER ROLE support_e RESET ALL; ALTER ROLE analyst_e RESET ALL".into())),
        // Settings a DBA (or the database owner) put on the role: not a SET the proxy sees.
        case("role default standard_conforming_strings=off", &[])
            .roles(&esc)
            .then(Step::Su("ALTER ROLE support_e SET standard_conforming_strings = off; ALTER ROLE analyst_e SET standard_conforming_strings = off".into()))
            .then(Step::Reconnect(vec![]))
            .q("SELECT '\\'', full_name FROM customers -- '")
            .then(Step::Su("ALTER ROLE support_e RESET ALL; ALTER ROLE analyst_e RESET ALL".into())),
        // Membership revoked outside pgveil while a session is open: the session
        // re-reads its roles once its snapshot is older than catalog_max_age (1 s
        // by default; changes made through pgveil apply at once), so its next
        // statement after that must follow.
        case("membership revoked: same session", &[])
            .roles(&esc)
            .then(Step::Su("GRANT admin TO support_e, analyst_e".into()))
            .then(Step::Reconnect(vec![]))
            .q("SELECT 1")
            .then(Step::Su("REVOKE admin FROM support_e, analyst_e; SELECT pg_sleep(1.2)".into()))
            .then(Step::Mark)
            .q(sel2),
        // … and a session opened after the REVOKE certainly must.
        case("membership revoked: new session", &[])
            .roles(&esc)
            .then(Step::Su("GRANT admin TO support_e, analyst_e".into()))
            .then(Step::Reconnect(vec![]))
            .q("SELECT 1")
            .then(Step::Su("REVOKE admin FROM support_e, analyst_e".into()))
            .then(Step::Reconnect(vec![]))
            .then(Step::Mark)
            .q(sel2),
    ]
}

pub fn audit_evasion() -> Vec<Case> {
    vec![
        case("allowed then protected", &["SELECT 1; SELECT full_name FROM customers"]),
        case("protected then refused", &["SELECT full_name FROM customers; SET ROLE admin"]),
        case("SET then SELECT *", &["SET application_name = 'x'; SELECT * FROM customers"]),
        case("three statements", &["SELECT 1 WHERE false; SELECT full_name, email FROM customers WHERE id = 2; SELECT 2"]),
        case("explicit transaction in one query", &["BEGIN; SELECT full_name FROM customers; COMMIT"]),
        case("comment with semicolon", &["/* ; */ SELECT full_name FROM customers"]),
        case("then COPY", &["SELECT 1; COPY customers TO STDOUT"]),
        case("then DO", &["SELECT 'x'; DO $$BEGIN RAISE NOTICE '%', (SELECT full_name FROM customers WHERE id = 2); END$$"]),
        case("EXPLAIN ANALYZE VERBOSE", &["EXPLAIN (ANALYZE, VERBOSE, COSTS OFF) SELECT full_name FROM customers WHERE full_name LIKE 'Z%'"]),
        case("injection into application_name", &["SELECT full_name FROM customers"])
            .startup(&[("application_name", "x\",\"role\":\"admin\n")]),
    ]
}

/// Issue 10 class 1: relations that no visitor sees (`TABLE name`) in every position where a
/// query can stand.
pub fn hidden_relations() -> Vec<Case> {
    vec![
        case("TABLE top level", &["TABLE customers", "TABLE public.customers", "table \"customers\""]),
        case("TABLE of a child table", &["TABLE customers_archive", "TABLE public.customers_archive"]),
        case("TABLE in MERGE USING", &["BEGIN", "MERGE INTO sink s USING (TABLE public.customers) c ON false WHEN NOT MATCHED THEN INSERT VALUES (c.full_name)", "SELECT v FROM sink", "ROLLBACK"]),
        case("TABLE unqualified in MERGE USING", &["BEGIN", "MERGE INTO sink s USING (TABLE customers) c ON false WHEN NOT MATCHED THEN INSERT VALUES (c.full_name)", "SELECT v FROM sink", "ROLLBACK"]),
        case("TABLE of a protected view", &["(TABLE public.v_names)", "SELECT * FROM (TABLE public.v_customers) x", "SELECT * FROM (TABLE v_names) x"]),
        case("TABLE in COPY", &["COPY (TABLE public.customers) TO STDOUT", "COPY (TABLE customers) TO STDOUT", "COPY (TABLE public.mv_names) TO STDOUT"]),
        case("TABLE in a CTE", &["WITH x AS (TABLE public.customers) SELECT * FROM x", "WITH x AS (TABLE customers) SELECT full_name FROM x"]),
        case("TABLE in a set operation", &["SELECT * FROM customers WHERE false UNION ALL TABLE public.customers_archive", "SELECT 'x' UNION TABLE public.mv_names"]),
        case("TABLE in CTAS", &["CREATE TEMP TABLE tt1 AS TABLE public.customers", "SELECT * FROM tt1"]),
        case("TABLE in INSERT", &["CREATE TEMP TABLE tt2 (LIKE public.v_names)", "INSERT INTO tt2 TABLE public.v_names", "SELECT * FROM tt2"]),
        case("TABLE in EXISTS / IN", &["SELECT count(*) FROM sink WHERE EXISTS (TABLE public.v_names)", "SELECT 1 WHERE 'x' IN (SELECT full_name FROM (TABLE public.customers) c)"]),
        case("TABLE in a cursor", &["BEGIN", "DECLARE tk CURSOR FOR TABLE public.customers", "FETCH ALL tk", "COMMIT"]),
        case("TABLE in PREPARE", &["PREPARE tp AS TABLE public.customers", "EXECUTE tp"]),
        case("TABLE scalar subquery", &["SELECT (SELECT full_name FROM (TABLE public.customers) c WHERE id = 2)"]),
    ]
}

/// Issue 10 class 2: statistics, every spelling and sibling view.
pub fn statistics_more() -> Vec<Case> {
    let ext = "CREATE STATISTICS IF NOT EXISTS public.st_customers (mcv) ON full_name, id FROM public.customers; \
               CREATE STATISTICS IF NOT EXISTS public.st_customers_x ON lower(full_name) FROM public.customers; \
               ANALYZE public.customers";
    vec![
        case("pg_stats quoted", &[r#"SELECT most_common_vals::text FROM "pg_catalog"."pg_stats" WHERE tablename = 'customers'"#]),
        case("pg_stats upper case", &["SELECT MOST_COMMON_VALS::text FROM PG_CATALOG.PG_STATS WHERE TABLENAME = 'customers'"]),
        case("pg_stats via TABLE", &["TABLE pg_stats", "TABLE pg_catalog.pg_stats"]),
        case("pg_stats in a scalar subquery", &["SELECT (SELECT string_agg(most_common_vals::text, ',') FROM pg_stats WHERE attname = 'full_name')"]),
        case("pg_stats in a CTE", &["WITH s AS (SELECT * FROM pg_stats) SELECT histogram_bounds::text FROM s WHERE tablename = 'customers'"]),
        case("pg_stats in EXISTS oracle", &["SELECT EXISTS (SELECT 1 FROM pg_stats WHERE most_common_vals::text LIKE '%Marchbanks%')"]),
        case("pg_statistic", &["SELECT stavalues1::text FROM pg_catalog.pg_statistic"]),
        case("pg_stats_ext", &[]).then(Step::Su(ext.into())).q("SELECT most_common_vals::text FROM pg_stats_ext WHERE tablename = 'customers'"),
        case("pg_stats_ext_exprs", &[]).then(Step::Su(ext.into())).q("SELECT most_common_vals::text FROM pg_catalog.pg_stats_ext_exprs WHERE tablename = 'customers'"),
        case("pg_statistic_ext_data", &["SELECT stxdmcv::text FROM pg_catalog.pg_statistic_ext_data"]),
        case("pg_mcv_list_items", &[]).then(Step::Su(ext.into())).q("SELECT m.values::text FROM pg_statistic_ext s, pg_statistic_ext_data d, pg_mcv_list_items(d.stxdmcv) m WHERE d.stxoid = s.oid"),
        case("pg_stat_statements", &["SELECT query FROM pg_stat_statements", "SELECT query FROM public.pg_stat_statements"]),
        case("view over pg_stats", &[])
            .then(Step::Su("CREATE OR REPLACE VIEW public.v_stats AS SELECT tablename, attname, most_common_vals::text AS v FROM pg_catalog.pg_stats; GRANT SELECT ON public.v_stats TO PUBLIC; SELECT pg_sleep(1.2)".into()))
            .q("SELECT v FROM v_stats WHERE tablename = 'customers'"),
    ]
}

/// Issue 10 class 7: objects the rules do not name that read the tagged table.
pub fn objects_around() -> Vec<Case> {
    let parent = "CREATE TABLE IF NOT EXISTS public.customers_gp (id bigint, full_name text); \
                  CREATE TABLE IF NOT EXISTS public.customers_parent (email bytea, ssn bytea) INHERITS (public.customers_gp); \
                  GRANT SELECT ON public.customers_gp, public.customers_parent TO PUBLIC; \
                  DO $$BEGIN ALTER TABLE public.customers INHERIT public.customers_parent; EXCEPTION WHEN others THEN NULL; END$$; \
                  CREATE OR REPLACE VIEW public.v_parent AS SELECT * FROM public.customers_gp; \
                  GRANT SELECT ON public.v_parent TO PUBLIC; SELECT pg_sleep(1.2)";
    let xml = "CREATE OR REPLACE VIEW public.v_xml AS SELECT query_to_xml('SELECT full_name FROM public.customers', true, false, '')::text AS x; \
               CREATE OR REPLACE VIEW public.v_xml2 AS SELECT query_to_xml_and_xmlschema('SELECT full_name FROM public.customers', true, false, '')::text AS x; \
               CREATE OR REPLACE VIEW public.v_tsstat AS SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', full_name) FROM public.customers'); \
               CREATE OR REPLACE VIEW public.v_tabxml AS SELECT table_to_xml('public.customers', true, false, '')::text AS x; \
               GRANT SELECT ON public.v_xml, public.v_xml2, public.v_tsstat, public.v_tabxml TO PUBLIC; SELECT pg_sleep(1.2)";
    vec![
        case("inheritance parent", &[])
            .then(Step::Su(parent.into()))
            .q("SELECT full_name FROM customers_parent")
            .q("SELECT * FROM public.customers_parent")
            .q("SELECT full_name FROM customers_gp")
            .q("TABLE customers_gp"),
        case("view over an inheritance parent", &[])
            .then(Step::Su(parent.into()))
            .q("SELECT * FROM v_parent"),
        case("views over SQL-text functions", &[])
            .then(Step::Su(xml.into()))
            .q("SELECT * FROM v_xml")
            .q("SELECT * FROM v_xml2")
            .q("SELECT * FROM v_tsstat")
            .q("SELECT * FROM v_tabxml"),
    ]
}

/// Issue 10 class 7, renames (run alone: they move the protected table for a moment).
pub fn renames() -> Vec<Case> {
    let back = "ALTER TABLE IF EXISTS public.customers_renamed RENAME TO customers; \
                ALTER TABLE IF EXISTS moved.customers SET SCHEMA public";
    vec![
        case("table renamed behind the proxy", &[])
            .then(Step::Su("ALTER TABLE public.customers RENAME TO customers_renamed; SELECT pg_sleep(1.2)".into()))
            .q("SELECT full_name, email FROM customers_renamed")
            .q("SELECT * FROM public.customers_renamed")
            .q("TABLE customers_renamed")
            .then(Step::Su(back.into())),
        case("column renamed behind the proxy", &[])
            .then(Step::Su("ALTER TABLE public.customers RENAME COLUMN full_name TO fname; SELECT pg_sleep(1.2)".into()))
            .q("SELECT fname FROM customers")
            .q("SELECT * FROM customers")
            .then(Step::Su("ALTER TABLE public.customers RENAME COLUMN fname TO full_name".into())),
        case("table moved to another schema", &[])
            .then(Step::Su("CREATE SCHEMA IF NOT EXISTS moved; GRANT USAGE ON SCHEMA moved TO PUBLIC; \
                            ALTER TABLE public.customers SET SCHEMA moved; SELECT pg_sleep(1.2)".into()))
            .q("SELECT full_name FROM moved.customers")
            .q("SELECT * FROM moved.customers")
            .then(Step::Su(back.into())),
        case("renamed through the proxy by the restricted role", &["ALTER TABLE customers RENAME TO customers_renamed", "SELECT full_name FROM customers_renamed"])
            .then(Step::Su(back.into())),
    ]
}
