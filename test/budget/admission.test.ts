import { describe, expect, it } from "vitest";
import { admit, type BudgetCaps, type ScopeUsage } from "../../src/index.js";

const idle: ScopeUsage = {
  spentMicros: 0,
  calls: 0,
  openCount: 0,
  openExpectedMicros: 0,
  openWorstMicros: 0,
};
const caps: BudgetCaps = {
  sessionBudgetMicros: 1_000_000,
  sessionMaxCalls: 10,
  globalBudgetMicros: 5_000_000,
};
const want = { expectedMicros: 100_000, worstMicros: 300_000 };

describe("admit", () => {
  it.each<[string, Partial<ScopeUsage>, Partial<ScopeUsage>, ReturnType<typeof admit>]>([
    ["plenty of room", {}, {}, null],
    ["the expected cost just fits", { spentMicros: 900_000 }, {}, null],
    [
      "the expected cost does not fit",
      { spentMicros: 950_000 },
      {},
      { reason: "session_budget", used: 950_000, cap: 1_000_000, concurrency: false },
    ],
    [
      "the call cap counts calls in flight",
      { calls: 8, openCount: 2 },
      {},
      { reason: "session_calls", used: 10, cap: 10, concurrency: false },
    ],
    [
      "near the cap with a call in flight: wait, do not refuse for good",
      { spentMicros: 600_000, openCount: 1, openExpectedMicros: 100_000, openWorstMicros: 300_000 },
      {},
      { reason: "session_budget", used: 700_000, cap: 1_000_000, concurrency: true },
    ],
    [
      "fits only if the call in flight settles for less: wait",
      { spentMicros: 850_000, openCount: 1, openExpectedMicros: 100_000, openWorstMicros: 300_000 },
      {},
      { reason: "session_budget", used: 950_000, cap: 1_000_000, concurrency: true },
    ],
    [
      "worst cases of the calls in flight fit: run concurrently",
      { spentMicros: 100_000, openCount: 2, openExpectedMicros: 200_000, openWorstMicros: 600_000 },
      {},
      null,
    ],
    [
      "the global cap, across keys",
      {},
      { spentMicros: 4_950_000 },
      { reason: "global_budget", used: 4_950_000, cap: 5_000_000, concurrency: false },
    ],
  ])("%s", (_name, session, global, expected) => {
    expect(admit({ session: { ...idle, ...session }, global: { ...idle, ...global } }, want, caps)).toEqual(
      expected,
    );
  });

  it.each<[string, Partial<ScopeUsage>, ReturnType<typeof admit>]>([
    ["a judge kind with room", { spentMicros: 500_000 }, null],
    [
      "a judge kind's cap, across keys",
      { spentMicros: 1_950_000 },
      { reason: "judge_budget", used: 1_950_000, cap: 2_000_000, concurrency: false },
    ],
    [
      "near a judge kind's cap with its calls in flight: wait",
      { spentMicros: 1_500_000, openCount: 2, openExpectedMicros: 200_000, openWorstMicros: 600_000 },
      { reason: "judge_budget", used: 1_700_000, cap: 2_000_000, concurrency: true },
    ],
  ])("%s", (_name, judge, expected) => {
    const withJudge = { ...caps, judgeBudgetMicros: 2_000_000 };
    expect(admit({ session: idle, global: idle, judge: { ...idle, ...judge } }, want, withJudge)).toEqual(
      expected,
    );
  });

  it("checks a judge kind's cap after the key's and before the global one", () => {
    const full = { ...idle, spentMicros: 1e12 };
    const withJudge = { ...caps, judgeBudgetMicros: 2_000_000 };
    expect(admit({ session: full, global: full, judge: full }, want, withJudge)?.reason).toBe(
      "session_budget",
    );
    expect(admit({ session: idle, global: full, judge: full }, want, withJudge)?.reason).toBe("judge_budget");
    // No snapshot of the kind (its kind has no cap), or no cap: not checked.
    expect(admit({ session: idle, global: idle }, want, withJudge)).toBeNull();
    expect(admit({ session: idle, global: idle, judge: full }, want, caps)).toBeNull();
  });

  it("no cap means no refusal", () => {
    const none = { sessionBudgetMicros: Infinity, sessionMaxCalls: Infinity, globalBudgetMicros: Infinity };
    expect(
      admit({ session: { ...idle, spentMicros: 1e12 }, global: { ...idle, spentMicros: 1e12 } }, want, none),
    ).toBeNull();
  });
});
