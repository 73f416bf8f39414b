/*
 * The checkpoint worker's thread (see checkpointer.ts): a connection of its own to the ledger,
 * which runs passive WAL checkpoints every `intervalMs` and, every `integrityCheckMs`, a
 * `quick_check` of the small tables behind budgets. It reports to its parent by messages and
 * never throws: a failure is a message, and the guard then checkpoints inline.
 */
import { parentPort, workerData } from "node:worker_threads";
import type Database from "better-sqlite3";
import { sqlite } from "./driver.js";

export interface CheckpointWorkerData {
  /** Four bytes the worker sets to 1 once its connection is closed (the parent may wait on it). */
  readonly closed: SharedArrayBuffer;
  readonly path: string;
  readonly intervalMs: number;
  /** 0: no integrity checks. */
  readonly integrityCheckMs: number;
  readonly tables: readonly string[];
}

/** What the worker tells its parent: the worker failed, or an integrity check found corruption. */
export type CheckpointWorkerMessage = { readonly error: string } | { readonly corrupt: string };

/** What the parent tells the worker: close the connection and end. */
export type CheckpointWorkerCommand = "stop";

const message = (e: unknown): string => String((e as Error | undefined)?.message ?? e);
const corrupt = (e: unknown): boolean =>
  /^SQLITE_(CORRUPT|NOTADB)/.test(String((e as { code?: unknown } | undefined)?.code));

function run(port: NonNullable<typeof parentPort>, data: CheckpointWorkerData): void {
  const post = (m: CheckpointWorkerMessage) => port.postMessage(m);
  const closed = new Int32Array(data.closed);
  let db: Database.Database | undefined;
  let timer: NodeJS.Timeout | undefined;
  let nextCheck = Date.now() + data.integrityCheckMs;

  const close = (): void => {
    clearInterval(timer);
    try {
      if (db?.open) db.close();
    } catch {}
    Atomics.store(closed, 0, 1);
    Atomics.notify(closed, 0);
    process.exit(0);
  };

  /** The first corruption a check finds, or undefined. */
  const checkIntegrity = (conn: Database.Database): string | undefined => {
    for (const table of data.tables) {
      let verdict: string;
      try {
        verdict = String(conn.pragma(`quick_check(${table})`, { simple: true }));
      } catch (e) {
        if (corrupt(e)) return `${table}: ${message(e)}`;
        continue; // a table this schema does not have, or a lock: next time
      }
      if (verdict !== "ok") {
        const first = verdict.split("\n").find((l) => !l.startsWith("*** ")) ?? verdict;
        return `quick_check(${table}): ${first}`;
      }
    }
    return undefined;
  };

  try {
    db = new (sqlite())(data.path, { fileMustExist: true });
    db.pragma("busy_timeout = 1000");
    db.pragma("wal_autocheckpoint = 0");
  } catch (e) {
    post({ error: message(e) });
    close();
    return;
  }
  const conn = db;
  timer = setInterval(() => {
    try {
      conn.pragma("wal_checkpoint(PASSIVE)");
    } catch (e) {
      post(corrupt(e) ? { corrupt: message(e) } : { error: message(e) });
    }
    if (data.integrityCheckMs > 0 && Date.now() >= nextCheck) {
      nextCheck = Date.now() + data.integrityCheckMs;
      const found = checkIntegrity(conn);
      if (found !== undefined) post({ corrupt: found });
    }
  }, data.intervalMs);
  port.on("message", (m: CheckpointWorkerCommand) => {
    if (m === "stop") close();
  });
}

// checkpointer.ts imports this module for its types only, so it runs as a worker's script alone.
if (parentPort !== null) run(parentPort, workerData as CheckpointWorkerData);
