import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useTempDir } from "../helpers/tmp.js";

const BIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const INCIDENT = fileURLToPath(new URL("../../examples/phantom-incident.jsonl.gz", import.meta.url));
const RANGE = ["--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z"];
const tmp = useTempDir();

function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("JUDGE_GUARD_")),
  );
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...clean, NO_COLOR: "1", ...env }, maxBuffer: 1 << 26 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

interface Decision {
  line: number;
  session_key: string;
  decision: string;
  reason: string | null;
  cost_usd: number;
  saved_usd: number;
}

/** A real ledger made by the guard: the bundled incident replayed with --db. */
let ledger: string;
let decisions: Decision[];
let ledgerDir: string;
beforeAll(async () => {
  ledgerDir = mkdtempSync(join(tmpdir(), "judge-guard-report-"));
  const dir = ledgerDir;
  ledger = join(dir, "ledger.db");
  const out = join(dir, "decisions.jsonl");
  const r = await cli(["replay", INCIDENT, "--db", ledger, "--decisions", out, "--no-progress"]);
  expect(r.code).toBe(0);
  decisions = readFileSync(out, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
}, 60_000);
afterAll(() => rmSync(ledgerDir, { recursive: true, force: true }));

const cents = (usd: number) => Math.round(usd * 100);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe("judge-guard report", () => {
  it("--format json: totals equal the decisions the guard made, to the cent", async () => {
    const r = await cli(["report", "--db", ledger, ...RANGE, "--format", "json"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    const report = JSON.parse(r.stdout);
    const judged = decisions.filter((d) => d.decision === "judged");
    const skipped = decisions.filter((d) => d.decision === "skipped");
    expect(report.totals).toMatchObject({
      calls_judged: judged.length,
      calls_skipped: skipped.length,
      skipped_by_reason: { stuck_session: 698 },
    });
    expect(cents(report.totals.charged_usd)).toBe(cents(sum(judged.map((d) => d.cost_usd))));
    expect(cents(report.totals.saved_usd)).toBe(cents(sum(skipped.map((d) => d.saved_usd))));
    expect(cents(report.totals.unguarded_usd)).toBe(
      cents(report.totals.charged_usd + report.totals.saved_usd),
    );
    // Per key, judge kind, model and period add up to the totals.
    expect(cents(sum(report.sessions.map((s: { charged_usd: number }) => s.charged_usd)))).toBe(
      cents(report.totals.charged_usd),
    );
    expect(cents(sum(report.by_judge.map((s: { charged_usd: number }) => s.charged_usd)))).toBe(
      cents(report.totals.charged_usd),
    );
    expect(cents(sum(report.by_model.map((s: { charged_usd: number }) => s.charged_usd)))).toBe(
      cents(report.totals.charged_usd),
    );
    expect(cents(sum(report.series.points.map((p: { saved_usd: number }) => p.saved_usd)))).toBe(
      cents(report.totals.saved_usd),
    );
    expect(report.series.bucket).toBe("hour");
    const cli_ = report.sessions.find((s: { session_key: string }) => s.session_key === "cli:cli:local");
    expect(cli_.episodes).toHaveLength(1);
    expect(cli_.episodes[0]).toMatchObject({
      ended: null,
      repeats: 2,
      signals: [{ channel: "replay", status: "delivered", attempts: 1 }],
    });
    expect(report.estimates.calls).toBe(judged.length);
  });

  it("--session-key narrows every figure to one key", async () => {
    const r = await cli([
      "report",
      "--db",
      ledger,
      ...RANGE,
      "--format",
      "json",
      "--session-key",
      "cli:cli:local",
    ]);
    const report = JSON.parse(r.stdout);
    const mine = decisions.filter((d) => d.session_key === "cli:cli:local");
    expect(report.sessions.map((s: { session_key: string }) => s.session_key)).toEqual(["cli:cli:local"]);
    expect(report.totals.calls_judged + report.totals.calls_skipped).toBe(mine.length);
    expect(cents(report.totals.saved_usd)).toBe(cents(sum(mine.map((d) => d.saved_usd))));
  });

  it("--format csv: one row per key (or per day), readable by a CSV parser", async () => {
    const r = await cli(["report", "--db", ledger, ...RANGE, "--format", "csv"]);
    const rows = parse(r.stdout, { columns: true }) as Array<Record<string, string>>;
    const keys = new Set(decisions.map((d) => d.session_key));
    expect(rows.map((x) => x.session_key).sort()).toEqual([...keys].sort());
    expect(cents(sum(rows.map((x) => Number(x.charged_usd))))).toBe(
      cents(sum(decisions.map((d) => d.cost_usd))),
    );
    expect(rows.find((x) => x.session_key === "cli:cli:local")).toMatchObject({
      skipped: "698",
      stuck_episodes: "1",
      ongoing_episodes: "1",
    });
    const days = parse(
      (
        await cli([
          "report",
          "--db",
          ledger,
          "--since",
          "2026-11-15T00:00:00Z",
          "--until",
          "2026-11-25T00:00:00Z",
          "--format",
          "csv",
          "--by",
          "day",
        ])
      ).stdout,
      { columns: true },
    );
    expect(days).toEqual([
      {
        period_start: "2026-11-20T00:00:00.000Z",
        charged_usd: expect.any(String),
        saved_usd: expect.any(String),
      },
    ]);
    // Per day also over a range of one day, where the table and JSON show hours.
    const oneDay = await cli(
      ["report", "--db", ledger, "--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z"].concat(
        ["--format", "csv", "--by", "day"],
      ),
    );
    expect(parse(oneDay.stdout, { columns: true })).toEqual(days);
  });

  it("--format table: totals, keys, judges, models and periods in aligned columns", async () => {
    const r = await cli(["report", "--db", ledger, ...RANGE], { COLUMNS: "100" });
    expect(r.code).toBe(0);
    for (const heading of ["per session key", "per judge kind", "per model", "per hour", "estimates:"])
      expect(r.stdout).toContain(heading);
    expect(r.stdout).toMatch(/skipped\s+698 calls\s+\$20\.65 saved/);
    expect(r.stdout).toMatch(/cli:cli:local\s+34\s+698/);
    expect(r.stdout.split("\n").every((l) => l.length <= 100)).toBe(true);
    // Piped with no width given, nothing is cut.
    const full = await cli(["report", "--db", ledger, ...RANGE]);
    expect(full.stdout).toContain("ongoing since 09:47 UTC (1/1 signalled)");
  });

  it("reads the ledger while a guard holds a write transaction on it", async () => {
    const writer = new Database(ledger);
    writer.exec("BEGIN IMMEDIATE");
    const r = await cli(["report", "--db", ledger, ...RANGE, "--format", "json"]);
    writer.exec("ROLLBACK");
    writer.close();
    expect(r.code).toBe(0);
  });

  it.each([
    [
      "a missing ledger",
      (d: string) => ["--db", join(d, "nope.db")],
      1,
      /no ledger at .*nope\.db \(set --db or JUDGE_GUARD_DB\)/,
    ],
    [
      "a folder",
      (d: string) => ["--db", d],
      1,
      /is a folder, not a ledger \(set --db or JUDGE_GUARD_DB to the ledger file\)/,
    ],
    [
      "a file that is not a ledger",
      (d: string) => {
        const p = join(d, "empty.db");
        new Database(p).close();
        return ["--db", p];
      },
      1,
      /is not a judge-guard ledger/,
    ],
    [
      "a ledger from a newer schema",
      (d: string) => {
        const p = join(d, "future.db");
        const db = new Database(p);
        db.pragma("user_version = 99");
        db.close();
        return ["--db", p];
      },
      1,
      /schema version 99, newer than this judge-guard understands .*upgrade judge-guard/,
    ],
    ["a bad range", () => ["--db", "x.db", "--since", "last week"], 2, /--since "last week" is not valid/],
    [
      "a range that ends before it starts",
      () => ["--db", "x.db", "--since", "2026-11-21T00:00:00Z", "--until", "2026-11-20T00:00:00Z"],
      2,
      /must be before --until/,
    ],
    [
      "an unknown format",
      () => ["--db", "x.db", "--format", "xml"],
      2,
      /--format "xml" is not one of table, json, csv/,
    ],
  ])("%s: one line naming the problem", async (_name, args, code, message) => {
    const r = await cli(["report", ...args(tmp())]);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });
});

describe("judge-guard report --out FILE", () => {
  it.each(["table", "json", "csv"])(
    "--format %s writes to the file what it prints without --out, and says where",
    async (format) => {
      const out = join(tmp(), `report.${format}`);
      const printed = await cli(["report", "--db", ledger, ...RANGE, "--format", format]);
      const written = await cli(["report", "--db", ledger, ...RANGE, "--format", format, "--out", out]);
      expect(written.code).toBe(0);
      expect(written.stdout).toBe(`wrote ${out}\n`);
      expect(readFileSync(out, "utf8")).toBe(printed.stdout);
    },
  );

  it("a folder that does not exist is one line, exit 2", async () => {
    const out = join(tmp(), "missing", "report.json");
    const r = await cli(["report", "--db", ledger, ...RANGE, "--format", "json", "--out", out]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(
      /^judge-guard: cannot write --out \S+report\.json: its folder \S+missing does not exist$/,
    );
  });
});

describe("judge-guard report on a range with no decisions", () => {
  it("says what range the ledger does hold, as the options that show it", async () => {
    const r = await cli([
      "report",
      "--db",
      ledger,
      "--since",
      "2026-12-01T00:00:00Z",
      "--until",
      "2026-12-02T00:00:00Z",
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("no decisions in this range");
    const first = "2026-11-20T08:00:49Z";
    expect(r.stderr.trim()).toBe(
      `judge-guard: report: no decisions from 2026-12-01T00:00:00Z to 2026-12-02T00:00:00Z; ${ledger} holds 1,076 decisions from ${first} to 2026-11-20T19:52:02Z: see them with --since ${first} --until 2026-11-20T19:52:02Z`,
    );
    // ...and those options do show them.
    const shown = await cli([
      "report",
      "--db",
      ledger,
      "--since",
      first,
      "--until",
      "2026-11-20T19:52:02Z",
      "--format",
      "json",
    ]);
    const totals = (
      JSON.parse(shown.stdout) as {
        totals: { calls_judged: number; calls_skipped: number; calls_failed: number };
      }
    ).totals;
    expect(totals.calls_judged + totals.calls_skipped + totals.calls_failed).toBe(1076);
  });

  it("with --format json too, on stderr, so the JSON stays clean", async () => {
    const r = await cli(["report", "--db", ledger, "--since", "1h", "--format", "json"]);
    expect(r.code).toBe(0);
    expect(() => JSON.parse(r.stdout)).not.toThrow();
    expect(r.stderr).toMatch(/holds 1,076 decisions from 2026-11-20T08:00:49Z/);
  });

  it("for a key the ledger never saw, says so", async () => {
    const r = await cli(["report", "--db", ledger, ...RANGE, "--session-key", "slack:nobody"]);
    expect(r.code).toBe(0);
    expect(r.stderr.trim()).toBe(
      `judge-guard: report: no decisions from 2026-11-20T00:00:00Z to 2026-11-21T00:00:00Z; ${ledger} holds no decisions for session key slack:nobody at all`,
    );
  });
});
