// The figures a user reads in `report` and `replay` (issue 14, item 5): the headline agrees with
// the per-key columns, counts take their noun in the singular for one, shares have one precision,
// a column of money has one precision, and times say their zone.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { createGuard, type JudgeRequest } from "../../src/index.js";
import { cli, ensureBuilt, ROOT } from "../helpers/cli.js";
import { FakeClock, useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
beforeAll(ensureBuilt, 120_000);

const RANGE = ["--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z"];
const INCIDENT = join(ROOT, "examples", "phantom-incident.jsonl.gz");

const request = (key: string, i: number): JudgeRequest => ({
  judge: "quality_assessment",
  model: "claude-sonnet-4-6",
  sessionKey: key,
  userMessages: [`question ${i}`],
  assistantMessages: [`a real answer number ${i} with substance`],
});

/** A ledger written by the guard on a fake clock (2026-11-20T08:00Z onwards). */
async function ledgerWith(calls: (g: ReturnType<typeof createGuard>) => Promise<void>): Promise<string> {
  const path = join(tmp(), "ledger.db");
  const guard = createGuard({ ledger: path, logger: "silent", clock: new FakeClock() });
  await calls(guard);
  await guard.close();
  return path;
}

/** The cells of a table row that starts with `first`, split on runs of two or more spaces. */
function row(text: string, first: string): string[] {
  const line = text.split("\n").find((l) => l.startsWith(first));
  if (line === undefined) throw new Error(`no row ${first} in:\n${text}`);
  return line.split(/ {2,}/);
}

/** The rows of a table after its heading, up to the next blank line (or the caps line). */
function tableAfter(text: string, heading: string): string[][] {
  const lines = text.split("\n");
  const at = lines.indexOf(heading);
  const end = lines.findIndex((l, i) => i > at && (l === "" || l.startsWith("budget used / cap")));
  return lines.slice(at + 3, end === -1 ? undefined : end).map((l) => l.trim().split(/ {2,}/));
}

const decimals = (money: string): number => /\.(\d+)$/.exec(money)?.[1]?.length ?? 0;

describe("report: the headline and the per-key columns agree", () => {
  it("a failed call is counted as judged in the headline, as in the per-key column", async () => {
    const db = await ledgerWith(async (g) => {
      await g.run(request("k", 1), async () => ({ inputTokens: 1000, outputTokens: 100 }));
      await g
        .run(request("k", 2), async () => {
          throw Object.assign(new Error("judge timed out"), {
            partialCost: { inputTokens: 1000, outputTokens: 0, costUsd: 0.003 },
          });
        })
        .catch(() => undefined);
    });
    const r = await cli(["report", "--db", db, ...RANGE]);
    expect(r.code).toBe(0);
    // Before: "judged 1 calls ... (1 failed calls included)" above a key row judging 2.
    expect(r.stdout).toMatch(/^ {2}judged\s+2 calls\s+\$\S+ charged \(1 failed call included\)$/m);
    expect(row(r.stdout, "k ").slice(1, 3)).toEqual(["2", "0"]);
    const json = JSON.parse((await cli(["report", "--db", db, ...RANGE, "--format", "json"])).stdout);
    expect(json.totals).toMatchObject({ calls_judged: 1, calls_failed: 1 });
    expect(json.sessions[0]).toMatchObject({ calls: 2, skipped: 0, failed: 1 });
  });
});

describe("report: counts, shares, money and times", () => {
  it("one call is '1 call', and a share of nothing is 0.0%", async () => {
    const db = await ledgerWith(async (g) => {
      await g.run(request("k", 1), async () => ({ inputTokens: 1000, outputTokens: 100 }));
    });
    const r = await cli(["report", "--db", db, ...RANGE]);
    expect(r.stdout).toMatch(/^ {2}judged\s+1 call \s+\$0\.0045 charged$/m);
    expect(r.stdout).toMatch(/^ {2}skipped\s+0 calls\s+\$0\.0000 saved$/m);
    expect(r.stdout).toMatch(/^estimates: 1 call reserved /m);
    expect(r.stdout).toContain("the guard saved 0.0%");
    const empty = await cli([
      "report",
      "--db",
      db,
      "--since",
      "2026-11-18T00:00:00Z",
      "--until",
      "2026-11-19T00:00:00Z",
    ]);
    expect(empty.stdout).toContain("unguarded  $0.00: the guard saved 0.0%");
  });

  it("each money column has one precision, and times are labelled UTC", async () => {
    const db = join(tmp(), "incident.db");
    expect((await cli(["replay", INCIDENT, "--db", db, "--no-progress"])).code).toBe(0);
    const r = await cli(["report", "--db", db, ...RANGE]);
    // Before: $0.4321 above $2.11 in the charged column, $0.00 beside $1.01 per hour.
    for (const [heading, columns] of [
      ["per session key", [3, 4]],
      ["per judge kind", [6]],
      ["per model", [6]],
      ["per hour", [1, 2]],
    ] as const) {
      const rows = tableAfter(r.stdout, heading);
      expect(rows.length, heading).toBeGreaterThan(1);
      for (const c of columns) {
        const precisions = new Set(rows.map((cells) => decimals(cells[c]!)));
        expect([...precisions], `${heading}, column ${c}: ${rows.map((x) => x[c]).join(" ")}`).toHaveLength(
          1,
        );
      }
    }
    // The budget cell shows use and cap alike.
    expect(row(r.stdout, "cli:cli:local")[5]).toBe("$0.4321 / $5.0000");
    expect(r.stdout).toContain("ongoing since 09:47 UTC (1/1 signalled)");
    expect(r.stdout).toMatch(/^hour \(UTC\)\s+charged\s+saved$/m);
    // A range beyond one day shows the date of an episode's start too.
    const week = await cli([
      "report",
      "--db",
      db,
      "--since",
      "2026-11-15T00:00:00Z",
      "--until",
      "2026-11-22T00:00:00Z",
    ]);
    expect(week.stdout).toContain("ongoing since 2026-11-20 09:47 UTC");
    expect(week.stdout).toMatch(/^day \(UTC\)\s+charged\s+saved$/m);
  }, 60_000);
});

describe("replay: counts and money", () => {
  it("one line is '1 line' and one call '1 call'", async () => {
    const file = join(tmp(), "one.jsonl");
    writeFileSync(
      file,
      `${JSON.stringify({
        ts: "2026-11-20T08:00:00Z",
        judge: "quality_assessment",
        model: "claude-sonnet-4-6",
        session: { session_key: "k", user_messages: ["hi"], assistant_messages: ["Hello, how can I help?"] },
        usage: { input_tokens: 1000, output_tokens: 100 },
      })}\n{"not": "a line"}\n`,
    );
    const r = await cli(["replay", file]);
    expect(r.stdout).toMatch(/\(2 lines, enforce mode\)$/m);
    expect(r.stdout).toMatch(/^ {2}judged\s+1 call \s+\$0\.0045 spent$/m);
    expect(r.stdout).toMatch(/^ {2}invalid\s+1 line {2}\(see stderr\)$/m);
    // One precision for the summary's money: no "$0.00" beside "$0.0045".
    expect(r.stdout).toMatch(/^ {2}skipped\s+0 calls\s+\$0\.0000 saved$/m);
    expect(r.stdout).toMatch(/guarded \$0\.0045: 0\.0% saved$/m);
  });
});
