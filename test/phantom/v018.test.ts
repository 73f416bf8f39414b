// Phantom v0.18.2's real code, guarded as the README says (the Bun preload, the sidecar), with
// only the LLM faked: see v018.scenario.ts. Each run is a fresh Phantom work folder and a fresh
// ledger; the unguarded run is the baseline the savings are measured against.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  installedPhantom,
  phantomUnavailable,
  phantomWorkdir,
  REPO,
  runBun,
  SIDECAR_TOKEN,
  startSidecar,
} from "../helpers/phantom.js";

interface Spend {
  calls: number;
  input_tokens: number;
  output_tokens: number;
  usd: number;
}
interface Scenario {
  guarded: boolean;
  recovered_at: number | null;
  hung_request_released: boolean;
  canned_replies: number;
  canned_before_recovery: number | null;
  replies_of_stuck_key: string[];
  recoveries: Array<{ sessionKey: string; episodeId: string; released: number; cleared: boolean }>;
  kinds: Record<string, number>;
  total: Spend;
  canned_turns: Spend;
  healthy: Spend;
  after: Spend;
  per_key: Record<string, Spend>;
  max_call_usd: number;
}
interface Run {
  s: Scenario;
  stderr: string;
  ledger: {
    savedUsd: number;
    chargedUsd: number;
    skipped: number;
    healthySkipped: number;
    healthyJudged: number;
  };
}

const STUCK_KEY = "cli:local";
const unavailable = phantomUnavailable();
const dirs: string[] = [];
let root = "";

