import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "../../src/client/client.js";
import { ensureBuilt } from "../helpers/cli.js";
import { SIDECAR_TOKEN, type Sidecar, startSidecar } from "../helpers/sidecar.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * The sidecar is the production path for Phantom: its clients make the judge calls it admits.
 * Killed with calls in flight and restarted on the same ledger, it must still charge every call
 * its predecessor admitted: the calls were made.
 */
const tmp = useTempDir();
let sidecar: Sidecar | undefined;
afterEach(async () => {
  await sidecar?.stop();
});

const CAP_USD = 0.3;
// A Sonnet call of up to 2,000 output tokens: $0.03 is within its worst case (the guarantee's "one call").
const CALL_USD = 0.03;

describe("a sidecar killed with judge calls in flight", () => {
  it("takes the settlements of calls its predecessor admitted: 4 SIGKILLs and restarts, every call charged, the cap held within one call", async () => {
    ensureBuilt();
    const ledger = join(tmp(), "ledger.db");
    const env = { JUDGE_GUARD_SESSION_BUDGET_USD: String(CAP_USD), JUDGE_GUARD_LOG_LEVEL: "silent" };
    sidecar = await startSidecar(ledger, env);
    const port = sidecar.port;
    const client = createClient({ url: sidecar.url, token: SIDECAR_TOKEN, onUnreachable: "closed" });

    // Real spend: every judge call that ran, whatever the guard recorded.
    let realMicros = 0;
    let made = 0;
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const out = await client.run(
          {
            judge: "quality_assessment",
            model: "claude-sonnet-4-6",
            sessionKey: "k",
            userMessages: [`question ${w}-${i}`],
            assistantMessages: [`a real answer to question ${w}-${i}, with substance`],
            maxTokens: 2000,
          },
          async () => {
            made++;
            realMicros += CALL_USD * 1e6;
            await new Promise((r) => setTimeout(r, 1500));
            return { costUsd: CALL_USD };
          },
        );
        if (out.status === "skipped") await new Promise((r) => setTimeout(r, 100));
      }
    };
    const workers = [0, 1, 2, 3, 4, 5].map(worker);
    for (let crash = 0; crash < 4; crash++) {
      await new Promise((r) => setTimeout(r, 800));
      sidecar.child.kill("SIGKILL");
      await new Promise((r) => sidecar!.child.once("exit", r));
      sidecar = await startSidecar(ledger, env, port);
    }
    await new Promise((r) => setTimeout(r, 2000));
    stop = true;
    await Promise.all(workers);
    expect(client.stats.pendingSettlements).toBe(0);
    await sidecar.stop();

    const db = new Database(ledger, { readonly: true });
    const charged = db
      .prepare("SELECT coalesce(sum(charged_micros), 0) AS m FROM decisions WHERE session_key = 'k'")
      .get() as { m: number };
    const usage = db.prepare("SELECT sum(micros) AS m FROM usage WHERE scope = 'k:k'").get() as { m: number };
    const open = db.prepare("SELECT count(*) AS n FROM reservations WHERE charged_micros IS NULL").get();
    db.close();
    console.log(
      `sidecar crashes: 4 SIGKILLs, ${made} judge calls made, real spend $${(realMicros / 1e6).toFixed(2)}, charged $${(charged.m / 1e6).toFixed(2)} (cap $${CAP_USD})`,
    );
    expect(made).toBeGreaterThan(4);
    // Every call admitted before a crash was settled after it, at its real cost.
    expect(charged.m).toBe(realMicros);
    expect(usage.m).toBe(realMicros);
    expect(open).toEqual({ n: 0 });
    // And the cap held: real spend at most one call over it.
    expect(realMicros).toBeLessThanOrEqual((CAP_USD + CALL_USD) * 1e6);
  }, 60_000);
});
