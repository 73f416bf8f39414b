import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { OwnerRecord } from "./types.js";

/**
 * Who holds a reservation, and whether that holder is gone.
 *
 * Each guard registers itself as an owner and refreshes a heartbeat. On this host an owner is
 * dead exactly when its pid no longer runs or now belongs to a process that started at another
 * time (a container restart reuses pid 1): a live process is never declared dead because it
 * stalled (a long GC pause, a suspended laptop). Only an owner on another host (or one whose
 * start time cannot be read) is judged by its heartbeat, older than the lease meaning dead.
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

export function currentOwner(nowMs: number): OwnerRecord {
  return {
    id: randomUUID(),
    pid: process.pid,
    hostname: hostname(),
    procStart: processStart(process.pid),
    startedMs: nowMs,
    heartbeatMs: nowMs,
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

export function isOwnerDead(owner: OwnerRecord, self: OwnerRecord, nowMs: number, leaseMs: number): boolean {
  if (owner.id === self.id) return false;
  const stale = nowMs - owner.heartbeatMs > leaseMs;
  if (owner.hostname !== self.hostname) return stale;
  if (!pidRuns(owner.pid)) return true;
  // The pid runs: it is the same process only if it started at the same time.
  if (owner.procStart !== null && self.procStart !== null) return processStart(owner.pid) !== owner.procStart;
  return stale;
}
