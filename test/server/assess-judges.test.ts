import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "../../src/client/client.js";
import { createGuard } from "../../src/index.js";
import { createLogger } from "../../src/log/logger.js";
import { type RunningServer, serve } from "../../src/server/server.js";
import { CANNED } from "../helpers/replies.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const TOKEN = "test-token-0123456789abcdef";
const SONNET = "claude-sonnet-4-6";
const running: RunningServer[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.close().catch(() => {});
});

async function start() {
  const ledger = join(tmp(), "ledger.db");
  const guard = createGuard({ ledger, logger: "silent" });
  const r = await serve({ guard, log: createLogger("silent"), port: 0, token: TOKEN });
  running.push(r);
  return { ...r, ledger, guard };
}

const post = async (url: string, body: unknown) => {
  const res = await fetch(`${url}/v1/assess`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
};

describe("POST /v1/assess with judges", () => {
  it("a cycle skipped through the sidecar records its judges' skips and savings, once per transcript", async () => {
    const s = await start();
    const client = createClient({ url: s.url, token: TOKEN });
    const judges = [
      { judge: "observation_extraction", model: SONNET },
      { judge: "regression_gate", model: SONNET, variant: "golden-1", maxTokens: 512 },
    ];
    expect(
      (
        await client.assess(
          { sessionKey: "cli", userMessages: ["a"], assistantMessages: [CANNED] },
          { judges },
        )
      ).skip,
    ).toBe(false);
    const stuck = { sessionKey: "cli", userMessages: ["a", "b"], assistantMessages: [CANNED, CANNED] };
    expect(await client.assess(stuck, { judges })).toMatchObject({ stuck: true, skip: true });
    // Asked again about the same transcript (a retry): recorded, but saved once.
    expect((await client.assess(stuck, { judges })).skip).toBe(true);
    const savedUsd = s.guard.stats.savedUsd;
    expect(savedUsd).toBeGreaterThan(0);
    await running.pop()!.close();
    const db = new Database(s.ledger, { readonly: true });
    const rows = db
      .prepare("SELECT judge, model, decision, reason, saved_micros FROM decisions ORDER BY id")
      .all() as Array<Record<string, unknown>>;
    db.close();
    expect(rows.map((r) => [r.judge, r.decision, r.reason, (r.saved_micros as number) > 0])).toEqual([
      ["observation_extraction", "skipped", "stuck_session", true],
      ["regression_gate", "skipped", "stuck_session", true],
      ["observation_extraction", "skipped", "stuck_session", false],
      ["regression_gate", "skipped", "stuck_session", false],
    ]);
    const total = rows.reduce((n, r) => n + (r.saved_micros as number), 0);
    expect(total / 1e6).toBeCloseTo(savedUsd, 9);
  });

  it.each([
    ["too many judges", { judges: Array.from({ length: 65 }, () => ({ judge: "j", model: "m" })) }, "judges"],
    ["an empty judge label", { judges: [{ judge: "", model: "m" }] }, "judges.0.judge"],
    ["an overlong model", { judges: [{ judge: "j", model: "m".repeat(257) }] }, "judges.0.model"],
    ["an unknown field", { judges: [{ judge: "j", model: "m", prompt: "x" }] }, "judges.0"],
    ["a bad max_tokens", { judges: [{ judge: "j", model: "m", max_tokens: 0 }] }, "judges.0.max_tokens"],
  ])("refuses %s, naming the field", async (_what, extra, field) => {
    const s = await start();
    const r = await post(s.url, { session_key: "k", user_messages: [], assistant_messages: [], ...extra });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: "FIELD_INVALID", field });
  });
});
