import { LRUCache } from "lru-cache";
import type { SignalDispatcher } from "../signals/dispatcher.js";
import type { SafeLedger } from "../store/safe.js";
import type { LedgerBase } from "../store/types.js";
import { toUsd } from "../util/money.js";
import type { BudgetReason, BudgetSnapshot, Refusal } from "./admission.js";
import { type BudgetLimits, DAY_MS } from "./limits.js";

export interface AlertOptions {
  /** The share of a cap whose crossing sends a warning (0: none). */
  readonly alertAt: number;
  /** A delivery tried within this long is not tried again (it may still be under way). */
  readonly signalCooldownMs: number;
}

/**
 * Budget alerts: a warning when a cap's use crosses `alertAt` of it, and `cap_reached` when a
 * call is refused. Each goes out once per scope, reason, level and window, also across
 * processes sharing the ledger (they claim it there first).
 */
export class BudgetAlerts {
  /** Alerts go out: a sink to send them to, a threshold, and a cap to measure against. */
  readonly on: boolean;
  readonly #limits: BudgetLimits;
  readonly #signals: SignalDispatcher;
  readonly #ledger: SafeLedger<LedgerBase>;
  readonly #o: AlertOptions;
  /** Alerts already sent, by alert id. */
  readonly #sent = new LRUCache<string, true>({ max: 10_000 });
  /** When each alert not sent yet was last tried. */
  readonly #tried = new LRUCache<string, number>({ max: 10_000 });

  constructor(
    limits: BudgetLimits,
    signals: SignalDispatcher,
    ledger: SafeLedger<LedgerBase>,
    options: AlertOptions,
  ) {
    this.#limits = limits;
    this.#signals = signals;
    this.#ledger = ledger;
    this.#o = options;
    this.on = signals.enabled && options.alertAt !== 0 && limits.anyCap;
  }

  /**
   * After a charge: a "warning" for each cap whose use crosses `alertAt` of it. `known` is the
   * usage read in the charge's transaction; without it the ledger is read again.
   */
  check(sessionKey: string, judge: string, now: number, known?: BudgetSnapshot): void {
    if (!this.on) return;
    const at = this.#o.alertAt;
    const caps = this.#limits.o;
    const usage = known ?? this.#ledger.attempt(() => this.#limits.usage(sessionKey, now, judge));
    const key = usage?.session;
    const all = usage?.global;
    const kind = usage?.judge;
    const over = (used: number, cap: number) => cap !== Number.POSITIVE_INFINITY && used >= at * cap;
    if (key && over(key.spentMicros, caps.sessionBudgetMicros)) {
      this.#alert("warning", "session_budget", sessionKey, key.spentMicros, caps.sessionBudgetMicros, now);
    }
    if (key && over(key.calls, caps.sessionMaxCalls)) {
      this.#alert("warning", "session_calls", sessionKey, key.calls, caps.sessionMaxCalls, now);
    }
    const judgeCap = this.#limits.judgeCap(judge);
    if (kind && over(kind.spentMicros, judgeCap)) {
      this.#alert("warning", "judge_budget", judge, kind.spentMicros, judgeCap, now);
    }
    if (all && over(all.spentMicros, caps.dailyBudgetMicros)) {
      this.#alert("warning", "global_budget", null, all.spentMicros, caps.dailyBudgetMicros, now);
    }
  }

  /** A call of this key and judge kind was refused. */
  refused(r: Refusal, call: { readonly sessionKey: string; readonly judge: string }, now: number): void {
    this.#alert(
      "cap_reached",
      r.reason,
      r.reason === "judge_budget" ? call.judge : call.sessionKey,
      r.used,
      r.cap,
      now,
    );
  }

  /**
   * A budget alert, once per scope, reason, level and window (windows counted from the epoch,
   * so every process sharing a ledger names the same one, and the ledger tells whether it went
   * out already). Amounts are micro-dollars in, USD out. `name` is the session key of a key's
   * budget, the judge kind of a kind's; the global budget has none.
   */
  #alert(
    level: "warning" | "cap_reached",
    reason: BudgetReason,
    name: string | null,
    used: number,
    cap: number,
    now: number,
  ): void {
    if (!this.on) return;
    const scope = reason === "global_budget" ? "global" : reason === "judge_budget" ? "judge" : "session";
    const windowMs = scope === "session" ? this.#limits.o.budgetWindowMs : DAY_MS;
    const windowStart = Math.floor(now / windowMs) * windowMs;
    const alertId = `${scope === "global" ? "global" : `${scope}:${name}`}:${reason}:${level}:${windowStart}`;
    if (this.#sent.has(alertId)) return;
    // Tried within the cooldown (its delivery may still be under way): nothing to do yet.
    const tried = this.#tried.get(alertId);
    if (tried !== undefined && now - tried < this.#o.signalCooldownMs) return;
    this.#tried.set(alertId, now);
    // Sent already (by this process before a restart, or by another sharing the ledger), or being
    // sent by another? Of the processes crossing the line together, the one whose claim is first
    // sends. Without a ledger to ask, send: an alert twice beats none.
    const claim = this.#ledger.attempt(() => this.#signals.claim(alertId, now));
    if (claim === "delivered") this.#sent.set(alertId, true);
    if (claim === "delivered" || claim === "taken") return;
    const money = reason !== "session_calls";
    this.#signals.send(
      {
        type: "budget_alert",
        level,
        scope,
        session_key: scope === "session" ? name : null,
        ...(scope === "judge" && name !== null && { judge: name }),
        reason,
        used: money ? toUsd(used) : used,
        cap: money ? toUsd(cap) : cap,
        window_start: new Date(windowStart).toISOString(),
        alert_id: alertId,
        ts: new Date(now).toISOString(),
      },
      now,
      () => this.#sent.set(alertId, true),
    );
  }
}
