import pg from "pg";
import { runAsWorker } from "synckit";

/*
 * The worker thread behind PgConnection (postgres-connection.ts): node-postgres is asynchronous,
 * the ledger's interface is not, so the guard's thread posts each operation here and waits for
 * its answer (synckit: a SharedArrayBuffer and Atomics.wait). It knows nothing of the ledger:
 * pools by handle, one transaction per handle at most, plain rows back. It must stay free of
 * imports from the rest of the package (tests running the TypeScript sources use the built copy).
 */

export interface PoolSettings {
  readonly url: string;
  readonly max: number;
  readonly connectTimeoutMs: number;
  readonly lockTimeoutMs: number;
  readonly idleInTransactionMs: number;
  readonly statementTimeoutMs: number;
  readonly applicationName: string;
  /** `off`/`local`/...: set per session; undefined keeps the server's setting. */
  readonly synchronousCommit: string | undefined;
  /** Every transaction of the pool's sessions is read-only (a report's reader). */
  readonly readOnly: boolean;
}

export type WorkerOp =
  | { readonly op: "open"; readonly handle: number; readonly settings: PoolSettings }
  | {
      readonly op: "query";
      readonly handle: number;
      readonly sql: string;
      readonly params: readonly unknown[];
    }
  | {
      readonly op: "begin";
      readonly handle: number;
      readonly lockKey: string | null;
      readonly readOnly: boolean;
    }
  | { readonly op: "commit" | "rollback" | "close"; readonly handle: number };

export interface QueryAnswer {
  readonly rows: Array<Record<string, unknown>>;
  readonly rowCount: number;
}

/** `begin` answers the database's clock once the lock is held (ms since the epoch). */
export interface BeginAnswer {
  readonly dbNowMs: number;
}

interface Handle {
  readonly pool: pg.Pool;
  tx: pg.PoolClient | undefined;
}

const handles = new Map<number, Handle>();

/**
 * What ended a client's connection while none of our statements ran on it: the server's
 * message (57P01 on a restart or pg_terminate_backend, 25P03 after idle_in_transaction) or the
 * socket's end. Kept until the client is next used, then thrown, and the client destroyed.
 */
const lost = new WeakMap<pg.Client, Error>();

/**
 * Every client listens for `error` for as long as it lives. node-postgres emits `error` on a
 * client whose connection ends while no query runs on it, and the pool listens only while the
 * client is idle in it: a section's client between two statements had no listener, so a restart
 * or a terminated session threw in this thread, synckit took that for a fatal failure of the
 * worker and ended it, and every later call of the process (every store, every reconnection)
 * threw that same error: the ledger stayed down until the process restarted.
 */
function watch(client: pg.Client): void {
  client.on("error", (e: Error) => {
    if (!lost.has(client)) lost.set(client, e);
  });
}

function handleOf(id: number): Handle {
  const h = handles.get(id);
  if (h === undefined) throw new Error("the PostgreSQL ledger connection is closed");
  return h;
}

/** Ends a transaction's client; one that failed is destroyed rather than reused. */
async function endTx(h: Handle, how: "COMMIT" | "ROLLBACK"): Promise<void> {
  const c = h.tx;
  if (c === undefined) return;
  h.tx = undefined;
  const gone = lost.get(c);
  if (gone !== undefined) {
    // Its session is over: the server rolled the transaction back and released its lock.
    c.release(gone);
    if (how === "COMMIT") throw gone;
    return;
  }
  try {
    await c.query(how);
    c.release();
  } catch (e) {
    c.release(e as Error);
    if (how === "COMMIT") throw e;
  }
}

/** Plain data across the thread boundary: an error keeps its message, code and SQLSTATE fields. */
function plainError(e: unknown): Error {
  const err = e instanceof Error ? e : new Error(String(e));
  const out = new Error(err.message) as Error & Record<string, unknown>;
  for (const k of ["code", "severity", "detail", "routine", "errno", "syscall"]) {
    const v = (err as unknown as Record<string, unknown>)[k];
    if (typeof v === "string" || typeof v === "number") out[k] = v;
  }
  return out;
}

/** Settings given to the server at connection (startup options). */
function sessionOptions(s: PoolSettings): string {
  const set: string[] = [];
  if (s.synchronousCommit !== undefined) set.push(`-c synchronous_commit=${s.synchronousCommit}`);
  if (s.readOnly) set.push("-c default_transaction_read_only=on");
  return set.join(" ");
}

async function run(o: WorkerOp): Promise<QueryAnswer | BeginAnswer | null> {
  switch (o.op) {
    case "open": {
      const s = o.settings;
      const pool = new pg.Pool({
        connectionString: s.url,
        max: s.max,
        connectionTimeoutMillis: s.connectTimeoutMs,
        idleTimeoutMillis: 30_000,
        lock_timeout: s.lockTimeoutMs,
        statement_timeout: s.statementTimeoutMs,
        idle_in_transaction_session_timeout: s.idleInTransactionMs,
        application_name: s.applicationName,
        ...(sessionOptions(s) === "" ? {} : { options: sessionOptions(s) }),
      });
      // A pooled connection the server drops (a restart) errors here while idle: the pool
      // discards it and connects anew; the next operation says what happened, not the process.
      pool.on("error", () => {});
      pool.on("connect", watch);
      handles.set(o.handle, { pool, tx: undefined });
      return null;
    }
    case "begin": {
      const h = handleOf(o.handle);
      if (h.tx !== undefined) await endTx(h, "ROLLBACK"); // left by a caller that timed out
      const c = await h.pool.connect();
      try {
        // READ COMMITTED: each statement sees what committed before it, so once the lock is held
        // the section sees every section that held it before (see docs/postgres.md).
        const mode = o.readOnly ? "REPEATABLE READ READ ONLY" : "READ COMMITTED";
        const lock = o.lockKey === null ? "" : `SELECT pg_advisory_xact_lock(${BigInt(o.lockKey)});`;
        const answers = (await c.query(
          `BEGIN ISOLATION LEVEL ${mode};${lock}SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now`,
        )) as unknown as pg.QueryResult[];
        h.tx = c;
        const last = answers[answers.length - 1]!;
        return { dbNowMs: Number(last.rows[0]!.now) };
      } catch (e) {
        c.release(e as Error);
        throw e;
      }
    }
    case "query": {
      const h = handleOf(o.handle);
      const gone = h.tx === undefined ? undefined : lost.get(h.tx);
      if (gone !== undefined) throw gone; // the section's connection ended between statements
      const r = await (h.tx ?? h.pool).query({ text: o.sql, values: o.params as unknown[] });
      return { rows: r.rows, rowCount: r.rowCount ?? 0 };
    }
    case "commit":
    case "rollback": {
      await endTx(handleOf(o.handle), o.op === "commit" ? "COMMIT" : "ROLLBACK");
      return null;
    }
    case "close": {
      const h = handles.get(o.handle);
      if (h === undefined) return null;
      handles.delete(o.handle);
      if (h.tx !== undefined) await endTx(h, "ROLLBACK").catch(() => {});
      await h.pool.end().catch(() => {});
      return null;
    }
  }
}

runAsWorker(async (o: WorkerOp) => {
  try {
    return await run(o);
  } catch (e) {
    throw plainError(e);
  }
});
