import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createSyncFn } from "synckit";
import { ConfigError } from "../errors.js";
import type { BeginAnswer, PoolSettings, QueryAnswer, WorkerOp } from "./postgres-worker.js";

/*
 * A synchronous connection to PostgreSQL: node-postgres runs on a worker thread and this thread
 * waits for each answer (synckit). The ledger's interface stays synchronous, and an atomic
 * section stays one uninterrupted run of this thread, as with SQLite.
 */

/** Whether a ledger setting names a PostgreSQL database rather than a SQLite file. */
export function isPostgresUrl(ledger: string): boolean {
  return /^postgres(ql)?:\/\//i.test(ledger);
}

/** A URL as it may be shown: its password replaced by `***` (never log a password). */
export function redactUrl(url: string): string {
  const masked = withPassword(url, "***");
  try {
    const u = new URL(masked);
    for (const key of [...u.searchParams.keys()]) if (SECRET_PARAM.test(key)) u.searchParams.set(key, "***");
    return u.toString();
  } catch {
    return masked === url ? url.replace(/\/\/[^@/]*@/, "//***@") : masked;
  }
}

/** Parameters whose value is a secret (`?password=...`). */
const SECRET_PARAM = /pass|secret|key|token/i;

/**
 * The password of `url` as written, found by position: the userinfo runs from the scheme's "//"
 * to the last "@", the password from its first ":". A password with an unencoded "/", "#", "?" or
 * "@" would otherwise be parsed as part of the host or the path, and shown.
 */
function passwordOf(url: string): { password: string; at: number } | undefined {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0];
  const at = url.lastIndexOf("@");
  if (scheme === undefined || at < scheme.length) return undefined;
  const colon = url.slice(scheme.length, at).indexOf(":");
  return colon === -1 ? undefined : { password: url.slice(scheme.length + colon + 1, at), at };
}

/** `url` with its password replaced by `text`. */
function withPassword(url: string, text: string): string {
  const p = passwordOf(url);
  return p === undefined ? url : `${url.slice(0, p.at - p.password.length)}${text}${url.slice(p.at)}`;
}

const decoded = (s: string): string => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};

/** Removes a URL's password and secret parameters from any text (a driver's message may quote its input). */
export function redactIn(text: string, url: string): string {
  const secrets = [passwordOf(url)?.password ?? ""];
  try {
    for (const [key, value] of new URL(withPassword(url, "")).searchParams)
      if (SECRET_PARAM.test(key)) secrets.push(value);
  } catch {}
  let out = text.split(url).join(redactUrl(url));
  for (const secret of secrets.flatMap((s) => [s, decoded(s)]))
    if (secret !== "") out = out.split(secret).join("***");
  return out;
}

/**
 * The worker's file: beside this module when built; when this module runs from the TypeScript
 * sources (the test suite), the built copy in dist/ (`npm test` builds first).
 */
function workerPath(): string {
  const beside = fileURLToPath(new URL("./postgres-worker.js", import.meta.url));
  if (existsSync(beside)) return beside;
  const built = fileURLToPath(new URL("../../dist/store/postgres-worker.js", import.meta.url));
  if (existsSync(built)) return built;
  throw new Error(`the PostgreSQL ledger's worker is missing (${beside}): build judge-guard (npm run build)`);
}

/**
 * Why the worker thread cannot start in this process, or undefined. A CommonJS script given to
 * `node -e`, `node -p` or on standard input has a global `__dirname` ("."), which synckit's ES
 * module build takes for its own directory: it then asks the worker to preload `../register.cjs`
 * from the current directory, the worker fails before it can report anything, and this thread
 * would wait for the answer timeout (two minutes). Said at once instead.
 */
function workerUnstartable(): string | undefined {
  const dir = (globalThis as { __dirname?: unknown }).__dirname;
  if (typeof dir !== "string" || existsSync(resolve(dir, "../register.cjs"))) return undefined;
  return "the PostgreSQL ledger's worker thread cannot start from a CommonJS script given to `node -e`, `node -p` or on standard input (synckit resolves its preload against that script's global __dirname): run the code as an ES module (`node --input-type=module -e ...`) or from a file";
}

