import { describe, expect, it } from "vitest";
import { createGuard, isLedgerFaultError } from "../../src/index.js";
import { PostgresStore } from "../../src/store/postgres.js";
import { PgConnection } from "../../src/store/postgres-connection.js";
import { ensureBuilt } from "../helpers/cli.js";
import { captureLogs } from "../helpers/logs.js";
import { postgresUnavailable, usePostgres } from "../helpers/postgres.js";

/**
 * A PostgreSQL ledger whose connection the server ends while a section holds it (a restart, an
 * operator's pg_terminate_backend): the section fails whole, the server releases the section's
 * lock, and the store, and every store in the process, works again once the database answers.
 * The server's message reaches the worker thread while no statement is running on that
 * connection, the case that once killed the worker and with it the ledger until the process
 * restarted. Each test waits on a condition with a generous deadline, never on a duration.
 */
const noPostgres = postgresUnavailable();

/** Waits until `what()` holds, running `also` between looks (the heartbeat's `check()`, here). */
const until = async (what: () => boolean, ms = 60_000, also: () => void = () => {}) => {
  const end = Date.now() + ms;
  for (;;) {
    also();
    if (what()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

/** Blocks this thread (as a section does), letting the worker thread read what the server sent. */
const blockFor = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Charges 1,000 for key "k", then runs a section that charges 5,000, lets `cut` end its
 * connection, and charges 7,000: the error the section threw.
 */
function cutSection(store: PostgresStore, cut: () => void): unknown {
  store.addUsage("k", Date.now(), 1000, 1);
  try {
    store.atomically(() => {
      store.addUsage("k", Date.now(), 5000, 1);
      cut();
      blockFor(200);
      store.addUsage("k", Date.now(), 7000, 1);
    });
  } catch (e) {
    return e;
  }
  return undefined;
}

/** After {@link cutSection}: each store recovers on check(), and none of the section's writes is there. */
async function expectRecoveredWhole(stores: readonly PostgresStore[]): Promise<void> {
  for (const s of stores)
    await until(
      () => s.fault === undefined,
      60_000,
      () => s.check(),
    );
  const [first, last] = [stores[0]!, stores[stores.length - 1]!];
  expect(last.scopeUsage("k", 0)).toMatchObject({ spentMicros: 1000, calls: 1 });
  last.atomically(() => last.addUsage("k", Date.now(), 2000, 1));
  expect(first.scopeUsage("k", 0)).toMatchObject({ spentMicros: 3000, calls: 2 });
}

const request = (key: string, i: number) => ({
  judge: "quality_assessment",
  model: "claude-sonnet-4-6",
  sessionKey: key,
  userMessages: [`question ${i} about topic ${i * 7}`],
  assistantMessages: [`a distinct answer ${i}, number ${i * 31}`],
  maxTokens: 100,
});

describe.skipIf(noPostgres !== undefined)("PostgreSQL ledger: a connection ended inside a section", () => {
  const cluster = usePostgres();

  it("a restart while a section holds the lock: the section fails whole, and the store recovers", async () => {
    ensureBuilt();
    const url = await cluster().database();
    const store = new PostgresStore(url);
    const other = new PostgresStore(url);
    // The server goes down and comes back while the section is between statements.
    const thrown = cutSection(store, () => cluster().restart());
    expect(isLedgerFaultError(thrown), String(thrown)).toBe(true);
    // Both stores of this process (one worker thread) recover; the lock went with the session.
    await expectRecoveredWhole([store, other]);
    store.close();
    other.close();
  }, 120_000);

  it("pg_terminate_backend of the section's session: the lock is released, nothing half-applied, the store recovers", async () => {
    const url = await cluster().database();
    const store = new PostgresStore(url);
    const admin = new PgConnection(url);
    const thrown = cutSection(store, () => {
      const [held] = admin.query(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
      ).rows;
      expect(held).toBeDefined();
      admin.query("SELECT pg_terminate_backend($1)", [held!.pid]);
      // Wait for that session to end (its lock with it), as another host would.
      for (let i = 0; i < 600; i++) {
        const n = admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1", [held!.pid])
          .rows[0]!.n;
        if (n === 0) break;
        blockFor(50);
      }
    });
    expect(isLedgerFaultError(thrown), String(thrown)).toBe(true);
    const locks = admin.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'").rows[0]!;
    expect(locks.n).toBe(0);
    await expectRecoveredWhole([store]);
    admin.close();
    store.close();
  }, 120_000);

  it("once the database is back, the next call reconnects (after a back-off), without waiting for the heartbeat", async () => {
    const url = await cluster().database();
    const store = new PostgresStore(url, { connectTimeoutMs: 2000 });
    store.addUsage("k", Date.now(), 1000, 1);
    cluster().stop();
    try {
      expect(() => store.scopeUsage("k", 0)).toThrow(/cannot be reached/);
      expect(store.fault).toBeDefined();
      // While it is down, calls fail fast with the fault (the back-off spares the server).
      expect(() => store.scopeUsage("k", 0)).toThrow(/cannot be reached/);
    } finally {
      cluster().start();
    }
    // No check() here: only calls.
    const usable = () => {
      try {
        return store.scopeUsage("k", 0).spentMicros === 1000;
      } catch {
        return false;
      }
    };
    await until(usable);
    expect(store.fault).toBeUndefined();
    // The heartbeat still hears of the recovery (it logs it and records the caps again).
    expect(store.check()).toEqual({ recovered: "reconnected to the database" });
    expect(store.check()).toEqual({});
    store.close();
    expect(store.check().fault?.message).toMatch(/is closed/);
  }, 120_000);

  it("a guard with many calls in flight judges again once a restarted database is back", async () => {
    const url = await cluster().database();
    const guard = createGuard({
      ledger: url,
      logger: "silent",
      verdictTtlMs: 0,
      concurrency: 32,
      sessionMaxCalls: 1_000_000,
    });
    let judged = 0;
    let skipped = 0;
    let stop = false;
    let next = 0;
    const worker = async () => {
      while (!stop) {
        const i = next++;
        const out = await guard.run(request(`k${i % 8}`, i), async () => {
          await new Promise((r) => setTimeout(r, 20));
          return { costUsd: 0.0001 };
        });
        if (out.status === "judged") judged++;
        else {
          skipped++;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const workers = Array.from({ length: 32 }, worker);
    try {
      await until(() => judged >= 64);
      // pg_ctl runs in another process: this thread goes on running the calls' sections
      // while the server ends their sessions, and while it is down.
      await cluster().restartInBackground();
      expect(skipped).toBeGreaterThan(0);
      const before = judged;
      await until(() => judged >= before + 64);
      expect(guard.ledgerFault).toBeNull();
    } finally {
      stop = true;
      await Promise.all(workers);
      await guard.close();
    }
  }, 120_000);

  it("a lease shorter than the lock timeout plus one heartbeat is named in a warning at start-up, with the minimum", async () => {
    const url = await cluster().database();
    for (const [leaseMs, warned] of [
      [1000, true],
      [15_000, false],
    ] as const) {
      const logs = captureLogs("warn");
      const guard = createGuard({ ledger: url, logger: logs.logger, leaseMs });
      const line = logs.lines.find((l) => String(l.msg).includes("JUDGE_GUARD_LEASE"));
      expect(line !== undefined).toBe(warned);
      if (warned) expect(line).toMatchObject({ leaseMs, minimumMs: 15_000 });
      await guard.close();
    }
  });
});
