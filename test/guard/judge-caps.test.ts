// Caps per judge kind (issue 14, item 6; LangSmith caps spend per evaluator), beside the per-key
// and global caps: enforced in the same admission, so a kind's spend passes its cap by at most
// one call, across processes sharing one ledger too; recorded, reported and alerted.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  callbackSink,
  createGuard,
  fromEnv,
  type GuardEvent,
  type GuardOptions,
  isBudgetError,
  JudgeBudgetError,
  type JudgeRequest,
  type LedgerStore,
  MemoryStore,
} from "../../src/index.js";
import { cli, ensureBuilt } from "../helpers/cli.js";
import { FakeClock, useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const SPEND = fileURLToPath(new URL("../fixtures/processes/spend-judges.mjs", import.meta.url));
const CALL = 301_500; // micro-dollars: 500 input + 20,000 output Sonnet tokens
beforeAll(ensureBuilt, 120_000);

let n = 0;
const request = (judge: string, key = `k${n}`): JudgeRequest => {
  n++;
  return {
    judge,
    model: "claude-sonnet-4-6",
    sessionKey: key,
    userMessages: [`question ${n}`],
    assistantMessages: [`a real answer number ${n}, with substance`],
    maxTokens: 20_000,
  };
};
const judge = async () => ({ inputTokens: 500, outputTokens: 20_000 }); // $0.3015

const guardOn = (ledger: string | LedgerStore, clock: FakeClock, o: GuardOptions = {}) =>
  createGuard({ ledger, logger: "silent", clock, sessionBudgetUsd: 100, dailyBudgetUsd: 100, ...o });

describe("caps per judge kind: several processes on one ledger", () => {
  it("4 processes x 48 concurrent calls: the capped kind passes its cap by at most one call; the other kind is untouched", async () => {
    const ledger = join(tmp(), "ledger.db");
    const run = promisify(execFile);
    const outs = await Promise.all([0, 1, 2, 3].map(() => run(process.execPath, [SPEND, ledger, "48", "2"])));
    const results = outs.map(
      (o) => JSON.parse(o.stdout) as { capped: number; free: number; refused: string[] },
    );
    const db = new Database(ledger, { readonly: true });
    const spent = db
      .prepare(
        "SELECT judge, sum(charged_micros) AS m, count(*) AS n FROM decisions WHERE decision != 'skipped' GROUP BY judge",
      )
      .all() as Array<{ judge: string; m: number; n: number }>;
    const bucket = db.prepare("SELECT sum(micros) AS m FROM usage WHERE scope = 'j:capped'").get() as {
      m: number;
    };
    const open = db.prepare("SELECT count(*) AS n FROM reservations").get() as { n: number };
    db.close();
    const capped = spent.find((r) => r.judge === "capped")!;
    const free = spent.find((r) => r.judge === "free")!;
    console.log(
      `judge caps: ${capped.n} of 96 capped calls judged, $${capped.m / 1e6} spent (cap 2.00); ${free.n} of 96 free calls judged`,
    );
    expect(capped.m).toBeLessThanOrEqual(2_000_000 + CALL);
    expect(capped.m).toBeGreaterThanOrEqual(2_000_000 - CALL); // the cap was used, not refused early
    expect(capped.m).toBe(results.reduce((a, r) => a + r.capped, 0) * CALL);
    expect(bucket.m).toBe(capped.m); // the kind's own scope counts exactly its charges
    expect(free.n).toBe(96);
    expect(new Set(results.flatMap((r) => r.refused))).toEqual(new Set(["JUDGE_BUDGET"]));
    expect(open.n).toBe(0);
  }, 60_000);
});

describe("caps per judge kind in one guard", () => {
  it("a named kind's cap, the default for the others, none for a kind named Infinity, over a rolling 24 h", async () => {
    const clock = new FakeClock();
    const events: GuardEvent[] = [];
    const guard = guardOn(join(tmp(), "ledger.db"), clock, {
      judgeBudgetUsd: 0.9, // every kind not named: 2 calls and a third past it
      judgeBudgetsUsd: { gate: 0.3, free: Infinity },
      signals: [callbackSink((e) => void events.push(e))],
    });
    const outcomes = async (kind: string, calls: number) => {
      const out: string[] = [];
      for (let i = 0; i < calls; i++) {
        const o = await guard.run(request(kind), judge);
        out.push(o.status === "skipped" ? o.code : o.status);
      }
      return out;
    };
    // A call is admitted on its expected cost (a cold kind's is far below $0.30) and charged what
    // it cost: the first passes the $0.30 cap by less than one call, and the next is refused.
    expect(await outcomes("gate", 3)).toEqual(["judged", "JUDGE_BUDGET", "JUDGE_BUDGET"]);
    expect(await outcomes("quality_assessment", 5)).toEqual([
      "judged",
      "judged",
      "judged",
      "JUDGE_BUDGET",
      "JUDGE_BUDGET",
    ]);
    expect(await outcomes("free", 6)).toEqual(Array(6).fill("judged"));
    expect(guard.stats.skipped.judge_budget).toBe(4);

    const skip = await guard.run(request("gate"), judge);
    if (skip.status !== "skipped") throw new Error("not skipped");
    expect(skip.error).toBeInstanceOf(JudgeBudgetError);
    expect(isBudgetError(skip.error)).toBe(true);
    expect(skip.error.details).toMatchObject({ judge: "gate", used: 0.3015, cap: 0.3 });
    expect(skip.error.message).toMatch(
      /^judge kind gate reached its budget \(\$0\.3015 of \$0\.3000 in the last 24 hours, all keys together\): judge not called \(raise JUDGE_GUARD_JUDGE_BUDGETS or JUDGE_GUARD_JUDGE_BUDGET_USD/,
    );

    // Alerts name the kind: a warning at 80% and the refusal, once each per window.
    const alerts = events.filter((e) => e.type === "budget_alert");
    expect(alerts).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          scope: "judge",
          judge: "gate",
          session_key: null,
          level: "warning",
          reason: "judge_budget",
        }),
        expect.objectContaining({ scope: "judge", judge: "gate", level: "cap_reached", cap: 0.3 }),
        expect.objectContaining({
          scope: "judge",
          judge: "quality_assessment",
          level: "cap_reached",
          cap: 0.9,
        }),
      ]),
    );
    expect(alerts.filter((e) => e.type === "budget_alert" && e.judge === "free")).toEqual([]);

    // The window rolls: 24 h and its one-minute bucket later, the kind may spend again.
    clock.advance(86_400_000 + 60_000);
    expect(await outcomes("gate", 1)).toEqual(["judged"]);
    await guard.close();
  });

  it("the in-memory store keeps a kind's spend as the ledger does", async () => {
    const guard = guardOn(new MemoryStore(), new FakeClock(), { judgeBudgetsUsd: { gate: 0.3 } });
    expect((await guard.run(request("gate"), judge)).status).toBe("judged");
    expect((await guard.run(request("gate"), judge)).status).toBe("skipped");
    await guard.close();
  });

  it("a store that cannot read a kind's spend refuses caps per judge kind at construction", () => {
    const memory = new MemoryStore();
    const old: LedgerStore = new Proxy(memory, {
      get: (t, p) => (p === "judgeUsage" ? undefined : Reflect.get(t, p, t)),
    });
    expect(() => createGuard({ ledger: old, logger: "silent", judgeBudgetUsd: 1 })).toThrow(ConfigError);
    expect(() => createGuard({ ledger: old, logger: "silent", judgeBudgetUsd: 1 })).toThrow(/judgeUsage/);
  });

  it("a ledger written before caps per judge kind counts the spend before the upgrade", async () => {
    const ledger = join(tmp(), "ledger.db");
    const clock = new FakeClock();
    const before = guardOn(ledger, clock);
    for (let i = 0; i < 3; i++) expect((await before.run(request("gate"), judge)).status).toBe("judged");
    await before.close();
    // Made as an older judge-guard left it: no spend per judge kind, no columns for its caps.
    const db = new Database(ledger);
    db.exec(`DELETE FROM usage WHERE scope LIKE 'j:%';
      ALTER TABLE guard_config DROP COLUMN judge_budget_micros;
      ALTER TABLE guard_config DROP COLUMN judge_budgets;`);
    db.pragma("user_version = 7");
    db.close();
    clock.advance(3_600_000);
    const after = guardOn(ledger, clock, { judgeBudgetsUsd: { gate: 1 } });
    // $0.9045 spent an hour ago still counts: the next call would pass $1 by more than it fits.
    const out = await after.run(request("gate"), judge);
    expect(out).toMatchObject({ status: "skipped", code: "JUDGE_BUDGET" });
    await after.close();
    const check = new Database(ledger, { readonly: true });
    expect(check.prepare("SELECT sum(micros) AS m FROM usage WHERE scope = 'j:gate'").get()).toEqual({
      m: 3 * CALL,
    });
    check.close();
  });

  it("reads JUDGE_GUARD_JUDGE_BUDGET_USD and JUDGE_GUARD_JUDGE_BUDGETS, naming a bad one", () => {
    expect(
      fromEnv({
        JUDGE_GUARD_JUDGE_BUDGET_USD: "1.5",
        JUDGE_GUARD_JUDGE_BUDGETS: '{"gate": 0.2, "q": "none"}',
      }),
    ).toMatchObject({ judgeBudgetUsd: 1.5, judgeBudgetsUsd: { gate: 0.2, q: Infinity } });
    expect(() => fromEnv({ JUDGE_GUARD_JUDGE_BUDGETS: '{"gate": -1}' })).toThrow(
      'JUDGE_GUARD_JUDGE_BUDGETS: the cap of judge kind "gate" must be an amount in USD >= 0 or "none", got -1',
    );
    expect(() => fromEnv({ JUDGE_GUARD_JUDGE_BUDGETS: "gate=1" })).toThrow(
      /JUDGE_GUARD_JUDGE_BUDGETS is not valid JSON .*: expected a JSON object of judge kind -> USD per 24 h/,
    );
    expect(() => fromEnv({ JUDGE_GUARD_JUDGE_BUDGETS: "[1]" })).toThrow(
      /JUDGE_GUARD_JUDGE_BUDGETS="\[1\]" is not valid/,
    );
  });
});

