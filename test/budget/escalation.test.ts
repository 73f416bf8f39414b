import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createGuard, type GuardOptions } from "../../src/index.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * A judge admitted on Haiku that reports it ran on a pricier model (Phantom escalates Haiku to
 * Sonnet and Opus) is charged that model's price. Admission must have held that much against
 * the cap while the call ran, or concurrent escalations overspend it many times over.
 */
const tmp = useTempDir();
const CAP_USD = 1;
// 2,000 input and 1,000 output tokens on Opus 4.1 ($15/$75 per million): $0.105 a call.
const ESCALATED = { model: "claude-opus-4-1", usage: { inputTokens: 2000, outputTokens: 1000 } };
const CALL_USD = 0.105;

async function burst(options: GuardOptions, escalation?: readonly string[]) {
  const guard = createGuard({
    ledger: join(tmp(), "ledger.db"),
    logger: "silent",
    dailyBudgetUsd: CAP_USD,
    sessionBudgetUsd: 1000,
    concurrency: 32,
    verdictTtlMs: 0,
    admissionWaitMs: 20_000,
    ...options,
  });
  let real = 0;
  const outs = await Promise.all(
    Array.from({ length: 32 }, (_, i) =>
      guard.run(
        {
          judge: "reflection",
          model: "claude-haiku-4-5",
          sessionKey: `k${i}`,
          userMessages: [`question ${i}`],
          assistantMessages: [`a real answer to question ${i}`],
          maxTokens: 1000,
          ...(escalation && { escalation }),
        },
        async () => {
          await new Promise((r) => setTimeout(r, 20));
          real += CALL_USD;
          return ESCALATED;
        },
      ),
    ),
  );
  await guard.close();
  return { real, judged: outs.filter((o) => o.status === "judged").length };
}

describe("judges that escalate to pricier models", () => {
  it("32 concurrent Haiku calls settled at Opus prices stay within the global cap plus one call (the default worst case)", async () => {
    const { real, judged } = await burst({});
    expect(judged).toBeGreaterThan(1);
    expect(real).toBeLessThanOrEqual(CAP_USD + CALL_USD + 1e-9);
  });

  it("a request that names its escalation chain is held at the chain's worst case, whatever the option", async () => {
    const { real } = await burst({ escalation: "none" }, ["claude-sonnet-4-6", "claude-opus-4-1"]);
    expect(real).toBeLessThanOrEqual(CAP_USD + CALL_USD + 1e-9);
  });

  it("a request whose named chain leaves out the model it settles at is still held at the ceiling by default", async () => {
    const { real } = await burst({}, ["claude-haiku-4-5"]);
    expect(real).toBeLessThanOrEqual(CAP_USD + CALL_USD + 1e-9);
  });

  it("with escalation 'none' and no chain, the same burst overspends: the option is what holds the line", async () => {
    const { real } = await burst({ escalation: "none" });
    expect(real).toBeGreaterThan(2 * CAP_USD);
  });
});

describe("a judge that reports only its cost, far above its estimate", () => {
  it("is learned from the first settlement: later rounds of 8 concurrent calls stay within the cap plus one call", async () => {
    const guard = createGuard({
      ledger: join(tmp(), "ledger.db"),
      logger: "silent",
      dailyBudgetUsd: 10,
      sessionBudgetUsd: 1000,
      concurrency: 8,
      verdictTtlMs: 0,
      admissionWaitMs: 20_000,
    });
    let real = 0;
    let round = 0;
    const call = (i: number) =>
      guard.run(
        {
          judge: "agent_review",
          model: "claude-sonnet-4-6",
          sessionKey: `k${round}-${i}`,
          userMessages: [`question ${round}-${i}`],
          assistantMessages: [`a real answer to question ${round}-${i}`],
          maxTokens: 1000,
        },
        async () => {
          await new Promise((r) => setTimeout(r, 10));
          real += 0.5;
          // An Agent SDK judge: many turns, one reported cost, no token counts.
          return { costUsd: 0.5 };
        },
      );
    // The first round teaches the guard what this judge costs (its overshoot is the limit
    // docs/guarantees.md states: a judge far costlier than anything seen can exceed it once).
    await Promise.all(Array.from({ length: 8 }, (_, i) => call(i)));
    const taught = real;
    for (round = 1; round < 6; round++) await Promise.all(Array.from({ length: 8 }, (_, i) => call(i)));
    await guard.close();
    expect(taught).toBe(4);
    expect(real).toBeLessThanOrEqual(10 + 0.5 + 1e-9);
  });
});
