import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/**
 * Moves WAL checkpoints off the guard's thread.
 *
 * With `synchronous = NORMAL`, a WAL commit never waits for the disk, but the automatic
 * checkpoint that some commit triggers every 1000 pages does (an fsync of several
 * milliseconds). That commit is on the judge call's path. The guard turns automatic
 * checkpoints off on its own connection and lets this worker, with a connection of its own,
 * run passive checkpoints: they never block writers or readers, and the fsync happens on
 * another thread.
 */
export interface Checkpointer {
  stop(): Promise<void>;
}

// Runs as a CommonJS script inside the worker (eval mode), so it needs no file of its own in
// dist/ and works the same when the library is loaded from TypeScript sources by the tests.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
let db;
let timer;
function close() {
  clearInterval(timer);
  try { if (db && db.open) db.close(); } catch {}
  process.exit(0);
}
try {
  db = new Database(workerData.path, { fileMustExist: true });
  db.pragma("busy_timeout = 1000");
  db.pragma("wal_autocheckpoint = 0");
} catch (e) {
  parentPort.postMessage({ error: String(e && e.message || e) });
  process.exit(0);
}
timer = setInterval(() => {
  try { db.pragma("wal_checkpoint(PASSIVE)"); } catch (e) { parentPort.postMessage({ error: String(e && e.message || e) }); }
}, workerData.intervalMs);
parentPort.on("message", (m) => { if (m === "stop") close(); });
`;

const require = createRequire(import.meta.url);

export function startCheckpointer(
  path: string,
  intervalMs: number,
  onError: (message: string) => void,
): Checkpointer {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { path, intervalMs, driver: require.resolve("better-sqlite3") },
  });
  worker.on("message", (m: { error?: string }) => {
    if (m?.error) onError(m.error);
  });
  worker.on("error", (e) => onError(e.message));
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
  };
}
