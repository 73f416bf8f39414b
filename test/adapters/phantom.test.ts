import { describe, expect, it } from "vitest";
import {
  createGuard,
  currentSession,
  guardAfterSession,
  guardAnthropicClient,
  guardCallJudge,
  guardRunJudgeQuery,
  isStuckSessionError,
  MemoryStore,
  type PhantomSessionSummary,
  withSession,
} from "../../src/index.js";
import { CANNED, CANNED_MAIN } from "../helpers/replies.js";

/** Stands for current main's gate result schema object (a zod schema there). */
const GateSchema = { name: "EvolutionGate" };

/** A Phantom v0.18.2 SessionSummary for the conversation so far. */
function summary(key: string, turns: Array<[string, string]>, stuck = false): PhantomSessionSummary {
  return {
    session_id: stuck ? "" : "sdk_0af3",
    session_key: key,
    user_id: "local",
    user_messages: turns.map((t) => t[0]),
    assistant_messages: turns.map((t) => t[1]),
    tools_used: [],
    files_tracked: [],
    outcome: "success",
    cost_usd: stuck ? 0 : 0.02,
    started_at: "2026-11-20T08:00:00Z",
    ended_at: "2026-11-20T08:05:00Z",
  };
}

const healthy = summary("slack:C1", [["deploy the api", "Deployed api 4.2 to staging; smoke tests pass."]]);
const stuck = summary(
  "cli:cli:local",
  [
    ["hi", "Hello! What are we working on?"],
    ["fix the tests", CANNED],
    ["hello?", CANNED],
  ],
  true,
);

/** Phantom v0.18.2's callJudge: a JudgeResult with tokens and cost. */
function fakeCallJudge() {
  const calls: string[] = [];
  const callJudge = async (p: {
    model: string;
    systemPrompt: string;
    userMessage: string;
    schemaName?: string;
  }) => {
    calls.push(p.schemaName ?? "?");
    return {
      verdict: "pass" as const,
      confidence: 0.9,
      reasoning: "ok",
      data: {},
      model: p.model,
      inputTokens: 2000,
      outputTokens: 500,
      costUsd: 0.0135,
      durationMs: 1200,
    };
  };
  return { callJudge, calls };
}

describe("guardAfterSession", () => {
  it("skips the whole cycle of a stuck session and runs a healthy one inside its context", async () => {
    const guard = createGuard({ ledger: new MemoryStore(), logger: "silent" });
    const seen: Array<string | undefined> = [];
    const afterSession = async (_s: PhantomSessionSummary) => {
      // The session the cycle runs in, as the adapters below see it (not the argument).
      seen.push((currentSession() as PhantomSessionSummary | undefined)?.session_key);
      return { changes: 1 };
    };
    const wrapped = guardAfterSession(guard, afterSession, {
      skipped: (v) => ({ changes: 0, skipped: v.stuck }),
    });
    expect(await wrapped(healthy)).toEqual({ changes: 1 });
    expect(await wrapped(stuck)).toEqual({ changes: 0, skipped: true });
    expect(seen).toEqual(["slack:C1"]);
    await guard.close();
  });
});

describe("guardAfterSession, what it records", () => {
  it("records a skipped cycle's judges with their estimated cost", async () => {
    const store = new MemoryStore();
    const guard = createGuard({ ledger: store, logger: "silent" });
    const wrapped = guardAfterSession(guard, async () => "ran", { skipped: () => "skipped" });
    expect(await wrapped(stuck)).toBe("skipped");
    expect(store.decisions.map((d) => [d.judge, d.decision, d.reason])).toEqual([
      ["observation_extraction", "skipped", "stuck_session"],
      ["consolidation", "skipped", "stuck_session"],
    ]);
    expect(store.decisions.every((d) => d.savedMicros > 0)).toBe(true);
    expect(guard.stats.skipped.stuck_session).toBe(2);
    await guard.close();
  });

  it("in shadow mode runs the cycle anyway", async () => {
    const guard = createGuard({ ledger: new MemoryStore(), logger: "silent", mode: "shadow" });
    const wrapped = guardAfterSession(guard, async () => "ran", { skipped: () => "skipped" });
    expect(await wrapped(stuck)).toBe("ran");
    expect(guard.session("cli:cli:local").stuck).toBe(true);
    await guard.close();
  });
});

