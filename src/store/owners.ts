import { randomUUID } from "node:crypto";
import { readFileSync, readlinkSync } from "node:fs";
import { hostname } from "node:os";
import type { OwnerRecord } from "./types.js";

/**
 * Who holds a reservation, and whether that holder is gone.
 *
 * Each guard registers itself as an owner and bumps a heartbeat counter every few seconds.
 * An owner is declared dead in one of two ways, and never because of anyone's wall clock:
 *
 * - **Proof, in the same process space.** When the owner runs under the same kernel boot and
 *   in the same PID namespace as the reclaimer, its pid is checked: it is dead exactly when that
 *   pid no longer runs or now belongs to a process that started at another time (a container
 *   restart reuses pid 1). A live process is never declared dead because it stalled.
 * - **A lease, everywhere else.** Containers of one pod share a hostname but not a PID
 *   namespace: there a pid means another process, so it proves nothing. The reclaimer watches
 *   the owner's heartbeat counter instead, and declares it dead once the counter has not moved
 *   for `leaseMs` of the reclaimer's own monotonic clock. A clock set wrong on either side
 *   changes nothing; only the heartbeat's progress counts.
 *
 * Declaring an owner dead never frees its spend: its calls in flight are charged at their
 * estimate or wait for their settlement (see `LedgerUpkeep`, upkeep.ts).
 */

/** Linux process start time (field 22 of /proc/PID/stat), or null elsewhere. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

/** This kernel boot (Linux: /proc/sys/kernel/random/boot_id), or null elsewhere. */
function bootId(): string | null {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || null;
  } catch {
    return null;
  }
}

/** This process's PID namespace (Linux: the inode of /proc/self/ns/pid), or null elsewhere. */
function pidNamespace(): string | null {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return null;
  }
}

export function currentOwner(nowMs: number): OwnerRecord {
  return {
    id: randomUUID(),
    pid: process.pid,
    hostname: hostname(),
    procStart: processStart(process.pid),
    bootId: bootId(),
    pidNs: pidNamespace(),
    startedMs: nowMs,
    heartbeatMs: nowMs,
    beat: 0,
  };
}

function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it runs, under another user.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Both run under one kernel boot, in one PID namespace: a pid names the same process for both. */
function sameProcessSpace(a: OwnerRecord, b: OwnerRecord): boolean {
  return (
    a.bootId != null &&
    a.bootId === b.bootId &&
    a.pidNs != null &&
    a.pidNs === b.pidNs &&
    a.procStart != null &&
    b.procStart != null
  );
}

/** Decides which owners are gone, as seen by one guard (`self`). */
export class OwnerWatch {
  readonly #self: OwnerRecord;
  readonly #leaseMs: number;
  readonly #mono: () => number;
  /** Per owner: the heartbeat last seen, and when (this process's monotonic clock) it was first seen. */
  readonly #seen = new Map<string, { mark: string; at: number }>();

  constructor(self: OwnerRecord, leaseMs: number, mono: () => number = () => performance.now()) {
    this.#self = self;
    this.#leaseMs = leaseMs;
    this.#mono = mono;
  }

  /**
   * `gone`: proven dead (its pid). `silent`: its heartbeat stood still for the lease, which a
   * stalled process (SIGSTOP, a long pause) looks like too: its calls may still settle.
   */
  verdict(owner: OwnerRecord): "alive" | "gone" | "silent" {
    if (owner.id === this.#self.id) return "alive";
    if (sameProcessSpace(owner, this.#self)) {
      // The pid runs: it is the same process only if it started at the same time.
      const dead = !pidRuns(owner.pid) || processStart(owner.pid) !== owner.procStart;
      return dead ? "gone" : "alive";
    }
    // The heartbeat's progress, not its time: an owner older than the counter (an older
    // judge-guard) moves only its time, which counts as progress too.
    const mark = `${owner.beat ?? 0}:${owner.heartbeatMs}`;
    const now = this.#mono();
    const seen = this.#seen.get(owner.id);
    if (seen === undefined || seen.mark !== mark) {
      this.#seen.set(owner.id, { mark, at: now });
      return "alive";
    }
    return now - seen.at > this.#leaseMs ? "silent" : "alive";
  }

  /** Owners no longer in the ledger need no watching. */
  forgetExcept(ids: ReadonlySet<string>): void {
    for (const id of this.#seen.keys()) if (!ids.has(id)) this.#seen.delete(id);
  }
}
