import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import {
  createGuard,
  type GuardOptions,
  type JudgeRequest,
  type LedgerStore,
  MemoryStore,
  SqliteStore,
} from "../../src/index.js";
import { buildReport } from "../../src/report/report.js";
import { applyMigration, SCHEMA_VERSION } from "../../src/store/migrations.js";
import type { DecisionRecord } from "../../src/store/types.js";
import { readLedger } from "../helpers/ledger.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const SONNET = "claude-sonnet-4-6";
const HAIKU = "claude-haiku-4-5-20251001";

const replies = [
  "The build fails because the lockfile pins an old compiler.",
  "I updated the compiler pin and the tests pass now.",
  "The flaky test waits on a timer; I replaced it with an event.",
  "Deployment is green; I wrote up the rollback steps.",
  "The migration keeps every row and adds two columns.",
  "Two processes share the ledger and neither overspends.",
  "The report reads its caps from the ledger now.",
  "I removed the dead branch and the coverage holds.",
  "The cache now expires entries after an hour of disuse.",
  "Both replicas answer health checks within a second again.",
  "The importer skips malformed rows and reports each one.",
];

function request(key: string, i: number, judge = "observation_extraction"): JudgeRequest {
  return {
    judge,
    model: SONNET,
    session: { session_key: key, user_messages: [`question ${i}`], assistant_messages: [replies[i]!] },
  };
}

/** What each kind of judge returns, and what the guard must make of it. */
const judges: Array<{
  name: string;
  result: unknown;
  charged: number | "estimate";
  source: "reported" | "computed" | "estimate";
  computed: number | null;
  model?: string;
  inputTokens?: number;
}> = [
  {
    // Phantom's JudgeResult of a cache-heavy judge: its tokens do not show the cache, its cost does.
    name: "Phantom JudgeResult with costUsd",
    result: { verdict: "pass", inputTokens: 1200, outputTokens: 300, costUsd: 0.22, model: SONNET },
    charged: 220_000,
    source: "reported",
    computed: 1200 * 3 + 300 * 15,
    inputTokens: 1200,
  },
  {
    name: "Agent SDK result message",
    result: {
      type: "result",
      subtype: "success",
      total_cost_usd: 0.05,
      usage: { input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 50_000 },
      modelUsage: { [HAIKU]: { inputTokens: 10, outputTokens: 20, costUSD: 0.05 } },
    },
    charged: 50_000,
    source: "reported",
    computed: 10 * 1 + 20 * 5 + 50_000 * 0.1,
    model: HAIKU,
    inputTokens: 10,
  },
  {
    name: "Phantom's reflection subprocess result (a cost, no tokens)",
    result: { ok: true, costUsd: 0.031 },
    charged: 31_000,
    source: "reported",
    computed: null,
    inputTokens: 0,
  },
  {
    name: "tokens only",
    result: { inputTokens: 1000, outputTokens: 100 },
    charged: 1000 * 3 + 100 * 15,
    source: "computed",
    computed: 1000 * 3 + 100 * 15,
  },
  {
    name: "a placeholder cost of 0 beside real tokens",
    result: { inputTokens: 1000, outputTokens: 100, costUsd: 0 },
    charged: 1000 * 3 + 100 * 15,
    source: "computed",
    computed: 1000 * 3 + 100 * 15,
  },
  {
    // Issue 14: an OpenAI usage was charged at the estimate ($0.017 for a 100k-token call).
    name: "an OpenAI Chat Completion (100k prompt tokens, 20k of them cached)",
    result: {
      object: "chat.completion",
      model: "gpt-4.1-2025-04-14",
      choices: [],
      usage: {
        prompt_tokens: 100_000,
        completion_tokens: 1000,
        total_tokens: 101_000,
        prompt_tokens_details: { cached_tokens: 20_000, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0 },
      },
    },
    charged: 80_000 * 2 + 20_000 * 0.5 + 1000 * 8,
    source: "computed",
    computed: 80_000 * 2 + 20_000 * 0.5 + 1000 * 8,
    model: "gpt-4.1-2025-04-14",
    inputTokens: 80_000,
  },
  {
    name: "an OpenAI Responses result (reasoning tokens are output)",
    result: {
      object: "response",
      model: "o4-mini-2025-04-16",
      output: [],
      usage: {
        input_tokens: 10_000,
        input_tokens_details: { cached_tokens: 4000 },
        output_tokens: 3000,
        output_tokens_details: { reasoning_tokens: 2500 },
        total_tokens: 13_000,
      },
    },
    charged: 6600 + 1100 + 13_200,
    source: "computed",
    computed: 6600 + 1100 + 13_200,
    model: "o4-mini-2025-04-16",
    inputTokens: 6000,
  },
  {
    name: "a Gemini GenerateContentResponse (thinking tokens are output)",
    result: {
      candidates: [],
      modelVersion: "gemini-2.5-flash",
      usageMetadata: {
        promptTokenCount: 12_000,
        cachedContentTokenCount: 10_000,
        candidatesTokenCount: 500,
        thoughtsTokenCount: 1500,
        totalTokenCount: 14_000,
      },
    },
    charged: 2000 * 0.3 + 10_000 * 0.03 + 2000 * 2.5,
    source: "computed",
    computed: 2000 * 0.3 + 10_000 * 0.03 + 2000 * 2.5,
    model: "gemini-2.5-flash",
    inputTokens: 2000,
  },
  {
    name: "nothing usable",
    result: "an opaque verdict",
    charged: "estimate",
    source: "estimate",
    computed: null,
  },
];

