import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { skipError } from "../../src/errors.js";
import {
  createGuard,
  type GuardEvent,
  type GuardOptions,
  isJudgeGuardError,
  isJudgeSkippedError,
  isStuckSessionError,
  type JudgeRequest,
  MemoryStore,
  SqliteStore,
  StuckSessionError,
  type StuckSessionEvent,
} from "../../src/index.js";
import { readLedger } from "../helpers/ledger.js";
import { CANNED, healthyReply } from "../helpers/replies.js";
import { FakeClock, useTempDir } from "../helpers/tmp.js";

const SONNET = "claude-sonnet-4-6";

/** A session that grows one turn per call, the way Phantom resends it. */
class Session {
  readonly users: string[] = [];
  readonly replies: string[] = [];
  constructor(readonly key = "cli:cli:local") {}
  turn(user: string, reply: string, judge = "observation_extraction"): JudgeRequest {
    this.users.push(user);
    this.replies.push(reply);
    return this.request(judge);
  }
  request(judge = "observation_extraction"): JudgeRequest {
    return {
      judge,
      model: SONNET,
      session: {
        session_key: this.key,
        user_messages: [...this.users],
        assistant_messages: [...this.replies],
      },
    };
  }
}

/** A judge that reports realistic usage and counts its calls. */
function fakeJudge(usage = { inputTokens: 2000, outputTokens: 600 }) {
  const judge = async () => {
    judge.calls++;
    return { verdict: "pass" as const, ...usage, costUsd: 0 };
  };
  judge.calls = 0;
  return judge;
}

const quiet = (o: GuardOptions = {}): GuardOptions => ({ ledger: new MemoryStore(), logger: "silent", ...o });

