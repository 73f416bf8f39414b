import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import {
  createGuard,
  isLedgerFaultError,
  LedgerFaultError,
  LedgerSchemaError,
  SqliteStore,
} from "../../src/index.js";
import { buildReport } from "../../src/report/report.js";
import { applyMigration, SCHEMA_VERSION } from "../../src/store/migrations.js";
import { connectionOf } from "../../src/store/sqlite.js";
import type { DecisionRecord } from "../../src/store/types.js";
import { readLedger } from "../helpers/ledger.js";
import { processFixture } from "../helpers/processes.js";
import { CANNED } from "../helpers/replies.js";
import { sessionRequest } from "../helpers/requests.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const decision: DecisionRecord = {
  ts: 0,
  sessionKey: "k",
  judge: "observation_extraction",
  model: "claude-sonnet-4-6",
  decision: "judged",
  reason: null,
  shadow: false,
  reservedMicros: 0,
  chargedMicros: 1000,
  savedMicros: 0,
  inputTokens: 10,
  outputTokens: 10,
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
  turns: 1,
  transcriptChars: 10,
  transcriptHash: "h",
  durationMs: 1,
  episodeId: null,
};
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

/** Starts a guard process that holds one open reservation; resolves once it holds it. */
async function holder(ledger: string, key: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [processFixture("hold-reservation.mjs"), ledger, key], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => d.toString().includes("held") && resolve());
    child.on("exit", (code) => reject(new Error(`holder exited with ${code}`)));
  });
  return child;
}

const reservations = (ledger: string): number => {
  const db = new Database(ledger, { readonly: true });
  try {
    // Open: not yet charged (a reservation charged at its estimate keeps a row for a late settlement).
    return (
      db.prepare("SELECT count(*) AS n FROM reservations WHERE charged_micros IS NULL").get() as { n: number }
    ).n;
  } finally {
    db.close();
  }
};