const quiet = (ledger: string | LedgerStore, o: GuardOptions = {}) =>
  createGuard({ ledger, logger: "silent", sessionBudgetUsd: 100, dailyBudgetUsd: 100, ...o });

type Row = { cost_source: string | null; computed_micros: number | null; charged_micros: number } & Record<
  string,
  unknown
>;
const rows = (path: string): Row[] => {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare("SELECT * FROM decisions ORDER BY ts, id").all() as Row[];
  } finally {
    db.close();
  }
};

describe("the charge is the judge's reported cost, and the ledger says where it came from", () => {
  it.each(judges.map((j, i) => [j.name, j, i] as const))("%s", async (_name, j, i) => {
    const path = join(tmp(), "ledger.db");
    const guard = quiet(path);
    const out = await guard.run(request(`k${i}`, i), async () => j.result);
    await guard.close();
    expect(out.status).toBe("judged");
    const [row] = rows(path);
    const charged = j.charged === "estimate" ? Number(row!.reserved_micros) : j.charged;
    expect(charged).toBeGreaterThan(0);
    expect(row).toMatchObject({
      decision: "judged",
      charged_micros: charged,
      cost_source: j.source,
      computed_micros: j.computed,
      ...(j.model && { model: j.model }),
      ...(j.inputTokens !== undefined && { input_tokens: j.inputTokens }),
    });
    if (out.status === "judged") expect(out.costUsd).toBeCloseTo(charged / 1e6, 9);
  });

  it("the MemoryStore keeps the same source and computed cost as the SQLite ledger", async () => {
    const path = join(tmp(), "ledger.db");
    const memory = new MemoryStore();
    for (const ledger of [path, memory]) {
      const guard = quiet(ledger);
      for (const [i, j] of judges.entries()) await guard.run(request(`k${i}`, i), async () => j.result);
      await guard.close();
    }
    const fromFile = rows(path).map((r) => [r.cost_source, r.computed_micros, r.charged_micros]);
    const fromMemory = memory.decisions.map((d) => [d.costSource, d.computedMicros, d.chargedMicros]);
    expect(fromMemory).toEqual(fromFile);
    expect(fromFile.map((r) => r[0])).toEqual(judges.map((j) => j.source));
  });

  it("a cost that is not a finite number >= 0 falls back to tokens x price", async () => {
    const path = join(tmp(), "ledger.db");
    const costs = [Number.NaN, -0.5, Number.POSITIVE_INFINITY];
    let n = 0;
    const guard = quiet(path, {
      usageOf: () => ({ usage: { inputTokens: 1000, outputTokens: 100 }, costUsd: costs[n++]! }),
    });
    for (let i = 0; i < costs.length; i++) await guard.run(request(`k${i}`, i), async () => ({}));
    await guard.close();
    expect(rows(path).map((r) => [r.cost_source, r.charged_micros, r.computed_micros])).toEqual(
      costs.map(() => ["computed", 4500, 4500]),
    );
  });

  it("a failing judge is charged the partial cost it reports, recorded as reported", async () => {
    const path = join(tmp(), "ledger.db");
    const guard = quiet(path);
    const boom = Object.assign(new Error("subprocess died"), {
      partialCost: { inputTokens: 50, outputTokens: 0, costUsd: 0.012 },
    });
    await expect(
      guard.run(request("k", 0), async () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    await guard.close();
    expect(rows(path)[0]).toMatchObject({
      decision: "failed",
      charged_micros: 12_000,
      cost_source: "reported",
      computed_micros: 150,
    });
  });

  it("through admit and settle (the sidecar): a reported cost wins, an expired call is an estimate", async () => {
    const path = join(tmp(), "ledger.db");
    const guard = quiet(path);
    const a = await guard.admit(request("a", 0));
    const b = await guard.admit(request("b", 1));
    if (a.status !== "admitted" || b.status !== "admitted") throw new Error("not admitted");
    expect(
      guard.settle(a.reservationId, {
        ok: true,
        usage: { inputTokens: 100, outputTokens: 10 },
        costUsd: 0.4,
      }),
    ).toEqual({ costUsd: 0.4 });
    guard.settle(b.reservationId, { ok: false, expired: true });
    await guard.close();
    const [ra, rb] = rows(path);
    expect(ra).toMatchObject({ cost_source: "reported", charged_micros: 400_000, computed_micros: 450 });
    expect(rb).toMatchObject({ decision: "failed", cost_source: "estimate", computed_micros: null });
    expect(rb!.charged_micros).toBe(rb!.reserved_micros);
  });

  it("the reported cost is what counts against the session cap", async () => {
    const path = join(tmp(), "ledger.db");
    const guard = quiet(path, { sessionBudgetUsd: 1 });
    for (let i = 0; i < 3; i++)
      await guard.run(request("k", i), async () => ({ inputTokens: 1200, outputTokens: 300, costUsd: 0.22 }));
    // Tokens x price would say 3 x $0.0081.
    expect(guard.session("k").spentUsd).toBeCloseTo(0.66, 9);
    await guard.close();
  });
});

describe("schema v4", () => {
  const old: Omit<DecisionRecord, "ts"> = {
    sessionKey: "k",
    judge: "j",
    model: SONNET,
    decision: "judged",
    reason: null,
    shadow: false,
    reservedMicros: 0,
    chargedMicros: 0,
    savedMicros: 0,
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    turns: 1,
    transcriptChars: 1,
    transcriptHash: "h",
    durationMs: 1,
    episodeId: null,
  };

  it("upgrading a v3 ledger keeps every row; a report reads its rows with tokens as computed", () => {
    const path = join(tmp(), "v3.db");
    const db = new Database(path);
    for (let v = 0; v < 3; v++) applyMigration(db, v);
    db.pragma("user_version = 3");
    const insert = db.prepare(
      "INSERT INTO decisions (id, ts, session_key, judge, model, decision, charged_micros, input_tokens, output_tokens) VALUES (?, ?, 'k', 'j', ?, ?, ?, ?, ?)",
    );
    insert.run(1000 * 1024, 1000, SONNET, "judged", 4500, 1000, 100); // priced by its tokens
    insert.run(1001 * 1024, 1001, SONNET, "judged", 7000, 0, 0); // a cost alone, or an estimate
    insert.run(1002 * 1024, 1002, SONNET, "skipped", 0, 0, 0);
    db.close();
    // Read before the upgrade (the report never migrates)...
    const before = buildReport(path, { since: 0, until: 2000 }).totals;
    const store = new SqliteStore(path, { backgroundCheckpoints: false });
    const upgraded = readLedger(path, (db) => ({
      version: db.pragma("user_version", { simple: true }),
      rows: db
        .prepare("SELECT charged_micros, cost_source, computed_micros FROM decisions ORDER BY id")
        .all(),
    }));
    expect(upgraded.version).toBe(SCHEMA_VERSION);
    expect(upgraded.rows).toEqual([
      { charged_micros: 4500, cost_source: null, computed_micros: null },
      { charged_micros: 7000, cost_source: null, computed_micros: null },
      { charged_micros: 0, cost_source: null, computed_micros: null },
    ]);
    // ...and after it, with a row of this version beside them.
    store.recordDecision({
      ...old,
      ts: 1500,
      chargedMicros: 20_000,
      inputTokens: 10,
      costSource: "reported",
      computedMicros: 30,
    });
    store.close();
    expect(before).toMatchObject({
      charged_usd: 0.0115,
      computed_usd: 0.0045,
      reported_usd: 0,
      unknown_source_usd: 0.007,
      calls_by_cost_source: { reported: 0, computed: 1, estimate: 0, unknown: 1 },
    });
    expect(buildReport(path, { since: 0, until: 2000 }).totals).toMatchObject({
      charged_usd: 0.0315,
      computed_usd: 0.0045,
      reported_usd: 0.02,
      reported_computed_usd: 0.00003,
      unknown_source_usd: 0.007,
      calls_by_cost_source: { reported: 1, computed: 1, estimate: 0, unknown: 1 },
    });
  });

  it("records a guard's caps when it opens the ledger, once while they stay the same", async () => {
    const path = join(tmp(), "ledger.db");
    let now = Date.parse("2026-11-20T08:00:00Z");
    const clock = { now: () => now };
    for (const sessionBudgetUsd of [0.02, 0.02, 3]) {
      await createGuard({ ledger: path, logger: "silent", clock, sessionBudgetUsd, mode: "shadow" }).close();
      now += 60_000;
    }
    await createGuard({ ledger: path, logger: "silent", clock, sessionMaxCalls: Infinity }).close();
    // Caps per judge kind are recorded too (the order of the named kinds does not matter).
    const judges = { judgeBudgetUsd: 1, judgeBudgetsUsd: { q: Infinity, gate: 0.5 } };
    const same = { judgeBudgetUsd: 1, judgeBudgetsUsd: { gate: 0.5, q: Infinity } };
    for (const caps of [judges, same]) {
      now += 60_000;
      await createGuard({
        ledger: path,
        logger: "silent",
        clock,
        sessionMaxCalls: Infinity,
        ...caps,
      }).close();
    }
    const store = new SqliteStore(path, { backgroundCheckpoints: false });
    const configs = store.configs();
    store.close();
    expect(configs.map(({ ownerId: _, ...c }) => c)).toEqual([
      {
        startedMs: Date.parse("2026-11-20T08:00:00Z"),
        mode: "shadow",
        sessionBudgetMicros: 20_000,
        sessionMaxCalls: 1000,
        budgetWindowMs: 86_400_000,
        dailyBudgetMicros: 50_000_000,
        judgeBudgetMicros: null,
        judgeBudgets: null,
      },
      expect.objectContaining({
        startedMs: Date.parse("2026-11-20T08:02:00Z"),
        sessionBudgetMicros: 3_000_000,
      }),
      expect.objectContaining({ mode: "enforce", sessionBudgetMicros: 5_000_000, sessionMaxCalls: null }),
      expect.objectContaining({ judgeBudgetMicros: 1_000_000, judgeBudgets: { gate: 500_000, q: null } }),
    ]);
    const memory = new MemoryStore();
    await createGuard({ ledger: memory, logger: "silent", clock, sessionBudgetUsd: 0.02 }).close();
    await createGuard({ ledger: memory, logger: "silent", clock, sessionBudgetUsd: 0.02 }).close();
    expect(memory.configs).toHaveLength(1);
    expect(memory.configs[0]).toMatchObject({ sessionBudgetMicros: 20_000, mode: "enforce" });
  });
});
