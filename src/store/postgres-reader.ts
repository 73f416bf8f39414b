import { isJudgeGuardError } from "../errors.js";
import { SCHEMA_VERSION as SQLITE_SCHEMA_VERSION } from "./migrations.js";
import { PgConnection, redactIn, redactUrl } from "./postgres-connection.js";
import { pgSchemaProblem, pgSchemaVersion, PG_SCHEMA as S } from "./postgres-migrations.js";
import { type DecisionSpan, LedgerReadError } from "./reader.js";
import type { Row } from "./rows.js";
import { type SqlDialect, SqlLedgerReader } from "./sql-reader.js";

/** PostgreSQL's SQL. A ledger there has the tables and columns of the current SQLite schema. */
const POSTGRES: SqlDialect = {
  version: SQLITE_SCHEMA_VERSION,
  schema: `${S}.`,
  param: (n) => `$${n}`,
  countIf: (cond) => `count(*) FILTER (WHERE ${cond})`,
  // SQLite's order of texts (BINARY), not the database's locale.
  bytewise: (column) => `${column} COLLATE "C"`,
  double: (expr) => `(${expr})::float8`,
  // trunc: SQLite's CAST(... AS INTEGER) of the quotient.
  timelineColumn: (t0, step) => `trunc((ts::float8 - ${t0}::float8) / ${step}::float8)::bigint`,
  oneOf: (column, list) => `${column} = ANY(${list}::text[])`,
  listOf: (texts) => [...texts],
};

/** What a failure to read the ledger at `url` (shown as `location`) means, and what to check. */
function unreadable(e: unknown, url: string, location: string): LedgerReadError {
  if (e instanceof LedgerReadError) return e;
  if (isJudgeGuardError(e) && e.code === "CONFIG_INVALID") return new LedgerReadError(e.message);
  const code = String((e as { code?: unknown })?.code ?? "");
  const message = redactIn((e as Error)?.message ?? String(e), url);
  const hint =
    code === "28P01" || code === "28000"
      ? "check the user and password in JUDGE_GUARD_DB (--db)"
      : code === "3D000"
        ? "the database does not exist: check JUDGE_GUARD_DB (--db)"
        : "check that the server is up and that JUDGE_GUARD_DB (--db) names it";
  return new LedgerReadError(`cannot read the PostgreSQL ledger ${location}: ${message}; ${hint}`);
}

/** A read-only connection to the ledger at `url`, or why there is none to read. */
function connect(url: string, location: string): PgConnection {
  let c: PgConnection | undefined;
  try {
    c = new PgConnection(url, { readOnly: true, max: 1 });
    const version = pgSchemaVersion(c, location);
    const problem = pgSchemaProblem(version, location);
    if (problem !== null) throw new LedgerReadError(problem);
    if (version === 0)
      throw new LedgerReadError(
        `${location} holds no judge-guard ledger yet (no ${S} schema): is JUDGE_GUARD_DB (--db) right?`,
      );
    return c;
  } catch (e) {
    c?.close();
    throw unreadable(e, url, location);
  }
}

/**
 * A PostgreSQL ledger read for reports, on a connection of its own whose transactions are all
 * read-only; `snapshot` is one REPEATABLE READ transaction, so a report's sums agree with each
 * other while guards keep writing. The same queries as the SQLite reader (sql-reader.ts), for
 * the current schema.
 */
export class PostgresReader extends SqlLedgerReader {
  /** The URL without its password. */
  readonly location: string;
  readonly #url: string;
  readonly #c: PgConnection;

  constructor(url: string) {
    const location = redactUrl(url);
    const c = connect(url, location);
    super(POSTGRES);
    this.#url = url;
    this.location = location;
    this.#c = c;
  }

  #unreadable(e: unknown): LedgerReadError {
    return unreadable(e, this.#url, this.location);
  }

  protected query(sql: string, args: readonly unknown[]): Row[] {
    try {
      // Decision ids past 2^53 are bigints: as text, which PostgreSQL reads as its bigint.
      return this.#c.query(
        sql,
        args.map((v) => (typeof v === "bigint" ? String(v) : v)),
      ).rows;
    } catch (e) {
      throw this.#unreadable(e);
    }
  }

  snapshot<T>(fn: () => T): T {
    if (this.#c.inTransaction) return fn();
    try {
      this.#c.begin(null, true);
    } catch (e) {
      throw this.#unreadable(e);
    }
    try {
      const out = fn();
      this.#c.commit();
      return out;
    } catch (e) {
      if (this.#c.inTransaction) this.#c.rollback();
      throw this.#unreadable(e);
    }
  }

  close(): void {
    this.#c.close();
  }
}

/**
 * What the database at `url` holds, before a guard opens (and migrates) it, as `inspectLedger`
 * tells of a SQLite file: `empty` (no ledger yet), a `ledger` with its decisions, `foreign` with
 * why it cannot be used, or `unreadable` (the guard that opens it next says what is wrong).
 */
export function inspectPostgres(
  url: string,
):
  | { readonly kind: "foreign"; readonly problem: string }
  | { readonly kind: "empty" | "unreadable" }
  | { readonly kind: "ledger"; readonly decisions: DecisionSpan } {
  let reader: PostgresReader;
  try {
    reader = new PostgresReader(url);
  } catch (e) {
    const message = (e as Error).message;
    if (/holds no judge-guard ledger yet/.test(message)) return { kind: "empty" };
    if (/newer than this judge-guard|no judge-guard ledger \(no schema_version/.test(message))
      return { kind: "foreign", problem: message };
    return { kind: "unreadable" };
  }
  try {
    return { kind: "ledger", decisions: reader.decisionSpan() };
  } catch {
    return { kind: "unreadable" };
  } finally {
    reader.close();
  }
}
