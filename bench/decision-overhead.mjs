// Scenario 1: decision overhead. guard.run around a no-op judge against the bare no-op call, on a
// SQLite file ledger (WAL) and on the in-memory store, for sessions of 1, 20 and 200 turns.
//
// Each measured call brings one new turn to a key that has seen the turns before it (as Phantom
// does after every message), so it includes fingerprinting the new reply, the stuck check, the
// budget reservation and settlement, and the ledger writes.
//
// Tails on a small VM are mostly the machine's: timer interrupts and the other tenant's work
// add tens of microseconds to whatever is running at that moment. So that a reader can tell the
// guard's tail from the machine's, each round is followed by as many timings of a constant
// piece of CPU work of about the guard's typical duration (a hash loop that allocates nothing),
// whose spread is reported beside the guard's. Each case runs in several rounds (fresh guard and ledger each); the
// figures are the medians of the rounds' percentiles.
import { createGuard } from "../dist/index.js";
import { conversation, fmt, now, summarize, table, tempDir, UNCAPPED, us } from "./lib.mjs";

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = 300;
const judgeResult = { inputTokens: 1200, outputTokens: 300 };
const noop = async () => judgeResult;

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const block = new Uint8Array(4096).fill(7);
/** Constant CPU work that allocates nothing (so it adds no garbage collection): `n` FNV-1a passes over 4 KiB. */
function constantWork(n) {
  let h = 0x811c9dc5;
  for (let i = 0; i < n; i++) for (let j = 0; j < block.length; j++) h = Math.imul(h ^ block[j], 0x01000193);
  return h;
}
/** How many passes take about `targetUs` here, found the way the loop calls it (warm, one call at a time). */
function calibrate(targetUs) {
  let n = 4;
  for (let round = 0; round < 3; round++) {
    const took = [];
    for (let t = 0; t < 400; t++) {
      const t0 = now();
      constantWork(n);
      took.push(us(now() - t0));
    }
    n = Math.max(1, Math.round((n * targetUs) / median(took.slice(100))));
  }
  return n;
}
const REFERENCE_US = 100;

/** Times `count` calls of the constant work, in a loop of its own (so the JIT optimises it). */
function referenceLoop(count) {
  const took = [];
  for (let i = 0; i < count; i++) {
    const t0 = now();
    constantWork(work);
    took.push(us(now() - t0));
  }
  return took;
}

async function measure(storeKind, turns) {
  const tmp = tempDir();
  const times = await overheadOn(storeKind === "sqlite" ? `${tmp.dir}/ledger.db` : ":memory:", turns);
  const reference = referenceLoop(ITERATIONS);
  tmp.remove();
  return { ...times, reference: summarize(reference) };
}

/**
 * Times `iterations` calls of guard.run (after a warm-up), each bringing one new turn to a key
 * of `turns` turns, on `ledger`, and the bare no-op call in the same loop iterations.
 */
export async function overheadOn(ledger, turns, iterations = ITERATIONS) {
  const guard = createGuard({
    ledger,
    logger: "silent",
    ...UNCAPPED,
    maxSessions: iterations + WARMUP + 10,
  });
  const { users, replies } = conversation(turns, turns);
  const total = iterations + WARMUP;
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
  return { guarded: summarize(guarded), bare: summarize(bare) };
}

let work = 1;

async function measureRounds(store, turns) {
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await measure(store, turns));
  const m = (part, p) => median(rounds.map((x) => x[part][p]));
  const overhead = (p) => m("guarded", p) - m("bare", p);
  return {
    store,
    turns,
    "p50 µs": fmt(overhead("p50")),
    "p99 µs": fmt(overhead("p99")),
    "p99.9 µs": fmt(overhead("p999")),
    "decisions/s": fmt(1e6 / m("guarded", "mean"), 0),
    "reference p50/p99 µs": `${fmt(m("reference", "p50"), 0)} / ${fmt(m("reference", "p99"), 0)}`,
    raw: rounds,
  };
}

export async function run() {
  work = calibrate(REFERENCE_US);
  const rows = [];
  // BENCH_CASES=sqlite:20,memory:20 runs only those cases.
  const only = process.env.BENCH_CASES?.split(",");
  for (const store of ["sqlite", "memory"])
    for (const turns of [1, 20, 200])
      if (!only || only.includes(`${store}:${turns}`)) rows.push(await measureRounds(store, turns));
  console.log(
    `\n## decision overhead (guard.run minus the bare no-op call; ${ROUNDS} rounds of ${ITERATIONS} calls, medians; one new turn per call)`,
  );
  console.log(
    `   reference: ${work} FNV-1a passes over 4 KiB (~${REFERENCE_US} µs of constant work, no allocation) timed after each round: its p99 - p50 is this machine's tail`,
  );
  table(rows.map(({ raw, ...r }) => r));
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
