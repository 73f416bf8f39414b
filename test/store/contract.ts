import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import type { GuardEvent } from "../../src/index.js";
import { callbackSink, createGuard } from "../../src/index.js";
import type { LedgerStore, OwnerRecord, ReservationRecord } from "../../src/store/types.js";
import { ensureBuilt } from "../helpers/cli.js";

/**
 * What every ledger store must do for the guard, as one table of cases run against each store
 * (contract.test.ts: memory, SQLite, PostgreSQL). A case opens a fresh ledger; where the store
 * can be shared (a file, a database), `open()` gives another store on the same ledger, as
 * another guard process or host would have.
 */
export interface Ledger {
  /** Another store on this ledger (the first call: the ledger's first store). */
  open(): LedgerStore;
  /** The ledger setting other processes open it with; undefined when it lives in this process. */
  readonly setting: string | undefined;
}

export interface StoreUnderTest {
  /** A fresh, empty ledger. */
  fresh(): Promise<Ledger>;
}

const T0 = Date.parse("2026-11-20T08:00:00Z");
const MIN = 60_000;
const fixture = fileURLToPath(new URL("../fixtures/processes/contract-section.mjs", import.meta.url));
const run = promisify(execFile);

function reservation(id: string, over: Partial<ReservationRecord> = {}): ReservationRecord {
  return {
    id,
    ownerId: "owner-a",
    sessionKey: "k1",
    judge: "quality",
    model: "claude-sonnet-4-6",
    expectedMicros: 1_000,
    worstMicros: 5_000,
    createdMs: T0,
    turns: 3,
    transcriptChars: 120,
    transcriptHash: "abc123",
    ...over,
  };
}

function owner(id: string, over: Partial<OwnerRecord> = {}): OwnerRecord {
  return {
    id,
    pid: 4242,
    hostname: "host-a",
    procStart: "1",
    bootId: "boot",
    pidNs: "pid:[1]",
    startedMs: T0,
    heartbeatMs: T0,
    beat: 0,
    ...over,
  };
}

const decision = (over: Partial<Parameters<LedgerStore["recordDecision"]>[0]> = {}) => ({
  ts: T0,
  sessionKey: "k1",
  judge: "quality",
  model: "claude-sonnet-4-6",
  decision: "judged" as const,
  reason: null,
  shadow: false,
  reservedMicros: 1_000,
  chargedMicros: 900,
  savedMicros: 0,
  inputTokens: 100,
  outputTokens: 10,
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
  turns: 3,
  transcriptChars: 120,
  transcriptHash: "abc123",
  durationMs: 12,
  episodeId: null,
  costSource: "computed" as const,
  computedMicros: 900,
  ...over,
});

/** Opens a store for the case and closes every store it opened afterwards. */
async function withLedger(s: StoreUnderTest, fn: (l: Ledger, store: LedgerStore) => Promise<void> | void) {
  const ledger = await s.fresh();
  const opened: LedgerStore[] = [];
  const tracked: Ledger = {
    setting: ledger.setting,
    open: () => {
      const st = ledger.open();
      opened.push(st);
      return st;
    },
  };
  try {
    await fn(tracked, tracked.open());
  } finally {
    for (const st of opened) st.close();
  }
}

