// Phantom main (v0.20.x), its real runtime, engine, queue, cadence, gate and reflection under Bun,
// only the Agent SDK's query() faked (Phantom's own __setAgentSdkQueryForTests). The scenario
// (main.scenario.ts) runs unguarded, then guarded through the documented install path (Bun
// --preload of judge-guard's Phantom preload, talking to a real `judge-guard serve` sidecar), then
// guarded with a low per-key budget. `npm test` builds dist first; this file builds nothing.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BUN,
  installedPhantom,
  phantomUnavailable,
  phantomWorkdir,
  REPO,
  runBun,
  SIDECAR_TOKEN,
  startSidecar,
} from "../helpers/phantom.js";

const unavailable = phantomUnavailable();
const CLI = "cli:cli:local";
const HEALTHY = ["slack:C042", "telegram:77001"];
const LOW_BUDGET_USD = 0.005;
/** The stuck key's healthy turns before its session goes stale (the scenario's default). */
const HEALTHY_CLI_TURNS = 3;

interface Share {
  key: string;
  stuckTurn: boolean;
  stuckReplies: number;
  inputTokens: number;
  outputTokens: number;
  usd: number;
}
interface Call {
  kind: "agent" | "gate" | "reflection";
  shares: Share[];
  usd: number;
  seq: number;
}
interface Scenario {
  calls: Call[];
  replies: Record<string, string[]>;
  hung: number;
  canned: string;
  recoveries: Array<{ sessionKey: string; released: number; cleared: boolean }>;
}
interface Decision {
  session_key: string;
  judge: string;
  decision: string;
  reason: string | null;
  charged_micros: number;
  saved_micros: number;
  turns: number;
}
interface Run {
  s: Scenario;
  stderr: string;
  gateLog: Array<{ session_key: string; source: string; fire: boolean }>;
  decisions: Decision[];
  reportedSavedUsd: number;
}

const tmpRoots: string[] = [];
let root = "";

function workdir(): string {
  const base = mkdtempSync(join(tmpdir(), "jg-phantom-main-"));
  tmpRoots.push(base);
  const w = phantomWorkdir(root, join(base, "work"));
  // The reflection runs (as with credentials present); the depth trigger fires at 3 queued keys.
  const yaml = join(w, "config/evolution.yaml");
  writeFileSync(yaml, readFileSync(yaml, "utf8").replace(/enabled: "auto"/, 'enabled: "always"'));
  writeFileSync(
    join(w, "phantom-config/meta/evolution.json"),
    JSON.stringify({ cadence_minutes: 180, demand_trigger_depth: 3 }),
  );
  return w;
}