describe("Guard.run", () => {
  it("calls the judge and charges its usage at the model's price", async () => {
    const store = new MemoryStore();
    const guard = createGuard(quiet({ ledger: store }));
    const judge = fakeJudge();
    const s = new Session("k");
    const out = await guard.run(s.turn("hi", "Hello! What are we doing today?"), judge);
    expect(out.status).toBe("judged");
    // 2000 x $3/M + 600 x $15/M = $0.006 + $0.009
    expect(out.status === "judged" && out.costUsd).toBeCloseTo(0.015, 9);
    expect(judge.calls).toBe(1);
    expect(store.decisions).toHaveLength(1);
    expect(store.decisions[0]).toMatchObject({
      decision: "judged",
      chargedMicros: 15_000,
      inputTokens: 2000,
    });
    expect(store.openReservations).toBe(0);
    await guard.close();
  });

  it("skips a stuck session without calling the judge, and says why", async () => {
    const guard = createGuard(quiet());
    const judge = fakeJudge();
    const s = new Session();
    await guard.run(s.turn("hi", "Hello, how can I help?"), judge);
    await guard.run(s.turn("fix the build", CANNED), judge);
    const out = await guard.run(s.turn("hello?", CANNED), judge);
    expect(judge.calls).toBe(2);
    expect(out.status).toBe("skipped");
    if (out.status !== "skipped") return;
    expect(out.reason).toBe("stuck_session");
    expect(out.code).toBe("STUCK_SESSION");
    expect(out.error).toBeInstanceOf(StuckSessionError);
    expect(out.error.details).toMatchObject({ sessionKey: "cli:cli:local", repeats: 2 });
    expect(out.savedUsd).toBeGreaterThan(0);
    await guard.close();
  });

  it("call() throws the typed error, or returns the caller's substitute", async () => {
    const guard = createGuard(quiet());
    const s = new Session();
    s.turn("a", CANNED);
    const stuck = s.turn("b", CANNED);
    const err = await guard.call(stuck, fakeJudge()).catch((e: unknown) => e);
    expect(isStuckSessionError(err)).toBe(true);
    expect(isJudgeSkippedError(err, "STUCK_SESSION")).toBe(true);
    expect(isJudgeSkippedError(err, "GLOBAL_BUDGET")).toBe(false);
    expect((err as StuckSessionError).code).toBe("STUCK_SESSION");
    const gate = await guard.call(stuck, async () => ({ evolve: true, reason: "judged" }), {
      substitute: (skip) => ({ evolve: false, reason: skip.reason }),
    });
    expect(gate).toEqual({ evolve: false, reason: "stuck_session" });
    await guard.close();
  });

  it("the error guards work across copies of the package (brand, not instanceof)", () => {
    const foreign = Object.assign(new Error("x"), { code: "STUCK_SESSION", details: {} });
    expect(isJudgeGuardError(foreign)).toBe(false);
    const branded = Object.assign(foreign, { [Symbol.for("judge-guard.error")]: true });
    expect(isStuckSessionError(branded)).toBe(true);
  });

  it("resumes judging when the session recovers", async () => {
    const guard = createGuard(quiet());
    const judge = fakeJudge();
    const s = new Session();
    await guard.run(s.turn("a", CANNED), judge);
    expect((await guard.run(s.turn("b", CANNED), judge)).status).toBe("skipped");
    expect((await guard.run(s.turn("c", CANNED), judge)).status).toBe("skipped");
    const back = await guard.run(
      s.turn("d", "Sorry for the wait: the migration is done and tests pass."),
      judge,
    );
    expect(back.status).toBe("judged");
    expect(guard.session("cli:cli:local").stuck).toBe(false);
    await guard.close();
  });

  it("reuses the verdict of an identical request instead of paying twice", async () => {
    const guard = createGuard(quiet());
    const judge = fakeJudge();
    const s = new Session("k");
    const req = s.turn("what changed?", "Two files: api.ts and its test.");
    const first = await guard.run(req, judge);
    const second = await guard.run(req, judge);
    expect(judge.calls).toBe(1);
    expect(second.status).toBe("reused");
    expect(second.status === "reused" && second.savedUsd).toBeCloseTo(
      first.status === "judged" ? first.costUsd : -1,
      9,
    );
    // Another judge kind, model or variant on the same transcript is a different request.
    await guard.run({ ...req, judge: "consolidation" }, judge);
    await guard.run({ ...req, variant: "golden-2" }, judge);
    expect(judge.calls).toBe(3);
    await guard.close();
  });

  it("identical requests in flight share one call when they opt in (share: true)", async () => {
    const guard = createGuard(quiet());
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let calls = 0;
    const judge = async () => {
      calls++;
      await gate;
      return { inputTokens: 10, outputTokens: 10 };
    };
    const req = new Session("k").turn("x", "A real answer with some substance.");
    const shared = { share: true };
    const all = Promise.all([
      guard.run(req, judge, shared),
      guard.run(req, judge, shared),
      guard.run(req, judge, shared),
    ]);
    await new Promise((r) => setTimeout(r, 10));
    release();
    const outs = await all;
    expect(calls).toBe(1);
    expect(outs.map((o) => o.status).sort()).toEqual(["judged", "reused", "reused"]);
    await guard.close();
  });

  it("bounds judge calls in flight by the concurrency limit", async () => {
    const guard = createGuard(quiet({ concurrency: 2 }));
    let inFlight = 0;
    let peak = 0;
    const judge = async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      return { inputTokens: 1, outputTokens: 1 };
    };
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        guard.run(new Session(`k${i}`).turn("q", `distinct answer number ${"x".repeat(i)}`), judge),
      ),
    );
    expect(peak).toBe(2);
    await guard.close();
  });

  it("charges the partial cost a failing judge reports, releases the rest and rethrows", async () => {
    const store = new MemoryStore();
    const guard = createGuard(quiet({ ledger: store }));
    class JudgeSubprocessError extends Error {
      partialCost = { inputTokens: 1000, outputTokens: 100, costUsd: 0.0045, model: SONNET, durationMs: 900 };
    }
    const boom = new JudgeSubprocessError("subprocess died");
    const err = await guard
      .run(new Session("k").turn("q", "An answer."), async () => {
        throw boom;
      })
      .catch((e: unknown) => e);
    expect(err).toBe(boom);
    expect(store.decisions.at(-1)).toMatchObject({ decision: "failed", chargedMicros: 4500 });
    expect(store.openReservations).toBe(0);
    expect(guard.session("k").spentUsd).toBeCloseTo(0.0045, 9);
    await guard.close();
  });

  it("charges the estimate when the judge reports no usage, never $0", async () => {
    const store = new MemoryStore();
    const guard = createGuard(quiet({ ledger: store }));
    const out = await guard.run(new Session("k").turn("q", "An answer."), async () => "opaque");
    expect(out.status).toBe("judged");
    if (out.status !== "judged") return;
    expect(out.costUsd).toBeGreaterThan(0);
    // What was charged is what was reserved: the expected cost of the call.
    expect(out.costUsd).toBe(out.reservedUsd);
    expect(store.decisions[0]).toMatchObject({ decision: "judged", inputTokens: 0, outputTokens: 0 });
    expect(store.decisions[0]!.chargedMicros).toBe(store.decisions[0]!.reservedMicros);
    await guard.close();
  });

  it("charges a model with no price at the highest known rate, warning once", async () => {
    const warnings: unknown[] = [];
    const logger = {
      warn: (o: unknown) => warnings.push(o),
      info() {},
      debug() {},
      error() {},
      child: () => logger,
    };
    const guard = createGuard({ ledger: new MemoryStore(), logger: logger as never });
    const usage = { inputTokens: 1_000_000, outputTokens: 0 };
    const s = new Session("k");
    const a = await guard.run({ ...s.turn("q", "An answer."), model: "claude-mystery-9" }, async () => usage);
    await guard.run({ ...s.turn("q2", "Another answer."), model: "claude-mystery-9" }, async () => usage);
    // The highest input rate in the table is Opus 4.1's $15 per million.
    expect(a.status === "judged" && a.costUsd).toBeCloseTo(15, 9);
    expect(warnings).toHaveLength(1);
    await guard.close();
  });

  it("shadow mode decides and records everything but never blocks", async () => {
    const store = new MemoryStore();
    const guard = createGuard(quiet({ ledger: store, mode: "shadow" }));
    const judge = fakeJudge();
    const s = new Session();
    await guard.run(s.turn("a", CANNED), judge);
    const out = await guard.run(s.turn("b", CANNED), judge);
    expect(judge.calls).toBe(2);
    expect(out.status === "judged" && out.shadowReason).toBe("stuck_session");
    expect(store.decisions.at(-1)).toMatchObject({
      decision: "judged",
      reason: "stuck_session",
      shadow: true,
    });
    await guard.close();
  });

  it("rejects a malformed request with an error naming the field", async () => {
    const guard = createGuard(quiet());
    await expect(guard.run({ judge: "", model: SONNET, sessionKey: "k" }, fakeJudge())).rejects.toThrow(
      /judge must be a non-empty string/,
    );
    await expect(
      guard.run(
        {
          judge: "j",
          model: SONNET,
          session: { session_key: "k", user_messages: "nope" as never, assistant_messages: [] },
        },
        fakeJudge(),
      ),
    ).rejects.toThrow(/session\.user_messages must be an array/);
    await guard.close();
  });
});

