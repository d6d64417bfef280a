// Node rows of the driver matrix: node-postgres (pg) and postgres.js.
//
// Run by tests/drivers.rs with the connection in PGV_* variables; prints one
// `RESULT {json}` line per driver and feature. Modules come from
// target/drivers/node/node_modules (scripts/install-drivers.sh).
'use strict';
process.env.TZ = 'UTC';

const path = require('path');
const modules = path.join(__dirname, '..', '..', 'target', 'drivers', 'node', 'node_modules');
const need = (name) => require(path.join(modules, name));

const env = process.env;
const conn = (user) => ({
  host: env.PGV_HOST, port: Number(env.PGV_PORT), database: env.PGV_DB, user, password: env.PGV_PW,
});
const COLS = 't, v, d, ts, i4, i8, n, b, bi, note';
const D = new Date(Date.UTC(1990, 0, 2));
const TS = new Date(Date.UTC(2024, 4, 6, 7, 8, 9, 123)); // JS dates have milliseconds
const ROW = ['alice@example.com', 'bob@example.org', D, TS, 12344, '9007199254740993',
  '12345.678', true, Buffer.from([0, 1, 0xfe, 0xff]), 'row one'];
const MASKED = ['a****@*******.***', 'b**@example.org', new Date(Date.UTC(1990, 0, 1)),
  new Date(Date.UTC(2024, 4, 1)), 12340, '9007199254741000', '12350', false, Buffer.alloc(0), 'r** ***'];

function report(driver, version, feature, status, detail) {
  console.log('RESULT ' + JSON.stringify({ driver, version, feature, status, detail: String(detail || '').slice(0, 600) }));
}

class Refused extends Error {}

async function check(driver, version, feature, fn) {
  try {
    report(driver, version, feature, 'pass', await fn());
  } catch (e) {
    if (e instanceof Refused) report(driver, version, feature, 'refused', e.message);
    else report(driver, version, feature, 'fail', `${e.code || ''} ${e.message} ${e.stack || ''}`);
  }
}

function norm(v) {
  if (v instanceof Date) return 'D' + v.toISOString();
  if (Buffer.isBuffer(v)) return 'B' + v.toString('hex');
  return typeof v + ':' + String(v);
}

function same(got, want, what = 'row') {
  const g = got.map(norm), w = want.map(norm);
  if (JSON.stringify(g) !== JSON.stringify(w)) throw new Error(`${what}: got ${JSON.stringify(g)}, want ${JSON.stringify(w)}`);
}

async function expectRefusal(fn, code, what) {
  try {
    await fn();
  } catch (e) {
    if (e.code === code) throw new Refused(`${what} (${code}: ${e.message})`);
    throw e;
  }
  throw new Error(`${what}: not refused`);
}

// ------------------------------------------------------------------ pg

