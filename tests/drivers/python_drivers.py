"""Python rows of the driver matrix: psycopg 3, psycopg2, asyncpg, SQLAlchemy 2.

Run by tests/drivers.rs with the connection in PGV_* variables; prints one
`RESULT {json}` line per driver and feature. A failed check is reported, not
raised, so one broken feature does not hide the others.
"""

import asyncio
import datetime as dt
import decimal
import io
import json
import os
import threading
import time
import traceback

HOST = os.environ["PGV_HOST"]
PORT = int(os.environ["PGV_PORT"])
DB = os.environ["PGV_DB"]
ADMIN = os.environ["PGV_ADMIN"]
MASK = os.environ["PGV_MASK"]
PW = os.environ["PGV_PW"]

UTC = dt.timezone.utc
COLS = "t, v, d, ts, i4, i8, n, b, bi, note"
ROW = (
    "alice@example.com",
    "bob@example.org",
    dt.date(1990, 1, 2),
    dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    12344,
    9007199254740993,
    decimal.Decimal("12345.678"),
    True,
    b"\x00\x01\xfe\xff",
    "row one",
)
# What the masked role reads for ROW (same masks for every driver).
MASKED = (
    "a****@*******.***",
    "b**@example.org",
    dt.date(1990, 1, 1),
    dt.datetime(2024, 5, 1, tzinfo=UTC),
    12340,
    9007199254741000,
    decimal.Decimal("12350"),
    False,
    b"",
    "r** ***",
)


class Refused(Exception):
    """A refusal the matrix documents as by design."""


def report(driver, version, feature, status, detail=""):
    print("RESULT " + json.dumps({"driver": driver, "version": version,
                                  "feature": feature, "status": status,
                                  "detail": detail[:600]}), flush=True)


def check(driver, version, feature, fn):
    try:
        detail = fn() or ""
        report(driver, version, feature, "pass", detail)
    except Refused as e:
        report(driver, version, feature, "refused", str(e))
    except Exception as e:  # noqa: BLE001 - every failure is a matrix cell
        tb = traceback.format_exc(limit=3)
        report(driver, version, feature, "fail", f"{type(e).__name__}: {e} | {tb}")


def same(got, want, what="row"):
    got = tuple(bytes(g) if isinstance(g, memoryview) else g for g in got)
    # Types too: 12350 == Decimal("12350") and True == 1 in Python.
    typed = [(type(g).__name__, g) for g in got]
    if typed != [(type(w).__name__, w) for w in want]:
        raise AssertionError(f"{what}: got {got!r}, want {tuple(want)!r}")


