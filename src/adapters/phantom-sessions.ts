import { isPhantomDbError, PhantomDbError } from "../errors.js";
import { openPhantomDb, type ResetRow, type SessionSelector } from "../store/phantom.js";

/**
 * Clears `sdk_session_id` (and refreshes `last_active_at`) on the selected active rows of
 * Phantom's database at `path` (see {@link PhantomDb.reset}), as `judge-guard reset-sessions`
 * does: while Phantom holds its lock, the statement waits up to the busy timeout, a few times
 * over, and a failure is one {@link PhantomDbError} saying what to do.
 */
export function resetPhantomSessions(
  path: string,
  selector: SessionSelector,
  options: { dryRun?: boolean; busyTimeoutMs?: number; retries?: number } = {},
): ResetRow[] {
  // A normal connection even for a dry run: a read-only one could not remove the WAL files it
  // creates, and would leave them behind, owned by whoever ran the command.
  const db = openPhantomDb(path, { busyTimeoutMs: options.busyTimeoutMs ?? 1000 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        return db.reset(selector, options.dryRun === true);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if ((code !== "SQLITE_BUSY" && code !== "SQLITE_LOCKED") || attempt >= (options.retries ?? 2))
          throw e;
      }
    }
  } catch (e) {
    if (isPhantomDbError(e)) throw e;
    const locked = /locked|busy/i.test((e as Error).message);
    const advice = locked ? " (Phantom is writing to it: run the command again)" : "";
    throw new PhantomDbError(path, `cannot change ${path}: ${(e as Error).message}${advice}`);
  } finally {
    db.close();
  }
}
