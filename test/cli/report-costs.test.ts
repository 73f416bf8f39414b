import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { createGuard, type JudgeRequest } from "../../src/index.js";
import { applyMigration } from "../../src/store/migrations.js";
import { useTempDir } from "../helpers/tmp.js";

const BIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const INDEX = new URL("../../dist/index.js", import.meta.url).href;
const tmp = useTempDir();

type Result = { code: number; stdout: string; stderr: string };

/** Node in a child process, with only the JUDGE_GUARD_* variables given. */
function node(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("JUDGE_GUARD_")),
  );
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { env: { ...clean, NO_COLOR: "1", ...env }, maxBuffer: 1 << 24 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

const cli = (args: string[], env: Record<string, string> = {}) => node([BIN, ...args], env);

/**
 * A guard process configured by its environment: one judge reports its own cost (a cache-heavy
 * Phantom JudgeResult), one only tokens, one nothing.
 */
const GUARD_SCRIPT = `
import { createGuard, fromEnv } from ${JSON.stringify(INDEX)};
const guard = createGuard({ ...fromEnv(process.env), logger: "silent" });
const req = (judge, reply) => ({
  judge, model: "claude-sonnet-4-6",
  session: { session_key: "cli:cli:local", user_messages: ["q " + judge], assistant_messages: [reply] },
});
const results = [
  ["quality_assessment", "The fix holds and the tests pass.", { verdict: "pass", inputTokens: 1000, outputTokens: 100, costUsd: 0.011 }],
  ["observation_extraction", "I rewrote the flaky timer as an event.", { inputTokens: 1000, outputTokens: 100 }],
  ["consolidation", "Deployment is green; rollback steps are written.", "opaque"],
];
for (const [judge, reply, result] of results) {
  const out = await guard.run(req(judge, reply), async () => result);
  console.log(judge, out.status);
}
await guard.close();
`;

async function guardLedger(env: Record<string, string>): Promise<string> {
  const path = join(tmp(), "ledger.db");
  const r = await node(["--input-type=module", "-e", GUARD_SCRIPT], { JUDGE_GUARD_DB: path, ...env });
  expect(r).toMatchObject({ code: 0, stderr: "" });
  return path;
}

// From an hour ago (--since counts back from --until) to an hour ahead.
const RANGE = ["--since", "2h", "--until", new Date(Date.now() + 3_600_000).toISOString()];

describe("judge-guard report: caps from the ledger", () => {
  it("the budget column shows the cap of the guard that wrote the ledger, not the report's environment", async () => {
    const ledger = await guardLedger({ JUDGE_GUARD_SESSION_BUDGET_USD: "0.02" });
    const env = { JUDGE_GUARD_SESSION_BUDGET_USD: "7", JUDGE_GUARD_BUDGET_WINDOW: "1h" };
    const table = await cli(["report", "--db", ledger, ...RANGE], env);
    expect(table.code).toBe(0);
    const row = table.stdout.split("\n").find((l) => l.startsWith("cli:cli:local"));
    expect(row).toMatch(/\$0\.\d+ \/ \$0\.0200/);
    expect(table.stdout).not.toContain("$7.00");
    expect(table.stdout).toContain(
      "budget used / cap: session cap $0.0200 per 24h, as the guard that wrote the ledger configured it",
    );
    const json = JSON.parse(
      (await cli(["report", "--db", ledger, ...RANGE, "--format", "json"], env)).stdout,
    );
    expect(json.sessions[0].budget.cap_usd).toBe(0.02);
    expect(json.config).toMatchObject({
      source: "ledger",
      mode: "enforce",
      session_budget_usd: 0.02,
      session_max_calls: 1000,
      budget_window_ms: 86_400_000,
      daily_budget_usd: 50,
      changed: [],
    });
    const csv = parse((await cli(["report", "--db", ledger, ...RANGE, "--format", "csv"], env)).stdout, {
      columns: true,
    }) as Array<Record<string, string>>;
    expect(csv[0]).toMatchObject({ budget_cap_usd: "0.02", budget_cap_source: "ledger" });
  });

  it("a ledger that records no caps (before schema v4) is measured against the environment, and says so", async () => {
    const path = join(tmp(), "v3.db");
    const db = new Database(path);
    for (let v = 0; v < 3; v++) applyMigration(db, v);
    db.pragma("user_version = 3");
    const ts = Date.now() - 60_000;
    db.prepare(
      "INSERT INTO decisions (id, ts, session_key, judge, model, decision, charged_micros, input_tokens, output_tokens) VALUES (?, ?, 'k', 'j', 'claude-sonnet-4-6', 'judged', 4500, 1000, 100)",
    ).run(ts * 1024, ts);
    db.close();
    const r = await cli(["report", "--db", path, ...RANGE], { JUDGE_GUARD_SESSION_BUDGET_USD: "7" });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^k\s.*\$0\.0045 \/ \$7\.0000/m);
    expect(r.stdout).toContain(
      "budget used / cap: session cap $7.00 per 24h from this environment (the ledger records no guard caps)",
    );
    const json = JSON.parse((await cli(["report", "--db", path, ...RANGE, "--format", "json"])).stdout);
    expect(json.config).toMatchObject({ source: "environment", session_budget_usd: 5, recorded: null });
    // Its rows with tokens were charged tokens x price: the only use of tokens then.
    expect(json.totals).toMatchObject({ computed_usd: 0.0045, reported_usd: 0, unknown_source_usd: 0 });
  });

  it("uses the configuration in force during the range, and says when it changed within it", async () => {
    const path = join(tmp(), "ledger.db");
    const t0 = Date.parse("2026-11-20T08:00:00Z");
    let now = t0;
    const clock = { now: () => now };
    const request = (i: number): JudgeRequest => ({
      judge: "quality_assessment",
      model: "claude-sonnet-4-6",
      session: { session_key: "k", user_messages: [`q${i}`], assistant_messages: [`distinct answer ${i}`] },
    });
    for (const [i, sessionBudgetUsd] of [0.02, 3].entries()) {
      const guard = createGuard({ ledger: path, logger: "silent", clock, sessionBudgetUsd });
      await guard.run(request(i), async () => ({ inputTokens: 100, outputTokens: 10 }));
      await guard.close();
      now += 3_600_000;
    }
    const config = async (since: string, until: string) =>
      JSON.parse(
        (await cli(["report", "--db", path, "--since", since, "--until", until, "--format", "json"])).stdout,
      ).config;
    expect(await config("2026-11-20T07:00:00Z", "2026-11-20T08:30:00Z")).toMatchObject({
      session_budget_usd: 0.02,
      recorded: "2026-11-20T08:00:00.000Z",
      changed: [],
    });
    expect(await config("2026-11-20T08:30:00Z", "2026-11-20T12:00:00Z")).toMatchObject({
      session_budget_usd: 3,
      recorded: "2026-11-20T09:00:00.000Z",
      changed: ["session_budget_usd"],
    });
    expect(await config("2026-11-20T09:30:00Z", "2026-11-20T12:00:00Z")).toMatchObject({
      session_budget_usd: 3,
      changed: [],
    });
    const table = await cli([
      "report",
      "--db",
      path,
      "--since",
      "2026-11-20T08:30:00Z",
      "--until",
      "2026-11-20T12:00:00Z",
    ]);
    expect(table.stdout).toContain("caps changed during the range (session_budget_usd): the latest is shown");
  });
});