describe("signals", () => {
  it("sends one signal per stuck episode with the episode's facts", async () => {
    const events: GuardEvent[] = [];
    const store = new MemoryStore();
    const clock = new FakeClock();
    const guard = createGuard(
      quiet({ ledger: store, clock, signals: [{ name: "callback", send: (e) => void events.push(e) }] }),
    );
    const s = new Session();
    for (let i = 0; i < 30; i++) {
      await guard.run(s.turn(`message ${i}`, CANNED), fakeJudge());
      clock.advance(10 * 60_000);
    }
    await guard.close();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: "stuck_session",
      session_key: "cli:cli:local",
      reason: "stuck_session",
      repeats: 2,
    });
    expect((events[0] as StuckSessionEvent).episode_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(store.signals).toEqual([expect.objectContaining({ channel: "callback", status: "delivered" })]);
  });

  it("retries a failed delivery after the cooldown, never in a storm", async () => {
    const clock = new FakeClock();
    let attempts = 0;
    const store = new MemoryStore();
    const guard = createGuard(
      quiet({
        ledger: store,
        clock,
        signalCooldownMs: 30 * 60_000,
        signals: [
          {
            name: "flaky",
            send: () => {
              attempts++;
              if (attempts < 3) throw new Error("receiver down");
            },
          },
        ],
      }),
    );
    const s = new Session();
    for (let i = 0; i < 40; i++) {
      await guard.run(s.turn(`m${i}`, CANNED), fakeJudge());
      await new Promise((r) => setImmediate(r));
      clock.advance(5 * 60_000);
    }
    await guard.close();
    // Fails at minute 5 and 35, delivered at 65: then never again for this episode.
    expect(attempts).toBe(3);
    expect(store.signals.map((x) => x.status)).toEqual(["failed", "failed", "delivered"]);
  });

  it("a new episode after recovery is signalled again", async () => {
    const events: GuardEvent[] = [];
    const guard = createGuard(quiet({ signals: [{ name: "cb", send: (e) => void events.push(e) }] }));
    const s = new Session();
    for (const reply of [CANNED, CANNED, "Back now, sorry. The deploy finished.", CANNED, CANNED]) {
      await guard.run(s.turn(`msg ${s.users.length}`, reply), fakeJudge());
    }
    await guard.close();
    expect(events).toHaveLength(2);
    expect((events[0] as StuckSessionEvent).episode_id).not.toBe((events[1] as StuckSessionEvent).episode_id);
  });
});

