// PostgreSQL ledger throughput: settled decisions per second through a guard whose ledger is a
// PostgreSQL database (JUDGE_GUARD_DB=postgres://...), against raw node-postgres inserts of the
// same row into a table of the same shape (`LIKE judge_guard.decisions INCLUDING ALL`: columns,
// primary key, index), one autocommitted statement each, through a pool of the same size as the
// store's (2), in the same run on the same cluster. Sequential, then with 32 calls (or inserts)
// in flight; then 3 processes (hosts of a fleet) sharing the ledger. The cluster is started here
// (bench/postgres.mjs) over loopback TCP, with PostgreSQL's default durability.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { createGuard } from "../dist/index.js";
import { fmt, inBatches, table, UNCAPPED } from "./lib.mjs";
import { postgresAvailable, startPostgres } from "./postgres.mjs";

const N = Number(process.env.BENCH_PG_CALLS ?? 3000);
const POOL = 2; // the store's pool (PgConnection's default `max`)
const noop = async () => ({ inputTokens: 1200, outputTokens: 300 });

const request = (i, keys) => ({
  judge: "observation_extraction",
  model: "claude-sonnet-4-6",
  sessionKey: `k${i % keys}`,
  userMessages: [`q${i}`],
  assistantMessages: [`answer ${i} with enough substance to count`],
});

async function guardRate(ledger, calls, inFlight) {
  const guard = createGuard({
    ledger,
    logger: "silent",
    ...UNCAPPED,
    verdictTtlMs: 0,
    concurrency: Math.max(8, inFlight),
  });
  // Warm-up: the schema, the first owner heartbeat, the first usage rows.
  for (let i = 0; i < 50; i++) await guard.run(request(-1 - i, 100), noop);
  const s = await inBatches(calls, inFlight, (j) => guard.run(request(j, 100), noop));
  await guard.close();
  return calls / s;
}

async function rawRate(ledger, rows, inFlight) {
  const pool = new pg.Pool({ connectionString: ledger, max: POOL });
  await pool.query("CREATE TABLE IF NOT EXISTS bench_raw (LIKE judge_guard.decisions INCLUDING ALL)");
  await pool.query("TRUNCATE bench_raw");
  const insert = (i) =>
    pool.query(
      `INSERT INTO bench_raw (id, ts, session_key, judge, model, decision, reason, shadow, reserved_micros, charged_micros,
         saved_micros, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, turns, transcript_chars,
         transcript_hash, duration_ms, episode_id, cost_source, computed_micros)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`,
      [
        i,
        Date.now(),
        `k${i % 100}`,
        "observation_extraction",
        "claude-sonnet-4-6",
        "judged",
        null,
        false,
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
        "computed",
        3900,
      ],
    );
  for (let i = 0; i < 50; i++) await insert(-1 - i);
  const s = await inBatches(rows, inFlight, insert);
  await pool.end();
  return rows / s;
}

async function fleetRate(ledger, processes, callsEach) {
  const run = promisify(execFile);
  const script = fileURLToPath(new URL("./ledger-worker.mjs", import.meta.url));
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: processes }, (_, p) =>
      run(process.execPath, [script, "-", String(callsEach), String(p)], {
        env: { ...process.env, BENCH_LEDGER: ledger },
      }),
    ),
  );
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return (processes * callsEach) / s;
}

export async function run() {
  if (!postgresAvailable()) {
    console.log(
      "\n## PostgreSQL ledger throughput: skipped (PostgreSQL's initdb and pg_ctl are not installed)",
    );
    return [];
  }
  const cluster = await startPostgres();
  try {
    const ledger = await cluster.database("bench_throughput");
    const seq = await guardRate(ledger, N, 1);
    const par = await guardRate(ledger, N, 32);
    const rawSeq = await rawRate(ledger, N, 1);
    const rawPar = await rawRate(ledger, N, 32);
    const fleet = await fleetRate(ledger, 3, Math.round(N / 3));
    const rows = [
      { case: "raw pg insert, sequential (limit)", "rows/s": fmt(rawSeq, 0), "ratio to raw": "1.00" },
      { case: "guard, sequential calls", "rows/s": fmt(seq, 0), "ratio to raw": fmt(seq / rawSeq, 2) },
      { case: "raw pg insert, 32 in flight (pool of 2)", "rows/s": fmt(rawPar, 0), "ratio to raw": "1.00" },
      { case: "guard, 32 calls in flight", "rows/s": fmt(par, 0), "ratio to raw": fmt(par / rawPar, 2) },
      {
        case: "guard, 3 processes on one database",
        "rows/s": fmt(fleet, 0),
        "ratio to raw": fmt(fleet / rawPar, 2),
      },
    ];
    console.log(
      `\n## PostgreSQL ledger throughput (settled decisions per second; ${N} calls per case; loopback TCP, pool of ${POOL}; fsync on)`,
    );
    table(rows);
    return rows;
  } finally {
    cluster.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