describe("guardCallJudge (v0.18.2)", () => {
  it("charges each judge call of a session with the JudgeResult's tokens", async () => {
    const store = new MemoryStore();
    const guard = createGuard({ ledger: store, logger: "silent" });
    const { callJudge, calls } = fakeCallJudge();
    const guarded = guardCallJudge(guard, callJudge);
    const r = await withSession(healthy, () =>
      guarded({
        model: "claude-sonnet-4-6",
        systemPrompt: "You extract observations.",
        userMessage: "transcript...",
        schemaName: "observation_extraction",
      }),
    );
    expect(r.verdict).toBe("pass");
    expect(calls).toEqual(["observation_extraction"]);
    // 2000 x $3/M + 500 x $15/M
    expect(store.decisions).toEqual([
      expect.objectContaining({ judge: "observation_extraction", decision: "judged", chargedMicros: 13_500 }),
    ]);
    await guard.close();
  });

  it("throws the typed error for a stuck session (v0.18.2 call sites catch it) and never calls the judge", async () => {
    const guard = createGuard({ ledger: new MemoryStore(), logger: "silent" });
    const { callJudge, calls } = fakeCallJudge();
    const guarded = guardCallJudge(guard, callJudge);
    const err = await withSession(stuck, () =>
      guarded({ model: "claude-sonnet-4-6", systemPrompt: "s", userMessage: "u" }),
    ).catch((e) => e);
    expect(isStuckSessionError(err)).toBe(true);
    expect(calls).toEqual([]);
    await guard.close();
  });

  it("keeps golden cases apart: different prompts on one transcript are not one request", async () => {
    const guard = createGuard({ ledger: new MemoryStore(), logger: "silent" });
    const { callJudge, calls } = fakeCallJudge();
    const guarded = guardCallJudge(guard, callJudge);
    await withSession(healthy, async () => {
      for (const c of ["case 1", "case 2", "case 1"]) {
        await guarded({
          model: "claude-haiku-4-5",
          systemPrompt: "regression",
          userMessage: c,
          schemaName: "regression_gate",
        });
      }
    });
    expect(calls).toHaveLength(2); // the repeated case 1 reuses its verdict
    await guard.close();
  });
});

describe("guardRunJudgeQuery (current main)", () => {
  class JudgeSubprocessError extends Error {
    partialCost = {
      inputTokens: 3000,
      outputTokens: 200,
      costUsd: 0.004,
      model: "claude-haiku-4-5",
      durationMs: 30_000,
    };
  }

  it("charges a failed subprocess's partial cost and rethrows its error", async () => {
    const store = new MemoryStore();
    const guard = createGuard({ ledger: store, logger: "silent" });
    const boom = new JudgeSubprocessError("subprocess exited with 137");
    const guarded = guardRunJudgeQuery(guard, async () => {
      throw boom;
    });
    const err = await withSession(healthy, () =>
      guarded({}, { systemPrompt: "reflect", userMessage: "..." }),
    ).catch((e) => e);
    expect(err).toBe(boom);
    // 3000 x $1/M + 200 x $5/M on Haiku
    expect(store.decisions).toEqual([expect.objectContaining({ decision: "failed", chargedMicros: 4000 })]);
    await guard.close();
  });

  it("answers the gate 'do not evolve' for a stuck session, never an error", async () => {
    const guard = createGuard({ ledger: new MemoryStore(), logger: "silent" });
    let called = 0;
    const runJudgeQuery = async () => {
      called++;
      return { verdict: "pass", data: { evolve: true } };
    };
    const guarded = guardRunJudgeQuery(guard, runJudgeQuery, {
      isGate: (p) => p.schema === GateSchema,
    });
    const failureSummary = {
      ...stuck,
      assistant_messages: stuck.assistant_messages.map((a) => (a === CANNED ? CANNED_MAIN : a)),
      outcome: "failure" as const,
    };
    const gate = await withSession(failureSummary, () =>
      guarded(
        {},
        // Current main's parameters: the gate is told apart by its result schema.
        { systemPrompt: "gate", userMessage: "...", schema: GateSchema, model: "claude-haiku-4-5" },
      ),
    );
    expect(called).toBe(0);
    expect(gate).toMatchObject({ data: { evolve: false }, costUsd: 0 });
    await guard.close();
  });
});

describe("guardAnthropicClient", () => {
  it("guards messages.create and messages.parse inside a session and passes everything else through", async () => {
    const store = new MemoryStore();
    const guard = createGuard({ ledger: store, logger: "silent" });
    let created = 0;
    const client = {
      apiKey: "sk-test",
      messages: {
        async create(p: { model: string; [k: string]: unknown }) {
          created++;
          return {
            id: "msg_1",
            model: p.model,
            content: [],
            usage: { input_tokens: 1000, output_tokens: 100, cache_read_input_tokens: 5000 },
          };
        },
        async parse(p: { model: string; [k: string]: unknown }) {
          return this.create(p);
        },
        countTokens: () => 42,
      },
    };
    const wrapped = guardAnthropicClient(guard, client, { judgeOf: () => "quality_assessment" });
    expect(wrapped.apiKey).toBe("sk-test");
    expect(wrapped.messages.countTokens()).toBe(42);
    const params = {
      model: "claude-sonnet-4-6",
      max_tokens: 4096,
      system: "judge",
      messages: [{ role: "user", content: "x" }],
    };
    await withSession(healthy, () => wrapped.messages.create(params));
    await withSession(healthy, () => wrapped.messages.parse({ ...params, system: "another judge" }));
    // Outside a session it is the plain client.
    await wrapped.messages.create(params);
    expect(created).toBe(3);
    // 1000 x $3/M + 100 x $15/M + 5000 x $0.30/M
    expect(store.decisions.map((d) => d.chargedMicros)).toEqual([6000, 6000]);
    const err = await withSession(stuck, () => wrapped.messages.create(params)).catch((e) => e);
    expect(isStuckSessionError(err)).toBe(true);
    expect(created).toBe(3);
    await guard.close();
  });
});