describe("budgets", () => {
  const usage = { inputTokens: 100_000, outputTokens: 0 }; // $0.30 on Sonnet
  const healthy = (s: Session, i: number) =>
    s.turn(`question ${i}`, healthyReply(i, "detail ".repeat(i % 7).trim()));

  it("stops a key at its USD cap within the window and lets it go again when the window moves", async () => {
    const clock = new FakeClock();
    const guard = createGuard(
      quiet({ clock, sessionBudgetUsd: 1, budgetWindowMs: 3_600_000, estimator: { defaultOutputTokens: 1 } }),
    );
    const s = new Session("k");
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await guard.run(healthy(s, i), async () => usage));
    expect(results.map((r) => r.status)).toEqual(["judged", "judged", "judged", "skipped", "skipped"]);
    const last = results[4]!;
    expect(last.status === "skipped" && last.code).toBe("SESSION_BUDGET");
    // The error says how much of which cap, and what to change.
    expect(last.status === "skipped" && last.error.message).toBe(
      "session k reached its judge budget ($0.9000 of $1.00 in its window): judge not called (raise JUDGE_GUARD_SESSION_BUDGET_USD, or wait for the window to roll)",
    );
    expect(guard.session("k").spentUsd).toBeCloseTo(0.9, 9);
    clock.advance(3_600_000 + 60_000);
    expect((await guard.run(healthy(s, 5), async () => usage)).status).toBe("judged");
    await guard.close();
  });

  it("a refusal because of the calls in flight says so, and what to change", () => {
    const details = { sessionKey: "k", judge: "j", model: "m", savedUsd: 0.01, used: 0.9, cap: 1 };
    expect(skipError("SESSION_BUDGET", { ...details, concurrency: true }).message).toBe(
      "session k could pass its judge budget ($0.9000 of $1.00 in its window) with the calls in flight, which the call waited for in vain: judge not called (raise JUDGE_GUARD_ADMISSION_WAIT, lower JUDGE_GUARD_CONCURRENCY, or raise JUDGE_GUARD_SESSION_BUDGET_USD)",
    );
    expect(skipError("GLOBAL_BUDGET", { ...details, used: 40, cap: 50 }).message).toBe(
      "the deployment reached its global judge budget ($40.00 of $50.00 in the last 24 hours): judge not called (raise JUDGE_GUARD_DAILY_BUDGET_USD, or wait for the window to roll)",
    );
  });

  it("caps calls per key, and counts the global budget across keys", async () => {
    const guard = createGuard(
      quiet({ sessionMaxCalls: 2, dailyBudgetUsd: 1, estimator: { defaultOutputTokens: 1 } }),
    );
    const a = new Session("a");
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const o = await guard.run(healthy(a, i), async () => usage);
      statuses.push(o.status === "skipped" ? o.code : o.status);
    }
    expect(statuses).toEqual(["judged", "judged", "SESSION_CALLS"]);
    await expect(guard.call(healthy(a, 3), async () => usage)).rejects.toThrow(
      "session a reached its judge call limit (2 of 2 calls in its window): judge not called (raise JUDGE_GUARD_SESSION_MAX_CALLS",
    );
    const b = new Session("b");
    const more = [];
    for (let i = 0; i < 3; i++) {
      const o = await guard.run(healthy(b, i), async () => usage);
      more.push(o.status === "skipped" ? o.code : o.status);
    }
    // $0.60 spent by a; b gets one $0.30 call, then the global $1 cap refuses.
    expect(more).toEqual(["judged", "GLOBAL_BUDGET", "GLOBAL_BUDGET"]);
    await guard.close();
  });

  it("learns realistic output sizes so reservations do not cut a session off early", async () => {
    const guard = createGuard(quiet({ sessionBudgetUsd: 0.5 }));
    const s = new Session("k");
    let judged = 0;
    for (let i = 0; i < 60; i++) {
      const o = await guard.run(healthy(s, i), async () => ({ inputTokens: 1500, outputTokens: 300 }));
      if (o.status === "judged") judged++;
    }
    // Each call costs $0.009: the cap allows 55; a reservation at max_tokens would stop far sooner.
    expect(judged).toBeGreaterThanOrEqual(53);
    expect(guard.session("k").spentUsd).toBeLessThanOrEqual(0.5);
    await guard.close();
  });

  it.each([
    ["in memory", () => new MemoryStore()],
    ["on a SQLite file", (dir: string) => new SqliteStore(join(dir, "ledger.db"))],
  ])("many concurrent calls never overspend a cap by more than one call (%s)", async (_name, makeStore) => {
    const tmp = useTempDirInline();
    const store = makeStore(tmp);
    const guard = createGuard({
      ledger: store,
      logger: "silent",
      concurrency: 64,
      sessionBudgetUsd: 2,
      dailyBudgetUsd: 5,
      verdictTtlMs: 0,
    });
    // A judge that writes up to its max_tokens: 500 input and 20,000 output tokens on Sonnet.
    const callCost = 0.0015 + 0.3;
    const judge = async () => {
      await new Promise((r) => setTimeout(r, Math.random() * 5));
      return { inputTokens: 500, outputTokens: 20_000 };
    };
    const runs = [];
    for (let k = 0; k < 4; k++) {
      for (let i = 0; i < 50; i++)
        runs.push(
          guard.run(
            {
              judge: "j",
              model: SONNET,
              sessionKey: `key${k}`,
              userMessages: [`q${i}`],
              assistantMessages: [`a${i} with substance`],
              maxTokens: 20_000,
            },
            judge,
          ),
        );
    }
    const outs = await Promise.all(runs);
    const spent = [0, 1, 2, 3].map((k) => guard.session(`key${k}`).spentUsd);
    for (const x of spent) expect(x).toBeLessThanOrEqual(2 + callCost + 1e-9);
    expect(spent.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(5 + callCost + 1e-9);
    expect(outs.filter((o) => o.status === "judged").length).toBeGreaterThan(0);
    await guard.close();
    store.close();
  });
});