async function nodePg() {
  let pg;
  try { pg = need('pg'); } catch (e) { report('node-pg', '-', 'params', 'absent', e.message); return; }
  const v = need('pg/package.json').version;
  const drv = 'node-pg', tbl = 'drv_nodepg';
  const c = new pg.Client(conn(env.PGV_ADMIN));
  await c.connect();
  const sel = `SELECT ${COLS} FROM ${tbl} WHERE id = $1`;
  const vals = (r) => COLS.split(', ').map((k) => r[k]);

  await check(drv, v, 'params', async () => {
    const ph = Array.from({ length: 11 }, (_, i) => `$${i + 1}`).join(', ');
    await c.query(`INSERT INTO ${tbl} (id, ${COLS}) VALUES (${ph})`, [1, ...ROW]);
    same(vals((await c.query(sel, [1])).rows[0]), ROW);
    return 'text parameters (Date as local time with offset), text results';
  });
  await check(drv, v, 'lookup', async () => {
    const r = await c.query(`SELECT id FROM ${tbl} WHERE t = $1 AND i4 = $2`, ['alice@example.com', 12344]);
    if (r.rows.length !== 1) throw new Error(`${r.rows.length} rows`);
  });
  await check(drv, v, 'prepared', async () => {
    for (let i = 2; i < 7; i++) {
      await c.query({ name: 'ins', text: `INSERT INTO ${tbl} (id, t, d) VALUES ($1, $2, $3)`, values: [i, `p${i}@example.com`, D] });
    }
    for (let i = 2; i < 7; i++) {
      const r = await c.query({ name: 'sel', text: `SELECT t, d FROM ${tbl} WHERE id = $1`, values: [i] });
      same([r.rows[0].t, r.rows[0].d], [`p${i}@example.com`, D]);
    }
  });
  await check(drv, v, 'binary', async () => {
    const r = await c.query({ text: `SELECT i4, b FROM ${tbl} WHERE id = $1`, values: [1], binary: true });
    const row = r.rows[0];
    if (row.i4 !== 12344 || row.b !== true) {
      throw new Error(JSON.stringify(row));
    }
    return 'binary results (int4, bool; pg-types has no binary bytea parser)';
  });
  let copyStreams = null;
  try { copyStreams = need('pg-copy-streams'); } catch (e) { /* copy rows stay "—" */ }
  if (copyStreams) {
    const { pipeline } = require('stream/promises');
    const { Readable, Writable } = require('stream');
    await check(drv, v, 'copy_in', async () => {
      const w = c.query(copyStreams.from(`COPY ${tbl} (id, t, d, i4, note) FROM STDIN`));
      await pipeline(Readable.from(['20\tcopy@example.com\t1990-01-02T00:00:00.000Z\t7\tcopied\n']), w);
      const r = (await c.query(`SELECT t, d, i4 FROM ${tbl} WHERE id = 20`)).rows[0];
      same([r.t, r.d, r.i4], ['copy@example.com', D, 7]);
      return 'pg-copy-streams';
    });
    await check(drv, v, 'copy_out', async () => {
      let text = '';
      const sink = new Writable({ write(chunk, _e, cb) { text += chunk.toString(); cb(); } });
      await pipeline(c.query(copyStreams.to(`COPY (SELECT id, t, d FROM ${tbl} WHERE id IN (1, 20) ORDER BY id) TO STDOUT`)), sink);
      const want = '1\talice@example.com\t1990-01-02\n20\tcopy@example.com\t1990-01-02\n';
      if (text !== want) throw new Error(JSON.stringify(text));
      return 'pg-copy-streams';
    });
  }
  await check(drv, v, 'notify', async () => {
    const l = new pg.Client(conn(env.PGV_ADMIN));
    await l.connect();
    const got = new Promise((res) => l.on('notification', (m) => res(m.payload)));
    await l.query('LISTEN drv_nodepg');
    await c.query("NOTIFY drv_nodepg, 'hello pg'");
    const p = await Promise.race([got, new Promise((res) => setTimeout(() => res('timeout'), 10000))]);
    await l.end();
    if (p !== 'hello pg') throw new Error(p);
  });
  await check(drv, v, 'masked', async () => {
    const m = new pg.Client(conn(env.PGV_MASK));
    await m.connect();
    same(vals((await m.query(sel, [1])).rows[0]), MASKED);
    await m.end();
  });
  await c.end();
}

// ------------------------------------------------------------------ postgres.js

