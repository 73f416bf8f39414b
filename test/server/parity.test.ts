import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { createClient } from "../../src/client/client.js";
import { createGuard, type GuardOptions, type JudgeRequest } from "../../src/index.js";
import { createLogger } from "../../src/log/logger.js";
import { serve } from "../../src/server/server.js";
import { CANNED } from "../helpers/replies.js";
import { FakeClock, useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const SONNET = "claude-sonnet-4-6";
const HAIKU = "claude-haiku-4-5";
const CYCLE = [
  { judge: "observation_extraction", model: SONNET },
  { judge: "consolidation", model: HAIKU, maxTokens: 2048 },
];

/** What the in-process guard and the client have in common, as the adapters use it. */
interface Guarded {
  run(request: JudgeRequest, judge: () => Promise<unknown>): Promise<{ status: string }>;
  assess(
    session: { sessionKey: string; userMessages: string[]; assistantMessages: string[] },
    options: { judges: typeof CYCLE },
  ): Promise<{ skip: boolean }> | { skip: boolean };
}

/**
 * Healthy turns on two keys, a stuck phase on one (canned replies, a skipped cycle, a fallback
 * retrying a skipped judge), a per-key call cap on the other, then recovery. Every call is made
 * in order, the clock moving one minute per step, and the judges report the same usage.
 */
async function drive(g: Guarded, clock: FakeClock): Promise<string[]> {
  const statuses: string[] = [];
  const users: Record<string, string[]> = {};
  const replies: Record<string, string[]> = {};
  let n = 0;
  const judge = (i: number) => async () => ({ inputTokens: 1500 + 100 * i, outputTokens: 300 + 10 * i });
  const turn = (key: string, user: string, reply: string) => {
    users[key] = [...(users[key] ?? []), user];
    replies[key] = [...(replies[key] ?? []), reply];
  };
  const session = (key: string) => ({
    sessionKey: key,
    userMessages: [...users[key]!],
    assistantMessages: [...replies[key]!],
  });
  const run = async (key: string, j: (typeof CYCLE)[number], variant?: string) => {
    clock.advance(60_000);
    const out = await g.run({ ...session(key), ...j, ...(variant !== undefined && { variant }) }, judge(n++));
    statuses.push(`${key} ${j.judge} ${out.status}`);
  };
  const cycle = async (key: string) => {
    clock.advance(60_000);
    const v = await g.assess(session(key), { judges: CYCLE });
    statuses.push(`${key} assess ${v.skip ? "skip" : "run"}`);
    if (!v.skip) for (const j of CYCLE) await run(key, j);
  };

  // Healthy turns.
  turn("cli:cli:local", "deploy the api", "Deploying the api now: build 142 is rolling out to staging.");
  await cycle("cli:cli:local");
  turn(
    "slack:C2",
    "summarise the thread",
    "Three people agreed to ship on Friday; QA still has two open bugs.",
  );
  await cycle("slack:C2");
  // The stuck phase: canned replies to different messages.
  turn("cli:cli:local", "status?", CANNED);
  await cycle("cli:cli:local");
  turn("cli:cli:local", "hello?", CANNED);
  await cycle("cli:cli:local");
  // A fallback calls a skipped judge again on the same transcript, twice; and a gate with a variant.
  await run("cli:cli:local", CYCLE[0]!);
  await run("cli:cli:local", CYCLE[0]!);
  await run("cli:cli:local", { judge: "regression_gate", model: SONNET }, "golden-1");
  turn("cli:cli:local", "are you there?", CANNED);
  await cycle("cli:cli:local");
  // The other key reaches its call cap (6 calls per window).
  turn(
    "slack:C2",
    "and the bugs?",
    "Both are in the auth flow: a token refresh race and a missing redirect.",
  );
  await cycle("slack:C2");
  turn("slack:C2", "who owns them?", "Dana owns the race, Lee the redirect; both expect fixes by Thursday.");
  await cycle("slack:C2");
  turn(
    "slack:C2",
    "any risk for Friday?",
    "Only the race: if its fix slips past Thursday, the release moves a week.",
  );
  await cycle("slack:C2");
  // Recovery: a real reply ends the episode and judging resumes.
  turn("cli:cli:local", "restart", "Restarted the session: the deploy finished and all 212 tests pass.");
  await cycle("cli:cli:local");
  return statuses;
}

const COLUMNS =
  "ts, session_key, judge, model, decision, reason, shadow, reserved_micros, charged_micros, saved_micros, input_tokens, output_tokens, turns, transcript_chars, transcript_hash";

function decisions(path: string): Array<Record<string, unknown>> {
  const db = new Database(path, { readonly: true });
  const rows = db.prepare(`SELECT ${COLUMNS} FROM decisions ORDER BY id`).all() as Array<
    Record<string, unknown>
  >;
  db.close();
  return rows;
}

describe("the sidecar and the in-process guard", () => {
  it("make the same decisions, with the same charges and savings, on the same traffic", async () => {
    const start = Date.parse("2026-11-20T08:00:00Z");
    const options = (clock: FakeClock, ledger: string): GuardOptions => ({
      ledger,
      clock,
      logger: "silent",
      sessionMaxCalls: 6,
    });

    const localDb = join(tmp(), "local.db");
    const localClock = new FakeClock(start);
    const guard = createGuard(options(localClock, localDb));
    const local = await drive(guard, localClock);
    const localStats = guard.stats;
    await guard.close();

    const sidecarDb = join(tmp(), "sidecar.db");
    const sidecarClock = new FakeClock(start);
    const sidecarGuard = createGuard(options(sidecarClock, sidecarDb));
    const server = await serve({ guard: sidecarGuard, log: createLogger("silent"), port: 0 });
    const remote = await drive(createClient({ url: server.url }), sidecarClock);
    const remoteStats = sidecarGuard.stats;
    await server.close();

    expect(remote).toEqual(local);
    // The sequence exercises what it claims: judged calls, stuck skips (repeats saving nothing),
    // a call-cap skip, and recovery.
    expect(local.filter((s) => s.endsWith("assess skip"))).toHaveLength(2);
    expect(local.at(-1)).toBe("cli:cli:local consolidation judged");
    const rows = decisions(localDb);
    expect(new Set(rows.map((r) => `${r.decision}:${r.reason}`))).toEqual(
      new Set(["judged:null", "skipped:stuck_session", "skipped:session_calls"]),
    );
    expect(rows.filter((r) => r.reason === "stuck_session" && r.saved_micros === 0)).toHaveLength(2);

    expect(decisions(sidecarDb)).toEqual(rows);
    expect(remoteStats.savedUsd).toBeCloseTo(localStats.savedUsd, 9);
    expect(remoteStats.chargedUsd).toBeCloseTo(localStats.chargedUsd, 9);
    expect(remoteStats.skipped).toEqual(localStats.skipped);
    expect(remoteStats.judged).toBe(localStats.judged);
  });
});
