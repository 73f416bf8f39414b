import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { createGuard } from "../../src/index.js";
import { CANNED } from "../helpers/replies.js";
import { sessionRequest } from "../helpers/requests.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const SONNET = "claude-sonnet-4-6";

const request = (key: string, users: string[], replies: string[]) =>
  sessionRequest(key, users, replies, "constitution_gate");

/** A judge held until `release()`, so calls are in flight together without timing. */
function heldJudge() {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  let started = 0;
  let waiting: (() => void) | undefined;
  let want = 0;
  const judge = async () => {
    judge.calls++;
    started++;
    if (started >= want) waiting?.();
    await gate;
    return { verdict: "pass", inputTokens: 2000, outputTokens: 600 };
  };
  judge.calls = 0;
  return {
    judge,
    release,
    /** Resolves once `n` calls have reached the judge. */
    started: (n: number) =>
      new Promise<void>((r) => {
        want = n;
        if (started >= n) r();
        else waiting = r;
      }),
  };
}

function rows(path: string) {
  const db = new Database(path, { readonly: true });
  const r = db
    .prepare("SELECT decision, reason, charged_micros, saved_micros FROM decisions ORDER BY id")
    .all() as Array<{
    decision: string;
    reason: string | null;
    charged_micros: number;
    saved_micros: number;
  }>;
  db.close();
  return r;
}

describe("identical requests", () => {
  it("3 concurrent identical calls are 3 independent votes: 3 judged, 3 charged", async () => {
    const ledger = join(tmp(), "ledger.db");
    const guard = createGuard({ ledger, logger: "silent" });
    const h = heldJudge();
    const req = request("slack:C1", ["Is this change safe?"], ["Yes: it only renames a local variable."]);
    const all = Promise.all([guard.run(req, h.judge), guard.run(req, h.judge), guard.run(req, h.judge)]);
    await h.started(3);
    h.release();
    const outs = await all;
    expect(outs.map((o) => o.status)).toEqual(["judged", "judged", "judged"]);
    expect(h.judge.calls).toBe(3);
    // Sonnet: 2000 x $3/M + 600 x $15/M = $0.015 each.
    expect(guard.stats.chargedUsd).toBeCloseTo(0.045, 9);
    expect(guard.stats.reused).toBe(0);
    await guard.close();
    expect(rows(ledger).map((r) => [r.decision, r.charged_micros])).toEqual([
      ["judged", 15_000],
      ["judged", 15_000],
      ["judged", 15_000],
    ]);
  });

  it("with share: true, 3 concurrent identical calls are 1 judged and 2 reused", async () => {
    const ledger = join(tmp(), "ledger.db");
    const guard = createGuard({ ledger, logger: "silent" });
    const h = heldJudge();
    const req = request("slack:C1", ["Is this change safe?"], ["Yes: it only renames a local variable."]);
    const opts = { share: true };
    const all = Promise.all([
      guard.run(req, h.judge, opts),
      guard.run(req, h.judge, opts),
      guard.run(req, h.judge, opts),
    ]);
    await h.started(1);
    h.release();
    const outs = await all;
    expect(outs.map((o) => o.status).sort()).toEqual(["judged", "reused", "reused"]);
    expect(h.judge.calls).toBe(1);
    expect(guard.stats.chargedUsd).toBeCloseTo(0.015, 9);
    await guard.close();
  });

  it("a repeat after an identical call completed reuses its verdict, without opting in", async () => {
    const guard = createGuard({ ledger: join(tmp(), "ledger.db"), logger: "silent" });
    const h = heldJudge();
    h.release();
    const req = request("slack:C1", ["Is this change safe?"], ["Yes: it only renames a local variable."]);
    expect((await guard.run(req, h.judge)).status).toBe("judged");
    const again = await guard.run(req, h.judge);
    expect(again).toMatchObject({ status: "reused", value: { verdict: "pass" } });
    expect(h.judge.calls).toBe(1);
    await guard.close();
  });
});