describe("SqliteStore", () => {
  it("creates the ledger and its folder, readable by the owner only, in WAL mode", async () => {
    const path = join(tmp(), "nested", "dir", "ledger.db");
    const guard = createGuard({ ledger: path, logger: "silent" });
    await guard.run(sessionRequest("k", ["q"], ["a"]), async () => ({ inputTokens: 1, outputTokens: 1 }));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(existsSync(`${path}-wal`)).toBe(true);
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    const store = guard.store as SqliteStore;
    expect(readLedger(path, (db) => db.pragma("journal_mode", { simple: true }))).toBe("wal");
    expect(Number(connectionOf(store).pragma("busy_timeout", { simple: true }))).toBeGreaterThan(0);
    await guard.close();
  });

  it("runs its migrations once and records the schema version", () => {
    const path = join(tmp(), "ledger.db");
    new SqliteStore(path).close();
    const db = new Database(path);
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    const tables = (
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
        name: string;
      }[]
    ).map((t) => t.name);
    expect(tables).toEqual(
      expect.arrayContaining([
        "decisions",
        "usage",
        "reservations",
        "owners",
        "key_state",
        "episodes",
        "canned_fingerprints",
        "signals",
        "estimates",
      ]),
    );
    db.prepare("INSERT INTO canned_fingerprints VALUES ('abc', 'operator', 1)").run();
    db.close();
    const again = new SqliteStore(path);
    expect(again.cannedFingerprints()).toEqual(["abc"]);
    again.close();
  });

  it("upgrades a ledger written by an older version, keeping what it holds", () => {
    const path = join(tmp(), "v1.db");
    const old = new Database(path);
    applyMigration(old, 0);
    old.pragma("user_version = 1");
    old
      .prepare(
        "INSERT INTO signals (ts, session_key, channel, event, status, attempts) VALUES (1, 'k', 'cb', 'stuck_session', 'delivered', 1)",
      )
      .run();
    old.close();
    const store = new SqliteStore(path, { backgroundCheckpoints: false });
    readLedger(path, (db) => {
      expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
      expect(db.prepare("SELECT count(*) AS n FROM signals").get()).toEqual({ n: 1 });
    });
    store.recordSignal({
      ts: 2,
      eventId: "ep-1",
      episodeId: "ep-1",
      sessionKey: "k",
      channel: "cb",
      event: "stuck_session",
      status: "delivered",
      attempts: 1,
      error: null,
    });
    expect(store.signalDelivered("ep-1")).toBe(true);
    store.close();
  });

  it("upgrades a v2 ledger with calls in flight: their reservations still count and are released", async () => {
    const path = join(tmp(), "v2.db");
    const old = new Database(path);
    applyMigration(old, 0);
    applyMigration(old, 1);
    old.pragma("user_version = 2");
    old
      .prepare(
        "INSERT INTO reservations VALUES ('r-1', 'owner-gone', 'k', 'j', 'claude-sonnet-4-6', 100000, 900000, 1)",
      )
      .run();
    old
      .prepare(
        "INSERT INTO decisions (ts, session_key, judge, model, decision, charged_micros) VALUES (5, 'k', 'j', 'm', 'judged', 42)",
      )
      .run();
    old.close();
    const store = new SqliteStore(path, { backgroundCheckpoints: false });
    expect(readLedger(path, (db) => db.pragma("user_version", { simple: true }))).toBe(SCHEMA_VERSION);
    expect(store.scopeUsage("k", 0)).toMatchObject({ openCount: 1, openWorstMicros: 900_000 });
    expect(
      readLedger(path, (db) => db.prepare("SELECT sum(charged_micros) AS m FROM decisions").get()),
    ).toEqual({
      m: 42,
    });
    // A reservation written before the upgrade is released by its id, as one written after.
    expect(store.deleteReservation("r-1")).toBe(true);
    store.openReservation({
      id: "r-2",
      ownerId: "o",
      sessionKey: "k",
      judge: "j",
      model: "m",
      expectedMicros: 1,
      worstMicros: 2,
      createdMs: 1,
    });
    expect(store.deleteReservation("r-2")).toBe(true);
    expect(store.deleteReservation("r-2")).toBe(false);
    expect(store.scopeUsage("k", 0).openCount).toBe(0);
    store.close();
  });

  it("keys decisions by time: two ledgers writing in one millisecond, and past 1,024 rows in it, lose none and report each in its range", () => {
    const path = join(tmp(), "ids.db");
    const a = new SqliteStore(path, { backgroundCheckpoints: false });
    const b = new SqliteStore(path, { backgroundCheckpoints: false });
    const at = Date.parse("2026-11-20T10:00:00.000Z");
    const row = (ts: number, sessionKey: string) => ({
      ...decision,
      ts,
      sessionKey,
    });
    // 1,500 decisions stamped with one millisecond, from two connections in turn, then one a
    // millisecond later (whose own slots the spilled rows may already hold).
    for (let i = 0; i < 1500; i++) (i % 2 === 0 ? a : b).recordDecision(row(at, `k${i % 3}`));
    a.recordDecision(row(at + 1, "later"));
    const ids = readLedger(path, (db) => db.prepare("SELECT id, ts FROM decisions").all()) as Array<{
      id: number;
      ts: number;
    }>;
    expect(ids).toHaveLength(1501);
    expect(new Set(ids.map((r) => r.id)).size).toBe(1501);
    for (const r of ids) expect(r.id).toBeGreaterThanOrEqual(r.ts * 1024);
    a.close();
    b.close();
    const count = (since: number, until: number, sessionKey?: string) => {
      const t = buildReport(path, { since, until, sessionKey }).totals;
      return t.calls_judged;
    };
    expect(count(at, at + 1)).toBe(1500);
    expect(count(at + 1, at + 2)).toBe(1);
    expect(count(at - 60_000, at + 60_000)).toBe(1501);
    expect(count(at, at + 2, "k1")).toBe(500);
  });

  it("upgrading to time-keyed decisions keeps every row, also past 1,024 in one millisecond", () => {
    const path = join(tmp(), "v2-many.db");
    const old = new Database(path);
    applyMigration(old, 0);
    applyMigration(old, 1);
    old.pragma("user_version = 2");
    const insert = old.prepare(
      "INSERT INTO decisions (ts, session_key, judge, model, decision, charged_micros) VALUES (?, ?, 'j', 'm', 'judged', 1)",
    );
    old.transaction(() => {
      for (let i = 0; i < 1100; i++) insert.run(1000, `k${i}`);
      insert.run(1001, "next");
      insert.run(999, "before");
    })();
    old.close();
    new SqliteStore(path, { backgroundCheckpoints: false }).close();
    const db = new Database(path, { readonly: true });
    const ids = db.prepare("SELECT id, ts FROM decisions ORDER BY id").all() as Array<{
      id: number;
      ts: number;
    }>;
    db.close();
    expect(ids).toHaveLength(1102);
    expect(ids[0]).toEqual({ id: 999 * 1024, ts: 999 });
    for (const r of ids) expect(r.id).toBeGreaterThanOrEqual(r.ts * 1024);
    expect(buildReport(path, { since: 1000, until: 1001 }).totals.calls_judged).toBe(1100);
    expect(buildReport(path, { since: 1001, until: 1002 }).totals.calls_judged).toBe(1);
  });

  it("a folder given as the ledger is refused, saying so and what to give", () => {
    const dir = tmp();
    expect(() => createGuard({ ledger: dir, logger: "silent" })).toThrow(
      `cannot open the ledger ${dir}: it is a folder; give --db (or JUDGE_GUARD_DB) the path of a ledger file`,
    );
  });

  it("does not keep a process alive when the ledger is left open", async () => {
    const run = promisify(execFile);
    const { stdout } = await run(
      process.execPath,
      [processFixture("leave-open.mjs"), join(tmp(), "open.db")],
      {
        timeout: 10_000,
      },
    );
    expect(stdout.trim()).toBe("judged");
  });

  it("upgrades decisions with fractional or negative times (a custom clock), and reports them in range", () => {
    const path = join(tmp(), "v2-odd.db");
    const old = new Database(path);
    applyMigration(old, 0);
    applyMigration(old, 1);
    old.pragma("user_version = 2");
    const insert = old.prepare(
      "INSERT INTO decisions (ts, session_key, judge, model, decision, charged_micros) VALUES (?, 'k', 'j', 'm', 'judged', 1)",
    );
    for (const ts of [1_763_600_000_000.3, 1_763_600_000_000.7, 1_763_600_000_001.5, -5000]) insert.run(ts);
    old.close();
    new SqliteStore(path, { backgroundCheckpoints: false }).close();
    const judged = (since: number, until: number) => buildReport(path, { since, until }).totals.calls_judged;
    expect(judged(1_763_600_000_000, 1_763_600_000_001)).toBe(2);
    expect(judged(1_763_600_000_001, 1_763_600_000_002)).toBe(1);
    expect(judged(-10_000, 0)).toBe(1);
  });

  it("records decisions stamped centuries ahead (a clock in microseconds) without losing or merging any", () => {
    const path = join(tmp(), "future.db");
    const store = new SqliteStore(path, { backgroundCheckpoints: false });
    for (const ts of [1.8e15, 1.8e15, 1.8e17, 1.8e17, Number.MAX_VALUE])
      store.recordDecision({ ...decision, ts });
    const ids = readLedger(path, (db) =>
      db.prepare("SELECT id FROM decisions").safeIntegers(true).all(),
    ) as Array<{
      id: bigint;
    }>;
    store.close();
    expect(new Set(ids.map((r) => r.id)).size).toBe(5);
    expect(buildReport(path, { since: 1.8e15, until: 1.8e15 + 1 }).totals.calls_judged).toBe(2);
  });

  it("gives a decision written without an id (a judge-guard older than v3 still running) its time-keyed id", () => {
    const path = join(tmp(), "mixed.db");
    const store = new SqliteStore(path, { backgroundCheckpoints: false });
    store.recordDecision({ ...decision, ts: 1000 });
    // What an older process's prepared INSERT does: no id, so SQLite would pick max(id) + 1.
    readLedger(path, (db) =>
      db
        .prepare(
          "INSERT INTO decisions (ts, session_key, judge, model, decision, charged_micros) VALUES (?, 'old', 'j', 'm', 'judged', 5)",
        )
        .run(5_000_000),
    );
    store.close();
    expect(buildReport(path, { since: 5_000_000, until: 5_000_001 }).totals.charged_usd).toBe(0.000005);
    expect(buildReport(path, { since: 0, until: 5_000_001 }).totals.calls_judged).toBe(2);
  });

  it("keeps the WAL bounded under writes that never pause", async () => {
    const path = join(tmp(), "busy.db");
    // 2,000 judged calls back to back write about 40 MB of WAL frames; 256 pages is 1 MiB.
    const store = new SqliteStore(path, { walLimitPages: 256 });
    const guard = createGuard({
      ledger: store,
      logger: "silent",
      sessionBudgetUsd: 1e6,
      dailyBudgetUsd: 1e6,
    });
    let largest = 0;
    for (let i = 0; i < 2000; i++) {
      await guard.run(sessionRequest(`k${i}`, [`q${i}`], [`a${i}`]), async () => ({
        inputTokens: 10,
        outputTokens: 10,
      }));
      if (i % 100 === 0) largest = Math.max(largest, statSync(`${path}-wal`).size);
    }
    await guard.close();
    store.close();
    expect(largest).toBeGreaterThan(0);
    expect(largest).toBeLessThan(4 * 1024 * 1024);
  });

  it("refuses a ledger from a newer schema with a message saying what to do", () => {
    const path = join(tmp(), "future.db");
    const db = new Database(path);
    db.pragma("user_version = 99");
    db.close();
    expect(() => new SqliteStore(path)).toThrow(LedgerSchemaError);
    expect(() => new SqliteStore(path)).toThrow(
      /schema version 99, newer than this judge-guard understands.*upgrade/,
    );
  });

  it("never writes transcript text to the ledger", async () => {
    const path = join(tmp(), "ledger.db");
    const guard = createGuard({ ledger: path, logger: "silent" });
    const canary = "CANARY-7d1e-purple-elephant";
    const users = [`please look at ${canary} now`, `again ${canary}`, `and ${canary}`];
    const replies = [`I saw ${canary}.`, CANNED, CANNED];
    for (let i = 1; i <= 3; i++) {
      await guard.run(sessionRequest(`key-${i}`, users.slice(0, i), replies.slice(0, i)), async () => ({
        inputTokens: 5,
        outputTokens: 5,
      }));
      await guard.run(sessionRequest("cli", users.slice(0, i), replies.slice(0, i)), async () => ({
        inputTokens: 5,
        outputTokens: 5,
      }));
    }
    const before = readFileSync(path).toString("latin1") + readFileSync(`${path}-wal`).toString("latin1");
    await guard.close();
    const after = readFileSync(path).toString("latin1");
    for (const bytes of [before, after]) {
      expect(bytes).not.toContain(canary);
      expect(bytes).not.toContain("still working");
    }
  });
});

