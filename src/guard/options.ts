import { DEFAULT_ESTIMATOR, type EstimatorOptions } from "../budget/estimator.js";
import { PHANTOM_CANNED_PATTERNS, RUNTIME_CANNED_PATTERNS } from "../detection/catalog.js";
import { ConfigError } from "../errors.js";
import { DEFAULT_SIMILARITY, type SimilarityLimits } from "../fingerprint/similarity.js";
import type { LogLevel } from "../log/levels.js";
import type { Logger } from "../log/logger.js";
import type { ModelPrice } from "../pricing/prices.js";
import type { ReportedCost } from "../pricing/usage.js";
import type { SignalSink } from "../signals/types.js";
import type { ResolvedCaps } from "../store/guard-config.js";
import type { LedgerStore } from "../store/types.js";
import { type Clock, SteadyClock } from "../util/clock.js";
import { toMicros } from "../util/money.js";
import { nearest } from "../util/nearest.js";
import {
  choice,
  decimal,
  duration,
  flag,
  fraction,
  judgeCaps,
  type Kind,
  ledger,
  logger,
  patterns,
  prices,
  usd,
  whole,
} from "./option-kinds.js";
import { DEFAULT_MAX_TRANSCRIPT_TOKENS } from "./request.js";

export type { Clock } from "../util/clock.js";

export type GuardMode = "enforce" | "shadow";
export type Escalation = "ceiling" | "none";
export type OnLedgerError = "closed" | "open";

/**
 * Options of {@link createGuard}. Each one a variable can set (all but the functions, sinks and
 * clock) has its limits and default in {@link OPTIONS}; the `@default` tags below state them, and
 * a test holds them to the table.
 */
