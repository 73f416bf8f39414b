import { existsSync } from "node:fs";
import type Database from "better-sqlite3";
import { PhantomDbError } from "../errors.js";
import { sqlite } from "./driver.js";

/**
 * Phantom's `sessions` table, from outside Phantom: open its database without disturbing a
 * running Phantom, and clear stale SDK sessions (the manual workaround of Phantom issue #25 and
 * the reporter's suggested fixes, automated).
 *
 * The rules for sharing the file with Phantom: never change the journal mode (Phantom set WAL),
 * keep every write one short autocommit statement, and wait for Phantom's lock with a busy
 * timeout of our own (Phantom sets none, so a long lock held here would fail its writes). Same
 * host only: WAL shared memory does not work over network file systems.
 */

// Defined with the other errors; re-exported for the callers that import it from here.
export { PhantomDbError } from "../errors.js";

/** Which rows to reset: one key, every active row last active before a time, or every active row. */
export type SessionSelector = { sessionKey: string } | { staleBefore: Date } | { allActive: true };

export interface ResetRow {
  readonly sessionKey: string;
  readonly lastActiveAt: string;
  readonly turnCount: number;
}

/** The columns of Phantom's sessions table that a reset reads or writes. */
const SESSION_COLUMNS = ["session_key", "sdk_session_id", "status", "last_active_at", "turn_count"] as const;

/** SQLite's `datetime('now')` format, which Phantom's timestamps use (UTC). */
function sqliteTime(d: Date): string {
  return d.toISOString().slice(0, 19).replace("T", " ");
}

function where(selector: SessionSelector): { sql: string; args: string[] } {
  const base = "status = 'active' AND sdk_session_id IS NOT NULL";
  if ("sessionKey" in selector) return { sql: `${base} AND session_key = ?`, args: [selector.sessionKey] };
  if ("staleBefore" in selector)
    return { sql: `${base} AND last_active_at < ?`, args: [sqliteTime(selector.staleBefore)] };
  return { sql: base, args: [] };
}

/** An open connection to Phantom's database, whose sessions table has the columns a reset uses. */
export class PhantomDb {
  readonly #db: Database.Database;

  constructor(db: Database.Database) {
    this.#db = db;
  }

  get open(): boolean {
    return this.#db.open;
  }

  /**
   * Clears `sdk_session_id` (and refreshes `last_active_at`) on the selected active rows, so the
   * runtime's next message on each starts a fresh SDK session; with `dryRun`, changes nothing and
   * returns what it would change. One statement (UPDATE ... RETURNING): the lock is held for it
   * alone. Throws SQLite's error (SQLITE_BUSY while Phantom holds its lock past the timeout).
   */
  reset(selector: SessionSelector, dryRun = false): ResetRow[] {
    const w = where(selector);
    const rows = dryRun
      ? this.#db
          .prepare(`SELECT session_key, last_active_at, turn_count FROM sessions WHERE ${w.sql}`)
          .all(...w.args)
      : this.#db
          .prepare(
            `UPDATE sessions SET sdk_session_id = NULL, last_active_at = datetime('now') WHERE ${w.sql}
             RETURNING session_key, last_active_at, turn_count`,
          )
          .all(...w.args);
    return (rows as Array<{ session_key: string; last_active_at: string; turn_count: number }>)
      .map((r) => ({ sessionKey: r.session_key, lastActiveAt: r.last_active_at, turnCount: r.turn_count }))
      .sort((a, b) => a.sessionKey.localeCompare(b.sessionKey));
  }

  close(): void {
    this.#db.close();
  }
}

/** Opens Phantom's database and checks it has a sessions table with the columns a reset uses. */
export function openPhantomDb(
  path: string,
  options: { busyTimeoutMs?: number; readonly?: boolean } = {},
): PhantomDb {
  if (!existsSync(path))
    throw new PhantomDbError(path, `Phantom's database ${path} does not exist`, "does not exist");
  let db: Database.Database;
  try {
    db = new (sqlite())(path, { fileMustExist: true, readonly: options.readonly === true });
  } catch (e) {
    throw new PhantomDbError(path, `cannot open ${path}: ${(e as Error).message}`);
  }
  db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 250)}`);
  try {
    const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions'").get();
    if (table === undefined)
      throw new PhantomDbError(
        path,
        `${path} has no sessions table: is it Phantom's database?`,
        "it has no sessions table: is it Phantom's database?",
      );
    const columns = new Set(
      (db.prepare("SELECT name FROM pragma_table_info('sessions')").all() as Array<{ name: string }>).map(
        (c) => c.name,
      ),
    );
    const missing = SESSION_COLUMNS.filter((c) => !columns.has(c));
    if (missing.length > 0)
      throw new PhantomDbError(
        path,
        `${path} has a sessions table without ${missing.join(", ")}: is it Phantom's database?`,
        `it has a sessions table without ${missing.join(", ")}: is it Phantom's database?`,
      );
  } catch (e) {
    db.close();
    throw e instanceof PhantomDbError
      ? e
      : new PhantomDbError(path, `cannot read ${path}: ${(e as Error).message}`);
  }
  return new PhantomDb(db);
}