def expect_refusal(fn, code, what):
    """Runs fn, which pgveil must refuse with SQLSTATE `code`."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        got = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if got == code:
            msg = str(e).strip().splitlines()[0]
            raise Refused(f"{what} ({code}: {msg})") from e
        raise
    raise AssertionError(f"{what}: not refused")


# ---------------------------------------------------------------- psycopg 3

def psycopg3():
    import psycopg

    v = psycopg.__version__
    drv, tbl = "psycopg", "drv_psycopg"

    def conn(role=ADMIN, **kw):
        return psycopg.connect(host=HOST, port=PORT, dbname=DB, user=role,
                               password=PW, autocommit=True, **kw)

    c = conn()
    ph = ", ".join(["%s"] * 11)
    sel = f"SELECT {COLS} FROM {tbl} WHERE id = %s"

    def params():
        c.execute(f"INSERT INTO {tbl} (id, {COLS}) VALUES ({ph})", (1, *ROW))
        same(c.execute(sel, (1,)).fetchone(), ROW)

    def binary():
        phb = ", ".join(["%b"] * 11)
        c.execute(f"INSERT INTO {tbl} (id, {COLS}) VALUES ({phb})", (2, *ROW))
        cur = c.cursor(binary=True)
        same(cur.execute(sel, (2,)).fetchone(), ROW)
        return "binary parameters (%b) and binary results"

    def lookup():
        ids = [r[0] for r in c.execute(
            f"SELECT id FROM {tbl} WHERE t = %s AND i4 = %s ORDER BY id",
            ("alice@example.com", 12344))]
        assert ids == [1, 2], ids

    def prepared():
        for i in range(3, 9):
            c.execute(f"INSERT INTO {tbl} (id, t, d) VALUES (%s, %s, %s)",
                      (i, f"p{i}@example.com", ROW[2]), prepare=True)
        for i in range(3, 9):
            r = c.execute(f"SELECT t, d FROM {tbl} WHERE id = %s", (i,), prepare=True).fetchone()
            same(r, (f"p{i}@example.com", ROW[2]))

    def pipeline():
        with c.pipeline():
            curs = []
            for i in range(10, 15):
                c.execute(f"INSERT INTO {tbl} (id, t, ts) VALUES (%s, %s, %s)",
                          (i, f"q{i}@example.com", ROW[3]))
            for i in range(10, 15):
                cur = c.cursor()
                cur.execute(f"SELECT t, ts FROM {tbl} WHERE id = %s", (i,))
                curs.append((i, cur))
        for i, cur in curs:
            same(cur.fetchone(), (f"q{i}@example.com", ROW[3]))

    def batch():
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO {tbl} (id, t, n) VALUES (%s, %s, %s)",
                            [(i, f"m{i}@example.com", decimal.Decimal(i)) for i in range(15, 20)])
        n = c.execute(f"SELECT count(*) FROM {tbl} WHERE id BETWEEN 15 AND 19").fetchone()[0]
        assert n == 5, n

    def copy_in():
        with c.cursor() as cur:
            with cur.copy(f"COPY {tbl} (id, {COLS}) FROM STDIN") as cp:
                cp.write_row((20, *ROW))
                cp.write_row((21, *([None] * 10)))
        same(c.execute(sel, (20,)).fetchone(), ROW)

    def copy_out():
        with c.cursor() as cur:
            with cur.copy(f"COPY (SELECT id, t, d FROM {tbl} WHERE id IN (1, 20) ORDER BY id) TO STDOUT") as cp:
                data = b"".join(bytes(b) for b in cp)
        want = b"1\talice@example.com\t1990-01-02\n20\talice@example.com\t1990-01-02\n"
        assert data == want, data

    def copy_binary():
        types = ["int4", "text", "varchar", "date", "timestamptz", "int4", "int8",
                 "numeric", "bool", "bytea", "text"]
        with c.cursor() as cur:
            with cur.copy(f"COPY {tbl} (id, {COLS}) FROM STDIN (FORMAT binary)") as cp:
                cp.set_types(types)
                cp.write_row((30, *ROW))
                cp.write_row((31, *([None] * 10)))
        same(c.execute(sel, (30,)).fetchone(), ROW)
        same(c.execute(sel, (31,)).fetchone(), tuple([None] * 10))
        with c.cursor() as cur:
            q = f"COPY (SELECT id, {COLS} FROM {tbl} WHERE id = 30) TO STDOUT (FORMAT binary)"
            with cur.copy(q) as cp:
                cp.set_types(types)
                rows = list(cp.rows())
        assert len(rows) == 1, rows
        same(tuple(rows[0][1:]), ROW, "binary COPY TO row")
        return "binary COPY in and out, every logical type"

    def cancel():
        c2 = conn()
        threading.Timer(0.3, c2.cancel).start()
        try:
            c2.execute("SELECT pg_sleep(20)")
        except psycopg.errors.QueryCanceled:
            pass
        else:
            raise AssertionError("not cancelled")
        assert c2.execute("SELECT 1").fetchone() == (1,)
        c2.close()

    def notify():
        lc = conn()
        lc.execute("LISTEN drv_psycopg")
        c.execute("NOTIFY drv_psycopg, 'hello psycopg'")
        got = [n.payload for n in lc.notifies(timeout=10, stop_after=1)]
        assert got == ["hello psycopg"], got
        lc.close()

    def masked():
        m = conn(MASK)
        same(m.execute(sel, (1,)).fetchone(), MASKED, "text results")
        same(m.cursor(binary=True).execute(sel, (1,)).fetchone(), MASKED, "binary results")
        m.close()
        return "text and binary results"

    def masked_copy():
        m = conn(MASK)

        def go():
            with m.cursor() as cur:
                with cur.copy(f"COPY (SELECT id, t, d FROM {tbl} WHERE id = 1) TO STDOUT") as cp:
                    for _ in cp:
                        pass
        expect_refusal(go, "42501", "COPY TO is refused for a role that sees masks")

    def notify_masked():
        m = conn(MASK)
        expect_refusal(lambda: m.execute("LISTEN drv_psycopg"), "42501",
                       "LISTEN is refused for a role that sees masks")

    for f in [params, binary, lookup, prepared, pipeline, batch, copy_in, copy_out,
              copy_binary, cancel, notify, masked, masked_copy, notify_masked]:
        check(drv, v, f.__name__, f)


# ---------------------------------------------------------------- psycopg2

def psycopg2_driver():
    import psycopg2
    import psycopg2.extensions
    import select

    v = psycopg2.__version__.split()[0]
    drv, tbl = "psycopg2", "drv_psycopg2"

    def conn(role=ADMIN):
        c = psycopg2.connect(host=HOST, port=PORT, dbname=DB, user=role, password=PW)
        c.autocommit = True
        return c

    c = conn()
    cur = c.cursor()
    ph = ", ".join(["%s"] * 11)
    sel = f"SELECT {COLS} FROM {tbl} WHERE id = %s"

    def params():
        row = list(ROW)
        row[8] = psycopg2.Binary(ROW[8])
        cur.execute(f"INSERT INTO {tbl} (id, {COLS}) VALUES ({ph})", (1, *row))
        cur.execute(sel, (1,))
        same(cur.fetchone(), ROW)

    def lookup():
        cur.execute(f"SELECT id FROM {tbl} WHERE t = %s", ("alice@example.com",))
        assert cur.fetchall() == [(1,)]

    def batch():
        cur.executemany(f"INSERT INTO {tbl} (id, t, d) VALUES (%s, %s, %s)",
                        [(i, f"m{i}@example.com", ROW[2]) for i in range(2, 7)])
        cur.execute(f"SELECT count(*) FROM {tbl} WHERE d IS NOT NULL")
        assert cur.fetchone() == (6,)

    def copy_in():
        data = "20\tcopy@example.com\t1990-01-02T00:00:00.000Z\t12344\t12345.678\tt\tcopied\n"
        cur.copy_expert(f"COPY {tbl} (id, t, d, i4, n, b, note) FROM STDIN", io.StringIO(data))
        cur.execute(f"SELECT t, d, i4, n, b FROM {tbl} WHERE id = 20")
        same(cur.fetchone(), ("copy@example.com", ROW[2], 12344, ROW[6], True))

    def copy_out():
        buf = io.StringIO()
        cur.copy_expert(f"COPY (SELECT id, t, d FROM {tbl} WHERE id IN (1, 20) ORDER BY id) TO STDOUT", buf)
        want = "1\talice@example.com\t1990-01-02\n20\tcopy@example.com\t1990-01-02\n"
        assert buf.getvalue() == want, buf.getvalue()

    def cancel():
        c2 = conn()
        threading.Timer(0.3, c2.cancel).start()
        try:
            c2.cursor().execute("SELECT pg_sleep(20)")
        except psycopg2.extensions.QueryCanceledError:
            pass
        else:
            raise AssertionError("not cancelled")
        c2.close()

    def notify():
        lc = conn()
        lc.cursor().execute("LISTEN drv_psycopg2")
        cur.execute("NOTIFY drv_psycopg2, 'hello psycopg2'")
        deadline = time.time() + 10
        while not lc.notifies and time.time() < deadline:
            select.select([lc], [], [], 1)
            lc.poll()
        got = [n.payload for n in lc.notifies]
        assert got == ["hello psycopg2"], got

    def masked():
        m = conn(MASK).cursor()
        m.execute(sel, (1,))
        same(m.fetchone(), MASKED)

    for f in [params, lookup, batch, copy_in, copy_out, cancel, notify, masked]:
        check(drv, v, f.__name__, f)


# ---------------------------------------------------------------- asyncpg

async def asyncpg_main():
    import asyncpg

    v = asyncpg.__version__
    drv, tbl = "asyncpg", "drv_asyncpg"

    async def conn(role=ADMIN):
        return await asyncpg.connect(host=HOST, port=PORT, database=DB, user=role, password=PW)

    c = await conn()
    ph = ", ".join(f"${i}" for i in range(1, 12))
    sel = f"SELECT {COLS} FROM {tbl} WHERE id = $1"

    async def acheck(name, coro_fn):
        result = {}

        async def run():
            result["detail"] = await coro_fn()
        try:
            await run()
            report(drv, v, name, "pass", result.get("detail") or "")
        except Refused as e:
            report(drv, v, name, "refused", str(e))
        except Exception as e:  # noqa: BLE001
            report(drv, v, name, "fail", f"{type(e).__name__}: {e} | {traceback.format_exc(limit=3)}")

    async def params():
        await c.execute(f"INSERT INTO {tbl} (id, {COLS}) VALUES ({ph})", 1, *ROW)
        same(tuple(await c.fetchrow(sel, 1)), ROW)

    async def binary():
        st = await c.prepare(sel)
        same(tuple(await st.fetchrow(1)), ROW)
        return "asyncpg sends and reads every type in binary"

    async def lookup():
        rows = await c.fetch(f"SELECT id FROM {tbl} WHERE t = $1 AND i4 = $2", "alice@example.com", 12344)
        assert [r[0] for r in rows] == [1], rows

    async def prepared():
        st = await c.prepare(f"SELECT t, d, n FROM {tbl} WHERE id = $1")
        for _ in range(5):
            same(tuple(await st.fetchrow(1)), (ROW[0], ROW[2], ROW[6]))
        types = [a.name for a in st.get_attributes()]
        assert [t.name for t in (a.type for a in st.get_attributes())] == ["text", "date", "numeric"], types

    async def batch():
        await c.executemany(f"INSERT INTO {tbl} (id, t, ts, b) VALUES ($1, $2, $3, $4)",
                            [(i, f"m{i}@example.com", ROW[3], i % 2 == 0) for i in range(2, 7)])
        n = await c.fetchval(f"SELECT count(*) FROM {tbl} WHERE ts IS NOT NULL")
        assert n == 6, n
        return "executemany pipelines Bind/Execute without waiting"

    async def copy_in():
        await c.copy_records_to_table(tbl, records=[(20, *ROW), (21, *([None] * 10))],
                                      columns=["id", *COLS.split(", ")])
        same(tuple(await c.fetchrow(sel, 20)), ROW)
        same(tuple(await c.fetchrow(sel, 21)), tuple([None] * 10))
        return "copy_records_to_table (binary COPY)"

    async def copy_out():
        buf = io.BytesIO()
        await c.copy_from_query(f"SELECT id, t, d FROM {tbl} WHERE id = 1", output=buf)
        assert buf.getvalue() == b"1\talice@example.com\t1990-01-02\n", buf.getvalue()

    async def cancel():
        c2 = await conn()
        try:
            await asyncio.wait_for(c2.fetch("SELECT pg_sleep(20)"), 0.5)
        except asyncio.TimeoutError:
            pass
        else:
            raise AssertionError("not cancelled")
        assert await c2.fetchval("SELECT 1") == 1
        await c2.close()
        return "wait_for timeout sends a cancel request"

    async def notify():
        lc = await conn()
        got = asyncio.get_running_loop().create_future()
        await lc.add_listener("drv_asyncpg", lambda *a: got.done() or got.set_result(a[3]))
        await c.execute("NOTIFY drv_asyncpg, 'hello asyncpg'")
        assert await asyncio.wait_for(got, 10) == "hello asyncpg"
        await lc.close()

    async def masked():
        m = await conn(MASK)
        same(tuple(await m.fetchrow(sel, 1)), MASKED)
        await m.close()

    for name, fn in [("params", params), ("binary", binary), ("lookup", lookup), ("prepared", prepared),
                     ("batch", batch), ("copy_in", copy_in), ("copy_out", copy_out),
                     ("cancel", cancel), ("notify", notify), ("masked", masked)]:
        await acheck(name, fn)
    await c.close()


# ---------------------------------------------------------------- SQLAlchemy

def sqlalchemy_driver():
    import sqlalchemy as sa
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    v = sa.__version__
    drv = "sqlalchemy"

    class Base(DeclarativeBase):
        pass

    class Drv(Base):
        __tablename__ = "drv_sqlalchemy"
        id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
        t: Mapped[str] = mapped_column(sa.Text, nullable=True)
        v: Mapped[str] = mapped_column(sa.String(100), nullable=True)
        d: Mapped[dt.date] = mapped_column(sa.Date, nullable=True)
        ts: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=True)
        i4: Mapped[int] = mapped_column(sa.Integer, nullable=True)
        i8: Mapped[int] = mapped_column(sa.BigInteger, nullable=True)
        n: Mapped[decimal.Decimal] = mapped_column(sa.Numeric, nullable=True)
        b: Mapped[bool] = mapped_column(sa.Boolean, nullable=True)
        bi: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=True)
        note: Mapped[str] = mapped_column(sa.Text, nullable=True)

    names = COLS.split(", ")

    def url(role):
        return sa.URL.create("postgresql+psycopg", username=role, password=PW,
                             host=HOST, port=PORT, database=DB)

    engine = sa.create_engine(url(ADMIN))

    def orm():
        with Session(engine) as s:
            # Several rows in one flush: SQLAlchemy's insertmanyvalues
            # (INSERT … SELECT … FROM (VALUES …) ORDER BY sen_counter RETURNING).
            s.add_all([Drv(id=i, **dict(zip(names, ROW))) for i in (1, 2, 3)])
            s.commit()
        with Session(engine) as s:
            rows = s.scalars(sa.select(Drv).where(Drv.t == "alice@example.com").order_by(Drv.id)).all()
            assert [r.id for r in rows] == [1, 2, 3], rows
            same(tuple(getattr(rows[0], n) for n in names), ROW)
            rows[1].d = dt.date(2001, 2, 3)
            rows[1].note = "updated"
            s.delete(rows[2])
            s.commit()
        with Session(engine) as s:
            r = s.get(Drv, 2)
            assert (r.d, r.note) == (dt.date(2001, 2, 3), "updated"), (r.d, r.note)
            assert s.get(Drv, 3) is None
        return "add_all (insertmanyvalues), select by encrypted column, update, delete"

    def masked():
        e = sa.create_engine(url(MASK))
        with Session(e) as s:
            r = s.get(Drv, 1)
            same(tuple(getattr(r, n) for n in names), MASKED)
        e.dispose()

    check(drv, v, "orm", orm)
    check(drv, v, "masked", masked)
    engine.dispose()


def main():
    for name, fn in [("psycopg", psycopg3), ("psycopg2", psycopg2_driver),
                     ("asyncpg", lambda: asyncio.run(asyncpg_main())),
                     ("sqlalchemy", sqlalchemy_driver)]:
        try:
            fn()
        except ImportError as e:
            report(name, "-", "params", "absent", f"not installed: {e}")
        except Exception as e:  # noqa: BLE001
            report(name, "?", "params", "fail", f"{type(e).__name__}: {e} | {traceback.format_exc(limit=4)}")


if __name__ == "__main__":
    main()