export interface GuardOptions {
  /**
   * Where decisions, budgets and stuck state are kept. A path opens (or creates) a SQLite
   * ledger; a `postgres://` or `postgresql://` URL a PostgreSQL ledger shared by every host using
   * it (docs/postgres.md); ":memory:" keeps everything in process memory; or pass a store.
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

/** Every option resolved: its default filled in, money in micro-dollars, no cap as Infinity. */
export interface ResolvedOptions extends ResolvedCaps {
  readonly ledger: string | LedgerStore;
  readonly logger: Logger | LogLevel;
  readonly mode: GuardMode;
  readonly onError: OnLedgerError;
  readonly repeatThreshold: number;
  readonly knownRepeatThreshold: number;
  readonly minReplyChars: number;
  readonly cannedPatterns: readonly RegExp[];
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

/** The options whose fields are options of their own, each with a variable. */
type Nested = "similarity" | "estimator";
type FieldOf<K extends Nested> = keyof NonNullable<GuardOptions[K]> & string;
/** The options only code can give: functions and objects, with no variable. */
type CodeOnly = "signals" | "clock" | "usageOf" | "usageOfError";

/**
 * An option a variable can set: `"mode"`, or a field of a nested option
 * (`"similarity.maxWordDifference"`).
 */
export type OptionPath =
  | Exclude<keyof GuardOptions, Nested | CodeOnly>
  | { [K in Nested]: `${K}.${FieldOf<K>}` }[Nested];

/** The type of the option at `P`, as {@link GuardOptions} declares it. */
export type OptionValue<P extends OptionPath> = P extends `${infer K extends Nested}.${infer F}`
  ? NonNullable<GuardOptions[K]>[F & FieldOf<K>]
  : NonNullable<GuardOptions[P & keyof GuardOptions]>;

/** An option's kind (its limits, in code and in a variable) and its default. */
export interface OptionSpec<T, R = T, D extends T | undefined = T | undefined> {
  readonly kind: Kind<T, R>;
  /** undefined: none, which the kind gives a meaning (no patterns, the built-in prices). */
  readonly default: D;
}

const option = <T, R, const D extends T | undefined = undefined>(
  kind: Kind<T, R>,
  defaultValue?: D,
): OptionSpec<T, R, D> => ({ kind, default: defaultValue as D });

/**
 * Every option a variable can set, with its limits and default: the one definition that
 * {@link resolveOptions}, `fromEnv` and the README's table of variables read. (What each option
 * means is documented on {@link GuardOptions}; what each variable says, in `config/env.ts`.)
 */
export const OPTIONS = {
  ledger: option(ledger(), "./data/judge-guard.db"),
  mode: option(choice(["enforce", "shadow"]), "enforce"),
  onError: option(choice(["closed", "open"]), "closed"),
  repeatThreshold: option(whole(2), 3),
  knownRepeatThreshold: option(whole(1), 2),
  minReplyChars: option(whole(0), 16),
  cannedPatterns: option(patterns()),
  builtinPatterns: option(flag(), true),
  "similarity.maxWordDifference": option(whole(0), DEFAULT_SIMILARITY.maxWordDifference),
  "similarity.maxRelativeDifference": option(decimal(0, 1), DEFAULT_SIMILARITY.maxRelativeDifference),
  "similarity.maxNumberDifference": option(whole(0), DEFAULT_SIMILARITY.maxNumberDifference),
  sessionBudgetUsd: option(usd(), 5),
  sessionMaxCalls: option(whole(1, true), 1000),
  budgetWindowMs: option(duration(60_000), DAY_MS),
  dailyBudgetUsd: option(usd(), 50),
  judgeBudgetUsd: option(usd(), Infinity),
  judgeBudgetsUsd: option(judgeCaps()),
  concurrency: option(whole(1), 8),
  prices: option(prices()),
  "estimator.defaultOutputTokens": option(whole(1), DEFAULT_ESTIMATOR.defaultOutputTokens),
  "estimator.defaultMaxTokens": option(whole(1), DEFAULT_ESTIMATOR.defaultMaxTokens),
  "estimator.charsPerToken": option(decimal(0, Infinity, true), DEFAULT_ESTIMATOR.charsPerToken),
  "estimator.promptOverheadTokens": option(whole(1), DEFAULT_ESTIMATOR.promptOverheadTokens),
  maxTranscriptTokens: option(whole(1, true), DEFAULT_MAX_TRANSCRIPT_TOKENS),
  signalCooldownMs: option(duration(), 30 * 60_000),
  verdictTtlMs: option(duration(), 60 * 60_000),
  verdictCacheSize: option(whole(1), 1000),
  maxSessions: option(whole(1), 10_000),
  admissionWaitMs: option(duration(), 60_000),
  leaseMs: option(duration(1000), 30_000),
  escalation: option(choice(["ceiling", "none"]), "ceiling"),
  alertAt: option(fraction(), 0.8),
  logger: option(logger(), "warn"),
} as const satisfies { readonly [P in OptionPath]: OptionSpec<OptionValue<P>, unknown> };

/** What the guard uses of the option at `P`, once checked. */
type Checked<P extends OptionPath> = ReturnType<(typeof OPTIONS)[P]["kind"]["check"]>;

/** The default of every option a variable can set, by its path. */
export const DEFAULTS = Object.fromEntries(Object.entries(OPTIONS).map(([p, o]) => [p, o.default])) as {
  readonly [P in OptionPath]: (typeof OPTIONS)[P]["default"];
};

/** The value at `path` in `options` (`undefined` when unset). */
export function optionAt(options: GuardOptions, path: OptionPath): unknown {
  const [head, field] = path.split(".", 2) as [string, string | undefined];
  const value = (options as Record<string, unknown>)[head];
  if (field === undefined) return value;
  return value !== null && typeof value === "object" ? (value as Record<string, unknown>)[field] : undefined;
}

/**
 * A limit between options. `name` is how its error calls an option: by its name in code, or by
 * the variable that set it (`fromEnv`).
 */
export interface OptionRule {
  /** The option at fault when the rule does not hold. */
  readonly option: OptionPath;
  /** What `option` must be, or undefined when it is; `value` reads an option (its default when unset). */
  problem(value: (path: OptionPath) => unknown, name: (path: OptionPath) => string): string | undefined;
}

export const OPTION_RULES: readonly OptionRule[] = [
  {
    option: "knownRepeatThreshold",
    problem: (value, name) =>
      (value("knownRepeatThreshold") as number) > (value("repeatThreshold") as number)
        ? `at most ${name("repeatThreshold")} (${value("repeatThreshold")})`
        : undefined,
  },
];

/** Validates options once, at construction; errors name the option and the value received. */
/** Every option's name, once: the compiler holds it to GuardOptions (a missing or extra name fails). */
export const OPTION_NAMES = Object.keys({
  ledger: 1,
  mode: 1,
  onError: 1,
  repeatThreshold: 1,
  knownRepeatThreshold: 1,
  minReplyChars: 1,
  cannedPatterns: 1,
  builtinPatterns: 1,
  sessionBudgetUsd: 1,
  sessionMaxCalls: 1,
  budgetWindowMs: 1,
  dailyBudgetUsd: 1,
  judgeBudgetUsd: 1,
  judgeBudgetsUsd: 1,
  concurrency: 1,
  prices: 1,
  signals: 1,
  alertAt: 1,
  signalCooldownMs: 1,
  verdictTtlMs: 1,
  verdictCacheSize: 1,
  maxSessions: 1,
  similarity: 1,
  estimator: 1,
  maxTranscriptTokens: 1,
  admissionWaitMs: 1,
  leaseMs: 1,
  escalation: 1,
  clock: 1,
  logger: 1,
  usageOf: 1,
  usageOfError: 1,
} satisfies Record<keyof GuardOptions, 1>);

/**
 * A misspelt option would be ignored, and its cap with it: it stops construction instead, naming
 * the option it looks like.
 */
function rejectUnknown(o: object, names: readonly string[], of: string | undefined): void {
  for (const key of Object.keys(o)) {
    if (names.includes(key)) continue;
    // A name short of its unit (judgeBudgets for judgeBudgetsUsd) is that name, before any near spelling.
    const longer = names.filter((n) => n.startsWith(key));
    const like = longer.length === 1 ? longer[0] : nearest(key, names);
    const where = of === undefined ? "" : ` of ${of}`;
    throw new ConfigError(
      of === undefined ? key : `${of}.${key}`,
      `unknown option ${key}${where}: ${like === undefined ? `the options are ${names.join(", ")}` : `did you mean ${like}?`}`,
    );
  }
}

export function resolveOptions(o: GuardOptions): ResolvedOptions {
  if (o === null || typeof o !== "object") throw ConfigError.option("options", "an object", o);
  rejectUnknown(o, OPTION_NAMES, undefined);
  for (const head of ["similarity", "estimator"] as const satisfies readonly Nested[]) {
    const group = o[head];
    if (group !== null && typeof group === "object") {
      const fields = (Object.keys(OPTIONS) as OptionPath[])
        .filter((p) => p.startsWith(`${head}.`))
        .map((p) => p.slice(head.length + 1));
      rejectUnknown(group, fields, head);
    }
  }
  const given = (path: OptionPath): unknown => {
    const value = optionAt(o, path);
    return value === undefined ? OPTIONS[path].default : value;
  };
  const at = <P extends OptionPath>(path: P): Checked<P> =>
    (OPTIONS[path].kind as Kind<unknown, Checked<P>>).check(given(path), path);
  /** A nested option, field by field. */
  const group = (head: Nested): unknown =>
    Object.fromEntries(
      (Object.keys(OPTIONS) as OptionPath[])
        .filter((p) => p.startsWith(`${head}.`))
        .map((p) => [p.slice(head.length + 1), at(p)]),
    );
  if (o.signals !== undefined) {
    if (
      !Array.isArray(o.signals) ||
      o.signals.some((x) => typeof x?.send !== "function" || typeof x?.name !== "string")
    ) {
      throw ConfigError.option("signals", "an array of sinks ({name, send(event)})", o.signals);
    }
    const names = o.signals.map((x) => x.name);
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice !== undefined)
      throw ConfigError.option(
        "signals",
        "sinks with distinct names (deliveries are recorded by name)",
        twice,
      );
  }
  if (o.clock !== undefined && typeof o.clock?.now !== "function")
    throw ConfigError.option("clock", "an object with now()", o.clock);
  const resolved: ResolvedOptions = {
    ledger: at("ledger"),
    logger: at("logger"),
    mode: at("mode"),
    onError: at("onError"),
    repeatThreshold: at("repeatThreshold"),
    knownRepeatThreshold: at("knownRepeatThreshold"),
    minReplyChars: at("minReplyChars"),
    cannedPatterns: [
      ...(at("builtinPatterns") ? [...PHANTOM_CANNED_PATTERNS, ...RUNTIME_CANNED_PATTERNS] : []),
      ...at("cannedPatterns"),
    ],
    sessionBudgetMicros: toMicros(at("sessionBudgetUsd")),
    sessionMaxCalls: at("sessionMaxCalls"),
    budgetWindowMs: at("budgetWindowMs"),
    dailyBudgetMicros: toMicros(at("dailyBudgetUsd")),
    judgeBudgetMicros: toMicros(at("judgeBudgetUsd")),
    judgeBudgetsMicros: Object.fromEntries(
      Object.entries(at("judgeBudgetsUsd")).map(([judge, usd]) => [judge, toMicros(usd)]),
    ),
    concurrency: at("concurrency"),
    prices: at("prices"),
    signals: o.signals ?? [],
    alertAt: at("alertAt"),
    signalCooldownMs: at("signalCooldownMs"),
    verdictTtlMs: at("verdictTtlMs"),
    verdictCacheSize: at("verdictCacheSize"),
    maxSessions: at("maxSessions"),
    similarity: group("similarity") as SimilarityLimits,
    estimator: group("estimator") as EstimatorOptions,
    maxTranscriptTokens: at("maxTranscriptTokens"),
    leaseMs: at("leaseMs"),
    escalation: at("escalation"),
    admissionWaitMs: at("admissionWaitMs"),
    clock: o.clock ?? new SteadyClock(),
  };
  for (const rule of OPTION_RULES) {
    const problem = rule.problem(given, (path) => path);
    if (problem !== undefined) throw ConfigError.option(rule.option, problem, given(rule.option));
  }
  return resolved;
}
