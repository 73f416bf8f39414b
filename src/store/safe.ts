import { isLedgerFaultError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import type { LedgerBase, LedgerStore } from "./types.js";

/**
 * The ledger as the guard's parts use it where a failure must not break the caller (a decision
 * record, a signal's delivery record, an episode when detection goes on without the ledger):
 * {@link attempt} logs and counts the failure instead of throwing it. Parts that handle a
 * failure themselves (admission, settlement) report it through {@link failed}, so that every
 * ledger failure is logged and counted in one place.
 */
export class SafeLedger<S extends LedgerBase = LedgerStore> {
  readonly store: S;
  readonly #log: Logger;
  readonly #quietMs: number;
  #errors = 0;
  /** The last fault logged, and when. */
  #logged: { err: string; at: number } | undefined;

  /** `quietMs`: a fault that lasts is logged once per this long, not once per call. */
  constructor(store: S, log: Logger, options: { quietMs: number }) {
    this.store = store;
    this.#log = log;
    this.#quietMs = options.quietMs;
  }

  /** Ledger failures so far. */
  get errors(): number {
    return this.#errors;
  }

  /** Runs a ledger operation that must not break the caller: undefined when it failed. */
  attempt<R>(fn: (store: S) => R): R | undefined {
    try {
      return fn(this.store);
    } catch (e) {
      this.failed(e, "write");
      return undefined;
    }
  }

  /** Logs and counts a ledger failure (`during`: what the guard was doing). */
  failed(e: unknown, during: string): void {
    this.#errors++;
    const err = (e as Error)?.message ?? String(e);
    // A ledger file that stays unusable fails every call: say so once per `quietMs`, not per call.
    if (isLedgerFaultError(e)) {
      const now = Date.now();
      if (this.#logged?.err === err && now - this.#logged.at < this.#quietMs) return;
      this.#logged = { err, at: now };
    }
    this.#log.error({ during, err, ledger: this.store.location }, "ledger failure");
  }
}