async function postgresJs() {
  let postgres;
  try { postgres = need('postgres'); } catch (e) { report('postgres.js', '-', 'params', 'absent', e.message); return; }
  const v = need('postgres/package.json').version;
  const drv = 'postgres.js', tbl = 'drv_postgresjs';
  const opts = (user) => ({ ...conn(user), username: user, max: 1, onnotice: () => {} });
  const sql = postgres(opts(env.PGV_ADMIN));
  const T = sql(tbl);
  const vals = (r) => COLS.split(', ').map((k) => r[k]);

  await check(drv, v, 'params', async () => {
    const [t, vv, d, ts, i4, i8, n, b, bi, note] = ROW;
    await sql`INSERT INTO ${T} (id, t, v, d, ts, i4, i8, n, b, bi, note)
              VALUES (1, ${t}, ${vv}, ${d}, ${ts}, ${i4}, ${i8}, ${n}, ${b}, ${bi}, ${note})`;
    const [r] = await sql`SELECT t, v, d, ts, i4, i8, n, b, bi, note FROM ${T} WHERE id = 1`;
    same(vals(r), ROW);
    return 'Date parameters as 1990-01-02T00:00:00.000Z (issue 11 defect 3)';
  });
  await check(drv, v, 'lookup', async () => {
    const r = await sql`SELECT id FROM ${T} WHERE t = ${'alice@example.com'} AND i4 = ${12344}`;
    if (r.length !== 1) throw new Error(`${r.length} rows`);
  });
  await check(drv, v, 'prepared', async () => {
    for (let i = 0; i < 5; i++) {
      const [r] = await sql`SELECT t, d FROM ${T} WHERE id = ${1}`;
      same([r.t, r.d], [ROW[0], D]);
    }
    return 'named statements (prepare: true, the default)';
  });
  await check(drv, v, 'batch', async () => {
    const rows = [2, 3, 4].map((id) => ({ id, t: `m${id}@example.com`, d: D, n: String(id) }));
    await sql`INSERT INTO ${T} ${sql(rows, 'id', 't', 'd', 'n')}`;
    const [{ count }] = await sql`SELECT count(*)::int AS count FROM ${T} WHERE id BETWEEN 2 AND 4`;
    if (count !== 3) throw new Error(count);
    return 'multi-row VALUES of parameters';
  });
  await check(drv, v, 'pipeline', async () => {
    const rs = await Promise.all([2, 3, 4].map((id) => sql`SELECT t, d FROM ${T} WHERE id = ${id}`));
    rs.forEach(([r], i) => same([r.t, r.d], [`m${i + 2}@example.com`, D]));
    return 'concurrent queries pipelined on one connection';
  });
  await check(drv, v, 'copy_in', async () => {
    const w = await sql`COPY ${T} (id, t, d, i4, note) FROM STDIN`.writable();
    await new Promise((res, rej) => {
      w.on('finish', res).on('error', rej);
      w.write('20\tcopy@example.com\t1990-01-02\t7\tcopied\n');
      w.end();
    });
    const [r] = await sql`SELECT t, d, i4 FROM ${T} WHERE id = 20`;
    same([r.t, r.d, r.i4], ['copy@example.com', D, 7]);
  });
  await check(drv, v, 'copy_out', async () => {
    const rd = await sql`COPY (SELECT id, t, d FROM ${T} WHERE id IN (1, 20) ORDER BY id) TO STDOUT`.readable();
    let text = '';
    for await (const chunk of rd) text += chunk.toString();
    const want = '1\talice@example.com\t1990-01-02\n20\tcopy@example.com\t1990-01-02\n';
    if (text !== want) throw new Error(JSON.stringify(text));
  });
  await check(drv, v, 'cancel', async () => {
    const q = sql`SELECT pg_sleep(20)`;
    setTimeout(() => q.cancel(), 300);
    try { await q; } catch (e) {
      if (e.code !== '57014') throw e;
      const [r] = await sql`SELECT 1 AS one`;
      if (r.one !== 1) throw new Error('not usable after cancel');
      return;
    }
    throw new Error('not cancelled');
  });
  await check(drv, v, 'notify', async () => {
    const l = postgres(opts(env.PGV_ADMIN));
    let resolve;
    const got = new Promise((res) => { resolve = res; });
    await l.listen('drv_postgresjs', (p) => resolve(p));
    await sql.notify('drv_postgresjs', 'hello postgres.js');
    const p = await Promise.race([got, new Promise((res) => setTimeout(() => res('timeout'), 10000))]);
    await l.end();
    if (p !== 'hello postgres.js') throw new Error(p);
  });
  await check(drv, v, 'masked', async () => {
    const m = postgres(opts(env.PGV_MASK));
    const [r] = await m`SELECT t, v, d, ts, i4, i8, n, b, bi, note FROM ${m(tbl)} WHERE id = 1`;
    await m.end();
    same(vals(r), MASKED);
  });
  await sql.end();
}

(async () => {
  for (const [name, fn] of [['node-pg', nodePg], ['postgres.js', postgresJs]]) {
    try { await fn(); } catch (e) { report(name, '?', 'params', 'fail', `${e.message} ${e.stack}`); }
  }
})();