describe("reservations across processes", () => {
  it("charges a reservation left by a process that was killed at its estimate, never frees it", async () => {
    const ledger = join(tmp(), "ledger.db");
    const child = await holder(ledger, "k");
    expect(reservations(ledger)).toBe(1);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const guard = createGuard({ ledger, logger: "silent" });
    expect(guard.stats.reclaimedReservations).toBe(1);
    expect(reservations(ledger)).toBe(0);
    // The call may well have been billed: its estimate is spend on its key, in a decision.
    const spent = guard.session("k").spentUsd;
    await guard.close();
    const db = new Database(ledger, { readonly: true });
    const row = db
      .prepare(
        "SELECT decision, charged_micros AS c, reserved_micros AS r, cost_source AS src FROM decisions",
      )
      .get() as {
      decision: string;
      c: number;
      r: number;
      src: string;
    };
    db.close();
    expect(row).toMatchObject({ decision: "failed", src: "estimate" });
    expect(row.c).toBe(row.r);
    expect(row.c).toBeGreaterThan(0);
    expect(spent).toBeCloseTo(row.c / 1e6, 6);
  });

  it("never mistakes a live process's reservation for a leftover", async () => {
    const ledger = join(tmp(), "ledger.db");
    await holder(ledger, "k");
    const guard = createGuard({ ledger, logger: "silent" });
    expect(guard.stats.reclaimedReservations).toBe(0);
    expect(reservations(ledger)).toBe(1);
    await guard.close();
    expect(reservations(ledger)).toBe(1);
  });

  it("a live process that stalled past the lease (a long pause, a suspended laptop) keeps its reservation", async () => {
    const ledger = join(tmp(), "ledger.db");
    await holder(ledger, "k");
    const db = new Database(ledger);
    db.prepare("UPDATE owners SET heartbeat_ms = 0").run(); // its heartbeat looks hours old
    db.close();
    const guard = createGuard({ ledger, logger: "silent" });
    expect(guard.stats.reclaimedReservations).toBe(0);
    expect(reservations(ledger)).toBe(1);
    await guard.close();
  });

  it("several processes sharing one ledger never overspend a cap by more than one call", async () => {
    const ledger = join(tmp(), "ledger.db");
    const run = promisify(execFile);
    // 3 processes x 24 concurrent calls over 2 keys; caps $1.50 per key and $2.50 in all; a call is $0.3015.
    const results = await Promise.all(
      [0, 1, 2].map(() =>
        run(process.execPath, [processFixture("spend.mjs"), ledger, "24", "2", "1.5", "2.5"]),
      ),
    );
    const judged = results.map((r) => JSON.parse(r.stdout).judged as number).reduce((a, b) => a + b, 0);
    const db = new Database(ledger, { readonly: true });
    const perKey = db
      .prepare("SELECT session_key AS k, sum(charged_micros) AS m FROM decisions GROUP BY session_key")
      .all() as { k: string; m: number }[];
    const total = perKey.reduce((a, r) => a + r.m, 0);
    const open = (db.prepare("SELECT count(*) AS n FROM reservations").get() as { n: number }).n;
    db.close();
    for (const r of perKey) expect(r.m).toBeLessThanOrEqual(1_500_000 + 301_500);
    expect(total).toBeLessThanOrEqual(2_500_000 + 301_500);
    expect(total).toBe(judged * 301_500);
    expect(judged).toBeGreaterThanOrEqual(8);
    expect(open).toBe(0);
  });
});

