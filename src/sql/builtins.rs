//! The allowlists behind the restricted-session checks in `restrict`:
//! built-in functions and operator spellings that only compute on their
//! arguments. Kept apart (and unformatted) because they are long lists.

/// Operator spellings sqlparser leaves as `Custom` that are built-in
/// Postgres operators (pattern matching, geometry, ranges, text search).
#[rustfmt::skip]
pub const BUILTIN_OPERATORS: &[&str] = &[
    "~~", "!~~", "~~*", "!~~*", "<->", "&&", "-|-", "<<", ">>", "&<", "&>", "<<|", "|>>", "&<|",
    "|&>", "?-", "?|", "?-|", "?||", "~=", "@@@", "<^", ">^", "##", "@-@", "<<=", ">>=", "!!",
];

/// Built-in functions (pg_catalog) that only compute on their arguments:
/// no SQL text executed (`query_to_xml`, `ts_stat`, `ts_rewrite`), no
/// files or large objects, no settings (`set_config`), no other sessions'
/// data, no replication slots. Catalog helpers ORMs call (`format_type`,
/// `to_regclass`, `pg_get_serial_sequence`, privilege checks, definitions
/// of constraints and indexes, which a DBA wrote) and advisory locks (keys
/// are numbers the caller chose) qualify. `ARRAY(…)` and `ROW(…)` are syntax that
/// sqlparser reports as calls. Sorted, for binary search.
#[rustfmt::skip]
const ALLOWED_FUNCTIONS: &[&str] = &[
    "abs", "acos", "acosd", "acosh", "age", "any_value", "array", "array_agg", "array_append",
    "array_cat", "array_dims", "array_fill", "array_length", "array_lower", "array_ndims",
    "array_position", "array_positions", "array_prepend", "array_remove", "array_replace",
    "array_to_json", "array_to_string", "array_upper", "ascii", "asin", "asind", "asinh", "atan",
    "atan2", "atan2d", "atand", "atanh", "avg", "bit_and", "bit_count", "bit_length", "bit_or",
    "bit_xor", "bool_and", "bool_or", "btrim", "cardinality", "cbrt", "ceil", "ceiling",
    "char_length", "character_length", "chr", "clock_timestamp", "coalesce", "col_description",
    "concat", "concat_ws", "convert", "convert_from", "convert_to", "corr", "cos", "cosd", "cosh",
    "cot", "cotd", "count", "covar_pop", "covar_samp", "cume_dist", "current_database",
    "current_date", "current_role", "current_schema", "current_schemas", "current_setting",
    "current_time", "current_timestamp", "current_user", "currval", "date_add", "date_bin",
    "date_part", "date_subtract", "date_trunc", "decode", "degrees", "dense_rank", "div", "encode",
    "every", "exp", "extract", "factorial", "first_value", "floor", "format", "format_type", "gcd",
    "gen_random_uuid", "generate_series", "generate_subscripts", "get_bit", "get_byte", "greatest",
    "grouping", "has_column_privilege", "has_database_privilege", "has_schema_privilege",
    "has_sequence_privilege", "has_table_privilege", "initcap", "isfinite", "json_agg",
    "json_array_elements", "json_array_elements_text", "json_array_length", "json_build_array",
    "json_build_object", "json_each", "json_each_text", "json_extract_path",
    "json_extract_path_text", "json_object", "json_object_agg", "json_object_keys",
    "json_populate_record", "json_populate_recordset", "json_strip_nulls", "json_to_record",
    "json_to_recordset", "json_typeof", "jsonb_agg", "jsonb_array_elements",
    "jsonb_array_elements_text", "jsonb_array_length", "jsonb_build_array", "jsonb_build_object",
    "jsonb_each", "jsonb_each_text", "jsonb_extract_path", "jsonb_extract_path_text",
    "jsonb_insert", "jsonb_object", "jsonb_object_agg", "jsonb_object_keys", "jsonb_path_exists",
    "jsonb_path_match", "jsonb_path_query", "jsonb_path_query_array", "jsonb_path_query_first",
    "jsonb_populate_record", "jsonb_populate_recordset", "jsonb_pretty", "jsonb_set",
    "jsonb_set_lax", "jsonb_strip_nulls", "jsonb_to_record", "jsonb_to_recordset", "jsonb_typeof",
    "justify_days", "justify_hours", "justify_interval", "lag", "last_value", "lastval", "lcm",
    "lead", "least", "left", "length", "ln", "localtime", "localtimestamp", "log", "log10",
    "lower", "lpad", "ltrim", "make_date", "make_interval", "make_time", "make_timestamp",
    "make_timestamptz", "max", "md5", "min", "min_scale", "mod", "mode", "nextval", "normalize",
    "now", "nth_value", "ntile", "nullif", "num_nonnulls", "num_nulls", "obj_description",
    "octet_length", "overlay", "percent_rank", "percentile_cont", "percentile_disc",
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
    "pg_backend_pid", "pg_encoding_to_char", "pg_get_constraintdef", "pg_get_expr",
    "pg_get_indexdef", "pg_get_serial_sequence", "pg_is_in_recovery", "pg_notify", "pg_sleep",
    "pg_table_is_visible", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared", "pg_type_is_visible",
    "pg_typeof", "pi", "plainto_tsquery", "position", "pow", "power", "quote_ident",
    "quote_literal", "quote_nullable", "radians", "random", "range_agg", "rank", "regexp_count",
    "regexp_instr", "regexp_like", "regexp_match", "regexp_matches", "regexp_replace",
    "regexp_split_to_array", "regexp_split_to_table", "regexp_substr", "regr_avgx", "regr_avgy",
    "regr_count", "regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy",
    "repeat", "replace", "reverse", "right", "round", "row", "row_number", "row_to_json", "rpad",
    "rtrim", "scale", "session_user", "setseed", "sha224", "sha256", "sha384", "sha512", "sign",
    "sin", "sind", "sinh", "split_part", "sqrt", "starts_with", "statement_timestamp", "stddev",
    "stddev_pop", "stddev_samp", "string_agg", "string_to_array", "string_to_table", "strpos",
    "substr", "substring", "sum", "tan", "tand", "tanh", "to_char", "to_date", "to_hex", "to_json",
    "to_jsonb", "to_number", "to_regclass", "to_regnamespace", "to_regproc", "to_regprocedure",
    "to_regrole", "to_regtype", "to_timestamp", "to_tsquery", "to_tsvector",
    "transaction_timestamp", "translate", "trim", "trim_array", "trim_scale", "trunc",
    "ts_headline", "ts_rank", "ts_rank_cd", "txid_current", "unistr", "unnest", "upper", "user",
    "var_pop", "var_samp", "variance", "version", "websearch_to_tsquery", "width_bucket",
];

/// Whether an unqualified or `pg_catalog.`-qualified function may be called
/// by a restricted session.
pub fn builtin_allowed(f: &str) -> bool {
    ALLOWED_FUNCTIONS.binary_search(&f).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_is_sorted_and_excludes_sql_executing_functions() {
        assert!(ALLOWED_FUNCTIONS.windows(2).all(|w| w[0] < w[1]));
        for f in ["lower", "count", "row_to_json", "coalesce"] {
            assert!(builtin_allowed(f), "{f}");
        }
        for f in [
            "set_config",
            "query_to_xml",
            "table_to_xml",
            "cursor_to_xml",
            "ts_stat",
            "ts_rewrite",
            "lo_export",
            "lo_get",
            "pg_read_file",
            "pg_read_binary_file",
            "pg_ls_dir",
            "dblink",
            "pg_stat_get_activity",
            "pg_logical_slot_get_changes",
        ] {
            assert!(!builtin_allowed(f), "{f}");
        }
    }
}
