import type { EstimatorOptions } from "../budget/estimator.js";
import { DEFAULT_ESTIMATOR } from "../budget/estimator.js";
import { compilePatterns, PHANTOM_CANNED_PATTERNS, RUNTIME_CANNED_PATTERNS } from "../detection/catalog.js";
import { ConfigError } from "../errors.js";
import { DEFAULT_SIMILARITY, type SimilarityLimits } from "../fingerprint/similarity.js";
import { LOG_LEVELS, type Logger, type LogLevel } from "../log/logger.js";

import { DEFAULT_PRICES, type ModelPrice, parsePrices } from "../pricing/prices.js";
import type { ReportedCost } from "../pricing/usage.js";
import type { SignalSink } from "../signals/types.js";
import type { LedgerStore } from "../store/types.js";
import { type Clock, SteadyClock } from "../util/clock.js";
import { describe } from "../util/describe.js";
import { toMicros } from "../util/money.js";
import { DEFAULT_MAX_TRANSCRIPT_TOKENS } from "./request.js";

export type { Clock } from "../util/clock.js";

export type GuardMode = "enforce" | "shadow";
export type Escalation = "ceiling" | "none";
export type OnLedgerError = "closed" | "open";

/** Options of {@link createGuard}. Every one has an environment variable (see `fromEnv`). */
export interface GuardOptions {
  /**
   * Where decisions, budgets and stuck state are kept. A path opens (or creates) a SQLite
   * ledger; ":memory:" keeps everything in process memory; or pass a store.
   * @default "./data/judge-guard.db"
   */
  readonly ledger?: string | LedgerStore;
  /** `shadow` decides and records everything but never blocks a judge. @default "enforce" */
  readonly mode?: GuardMode;
  /** When the ledger itself fails: `closed` skips the judge, `open` judges unguarded. @default "closed" */
  readonly onError?: OnLedgerError;
  /** Repeats of the same reply (to different inputs) that make a session stuck. @default 3 */
  readonly repeatThreshold?: number;
  /** Repeats needed when the reply is a known canned line or reported as a free bounce. @default 2 */
  readonly knownRepeatThreshold?: number;
  /** Replies with less normalised substance than this need strong evidence to count. @default 16 */
  readonly minReplyChars?: number;
  /** Operator canned patterns (regular expressions or phrases), added to the built-in ones. */
  readonly cannedPatterns?: readonly (string | RegExp)[];
  /** Whether the built-in canned lines (Phantom's, and the Agent SDK's errors) are recognised. @default true */
  readonly builtinPatterns?: boolean;
  /** USD per session key per budget window. @default 5 */
  readonly sessionBudgetUsd?: number;
  /** Judge calls per session key per budget window. @default 1000 */
  readonly sessionMaxCalls?: number;
  /** The rolling window of the per-key caps, in ms. @default 86_400_000 (24 h) */
  readonly budgetWindowMs?: number;
  /** USD for all keys together per rolling 24 h. @default 50 */
  readonly dailyBudgetUsd?: number;
  /**
   * USD per judge kind (`JudgeRequest.judge`), all keys together, per rolling 24 h: the cap of
   * every kind that `judgeBudgetsUsd` does not name. Enforced in the same admission as the key's
   * and the global caps, so spend of a kind exceeds its cap by at most one call. @default Infinity
   */
  readonly judgeBudgetUsd?: number;
  /**
   * Caps of named judge kinds, in USD per rolling 24 h, over `judgeBudgetUsd` (Infinity: that
   * kind has none), e.g. `{ quality_assessment: 2, consolidation: 0.5 }`.
   */
  readonly judgeBudgetsUsd?: Readonly<Record<string, number>>;
  /** Judge calls in flight at once, across all keys. @default 8 */
  readonly concurrency?: number;
  /** Prices in USD per million tokens, by model id, merged over the built-in table. @default DEFAULT_PRICES */
  readonly prices?: Readonly<Record<string, ModelPrice>>;
  /** Where "force a fresh session" signals and budget alerts go. @default [] */
  readonly signals?: readonly SignalSink[];
  /**
   * A budget alert goes out when a key or the global window uses this fraction of its cap, and
   * another when a cap refuses a call; each once per window. 0 turns alerts off. @default 0.8
   */
  readonly alertAt?: number;
  /**
   * A stuck episode is signalled once; a channel whose delivery failed is retried at most this
   * often while the session stays stuck. @default 1_800_000 (30 min)
   */
  readonly signalCooldownMs?: number;
  /** How long an identical request reuses an earlier verdict. @default 3_600_000 (1 h) */
  readonly verdictTtlMs?: number;
  /** Verdicts kept for reuse. @default 1000 */
  readonly verdictCacheSize?: number;
  /** Session keys whose detection state is kept in memory. @default 10000 */
  readonly maxSessions?: number;
  /** Near-duplicate limits. @default {maxWordDifference: 6, maxRelativeDifference: 0.2, maxNumberDifference: 2} */
  readonly similarity?: Partial<SimilarityLimits>;
  /** Cost estimation defaults before judges have been observed. */
  readonly estimator?: Partial<EstimatorOptions>;
  /**
   * The largest transcript a request may carry, in estimated tokens (its characters divided by
   * `estimator.charsPerToken`); Infinity for no limit. A larger one fits no model's context: it
   * is refused with an `InvalidRequestError` naming the field, rather than reserved (and, when
   * skipped, counted as saved) at an estimate no call could cost.
   * @default 2_097_152 ({@link DEFAULT_MAX_TRANSCRIPT_TOKENS})
   */
  readonly maxTranscriptTokens?: number;
  /**
   * Near a cap, calls in flight could overspend together, so a call waits for them to settle;
   * after this long it is skipped with the budget reason instead. @default 60000
   */
  readonly admissionWaitMs?: number;
  /**
   * An owner in another PID namespace or on another host (where its pid proves nothing) whose
   * heartbeat has not moved for this long, by this process's monotonic clock, is gone: its calls in
   * flight are charged at their estimate, or wait for their settlement. @default 30000
   */
  readonly leaseMs?: number;
  /**
   * Which models a call may end up priced at, for its worst case (what admission holds against
   * the caps while it runs): `ceiling`, any model in the price table, since a judge may report a
   * pricier model than it was admitted on (Phantom escalates Haiku to Sonnet and Opus) and is
   * charged that price; `none`, its own model only. A request's `escalation` list overrides it.
   * @default "ceiling"
   */
  readonly escalation?: Escalation;
  /**
   * The clock behind windows, cooldowns and the ledger's times. The default reads the system
   * clock once and carries it forward by the monotonic clock, so that a jump of the system
   * clock neither empties a budget window nor dates charges in the past. A clock given here is
   * trusted as it is (a replay's, a test's).
   * @default a SteadyClock
   */
  readonly clock?: Clock;
  /** A pino logger, or a level for the default one (stderr). @default "warn" */
  readonly logger?: Logger | LogLevel;
  /** Reads the cost from a judge's result. @default readUsage */
  readonly usageOf?: (result: unknown) => ReportedCost | undefined;
  /** Reads the cost already incurred from a judge's error (e.g. `partialCost`). @default readUsage */
  readonly usageOfError?: (error: unknown) => ReportedCost | undefined;
}

