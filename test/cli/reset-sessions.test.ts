import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../helpers/tmp.js";

const BIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const tmp = useTempDir();

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, NO_COLOR: "1" } },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** A Phantom database in WAL mode with three sessions, one of them already fresh. */
function phantomDb(): string {
  const path = join(tmp(), "phantom.db");
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.exec(`CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, session_key TEXT UNIQUE NOT NULL,
    sdk_session_id TEXT, channel_id TEXT NOT NULL, conversation_id TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active',
    total_cost_usd REAL NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    turn_count INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL DEFAULT (datetime('now')),
    last_active_at TEXT NOT NULL DEFAULT (datetime('now')))`);
  const add = db.prepare(
    "INSERT INTO sessions (session_key, sdk_session_id, channel_id, conversation_id, status, turn_count, last_active_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
  );
  add.run("cli:cli:local", "sdk_stale", "cli", "local", "active", 362, "2026-11-20 09:40:00");
  add.run("slack:C1", "sdk_live", "slack", "C1", "active", 40, "2099-01-01 00:00:00");
  add.run("telegram:5512", null, "telegram", "5512", "active", 3, "2026-11-19 00:00:00");
  add.run("slack:OLD", "sdk_old", "slack", "OLD", "expired", 9, "2026-01-01 00:00:00");
  db.close();
  return path;
}

function sdkIds(path: string): Record<string, string | null> {
  const db = new Database(path);
  try {
    const rows = db.prepare("SELECT session_key, sdk_session_id FROM sessions").all() as Array<{
      session_key: string;
      sdk_session_id: string | null;
    }>;
    return Object.fromEntries(rows.map((r) => [r.session_key, r.sdk_session_id]));
  } finally {
    db.close();
  }
}

