import { createRequire } from "node:module";
import type Database from "better-sqlite3";
import { ConfigError } from "../errors.js";

const require = createRequire(import.meta.url);
let driver: typeof Database | undefined;

/**
 * better-sqlite3, loaded the first time a SQLite file is opened rather than when the module is
 * imported: the rest of the library (the in-memory store, the Phantom adapters) then also loads
 * under Bun, where the native addon does not.
 */
export function sqlite(): typeof Database {
  if (driver === undefined) {
    if (process.versions.bun !== undefined) {
      // Bun's require finds the addon but cannot run it; say so before anything half-opens.
      throw new ConfigError(
        "ledger",
        'a SQLite ledger needs better-sqlite3, which does not run under Bun: keep the ledger in memory (JUDGE_GUARD_DB=":memory:", or the ledger option ":memory:" or a MemoryStore) with callback signals in process, or run the judge-guard sidecar on Node and reach it with judge-guard/client',
      );
    }
    try {
      driver = require("better-sqlite3") as typeof Database;
    } catch (e) {
      throw new Error(
        `the SQLite ledger needs better-sqlite3, which did not load here (${(e as Error).message.split("\n")[0]}). Under Bun, use the in-memory store or the judge-guard sidecar.`,
      );
    }
  }
  return driver;
}