describe("honest savings", () => {
  it("the same stuck request skipped 5 times is saved once; every skip is still recorded", async () => {
    const ledger = join(tmp(), "ledger.db");
    const guard = createGuard({ ledger, logger: "silent" });
    const judge = async () => ({ inputTokens: 2000, outputTokens: 600 });
    await guard.run(request("cli", ["a"], [CANNED]), judge);
    const stuck = request("cli", ["a", "b"], [CANNED, CANNED]);
    const outs = [];
    // Phantom's fallbacks call the judge again after a skip: the retries would not exist unguarded.
    for (let i = 0; i < 5; i++) outs.push(await guard.run(stuck, judge));
    expect(outs.every((o) => o.status === "skipped" && o.reason === "stuck_session")).toBe(true);
    const first = outs[0]!.status === "skipped" ? outs[0]!.savedUsd : 0;
    expect(first).toBeGreaterThan(0);
    expect(outs.slice(1).map((o) => (o.status === "skipped" ? o.savedUsd : -1))).toEqual([0, 0, 0, 0]);
    expect(guard.stats.savedUsd).toBeCloseTo(first, 9);
    expect(guard.stats.skipped.stuck_session).toBe(5);
    // Another judge kind on the same transcript, or the next stuck turn, is another would-be call.
    const other = await guard.run({ ...stuck, judge: "safety_gate" }, judge);
    const next = await guard.run(request("cli", ["a", "b", "c"], [CANNED, CANNED, CANNED]), judge);
    expect(other.status === "skipped" && other.savedUsd).toBeGreaterThan(0);
    expect(next.status === "skipped" && next.savedUsd).toBeGreaterThan(0);
    await guard.close();
    const skipped = rows(ledger).filter((r) => r.decision === "skipped");
    expect(skipped).toHaveLength(7);
    expect(skipped.map((r) => r.saved_micros > 0)).toEqual([true, false, false, false, false, true, true]);
  });

  it("assess counts a cycle's judges once per transcript, however often it is asked", async () => {
    const ledger = join(tmp(), "ledger.db");
    const guard = createGuard({ ledger, logger: "silent" });
    const judges = [
      { judge: "observation_extraction", model: SONNET },
      { judge: "regression_gate", model: SONNET, variant: "golden-1", maxTokens: 512 },
    ];
    guard.assess({ sessionKey: "cli", userMessages: ["a"], assistantMessages: [CANNED] }, { judges });
    const stuck = { sessionKey: "cli", userMessages: ["a", "b"], assistantMessages: [CANNED, CANNED] };
    expect(guard.assess(stuck, { judges }).skip).toBe(true);
    const saved = guard.stats.savedUsd;
    expect(saved).toBeGreaterThan(0);
    expect(guard.assess(stuck, { judges }).skip).toBe(true);
    expect(guard.stats.savedUsd).toBe(saved);
    // A skipped cycle's judge retried through run is the same would-be call.
    const retry = await guard.run(
      { ...stuck, judge: "regression_gate", model: SONNET, variant: "golden-1" },
      async () => ({ inputTokens: 1, outputTokens: 1 }),
    );
    expect(retry).toMatchObject({ status: "skipped", savedUsd: 0 });
    expect(guard.stats.savedUsd).toBe(saved);
    await guard.close();
    expect(rows(ledger).map((r) => [r.decision, r.saved_micros > 0])).toEqual([
      ["skipped", true],
      ["skipped", true],
      ["skipped", false],
      ["skipped", false],
      ["skipped", false],
    ]);
  });

  it("assess refuses a malformed judge entry before it observes the session", () => {
    const guard = createGuard({ ledger: ":memory:", logger: "silent" });
    expect(() =>
      guard.assess(
        { sessionKey: "cli", userMessages: ["a"], assistantMessages: [CANNED] },
        { judges: [{ judge: "", model: SONNET }] },
      ),
    ).toThrow(/judge must be a non-empty string/);
    expect(guard.session("cli").repeats).toBe(0);
    void guard.close();
  });
});
