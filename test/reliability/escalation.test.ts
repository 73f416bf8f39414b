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

  it("with escalation 'none' and no chain, the same burst overspends: the option is what holds the line", async () => {
    const { real } = await burst({ escalation: "none" });
    expect(real).toBeGreaterThan(2 * CAP_USD);
  });
});
