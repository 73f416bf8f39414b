import { createServer } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createClient } from "../../src/client/client.js";
import { createGuard, isBudgetError, type JudgeRequest } from "../../src/index.js";
import { createLogger } from "../../src/log/logger.js";
import { type RunningServer, serve } from "../../src/server/server.js";
import { healthyReply } from "../helpers/replies.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const running: RunningServer[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.close().catch(() => {});
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

/** A loopback port nothing listens on: taken from the system, then released. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const request = (key: string, n = 1): JudgeRequest => ({
  judge: "observation_extraction",
  model: "claude-sonnet-4-6",
  session: {
    session_key: key,
    user_messages: Array.from({ length: n }, (_, i) => `question ${i}`),
    assistant_messages: Array.from({ length: n }, (_, i) => healthyReply(i)),
  },
});
// Sonnet: 2000 x $3/M + 600 x $15/M = $0.015 a call.
const judge = async () => ({ inputTokens: 2000, outputTokens: 600 });
const lines = () => {
  const spy = vi.spyOn(console, "error").mockImplementation(() => {});
  return () => spy.mock.calls.map((c) => String(c[0]));
};

describe("judge-guard/client when the sidecar does not answer (onUnreachable local, the default)", () => {
  it("admits calls against a local budget per key, charges their cost, and skips with the guard's errors at a cap", async () => {
    const logged = lines();
    const url = `http://127.0.0.1:${await closedPort()}`;
    const errors: Error[] = [];
    const client = createClient({ url, localBudget: { sessionUsd: 0.02 }, onError: (e) => errors.push(e) });
    const first = await client.run(request("k"), judge);
    expect(first).toMatchObject({ status: "judged", reservedUsd: 0 });
    expect(first.status === "judged" && first.costUsd).toBeCloseTo(0.015, 9);
    expect((await client.run(request("k", 2), judge)).status).toBe("judged");
    // $0.03 spent on k: its local cap of $0.02 is reached.
    const third = await client.run(request("k", 3), judge);
    expect(third).toMatchObject({ status: "skipped", reason: "session_budget", code: "SESSION_BUDGET" });
    const err = await client.call(request("k", 4), judge).catch((e: unknown) => e);
    expect(isBudgetError(err)).toBe(true);
    expect(err).toMatchObject({ details: { sessionKey: "k", used: 0.03, cap: 0.02 } });
    // Another key has its own budget.
    expect((await client.run(request("other"), judge)).status).toBe("judged");
    // The pipeline keeps learning: a cycle runs.
    expect(
      await client.assess({ sessionKey: "k", userMessages: ["a"], assistantMessages: ["b"] }),
    ).toMatchObject({
      stuck: false,
      skip: false,
    });
    expect(client.stats).toEqual({
      unreachable: 6,
      degradedCalls: 3,
      degradedSkips: 2,
      degraded: true,
      pendingSettlements: 0,
    });
    expect(errors).toHaveLength(6);
    expect(errors[0]!.message).toContain(`the sidecar at ${url} did not answer`);
    // One line for the outage, not one per call, naming the sidecar and the policy.
    expect(logged()).toHaveLength(1);
    expect(logged()[0]).toContain(`the sidecar at ${url} does not answer`);
    expect(logged()[0]).toContain('onUnreachable "local": judge calls are admitted against a local budget');
  });

  it("takes its caps from the guard's environment variables, and charges failed calls' partial cost", async () => {
    lines();
    vi.stubEnv("JUDGE_GUARD_SESSION_MAX_CALLS", "2");
    vi.stubEnv("JUDGE_GUARD_DAILY_BUDGET_USD", "0.04");
    vi.stubEnv("JUDGE_GUARD_SESSION_BUDGET_USD", "none");
    const client = createClient({ url: `http://127.0.0.1:${await closedPort()}`, onError: () => {} });
    expect((await client.run(request("a"), judge)).status).toBe("judged");
    const failing = async () => {
      throw Object.assign(new Error("judge timed out"), {
        partialCost: { inputTokens: 2000, outputTokens: 600 },
      });
    };
    await expect(client.run(request("a", 2), failing)).rejects.toThrow("judge timed out");
    expect(await client.run(request("a", 3), judge)).toMatchObject({
      status: "skipped",
      code: "SESSION_CALLS",
    });
    // $0.03 spent in all: b's first call fits under $0.04, then the global cap is reached.
    expect((await client.run(request("b"), judge)).status).toBe("judged");
    const out = await client.run(request("c"), judge);
    expect(out).toMatchObject({ status: "skipped", code: "GLOBAL_BUDGET" });
    expect(out.status === "skipped" && out.error.details).toMatchObject({ used: 0.045, cap: 0.04 });
  });

  it("refuses a malformed cap in the environment at creation, naming the variable", () => {
    vi.stubEnv("JUDGE_GUARD_SESSION_BUDGET_USD", "five");
    expect(() => createClient({ url: "http://127.0.0.1:9" })).toThrow(
      /^JUDGE_GUARD_SESSION_BUDGET_USD="five" is not valid: expected an amount in USD >= 0 such as "5" or "0.50", or "none"$/,
    );
  });

  it("uses the sidecar again as soon as it answers after being stopped and restarted", async () => {
    const logged = lines();
    const ledger = join(tmp(), "ledger.db");
    const start = async (port: number) => {
      const guard = createGuard({ ledger, logger: "silent" });
      const r = await serve({ guard, log: createLogger("silent"), port });
      running.push(r);
      return r;
    };
    const first = await start(0);
    const port = Number(new URL(first.url).port);
    const client = createClient({ url: first.url, onError: () => {} });
    const guarded = await client.run(request("k"), judge);
    expect(guarded.status === "judged" && guarded.reservedUsd).toBeGreaterThan(0);
    expect(client.stats.degraded).toBe(false);

    await running.pop()!.close();
    const local = await client.run(request("k", 2), judge);
    expect(local).toMatchObject({ status: "judged", reservedUsd: 0 });
    expect(client.stats).toMatchObject({ degraded: true, degradedCalls: 1 });

    await start(port);
    const back = await client.run(request("k", 3), judge);
    expect(back.status === "judged" && back.reservedUsd).toBeGreaterThan(0);
    await client.run(request("k", 4), judge);
    expect(client.stats).toEqual({
      unreachable: 1,
      degradedCalls: 1,
      degradedSkips: 0,
      degraded: false,
      pendingSettlements: 0,
    });
    expect(logged()).toHaveLength(2);
    expect(logged()[0]).toContain(`the sidecar at ${first.url} does not answer`);
    expect(logged()[1]).toContain(`the sidecar at ${first.url} answers again`);
    await running.pop()!.close();
    // The sidecar recorded the calls it guarded; the one made during the outage is not in its ledger.
    const db = new Database(ledger, { readonly: true });
    const judged = db.prepare("SELECT count(*) AS n FROM decisions WHERE decision = 'judged'").get() as {
      n: number;
    };
    db.close();
    expect(judged.n).toBe(3);
  });

  it.each([
    ["closed", "skipped", 0],
    ["open", "judged", 1],
  ] as const)("onUnreachable %s stays an explicit choice: the call is %s", async (policy, status, made) => {
    const logged = lines();
    let calls = 0;
    const client = createClient({
      url: `http://127.0.0.1:${await closedPort()}`,
      onUnreachable: policy,
      onError: () => {},
    });
    const out = await client.run(request("k"), async () => {
      calls++;
      return judge();
    });
    expect(out.status).toBe(status);
    expect(calls).toBe(made);
    expect(client.stats).toMatchObject(policy === "open" ? { degradedCalls: 1 } : { degradedSkips: 1 });
    expect(logged()[0]).toContain(`onUnreachable "${policy}"`);
  });
});
