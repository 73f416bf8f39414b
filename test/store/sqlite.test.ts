import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createGuard, type JudgeRequest, LedgerSchemaError, SqliteStore } from "../../src/index.js";
import { MIGRATIONS, SCHEMA_VERSION } from "../../src/store/migrations.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/processes/${name}`, import.meta.url));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

/** Starts a guard process that holds one open reservation; resolves once it holds it. */
async function holder(ledger: string, key: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [fixture("hold-reservation.mjs"), ledger, key], {
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
    return (db.prepare("SELECT count(*) AS n FROM reservations").get() as { n: number }).n;
  } finally {
    db.close();
  }
};

function request(key: string, users: string[], replies: string[]): JudgeRequest {
  return {
    judge: "observation_extraction",
    model: "claude-sonnet-4-6",
    session: { session_key: key, user_messages: users, assistant_messages: replies },
  };
}

describe("SqliteStore", () => {
  it("creates the ledger and its folder, readable by the owner only, in WAL mode", async () => {
    const path = join(tmp(), "nested", "dir", "ledger.db");
    const guard = createGuard({ ledger: path, logger: "silent" });
    await guard.run(request("k", ["q"], ["a"]), async () => ({ inputTokens: 1, outputTokens: 1 }));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(existsSync(`${path}-wal`)).toBe(true);
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    const store = guard.store as SqliteStore;
    expect(store.db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(Number(store.db.pragma("busy_timeout", { simple: true }))).toBeGreaterThan(0);
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
    old.exec(MIGRATIONS[0]!);
    old.pragma("user_version = 1");
    old
      .prepare(
        "INSERT INTO signals (ts, session_key, channel, event, status, attempts) VALUES (1, 'k', 'cb', 'stuck_session', 'delivered', 1)",
      )
      .run();
    old.close();
    const store = new SqliteStore(path, { backgroundCheckpoints: false });
    expect(store.db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    expect(store.db.prepare("SELECT count(*) AS n FROM signals").get()).toEqual({ n: 1 });
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
    const replies = [
      `I saw ${canary}.`,
      "I'm still working on your previous message. Please wait.",
      "I'm still working on your previous message. Please wait.",
    ];
    for (let i = 1; i <= 3; i++) {
      await guard.run(request(`key-${i}`, users.slice(0, i), replies.slice(0, i)), async () => ({
        inputTokens: 5,
        outputTokens: 5,
      }));
      await guard.run(request("cli", users.slice(0, i), replies.slice(0, i)), async () => ({
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
  it("reclaims a reservation left by a process that was killed", async () => {
    const ledger = join(tmp(), "ledger.db");
    const child = await holder(ledger, "k");
    expect(reservations(ledger)).toBe(1);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const guard = createGuard({ ledger, logger: "silent" });
    expect(guard.stats.reclaimedReservations).toBe(1);
    expect(reservations(ledger)).toBe(0);
    await guard.close();
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
      [0, 1, 2].map(() => run(process.execPath, [fixture("spend.mjs"), ledger, "24", "2", "1.5", "2.5"])),
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
      outs.push((await a.run(request("cli", users.slice(0, i), replies.slice(0, i)), judge)).status);
    expect(outs).toEqual(["judged", "judged", "judged", "skipped"]);
    const spent = a.session("cli").spentUsd;
    await a.close();

    const b = createGuard({ ledger, logger: "silent", builtinPatterns: false });
    expect(b.session("cli")).toMatchObject({ stuck: true, repeats: 3, spentUsd: spent });
    const next = await b.run(request("cli", [...users, "ping"], [...replies, CANNED]), judge);
    expect(next.status).toBe("skipped");
    // Another session meets the registered canned line: it is known after 2 repeats, not 3.
    const other = await b.run(request("slack:C1", ["hi", "yo"], [CANNED, CANNED]), judge);
    expect(other.status === "skipped" && other.reason).toBe("stuck_session");
    await b.close();
  });
});
