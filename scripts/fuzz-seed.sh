#!/usr/bin/env bash
# Regenerates the seed corpora under fuzz/corpus/<target>/ from the tests:
# SQL string literals of the analysis and adversarial tests, wire frames like
# the ones tests/common/wire.rs builds, the COPY cases of src/copy/tests.rs,
# the rule files and the rule-file test snippets, and sample values of every
# logical type. Seeds are named by content hash, so re-running only adds.
# Idempotent; needs python3. After a long fuzzing run, minimise with
# `cargo +nightly fuzz cmin <target>` (see docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null 2>&1; then
    echo "fuzz-seed: python3 not found; the committed corpus is left as it is" >&2
    exit 0
fi

python3 - <<'PY'
import hashlib, os, re, struct

ROOT = "fuzz/corpus"

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > 4096:
        return
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def rust_strings(src):
    """Plain and raw string literals of a Rust source, unescaped."""
    out = []
    pat = re.compile(r'r(#*)"(.*?)"\1|(?<![\w\'])b?"((?:[^"\\]|\\.)*)"', re.S)
    for m in pat.finditer(src):
        if m.group(2) is not None:
            out.append(m.group(2))
            continue
        s = m.group(3)
        s = re.sub(r'\\\n\s*', '', s)
        def esc(e):
            c = e.group(1)
            table = {'n': '\n', 't': '\t', 'r': '\r', '0': '\0', '\\': '\\', '"': '"', "'": "'"}
            if c in table:
                return table[c]
            if c.startswith('x'):
                return chr(int(c[1:], 16))
            if c.startswith('u'):
                return chr(int(c[2:-1], 16))
            return c
        s = re.sub(r'\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)', esc, s)
        out.append(s)
    return out

SQL_START = re.compile(
    r'\s*(\(|select|insert|update|delete|with|copy|prepare|execute|table|merge|create|alter|'
    r'drop|set|reset|show|begin|commit|rollback|savepoint|release|listen|notify|unlisten|do|'
    r'explain|values|declare|fetch|move|close|call|grant|revoke|discard|deallocate|analyze|'
    r'vacuum|truncate|lock|comment|refresh|cluster|reindex|security|start|abort|end)\b', re.I)

def sql_files():
    files = ["tests/adversarial/cases.rs"]
    for d in ["src/sql", "src/sql/tests", "src/session", "src/mask"]:
        if os.path.isdir(d):
            files += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".rs")]
    return files

sqls = set()
for path in sql_files():
    with open(path, encoding="utf-8") as f:
        for s in rust_strings(f.read()):
            if SQL_START.match(s) and "\0" not in s:
                sqls.add(s.replace("{DB}", "pgveil_test"))
for s in sorted(sqls):
    put("sql", s)

# --- wire frames (cap byte 0xff: 4085-byte frames) -------------------------
def msg(tag, body):
    return bytes([tag]) + struct.pack(">i", len(body) + 4) + body

def cstr(s):
    return s.encode() + b"\0"

def startup(params):
    body = struct.pack(">i", 196608) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return struct.pack(">i", len(body) + 4) + body

def request(code, extra=b""):
    return struct.pack(">ii", 8 + len(extra), code) + extra

def parse(name, q, oids):
    return msg(ord("P"), cstr(name) + cstr(q) + struct.pack(">h", len(oids)) + b"".join(struct.pack(">I", o) for o in oids))

def bind(portal, stmt, fmts, params, results):
    b = cstr(portal) + cstr(stmt) + struct.pack(">h", len(fmts)) + b"".join(struct.pack(">h", x) for x in fmts)
    b += struct.pack(">h", len(params))
    for p in params:
        b += struct.pack(">i", -1) if p is None else struct.pack(">i", len(p)) + p
    b += struct.pack(">h", len(results)) + b"".join(struct.pack(">h", x) for x in results)
    return msg(ord("B"), b)

def row_desc(fields):
    b = struct.pack(">h", len(fields))
    for name, table, att, ty in fields:
        b += cstr(name) + struct.pack(">ihIhih", table, att, ty, -1, -1, 0)
    return msg(ord("T"), b)

def data_row(vals):
    b = struct.pack(">h", len(vals))
    for v in vals:
        b += struct.pack(">i", -1) if v is None else struct.pack(">i", len(v)) + v
    return msg(ord("D"), b)

def error(fields):
    return msg(ord("E"), b"".join(bytes([ord(k)]) + cstr(v) for k, v in fields) + b"\0")