describe("restarts", () => {
  const CANNED = "The assistant is temporarily unavailable due to maintenance.";

  it("a stuck session, the canned registry and the spend survive a restart", async () => {
    const ledger = join(tmp(), "ledger.db");
    const users = ["deploy it", "hello?", "are you there?", "status?"];
    const replies = ["Deployed to staging; all checks pass.", CANNED, CANNED, CANNED];
    const judge = async () => ({ inputTokens: 1000, outputTokens: 100 });
    const a = createGuard({ ledger, logger: "silent", builtinPatterns: false });
    const outs = [];
    for (let i = 1; i <= 4; i++)
      outs.push((await a.run(sessionRequest("cli", users.slice(0, i), replies.slice(0, i)), judge)).status);
    expect(outs).toEqual(["judged", "judged", "judged", "skipped"]);
    const spent = a.session("cli").spentUsd;
    await a.close();

    const b = createGuard({ ledger, logger: "silent", builtinPatterns: false });
    expect(b.session("cli")).toMatchObject({ stuck: true, repeats: 3, spentUsd: spent });
    // The same transcript again (a late request): still stuck, and counted as stuck here too.
    const again = await b.run(sessionRequest("cli", users, replies), judge);
    expect(again.status).toBe("skipped");
    expect(b.stats.stuckKeys).toBe(1);
    const next = await b.run(sessionRequest("cli", [...users, "ping"], [...replies, CANNED]), judge);
    expect(next.status).toBe("skipped");
    // Another session meets the registered canned line: it is known after 2 repeats, not 3.
    const other = await b.run(sessionRequest("slack:C1", ["hi", "yo"], [CANNED, CANNED]), judge);
    expect(other.status === "skipped" && other.reason).toBe("stuck_session");
    await b.close();
  });
});

