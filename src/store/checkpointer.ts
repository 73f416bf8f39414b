import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/**
 * Moves WAL checkpoints off the guard's thread, and checks the integrity of the tables that
 * matter for money there too.
 *
 * With `synchronous = NORMAL`, a WAL commit never waits for the disk, but the automatic
 * checkpoint that some commit triggers every 1000 pages does (an fsync of several
 * milliseconds). That commit is on the judge call's path. The guard turns automatic
 * checkpoints off on its own connection and lets this worker, with a connection of its own,
 * run passive checkpoints: they never block writers or readers, and the fsync happens on
 * another thread.
 *
 * The guard's connection works from its cache and the WAL, so pages overwritten in the file
 * would go unseen until it restarted. This connection reads them (its cache is dropped whenever
 * the WAL changes): every `integrityCheckMs` it runs `PRAGMA quick_check` on the small tables
 * behind budgets, reservations and stuck state (not on the decisions and signals, which only grow).
 */
export interface Checkpointer {
  stop(): Promise<void>;
  /**
   * Stops the worker and waits (blocking, at most `timeoutMs`) until its connection is closed:
   * a connection the process opens next on the file must not share state with it.
   */
  stopNow(timeoutMs?: number): void;
}

// Runs as a CommonJS script inside the worker (eval mode), so it needs no file of its own in
// dist/ and works the same when the library is loaded from TypeScript sources by the tests.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const { integrityCheckMs, tables } = workerData;
let db;
let timer;
let nextCheck = Date.now() + integrityCheckMs;
const closed = new Int32Array(workerData.closed);
function close() {
  clearInterval(timer);
  try { if (db && db.open) db.close(); } catch {}
  Atomics.store(closed, 0, 1);
  Atomics.notify(closed, 0);
  process.exit(0);
}
const message = (e) => String((e && e.message) || e);
const corrupt = (e) => /^SQLITE_(CORRUPT|NOTADB)/.test(String(e && e.code));
function checkIntegrity() {
  for (const table of tables) {
    let verdict;
    try {
      verdict = String(db.pragma("quick_check(" + table + ")", { simple: true }));
    } catch (e) {
      if (corrupt(e)) return parentPort.postMessage({ corrupt: table + ": " + message(e) });
      continue; // a table this schema does not have, or a lock: next time
    }
    if (verdict !== "ok") {
      const first = verdict.split("\\n").find((l) => !l.startsWith("*** ")) || verdict;
      return parentPort.postMessage({ corrupt: "quick_check(" + table + "): " + first });
    }
  }
}
try {
  db = new Database(workerData.path, { fileMustExist: true });
  db.pragma("busy_timeout = 1000");
  db.pragma("wal_autocheckpoint = 0");
} catch (e) {
  parentPort.postMessage({ error: message(e) });
  close();
}
timer = setInterval(() => {
  try { db.pragma("wal_checkpoint(PASSIVE)"); } catch (e) {
    parentPort.postMessage(corrupt(e) ? { corrupt: message(e) } : { error: message(e) });
  }
  if (integrityCheckMs > 0 && Date.now() >= nextCheck) {
    nextCheck = Date.now() + integrityCheckMs;
    checkIntegrity();
  }
}, workerData.intervalMs);
parentPort.on("message", (m) => { if (m === "stop") close(); });
`;

const require = createRequire(import.meta.url);

/** The tables an integrity check reads: small, and behind every admission. */
const CHECKED_TABLES = [
  "sqlite_schema",
  "usage",
  "reservations",
  "owners",
  "key_state",
  "signal_claims",
  "canned_fingerprints",
  "estimates",
];

export interface CheckpointerOptions {
  readonly intervalMs: number;
  /** 0: no integrity checks. */
  readonly integrityCheckMs: number;
  /** The worker failed (checkpoints must then run inline). */
  readonly onError: (message: string) => void;
  /** An integrity check found the file corrupt. */
  readonly onCorrupt: (message: string) => void;
}

export function startCheckpointer(path: string, o: CheckpointerOptions): Checkpointer {
  const closed = new SharedArrayBuffer(4);
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      closed,
      path,
      intervalMs: o.intervalMs,
      integrityCheckMs: o.integrityCheckMs,
      tables: CHECKED_TABLES,
      driver: require.resolve("better-sqlite3"),
    },
  });
  worker.on("message", (m: { error?: string; corrupt?: string }) => {
    if (m?.corrupt) o.onCorrupt(m.corrupt);
    else if (m?.error) o.onError(m.error);
  });
  worker.on("error", (e) => o.onError(e.message));
  // After the listeners: adding a "message" listener refs the worker again, and a ledger left
  // open must not keep the process alive.
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  return {
    async stop() {
      worker.postMessage("stop");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())]);
      await worker.terminate();
    },
    stopNow(timeoutMs = 2000) {
      worker.postMessage("stop");
      Atomics.wait(new Int32Array(closed), 0, 0, timeoutMs);
      void worker.terminate();
    },
  };
}
