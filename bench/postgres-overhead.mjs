// Decision overhead on PostgreSQL: guard.run around a no-op judge, minus the bare no-op call
// measured in the same loop iteration (the unguarded baseline), with the ledger in PostgreSQL
// over loopback TCP, against the same on a SQLite file, in the same run. Each measured call
// brings one new turn to a 20-turn session (as Phantom does after every message): fingerprinting,
// the stuck check, the reservation (one transaction), the settlement (another) and the decision.
// Several rounds, a fresh guard and ledger each; the medians of the rounds' percentiles.
import { overheadOn } from "./decision-overhead.mjs";
import { fmt, table, tempDir } from "./lib.mjs";
import { postgresAvailable, startPostgres } from "./postgres.mjs";

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TURNS = 20;
let databases = 0;
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const measure = (ledger) => overheadOn(ledger, TURNS, ITERATIONS);

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
      "PostgreSQL, loopback": async () => measure(await cluster.database(`bench_overhead_${++databases}`)),
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