describe("judge-guard report: reported and computed cost apart", () => {
  it("totals, per judge and model, csv and html separate the judges' reported costs from tokens x price", async () => {
    const ledger = await guardLedger({});
    const json = JSON.parse((await cli(["report", "--db", ledger, ...RANGE, "--format", "json"])).stdout);
    const t = json.totals;
    expect(t).toMatchObject({
      calls_judged: 3,
      reported_usd: 0.011,
      // The same call priced by its tokens: 1000 x $3/M + 100 x $15/M.
      reported_computed_usd: 0.0045,
      computed_usd: 0.0045,
      unknown_source_usd: 0,
      calls_by_cost_source: { reported: 1, computed: 1, estimate: 1, unknown: 0 },
    });
    expect(t.estimated_usd).toBeGreaterThan(0);
    expect(t.reported_usd + t.computed_usd + t.estimated_usd).toBeCloseTo(t.charged_usd, 6);
    const byJudge = Object.fromEntries(
      json.by_judge.map((r: { name: string }) => [r.name, r] as const),
    ) as Record<string, Record<string, number>>;
    expect(byJudge.quality_assessment).toMatchObject({
      reported_usd: 0.011,
      reported_computed_usd: 0.0045,
      computed_usd: 0,
      estimated_usd: 0,
      charged_usd: 0.011,
    });
    expect(byJudge.observation_extraction).toMatchObject({ reported_usd: 0, computed_usd: 0.0045 });
    expect(byJudge.consolidation!.estimated_usd).toBe(t.estimated_usd);
    expect(json.by_model[0]).toMatchObject({
      name: "claude-sonnet-4-6",
      reported_usd: 0.011,
      computed_usd: 0.0045,
    });

    const table = (await cli(["report", "--db", ledger, ...RANGE], { COLUMNS: "120" })).stdout;
    expect(table).toMatch(/reported cost\s+1\s+\$0\.0110 \(tokens x price of the same calls: \$0\.0045\)/);
    expect(table).toMatch(/computed\s+1\s+\$0\.0045 \(tokens x price\)/);
    expect(table).toMatch(/estimate\s+1\s+\$0\.\d+/);
    expect(table).toMatch(
      /name\s+calls\s+input\s+output\s+cache read\s+cache write\s+reported\s+computed\s+estimate\s+charged/,
    );
    expect(table).toMatch(
      /quality_assessment\s+1\s+1,000\s+100\s+0\s+0\s+\$0\.0110\s+\$0\.0000\s+\$0\.0000\s+\$0\.0110/,
    );
    const narrow = (await cli(["report", "--db", ledger, ...RANGE], { COLUMNS: "100" })).stdout;
    expect(narrow.split("\n").every((l) => l.length <= 100)).toBe(true);

    const csv = parse((await cli(["report", "--db", ledger, ...RANGE, "--format", "csv"])).stdout, {
      columns: true,
    }) as Array<Record<string, string>>;
    expect(csv[0]).toMatchObject({
      reported_usd: "0.011",
      reported_computed_usd: "0.0045",
      computed_usd: "0.0045",
    });

    const out = join(tmp(), "report.html");
    expect((await cli(["report", "--db", ledger, ...RANGE, "--format", "html", "--out", out])).code).toBe(0);
    const html = readFileSync(out, "utf8");
    expect(html).toMatch(
      /<p class="sources" id="cost-sources">charged: \$0\.0110 reported by the judges \(tokens x price of the same calls: \$0\.004500\) · \$0\.004500 computed from tokens x price · \$0\.\d+ estimated<\/p>/,
    );
    expect(html).toContain('<p class="caps" id="caps">budget used / cap: session cap $5.00 per 24h');
  });
});
