// Scenario 5: contention. 1,000 concurrent calls over 100 keys with tight caps (per key $0.05,
// global $5; each call costs about $0.009 and takes 1-20 ms): the guard's overhead per call
// against the same calls made unguarded, and the overspend, which must stay within one call's
// cost per scope.
import Database from "better-sqlite3";
import { createGuard } from "../dist/index.js";
import { fmt, summarize, table, tempDir } from "./lib.mjs";

const CALLS = 1000;
const KEYS = 100;
const SESSION_CAP = 0.05;
const GLOBAL_CAP = 5;
const usage = { inputTokens: 1500, outputTokens: 300 }; // $0.009 on Sonnet
const CALL_USD = 0.009;

const delays = Array.from({ length: CALLS }, (_, i) => 1 + ((i * 7919) % 20));
const judge = (i) => async () => {
  await new Promise((r) => setTimeout(r, delays[i]));
  return usage;
};

async function unguarded() {
  const t0 = process.hrtime.bigint();
  const lat = await Promise.all(
    delays.map(async (_, i) => {
      const a = process.hrtime.bigint();
      await judge(i)();
      return Number(process.hrtime.bigint() - a) / 1000;
    }),
  );
  return { wallMs: Number(process.hrtime.bigint() - t0) / 1e6, lat: summarize(lat) };
}

async function guarded(path) {
  const guard = createGuard({
    ledger: path,
    logger: "silent",
    concurrency: 1000,
    sessionBudgetUsd: SESSION_CAP,
    dailyBudgetUsd: GLOBAL_CAP,
    verdictTtlMs: 0,
    sessionMaxCalls: 1e6,
  });
  // Teach the estimator this judge first, as a running deployment would have.
  for (let i = 0; i < 5; i++)
    await guard.run(
      {
        judge: "j",
        model: "claude-sonnet-4-6",
        sessionKey: "warm",
        userMessages: [`w${i}`],
        assistantMessages: [`warm ${i}`],
      },
      async () => usage,
    );
  const t0 = process.hrtime.bigint();
  const outs = await Promise.all(
    delays.map(async (_, i) => {
      const a = process.hrtime.bigint();
      const o = await guard.run(
        {
          judge: "j",
          model: "claude-sonnet-4-6",
          sessionKey: `k${i % KEYS}`,
          userMessages: [`q${i}`],
          assistantMessages: [`answer ${i} with substance`],
        },
        judge(i),
      );
      return { o, us: Number(process.hrtime.bigint() - a) / 1000 };
    }),
  );
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  await guard.close();
  const db = new Database(path, { readonly: true });
  const perKey = db
    .prepare(
      "SELECT session_key AS k, sum(charged_micros) / 1e6 AS usd FROM decisions WHERE session_key != 'warm' GROUP BY session_key",
    )
    .all();
  const total = db.prepare("SELECT sum(charged_micros) / 1e6 AS usd FROM decisions").get().usd;
  db.close();
  const maxKey = Math.max(...perKey.map((r) => r.usd));
  const judgedLat = outs.filter((x) => x.o.status === "judged").map((x) => x.us);
  return { wallMs, outs, maxKey, total, lat: summarize(judgedLat) };
}

export async function run() {
  const tmp = tempDir();
  const base = await unguarded();
  const g = await guarded(`${tmp.dir}/ledger.db`);
  tmp.remove();
  const judged = g.outs.filter((x) => x.o.status === "judged").length;
  const skipped = g.outs.length - judged;
  const rows = [
    {
      "judged / skipped": `${judged} / ${skipped}`,
      "p50 latency guarded ms": fmt(g.lat.p50 / 1000, 2),
      "p50 unguarded ms": fmt(base.lat.p50 / 1000, 2),
      "p99 guarded ms": fmt(g.lat.p99 / 1000, 2),
      "p99 unguarded ms": fmt(base.lat.p99 / 1000, 2),
      "max key spend $": `${fmt(g.maxKey, 3)} (cap ${SESSION_CAP}, +1 call = ${fmt(SESSION_CAP + CALL_USD, 3)})`,
      "total spend $": `${fmt(g.total, 3)} (cap ${GLOBAL_CAP})`,
    },
  ];
  console.log(
    `\n## contention (${CALLS} concurrent calls, ${KEYS} keys, judge takes 1-20 ms; SQLite file ledger)`,
  );
  table(rows);
  const ok = g.maxKey <= SESSION_CAP + CALL_USD + 1e-9 && g.total <= GLOBAL_CAP + CALL_USD + 1e-9;
  console.log(
    ok ? "no overspend beyond one call per scope" : "OVERSPEND: a cap was exceeded by more than one call",
  );
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