export function storeContract(s: StoreUnderTest): void {
  it("usage windows: a charge counts for its key, its judge kind and everything, until its bucket leaves the window", () =>
    withLedger(s, (_, store) => {
      store.addUsage("k1", T0 + 5_000, 700, 1, "quality");
      store.addUsage("k2", T0 + 5_000, 300, 1, "gate");
      expect(store.scopeUsage("k1", T0 - 10 * MIN)).toMatchObject({ spentMicros: 700, calls: 1 });
      expect(store.scopeUsage(null, T0 - 10 * MIN)).toMatchObject({ spentMicros: 1_000, calls: 2 });
      expect(store.judgeUsage!("quality", T0 - 10 * MIN)).toMatchObject({ spentMicros: 700, calls: 1 });
      // A bucket counts while any part of it is inside the window: late, never early.
      expect(store.scopeUsage("k1", T0 + 59_000).spentMicros).toBe(700);
      expect(store.scopeUsage("k1", T0 + MIN).spentMicros).toBe(0);
      expect(store.scopeUsage("k3", T0).spentMicros).toBe(0);
    }));

  it("open reservations count in flight per key, per judge kind and in all, until charged or deleted", () =>
    withLedger(s, (_, store) => {
      store.atomically(() => {
        store.openReservation(reservation("r1"));
        store.openReservation(reservation("r2", { sessionKey: "k2", judge: "gate", expectedMicros: 2_000 }));
      });
      expect(store.scopeUsage("k1", T0)).toMatchObject({
        openCount: 1,
        openExpectedMicros: 1_000,
        openWorstMicros: 5_000,
      });
      expect(store.scopeUsage(null, T0)).toMatchObject({ openCount: 2, openExpectedMicros: 3_000 });
      expect(store.judgeUsage!("gate", T0)).toMatchObject({ openCount: 1, openExpectedMicros: 2_000 });
      store.markCharged("r2", 2_000, 77, T0 + 1_000);
      expect(store.scopeUsage(null, T0).openCount).toBe(1);
      expect(store.reservation("r2")).toMatchObject({ chargedMicros: 2_000, decisionId: 77 });
      expect(store.deleteReservation("r1")).toBe(true);
      expect(store.deleteReservation("r1")).toBe(false);
      expect(store.scopeUsage(null, T0).openCount).toBe(0);
    }));

  it("reservations: read back whole, taken once, unknown ones undefined", () =>
    withLedger(s, (_, store) => {
      store.openReservation(reservation("r1", { remote: true, ttlMs: 60_000 }));
      const held = store.reservation("r1");
      expect(held).toMatchObject({
        id: "r1",
        ownerId: "owner-a",
        sessionKey: "k1",
        judge: "quality",
        model: "claude-sonnet-4-6",
        expectedMicros: 1_000,
        worstMicros: 5_000,
        createdMs: T0,
        remote: true,
        ttlMs: 60_000,
        turns: 3,
        transcriptChars: 120,
        transcriptHash: "abc123",
        orphanedMs: null,
        chargedMicros: null,
        decisionId: null,
      });
      expect(store.takeReservation("r1")).toEqual(held);
      expect(store.takeReservation("r1")).toBeUndefined();
      expect(store.reservation("nope")).toBeUndefined();
    }));

  it("dead reservations: those of owners named gone, of owners without a row, and orphans; never charged ones", () =>
    withLedger(s, (_, store) => {
      store.registerOwner(owner("alive"));
      store.registerOwner(owner("gone"));
      store.openReservation(reservation("of-alive", { ownerId: "alive" }));
      store.openReservation(reservation("of-gone", { ownerId: "gone" }));
      store.openReservation(reservation("of-nobody", { ownerId: "never-registered" }));
      store.openReservation(reservation("charged", { ownerId: "gone" }));
      store.markCharged("charged", 1_000, 1, T0);
      const ids = (xs: { id: string }[]) => xs.map((r) => r.id).sort();
      expect(ids(store.deadReservations(["gone"]))).toEqual(["of-gone", "of-nobody"]);
      store.orphanReservation("of-alive", T0 + 5);
      store.orphanReservation("of-alive", T0 + 9); // the first orphaning stands
      expect(store.reservation("of-alive")!.orphanedMs).toBe(T0 + 5);
      expect(ids(store.deadReservations([]))).toEqual(["of-alive", "of-nobody"]);
    }));

  it("owners: registered, heartbeat counted, re-registered, removed", () =>
    withLedger(s, (_, store) => {
      store.registerOwner(owner("o1"));
      expect(store.heartbeat("o1", T0 + 5_000)).toBe(true);
      expect(store.heartbeat("o1", T0 + 10_000)).toBe(true);
      const o = store.owners().find((x) => x.id === "o1")!;
      expect(o).toMatchObject({ pid: 4242, hostname: "host-a", heartbeatMs: T0 + 10_000, beat: 2 });
      store.registerOwner(owner("o1", { heartbeatMs: T0 + 20_000 })); // a re-registration replaces the row
      expect(store.owners().filter((x) => x.id === "o1")).toHaveLength(1);
      store.removeOwner("o1");
      expect(store.heartbeat("o1", T0)).toBe(false);
      expect(store.owners()).toEqual([]);
    }));

  it("leases (stores shared across hosts): an owner is gone once its lease expires on the store's clock", async () =>
    withLedger(s, async (_, store) => {
      if (store.renewLease === undefined || store.expiredOwners === undefined) return;
      store.registerOwner(owner("short"));
      store.registerOwner(owner("long"));
      expect(store.renewLease("short", 200)).toBe(true);
      expect(store.renewLease("long", 60_000)).toBe(true);
      expect(store.renewLease("missing", 200)).toBe(false);
      expect(store.expiredOwners()).toEqual([]);
      await new Promise((r) => setTimeout(r, 400));
      expect(store.expiredOwners()).toEqual(["short"]);
      store.renewLease("short", 60_000);
      expect(store.expiredOwners()).toEqual([]);
    }));

  it("key state: saved and read back, replaced whole", () =>
    withLedger(s, (_, store) => {
      expect(store.keyState("k1")).toBeUndefined();
      const state = {
        sessionKey: "k1",
        stuck: true,
        episodeId: "ep1",
        fingerprint: "f".repeat(16),
        repeats: 3,
        lastSignalMs: T0,
        signalled: false,
        updatedMs: T0,
      };
      store.saveKeyState(state);
      expect(store.keyState("k1")).toEqual(state);
      const cleared = {
        ...state,
        stuck: false,
        episodeId: null,
        fingerprint: null,
        lastSignalMs: null,
        signalled: true,
      };
      store.saveKeyState(cleared);
      expect(store.keyState("k1")).toEqual(cleared);
    }));

  it("episodes: opened once by id, closed once; the canned registry is a set shared by all", () =>
    withLedger(s, (l, store) => {
      const ep = {
        id: "ep1",
        sessionKey: "k1",
        fingerprint: "f1",
        evidence: "repeat" as never,
        repeats: 3,
        detectedTurn: 3,
        startedMs: T0,
      };
      store.openEpisode(ep);
      store.openEpisode({ ...ep, repeats: 9 }); // a second opening of the same episode changes nothing
      store.closeEpisode("ep1", T0 + 10);
      store.closeEpisode("ep1", T0 + 20);
      const episodes = (store as unknown as { episodes: () => unknown[] | Map<string, unknown> }).episodes;
      const all =
        typeof episodes === "function"
          ? episodes.call(store)
          : [...(episodes as Map<string, unknown>).values()];
      expect(all).toEqual([expect.objectContaining({ id: "ep1", repeats: 3, endedMs: T0 + 10 })]);
      store.addCannedFingerprint("c1", "episode", T0);
      store.addCannedFingerprint("c1", "operator", T0 + 1);
      store.addCannedFingerprint("c2", "operator", T0);
      const other = l.setting === undefined ? store : l.open();
      expect(other.cannedFingerprints().sort()).toEqual(["c1", "c2"]);
      other.removeCannedFingerprint("c1");
      expect(store.cannedFingerprints()).toEqual(["c2"]);
    }));

  it("signal claims: claimed once, taken while young, claimable again after retryAfter, never once delivered", () =>
    withLedger(s, (l, store) => {
      const other = l.setting === undefined ? store : l.open();
      expect(store.claimSignal!("ev1", T0, 1_000)).toBe("claimed");
      expect(other.claimSignal!("ev1", T0 + 500, 1_000)).toBe("taken");
      expect(other.claimSignal!("ev1", T0 + 1_000, 1_000)).toBe("claimed");
      store.completeSignal!("ev1", T0 + 1_100);
      expect(store.claimSignal!("ev1", T0 + 99_000, 1_000)).toBe("delivered");
      // A delivery recorded without a claim counts as delivered too.
      store.recordSignal({
        ts: T0,
        eventId: "ev2",
        episodeId: "ep2",
        sessionKey: "k1",
        channel: "callback",
        event: "stuck_session",
        status: "delivered",
        attempts: 1,
        error: null,
      });
      expect(other.signalDelivered("ev2")).toBe(true);
      expect(other.signalDelivered("ev3")).toBe(false);
      expect(other.claimSignal!("ev2", T0, 1_000)).toBe("delivered");
    }));

  it("decisions: recorded with distinct ids in one millisecond, and rewritten by a late settlement", () =>
    withLedger(s, (_, store) => {
      const ids = Array.from({ length: 20 }, () => store.recordDecision(decision()));
      expect(new Set(ids.map(String)).size).toBe(20);
      store.updateDecision(
        ids[0]!,
        decision({ decision: "failed", chargedMicros: 1_234, costSource: "reported" }),
      );
      const read = (store as { decisions?: unknown }).decisions;
      if (Array.isArray(read)) expect(read[0]).toMatchObject({ decision: "failed", chargedMicros: 1_234 });
    }));

  it("prune: drops buckets that ended before the cut and reservations charged before it; the horizon only advances", () =>
    withLedger(s, (_, store) => {
      expect(store.pruneHorizon()).toBeNull();
      store.addUsage("k1", T0, 100, 1);
      store.addUsage("k1", T0 + 10 * MIN, 200, 1);
      expect(store.pruneHorizon()).toBe(T0); // before any prune: the oldest bucket
      store.openReservation(reservation("old"));
      store.markCharged("old", 1_000, 1, T0);
      store.openReservation(reservation("open"));
      store.pruneUsage(T0 + 5 * MIN);
      store.setPruneHorizon(T0 + 5 * MIN);
      expect(store.scopeUsage("k1", 0).spentMicros).toBe(200);
      expect(store.reservation("old")).toBeUndefined();
      expect(store.reservation("open")).toBeDefined();
      store.setPruneHorizon(T0);
      expect(store.pruneHorizon()).toBe(T0 + 5 * MIN);
    }));

  it("estimate stats: saved per judge kind and model, replaced, read back", () =>
    withLedger(s, (l, store) => {
      const stats = {
        judge: "quality",
        model: "claude-sonnet-4-6",
        samples: 3,
        outputMean: 312.5,
        outputVar: 40.25,
        outputMax: 400,
        inputRatio: 0.27,
        inputRatioMax: 0.31,
      };
      store.saveEstimateStats(stats);
      store.saveEstimateStats({ ...stats, samples: 4 });
      store.saveEstimateStats({ ...stats, model: "claude-haiku-4-5" });
      const other = l.setting === undefined ? store : l.open();
      const read = other.estimateStats().sort((a, b) => a.model.localeCompare(b.model));
      expect(read).toEqual([
        { ...stats, model: "claude-haiku-4-5" },
        { ...stats, samples: 4 },
      ]);
    }));

  it("recordConfig: a guard's caps are recorded unless the latest record says the same", () =>
    withLedger(s, (_, store) => {
      const c = {
        startedMs: T0,
        ownerId: "o1",
        mode: "enforce",
        sessionBudgetMicros: 5_000_000,
        sessionMaxCalls: 1000,
        budgetWindowMs: 86_400_000,
        dailyBudgetMicros: null,
        judgeBudgetMicros: null,
        judgeBudgets: { gate: 2_000_000 },
      };
      store.recordConfig!(c);
      store.recordConfig!({ ...c, startedMs: T0 + 1, ownerId: "o2" });
      store.recordConfig!({ ...c, startedMs: T0 + 2, sessionBudgetMicros: 1_000_000 });
      const configs = (store as unknown as { configs: GuardConfigList }).configs;
      const list = typeof configs === "function" ? configs.call(store) : configs;
      expect(list.map((x) => x.sessionBudgetMicros)).toEqual([5_000_000, 1_000_000]);
      expect(list[0]).toMatchObject({ judgeBudgets: { gate: 2_000_000 }, dailyBudgetMicros: null });
    }));

  it("atomically: a section that throws leaves nothing behind; nested sections join the outer one", () =>
    withLedger(s, (_, store) => {
      expect(() =>
        store.atomically(() => {
          store.addUsage("k1", T0, 500, 1);
          store.atomically(() => store.openReservation(reservation("r1")));
          throw new Error("boom");
        }),
      ).toThrow("boom");
      // The memory store has nothing to roll back (its sections never fail midway in the guard).
      if (store.location !== ":memory:") {
        expect(store.scopeUsage("k1", 0).spentMicros).toBe(0);
        expect(store.reservation("r1")).toBeUndefined();
      }
      expect(store.atomically(() => store.atomically(() => 42))).toBe(42);
      const before = store.scopeUsage("k1", 0).spentMicros;
      store.addUsage("k1", T0, 1, 1);
      expect(store.scopeUsage("k1", 0).spentMicros).toBe(before + 1);
    }));

  it("admission is atomic across processes: 3 processes checking and charging a cap in sections never pass it", async () =>
    withLedger(s, async (l) => {
      if (l.setting === undefined) return; // one process's memory: nothing to share
      ensureBuilt();
      // Each section reads the global spend, waits 2 ms (so that unserialised sections would
      // interleave), and charges 1,000 if it still fits under 60,000: 3 x 40 attempts.
      const runs = await Promise.all(
        [1, 2, 3].map(() =>
          run(process.execPath, [fixture, l.setting!, "40", "60000"], { encoding: "utf8", timeout: 60_000 }),
        ),
      );
      const admitted = runs.reduce((n, r) => n + Number(r.stdout.trim()), 0);
      const store = l.open();
      expect(store.scopeUsage(null, 0).spentMicros).toBe(60_000);
      expect(admitted).toBe(60);
    }));

  it("a guard keeps a key's cap within one call under 64 concurrent calls", () =>
    withLedger(s, async (_, store) => {
      const guard = createGuard({
        ledger: store,
        logger: "silent",
        concurrency: 64,
        verdictTtlMs: 0,
        sessionBudgetUsd: 0.05,
        dailyBudgetUsd: Number.POSITIVE_INFINITY,
        admissionWaitMs: 20_000,
      });
      const outs = await Promise.all(
        Array.from({ length: 64 }, (_, i) =>
          guard.run(
            {
              judge: "quality",
              model: "claude-haiku-4-5",
              sessionKey: "capped",
              userMessages: [`question ${i}`],
              assistantMessages: [`a substantive answer number ${i}`],
              maxTokens: 50,
              escalation: [],
            },
            async () => {
              await new Promise((r) => setTimeout(r, 2));
              return { costUsd: 0.004 };
            },
          ),
        ),
      );
      await guard.close();
      const judged = outs.filter((o) => o.status === "judged").length;
      const spent = store.scopeUsage("capped", 0).spentMicros;
      expect(spent).toBe(judged * 4_000);
      expect(spent).toBeLessThanOrEqual(50_000 + 4_000);
      expect(judged).toBeGreaterThanOrEqual(12); // the cap was used, not refused early
      expect(store.scopeUsage("capped", 0).openCount).toBe(0);
    }));

  it("two guards sharing one ledger open one episode and send one signal for a stuck key", () =>
    withLedger(s, async (l, store) => {
      const events: GuardEvent[] = [];
      const guardOn = (st: LedgerStore) =>
        createGuard({
          ledger: st,
          logger: "silent",
          verdictTtlMs: 0,
          signals: [callbackSink((e) => void events.push(e))],
        });
      const a = guardOn(store);
      const b = guardOn(l.setting === undefined ? store : l.open());
      const canned = "I'm still working on your previous message. Please wait.";
      const ask = (g: ReturnType<typeof createGuard>, turns: number) =>
        g.run(
          {
            judge: "quality",
            model: "claude-haiku-4-5",
            sessionKey: "stuck-key",
            userMessages: Array.from({ length: turns }, (_, i) => `message ${i}`),
            assistantMessages: Array.from({ length: turns }, () => canned),
            maxTokens: 50,
          },
          async () => ({ costUsd: 0.001 }),
        );
      await ask(a, 1);
      await ask(b, 1);
      const outs = await Promise.all([ask(a, 2), ask(b, 2), ask(a, 3), ask(b, 3)]);
      await Promise.all([a.close(), b.close()]);
      expect(outs.some((o) => o.status === "skipped")).toBe(true);
      const stuck = events.filter((e) => e.type === "stuck_session");
      expect(stuck).toHaveLength(1);
      const other = l.setting === undefined ? store : l.open();
      expect(other.keyState("stuck-key")).toMatchObject({ stuck: true, episodeId: stuck[0]!.episode_id });
    }));
}

type GuardConfigList = (() => Array<Record<string, unknown>>) & Array<Record<string, unknown>>;