async function runScenario(guard?: { env?: NodeJS.ProcessEnv }): Promise<Run> {
  const w = workdir();
  const db = join(w, "..", "judge-guard.db");
  const sidecar = guard ? await startSidecar(db, guard.env ?? {}) : undefined;
  try {
    const run = await runBun([join(REPO, "test/phantom/main.scenario.ts")], {
      cwd: w,
      timeoutMs: 90_000,
      env: {
        JUDGE_GUARD_REPO: REPO,
        ...(sidecar && {
          BUN_OPTIONS: `--preload=${join(REPO, "dist/adapters/phantom-preload.js")}`,
          JUDGE_GUARD_URL: sidecar.url,
          JUDGE_GUARD_PHANTOM_RELEASE_AFTER: "0",
          JUDGE_GUARD_TOKEN: SIDECAR_TOKEN,
          JUDGE_GUARD_PHANTOM_ROOT: w,
        }),
      },
    });
    if (run.code !== 0 || run.result === undefined) {
      throw new Error(`the scenario failed (code ${run.code}):\n${run.stderr.slice(-4000)}`);
    }
    const gateLog = readFileSync(join(w, "phantom-config/meta/evolution-gate-log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    let decisions: Decision[] = [];
    let reportedSavedUsd = 0;
    if (sidecar) {
      await sidecar.stop();
      const ledger = new Database(db, { readonly: true });
      try {
        decisions = ledger
          .prepare(
            "SELECT session_key, judge, decision, reason, charged_micros, saved_micros, turns FROM decisions",
          )
          .all() as Decision[];
      } finally {
        ledger.close();
      }
      reportedSavedUsd = decisions.reduce((n, d) => n + d.saved_micros, 0) / 1e6;
    }
    return { s: run.result as unknown as Scenario, stderr: run.stderr, gateLog, decisions, reportedSavedUsd };
  } finally {
    if (sidecar) await sidecar.stop();
  }
}

const judgeCalls = (s: Scenario) => s.calls.filter((c) => c.kind !== "agent");
const shares = (s: Scenario, key?: string) =>
  judgeCalls(s)
    .flatMap((c) => c.shares.map((x) => ({ ...x, kind: c.kind })))
    .filter((x) => key === undefined || x.key === key);
const sum = (xs: Array<{ usd: number }>) => xs.reduce((n, x) => n + x.usd, 0);
const tokens = (xs: Share[]) => xs.reduce((n, x) => n + x.inputTokens + x.outputTokens, 0);
const isStuckReply = (s: Scenario, r: string) =>
  r === s.canned || r.startsWith("Error: judge-guard released");

describe.skipIf(unavailable !== undefined)("Phantom main, real code under Bun, only the LLM faked", () => {
  let unguarded: Run;
  let guarded: Run;
  let budgeted: Run;

  beforeAll(async () => {
    root = installedPhantom("main");
    expect(BUN).toBeTruthy();
    unguarded = await runScenario();
    guarded = await runScenario({ env: {} });
    budgeted = await runScenario({ env: { JUDGE_GUARD_SESSION_BUDGET_USD: String(LOW_BUDGET_USD) } });

    // Where detection happened: the canned replies the guarded key had seen by then.
    const d = detectedAt(guarded);
    const u = unguarded.s;
    const g = guarded.s;
    const row = (name: string, r: Run) => {
      const j = shares(r.s);
      return `${name.padEnd(22)} ${String(judgeCalls(r.s).length).padStart(6)} ${String(tokens(j)).padStart(9)} ${sum(j).toFixed(4).padStart(9)}`;
    };
    const stuckU = sum(shares(u, CLI).filter((x) => x.stuckTurn));
    const stuckG = sum(shares(g, CLI).filter((x) => x.stuckTurn));
    const postU = sum(shares(u, CLI).filter((x) => x.stuckTurn && x.stuckReplies >= d));
    const postG = sum(shares(g, CLI).filter((x) => x.stuckTurn && x.stuckReplies >= d));
    console.log(
      [
        "",
        "Phantom main (real code, LLM faked): judge calls (gate + reflection)",
        `${"run".padEnd(22)} ${"calls".padStart(6)} ${"tokens".padStart(9)} ${"USD".padStart(9)}`,
        row("unguarded", unguarded),
        row("guarded", guarded),
        row(`guarded, $${LOW_BUDGET_USD}/key cap`, budgeted),
        `stuck key, judging stuck turns: unguarded $${stuckU.toFixed(4)}, guarded $${stuckG.toFixed(4)} (saved ${(100 * (1 - stuckG / stuckU)).toFixed(1)}%)`,
        `  after detection (at ${d} canned replies): unguarded $${postU.toFixed(4)}, guarded $${postG.toFixed(4)} (saved ${(100 * (1 - postG / postU)).toFixed(1)}%)`,
        `saved, measured on the calls the guard skipped: $${skippedCounterfactual().toFixed(5)}; ledger reports $${guarded.reportedSavedUsd.toFixed(5)} (${(100 * (guarded.reportedSavedUsd / skippedCounterfactual() - 1)).toFixed(1)}%)`,
        `whole run, unguarded minus guarded: $${(sum(shares(u)) - sum(shares(g))).toFixed(4)} (the recovered key is judged again as a healthy one)`,
        "",
      ].join("\n"),
    );
  }, 300_000);

  afterAll(() => {
    for (const r of tmpRoots) rmSync(r, { recursive: true, force: true });
  });

  /** Canned replies the stuck key's transcript held at its first judge call the guard skipped. */
  function detectedAt(r: Run): number {
    const first = Math.min(...skippedTurns(r));
    return Number.isFinite(first) ? first : 0;
  }

  /** The stuck turns (by their count of canned replies) whose calls the guard skipped, from the ledger. */
  function skippedTurns(r: Run): number[] {
    const judged = shares(r.s, CLI)
      .filter((x) => x.stuckTurn)
      .map((x) => x.stuckReplies);
    return r.decisions
      .filter((x) => x.session_key === CLI && x.decision === "skipped")
      .map((x) => x.turns - HEALTHY_CLI_TURNS)
      .filter((n) => n > 0 && !judged.includes(n));
  }

  /**
   * The unguarded run's real spend on the calls the ledger records as skipped: the same judge on
   * the same turn of the same key.
   */
  function skippedCounterfactual(): number {
    const u = shares(unguarded.s, CLI).filter((x) => x.stuckTurn);
    let total = 0;
    for (const x of guarded.decisions) {
      if (x.session_key !== CLI || x.decision !== "skipped") continue;
      const turn = x.turns - HEALTHY_CLI_TURNS;
      total += sum(u.filter((y) => y.kind === x.judge && y.stuckReplies === turn));
    }
    return total;
  }

  it("the unguarded run reproduces the incident: a hung resume, then canned replies, each judged and reflected", () => {
    const replies = unguarded.s.replies[CLI]!;
    expect(unguarded.s.hung).toBe(1);
    expect(replies.filter((r) => r === unguarded.s.canned).length).toBeGreaterThanOrEqual(10);
    expect(
      shares(unguarded.s, CLI).filter((x) => x.stuckTurn && x.kind === "gate").length,
    ).toBeGreaterThanOrEqual(10);
    expect(
      shares(unguarded.s, CLI).filter((x) => x.stuckTurn && x.kind === "reflection").length,
    ).toBeGreaterThanOrEqual(10);
  });

  it("saves >= 99% of the stuck key's judge spend after detection; detection within 3 canned replies", () => {
    const d = detectedAt(guarded);
    expect(d).toBeGreaterThanOrEqual(1);
    expect(d).toBeLessThanOrEqual(3);
    const postU = sum(shares(unguarded.s, CLI).filter((x) => x.stuckTurn && x.stuckReplies >= d));
    const postG = sum(shares(guarded.s, CLI).filter((x) => x.stuckTurn && x.stuckReplies >= d));
    expect(postU).toBeGreaterThan(0);
    expect(1 - postG / postU).toBeGreaterThanOrEqual(0.99);
    // After detection the stuck key's rows never reach a drain.
    expect(
      shares(guarded.s, CLI).filter((x) => x.kind === "reflection" && x.stuckTurn && x.stuckReplies >= d),
    ).toEqual([]);
  });

  it("skips no healthy call: the healthy keys are judged exactly as often as unguarded", () => {
    for (const key of HEALTHY) {
      expect(guarded.decisions.filter((x) => x.session_key === key && x.decision !== "judged")).toEqual([]);
      const count = (r: Run, kind: string) => shares(r.s, key).filter((x) => x.kind === kind).length;
      expect(count(guarded, "gate")).toBe(count(unguarded, "gate"));
      // Reflection rows are never skipped for them either; a round in which the stuck key was not
      // queued (its gate skipped) leaves the depth trigger short, so that round's rows are reflected
      // in the next drain (the queue keeps one row per key): fewer drains, no row left out.
      const missedDrains = skippedTurns(guarded).length + 1;
      expect(count(guarded, "reflection")).toBeGreaterThanOrEqual(
        count(unguarded, "reflection") - missedDrains,
      );
      const last = judgeCalls(guarded.s)
        .filter((c) => c.kind === "reflection")
        .at(-1)!;
      expect(last.shares.map((x) => x.key)).toContain(key);
    }
  });

  it("the gate never receives an error: Phantom logs no gate error and every gate decision is Haiku's", () => {
    for (const r of [unguarded, guarded, budgeted]) {
      expect(r.stderr).not.toContain("[evolution] gate error");
      expect(r.gateLog.length).toBeGreaterThan(0);
      expect(r.gateLog.filter((x) => x.source !== "haiku")).toEqual([]);
    }
  });

  it("recovers without a restart: a real answer within 1 message of detection, and judging resumes", () => {
    const s = guarded.s;
    const replies = s.replies[CLI]!;
    expect(s.recoveries).toHaveLength(1);
    expect(s.recoveries[0]).toMatchObject({ sessionKey: CLI, released: 1, cleared: true });
    // The released request is the hung one; the next message the user sends gets a real answer.
    const lastStuck = replies.reduce((n, r, i) => (isStuckReply(s, r) ? i : n), -1);
    // Recovery starts when the key's stuck episode opens (within 3 canned replies): the hung request
    // is released (its reply is the last stuck one), and the very next message gets a real answer.
    expect(replies.filter((r) => r === s.canned).length).toBeLessThanOrEqual(3);
    expect(replies[lastStuck]?.startsWith("Error: judge-guard released")).toBe(true);
    expect(lastStuck).toBeGreaterThan(replies.indexOf(s.canned));
    const after = replies.slice(lastStuck + 1);
    expect(after.length).toBeGreaterThan(3);
    for (const r of after) expect(r.startsWith("Error:")).toBe(false);
    // Judging resumes: the recovered key's healthy turns are gated and reflected again.
    const healthyAgain = shares(s, CLI).filter((x) => !x.stuckTurn && x.stuckReplies > 0);
    expect(healthyAgain.filter((x) => x.kind === "gate").length).toBe(after.length);
    expect(healthyAgain.filter((x) => x.kind === "reflection").length).toBeGreaterThan(3);
  });

  it("the ledger's saved figure is within 10% of the measured spend of the calls it skipped", () => {
    const measured = skippedCounterfactual();
    expect(measured).toBeGreaterThan(0);
    expect(Math.abs(guarded.reportedSavedUsd - measured) / measured).toBeLessThanOrEqual(0.1);
    // Charged figures are the real spend the fake recorded: the gates and each key's reflection share.
    const charged = guarded.decisions.reduce((n, x) => n + x.charged_micros, 0) / 1e6;
    expect(Math.abs(charged - sum(shares(guarded.s)))).toBeLessThan(1e-4);
  });

  it("keeps each key's judge spend within its cap plus one call", () => {
    const s = budgeted.s;
    const keys = [CLI, ...HEALTHY];
    const maxGate = Math.max(
      ...shares(s)
        .filter((x) => x.kind === "gate")
        .map((x) => x.usd),
    );
    for (const key of keys) {
      const gates = sum(shares(s, key).filter((x) => x.kind === "gate"));
      expect(gates).toBeLessThanOrEqual(LOW_BUDGET_USD + maxGate);
    }
    expect(budgeted.decisions.some((x) => x.reason !== null && x.reason !== "stuck_session")).toBe(true);
    // The reflection's share of each key counts against the cap too: all its judge spend, in real spend.
    const maxShare = Math.max(...shares(s).map((x) => x.usd));
    for (const key of keys) expect(sum(shares(s, key))).toBeLessThanOrEqual(LOW_BUDGET_USD + maxShare);
  });
});

if (unavailable !== undefined) {
  describe("Phantom main integration", () => {
    it.skip(`skipped: ${unavailable}`, () => {});
  });
}
