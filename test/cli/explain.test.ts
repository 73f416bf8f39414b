import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { cli, ensureBuilt } from "../helpers/cli.js";
import { useTempDir } from "../helpers/tmp.js";

beforeAll(ensureBuilt, 120_000);
const tempDir = useTempDir();

const CANNED = "Service temporarily unavailable (zebra-canary). Please try again later.";
const STUCK = "slack:C1:stuck";
const HEALTHY = "slack:C1:healthy";

/** A stuck key (two real answers, then one canned line to every message) and a healthy key. */
function traffic(): string {
  const lines: string[] = [];
  const add = (key: string, users: string[], replies: string[], t: number) =>
    lines.push(
      JSON.stringify({
        ts: new Date(Date.UTC(2026, 11, 1, 9, 0, t)).toISOString(),
        judge: "observation_extraction",
        model: "claude-sonnet-4-6",
        session: { session_key: key, user_messages: users, assistant_messages: replies },
      }),
    );
  const asks = ["plan the release", "what changed?", "hello?", "can you check the queue", "anyone?", "ping"];
  const replies = [
    "Release plan: freeze Monday, cut the branch Tuesday, ship Thursday after the soak test.",
    "Three services changed: billing (new retry policy), search (index rebuild) and the web app.",
    CANNED,
    CANNED,
    CANNED,
    CANNED,
  ];
  for (let i = 0; i < asks.length; i++) {
    add(STUCK, asks.slice(0, i + 1), replies.slice(0, i + 1), i * 2);
    add(HEALTHY, [`question ${i}`], [`A different, real answer about topic ${i}.`], i * 2 + 1);
  }
  const file = join(tempDir(), "traffic.jsonl");
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

describe("judge-guard replay --explain KEY", () => {
  it("shows reply by reply what each reply matched, weighed and why, and what the guard did", async () => {
    const r = await cli(["replay", traffic(), "--explain", STUCK]);
    expect(r.code, r.stderr).toBe(0);
    const table = r.stdout.slice(r.stdout.indexOf(`explain ${STUCK}, reply by reply:`));
    const rows = table.split("\n").filter((l) => /^\d+\s/.test(l));
    expect(rows).toHaveLength(6);
    expect(rows[0]).toMatch(/^1\s+1\s+\d+\s+[0-9a-f]{16}\s+new\s+.*judged\s+new reply/);
    // The first canned reply is new; the second repeats it (+1); the third reaches the threshold.
    expect(rows[2]).toMatch(/\bnew\b.*judged/);
    expect(rows[3]).toMatch(
      /exact of 3\s+\+1\s+1\/2\s+judged\s+repeats an earlier reply to a different message/,
    );
    expect(rows[4]).toMatch(/exact of 4\s+\+1\s+2\/2\s+skipped \(stuck_session\)/);
    expect(rows[5]).toMatch(/skipped \(stuck_session\)/);
    // Fingerprints and lengths only: no transcript text.
    expect(r.stdout).not.toContain("zebra-canary");
    expect(r.stdout).not.toContain("Release plan");
  });

  it("says so when no line has the key, and gives the replies as JSON with --json", async () => {
    const file = traffic();
    const none = await cli(["replay", file, "--explain", "no:such:key"]);
    expect(none.stdout).toContain("explain no:such:key: no line of the replay has this session key");
    const json = await cli(["replay", file, "--explain", STUCK, "--json"]);
    const parsed = JSON.parse(json.stdout) as {
      explain: { session_key: string; replies: Array<Record<string, unknown>> };
    };
    expect(parsed.explain.session_key).toBe(STUCK);
    expect(parsed.explain.replies.map((x) => x.decision)).toEqual([
      "judged",
      "judged",
      "judged",
      "judged",
      "skipped",
      "skipped",
    ]);
    expect(parsed.explain.replies[4]).toMatchObject({
      turn: 5,
      match: "exact",
      stuck: true,
      reasons: ["repeat"],
    });
  });
});

describe("judge-guard explain KEY", () => {
  it("reads the episodes of a key from the ledger, with the evidence each opened on", async () => {
    const db = join(tempDir(), "ledger.db");
    expect((await cli(["replay", traffic(), "--db", db])).code).toBe(0);
    const r = await cli(["explain", STUCK, "--db", db]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${STUCK} in ${db}: 1 stuck episode; stuck now`);
    expect(r.stdout).toMatch(
      /episode [0-9a-f-]{36}: opened 2026-12-01T09:00:08\.000Z at reply 5 \(ongoing\), evidence repeats/,
    );
    const rows = r.stdout.split("\n").filter((l) => /^\d+\s/.test(l));
    expect(rows).toHaveLength(5);
    expect(rows[4]).toMatch(/^5\s.*exact of 4\s+\+1\s+2\/2\s+yes\s+repeats an earlier reply/);
    expect(r.stdout).not.toContain("zebra-canary");
  });

  it("says when a key was never stopped, and how to see why", async () => {
    const db = join(tempDir(), "ledger.db");
    await cli(["replay", traffic(), "--db", db]);
    const r = await cli(["explain", HEALTHY, "--db", db]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${HEALTHY} in ${db}: no stuck episode recorded`);
    expect(r.stdout).toContain("judge-guard replay FILE --explain KEY");
  });

  it("exits 1 naming the ledger when there is none", async () => {
    const missing = join(tempDir(), "nope.db");
    const r = await cli(["explain", STUCK, "--db", missing]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`judge-guard: explain: no ledger at ${missing} (set --db or JUDGE_GUARD_DB)\n`);
  });
});
