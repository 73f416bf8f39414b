import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { cli, ensureBuilt, ROOT, type Run } from "../helpers/cli.js";
import { useTempDir } from "../helpers/tmp.js";

const SMALL = join(ROOT, "examples", "small.jsonl");
const INCIDENT = join(ROOT, "examples", "phantom-incident.jsonl.gz");
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

/** The deliberately bad lines of small.jsonl (examples/README.md), 1-based, with the field at fault. */
const BAD_LINES = new Map([
  [9, "(line)"],
  [21, "usage.output_tokens"],
]);
/** Lines of small.jsonl whose latest reply is Phantom's canned line (examples/README.md). */
const CANNED_LINES = [12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 25, 26, 27, 28, 31, 32];
const STACK_FRAME = /^\s+at /m;
const HELP_HINT = /^\(run judge-guard --help for usage\)$/;

const tempDir = useTempDir();

beforeAll(ensureBuilt, 120_000);

const linesOf = (text: string): string[] => text.split("\n").filter((l) => l !== "");

interface Decision {
  line: number;
  session_key: string | null;
  judge: string | null;
  decision: "judged" | "skipped" | "invalid";
  reason: string | null;
  cost_usd: number;
  saved_usd: number;
}

interface Summary {
  lines: number;
  judged: number;
  skipped: number;
  skipped_by_reason: Record<string, number>;
  would_skip_by_reason: Record<string, number>;
  invalid: number;
  spent_usd: number;
  saved_usd: number;
  unguarded_usd: number;
  stuck_sessions: Array<{
    session_key: string;
    episode_id: string;
    detected_line: number;
    fingerprint: string;
    repeats: number;
    skipped_calls: number;
    saved_usd: number;
  }>;
  signals: number;
  mode: string;
  ledger: string;
}

const readDecisions = (path: string): Decision[] =>
  linesOf(readFileSync(path, "utf8")).map((l) => JSON.parse(l) as Decision);
const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const cents = (usd: number): number => Math.round(usd * 100);

/** small.jsonl without its bad lines, in a temporary file. */
function cleanSmall(): string {
  const kept = readFileSync(SMALL, "utf8")
    .split("\n")
    .filter((l, i) => l !== "" && !BAD_LINES.has(i + 1));
  const path = join(tempDir(), "clean.jsonl");
  writeFileSync(path, `${kept.join("\n")}\n`);
  return path;
}

