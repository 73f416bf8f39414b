import type { Logger } from "../log/logger.js";
import { type Clock, SteadyClock } from "../util/clock.js";
import { type GuardCaps, guardConfigRecord } from "./guard-config.js";
import { currentOwner, OwnerWatch } from "./owners.js";
import type { SafeLedger } from "./safe.js";
import type {
  BudgetLedger,
  LedgerStore,
  OwnerRecord,
  ReservationLedger,
  StoredReservation,
} from "./types.js";

/** How often a guard beats, at most (several times within a lease: see {@link LedgerUpkeep.start}). */
export const HEARTBEAT_MS = 5_000;
/** A wall clock this far from the guard's steady clock is worth a warning. */
const CLOCK_SKEW_WARN_MS = 60_000;

/** What the upkeep touches: reservations and owners, the spend it charges and prunes, the store's health. */
export type UpkeepLedger = BudgetLedger & ReservationLedger & Pick<LedgerStore, "check">;

export interface UpkeepOptions {
  readonly clock: Clock;
  /** An owner whose heartbeat stands still this long is presumed gone. */
  readonly leaseMs: number;
  /** Usage buckets older than this are pruned. */
  readonly retainMs: number;
  /** The caps recorded when the guard opens the ledger (and when it can use it again). */
  readonly caps: GuardCaps;
}

/**
 * A guard's lease on the ledger and its upkeep: it registers as an owner and beats, settles what
 * owners that are gone left in flight, prunes old spend, and watches the ledger itself (and the
 * system clock) on every heartbeat.
 */
export class LedgerUpkeep {
  readonly owner: OwnerRecord;
  /** Reservations of owners that are gone, charged or put to wait for their settlement. */
  reclaimed = 0;
  readonly #ledger: SafeLedger<UpkeepLedger>;
  readonly #log: Logger;
  readonly #o: UpkeepOptions;
  readonly #watch: OwnerWatch;
  /** The prune horizon this guard last saw, and when (monotonic): it advances only as time really passes. */
  #horizonSeen: { ms: number; mono: number } | undefined;
  #skewWarnedAt = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;

  constructor(ledger: SafeLedger<UpkeepLedger>, log: Logger, options: UpkeepOptions) {
    this.#ledger = ledger;
    this.#log = log;
    this.#o = options;
    this.owner = currentOwner(options.clock.now());
    this.#watch = new OwnerWatch(this.owner, options.leaseMs);
  }

