// Scenario 1: decision overhead. guard.run around a no-op judge against the bare no-op call, on a
// SQLite file ledger (WAL) and on the in-memory store, for sessions of 1, 20 and 200 turns.
//
// Each measured call brings one new turn to a key that has seen the turns before it (as Phantom
// does after every message), so it includes fingerprinting the new reply, the stuck check, the
// budget reservation and settlement, and the ledger writes.
import { createGuard } from "../dist/index.js";
import { conversation, fmt, now, summarize, table, tempDir, us } from "./lib.mjs";

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 3000);
const WARMUP = 300;
const judgeResult = { inputTokens: 1200, outputTokens: 300 };
const noop = async () => judgeResult;

async function measure(storeKind, turns) {
  const tmp = tempDir();
  const guard = createGuard({
    ledger: storeKind === "sqlite" ? `${tmp.dir}/ledger.db` : ":memory:",
    logger: "silent",
    sessionBudgetUsd: 1e9,
    dailyBudgetUsd: 1e9,
    sessionMaxCalls: 1e9,
    maxSessions: ITERATIONS + WARMUP + 10,
  });
  const { users, replies } = conversation(turns, turns);
  const total = ITERATIONS + WARMUP;
  // Bring every key to turns-1 turns (unmeasured), so the measured call adds the last turn.
  const before = { users: users.slice(0, turns - 1), replies: replies.slice(0, turns - 1) };
  const requests = [];
  for (let k = 0; k < total; k++) {
    const sessionKey = `slack:C${k}`;
    if (turns > 1) {
      await guard.run(
        {
          judge: "observation_extraction",
          model: "claude-sonnet-4-6",
          sessionKey,
          userMessages: before.users,
          assistantMessages: before.replies,
        },
        noop,
      );
    }
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
  tmp.remove();
  const g = summarize(guarded);
  const b = summarize(bare);
  return {
    store: storeKind,
    turns,
    "p50 µs": fmt(g.p50 - b.p50),
    "p99 µs": fmt(g.p99 - b.p99),
    "p99.9 µs": fmt(g.p999 - b.p999),
    "bare p50 µs": fmt(b.p50, 2),
    "decisions/s": fmt(1e6 / g.mean, 0),
    raw: { guarded: g, bare: b },
  };
}

export async function run() {
  const rows = [];
  for (const store of ["sqlite", "memory"])
    for (const turns of [1, 20, 200]) rows.push(await measure(store, turns));
  console.log(
    `\n## decision overhead (guard.run minus the bare no-op call; ${ITERATIONS} calls each, one new turn per call)`,
  );
  table(rows.map(({ raw, ...r }) => r));
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