export interface ResolvedOptions {
  readonly mode: GuardMode;
  readonly onError: OnLedgerError;
  readonly repeatThreshold: number;
  readonly knownRepeatThreshold: number;
  readonly minReplyChars: number;
  readonly cannedPatterns: readonly RegExp[];
  readonly sessionBudgetMicros: number;
  readonly sessionMaxCalls: number;
  readonly budgetWindowMs: number;
  readonly dailyBudgetMicros: number;
  /** The cap of judge kinds `judgeBudgetsMicros` does not name (Infinity: none). */
  readonly judgeBudgetMicros: number;
  readonly judgeBudgetsMicros: Readonly<Record<string, number>>;
  readonly concurrency: number;
  readonly prices: Readonly<Record<string, ModelPrice>>;
  readonly signals: readonly SignalSink[];
  readonly alertAt: number;
  readonly signalCooldownMs: number;
  readonly verdictTtlMs: number;
  readonly verdictCacheSize: number;
  readonly maxSessions: number;
  readonly similarity: SimilarityLimits;
  readonly estimator: EstimatorOptions;
  readonly maxTranscriptTokens: number;
  readonly leaseMs: number;
  readonly escalation: Escalation;
  readonly admissionWaitMs: number;
  readonly clock: Clock;
}

export const DAY_MS = 86_400_000;

export const DEFAULTS = {
  ledger: "./data/judge-guard.db",
  mode: "enforce",
  onError: "closed",
  repeatThreshold: 3,
  knownRepeatThreshold: 2,
  minReplyChars: 16,
  sessionBudgetUsd: 5,
  sessionMaxCalls: 1000,
  budgetWindowMs: DAY_MS,
  dailyBudgetUsd: 50,
  concurrency: 8,
  signalCooldownMs: 30 * 60_000,
  verdictTtlMs: 60 * 60_000,
  verdictCacheSize: 1000,
  maxSessions: 10_000,
  leaseMs: 30_000,
  escalation: "ceiling",
  admissionWaitMs: 60_000,
  alertAt: 0.8,
  maxTranscriptTokens: DEFAULT_MAX_TRANSCRIPT_TOKENS,
} as const;

