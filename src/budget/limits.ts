import type { ResolvedCaps } from "../store/guard-config.js";
import type { BudgetLedger, ScopeUsage } from "../store/types.js";
import type { BudgetCaps, BudgetSnapshot } from "./admission.js";

/** The window of the global cap and of the caps per judge kind. */
export const DAY_MS = 86_400_000;

/** The guard's caps, and what the ledger holds against them. */
export class BudgetLimits {
  readonly o: ResolvedCaps;
  /** Whether any judge kind has a cap (then the store must read spend per kind: `judgeUsage`). */
  readonly judgeCapped: boolean;
  /** Whether any cap is set at all. */
  readonly anyCap: boolean;
  readonly #store: BudgetLedger;
  readonly #caps: BudgetCaps;

  constructor(o: ResolvedCaps, store: BudgetLedger) {
    this.o = o;
    this.#store = store;
    this.#caps = {
      sessionBudgetMicros: o.sessionBudgetMicros,
      sessionMaxCalls: o.sessionMaxCalls,
      globalBudgetMicros: o.dailyBudgetMicros,
    };
    this.judgeCapped =
      o.judgeBudgetMicros !== Number.POSITIVE_INFINITY ||
      Object.values(o.judgeBudgetsMicros).some((m) => m !== Number.POSITIVE_INFINITY);
    this.anyCap =
      Math.min(o.sessionBudgetMicros, o.sessionMaxCalls, o.dailyBudgetMicros) !== Number.POSITIVE_INFINITY ||
      this.judgeCapped;
  }

  /** The cap of a judge kind, micro-dollars per 24 h (Infinity: none). */
  judgeCap(judge: string): number {
    return Object.hasOwn(this.o.judgeBudgetsMicros, judge)
      ? this.o.judgeBudgetsMicros[judge]!
      : this.o.judgeBudgetMicros;
  }

  /** The caps a call of this judge kind is admitted against. */
  caps(judge: string): BudgetCaps {
    return { ...this.#caps, judgeBudgetMicros: this.judgeCap(judge) };
  }

  /** What the ledger holds for a key within its window. */
  keyUsage(sessionKey: string, now: number): ScopeUsage {
    return this.#store.scopeUsage(sessionKey, now - this.o.budgetWindowMs);
  }

  /**
   * What the ledger holds for a key within its window and for everything within a day, and, when
   * `judge` is given and its kind has a cap, for that kind within a day.
   */
  usage(sessionKey: string, now: number, judge?: string): BudgetSnapshot {
    const capped = judge !== undefined && this.judgeCap(judge) !== Number.POSITIVE_INFINITY;
    return {
      session: this.keyUsage(sessionKey, now),
      global: this.#store.scopeUsage(null, now - DAY_MS),
      // A guard with caps per judge kind checks at construction that its store reads them.
      ...(capped && { judge: this.#store.judgeUsage!(judge, now - DAY_MS) }),
    };
  }
}
