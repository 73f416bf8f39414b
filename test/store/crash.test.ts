import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { createGuard } from "../../src/index.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const LOAD = fileURLToPath(new URL("../fixtures/processes/crash-load.mjs", import.meta.url));
// 20 crashes in CI (.ci/run sets JUDGE_GUARD_LONG_TESTS=1), 5 in a quick local run.
const CRASHES = process.env.JUDGE_GUARD_LONG_TESTS === "1" ? 20 : 5;

/** Runs the load until a random moment, kills it with SIGKILL, returns what it reported settled. */
async function loadAndKill(ledger: string, run: number): Promise<string[]> {
  const child = spawn(process.execPath, [LOAD, ledger, String(run)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d;
  });
  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (out.includes("ready")) {
        clearInterval(check);
        resolve();
      }
    }, 5);
  });
  await new Promise((r) => setTimeout(r, 40 + Math.floor(Math.random() * 250)));
  child.kill("SIGKILL");
  await new Promise((r) => child.once("exit", r));
  // A line cut by the kill is not a report.
  return out
    .split("\n")
    .filter((l) => /^settled \S+$/.test(l))
    .map((l) => l.slice(8));
}

describe("crash safety", () => {
  it(`survives ${CRASHES} SIGKILLs under load: an intact ledger with every settled decision, reservations reclaimed, no budget lost or doubled`, async () => {
    const ledger = join(tmp(), "ledger.db");
    let reported = 0;
    let reclaimed = 0;
    for (let run = 0; run < CRASHES; run++) {
      const settled = await loadAndKill(ledger, run);
      reported += settled.length;
      const db = new Database(ledger, { readonly: true });
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
      const keys = new Set(
        (
          db
            .prepare("SELECT session_key AS k FROM decisions WHERE session_key LIKE ?")
            .all(`r${run}-%`) as Array<{ k: string }>
        ).map((r) => r.k),
      );
      db.close();
      for (const k of settled) expect(keys.has(k), `${k} was reported settled`).toBe(true);
      // The next start reclaims what the killed process had reserved.
      const left = new Database(ledger, { readonly: true });
      const leftOpen = (
        left.prepare("SELECT count(*) AS n FROM reservations WHERE charged_micros IS NULL").get() as {
          n: number;
        }
      ).n;
      left.close();
      const guard = createGuard({ ledger, logger: "silent" });
      expect(guard.stats.reclaimedReservations).toBe(leftOpen);
      reclaimed += leftOpen;
      const open = new Database(ledger, { readonly: true });
      // Charged at their estimate (the killed calls may have been billed), not freed.
      expect(
        open.prepare("SELECT count(*) AS n FROM reservations WHERE charged_micros IS NULL").get(),
      ).toEqual({
        n: 0,
      });
      open.close();
      await guard.close();
    }
    const db = new Database(ledger, { readonly: true });
    const charged = db.prepare("SELECT sum(charged_micros) AS m, count(*) AS n FROM decisions").get() as {
      m: number;
      n: number;
    };
    const usage = db
      .prepare("SELECT sum(micros) AS m, sum(calls) AS n FROM usage WHERE scope = '*'")
      .get() as { m: number; n: number };
    db.close();
    // The budgets hold exactly what the decisions say: nothing lost, nothing counted twice.
    expect(usage).toEqual({ m: charged.m, n: charged.n });
    expect(reported).toBeGreaterThan(CRASHES);
    // The kills did land with calls in flight, so reclaiming was exercised, not assumed.
    expect(reclaimed).toBeGreaterThan(0);
    console.log(
      `crash safety: ${CRASHES} SIGKILLs survived, ${reported} settled decisions reported and found, ${charged.n} in the ledger, ${reclaimed} reservations reclaimed`,
    );
  }, 120_000);
});
