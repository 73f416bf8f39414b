import { existsSync, statSync } from "node:fs";
import type Database from "better-sqlite3";
import { sqlite } from "./driver.js";
import { ledgerProblem } from "./migrations.js";
import { type DecisionSpan, LedgerReadError } from "./reader.js";
import type { Row } from "./rows.js";
import { type Query, type SqlDialect, SqlLedgerReader, spanOf } from "./sql-reader.js";

/** SQLite's SQL, for a ledger of schema `version`. Parameters are named (@p1...): bound by name, in any order. */
function sqliteDialect(version: number): SqlDialect {
  return {
    version,
    schema: "",
    param: (n) => `@p${n}`,
    countIf: (cond) => `sum(${cond})`,
    bytewise: (column) => column,
    double: (expr) => expr,
    // Bound numbers are REALs: the quotient is one, cut to its whole part as PostgreSQL's trunc.
    timelineColumn: (t0, step) => `CAST((ts - ${t0}) / ${step} AS INTEGER)`,
    oneOf: (column, list) => `${column} IN (SELECT value FROM json_each(${list}))`,
    listOf: (texts) => JSON.stringify(texts),
  };
}

/** A query on `db`, its parameters bound by the names {@link sqliteDialect} gives them. */
function queryOf(db: Database.Database): Query {
  return (sql, args) =>
    db.prepare(sql).all(Object.fromEntries(args.map((v, i) => [`p${i + 1}`, v]))) as Row[];
}

const versionOf = (db: Database.Database): number => Number(db.pragma("user_version", { simple: true }));

/**
 * Opens the ledger at `path` read-only, or throws a {@link LedgerReadError} saying what is wrong:
 * missing, a folder, not a ledger, a newer schema, no schema yet.
 */
function openReadOnly(path: string): Database.Database {
  if (!existsSync(path)) throw new LedgerReadError(`no ledger at ${path} (set --db or JUDGE_GUARD_DB)`);
  if (statSync(path).isDirectory())
    throw new LedgerReadError(
      `${path} is a folder, not a ledger (set --db or JUDGE_GUARD_DB to the ledger file)`,
    );
  let db: Database.Database;
  try {
    db = new (sqlite())(path, { readonly: true, fileMustExist: true });
  } catch (e) {
    throw new LedgerReadError(`cannot open the ledger ${path}: ${(e as Error).message}`);
  }
  try {
    const problem = ledgerProblem(db, path);
    if (problem !== null) throw new LedgerReadError(problem);
    if (versionOf(db) === 0)
      throw new LedgerReadError(`${path} is not a judge-guard ledger (no schema): is --db right?`);
    db.pragma("busy_timeout = 2000");
    return db;
  } catch (e) {
    db.close();
    throw unreadable(path, e);
  }
}

function unreadable(path: string, e: unknown): LedgerReadError {
  return e instanceof LedgerReadError
    ? e
    : new LedgerReadError(`cannot read the ledger ${path}: ${(e as Error).message}`);
}

/**
 * A ledger file read through a read-only connection of its own, so that a running guard is never
 * blocked; whatever its schema version, each query reads only the columns it has.
 */
export class SqliteReader extends SqlLedgerReader {
  readonly location: string;
  readonly #db: Database.Database;

  constructor(path: string) {
    const db = openReadOnly(path);
    super(sqliteDialect(versionOf(db)));
    this.location = path;
    this.#db = db;
  }

  protected query(sql: string, args: readonly unknown[]): Row[] {
    return queryOf(this.#db)(sql, args);
  }

  snapshot<T>(fn: () => T): T {
    try {
      return this.#db.transaction(fn)();
    } catch (e) {
      throw unreadable(this.location, e);
    }
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * What the file at `path` holds, before a guard opens (and migrates) it: `foreign` with why it is
 * no ledger, `not-sqlite`, `empty` (no schema yet), or a `ledger` with its decisions.
 * `unreadable`: it cannot be read now (a lock, a fault), and the guard that opens it next says
 * what is wrong.
 */
export function inspectLedger(
  path: string,
):
  | { readonly kind: "foreign"; readonly problem: string }
  | { readonly kind: "not-sqlite" | "empty" | "unreadable" }
  | { readonly kind: "ledger"; readonly decisions: DecisionSpan } {
  let db: Database.Database;
  try {
    db = new (sqlite())(path, { readonly: true, fileMustExist: true });
  } catch {
    return { kind: "unreadable" };
  }
  try {
    const problem = ledgerProblem(db, path);
    if (problem !== null) return { kind: "foreign", problem };
    const version = versionOf(db);
    if (version === 0) return { kind: "empty" };
    return { kind: "ledger", decisions: spanOf(queryOf(db), sqliteDialect(version)) };
  } catch (e) {
    return { kind: (e as { code?: string }).code === "SQLITE_NOTADB" ? "not-sqlite" : "unreadable" };
  } finally {
    db.close();
  }
}
