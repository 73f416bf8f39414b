import Database from "better-sqlite3";

/**
 * Runs `read` on a connection of the test's own to the ledger file at `path`: a store keeps its
 * connection to itself (`connectionOf` gives it to the tests that inject faults into it).
 */
export function readLedger<T>(path: string, read: (db: Database.Database) => T): T {
  const db = new Database(path, { fileMustExist: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}
