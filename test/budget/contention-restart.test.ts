import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { createGuard } from "../../src/index.js";
import { FakeClock, useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const SPEND = fileURLToPath(new URL("../fixtures/processes/spend.mjs", import.meta.url));
const CALL = 301_500; // micro-dollars: 500 input + 20,000 output Sonnet tokens

describe("no overspend under contention", () => {
  it("4 processes x 64 concurrent calls on 3 keys with tight caps: each cap exceeded by at most one call", async () => {
    const ledger = join(tmp(), "ledger.db");
    const run = promisify(execFile);
    // Caps: $1.50 per key, $3.50 in all; a call costs $0.3015.
    const outs = await Promise.all(
      [0, 1, 2, 3].map(() => run(process.execPath, [SPEND, ledger, "64", "3", "1.5", "3.5"])),
    );
    const judged = outs.map((o) => JSON.parse(o.stdout).judged as number).reduce((a, b) => a + b, 0);
    const db = new Database(ledger, { readonly: true });
    const perKey = db
      .prepare("SELECT session_key AS k, sum(charged_micros) AS m FROM decisions GROUP BY session_key")
      .all() as Array<{ k: string; m: number }>;
    const open = db.prepare("SELECT count(*) AS n FROM reservations").get() as { n: number };
    db.close();
    const total = perKey.reduce((a, r) => a + r.m, 0);
    const worstKey = Math.max(...perKey.map((r) => r.m));
    console.log(
      `contention: ${judged} of 256 calls judged; most spent on a key $${worstKey / 1e6} (cap 1.50), in all $${total / 1e6} (cap 3.50)`,
    );
    expect(worstKey).toBeLessThanOrEqual(1_500_000 + CALL);
    expect(total).toBeLessThanOrEqual(3_500_000 + CALL);
    expect(total).toBe(judged * CALL);
    expect(open.n).toBe(0);
  }, 60_000);
});

describe("restarts", () => {
  it("a rolling window keeps counting across a restart, and still expires on time", async () => {
    const ledger = join(tmp(), "ledger.db");
    const clock = new FakeClock();
    const usage = async () => ({ inputTokens: 100_000, outputTokens: 0 }); // $0.30
    const options = {
      ledger,
      logger: "silent" as const,
      clock,
      sessionBudgetUsd: 0.5,
      budgetWindowMs: 3_600_000,
      estimator: { defaultOutputTokens: 1 },
    };
    const ask = (g: ReturnType<typeof createGuard>, i: number) =>
      g.run(
        {
          judge: "j",
          model: "claude-sonnet-4-6",
          sessionKey: "k",
          userMessages: [`q${i}`],
          assistantMessages: [`a${i}`],
        },
        usage,
      );
    const a = createGuard(options);
    expect((await ask(a, 1)).status).toBe("judged");
    await a.close();
    clock.advance(30 * 60_000);
    const b = createGuard(options); // restarted half an hour later: the $0.30 still counts
    expect(b.session("k").spentUsd).toBeCloseTo(0.3, 9);
    expect((await ask(b, 2)).status).toBe("judged"); // $0.60: over the cap by less than one call
    expect((await ask(b, 3)).status).toBe("skipped");
    await b.close();
    clock.advance(31 * 60_000 + 60_000); // the first call leaves the window (plus its one-minute bucket)
    const c = createGuard(options);
    expect(c.session("k").spentUsd).toBeCloseTo(0.3, 9);
    clock.advance(30 * 60_000); // and so does the second
    expect(c.session("k").spentUsd).toBe(0);
    expect((await ask(c, 4)).status).toBe("judged");
    await c.close();
  });
});
