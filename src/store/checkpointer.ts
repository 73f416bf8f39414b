import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type {
  CheckpointWorkerCommand,
  CheckpointWorkerData,
  CheckpointWorkerMessage,
} from "./checkpoint-worker.js";

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

/**
 * The worker's script, `checkpoint-worker.js` beside this module once compiled into dist/. Where
 * this module runs from its TypeScript source (vitest loads src/ directly), the sibling is a .ts
 * file, which a worker thread on Node 20 cannot load (it strips no types, and vitest's loader does
 * not reach worker threads): the copy compiled into dist/ is used instead (`npm test` builds
 * first). Without one, checkpoints run inline, as when the worker fails.
 */
function workerScript(): URL {
  return import.meta.url.endsWith(".ts")
    ? new URL("../../dist/store/checkpoint-worker.js", import.meta.url)
    : new URL("./checkpoint-worker.js", import.meta.url);
}

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
  const script = workerScript();
  if (!existsSync(script)) {
    o.onError(`the checkpoint worker ${fileURLToPath(script)} is missing: run npm run build`);
    return { async stop() {}, stopNow() {} };
  }
  const closed = new SharedArrayBuffer(4);
  const workerData: CheckpointWorkerData = {
    closed,
    path,
    intervalMs: o.intervalMs,
    integrityCheckMs: o.integrityCheckMs,
    tables: CHECKED_TABLES,
  };
  const worker = new Worker(script, { workerData });
  const stop: CheckpointWorkerCommand = "stop";
  worker.on("message", (m: CheckpointWorkerMessage) => {
    if ("corrupt" in m) o.onCorrupt(m.corrupt);
    else o.onError(m.error);
  });
  worker.on("error", (e) => o.onError(e.message));
  // After the listeners: adding a "message" listener refs the worker again, and a ledger left
  // open must not keep the process alive.
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  return {
    async stop() {
      worker.postMessage(stop);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())]);
      await worker.terminate();
    },
    stopNow(timeoutMs = 2000) {
      worker.postMessage(stop);
      Atomics.wait(new Int32Array(closed), 0, 0, timeoutMs);
      void worker.terminate();
    },
  };
}