// Tests that need a folder; useTempDir registers cleanup per test.
const tempDir = useTempDir();
function useTempDirInline(): string {
  return tempDir();
}

describe("operator actions and options", () => {
  it("shadow mode records the signal it would send and sends nothing", async () => {
    const events: GuardEvent[] = [];
    const store = new MemoryStore();
    const guard = createGuard(
      quiet({ ledger: store, mode: "shadow", signals: [{ name: "cb", send: (e) => void events.push(e) }] }),
    );
    const s = new Session();
    for (let i = 0; i < 4; i++) await guard.run(s.turn(`m${i}`, CANNED), fakeJudge());
    await guard.close();
    expect(events).toEqual([]);
    expect(store.signals).toEqual([expect.objectContaining({ channel: "cb", status: "shadow" })]);
  });

  it("resetSession ends the episode: judging resumes until new canned replies pile up again", async () => {
    const guard = createGuard(quiet({ builtinPatterns: false }));
    const judge = fakeJudge();
    const s = new Session();
    const line = "Sorry, I am unable to process requests right now. Try again later.";
    for (const q of ["deploy it", "are you there?", "status please"]) await guard.run(s.turn(q, line), judge);
    expect(guard.session("cli:cli:local").stuck).toBe(true);
    guard.resetSession("cli:cli:local");
    expect(guard.session("cli:cli:local").stuck).toBe(false);
    // The line is now a known canned line: 2 new repeats make the key stuck again, 1 does not.
    expect((await guard.run(s.turn("hello?", line), judge)).status).toBe("judged");
    expect((await guard.run(s.turn("anyone", line), judge)).status).toBe("skipped");
    await guard.close();
  });

  it("forgetCanned removes a false positive from the registry", async () => {
    const store = new MemoryStore();
    const guard = createGuard(quiet({ ledger: store, builtinPatterns: false }));
    const line = "Your report is being generated and will be emailed to you shortly.";
    const s = new Session("k");
    // (Asks that do not name what the line is about: a line that answers about what was asked is
    // weighed as an answer that repeats.)
    for (const q of ["weekly summary", "monthly numbers", "the churn chart"])
      await guard.run(s.turn(q, line), fakeJudge());
    const fp = guard.session("k").fingerprint!;
    expect(store.cannedFingerprints()).toEqual([fp]);
    guard.forgetCanned(fp);
    expect(store.cannedFingerprints()).toEqual([]);
    // Another session repeating the line twice is no longer flagged.
    const other = new Session("k2");
    await guard.run(other.turn("sales figures", line), fakeJudge());
    expect((await guard.run(other.turn("cost breakdown", line), fakeJudge())).status).toBe("judged");
    await guard.close();
  });

  it("refuses two signal sinks with the same name", () => {
    const sink = { name: "callback", send: () => {} };
    expect(() => createGuard(quiet({ signals: [sink, { ...sink }] }))).toThrow(
      /option signals must be sinks with distinct names .*got "callback"/,
    );
  });

  it.each<[string, GuardOptions, RegExp]>([
    [
      "a ledger that is neither a path nor a store",
      { ledger: 42 as never },
      /option ledger must be a file path, ":memory:", or a LedgerStore .*got 42/,
    ],
    ["an empty ledger path", { ledger: "" }, /option ledger must be a file path/],
    [
      "an unknown log level",
      { logger: "loud" as never },
      /option logger must be a pino logger or one of silent, .*got "loud"/,
    ],
  ])("refuses %s with a ConfigError naming the option", (_n, options, message) => {
    const attempt = () => createGuard({ logger: "silent", ...options });
    expect(attempt).toThrow(message);
    expect(attempt).toThrow(expect.objectContaining({ code: "CONFIG_INVALID" }));
  });

  it("charges the model that really ran when the judge reports it", async () => {
    const guard = createGuard(quiet());
    const out = await guard.run(
      { ...new Session("k").turn("q", "An answer."), model: "claude-haiku-4-5" },
      async () => ({
        model: "claude-opus-4-6",
        inputTokens: 1000,
        outputTokens: 100,
      }),
    );
    // Opus 4.6: 1000 x $5/M + 100 x $25/M, not Haiku's $0.0015.
    expect(out.status === "judged" && out.costUsd).toBeCloseTo(0.0075, 9);
    await guard.close();
  });

  it("verdicts for identical requests expire on the guard's clock", async () => {
    const clock = new FakeClock();
    const guard = createGuard(quiet({ clock, verdictTtlMs: 60_000 }));
    const judge = fakeJudge();
    const req = new Session("k").turn("q", "An answer with substance.");
    await guard.run(req, judge);
    clock.advance(30_000);
    expect((await guard.run(req, judge)).status).toBe("reused");
    clock.advance(31_000);
    expect((await guard.run(req, judge)).status).toBe("judged");
    expect(judge.calls).toBe(2);
    await guard.close();
  });

  it("a settlement the ledger refuses (locked beyond its busy timeout) is kept and written once it answers again", async () => {
    const path = join(tempDir(), "ledger.db");
    const store = new SqliteStore(path, { busyTimeoutMs: 20, backgroundCheckpoints: false });
    const guard = createGuard({ ledger: store, logger: "silent" });
    const other = new Database(path);
    const out = await guard.run(new Session("k").turn("q", "An answer."), async () => {
      other.exec("BEGIN IMMEDIATE"); // another process takes the write lock while the judge runs
      return { inputTokens: 2000, outputTokens: 600 };
    });
    expect(out.status).toBe("judged");
    expect(guard.stats.unsettled).toBe(1);
    other.exec("COMMIT");
    other.close();
    await guard.close();
    readLedger(path, (db) => {
      const decisions = db.prepare("SELECT decision, charged_micros AS c FROM decisions").all();
      expect(decisions).toEqual([{ decision: "judged", c: 15_000 }]);
      expect(db.prepare("SELECT count(*) AS n FROM reservations").get()).toEqual({ n: 0 });
    });
    expect(guard.session("k").spentUsd).toBeCloseTo(0.015, 9);
    store.close();
  });
});