  /** Registers this guard and its caps, and reclaims what gone owners left. Throws what the ledger throws. */
  open(): void {
    const store = this.#ledger.store;
    store.registerOwner(this.owner);
    store.renewLease?.(this.owner.id, this.#o.leaseMs);
    store.recordConfig?.(guardConfigRecord(this.#o.caps, this.owner.id));
    this.#reclaim();
  }

  /** Runs `tick` on the heartbeat, several times within a lease, so that peers see this owner's counter move. */
  start(tick: () => void): void {
    this.#timer = setInterval(tick, Math.min(HEARTBEAT_MS, Math.floor(this.#o.leaseMs / 3)));
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Ends the lease: this guard holds no reservation any more. */
  release(): void {
    this.#ledger.attempt((s) => s.removeOwner(this.owner.id));
  }

  /** The ledger file itself (deleted, replaced, overwritten?), and recovery from a fault. */
  checkLedger(): void {
    const found = this.#ledger.attempt((s) => s.check?.());
    if (found?.fault !== undefined) this.#ledger.failed(found.fault, "heartbeat");
    if (found?.recovered === undefined) return;
    this.#log.warn({ ledger: this.#ledger.store.location, how: found.recovered }, "ledger available again");
    this.#ledger.attempt((s) => s.recordConfig?.(guardConfigRecord(this.#o.caps, this.owner.id)));
  }

  /**
   * One heartbeat: the clock's skew, the owner's beat, the reclaim and the prune; `also` runs
   * within the same ledger attempt (a failure ends the beat there, logged once).
   */
  beat(also: () => void): void {
    this.#checkSkew();
    this.#ledger.attempt((s) => {
      // A row removed while this process stalled is put back: its reservations are live.
      const now = this.#o.clock.now();
      if (!s.heartbeat(this.owner.id, now)) s.registerOwner({ ...this.owner, heartbeatMs: now });
      s.renewLease?.(this.owner.id, this.#o.leaseMs);
      this.#reclaim();
      this.#prune();
      also();
    });
  }

  /**
   * Settles what owners that are gone left in flight, never freeing it: a call made by `run`
   * died with its process and is charged at its estimate (the provider may well have billed
   * it); a remote call (admit/settle) goes on without its owner, so its reservation keeps
   * counting against the caps until a settlement arrives through any guard sharing the ledger,
   * or its time to live passes, when it too is charged at its estimate. Either charge is
   * corrected by a settlement that arrives later.
   */
  #reclaim(): void {
    const store = this.#ledger.store;
    const now = this.#o.clock.now();
    const silent = new Set<string>();
    const dead: string[] = [];
    // A store shared across hosts: an owner is gone when the store's clock says its lease
    // expired. That proves nothing of its process (it may only have stalled): silent. Read in the
    // section that acts on it, so that a lease renewed meanwhile is seen.
    const leased = store.renewLease !== undefined && store.expiredOwners !== undefined;
    if (!leased) {
      const owners = store.owners();
      this.#watch.forgetExcept(new Set(owners.map((o) => o.id)));
      for (const o of owners) {
        const v = this.#watch.verdict(o);
        if (v === "alive") continue;
        dead.push(o.id);
        if (v === "silent") silent.add(o.id);
      }
    }
    let orphaned = 0;
    let charged = 0;
    store.atomically(() => {
      if (leased) {
        for (const id of store.expiredOwners!()) {
          if (id === this.owner.id) continue;
          dead.push(id);
          silent.add(id);
        }
      }
      for (const r of store.deadReservations(dead)) {
        // This guard is alive: its calls are its own to settle, whatever its owner row says.
        if (r.ownerId === this.owner.id) continue;
        // Without an owner row, on a store shared across hosts, nothing is proven of its process.
        const stalled = silent.has(r.ownerId) || (leased && !dead.includes(r.ownerId));
        if (r.orphanedMs !== null) {
          // Waiting for a settlement: its time to live (a remote call's timeout; for a call of
          // an owner that only went silent, ten leases) decides when it is charged instead.
          const ttl = r.remote ? (r.ttlMs ?? 0) : 10 * this.#o.leaseMs;
          if (now - r.orphanedMs >= ttl) this.#chargeEstimate(r, now);
        } else if (r.remote || stalled) {
          // The call may go on (a sidecar's client) or its owner may only have stalled: it keeps
          // counting, at its worst case, until it settles or its time runs out.
          store.orphanReservation(r.id, now);
          orphaned++;
        } else {
          // Its process is gone, and the call with it.
          this.#chargeEstimate(r, now);
          charged++;
        }
      }
      for (const id of dead) store.removeOwner(id);
    });
    if (orphaned + charged > 0) {
      this.reclaimed += orphaned + charged;
      this.#log.warn(
        { charged, waiting: orphaned, owners: dead.length },
        "calls in flight of guards that are gone: charged at their estimate, or waiting for their settlement",
      );
    }
  }

  /** Charges a reservation nobody settled at its estimate, keeping its row for a late settlement. */
  #chargeEstimate(r: StoredReservation, now: number): void {
    const store = this.#ledger.store;
    const micros = r.expectedMicros;
    store.addUsage(r.sessionKey, r.createdMs, micros, 1, r.judge);
    const id = store.recordDecision({
      ts: r.createdMs,
      sessionKey: r.sessionKey,
      judge: r.judge,
      model: r.model,
      decision: "failed",
      reason: null,
      shadow: false,
      reservedMicros: micros,
      chargedMicros: micros,
      savedMicros: 0,
      inputTokens: 0,
      outputTokens: 0,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      turns: r.turns ?? 0,
      transcriptChars: r.transcriptChars ?? 0,
      transcriptHash: r.transcriptHash ?? "",
      durationMs: Math.max(0, Math.round(now - r.createdMs)),
      episodeId: null,
      costSource: "estimate",
      computedMicros: null,
    });
    store.markCharged(r.id, micros, id, now);
  }

  /**
   * Drops usage buckets older than `retainMs`. The cut-off is the ledger's prune horizon, which
   * this guard advances by no more than the time its own monotonic clock saw pass since it last
   * read it: a guard whose wall clock runs days ahead cannot erase spend that every other
   * guard's windows still count.
   */
  #prune(): void {
    const store = this.#ledger.store;
    const desired = this.#o.clock.now() - this.#o.retainMs;
    const mono = performance.now();
    const seen = this.#horizonSeen;
    store.atomically(() => {
      // Never seeded from this guard's clock: the first horizon is the oldest bucket (nothing
      // is pruned then), and it moves only as fast as time passes here.
      const stored = store.pruneHorizon();
      if (stored === null) return;
      const allowed = Math.min(desired, seen === undefined ? stored : seen.ms + (mono - seen.mono));
      const next = Math.max(stored, allowed);
      store.pruneUsage(next);
      store.setPruneHorizon(next);
      this.#horizonSeen = { ms: next, mono };
    });
  }

  /** Says so when the system clock has jumped away from the time this guard keeps. */
  #checkSkew(): void {
    const clock = this.#o.clock;
    if (!(clock instanceof SteadyClock)) return;
    const skewMs = clock.skew();
    if (Math.abs(skewMs) < CLOCK_SKEW_WARN_MS || performance.now() - this.#skewWarnedAt < 600_000) return;
    this.#skewWarnedAt = performance.now();
    this.#log.warn(
      { skewMs },
      "the system clock jumped away from the time this guard keeps: budget windows go on counting by the monotonic clock; restart the guard to adopt the system clock",
    );
  }
}