async function runScenario(guard?: { env?: NodeJS.ProcessEnv }): Promise<Run> {
  const base = mkdtempSync(join(tmpdir(), "jg-phantom-v018-"));
  dirs.push(base);
  const work = phantomWorkdir(root, join(base, "work"));
  const db = join(base, "judge-guard.db");
  const sidecar = guard ? await startSidecar(db, guard.env) : undefined;
  try {
    // Installed as the README says: BUN_OPTIONS="--preload=..." and the sidecar's address.
    const run = await runBun(["test", join(REPO, "test/phantom/v018.scenario.ts")], {
      cwd: work,
      timeoutMs: 120_000,
      env: {
        ...(sidecar && {
          BUN_OPTIONS: `--preload=${join(REPO, "dist/adapters/phantom-preload.js")}`,
          JUDGE_GUARD_URL: sidecar.url,
          // The scenario's hang lasts milliseconds, not the 10 minutes a real one must before release.
          JUDGE_GUARD_PHANTOM_RELEASE_AFTER: "0",
          JUDGE_GUARD_TOKEN: SIDECAR_TOKEN,
        }),
        ...guard?.env,
      },
    });
    if (run.code !== 0 || run.result === undefined) {
      throw new Error(
        `the scenario failed (code ${run.code}):\n${run.stdout.slice(-2000)}\n${run.stderr.slice(-4000)}`,
      );
    }
    const ledger = { savedUsd: 0, chargedUsd: 0, skipped: 0, healthySkipped: 0, healthyJudged: 0 };
    if (sidecar) {
      await sidecar.stop();
      const d = new Database(db, { readonly: true });
      const row = d
        .prepare(
          `SELECT sum(saved_micros) AS saved, sum(charged_micros) AS charged,
                  sum(decision = 'skipped') AS skipped,
                  sum(decision = 'skipped' AND session_key <> ?) AS healthy,
                  sum(decision = 'judged' AND session_key <> ?) AS healthyJudged
             FROM decisions`,
        )
        .get(STUCK_KEY, STUCK_KEY) as {
        saved: number;
        charged: number;
        skipped: number;
        healthy: number;
        healthyJudged: number;
      };
      d.close();
      Object.assign(ledger, {
        savedUsd: row.saved / 1e6,
        chargedUsd: row.charged / 1e6,
        skipped: row.skipped,
        healthySkipped: row.healthy,
        healthyJudged: row.healthyJudged,
      });
    }
    return { s: run.result as unknown as Scenario, stderr: run.stderr, ledger };
  } finally {
    await sidecar?.stop();
  }
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const UNCAPPED = { JUDGE_GUARD_SESSION_BUDGET_USD: "none", JUDGE_GUARD_DAILY_BUDGET_USD: "none" };

describe.skipIf(unavailable !== undefined)(
  "Phantom v0.18.2, real code under Bun, guarded by the preload",
  () => {
    let unguarded: Run;
    let guarded: Run;
    beforeAll(async () => {
      root = installedPhantom("v0.18.2");
      // The same traffic twice: without the guard, and with it but without recovery (so that both
      // runs see the same replies and the difference is what the guard saved).
      unguarded = await runScenario();
      guarded = await runScenario({ env: { ...UNCAPPED, JUDGE_GUARD_PHANTOM_RECOVER: "off" } });
      const u = unguarded.s;
      const g = guarded.s;
      const row = (name: string, a: Spend, b: Spend) =>
        `| ${name} | ${a.calls} / ${b.calls} | ${a.input_tokens + a.output_tokens} / ${b.input_tokens + b.output_tokens} | $${a.usd.toFixed(4)} / $${b.usd.toFixed(4)} |`;
      console.log(
        [
          "v0.18.2 (unguarded / guarded): calls | tokens | USD",
          row("all judges", u.total, g.total),
          row("canned turns of the stuck key", u.canned_turns, g.canned_turns),
          row("stuck key, all turns", u.per_key[STUCK_KEY]!, g.per_key[STUCK_KEY]!),
          row("healthy keys", u.healthy, g.healthy),
          `saved, measured on the stuck key: $${(u.per_key[STUCK_KEY]!.usd - g.per_key[STUCK_KEY]!.usd).toFixed(4)}; whole run: $${(u.total.usd - g.total.usd).toFixed(4)}; reported by the ledger: $${guarded.ledger.savedUsd.toFixed(4)}`,
        ].join("\n"),
      );
    }, 300_000);
    afterAll(() => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });

    it("the unguarded baseline reproduces the incident: every canned turn is judged by all six judges", () => {
      const u = unguarded.s;
      expect(u.canned_replies).toBeGreaterThanOrEqual(12);
      expect(u.canned_turns.calls).toBeGreaterThan(100);
      for (const kind of [
        "observation_extraction",
        "consolidation",
        "constitution_gate",
        "safety_gate",
        "regression_gate",
        "quality_assessment",
      ]) {
        expect(u.kinds[kind], kind).toBeGreaterThan(0);
      }
    });

    it("saves at least 99% of the judge spend on canned turns, consolidation included", () => {
      expect(guarded.s.canned_replies).toBe(unguarded.s.canned_replies);
      expect(guarded.s.canned_turns.usd).toBeLessThanOrEqual(0.01 * unguarded.s.canned_turns.usd);
    });

    it("skips no healthy call", () => {
      // Healthy keys make fewer calls than in the unguarded run only because Phantom learned less
      // from the skipped stuck turns (fewer golden cases, so fewer regression calls): none of
      // theirs was skipped, and every one the fake LLM saw was judged and charged.
      expect(guarded.ledger.healthySkipped).toBe(0);
      expect(guarded.ledger.healthyJudged).toBe(guarded.s.healthy.calls);
      expect(guarded.s.healthy.calls).toBeGreaterThan(100);
    });

    it("charges what the judges really cost, and reports a saving within 10% of the measured one", () => {
      expect(guarded.ledger.chargedUsd).toBeCloseTo(guarded.s.total.usd, 5);
      // Measured on the stuck key: its judge spend unguarded minus guarded (same replies in both).
      const measured = unguarded.s.per_key[STUCK_KEY]!.usd - guarded.s.per_key[STUCK_KEY]!.usd;
      expect(measured).toBeGreaterThan(0);
      expect(Math.abs(guarded.ledger.savedUsd - measured) / measured).toBeLessThanOrEqual(0.1);
    });

    it("recovers the stuck key without a restart: detected within 3 canned replies, one release, judging resumes", async () => {
      const r = await runScenario({});
      const s = r.s;
      const mine = s.recoveries.filter((x) => x.sessionKey === STUCK_KEY);
      expect(mine).toHaveLength(1);
      expect(s.recoveries).toHaveLength(1);
      expect(mine[0]).toMatchObject({ released: 1, cleared: true });
      expect(s.hung_request_released).toBe(true);
      expect(s.canned_before_recovery).not.toBeNull();
      expect(s.canned_before_recovery!).toBeLessThanOrEqual(3);
      // After the release: the released request's notice, then real answers only.
      const tail = s.replies_of_stuck_key.slice(s.replies_of_stuck_key.lastIndexOf("canned") + 1);
      expect(tail.length).toBeGreaterThanOrEqual(3);
      expect(tail.every((x) => x === "answer")).toBe(true);
      // Judging resumed on the recovered key.
      expect(s.after.calls).toBeGreaterThan(0);
    });

    it("never releases a request younger than JUDGE_GUARD_PHANTOM_RELEASE_AFTER (a long healthy turn)", async () => {
      const r = await runScenario({ env: { JUDGE_GUARD_PHANTOM_RELEASE_AFTER: "10m" } });
      expect(r.s.recoveries).toEqual([]);
      expect(r.s.hung_request_released).toBe(false);
      // Its bounced turns are still not judged.
      expect(r.s.canned_turns.calls).toBe(0);
    });

    it("keeps every key within its cap plus one call, in real spend", async () => {
      const cap = 0.15;
      const r = await runScenario({ env: { JUDGE_GUARD_SESSION_BUDGET_USD: String(cap) } });
      const skipped = r.ledger.skipped;
      expect(skipped).toBeGreaterThan(0);
      for (const [key, spend] of Object.entries(r.s.per_key)) {
        expect(spend.usd, key).toBeLessThanOrEqual(cap + r.s.max_call_usd);
      }
      // Without the cap these keys spent more than it.
      expect(Math.max(...Object.values(unguarded.s.per_key).map((x) => x.usd))).toBeGreaterThan(cap);
    });
  },
);

