// Decision overhead on PostgreSQL: guard.run around a no-op judge, minus the bare no-op call
// measured in the same loop iteration (the unguarded baseline), with the ledger in PostgreSQL
// over loopback TCP, against the same on a SQLite file, in the same run. Each measured call
// brings one new turn to a 20-turn session (as Phantom does after every message): fingerprinting,
// the stuck check, the reservation (one transaction), the settlement (another) and the decision.
// Several rounds, a fresh guard and ledger each; the medians of the rounds' percentiles.
import pg from "pg";
import { createGuard } from "../dist/index.js";
import { conversation, fmt, now, summarize, table, tempDir, UNCAPPED, us } from "./lib.mjs";
import { postgresAvailable, startPostgres } from "./postgres.mjs";

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = 200;
const TURNS = 20;
const noop = async () => ({ inputTokens: 1200, outputTokens: 300 });
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function measure(ledger) {
  const guard = createGuard({ ledger, logger: "silent", ...UNCAPPED, maxSessions: ITERATIONS + WARMUP + 10 });
  const { users, replies } = conversation(TURNS, TURNS);
  const total = ITERATIONS + WARMUP;
  const requests = [];
  for (let k = 0; k < total; k++) {
    const sessionKey = `slack:C${k}`;
    // Unmeasured: bring the key to TURNS - 1 turns, so the measured call adds the last one.
    await guard.run(
      {
        judge: "observation_extraction",
        model: "claude-sonnet-4-6",
        sessionKey,
        userMessages: users.slice(0, TURNS - 1),
        assistantMessages: replies.slice(0, TURNS - 1),
      },
      noop,
    );
    requests.push({
      judge: "observation_extraction",
      model: "claude-sonnet-4-6",
      sessionKey,
      userMessages: users,
      assistantMessages: replies,
    });
  }
  const guarded = [];
  const bare = [];
  for (let i = 0; i < total; i++) {
    const t0 = now();
    await noop();
    const t1 = now();
    await guard.run(requests[i], noop);
    const t2 = now();
    if (i >= WARMUP) {
      bare.push(us(t1 - t0));
      guarded.push(us(t2 - t1));
    }
  }
  await guard.close();
  return { guarded: summarize(guarded), bare: summarize(bare) };
}

let databases = 0;
async function freshDatabase(url) {
  const name = `bench_overhead_${++databases}`;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function run() {
  if (!postgresAvailable()) {
    console.log(
      "\n## decision overhead on PostgreSQL: skipped (PostgreSQL's initdb and pg_ctl are not installed)",
    );
    return [];
  }
  const cluster = await startPostgres();
  const rows = [];
  try {
    const cases = {
      "SQLite file": async () => {
        const tmp = tempDir();
        try {
          return await measure(`${tmp.dir}/ledger.db`);
        } finally {
          tmp.remove();
        }
      },
      "PostgreSQL, loopback": async () => measure(await freshDatabase(cluster.url)),
    };
    const results = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
    // Rounds alternate between the stores, so a noisy minute of the machine hits both.
    for (let r = 0; r < ROUNDS; r++)
      for (const [name, f] of Object.entries(cases)) results[name].push(await f());
    const m = (rounds, part, p) => median(rounds.map((x) => x[part][p]));
    const sqlite = results["SQLite file"];
    for (const [name, rounds] of Object.entries(results)) {
      const over = (p) => m(rounds, "guarded", p) - m(rounds, "bare", p);
      rows.push({
        ledger: name,
        "p50 µs": fmt(over("p50"), 0),
        "p99 µs": fmt(over("p99"), 0),
        "p99.9 µs": fmt(over("p999"), 0),
        "decisions/s": fmt(1e6 / m(rounds, "guarded", "mean"), 0),
        "p50 / SQLite": fmt(over("p50") / (m(sqlite, "guarded", "p50") - m(sqlite, "bare", "p50")), 1),
        "bare call p50/p99 µs": `${fmt(m(rounds, "bare", "p50"), 1)} / ${fmt(m(rounds, "bare", "p99"), 1)}`,
      });
    }
  } finally {
    cluster.stop();
  }
  console.log(
    `\n## decision overhead, PostgreSQL vs SQLite (guard.run minus the bare no-op call, the unguarded baseline; ${TURNS}-turn sessions, one new turn per call; ${ROUNDS} rounds of ${ITERATIONS} calls, medians)`,
  );
  table(rows);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
