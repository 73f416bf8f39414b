import { existsSync, statSync } from "node:fs";
import { resetPhantomSessions } from "../adapters/phantom-sessions.js";
import { isPhantomDbError } from "../errors.js";
import type { ResetRow, SessionSelector } from "../store/phantom.js";
import { printable } from "../util/printable.js";
import { UsageError } from "./errors.js";
import { parseTime } from "./report.js";

export interface ResetSessionsOptions {
  readonly phantomDb?: string;
  readonly sessionKey?: string;
  readonly staleBefore?: string;
  readonly allActive?: boolean;
  readonly dryRun?: boolean;
  readonly json?: boolean;
  /** A database that does not exist yet (Phantom's first boot) is nothing to reset, not an error. */
  readonly ifExists?: boolean;
}

function selector(o: ResetSessionsOptions, startedAt: Date): SessionSelector {
  const given = [o.sessionKey !== undefined, o.staleBefore !== undefined, o.allActive === true].filter(
    Boolean,
  ).length;
  if (given !== 1)
    throw new UsageError("give exactly one of --session-key KEY, --stale-before TIME|now, --all-active");
  if (o.sessionKey !== undefined) {
    if (o.sessionKey.trim() === "") throw new UsageError("--session-key is empty");
    return { sessionKey: o.sessionKey };
  }
  if (o.staleBefore !== undefined) {
    if (o.staleBefore.trim().toLowerCase() === "now") return { staleBefore: startedAt };
    try {
      return { staleBefore: new Date(parseTime(o.staleBefore, "--stale-before", startedAt.getTime())) };
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      throw new UsageError(
        `--stale-before ${JSON.stringify(o.staleBefore)} is not valid: use now, a duration ago such as 24h, 7d or 90m, or an ISO-8601 time such as 2026-11-20T08:00:00Z`,
      );
    }
  }
  return { allActive: true };
}

/**
 * `judge-guard reset-sessions`: clears stale SDK sessions in Phantom's database, so that the
 * next message on each key starts a fresh session. Safe as a container start-up step while
 * Phantom runs (one short UPDATE, its own busy timeout). Exit 0 on success, 1 when the database
 * cannot be changed, 2 on usage errors.
 */
export function resetSessionsCommand(o: ResetSessionsOptions, startedAt = new Date()): number {
  if (!o.phantomDb) throw new UsageError("--phantom-db PATH is required (Phantom's data/phantom.db)");
  if (existsSync(o.phantomDb) && statSync(o.phantomDb).isDirectory()) {
    throw new UsageError(`--phantom-db ${o.phantomDb} is a folder; give Phantom's database file`);
  }
  const which = selector(o, startedAt);
  if (o.ifExists && !existsSync(o.phantomDb)) {
    process.stdout.write(
      o.json
        ? `${JSON.stringify({ dry_run: o.dryRun === true, sessions: [] })}\n`
        : `nothing to reset: ${o.phantomDb} does not exist yet\n`,
    );
    return 0;
  }
  let rows: ResetRow[];
  try {
    rows = resetPhantomSessions(o.phantomDb, which, { dryRun: o.dryRun === true });
  } catch (e) {
    if (isPhantomDbError(e)) {
      process.stderr.write(`judge-guard: reset-sessions: ${printable(e.message)}\n`);
      return 1;
    }
    throw e;
  }
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({ dry_run: o.dryRun === true, sessions: rows.map((r) => r.sessionKey) }, null, 2)}\n`,
    );
    return 0;
  }
  const verb = o.dryRun ? "would clear" : "cleared";
  if (rows.length === 0) {
    process.stdout.write(
      `no active session with an SDK session id matched: nothing ${o.dryRun ? "to clear" : "cleared"}\n`,
    );
    return 0;
  }
  process.stdout.write(
    `${verb} the SDK session of ${rows.length} session${rows.length === 1 ? "" : "s"} in ${o.phantomDb}:\n`,
  );
  // Keys as Phantom stored them, control characters and all: shown escaped, one line each.
  const keys = rows.map((r) => printable(r.sessionKey));
  const width = Math.max(...keys.map((k) => k.length));
  rows.forEach((r, i) => void process.stdout.write(`  ${keys[i]!.padEnd(width)}  ${r.turnCount} turns\n`));
  if (!o.dryRun) process.stdout.write("the next message on each starts a fresh session\n");
  return 0;
}
