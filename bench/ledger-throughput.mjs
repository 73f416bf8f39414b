// Scenario 4: ledger throughput. Settled decisions per second through the guard (reserve, call a
// no-op judge, settle: two write transactions and a decision row) against raw better-sqlite3
// inserts of the same row width, one transaction each, in the same file mode (WAL,
// synchronous=NORMAL) in the same run. Then 4 processes sharing one ledger file.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { createGuard } from "../dist/index.js";
import { fmt, inBatches, table, tempDir, UNCAPPED } from "./lib.mjs";

const N = Number(process.env.BENCH_LEDGER_CALLS ?? 5000);
const noop = async () => ({ inputTokens: 1200, outputTokens: 300 });
const big = { ...UNCAPPED, verdictTtlMs: 0 };

async function guardRate(path, calls, keys, concurrency = 1) {
  const guard = createGuard({
    ledger: path,
    logger: "silent",
    ...big,
    concurrency: Math.max(8, concurrency),
  });
  const request = (i) => ({
    judge: "observation_extraction",
    model: "claude-sonnet-4-6",
    sessionKey: `k${i % keys}`,
    userMessages: [`q${i}`],
    assistantMessages: [`answer ${i} with enough substance to count`],
  });
  const s = await inBatches(calls, concurrency, (j) => guard.run(request(j), noop));
  await guard.close();
  return calls / s;
}

function rawRate(path, rows) {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec(`CREATE TABLE d (id INTEGER PRIMARY KEY, ts INTEGER, session_key TEXT, judge TEXT, model TEXT, decision TEXT, reason TEXT,
    shadow INTEGER, reserved INTEGER, charged INTEGER, saved INTEGER, it INTEGER, ot INTEGER, cr INTEGER, cw INTEGER, turns INTEGER,
    chars INTEGER, hash TEXT, dur INTEGER, episode TEXT)`);
  const ins = db.prepare(
    "INSERT INTO d VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  );
  const tx = db.transaction((i) =>
    ins.run(
      Date.now(),
      `k${i % 100}`,
      "observation_extraction",
      "claude-sonnet-4-6",
      "judged",
      null,
      0,
      4000,
      3900,
      0,
      1200,
      300,
      0,
      0,
      1,
      60,
      "0123456789abcdef",
      1,
      null,
    ),
  );
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rows; i++) tx.immediate(i);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  db.close();
  return rows / s;
}

async function multiProcess(path, processes, callsEach) {
  const run = promisify(execFile);
  const script = fileURLToPath(new URL("./ledger-worker.mjs", import.meta.url));
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: processes }, (_, p) =>
      run(process.execPath, [script, path, String(callsEach), String(p)]),
    ),
  );
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return (processes * callsEach) / s;
}

export async function run() {
  const tmp = tempDir();
  const raw = rawRate(`${tmp.dir}/raw.db`, N);
  const seq = await guardRate(`${tmp.dir}/seq.db`, N, 100);
  const par = await guardRate(`${tmp.dir}/par.db`, N, 100, 32);
  const multi = await multiProcess(`${tmp.dir}/multi.db`, 4, Math.round(N / 4));
  tmp.remove();
  const rows = [
    { case: "raw better-sqlite3 insert, 1 tx each (limit)", "rows/s": fmt(raw, 0), "ratio to raw": "1.00" },
    { case: "guard, sequential calls", "rows/s": fmt(seq, 0), "ratio to raw": fmt(seq / raw, 2) },
    { case: "guard, 32 calls in flight", "rows/s": fmt(par, 0), "ratio to raw": fmt(par / raw, 2) },
    {
      case: "guard, 4 processes sharing one file",
      "rows/s": fmt(multi, 0),
      "ratio to raw": fmt(multi / raw, 2),
    },
  ];
  console.log(
    `\n## ledger throughput (settled decisions per second; ${N} calls per case; WAL, synchronous=NORMAL)`,
  );
  table(rows);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
