// Hostile names against what judge-guard prints (issue 13, item 9): session keys, judge and
// model names with terminal escapes or line breaks must not forge lines in the report,
// reset-sessions or replay, and CSV cells must not run as spreadsheet formulas. Real CLI
// processes on real SQLite files.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { parse } from "csv-parse/sync";
import { beforeAll, describe, expect, it } from "vitest";
import { createGuard, type JudgeRequest } from "../../src/index.js";
import { cli, ensureBuilt } from "../helpers/cli.js";
import { CANNED } from "../helpers/replies.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
beforeAll(ensureBuilt, 120_000);

const HOSTILE_KEYS = [
  "evil\u001b[2J\u001b[1;31mRED", // clears the screen, then red
  "k1\nforged: cli:cli:local cleared by the operator", // a line of its own
  "k2\rforged over the line", // back to the start of the line
  "k3\u202egnp.exe", // right-to-left override
  "k4\u009b31m", // the 8-bit CSI
];
const HOSTILE_JUDGE = "judge\u001b]0;pwned\u0007";
const HOSTILE_MODEL = "model\u001b[8m";

/** A control character a terminal would act on: anything but the newline ending each line. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** Text a terminal shows as it is: no controls, and no line that a name started. */
function expectInert(text: string, what: string): void {
  expect(CONTROL.exec(text)?.[0], `${what} has a control character`).toBeUndefined();
  for (const line of text.split("\n")) expect(line, what).not.toMatch(/^forged/);
}

const request = (
  key: string,
  judge = "observation_extraction",
  model = "claude-sonnet-4-6",
): JudgeRequest => ({
  judge,
  model,
  sessionKey: key,
  userMessages: ["run the tests"],
  assistantMessages: ["2 of 38 tests fail, both in the invoice suite"],
});

/** A ledger written by the real guard, one judged call per key. */
async function ledgerWith(keys: readonly string[], judge?: string, model?: string): Promise<string> {
  const path = join(tmp(), "ledger.db");
  const guard = createGuard({ ledger: path, logger: "silent" });
  for (const key of keys)
    await guard.run(request(key, judge, model), async () => ({ inputTokens: 1000, outputTokens: 100 }));
  await guard.close();
  return path;
}

describe("names with control characters", () => {
  it("report: the table shows each key, judge and model escaped on its own line", async () => {
    const ledger = await ledgerWith(HOSTILE_KEYS, HOSTILE_JUDGE, HOSTILE_MODEL);
    const r = await cli(["report", "--db", ledger], { env: { COLUMNS: "400" } });
    expect(r.code).toBe(0);
    expectInert(r.stdout, "report");
    expect(r.stdout).toContain("evil\\x1b[2J\\x1b[1;31mRED");
    expect(r.stdout).toContain("k1\\nforged: cli:cli:local cleared by the operator");
    expect(r.stdout).toContain("k3\\u202egnp.exe");
    expect(r.stdout).toContain("judge\\x1b]0;pwned\\x07");
    expect(r.stdout).toContain("model\\x1b[8m");
    // One line per key in the table: the lines between the rule and the caps line.
    const lines = r.stdout.split("\n");
    const rule = lines.findIndex((l) => l.startsWith("-----"));
    expect(lines.slice(rule + 1).findIndex((l) => l.startsWith("budget used / cap"))).toBe(
      HOSTILE_KEYS.length,
    );

    const one = await cli(["report", "--db", ledger, "--session-key", HOSTILE_KEYS[1]!], {
      env: { COLUMNS: "400" },
    });
    expect(one.code).toBe(0);
    expectInert(one.stdout, "report --session-key");
    expect(one.stdout).toMatch(/^judge-guard report .* for k1\\nforged/);
  });

  it("reset-sessions: each key Phantom stored is one escaped line", async () => {
    const path = join(tmp(), "phantom.db");
    const db = new Database(path);
    db.exec(`CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, session_key TEXT UNIQUE NOT NULL,
      sdk_session_id TEXT, channel_id TEXT NOT NULL, conversation_id TEXT NOT NULL,
      status TEXT NOT NULL DEFAULT 'active', turn_count INTEGER NOT NULL DEFAULT 0,
      last_active_at TEXT NOT NULL DEFAULT (datetime('now')))`);
    const insert = db.prepare(
      "INSERT INTO sessions (session_key, sdk_session_id, channel_id, conversation_id) VALUES (?, 'sdk_1', 'c', 'c')",
    );
    for (const key of HOSTILE_KEYS) insert.run(key);
    db.close();
    for (const args of [["--dry-run"], []]) {
      const r = await cli(["reset-sessions", "--phantom-db", path, "--all-active", ...args]);
      expect(r.code, r.stderr).toBe(0);
      expectInert(r.stdout, `reset-sessions ${args.join(" ")}`);
      const rows = r.stdout.split("\n").filter((l) => / turns$/.test(l));
      expect(rows).toHaveLength(HOSTILE_KEYS.length);
      expect(r.stdout).toContain("k2\\rforged over the line");
    }
  });

  it("replay: the summary and the log lines show a stuck key escaped", async () => {
    const key = HOSTILE_KEYS[0]!;
    const lines = Array.from({ length: 8 }, (_, i) =>
      JSON.stringify({
        ts: new Date(Date.parse("2026-11-20T08:00:00Z") + i * 60_000).toISOString(),
        judge: HOSTILE_JUDGE,
        model: "claude-sonnet-4-6",
        session: {
          session_key: i % 2 === 0 ? key : HOSTILE_KEYS[1],
          user_messages: Array.from({ length: i + 1 }, (_, j) => `question ${j}`),
          assistant_messages: Array.from({ length: i + 1 }, () => CANNED),
        },
      }),
    );
    const file = join(tmp(), "hostile.jsonl");
    writeFileSync(file, `${lines.join("\n")}\n`);
    const r = await cli(["replay", file, "--no-progress"], { env: { JUDGE_GUARD_LOG_LEVEL: "info" } });
    expect(r.code, r.stderr).toBe(0);
    expectInert(r.stdout, "replay summary");
    expectInert(r.stderr, "replay log");
    expect(r.stdout).toMatch(/^ {2}evil\\x1b\[2J\\x1b\[1;31mRED: stuck from line/m);
    expect(r.stderr).toMatch(/session is stuck.*sessionKey="evil\\u001b\[2J/);
  });
});

describe("CSV cells", () => {
  it("a key a spreadsheet would run as a formula is written with a leading quote", async () => {
    const formulas = ['=HYPERLINK("http://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"];
    const controls = ["\tTAB", "\rCR"];
    const plain = ["cli:cli:local", "a-b=c"];
    const ledger = await ledgerWith([...formulas, ...controls, ...plain]);
    const r = await cli(["report", "--db", ledger, "--format", "csv"]);
    expect(r.code).toBe(0);
    const rows = parse(r.stdout, { columns: true }) as Array<Record<string, string>>;
    const keys = rows.map((row) => row.session_key!).sort();
    expect(keys).toEqual(
      [...formulas, ...controls]
        .map((k) => `'${k}`)
        .concat(plain)
        .sort(),
    );
    for (const row of rows) {
      expect(row.calls).toBe("1");
      expect(Number(row.charged_usd)).toBeGreaterThan(0);
    }
  });
});