describe("judge-guard replay examples/small.jsonl", () => {
  it("prints a summary, reports each bad line with its number and field, and exits 1", async () => {
    const r = await cli(["replay", SMALL]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^judge-guard replay of .*small\.jsonl \(32 lines, enforce mode\)$/m);
    expect(r.stdout).toMatch(/^\s+judged\s+16 calls\s+\$\S+ spent$/m);
    expect(r.stdout).toMatch(/^\s+skipped\s+14 calls\s+\$\S+ saved$/m);
    expect(r.stdout).toMatch(/^\s+stuck_session\s+14$/m);
    expect(r.stdout).toMatch(/^\s+invalid\s+2 lines/m);
    expect(r.stdout).toMatch(
      /^ {2}cli:cli:local: stuck from line 14 \(canned reply [0-9a-f]+ seen 2 times\)/m,
    );
    expect(r.stdout).toContain("signals to force a fresh session: 1");
    expect(r.stdout).toContain("ledger: (temporary, removed)");

    const errors = linesOf(r.stderr);
    expect(errors).toHaveLength(BAD_LINES.size);
    for (const [[line, field], message] of [...BAD_LINES].map((b, i) => [b, errors[i]!] as const)) {
      expect(message).toContain(`small.jsonl: line ${line}: ${field}: `);
    }
    expect(errors[0]).toMatch(/not valid JSON/);
    expect(errors[1]).toMatch(/>=\s*0/);
  });

  it("counts only stuck-episode signals as signals to force a fresh session, budget alerts apart", async () => {
    // A $0.05 daily cap makes the guard send budget alerts (a warning, then cap_reached) besides
    // the one stuck episode's signal (issue 14: they were counted as fresh-session signals).
    const env = { JUDGE_GUARD_DAILY_BUDGET_USD: "0.05" };
    const [text, json] = await Promise.all([
      cli(["replay", SMALL], { env }),
      cli(["replay", SMALL, "--json"], { env }),
    ]);
    expect(text.stdout).toMatch(/^\s+global_budget\s+\d+$/m);
    expect(text.stdout).toContain("signals to force a fresh session: 1\n");
    expect(text.stdout).toMatch(/^budget alerts: [12]$/m);
    const summary = JSON.parse(json.stdout) as Summary & { budget_alerts: number };
    expect(summary.signals).toBe(1);
    expect(summary.budget_alerts).toBeGreaterThan(0);
  });

  describe("--decisions FILE with --json", () => {
    let run: Run;
    let decisions: Decision[];
    let summary: Summary;

    beforeAll(async () => {
      const path = join(tempDir(), "decisions.jsonl");
      run = await cli(["replay", SMALL, "--json", "--decisions", path]);
      decisions = readDecisions(path);
      summary = JSON.parse(run.stdout) as Summary;
    });

    it("exits 1 and prints only the JSON summary on stdout", () => {
      expect(run.code).toBe(1);
      expect(summary).toMatchObject({
        lines: 32,
        invalid: 2,
        mode: "enforce",
        ledger: "(temporary, removed)",
      });
    });

    it("writes one JSON object per input line, in input order, with the documented fields", () => {
      expect(decisions.map((d) => d.line)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1));
      for (const d of decisions) {
        expect(Object.keys(d).sort()).toEqual(
          ["cost_usd", "decision", "judge", "line", "reason", "saved_usd", "session_key"].sort(),
        );
      }
    });

    it("marks the bad lines invalid, with no key, judge or money", () => {
      for (const d of decisions.filter((d) => BAD_LINES.has(d.line))) {
        expect(d).toEqual({
          line: d.line,
          session_key: null,
          judge: null,
          decision: "invalid",
          reason: null,
          cost_usd: 0,
          saved_usd: 0,
        });
      }
      expect(decisions.filter((d) => d.decision === "invalid").map((d) => d.line)).toEqual([
        ...BAD_LINES.keys(),
      ]);
    });

    it("skips the stuck key from the second canned reply on, and nothing else", () => {
      const skipped = decisions.filter((d) => d.decision === "skipped");
      // Phantom's line is known: stuck at its 2nd repeat (lines 14-15 answer the 2nd stuck message).
      expect(skipped.map((d) => d.line)).toEqual(CANNED_LINES.filter((l) => l >= 14));
      for (const d of skipped)
        expect(d).toMatchObject({ session_key: "cli:cli:local", reason: "stuck_session" });
    });

    it("charges judged lines and credits skipped lines, never both", () => {
      for (const d of decisions) {
        if (d.decision === "judged") {
          expect(d.cost_usd).toBeGreaterThan(0);
          expect(d.saved_usd).toBe(0);
          expect(d.reason).toBeNull();
        } else {
          expect(d.cost_usd).toBe(0);
          if (d.decision === "skipped") expect(d.saved_usd).toBeGreaterThan(0);
        }
      }
    });

    it("agrees with the summary: counts, reasons and money", () => {
      const of = (kind: Decision["decision"]) => decisions.filter((d) => d.decision === kind);
      expect(summary.judged).toBe(of("judged").length);
      expect(summary.skipped).toBe(of("skipped").length);
      expect(summary.invalid).toBe(of("invalid").length);
      expect(summary.judged + summary.skipped + summary.invalid).toBe(summary.lines);
      const reasons: Record<string, number> = {};
      for (const d of of("skipped")) reasons[d.reason!] = (reasons[d.reason!] ?? 0) + 1;
      expect(summary.skipped_by_reason).toEqual(reasons);
      expect(cents(summary.spent_usd)).toBe(cents(sum(decisions.map((d) => d.cost_usd))));
      expect(cents(summary.saved_usd)).toBe(cents(sum(decisions.map((d) => d.saved_usd))));
      expect(cents(summary.unguarded_usd)).toBe(cents(summary.spent_usd + summary.saved_usd));
      expect(summary.stuck_sessions).toHaveLength(1);
      expect(summary.stuck_sessions[0]).toMatchObject({
        session_key: "cli:cli:local",
        detected_line: 14,
        repeats: 2,
        skipped_calls: summary.skipped,
      });
      expect(cents(summary.stuck_sessions[0]!.saved_usd)).toBe(cents(summary.saved_usd));
    });

    it("a clean copy (bad lines removed) exits 0 with nothing on stderr and the same decisions", async () => {
      const clean = cleanSmall();
      const path = join(tempDir(), "clean-decisions.jsonl");
      const r = await cli(["replay", clean, "--json", "--decisions", path]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const s = JSON.parse(r.stdout) as Summary;
      expect(s).toMatchObject({ lines: 30, invalid: 0, judged: summary.judged, skipped: summary.skipped });
      expect(s.spent_usd).toBe(summary.spent_usd);
      expect(s.saved_usd).toBe(summary.saved_usd);
      const strip = ({ line: _line, ...d }: Decision) => d;
      expect(readDecisions(path).map(strip)).toEqual(
        decisions.filter((d) => d.decision !== "invalid").map(strip),
      );
    });

    it("reads standard input for - and decides the same", async () => {
      const r = await cli(["replay", "-", "--json"], { stdin: readFileSync(SMALL) });
      expect(r.code).toBe(1);
      const fromStdin = JSON.parse(r.stdout) as Summary;
      const withoutEpisodeIds = (s: Summary) => ({
        ...s,
        stuck_sessions: s.stuck_sessions.map(({ episode_id: _e, ...rest }) => rest),
      });
      expect(withoutEpisodeIds(fromStdin)).toEqual(withoutEpisodeIds(summary));
      expect(linesOf(r.stderr).map((l) => l.slice(0, l.indexOf(": ", 3)))).toEqual([
        "-: line 9",
        "-: line 21",
      ]);
    });
  });

  it("--db PATH keeps a SQLite ledger, mode 0600, with one decision row per valid line", async () => {
    const db = join(tempDir(), "ledger.db");
    const r = await cli(["replay", SMALL, "--db", db, "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ledger: db });
    expect(existsSync(db)).toBe(true);
    if (process.platform !== "win32") expect(statSync(db).mode & 0o777).toBe(0o600);
    const ledger = new Database(db, { readonly: true, fileMustExist: true });
    try {
      const rows = ledger
        .prepare("SELECT decision, COUNT(*) AS n FROM decisions GROUP BY decision")
        .all() as Array<{
        decision: string;
        n: number;
      }>;
      expect(Object.fromEntries(rows.map((x) => [x.decision, x.n]))).toEqual({ judged: 16, skipped: 14 });
    } finally {
      ledger.close();
    }
  });

  it("without --db leaves no ledger behind, neither in the working folder nor in the temp folder", async () => {
    const cwd = tempDir();
    const tmp = tempDir();
    const r = await cli(["replay", SMALL], { cwd, env: { TMPDIR: tmp, TMP: tmp, TEMP: tmp } });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("ledger: (temporary, removed)");
    expect(readdirSync(cwd)).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });
});

describe("judge-guard replay examples/phantom-incident.jsonl.gz", () => {
  let summary: Summary;
  let decisions: Decision[];
  let run: Run;

  beforeAll(async () => {
    const path = join(tempDir(), "incident-decisions.jsonl");
    run = await cli(["replay", INCIDENT, "--json", "--decisions", path]);
    summary = JSON.parse(run.stdout) as Summary;
    decisions = readDecisions(path);
  });

  it("reads the gzip file and exits 0", () => {
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(summary).toMatchObject({ lines: 1076, invalid: 0, judged: 1076 - summary.skipped });
    expect(decisions).toHaveLength(1076);
    // examples/README.md: $26.38 of judge spend in total.
    expect(cents(summary.unguarded_usd)).toBe(2638);
  });

  it("reports cli:cli:local as the one stuck session, with exactly one signal", () => {
    expect(summary.signals).toBe(1);
    expect(summary.stuck_sessions).toHaveLength(1);
    const [stuck] = summary.stuck_sessions;
    expect(stuck).toMatchObject({ session_key: "cli:cli:local", repeats: 2 });
    // The first stuck message (lines 83-84) is judged; the 2nd of its 700 canned lines onwards are not.
    expect(stuck!.detected_line).toBeGreaterThan(84);
    expect(stuck!.skipped_calls).toBe(698);
    expect(decisions[stuck!.detected_line - 1]).toMatchObject({
      session_key: "cli:cli:local",
      decision: "skipped",
      reason: "stuck_session",
    });
  });

  it("skips nothing on the five healthy keys: no stuck or budget skips there", () => {
    const otherKeys = decisions.filter((d) => d.session_key !== "cli:cli:local");
    expect(new Set(otherKeys.map((d) => d.session_key)).size).toBe(5);
    expect(otherKeys.filter((d) => d.decision !== "judged")).toEqual([]);
    expect(Object.keys(summary.skipped_by_reason)).toEqual(["stuck_session"]);
  });
});

/** A valid line of small.jsonl (its first), as an object to vary. */
const firstLine = (): Record<string, unknown> & { session: Record<string, unknown> } =>
  JSON.parse(readFileSync(SMALL, "utf8").split("\n")[0]!) as Record<string, unknown> & {
    session: Record<string, unknown>;
  };

/** Writes JSON Lines (objects are serialised, strings written as they are) to a temporary file. */
function jsonl(lines: ReadonlyArray<string | object>): string {
  const path = join(tempDir(), "traffic.jsonl");
  writeFileSync(path, `${lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n")}\n`);
  return path;
}

describe("judge-guard replay: bad lines", () => {
  it.each<[string, (l: ReturnType<typeof firstLine>) => void, string]>([
    ["no judge", (l) => delete l.judge, "judge: missing (required)"],
    ["no ts", (l) => delete l.ts, "ts: missing (required)"],
    ["no session", (l) => delete (l as Record<string, unknown>).session, "session: missing (required)"],
    [
      "no session.session_key",
      (l) => delete l.session.session_key,
      "session.session_key: missing (required)",
    ],
    [
      "no usage.input_tokens",
      (l) => delete (l.usage as Record<string, unknown>).input_tokens,
      "usage.input_tokens: missing (required)",
    ],
  ])("a line with %s says the field is missing", async (_name, change, message) => {
    const bad = firstLine();
    change(bad);
    const r = await cli(["replay", jsonl([firstLine(), bad])]);
    expect(r.code).toBe(1);
    expect(linesOf(r.stderr)).toEqual([expect.stringMatching(/traffic\.jsonl: line 2: /)]);
    expect(r.stderr).toContain(`traffic.jsonl: line 2: ${message}\n`);
    expect(r.stderr).not.toContain("undefined");
  });

  it.each<[string, (l: ReturnType<typeof firstLine>) => void, string, string]>([
    [
      "a number for judge",
      (l) => {
        l.judge = 5;
      },
      "judge",
      "expected string, received number",
    ],
    [
      "null for session_key",
      (l) => {
        l.session.session_key = null;
      },
      "session.session_key",
      "received null",
    ],
    [
      "a number for outcome",
      (l) => {
        l.session.outcome = 3;
      },
      "session.outcome",
      "expected string",
    ],
  ])(
    "a line with %s names the field, what was expected and what was received",
    async (_n, change, field, says) => {
      const bad = firstLine();
      change(bad);
      const r = await cli(["replay", jsonl([bad])]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(`^.*traffic\\.jsonl: line 1: ${field.replace(".", "\\.")}: .*${says}`, "m"),
      );
      expect(r.stderr).not.toContain("missing");
    },
  );

  it("session.outcome may be any string", async () => {
    const lines = ["interrupted", "stale_resume", "", "success"].map((outcome, i) => {
      const l = firstLine();
      l.session.outcome = outcome;
      l.judge = `judge-${i}`; // not a reuse of the previous verdict
      return l;
    });
    const r = await cli(["replay", jsonl(lines), "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ lines: 4, judged: 4, invalid: 0 });
  });

  it("a blank line is an invalid line with its own decision, so there is one decision per line", async () => {
    const l = firstLine();
    const second = { ...l, judge: "consolidation" };
    const input = jsonl([l, "", "  \t ", second]);
    const path = join(tempDir(), "decisions.jsonl");
    const r = await cli(["replay", input, "--json", "--decisions", path]);
    expect(r.code).toBe(1);
    expect(linesOf(r.stderr)).toEqual([
      `${input}: line 2: (line): empty line`,
      `${input}: line 3: (line): empty line`,
    ]);
    const decisions = readDecisions(path);
    expect(decisions.map((d) => [d.line, d.decision])).toEqual([
      [1, "judged"],
      [2, "invalid"],
      [3, "invalid"],
      [4, "judged"],
    ]);
    expect(JSON.parse(r.stdout)).toMatchObject({ lines: 4, judged: 2, invalid: 2 });
  });

  it("a blank line in standard input is reported the same way", async () => {
    const l = JSON.stringify(firstLine());
    const r = await cli(["replay", "-", "--json"], {
      stdin: `${l}\n\n${l.replace("observation_extraction", "x")}\n`,
    });
    expect(r.code).toBe(1);
    expect(linesOf(r.stderr)).toEqual(["-: line 2: (line): empty line"]);
    expect(JSON.parse(r.stdout)).toMatchObject({ lines: 3, invalid: 1 });
  });
});

describe("judge-guard replay --db PATH that cannot be a ledger", () => {
  // [case, how to make the path in a fresh folder, what the message says besides --db and the path]
  it.each<[string, (dir: string) => string, RegExp]>([
    [
      "a parent that is a file",
      (dir) => {
        writeFileSync(join(dir, "somefile"), "");
        return join(dir, "somefile", "x.db");
      },
      /somefile is not a folder/,
    ],
    [
      "a parent below a file",
      (dir) => {
        writeFileSync(join(dir, "somefile"), "");
        return join(dir, "somefile", "sub", "x.db");
      },
      /somefile\/sub does not exist: part of it is a file/,
    ],
    [
      "a missing parent folder that cannot be created (under /proc)",
      () => "/proc/nope/x.db",
      /cannot create the folder \/proc\/nope: the file system refused it \(ENOENT\)/,
    ],
    [
      "a file that is not SQLite",
      (dir) => {
        writeFileSync(join(dir, "notes.db"), "not a database");
        return join(dir, "notes.db");
      },
      /is not a judge-guard ledger \(not a SQLite file\): give --db a new file or an existing ledger/,
    ],
    [
      "a path that is a folder",
      (dir) => {
        mkdirSync(join(dir, "ledger.db"));
        return join(dir, "ledger.db");
      },
      /is a folder/,
    ],
  ])(
    "%s is a usage error: exit 2, one line naming --db and the path, nothing created",
    async (_n, make, why) => {
      const dir = tempDir();
      const db = make(dir);
      const before = readdirSync(dir).sort();
      const r = await cli(["replay", SMALL, "--db", db]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).not.toMatch(STACK_FRAME);
      expect(linesOf(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^judge-guard: --db ${db}:? `));
      expect(r.stderr).not.toContain("JUDGE_GUARD_DB");
      expect(r.stderr).toMatch(why);
      expect(readdirSync(dir).sort()).toEqual(before);
    },
    15_000,
  );

  it("a SQLite file of something else (Phantom's phantom.db) is refused, named, and left as it was", async () => {
    const dir = tempDir();
    const db = join(dir, "phantom.db");
    const phantom = new Database(db);
    phantom.exec("CREATE TABLE sessions (session_key TEXT PRIMARY KEY, sdk_session_id TEXT)");
    phantom.close();
    const before = readFileSync(db);
    const r = await cli(["replay", SMALL, "--db", db]);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(STACK_FRAME);
    // Replay reads --db only: JUDGE_GUARD_DB, which it never used, is not named.
    expect(r.stderr.trim()).toBe(
      `judge-guard: --db ${db} is not a judge-guard ledger: it holds other tables (sessions); give --db a new file or an existing ledger`,
    );
    expect(readFileSync(db).equals(before)).toBe(true);
    expect(readdirSync(dir)).toEqual(["phantom.db"]);
  });

  it("missing folders are created, as the library creates them (data/replay.db in a fresh clone)", async () => {
    const cwd = tempDir();
    const r = await cli(["replay", SMALL, "--db", "data/sub/replay.db", "--json"], { cwd });
    expect(r.code).toBe(1); // small.jsonl has two bad lines
    expect(JSON.parse(r.stdout)).toMatchObject({ ledger: "data/sub/replay.db", judged: 16 });
    expect(statSync(join(cwd, "data", "sub", "replay.db")).isFile()).toBe(true);
  });

  it("creates no folder when the input cannot be read", async () => {
    const cwd = tempDir();
    const r = await cli(["replay", "missing.jsonl", "--db", "data/replay.db"], { cwd });
    expect(r.code).toBe(2);
    expect(readdirSync(cwd)).toEqual([]);
  });

  it("a relative path in the working folder is fine", async () => {
    const cwd = tempDir();
    const r = await cli(["replay", SMALL, "--db", "ledger.db", "--json"], { cwd });
    expect(r.code).toBe(1); // small.jsonl has two bad lines
    expect(existsSync(join(cwd, "ledger.db"))).toBe(true);
  });
});

describe("judge-guard replay twice into one --db", () => {
  const judgedIn = (db: string): number => {
    const ledger = new Database(db, { readonly: true, fileMustExist: true });
    try {
      return (ledger.prepare("SELECT count(*) AS n FROM decisions").get() as { n: number }).n;
    } finally {
      ledger.close();
    }
  };

  it("is refused without --append (exit 2, one line saying what the ledger holds), and changes nothing", async () => {
    const db = join(tempDir(), "replay.db");
    expect((await cli(["replay", SMALL, "--db", db])).code).toBe(1);
    const before = judgedIn(db);
    const r = await cli(["replay", SMALL, "--db", db]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^judge-guard: --db \S+replay\.db already holds 30 decisions \(2026-11-20T08:\d\d:\d\d\.\d{3}Z \.\. 2026-11-20T08:\d\d:\d\d\.\d{3}Z\): replaying into it adds to them, and its report would count both\. Give a new file, delete this one, or pass --append to add to it$/,
    );
    expect(judgedIn(db)).toBe(before);
  });

  it("--append adds the second replay's decisions to the first's", async () => {
    const db = join(tempDir(), "replay.db");
    await cli(["replay", SMALL, "--db", db]);
    const before = judgedIn(db);
    const r = await cli(["replay", SMALL, "--db", db, "--append"]);
    expect(r.code).toBe(1); // the two bad lines again
    expect(judgedIn(db)).toBe(2 * before);
  });

  it("--append without --db is a usage error", async () => {
    const r = await cli(["replay", SMALL, "--append"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      "judge-guard: --append adds to the ledger given by --db: give --db PATH too",
    );
  });
});

describe("judge-guard replay of a truncated .gz", () => {
  it("names the file and says it is truncated, after which line: exit 1, one line, no stack", async () => {
    const dir = tempDir();
    const cut = join(dir, "cut.jsonl.gz");
    writeFileSync(cut, readFileSync(INCIDENT).subarray(0, 20_000));
    const r = await cli(["replay", cut, "--no-progress"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).not.toMatch(STACK_FRAME);
    expect(r.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(
        new RegExp(
          `^judge-guard: ${cut.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is truncated: its gzip data ends early, after line \\d+ \\(a download or copy cut short\\?\\); the replay stopped$`,
        ),
      ),
    ]);
  });
});

describe("judge-guard logs", () => {
  const mystery = () => {
    const a = { ...firstLine(), model: "claude-mystery-9" };
    const b = { ...a, judge: "consolidation", ts: "2026-11-20T08:01:00Z" };
    return jsonl([a, b]);
  };

  it("prints the guard's warnings as lines for people, once, not as JSON", async () => {
    const r = await cli(["replay", mystery(), "--json"]);
    expect(r.code).toBe(0);
    expect(linesOf(r.stderr)).toEqual([
      "judge-guard: warning: no price for this model: charging it at the highest known rate (model=claude-mystery-9)",
    ]);
    expect(JSON.parse(r.stdout)).toMatchObject({ judged: 2 });
  });

  it.each(["error", "silent"])("JUDGE_GUARD_LOG_LEVEL=%s hides warnings", async (level) => {
    const r = await cli(["replay", mystery()], { env: { JUDGE_GUARD_LOG_LEVEL: level } });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
  });

  it("JUDGE_GUARD_LOG_LEVEL=info adds info lines, also for people", async () => {
    const r = await cli(["replay", cleanSmall()], { env: { JUDGE_GUARD_LOG_LEVEL: "info" } });
    expect(r.code).toBe(0);
    const lines = linesOf(r.stderr);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/^judge-guard: (info|warning|debug): /);
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^judge-guard: info: session is stuck: judging stops until it recovers \(sessionKey=cli:cli:local, .*fingerprint=[0-9a-f]+, repeats=2/,
      ),
    );
    expect(r.stderr).not.toContain('{"level"');
  });
});

describe.concurrent("judge-guard usage and configuration errors", () => {
  // [case, arguments, what the one error line says]
  it.each<[string, string[], RegExp]>([
    ["an unknown option", ["replay", SMALL, "--bogus"], /unknown option '--bogus'/],
    ["a missing file argument", ["replay"], /missing required argument 'file'/],
    [
      "a nonexistent input file",
      ["replay", "/nonexistent/traffic.jsonl"],
      /cannot read \/nonexistent\/traffic\.jsonl: it does not exist \(ENOENT\)/,
    ],
    ["an unknown command", ["frobnicate"], /unknown command 'frobnicate'/],
    [
      "an unwritable --decisions file",
      ["replay", SMALL, "--decisions", "/nonexistent/d.jsonl"],
      /cannot write --decisions \/nonexistent\/d\.jsonl: it does not exist \(ENOENT\)/,
    ],
    [
      "a folder as --decisions",
      ["replay", SMALL, "--decisions", "/tmp"],
      /--decisions \/tmp: it is a folder \(EISDIR\)/,
    ],
  ])("%s is a usage error: exit 2, one line on stderr, no stack", async (_name, args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).not.toMatch(STACK_FRAME);
    // One error line; commander may add its "(run judge-guard --help for usage)" hint after it.
    const [first, ...rest] = linesOf(r.stderr);
    expect(first).toMatch(message);
    expect(rest.filter((l) => !HELP_HINT.test(l))).toEqual([]);
  });

  it.each<[string, Record<string, string>, string]>([
    [
      "a threshold that is not a number",
      { JUDGE_GUARD_REPEAT_THRESHOLD: "zero" },
      "JUDGE_GUARD_REPEAT_THRESHOLD",
    ],
    ["a budget below zero", { JUDGE_GUARD_SESSION_BUDGET_USD: "-5" }, "JUDGE_GUARD_SESSION_BUDGET_USD"],
    ["a missing price file", { JUDGE_GUARD_PRICES: "/nonexistent/prices.json" }, "JUDGE_GUARD_PRICES"],
  ])("a configuration error (%s) exits 2 and names the variable", async (_name, env, variable) => {
    const r = await cli(["replay", SMALL], { env });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).not.toMatch(STACK_FRAME);
    expect(linesOf(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain(variable);
    expect(r.stderr).toContain(Object.values(env)[0]);
  });

  // Each variable is valid alone; the conflict between them must still name the variables.
  it("two conflicting variables: the message names the variables", async () => {
    const r = await cli(["replay", SMALL], {
      env: { JUDGE_GUARD_REPEAT_THRESHOLD: "3", JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD: "5" },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD");
    expect(r.stderr).toMatch(/\bJUDGE_GUARD_REPEAT_THRESHOLD\b/);
  });

  // Errors raised on purpose carry their whole story; --verbose adds stacks only to the others.
  it.each<[string, string[], Record<string, string>]>([
    ["a usage error", ["--verbose", "replay", "/nonexistent/traffic.jsonl"], {}],
    ["a configuration error", ["--verbose", "replay", SMALL], { JUDGE_GUARD_REPEAT_THRESHOLD: "zero" }],
  ])("--verbose shows no stack for %s", async (_name, args, env) => {
    const r = await cli(args, { env });
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });
});

describe("judge-guard unexpected errors", () => {
  it("an unexpected error exits 1 with one line and a hint; --verbose adds the stack", async () => {
    // A ledger someone damaged by hand: its schema says v3, a table is gone.
    const db = join(tempDir(), "damaged.db");
    const made = await cli(["replay", SMALL, "--db", db]);
    expect(made.code).toBe(1); // small.jsonl has bad lines; the ledger is made
    const raw = new Database(db);
    raw.exec("DROP TABLE usage");
    raw.close();
    const plain = await cli(["replay", SMALL, "--db", db, "--append"]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).not.toMatch(STACK_FRAME);
    expect(linesOf(plain.stderr)).toEqual([
      expect.stringMatching(/^judge-guard: /),
      "(run with --verbose for details)",
    ]);

    const verbose = await cli(["--verbose", "replay", SMALL, "--db", db, "--append"]);
    expect(verbose.code).toBe(1);
    expect(verbose.stderr).toMatch(STACK_FRAME);
  });
});

describe.concurrent("judge-guard --help and --version", () => {
  it.each<[string, string[], RegExp]>([
    ["--help", ["--help"], /^Usage: judge-guard .*\n[\s\S]*\breplay\b/],
    [
      "replay --help",
      ["replay", "--help"],
      /^Usage: judge-guard replay (?=[\s\S]*--decisions <file>)(?=[\s\S]*--db <path>)/,
    ],
    ["--version", ["--version"], new RegExp(`^${VERSION.replaceAll(".", "\\.")}\\n$`)],
  ])("%s prints to stdout and exits 0", async (_name, args, expected) => {
    const r = await cli(args);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(expected);
  });
});
