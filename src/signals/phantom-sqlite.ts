import { ConfigError, SignalDeliveryError } from "../errors.js";
import { openPhantomDb, type PhantomDb } from "../store/phantom.js";
import { sleep } from "../util/sleep.js";
import type { GuardEvent, SignalSink } from "./types.js";

export interface PhantomSqliteOptions {
  /** Phantom's database, e.g. `data/phantom.db`. */
  readonly path: string;
  /** How long one statement waits for Phantom's write lock. @default 250 */
  readonly busyTimeoutMs?: number;
  /** Further attempts when the database stays locked. @default 3 */
  readonly retries?: number;
  /** First delay between attempts, doubled each time. @default 200 */
  readonly backoffMs?: number;
  /** Sink name in the ledger. @default "phantom-sqlite" */
  readonly name?: string;
}

/**
 * Forces a fresh session in Phantom's own SQLite database: one short autocommit UPDATE that
 * clears the stuck key's `sdk_session_id` (what Phantom issue #25's manual workaround did, without
 * deleting the row). It shares the file with a running Phantom: it never changes the journal
 * mode, holds a write lock for one statement only, and waits for Phantom's lock with a short busy
 * timeout of its own (Phantom sets none, so a long lock here would fail Phantom's writes). A
 * missing file or table, or a lock that outlasts the retries, is a failed delivery: recorded,
 * logged, retried after the cooldown, never thrown at the host.
 *
 * It must run on Phantom's host: SQLite's WAL shared memory does not work over network file
 * systems. It does not release Phantom's in-memory per-key lock or abort a hung request; for
 * that the runtime must be told directly (a callback or the webhook).
 */
export function phantomSqliteSink(options: PhantomSqliteOptions): SignalSink {
  const { path } = options;
  if (typeof path !== "string" || path === "")
    throw ConfigError.option("path", "the path of Phantom's database", path, "phantomSqliteSink");
  const busyTimeoutMs = options.busyTimeoutMs ?? 250;
  const retries = options.retries ?? 3;
  const backoffMs = options.backoffMs ?? 200;
  let db: PhantomDb | undefined;

  const open = (): PhantomDb => {
    if (!db?.open) db = openPhantomDb(path, { busyTimeoutMs });
    return db;
  };

  return {
    name: options.name ?? "phantom-sqlite",
    async send(event: GuardEvent) {
      if (event.type !== "stuck_session") return { attempts: 0 };
      let attempt = 0;
      for (;;) {
        attempt++;
        try {
          // Clears the stale SDK session so the runtime's next message starts a fresh one.
          open().reset({ sessionKey: event.session_key });
          return { attempts: attempt };
        } catch (e) {
          const code = (e as { code?: string }).code ?? "";
          const locked = code === "SQLITE_BUSY" || code === "SQLITE_LOCKED";
          if (!locked || attempt > retries) {
            throw new SignalDeliveryError(
              `phantom-sqlite (JUDGE_GUARD_PHANTOM_DB): ${(e as Error).message}`,
              attempt,
              {
                cause: e,
              },
            );
          }
          await sleep(backoffMs * 2 ** (attempt - 1));
        }
      }
    },
    close() {
      if (db?.open) db.close();
      db = undefined;
    },
  };
}