SYNC, TERM = msg(ord("S"), b""), msg(ord("X"), b"")
frames = [
    startup([("user", "support"), ("database", "pgveil_test")]),
    startup([("user", "admin"), ("database", "db"), ("search_path", "public"), ("options", "-c statement_timeout=1")]),
    request(80877103), request(80877104), request(80877102, struct.pack(">i", 42) + b"\x01\x02\x03\x04"),
    msg(ord("Q"), cstr("SELECT email FROM customers WHERE id = 1")),
    parse("wp", "INSERT INTO customers (full_name, email) VALUES ($1, $2)", [25, 25])
    + bind("", "wp", [0, 1], [b"Alice", None], [0])
    + msg(ord("D"), b"Pwp\0") + msg(ord("E"), b"\0\0\0\0\0") + SYNC,
    parse("", "SELECT $1::text", []) + bind("p1", "", [], [b"x"], [1, 0]) + msg(ord("D"), b"Sp1\0")
    + msg(ord("E"), b"p1\0\0\0\0\x05") + msg(ord("C"), b"Pp1\0") + msg(ord("H"), b"") + SYNC + TERM,
    msg(ord("d"), b"1\talice@example.com\n") + msg(ord("c"), b"") + msg(ord("f"), cstr("client gave up")),
    msg(ord("R"), struct.pack(">i", 10) + b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")
    + msg(ord("R"), struct.pack(">i", 0)) + msg(ord("K"), struct.pack(">i", 7) + b"\x00" * 4)
    + msg(ord("S"), cstr("client_encoding") + cstr("UTF8")) + msg(ord("Z"), b"I"),
    row_desc([("email", 16400, 3, 17), ("id", 16400, 1, 20)])
    + data_row([b"\\xabcd", b"1"]) + data_row([None, b""]) + msg(ord("C"), cstr("SELECT 2")) + msg(ord("Z"), b"T"),
    msg(ord("t"), struct.pack(">hII", 2, 25, 17)) + msg(ord("n"), b"") + msg(ord("1"), b"") + msg(ord("2"), b""),
    error([("S", "ERROR"), ("V", "ERROR"), ("C", "22P02"), ("M", 'invalid input syntax for type integer: "123-45-6789"'),
           ("D", "Key (ssn)=(123-45-6789) already exists."), ("W", "SQL function f"), ("t", "customers")]),
    error([("S", "NOTICE"), ("C", "00000"), ("M", "hello"), ("H", "hint"), ("q", "SELECT secret"), ("P", "3")]),
    msg(ord("A"), struct.pack(">i", 9) + cstr("chan") + cstr('{"email":"a@b.c"}')),
    msg(ord("Q"), struct.pack(">i", 3)), msg(ord("Q"), struct.pack(">i", -1)), msg(ord("Q"), struct.pack(">i", 0x7fffffff)),
    b"Q\0\0\0\x03", b"Q\x7f\xff\xff\xff", b"!", msg(ord("T"), b"\0\0"),
]
for f in frames:
    put("frontend", b"\xff" + f)
    put("frontend", b"\x01" + f)
for s in sorted(sqls)[:40]:
    put("frontend", b"\xff" + msg(ord("Q"), cstr(s)))

# --- COPY (layout: see copy_input in fuzz/harness.rs) ---------------------
def copy_seed(data, csv=False, header=False, enc=0, variant=0, delim=0, quote=0, escape=0,
              n=1, tagged=0xff, fnull=0, fnotnull=0, cap=0, null=None, default=None, splits=()):
    flags = int(csv) | int(header) << 1 | enc << 2 | variant << 4
    b = bytes([flags, delim, quote, escape, n, tagged, fnull, fnotnull, cap])
    b += b"\xff" if null is None else bytes([len(null)]) + null
    b += b"\xff" if default is None else bytes([len(default)]) + default
    b += bytes([len(splits)]) + b"".join(struct.pack(">H", s) for s in splits)
    return b + data

T, C = False, True
copies = [
    dict(data=b"1\talice@example.com\t\\N\n2\tbob\\tx\t\\\\N\n", n=3, tagged=0b010, splits=(3, 9, 20)),
    dict(data=b"a\\tb\\\\c\\nd\\101\\x41\\x4g\\q\\7\\08\\b\\f\\r\\v\\,|\\xz\\777\\\n", n=1, variant=1),
    dict(data=b"\\101\\t\\\\\tx\\\t\n", n=2, splits=(1, 2, 3)),
    dict(data=b"a\\\nb\tc\n", n=2),
    dict(data=b"nil\t\\nil\n", n=2, null=b"nil"),
    dict(data=b"\"a,b\",\"c\nd\",\"e\"\"f\",,\"\",x\"y,z\"w\n", csv=C, n=6, splits=(2, 8, 14)),
    dict(data=b"NULL,\"NULL\",\n", csv=C, n=3, null=b"NULL"),
    dict(data=b"\"a\\\"b\\\\c\\d\",\"x\"\"\"\n", csv=C, n=2, escape=ord("\\")),
    dict(data=b"NULL,\"NULL\"\n\"NULL\",NULL\n", csv=C, n=2, null=b"NULL", fnull=0b01, fnotnull=0b10),
    dict(data=b"h1\th\\x2\th3\textra\n1\t2\t3\n", header=True, n=3, variant=1),
    dict(data=b"\"h,1\",\"multi\nline\"\n1,2,3\n", csv=C, header=True, n=3),
    dict(data=b"1\n\\.\nignored\n", n=1), dict(data=b"1\n\\.x\n", n=1), dict(data=b"\"1\"\n\\.\n", csv=C, n=1),
    dict(data=b"a\r\nb\r\n", n=1), dict(data=b"a\rb\r", n=1), dict(data=b"a\nb\r\n", n=1, splits=(1, 2)),
    dict(data=b"a|b;c\n", delim=ord("|"), n=2), dict(data=b"a;'b;c'\n", csv=C, delim=ord(";"), quote=ord("'"), n=2),
    dict(data=b"\\D\tx\n", n=2, default=b"\\D"), dict(data=b"1,\"!no\"\n", csv=C, n=2, variant=3),
    dict(data=b"\xc3\xa9\t\xff\n", n=2), dict(data=b"\xe9\t\xff\n", n=2, enc=1),
    dict(data=b"\x82\\\t1\n", n=2, enc=3), dict(data=b"x" * 40 + b"\n", n=1, cap=4),
    dict(data=b"\n", n=0), dict(data=b"\"unterminated\n", csv=C, n=1), dict(data=b"a\0b\n", n=1),
    dict(data=b"\\.", n=1, variant=2), dict(data=b"1,2\n", csv=C, n=2, variant=2, null=b""),
]
for c in copies:
    put("copy", copy_seed(**c))

# --- rules ----------------------------------------------------------------
for d in ["rules"]:
    for f in sorted(os.listdir(d)):
        if f.endswith(".toml"):
            with open(os.path.join(d, f), "rb") as fh:
                put("rules", fh.read())
with open("src/rules/parse/tests.rs", encoding="utf-8") as f:
    for s in rust_strings(f.read()):
        if "=" in s and ("[" in s or "\n" in s):
            put("rules", s)
for a in ["plaintext", "null", "deny", "redact", "partial(0,4)", "partial( 1 , 0 )", "email", "hash",
          "year", "month", "round(100)", "round(0)", "ROUND(9223372036854775807)", "partial(4294967295,1)"]:
    put("rules", 'access = "%s"\n' % a)

# --- values (type index, mask byte, value) --------------------------------
TYPES = ["text", "varchar", "date", "timestamptz", "int4", "int8", "numeric", "bool", "bytea"]
samples = {
    "text": [b"alice@example.com", b"Alice Smith", b"", b"\xc3\xa9t\xc3\xa9"],
    "varchar": [b"+1-202-555-0143", b"4111 1111 1111 1111"],
    "date": [b"1984-07-19", b"2024-02-29", b"infinity", b"-infinity", b"4713-01-01 BC", b"5874897-12-31", b"  1999-1-8 "],
    "timestamptz": [b"2024-01-01 00:00:00+00", b"1999-12-31T23:59:59.999999-08:00", b"infinity", b"2000-01-01 00:00:00+14:59"],
    "int4": [b"42", b"-2147483648", b"2147483647", b" 007 "],
    "int8": [b"-9223372036854775808", b"9223372036854775807", b"0"],
    "numeric": [b"1.50", b"NaN", b"-0.000001", b"1e10", b"123456789012345678901234567890.123", b"Infinity"],
    "bool": [b"t", b"false", b" yes ", b"0"],
    "bytea": [b"\\x00ff", b"\\x", b"a\\\\b\\001", b"\\x 0 1"],
}
for i, t in enumerate(TYPES):
    for v in samples[t]:
        for m in (0x00, 0x21, 0x64):
            put("values", bytes([i, m]) + v)
    put("values", bytes([i, 0]) + b"\x00\x00\x00\x2a")
    put("values", bytes([i, 0]) + b"\x00\x00\x00\x00\x00\x00\x00\x2a")
print("fuzz-seed: corpora under fuzz/corpus regenerated")
PY

for d in fuzz/corpus/*/; do
    printf '%-10s %5d files\n' "$(basename "$d")" "$(find "$d" -type f | wc -l)"
done
