import { LRUCache } from "lru-cache";
import type { Clock } from "../util/clock.js";
import { toMicros } from "../util/money.js";
import type { JudgedOutcome, Outcome } from "./outcome.js";

/** A completed call's verdict, and what it was charged (what reusing it saves). */
export interface Verdict {
  readonly value: unknown;
  readonly chargedMicros: number;
}

export interface ReuseOptions {
  /** Verdicts kept at most. */
  readonly size: number;
  /** How long a verdict may be reused, on `clock`. */
  readonly ttlMs: number;
  readonly clock: Clock;
}

/**
 * Verdict reuse: a repeat of a call that completed (within the TTL) reuses its verdict, and, when
 * the caller opts in, a call identical to one in flight waits for that one's verdict rather than
 * pay twice. Calls are identical when their identities are (see `WouldBeCall.identity`).
 */
export class VerdictReuse {
  readonly #verdicts: LRUCache<string, Verdict>;
  readonly #inflight = new Map<string, Promise<Outcome<unknown>>>();

  constructor(o: ReuseOptions) {
    // Verdicts age on the guard's clock, so a replay reuses them only within its own hour.
    this.#verdicts = new LRUCache({ max: o.size, ttl: o.ttlMs || 1, ttlResolution: 0, perf: o.clock });
  }

  /**
   * The outcome of the call `identity` names: `reuse` of a known verdict, or `judge`'s, whose
   * verdict is kept for the calls after it. With `share`, a call identical to one in flight
   * waits for it first.
   */
  async run<T>(
    identity: string,
    share: boolean,
    reuse: (known: Verdict) => Outcome<T>,
    judge: () => Promise<Outcome<T>>,
  ): Promise<Outcome<T>> {
    let awaited: Promise<unknown> | undefined;
    for (;;) {
      const known = this.#verdicts.get(identity);
      if (known !== undefined) return reuse(known);
      // Concurrent identical calls stay independent (each is a vote, as in Phantom's minority
      // veto) unless the caller opts in to share one call's verdict.
      if (!share) break;
      const shared = this.#inflight.get(identity);
      if (shared === undefined || shared === awaited) break;
      awaited = shared;
      // An identical call is in flight: wait for its verdict rather than pay twice. If it
      // fails, look again: another waiter may already be retrying it.
      await shared.catch(() => undefined);
    }
    const work = judge();
    this.#inflight.set(identity, work);
    try {
      const outcome = await work;
      if (outcome.status === "judged") this.#keep(identity, outcome);
      return outcome;
    } finally {
      if (this.#inflight.get(identity) === work) this.#inflight.delete(identity);
    }
  }

  #keep(identity: string, outcome: JudgedOutcome<unknown>): void {
    this.#verdicts.set(identity, { value: outcome.value, chargedMicros: toMicros(outcome.costUsd) });
  }
}
