import { MemoryStore } from "./memory.js";
import { PostgresStore } from "./postgres.js";
import { isPostgresUrl, redactUrl } from "./postgres-connection.js";
import { PostgresReader } from "./postgres-reader.js";
import type { LedgerReader } from "./reader.js";
import { SqliteStore } from "./sqlite.js";
import { SqliteReader } from "./sqlite-reader.js";
import type { LedgerStore } from "./types.js";

/**
 * The store a ledger setting names: ":memory:" keeps the ledger in this process's memory, a
 * `postgres://` or `postgresql://` URL is a PostgreSQL database shared by every host using it
 * (its schema migrated on first use), any other string is a SQLite file, created if missing.
 * Either is opened even while it cannot be used (a read-only file, a corrupt one, a server that
 * is down: every operation then throws its `LedgerFaultError`, and `check()`, on the guard's
 * heartbeat, tries again). Under Bun, where the SQLite driver does not run, a SQLite file
 * throws a `ConfigError` before any file is created (see driver.ts).
 */
export function openStore(ledger: string): LedgerStore {
  if (ledger === ":memory:") return new MemoryStore();
  if (isPostgresUrl(ledger)) return new PostgresStore(ledger, { whenUnavailable: "retry" });
  return new SqliteStore(ledger, { whenUnavailable: "retry" });
}

/** A ledger setting as messages and reports may show it: a database URL without its password. */
export function ledgerName(ledger: string): string {
  return isPostgresUrl(ledger) ? redactUrl(ledger) : ledger;
}

/**
 * Reads the ledger at `ledger` (a SQLite file's path or a PostgreSQL URL) for reports, on a
 * read-only connection of its own; throws a `LedgerReadError` saying what is wrong when it is
 * missing, unreachable or no ledger.
 */
export function openReader(ledger: string): LedgerReader {
  return isPostgresUrl(ledger) ? new PostgresReader(ledger) : new SqliteReader(ledger);
}
