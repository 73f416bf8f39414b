// A turn the runtime answered without running the agent (Phantom's busy bounce, as the Phantom
// install sees it) holds nothing for a judge: its judges are skipped from the first such turn,
// while a stuck episode (and the runtime's recovery) still waits for repeats.
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { createGuard } from "../../src/index.js";
import { CANNED } from "../helpers/replies.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const bounced = { costUsd: 0, sdkSessionId: "", handled: false } as const;

describe("a turn the runtime did not handle", () => {
  it("is not judged, and opens no stuck episode on its own", async () => {
    const ledger = join(tmp(), "ledger.db");
    const guard = createGuard({ ledger, logger: "silent" });
    let calls = 0;
    const judge = async () => {
      calls++;
      return { inputTokens: 1000, outputTokens: 100 };
    };
    const users = ["deploy the site", "is it done?"];
    const replies = ["Deployed: 3 pages updated and the cache purged.", CANNED];
    const out = await guard.run(
      {
        judge: "quality_assessment",
        model: "claude-sonnet-4-6",
        sessionKey: "k",
        userMessages: users,
        assistantMessages: replies,
        reply: bounced,
      },
      judge,
    );
    expect(out.status).toBe("skipped");
    expect(calls).toBe(0);
    expect(guard.session("k").stuck).toBe(false);
    expect(guard.stats.stuckEpisodes).toBe(0);

    // The cycle-level check says the same, and records what it saved.
    const v = guard.assess(
      { sessionKey: "k", userMessages: users, assistantMessages: replies, reply: bounced },
      { judges: [{ judge: "observation_extraction", model: "claude-sonnet-4-6" }] },
    );
    expect(v).toMatchObject({ stuck: false, skip: true });

    // The same text in a turn the runtime did handle is judged.
    const handled = await guard.run(
      {
        judge: "quality_assessment",
        model: "claude-sonnet-4-6",
        sessionKey: "k2",
        userMessages: users,
        assistantMessages: replies,
        reply: { costUsd: 0.01, sdkSessionId: "s1" },
      },
      judge,
    );
    expect(handled.status).toBe("judged");
    await guard.close();

    const db = new Database(ledger, { readonly: true });
    const rows = db
      .prepare(
        "SELECT session_key, judge, decision, reason, episode_id, saved_micros FROM decisions ORDER BY id",
      )
      .all() as Array<Record<string, unknown>>;
    db.close();
    expect(
      rows.filter((r) => r.session_key === "k").map((r) => [r.judge, r.decision, r.reason, r.episode_id]),
    ).toEqual([
      ["quality_assessment", "skipped", "stuck_session", null],
      ["observation_extraction", "skipped", "stuck_session", null],
    ]);
    expect(rows.every((r) => r.session_key !== "k" || (r.saved_micros as number) > 0)).toBe(true);
  });

  it("is judged in shadow mode, which only records", async () => {
    const guard = createGuard({ ledger: ":memory:", logger: "silent", mode: "shadow" });
    const out = await guard.run(
      {
        judge: "j",
        model: "claude-sonnet-4-6",
        sessionKey: "k",
        userMessages: ["a"],
        assistantMessages: [CANNED],
        reply: bounced,
      },
      async () => ({ inputTokens: 10, outputTokens: 1 }),
    );
    expect(out.status).toBe("judged");
    await guard.close();
  });
});