function bad(option: string, value: unknown, allowed: string): never {
  throw new ConfigError(option, `option ${option} must be ${allowed}, got ${describe(value)}`);
}

function int(option: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) bad(option, value, `an integer >= ${min}`);
  return value;
}

function nonNegative(
  option: string,
  value: number | undefined,
  fallback: number,
  allowInfinity = false,
): number {
  if (value === undefined) return fallback;
  const ok =
    typeof value === "number" &&
    value >= 0 &&
    (Number.isFinite(value) || (allowInfinity && value === Infinity));
  if (!ok) bad(option, value, allowInfinity ? "a number >= 0, or Infinity for no cap" : "a number >= 0");
  return value;
}

function fraction(option: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= 0 && value <= 1))
    bad(option, value, "a fraction from 0 to 1 (0 turns it off)");
  return value;
}

function oneOf<T extends string>(
  option: string,
  value: T | undefined,
  fallback: T,
  allowed: readonly T[],
): T {
  if (value === undefined) return fallback;
  if (!allowed.includes(value)) bad(option, value, `one of ${allowed.join(", ")}`);
  return value;
}

function judgeBudgets(caps: GuardOptions["judgeBudgetsUsd"]): Record<string, number> {
  if (caps === undefined) return {};
  if (caps === null || typeof caps !== "object" || Array.isArray(caps))
    bad("judgeBudgetsUsd", caps, "an object of judge kind -> USD per 24 h (Infinity for no cap)");
  const out: Record<string, number> = {};
  for (const [judge, usd] of Object.entries(caps)) {
    if (judge === "" || judge.length > 256)
      bad("judgeBudgetsUsd", judge, "judge kinds of 1 to 256 characters");
    out[judge] = toMicros(nonNegative(`judgeBudgetsUsd.${judge}`, usd, Infinity, true));
  }
  return out;
}

function mergePrices(prices: Readonly<Record<string, ModelPrice>>): Record<string, ModelPrice> {
  try {
    return { ...DEFAULT_PRICES, ...parsePrices(prices, "option prices") };
  } catch (e) {
    throw new ConfigError("prices", (e as Error).message);
  }
}

const hasMethods = (v: unknown, names: readonly string[]): boolean =>
  v !== null &&
  typeof v === "object" &&
  names.every((n) => typeof (v as Record<string, unknown>)[n] === "function");

/** The two options the guard uses as given (a store, a logger): checked here with the rest. */
function checkHandles(o: GuardOptions): void {
  const { ledger, logger } = o;
  if (
    ledger !== undefined &&
    !(typeof ledger === "string" && ledger !== "") &&
    !hasMethods(ledger, ["atomically", "scopeUsage", "recordDecision", "close"])
  ) {
    bad("ledger", ledger, 'a file path, ":memory:", or a LedgerStore (e.g. new SqliteStore(path))');
  }
  if (
    logger !== undefined &&
    !(typeof logger === "string" && (LOG_LEVELS as readonly string[]).includes(logger)) &&
    !hasMethods(logger, ["error", "warn", "info", "debug"])
  ) {
    bad("logger", logger, `a pino logger or one of ${LOG_LEVELS.join(", ")}`);
  }
}