describe("judge-guard reset-sessions", () => {
  it("--session-key clears that key's SDK session only, and says so", async () => {
    const db = phantomDb();
    const r = await cli(["reset-sessions", "--phantom-db", db, "--session-key", "cli:cli:local"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toContain("cleared the SDK session of 1 session");
    expect(r.stdout).toContain("cli:cli:local");
    expect(sdkIds(db)).toEqual({
      "cli:cli:local": null,
      "slack:C1": "sdk_live",
      "telegram:5512": null,
      "slack:OLD": "sdk_old",
    });
  });

  it("--stale-before clears the active sessions last active before that time", async () => {
    const db = phantomDb();
    const r = await cli([
      "reset-sessions",
      "--phantom-db",
      db,
      "--stale-before",
      "2026-11-21T00:00:00Z",
      "--json",
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ dry_run: false, sessions: ["cli:cli:local"] });
    expect(sdkIds(db)).toEqual({
      "cli:cli:local": null,
      "slack:C1": "sdk_live",
      "telegram:5512": null,
      "slack:OLD": "sdk_old",
    });
  });

  it("--stale-before takes a duration ago, as report's --since does", async () => {
    const db = phantomDb();
    // Nothing was last active 100,000 days ago; 0s ago takes every active row up to now (not
    // slack:C1, stamped 2099).
    const none = await cli(["reset-sessions", "--phantom-db", db, "--stale-before", "100000d", "--json"]);
    expect(none.code).toBe(0);
    expect(JSON.parse(none.stdout).sessions).toEqual([]);
    const upToNow = await cli(["reset-sessions", "--phantom-db", db, "--stale-before", "0s", "--json"]);
    expect(JSON.parse(upToNow.stdout).sessions).toEqual(["cli:cli:local"]);
  });

  it("--stale-before now and --all-active reset every active session (expired rows stay as they are)", async () => {
    const db = phantomDb();
    const r = await cli(["reset-sessions", "--phantom-db", db, "--all-active", "--json"]);
    expect(JSON.parse(r.stdout).sessions).toEqual(["cli:cli:local", "slack:C1"]);
    expect(sdkIds(db)).toMatchObject({ "cli:cli:local": null, "slack:C1": null, "slack:OLD": "sdk_old" });
    const again = await cli(["reset-sessions", "--phantom-db", db, "--stale-before", "now"]);
    expect(again).toMatchObject({ code: 0 });
    expect(again.stdout).toContain("nothing cleared");
  });

  it("--dry-run lists what would change and changes nothing", async () => {
    const db = phantomDb();
    const r = await cli(["reset-sessions", "--phantom-db", db, "--all-active", "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("would clear the SDK session of 2 sessions");
    expect(sdkIds(db)).toMatchObject({ "cli:cli:local": "sdk_stale", "slack:C1": "sdk_live" });
    // It leaves no WAL files behind (they would belong to whoever ran it).
    expect(existsSync(`${db}-wal`) || existsSync(`${db}-shm`)).toBe(false);
  });

  it("--if-exists: a database Phantom has not created yet is nothing to reset (first boot)", async () => {
    const missing = join(tmp(), "phantom.db");
    const r = await cli(["reset-sessions", "--phantom-db", missing, "--stale-before", "now", "--if-exists"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toContain("nothing to reset");
    expect(existsSync(missing)).toBe(false);
    const without = await cli(["reset-sessions", "--phantom-db", missing, "--stale-before", "now"]);
    expect(without.code).toBe(1);
    expect(without.stderr).toContain("does not exist");
  });

  it("runs while Phantom has the database open, and never changes its journal mode", async () => {
    const db = phantomDb();
    const phantom = new Database(db);
    const reading = phantom.prepare("SELECT * FROM sessions").iterate(); // a read in progress
    reading.next();
    const r = await cli(["reset-sessions", "--phantom-db", db, "--session-key", "cli:cli:local"]);
    reading.return?.();
    expect(r.code).toBe(0);
    expect(phantom.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(
      phantom.prepare("SELECT sdk_session_id AS s FROM sessions WHERE session_key = 'cli:cli:local'").get(),
    ).toEqual({ s: null });
    phantom.close();
  });

  it("exits 1 with the reason when the database cannot be changed", async () => {
    const db = phantomDb();
    const phantom = new Database(db);
    phantom.exec("BEGIN IMMEDIATE"); // Phantom holds its write lock past our busy timeout
    const r = await cli(["reset-sessions", "--phantom-db", db, "--all-active"]);
    phantom.exec("ROLLBACK");
    phantom.close();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^judge-guard: reset-sessions: cannot change .*database is locked \(Phantom is writing to it: run the command again\)/,
    );
    const other = join(tmp(), "other.db");
    new Database(other).exec("CREATE TABLE t (x)");
    const wrong = await cli(["reset-sessions", "--phantom-db", other, "--all-active"]);
    expect(wrong).toMatchObject({ code: 1 });
    expect(wrong.stderr).toContain("has no sessions table: is it Phantom's database?");
  });

  it.each([
    [["reset-sessions", "--all-active"], /--phantom-db PATH is required/],
    [
      ["reset-sessions", "--phantom-db", "x.db"],
      /give exactly one of --session-key KEY, --stale-before TIME\|now, --all-active/,
    ],
    [["reset-sessions", "--phantom-db", "x.db", "--all-active", "--session-key", "k"], /give exactly one of/],
    [
      ["reset-sessions", "--phantom-db", "x.db", "--stale-before", "yesterday"],
      /^judge-guard: --stale-before "yesterday" is not valid: use now, a duration ago such as 24h, 7d or 90m, or an ISO-8601 time such as 2026-11-20T08:00:00Z$/,
    ],
    [
      ["reset-sessions", "--phantom-db", "x.db", "--stale-before", "2026-13-45"],
      /^judge-guard: --stale-before "2026-13-45" is not valid: use now, /,
    ],
  ])("usage error %j exits 2 with one line", async (args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(message);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });
});