type Call = (o: WorkerOp) => QueryAnswer | BeginAnswer | null;
let call: Call | undefined;
let nextHandle = 1;

/** How long a section waits for the ledger's lock by default (PostgreSQL's `lock_timeout`). */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

/** How long this thread waits for any one answer before giving up: past every server timeout. */
const ANSWER_TIMEOUT_MS = 120_000;

export interface PgConnectionOptions {
  /** Connections in the pool (the guard's thread uses one at a time). @default 2 */
  readonly max?: number;
  /** How long connecting may take. @default 5000 */
  readonly connectTimeoutMs?: number;
  /** How long a section waits for the ledger's lock (held by another host's section). @default 10000 */
  readonly lockTimeoutMs?: number;
  /** A statement running longer than this is cancelled. @default 30000 */
  readonly statementTimeoutMs?: number;
  /**
   * The server ends a session idle inside a transaction this long (a host stopped mid-section),
   * releasing its lock for the others. @default 15000
   */
  readonly idleInTransactionMs?: number;
  /** PostgreSQL's `synchronous_commit` for this ledger's sessions; the server's own setting by default. */
  readonly synchronousCommit?: "on" | "off" | "local" | "remote_write" | "remote_apply";
  /** Every transaction is read-only (a report's reader). @default false */
  readonly readOnly?: boolean;
}

export class PgConnection {
  readonly #handle: number;
  #open = true;
  #inTx = false;

  /** Throws a `ConfigError` naming JUDGE_GUARD_DB (without the password) when `url` is no URL. */
  constructor(url: string, o: PgConnectionOptions = {}) {
    try {
      new URL(url);
    } catch {
      throw new ConfigError(
        "ledger",
        `JUDGE_GUARD_DB (--db) ${redactUrl(url)} is not a valid PostgreSQL URL: write it as postgres://user:password@host:port/database, with special characters of the password percent-encoded`,
      );
    }
    if (call === undefined) {
      const why = workerUnstartable();
      if (why !== undefined) throw new ConfigError("ledger", why);
      call = createSyncFn(workerPath(), { timeout: ANSWER_TIMEOUT_MS }) as unknown as Call;
    }
    this.#handle = nextHandle++;
    const settings: PoolSettings = {
      url,
      max: o.max ?? 2,
      connectTimeoutMs: o.connectTimeoutMs ?? 5000,
      lockTimeoutMs: o.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
      statementTimeoutMs: o.statementTimeoutMs ?? 30_000,
      idleInTransactionMs: o.idleInTransactionMs ?? 15_000,
      applicationName: "judge-guard",
      synchronousCommit: o.synchronousCommit,
      readOnly: o.readOnly === true,
    };
    call({ op: "open", handle: this.#handle, settings });
  }

  get inTransaction(): boolean {
    return this.#inTx;
  }

  query(sql: string, params: readonly unknown[] = []): QueryAnswer {
    return call!({ op: "query", handle: this.#handle, sql, params }) as QueryAnswer;
  }

  /** BEGIN, and the advisory lock `lockKey` for the transaction; answers the database's clock. */
  begin(lockKey: bigint | null, readOnly = false): number {
    const a = call!({
      op: "begin",
      handle: this.#handle,
      lockKey: lockKey === null ? null : String(lockKey),
      readOnly,
    }) as BeginAnswer;
    this.#inTx = true;
    return a.dbNowMs;
  }

  commit(): void {
    this.#inTx = false;
    call!({ op: "commit", handle: this.#handle });
  }

  /** Never throws: a transaction that cannot be rolled back is ended with its connection. */
  rollback(): void {
    this.#inTx = false;
    try {
      call!({ op: "rollback", handle: this.#handle });
    } catch {}
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    try {
      call!({ op: "close", handle: this.#handle });
    } catch {}
  }
}