describe("a ledger path that cannot be opened", () => {
  // Part of the path is a file, which stops root too (read-only files and mounts, which need
  // another user or a mount namespace, are in test/store/ledger-files.test.ts).
  const unusable = () => join(tmp(), "not-a-folder");

  it("new SqliteStore throws a LedgerFaultError naming the file and what to do", () => {
    const file = unusable();
    writeFileSync(file, "");
    const path = join(file, "ledger.db");
    let thrown: unknown;
    try {
      new SqliteStore(path);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(LedgerFaultError);
    expect(isLedgerFaultError(thrown)).toBe(true);
    expect(thrown).toMatchObject({ code: "LEDGER_FAULT", path, fault: "cannot-open" });
    expect((thrown as Error).message).toMatch(
      new RegExp(
        `^the ledger ${path} cannot be opened \\(part of its path is a file, not a folder \\((EEXIST|ENOTDIR)\\)\\): .*JUDGE_GUARD_DB`,
      ),
    );
  });

  it("with whenUnavailable: retry it is constructed unavailable, and every operation throws the fault", () => {
    const file = unusable();
    writeFileSync(file, "");
    const store = new SqliteStore(join(file, "ledger.db"), { whenUnavailable: "retry" });
    expect(store.fault?.fault).toBe("cannot-open");
    expect(() => store.scopeUsage("k", 0)).toThrow(store.fault!.message);
    expect(store.check().fault).toBe(store.fault);
    store.close();
  });
});