describe.skipIf(unavailable !== undefined)("the preload, as Phantom's entrypoint runs it (bun run)", () => {
  const PRELOAD = `--preload=${join(REPO, "dist/adapters/phantom-preload.js")}`;
  const probe = (work: string) => {
    // Loads Phantom's runtime module the way src/index.ts does, and says what it finds.
    writeFileSync(
      join(work, "probe.ts"),
      `const { AgentRuntime } = await import("./src/agent/runtime.ts");
console.log(JSON.stringify({ installed: globalThis[Symbol.for("judge-guard.phantom.install")] !== undefined, wrapped: AgentRuntime.prototype.handleMessage.name }));`,
    );
  };
  beforeAll(() => {
    root = installedPhantom("v0.18.2");
  }, 300_000);

  it("BUN_OPTIONS=--preload=... installs the guard before Phantom's code runs", async () => {
    const base = mkdtempSync(join(tmpdir(), "jg-phantom-v018-"));
    dirs.push(base);
    const work = phantomWorkdir(root, join(base, "work"));
    probe(work);
    const run = await runBun(["run", "probe.ts"], {
      cwd: work,
      env: { BUN_OPTIONS: PRELOAD, JUDGE_GUARD_URL: "http://127.0.0.1:9" },
    });
    expect(run.code).toBe(0);
    expect(run.result).toEqual({ installed: true, wrapped: "handleMessage" });
    expect(run.stderr).toMatch(/judge-guard: guarding Phantom \(v0\.18\.x\)/);
  });

  it("refuses to start Phantom when it would guard nothing, saying what to set", async () => {
    const base = mkdtempSync(join(tmpdir(), "jg-phantom-v018-"));
    dirs.push(base);
    const work = phantomWorkdir(root, join(base, "work"));
    probe(work);
    const noUrl = await runBun(["run", "probe.ts"], {
      cwd: work,
      env: { BUN_OPTIONS: PRELOAD, JUDGE_GUARD_URL: "" },
    });
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr.trim()).toMatch(
      /^judge-guard: JUDGE_GUARD_URL is not set: give the sidecar's address/,
    );
    expect(noUrl.result).toBeUndefined();
    const elsewhere = await runBun(["run", join(work, "probe.ts")], {
      cwd: base,
      env: { BUN_OPTIONS: PRELOAD, JUDGE_GUARD_URL: "http://127.0.0.1:9" },
    });
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toMatch(/does not look like Phantom .*set JUDGE_GUARD_PHANTOM_ROOT/);
  });
});

if (unavailable !== undefined) {
  describe("Phantom v0.18.2 integration", () => {
    it.skip(`skipped: ${unavailable}`, () => {});
  });
}
