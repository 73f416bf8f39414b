/**
 * The budget a {@link GuardClient} enforces in its own process while the sidecar does not
 * answer (`onUnreachable: "local"`): per session key and for all keys, over a rolling 24 h, in
 * memory. It knows only the calls this process made during outages.
 */
import { ENV_VARIABLES } from "../config/variables.js";
import { ConfigError } from "../errors.js";
import { DEFAULTS } from "../guard/options.js";
import { toMicros } from "../util/money.js";

/** Caps of the local budget; `Infinity` for none. */
export interface LocalBudgetCaps {
  /** USD per session key per 24 h. @default JUDGE_GUARD_SESSION_BUDGET_USD, else the guard's default */
  readonly sessionUsd?: number;
  /** USD for all keys together per 24 h. @default JUDGE_GUARD_DAILY_BUDGET_USD, else the guard's default */
  readonly dailyUsd?: number;
  /** Judge calls per session key per 24 h. @default JUDGE_GUARD_SESSION_MAX_CALLS, else the guard's default */
  readonly sessionCalls?: number;
}

export interface LocalRefusal {
  readonly reason: "session_calls" | "session_budget" | "global_budget";
  /** Micro-dollars, or calls for `session_calls`. */
  readonly used: number;
  readonly cap: number;
}

const DAY_MS = 86_400_000;
const BUCKET_MS = 60_000;
/** Session keys remembered; the oldest is forgotten beyond this. */
const MAX_KEYS = 10_000;

interface Bucket {
  readonly start: number;
  micros: number;
  calls: number;
}

/**
 * The guard's variable of `option` (JUDGE_GUARD_SESSION_BUDGET_USD, ...), read as the guard reads
 * it; unset or empty: the guard's default.
 */
function guardCap(option: "sessionBudgetUsd" | "dailyBudgetUsd" | "sessionMaxCalls"): number {
  const variable = ENV_VARIABLES.find((v) => v.option === option)!;
  const text = (typeof process === "undefined" ? undefined : process.env)?.[variable.name]?.trim();
  return text ? (variable.parse(text) as number) : DEFAULTS[option];
}

function optionCap(name: string, value: number | undefined, fallback: () => number): number {
  if (value === undefined) return fallback();
  if (typeof value !== "number" || Number.isNaN(value) || value < 0) {
    throw new ConfigError(
      `localBudget.${name}`,
      `localBudget.${name} must be a number >= 0 (Infinity for none)`,
    );
  }
  return value;
}

/** The caps: the options, else the guard's environment variables, else the guard's defaults. */
export function resolveLocalCaps(o: LocalBudgetCaps = {}): Required<LocalBudgetCaps> {
  return {
    sessionUsd: optionCap("sessionUsd", o.sessionUsd, () => guardCap("sessionBudgetUsd")),
    dailyUsd: optionCap("dailyUsd", o.dailyUsd, () => guardCap("dailyBudgetUsd")),
    sessionCalls: optionCap("sessionCalls", o.sessionCalls, () => guardCap("sessionMaxCalls")),
  };
}

function add(buckets: Bucket[], at: number, micros: number, calls: number): void {
  const start = at - (at % BUCKET_MS);
  const last = buckets.at(-1);
  if (last !== undefined && last.start === start) {
    last.micros += micros;
    last.calls += calls;
  } else buckets.push({ start, micros, calls });
}

function sum(buckets: Bucket[], since: number): { micros: number; calls: number } {
  while (buckets.length > 0 && buckets[0]!.start + BUCKET_MS <= since) buckets.shift();
  let micros = 0;
  let calls = 0;
  for (const b of buckets) {
    micros += b.micros;
    calls += b.calls;
  }
  return { micros, calls };
}

export class LocalBudget {
  readonly caps: Required<LocalBudgetCaps>;
  readonly #sessionMicros: number;
  readonly #dailyMicros: number;
  readonly #keys = new Map<string, Bucket[]>();
  readonly #global: Bucket[] = [];
  /** Calls admitted and not ended, per key: they count against the call cap. */
  readonly #inFlight = new Map<string, number>();

  constructor(caps: LocalBudgetCaps = {}) {
    this.caps = resolveLocalCaps(caps);
    this.#sessionMicros = toMicros(this.caps.sessionUsd);
    this.#dailyMicros = toMicros(this.caps.dailyUsd);
  }

  /**
   * Admits a call on `key` (counting it in flight) or says which cap refuses it. A cap is
   * reached when what was spent in the window is at or over it; calls in flight count against
   * the call cap, while their cost is known only when they end.
   */
  admit(key: string, now = Date.now()): LocalRefusal | null {
    const since = now - DAY_MS;
    const session = sum(this.#keys.get(key) ?? [], since);
    const global = sum(this.#global, since);
    const calls = session.calls + (this.#inFlight.get(key) ?? 0);
    if (calls >= this.caps.sessionCalls)
      return { reason: "session_calls", used: calls, cap: this.caps.sessionCalls };
    if (session.micros >= this.#sessionMicros)
      return { reason: "session_budget", used: session.micros, cap: this.#sessionMicros };
    if (global.micros >= this.#dailyMicros)
      return { reason: "global_budget", used: global.micros, cap: this.#dailyMicros };
    this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1);
    return null;
  }

  /** Ends an admitted call: charges what it cost; a failed call that cost nothing is no call. */
  end(key: string, micros: number, ok: boolean, now = Date.now()): void {
    const n = (this.#inFlight.get(key) ?? 1) - 1;
    if (n > 0) this.#inFlight.set(key, n);
    else this.#inFlight.delete(key);
    if (micros <= 0 && !ok) return;
    let buckets = this.#keys.get(key);
    if (buckets === undefined) {
      if (this.#keys.size >= MAX_KEYS) this.#keys.delete(this.#keys.keys().next().value as string);
      buckets = [];
    } else this.#keys.delete(key); // re-inserted below: the map stays in order of last use
    this.#keys.set(key, buckets);
    add(buckets, now, micros, 1);
    add(this.#global, now, micros, 1);
  }
}