describe("report", () => {
  it("shows each judge kind's spend in the last 24 h against its cap, as the guard recorded it", async () => {
    const ledger = join(tmp(), "ledger.db");
    const guard = guardOn(ledger, new FakeClock(), { judgeBudgetUsd: 5, judgeBudgetsUsd: { gate: 0.5 } });
    for (const kind of ["gate", "quality_assessment", "quality_assessment"])
      await guard.run(request(kind), judge);
    await guard.close();
    const range = ["--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z"];
    const table = await cli(["report", "--db", ledger, ...range]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(
      /^name\s+calls\s+input\s+output\s+cache read\s+cache write\s+charged\s+budget used$/m,
    );
    expect(table.stdout).toMatch(/^gate\s+1\s+500\s+20,000\s+0\s+0\s+\$0\.3015\s+\$0\.3015 \/ \$0\.5000$/m);
    expect(table.stdout).toMatch(/^quality_assessment\s+2\s.*\$0\.6030 \/ \$5\.0000$/m);
    expect(table.stdout).toContain(
      "judge budget used / cap per 24h, all keys together: gate $0.50, any other kind $5.00, as the guard that wrote the ledger configured it",
    );
    const json = JSON.parse((await cli(["report", "--db", ledger, ...range, "--format", "json"])).stdout);
    expect(json.config).toMatchObject({ judge_budget_usd: 5, judge_budgets_usd: { gate: 0.5 } });
    expect(json.by_judge).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: "gate", budget: { used_usd: 0.3015, cap_usd: 0.5 } }),
      ]),
    );
    expect(json.by_model.every((m: object) => !("budget" in m))).toBe(true);
  }, 30_000);
});
