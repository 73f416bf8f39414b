// Scenario 2: session growth. One session key is fed its cumulative transcript after every turn,
// as Phantom does, for T = 100, 1,000 and 10,000 turns. The guard's total CPU time should grow
// about 10x per 10x (linear), while the transcript it is handed grows as T^2. The baseline in the
// same run is a guard that rehashes the whole transcript on every call (the naive design), which
// is O(T^2).
import { createHash } from "node:crypto";
import { createGuard } from "../dist/index.js";
import { conversation, fmt, table, tempDir, UNCAPPED } from "./lib.mjs";

const SIZES = (process.env.BENCH_GROWTH_SIZES ?? "100,1000,10000").split(",").map(Number);
const noop = async () => ({ inputTokens: 1200, outputTokens: 300 });

function cpuMs(start) {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
}

async function guarded(turns) {
  const tmp = tempDir();
  const guard = createGuard({
    ledger: `${tmp.dir}/ledger.db`,
    logger: "silent",
    ...UNCAPPED,
  });
  const { users, replies } = conversation(turns, 7);
  // Let the ledger's checkpoint worker boot (a thread with its own V8, tens of ms of CPU) before
  // measuring: process CPU time counts every thread, and start-up is not per-turn work.
  await new Promise((r) => setTimeout(r, 300));
  // One growing transcript, handed over whole on every call (the guard must not depend on
  // getting a fresh array, nor walk the old part again).
  const u = [];
  const a = [];
  const start = process.cpuUsage();
  for (let i = 0; i < turns; i++) {
    u.push(users[i]);
    a.push(replies[i]);
    await guard.run(
      {
        judge: "observation_extraction",
        model: "claude-sonnet-4-6",
        sessionKey: "cli:cli:local",
        userMessages: u,
        assistantMessages: a,
      },
      noop,
    );
  }
  const ms = cpuMs(start);
  await guard.close();
  tmp.remove();
  return ms;
}

/** The naive baseline: hash the whole transcript on every call. */
function naive(turns) {
  const { users, replies } = conversation(turns, 7);
  const start = process.cpuUsage();
  for (let i = 0; i < turns; i++) {
    const h = createHash("sha256");
    for (let j = 0; j <= i; j++) h.update(users[j]).update(replies[j]);
    h.digest();
  }
  return cpuMs(start);
}

export async function run() {
  // A throwaway session first: otherwise the smallest size pays for compiling the guard's code
  // (JIT threads count in process CPU time) and the ratios read as better than they are.
  await guarded(500);
  naive(500);
  const rows = [];
  let prev;
  for (const turns of SIZES) {
    const g = await guarded(turns);
    const n = turns <= 10_000 ? naive(turns) : Number.NaN;
    rows.push({
      turns,
      "guard CPU ms": fmt(g),
      "µs per call": fmt((g * 1000) / turns),
      "ratio vs previous T": prev ? fmt(g / prev.g, 1) : "-",
      "naive rehash CPU ms": fmt(n),
      "naive ratio": prev ? fmt(n / prev.n, 1) : "-",
    });
    prev = { g, n };
  }
  console.log("\n## session growth (one key, cumulative transcript every turn; SQLite file ledger)");
  table(rows);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
