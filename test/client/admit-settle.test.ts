// The client's two halves of a call, for one call made for several keys (Phantom main's
// reflection over a batch): each key admitted against its own budget, then settled with its share.
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "../../src/client/client.js";
import { createGuard } from "../../src/index.js";
import { createLogger } from "../../src/log/logger.js";
import { type RunningServer, serve } from "../../src/server/server.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const TOKEN = "test-token-0123456789abcdef";
const running: RunningServer[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.close().catch(() => {});
});

const request = (key: string) => ({
  judge: "reflection",
  model: "claude-haiku-4-5",
  sessionKey: key,
  userMessages: [`what changed in ${key}?`],
  assistantMessages: [`Three files in ${key} changed since yesterday's release.`],
  maxTokens: 1000,
});

describe("GuardClient.admit / settle", () => {
  it("admits per key, charges each key its settled share, and skips a key over its cap", async () => {
    const ledger = join(tmp(), "ledger.db");
    const guard = createGuard({ ledger, logger: "silent", sessionBudgetUsd: 0.05 });
    const r = await serve({ guard, log: createLogger("silent"), port: 0, token: TOKEN });
    running.push(r);
    const client = createClient({ url: r.url, token: TOKEN });

    const a = await client.admit(request("a"));
    const b = await client.admit(request("b"));
    expect(a.status).toBe("admitted");
    expect(b.status).toBe("admitted");
    if (a.status !== "admitted" || b.status !== "admitted") return;
    expect(await client.settle(a.reservationId, { ok: true, costUsd: 0.06 })).toEqual({ costUsd: 0.06 });
    expect(await client.settle(b.reservationId, { ok: false, costUsd: 0.01 })).toEqual({ costUsd: 0.01 });
    await expect(client.settle(a.reservationId, { ok: true })).rejects.toThrow(/no open reservation/);

    // Key a spent its cap: its next admission is refused, b's is not.
    const again = await client.admit(request("a"));
    expect(again).toMatchObject({ status: "skipped", reason: "session_budget" });
    const other = await client.admit(request("b"));
    expect(other.status).toBe("admitted");
    if (other.status === "admitted") await client.settle(other.reservationId, { ok: true, costUsd: 0 });

    await running.pop()!.close();
    await guard.close();
    const db = new Database(ledger, { readonly: true });
    const rows = db
      .prepare("SELECT session_key, decision, charged_micros FROM decisions ORDER BY id")
      .all() as Array<{ session_key: string; decision: string; charged_micros: number }>;
    const open = db.prepare("SELECT count(*) AS n FROM reservations").get() as { n: number };
    db.close();
    expect(rows.map((x) => [x.session_key, x.decision, x.charged_micros])).toEqual([
      ["a", "judged", 60_000],
      ["b", "failed", 10_000],
      ["a", "skipped", 0],
      ["b", "judged", 0],
    ]);
    expect(open.n).toBe(0);
  });
});
