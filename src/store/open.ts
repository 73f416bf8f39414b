import { MemoryStore } from "./memory.js";
import type { LedgerReader } from "./reader.js";
import { SqliteStore } from "./sqlite.js";
import { SqliteReader } from "./sqlite-reader.js";
import type { LedgerStore } from "./types.js";

/**
 * The store a ledger setting names: ":memory:" keeps the ledger in this process's memory, any
 * other string is a SQLite file, created if missing and opened even while it cannot be used (a
 * read-only file, a corrupt one: every operation then throws its `LedgerFaultError`, and
 * `check()`, on the guard's heartbeat, tries the file again). Under Bun, where the SQLite driver
 * does not run, it throws a `ConfigError` before any file is created (see driver.ts).
 */
export function openStore(ledger: string): LedgerStore {
  return ledger === ":memory:" ? new MemoryStore() : new SqliteStore(ledger, { whenUnavailable: "retry" });
}

/**
 * Reads the ledger file at `path` for reports, on a read-only connection of its own; throws a
 * `LedgerReadError` saying what is wrong when it is missing or no ledger.
 */
export function openReader(path: string): LedgerReader {
  return new SqliteReader(path);
}