/** Validates options once, at construction; errors name the option and the value received. */
export function resolveOptions(o: GuardOptions): ResolvedOptions {
  if (o === null || typeof o !== "object") bad("options", o, "an object");
  checkHandles(o);
  const repeatThreshold = int("repeatThreshold", o.repeatThreshold, DEFAULTS.repeatThreshold, 2);
  const knownRepeatThreshold = int(
    "knownRepeatThreshold",
    o.knownRepeatThreshold,
    Math.min(DEFAULTS.knownRepeatThreshold, repeatThreshold),
    1,
  );
  if (knownRepeatThreshold > repeatThreshold) {
    bad("knownRepeatThreshold", knownRepeatThreshold, `at most repeatThreshold (${repeatThreshold})`);
  }
  const patterns: RegExp[] =
    o.builtinPatterns === false ? [] : [...PHANTOM_CANNED_PATTERNS, ...RUNTIME_CANNED_PATTERNS];
  if (o.cannedPatterns !== undefined) {
    if (!Array.isArray(o.cannedPatterns))
      bad("cannedPatterns", o.cannedPatterns, "an array of strings or RegExps");
    for (const p of o.cannedPatterns) {
      if (p instanceof RegExp) patterns.push(p);
      else if (typeof p === "string") {
        try {
          patterns.push(...compilePatterns([p]));
        } catch (e) {
          throw new ConfigError("cannedPatterns", `option cannedPatterns: ${(e as Error).message}`);
        }
      } else bad("cannedPatterns", p, "strings or RegExps");
    }
  }
  if (o.signals !== undefined) {
    if (
      !Array.isArray(o.signals) ||
      o.signals.some((x) => typeof x?.send !== "function" || typeof x?.name !== "string")
    ) {
      bad("signals", o.signals, "an array of sinks ({name, send(event)})");
    }
    const names = o.signals.map((x) => x.name);
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice !== undefined)
      bad("signals", twice, "sinks with distinct names (deliveries are recorded by name)");
  }
  if (o.clock !== undefined && typeof o.clock?.now !== "function")
    bad("clock", o.clock, "an object with now()");
  const est = { ...DEFAULT_ESTIMATOR, ...o.estimator };
  for (const [k, v] of Object.entries(est)) {
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v))
      bad(`estimator.${k}`, v, "a positive number");
  }
  const sim = { ...DEFAULT_SIMILARITY, ...o.similarity };
  nonNegative("similarity.maxWordDifference", sim.maxWordDifference, 0);
  nonNegative("similarity.maxNumberDifference", sim.maxNumberDifference, 0);
  if (!(sim.maxRelativeDifference >= 0 && sim.maxRelativeDifference <= 1)) {
    bad("similarity.maxRelativeDifference", sim.maxRelativeDifference, "a number from 0 to 1");
  }
  return {
    mode: oneOf("mode", o.mode, DEFAULTS.mode, ["enforce", "shadow"]),
    onError: oneOf("onError", o.onError, DEFAULTS.onError, ["closed", "open"]),
    repeatThreshold,
    knownRepeatThreshold,
    minReplyChars: int("minReplyChars", o.minReplyChars, DEFAULTS.minReplyChars, 0),
    cannedPatterns: patterns,
    sessionBudgetMicros: toMicros(
      nonNegative("sessionBudgetUsd", o.sessionBudgetUsd, DEFAULTS.sessionBudgetUsd, true),
    ),
    sessionMaxCalls:
      o.sessionMaxCalls === Infinity
        ? Infinity
        : int("sessionMaxCalls", o.sessionMaxCalls, DEFAULTS.sessionMaxCalls, 1),
    budgetWindowMs: int("budgetWindowMs", o.budgetWindowMs, DEFAULTS.budgetWindowMs, 60_000),
    dailyBudgetMicros: toMicros(
      nonNegative("dailyBudgetUsd", o.dailyBudgetUsd, DEFAULTS.dailyBudgetUsd, true),
    ),
    judgeBudgetMicros: toMicros(nonNegative("judgeBudgetUsd", o.judgeBudgetUsd, Infinity, true)),
    judgeBudgetsMicros: judgeBudgets(o.judgeBudgetsUsd),
    concurrency: int("concurrency", o.concurrency, DEFAULTS.concurrency, 1),
    prices: o.prices === undefined ? DEFAULT_PRICES : mergePrices(o.prices),
    signals: o.signals ?? [],
    alertAt: fraction("alertAt", o.alertAt, DEFAULTS.alertAt),
    signalCooldownMs: int("signalCooldownMs", o.signalCooldownMs, DEFAULTS.signalCooldownMs, 0),
    verdictTtlMs: int("verdictTtlMs", o.verdictTtlMs, DEFAULTS.verdictTtlMs, 0),
    verdictCacheSize: int("verdictCacheSize", o.verdictCacheSize, DEFAULTS.verdictCacheSize, 1),
    maxSessions: int("maxSessions", o.maxSessions, DEFAULTS.maxSessions, 1),
    similarity: sim,
    estimator: est,
    maxTranscriptTokens:
      o.maxTranscriptTokens === Infinity
        ? Infinity
        : int("maxTranscriptTokens", o.maxTranscriptTokens, DEFAULTS.maxTranscriptTokens, 1),
    leaseMs: int("leaseMs", o.leaseMs, DEFAULTS.leaseMs, 1000),
    escalation: oneOf("escalation", o.escalation, DEFAULTS.escalation as Escalation, ["ceiling", "none"]),
    admissionWaitMs: int("admissionWaitMs", o.admissionWaitMs, DEFAULTS.admissionWaitMs, 0),
    clock: o.clock ?? new SteadyClock(),
  };
}
