import { createRequire } from "node:module";
import type Database from "better-sqlite3";
import { ConfigError } from "../errors.js";

const require = createRequire(import.meta.url);
let driver: typeof Database | undefined;

/**
 * Why the SQLite driver cannot run in this process ("better-sqlite3, which does not run under
 * Bun"), or undefined where it can. The one place that knows: the rest of the library (the
 * signal channels read from the environment) asks here rather than test for Bun itself.
 */
export function sqliteUnavailable(): string | undefined {
  // Bun's require finds the addon but cannot run it: say so before anything half-opens.
  return process.versions.bun === undefined ? undefined : "better-sqlite3, which does not run under Bun";
}

/**
 * better-sqlite3, loaded the first time a SQLite file is opened rather than when the module is
 * imported: the rest of the library (the in-memory store, the Phantom adapters) then also loads
 * under Bun, where the native addon does not.
 */
export function sqlite(): typeof Database {
  if (driver === undefined) {
    const unavailable = sqliteUnavailable();
    if (unavailable !== undefined) {
      throw new ConfigError(
        "ledger",
        `a SQLite ledger needs ${unavailable}: keep the ledger in memory (JUDGE_GUARD_DB=":memory:", or the ledger option ":memory:" or a MemoryStore) with callback signals in process, or run the judge-guard sidecar on Node and reach it with judge-guard/client`,
      );
    }
    try {
      driver = require("better-sqlite3") as typeof Database;
    } catch (e) {
      throw new ConfigError(
        "ledger",
        `the SQLite ledger needs better-sqlite3, which did not load here (${(e as Error).message.split("\n")[0]}): reinstall judge-guard (npm ci compiles it), or use the in-memory store or the judge-guard sidecar`,
      );
    }
  }
  return driver;
}
