import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { DEFAULT_ESTIMATOR, type EstimatorOptions } from "../budget/estimator.js";
import { compilePatterns } from "../detection/catalog.js";
import { ConfigError } from "../errors.js";
import { DEFAULT_SIMILARITY, type SimilarityLimits } from "../fingerprint/similarity.js";
import { DEFAULTS, type GuardOptions, resolveOptions } from "../guard/options.js";
import { LOG_LEVELS, type LogLevel } from "../log/logger.js";
import { DEFAULT_PRICES, loadPriceFile, parsePrices } from "../pricing/prices.js";
import { phantomSqliteSink } from "../signals/phantom-sqlite.js";
import type { SignalSink } from "../signals/types.js";
import { webhookSink } from "../signals/webhook.js";
import { openPhantomDb } from "../store/phantom.js";
import { nearest } from "../util/nearest.js";

type Env = Readonly<Record<string, string | undefined>>;

/** The options that group several settings in one object, and their fields. */
interface NestedOptions {
  readonly similarity: SimilarityLimits;
  readonly estimator: EstimatorOptions;
}

/**
 * What a variable sets: an option of {@link GuardOptions} (`"mode"`), or one field of a nested
 * option (`"similarity.maxWordDifference"`).
 */
export type OptionPath =
  | Exclude<keyof GuardOptions, keyof NestedOptions>
  | { [K in keyof NestedOptions]: `${K}.${keyof NestedOptions[K] & string}` }[keyof NestedOptions];

/** One environment variable: its option, default (as documented) and parser. */
export interface Variable {
  readonly name: string;
  readonly option: OptionPath;
  readonly doc: string;
  readonly defaultText: string;
  readonly parse: (value: string, name: string) => unknown;
}

/** The value at `path` in `options` (`undefined` when unset). */
export function optionAt(options: GuardOptions, path: OptionPath): unknown {
  const [head, field] = path.split(".", 2) as [string, string | undefined];
  const value = (options as Record<string, unknown>)[head];
  if (field === undefined) return value;
  return value !== null && typeof value === "object" ? (value as Record<string, unknown>)[field] : undefined;
}

/** Sets `path` in `options` (a plain object being built), copying a nested object it changes. */
function setOption(options: Record<string, unknown>, path: OptionPath, value: unknown): void {
  const [head, field] = path.split(".", 2) as [string, string | undefined];
  if (field === undefined) options[head] = value;
  else options[head] = { ...(options[head] as object | undefined), [field]: value };
}

/** The documented default of every nested field, as the guard applies it. */
export const NESTED_DEFAULTS: { readonly [K in keyof NestedOptions]: NestedOptions[K] } = {
  similarity: DEFAULT_SIMILARITY,
  estimator: DEFAULT_ESTIMATOR,
};

function fail(name: string, value: string, allowed: string): never {
  throw new ConfigError(name, `${name}=${JSON.stringify(value)} is not valid: expected ${allowed}`);
}

const NONE = /^(none|off|unlimited|infinity)$/i;

function usdOrNone(value: string, name: string): number {
  if (NONE.test(value)) return Infinity;
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !Number.isFinite(n) || n < 0)
    fail(name, value, 'an amount in USD >= 0 such as "5" or "0.50", or "none"');
  return n;
}

function intAtLeast(min: number, allowNone = false) {
  return (value: string, name: string): number => {
    if (allowNone && NONE.test(value)) return Infinity;
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || n < min)
      fail(name, value, `a whole number >= ${min}${allowNone ? ', or "none"' : ""}`);
    return n;
  };
}

/** A number written plainly ("0.2", "4"), between `min` and `max`; `above` excludes `min` itself. */
function numberIn(min: number, max: number, above = false) {
  return (value: string, name: string): number => {
    const n = Number(value);
    const ok = /^\d+(\.\d+)?$/.test(value.trim()) && (above ? n > min : n >= min) && n <= max;
    if (!ok) {
      fail(
        name,
        value,
        max === Infinity ? `a number ${above ? ">" : ">="} ${min}` : `a number from ${min} to ${max}`,
      );
    }
    return n;
  };
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses "250ms", "90s", "30m", "24h" or "7d". A unit is required, since a bare "24" could mean
 * hours as well as milliseconds; only "0" may go without one, where 0 is allowed (`minMs` 0).
 */
/** "90s", "30m", "24h", "7d", "250ms" (or "0") in milliseconds; undefined for anything else. */
export function durationMs(value: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value);
  if (!m || (m[2] === undefined && Number(m[1]) !== 0)) return undefined;
  return Math.round(Number(m[1]) * UNITS[(m[2] ?? "ms").toLowerCase()]!);
}

export function parseDuration(value: string, name: string, minMs = 0): number {
  const withUnit = 'a duration with a unit such as "90s", "30m", "24h" or "7d"';
  const allowed = minMs === 0 ? `${withUnit}, or "0"` : withUnit;
  const ms = durationMs(value);
  if (ms === undefined) fail(name, value, allowed);
  if (ms < minMs) fail(name, value, `a duration of at least ${minMs / 1000}s`);
  return ms;
}

function oneOf(allowed: readonly string[]) {
  return (value: string, name: string): string => {
    const v = value.trim().toLowerCase();
    if (!allowed.includes(v)) fail(name, value, `one of ${allowed.join(", ")}`);
    return v;
  };
}

function bool(value: string, name: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  return fail(name, value, "true or false");
}

/**
 * Canned patterns: a JSON array of strings, or the path of a file with one pattern per line
 * (blank lines and lines starting with # are ignored).
 */
function patterns(value: string, name: string): string[] {
  let list: unknown;
  let origin: string;
  if (value.trim().startsWith("[")) {
    try {
      list = JSON.parse(value);
    } catch (e) {
      fail(name, value, `a JSON array of strings or a file path (${(e as Error).message})`);
    }
    origin = `${name} entry`;
  } else {
    let text: string;
    try {
      text = readFileSync(value, "utf8");
    } catch (e) {
      throw new ConfigError(
        name,
        `${name}: cannot read the patterns file ${value} (${(e as NodeJS.ErrnoException).code ?? e}) ` +
          '(to give patterns inline, use a JSON array such as ["session busy"])',
      );
    }
    list = text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    origin = `${name} (${value}) pattern`;
  }
  if (!Array.isArray(list) || list.some((p) => typeof p !== "string"))
    fail(name, value, "a JSON array of strings");
  try {
    compilePatterns(list as string[], origin);
  } catch (e) {
    throw new ConfigError(name, (e as Error).message);
  }
  return list as string[];
}

/** Caps per judge kind: a JSON object of judge kind -> USD (a number, or "none"). */
function judgeBudgets(value: string, name: string): Record<string, number> {
  const example =
    'a JSON object of judge kind -> USD per 24 h, such as {"quality_assessment": 2, "gate": "none"}';
  let data: unknown;
  try {
    data = JSON.parse(value);
  } catch (e) {
    throw new ConfigError(name, `${name} is not valid JSON (${(e as Error).message}): expected ${example}`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) fail(name, value, example);
  const out: Record<string, number> = {};
  for (const [judge, usd] of Object.entries(data)) {
    if (typeof usd === "string" && NONE.test(usd)) out[judge] = Infinity;
    else if (typeof usd === "number" && Number.isFinite(usd) && usd >= 0) out[judge] = usd;
    else {
      throw new ConfigError(
        name,
        `${name}: the cap of judge kind ${JSON.stringify(judge)} must be an amount in USD >= 0 or "none", got ${JSON.stringify(usd)}`,
      );
    }
  }
  return out;
}

/** Prices: inline JSON (a value starting with "{") or the path of a JSON file. */
function prices(value: string, name: string) {
  // "[" too: an inline array is a mistake to report as such, not a file that cannot be read.
  if (/^[{[]/.test(value.trim())) {
    let data: unknown;
    try {
      data = JSON.parse(value);
    } catch (e) {
      throw new ConfigError(name, `${name} is not valid JSON: ${(e as Error).message}`);
    }
    try {
      return { ...DEFAULT_PRICES, ...parsePrices(data, name) };
    } catch (e) {
      throw new ConfigError(name, (e as Error).message);
    }
  }
  try {
    return loadPriceFile(value);
  } catch (e) {
    throw new ConfigError(name, `${name}: ${(e as Error).message}`);
  }
}

/** Every environment variable the guard reads, in documentation order. */
export const ENV_VARIABLES: readonly Variable[] = [
  {
    name: "JUDGE_GUARD_DB",
    option: "ledger",
    defaultText: DEFAULTS.ledger,
    doc: 'SQLite ledger path (":memory:" for none)',
    parse: (v) => v,
  },
  {
    name: "JUDGE_GUARD_MODE",
    option: "mode",
    defaultText: "enforce",
    doc: "`enforce`, or `shadow` to decide and record without blocking",
    parse: oneOf(["enforce", "shadow"]),
  },
  {
    name: "JUDGE_GUARD_ON_ERROR",
    option: "onError",
    defaultText: "closed",
    doc: "when the ledger fails: `closed` skips judging, `open` judges unguarded",
    parse: oneOf(["closed", "open"]),
  },
  {
    name: "JUDGE_GUARD_REPEAT_THRESHOLD",
    option: "repeatThreshold",
    defaultText: "3",
    doc: "evidence that makes a session stuck, in repeats of one reply to different messages (see How it decides)",
    parse: intAtLeast(2),
  },
  {
    name: "JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD",
    option: "knownRepeatThreshold",
    defaultText: "2",
    doc: "occurrences of a known canned line (or of a free, session-less bounce) that make a session stuck",
    parse: intAtLeast(1),
  },
  {
    name: "JUDGE_GUARD_MIN_REPLY_CHARS",
    option: "minReplyChars",
    defaultText: "16",
    doc: 'shorter replies (e.g. "Done.") never count as repeats, unless a known canned line',
    parse: intAtLeast(0),
  },
  {
    name: "JUDGE_GUARD_CANNED_PATTERNS",
    option: "cannedPatterns",
    defaultText: "(none)",
    doc: "extra canned patterns: a JSON array, or a file with one regular expression per line",
    parse: patterns,
  },
  {
    name: "JUDGE_GUARD_BUILTIN_PATTERNS",
    option: "builtinPatterns",
    defaultText: "true",
    doc: "recognise the known canned lines of Phantom and the Claude Agent SDK (usage limit, overloaded, ...)",
    parse: bool,
  },
  {
    name: "JUDGE_GUARD_MAX_WORD_DIFFERENCE",
    option: "similarity.maxWordDifference",
    defaultText: String(DEFAULT_SIMILARITY.maxWordDifference),
    doc: "near-duplicates: the most words two replies may differ in and still be one reply",
    parse: intAtLeast(0),
  },
  {
    name: "JUDGE_GUARD_MAX_RELATIVE_DIFFERENCE",
    option: "similarity.maxRelativeDifference",
    defaultText: String(DEFAULT_SIMILARITY.maxRelativeDifference),
    doc: "near-duplicates: the largest share of their words two replies may differ in (0 to 1)",
    parse: numberIn(0, 1),
  },
  {
    name: "JUDGE_GUARD_MAX_NUMBER_DIFFERENCE",
    option: "similarity.maxNumberDifference",
    defaultText: String(DEFAULT_SIMILARITY.maxNumberDifference),
    doc: "a repeat whose numbers differ in more places than this is data (a report), not a counter: it weighs 0",
    parse: intAtLeast(0),
  },
  {
    name: "JUDGE_GUARD_SESSION_BUDGET_USD",
    option: "sessionBudgetUsd",
    defaultText: "5",
    doc: "USD per session key per budget window (`none` for no cap)",
    parse: usdOrNone,
  },
  {
    name: "JUDGE_GUARD_SESSION_MAX_CALLS",
    option: "sessionMaxCalls",
    defaultText: "1000",
    doc: "judge calls per session key per budget window (`none` for no cap)",
    parse: intAtLeast(1, true),
  },
  {
    name: "JUDGE_GUARD_BUDGET_WINDOW",
    option: "budgetWindowMs",
    defaultText: "24h",
    doc: "rolling window of the per-key caps (`90m`, `24h`, `7d`: every duration needs its unit)",
    parse: (v, n) => parseDuration(v, n, 60_000),
  },
  {
    name: "JUDGE_GUARD_DAILY_BUDGET_USD",
    option: "dailyBudgetUsd",
    defaultText: "50",
    doc: "USD for all keys together per rolling 24 h (`none` for no cap)",
    parse: usdOrNone,
  },
  {
    name: "JUDGE_GUARD_JUDGE_BUDGET_USD",
    option: "judgeBudgetUsd",
    defaultText: "none",
    doc: "USD per judge kind (all keys together) per rolling 24 h, for every kind `JUDGE_GUARD_JUDGE_BUDGETS` does not name (`none` for no cap)",
    parse: usdOrNone,
  },
  {
    name: "JUDGE_GUARD_JUDGE_BUDGETS",
    option: "judgeBudgetsUsd",
    defaultText: "(none)",
    doc: 'caps of named judge kinds in USD per rolling 24 h, as a JSON object: `{"quality_assessment": 2, "gate": "none"}`',
    parse: judgeBudgets,
  },
  {
    name: "JUDGE_GUARD_CONCURRENCY",
    option: "concurrency",
    defaultText: "8",
    doc: "judge calls in flight at once",
    parse: intAtLeast(1),
  },
  {
    name: "JUDGE_GUARD_PRICES",
    option: "prices",
    defaultText: "(built in)",
    doc: "prices in USD per million tokens, merged over the built-in table: a JSON file, or inline JSON",
    parse: prices,
  },
  {
    name: "JUDGE_GUARD_DEFAULT_OUTPUT_TOKENS",
    option: "estimator.defaultOutputTokens",
    defaultText: String(DEFAULT_ESTIMATOR.defaultOutputTokens),
    doc: "output tokens expected of a judge before its sizes are learned",
    parse: intAtLeast(1),
  },
  {
    name: "JUDGE_GUARD_DEFAULT_MAX_TOKENS",
    option: "estimator.defaultMaxTokens",
    defaultText: String(DEFAULT_ESTIMATOR.defaultMaxTokens),
    doc: "output ceiling of a request that gives no `maxTokens`",
    parse: intAtLeast(1),
  },
  {
    name: "JUDGE_GUARD_CHARS_PER_TOKEN",
    option: "estimator.charsPerToken",
    defaultText: String(DEFAULT_ESTIMATOR.charsPerToken),
    doc: "transcript characters per input token, for estimates",
    parse: numberIn(0, Infinity, true),
  },
  {
    name: "JUDGE_GUARD_PROMPT_OVERHEAD_TOKENS",
    option: "estimator.promptOverheadTokens",
    defaultText: String(DEFAULT_ESTIMATOR.promptOverheadTokens),
    doc: "input tokens of a judge's own prompt around the transcript, for estimates",
    parse: intAtLeast(1),
  },
  {
    name: "JUDGE_GUARD_MAX_TRANSCRIPT_TOKENS",
    option: "maxTranscriptTokens",
    defaultText: String(DEFAULTS.maxTranscriptTokens),
    doc: "a request whose transcript is estimated above this many tokens fits no model and is refused, naming the field (twice the largest context window of a priced model, 1,048,576; `none` for no limit)",
    parse: intAtLeast(1, true),
  },
  {
    name: "JUDGE_GUARD_SIGNAL_COOLDOWN",
    option: "signalCooldownMs",
    defaultText: "30m",
    doc: "a stuck episode is signalled once; a failed delivery is retried at most this often",
    parse: (v, n) => parseDuration(v, n),
  },
  {
    name: "JUDGE_GUARD_VERDICT_TTL",
    option: "verdictTtlMs",
    defaultText: "1h",
    doc: "how long identical requests reuse a verdict (`0` to never reuse)",
    parse: (v, n) => parseDuration(v, n),
  },
  {
    name: "JUDGE_GUARD_VERDICT_CACHE_SIZE",
    option: "verdictCacheSize",
    defaultText: "1000",
    doc: "verdicts kept for reuse",
    parse: intAtLeast(1),
  },
  {
    name: "JUDGE_GUARD_MAX_SESSIONS",
    option: "maxSessions",
    defaultText: "10000",
    doc: "session keys whose detection state is kept in memory",
    parse: intAtLeast(1),
  },
  {
    name: "JUDGE_GUARD_ADMISSION_WAIT",
    option: "admissionWaitMs",
    defaultText: "60s",
    doc: "near a cap, how long a call waits for calls in flight to settle before it is skipped",
    parse: (v, n) => parseDuration(v, n),
  },
  {
    name: "JUDGE_GUARD_LEASE",
    option: "leaseMs",
    defaultText: "30s",
    doc: "a guard in another PID namespace or on another host whose heartbeat has not moved for this long is gone: its calls in flight are charged at their estimate, or wait for their settlement",
    parse: (v, n) => parseDuration(v, n, 1000),
  },
  {
    name: "JUDGE_GUARD_ESCALATION",
    option: "escalation",
    defaultText: "ceiling",
    doc: "`ceiling`: a call's worst case is priced at the highest rates in the price table, since a judge may report a pricier model than it was admitted on; `none`: at its own model",
    parse: oneOf(["ceiling", "none"]),
  },
  {
    name: "JUDGE_GUARD_ALERT_AT",
    option: "alertAt",
    defaultText: "0.8",
    doc: "budget alerts go out when a key or the global window uses this fraction of its cap (`off` for none)",
    parse: (v, n) => {
      if (/^(off|none|0)$/i.test(v)) return 0;
      const x = Number(v);
      if (!/^(0?\.\d+|1(\.0+)?)$/.test(v) || !(x > 0 && x <= 1))
        fail(n, v, 'a fraction such as "0.8", or "off"');
      return x;
    },
  },
  {
    name: "JUDGE_GUARD_LOG_LEVEL",
    option: "logger",
    defaultText: "warn",
    doc: `log level on stderr (text or JSON lines: see Logs): ${LOG_LEVELS.join(", ")}`,
    parse: oneOf(LOG_LEVELS) as (v: string, n: string) => LogLevel,
  },
];

/**
 * The variables that choose where signals go. They build sinks rather than set one option, so
 * they are read apart from {@link ENV_VARIABLES}; the documentation lists them together.
 */
export const SIGNAL_VARIABLES = [
  {
    name: "JUDGE_GUARD_SIGNAL",
    defaultText: "none",
    doc: "where signals go, comma-separated: `none`, `callback` (a function passed in code), `phantom-sqlite`, `webhook`",
  },
  {
    name: "JUDGE_GUARD_PHANTOM_DB",
    defaultText: "(none)",
    doc: "`phantom-sqlite`: Phantom's database, e.g. `data/phantom.db` (same host only; it must exist at start-up)",
  },
  { name: "JUDGE_GUARD_WEBHOOK_URL", defaultText: "(none)", doc: "`webhook`: where events are POSTed" },
  {
    name: "JUDGE_GUARD_WEBHOOK_SECRET",
    defaultText: "(none)",
    doc: "`webhook`: HMAC-SHA256 secret for `X-Judge-Guard-Signature` (16+ characters; never logged)",
  },
] as const;

/**
 * The `JUDGE_GUARD_*` variables read elsewhere than {@link fromEnv}: by `judge-guard serve`, the
 * Phantom preload, and this package's own tests and CI. They are known names, so that setting
 * them is not taken for a misspelling (see {@link checkVariableNames}).
 */
export const OTHER_VARIABLES = [
  { name: "JUDGE_GUARD_TOKEN", usedBy: "`serve` and the client: the sidecar's bearer token" },
  { name: "JUDGE_GUARD_URL", usedBy: "the Phantom preload: the sidecar's address" },
  { name: "JUDGE_GUARD_PHANTOM_ROOT", usedBy: "the Phantom preload: Phantom's folder" },
  { name: "JUDGE_GUARD_PHANTOM_RECOVER", usedBy: "the Phantom preload: `off` only skips and records" },
  {
    name: "JUDGE_GUARD_PHANTOM_RELEASE_AFTER",
    usedBy: "the Phantom preload: the age at which a stuck key's request is released",
  },
  { name: "JUDGE_GUARD_ALLOW_UNKNOWN", usedBy: "the names of unknown variables to allow (below)" },
  { name: "JUDGE_GUARD_LONG_TESTS", usedBy: "this package's tests: the long variants (CI)" },
  { name: "JUDGE_GUARD_REQUIRE_CHROMIUM", usedBy: "this package's tests: fail without Chromium (CI)" },
  { name: "JUDGE_GUARD_PHANTOM_SNAPSHOTS", usedBy: "this package's tests: Phantom checkouts to test on" },
  { name: "JUDGE_GUARD_REPO", usedBy: "this package's tests: the checkout, for Phantom scenarios" },
] as const;

/** Every `JUDGE_GUARD_*` name this package reads. */
export const KNOWN_VARIABLES: readonly string[] = [
  ...ENV_VARIABLES.map((v) => v.name),
  ...SIGNAL_VARIABLES.map((v) => v.name),
  ...OTHER_VARIABLES.map((v) => v.name),
];

const PREFIX = "JUDGE_GUARD_";

/** Known names that are likely meant by `name`: the nearest by spelling, else those sharing its most words. */
function meant(name: string): string[] {
  const suffixes = KNOWN_VARIABLES.map((k) => k.slice(PREFIX.length));
  const close = nearest(name.slice(PREFIX.length), suffixes);
  if (close !== undefined) return [PREFIX + close];
  const words = new Set(name.slice(PREFIX.length).split("_").filter(Boolean));
  const shared = KNOWN_VARIABLES.map((k) => ({
    k,
    n: k
      .slice(PREFIX.length)
      .split("_")
      .filter((w) => words.has(w)).length,
  }));
  const most = Math.max(0, ...shared.map((s) => s.n));
  return most === 0
    ? []
    : shared
        .filter((s) => s.n === most)
        .map((s) => s.k)
        .slice(0, 3);
}

/**
 * Stops start-up on a `JUDGE_GUARD_*` variable this package does not know: a misspelt cap
 * (`SESION` for `SESSION`) would otherwise leave the default cap in force without a word. Throws a `ConfigError` naming each unknown variable and the known one likely meant.
 * `JUDGE_GUARD_ALLOW_UNKNOWN` lets names through: a comma-separated list of them, or `1` for any.
 * {@link fromEnv} and every CLI command call it; call it yourself where you read the environment
 * without `fromEnv`.
 */
export function checkVariableNames(env: Env = process.env): void {
  const allowRaw = env.JUDGE_GUARD_ALLOW_UNKNOWN?.trim() ?? "";
  if (/^(1|true|yes|\*)$/i.test(allowRaw)) return;
  const allowed = new Set(
    allowRaw
      .split(",")
      .map((n) => n.trim())
      .filter(Boolean),
  );
  for (const n of allowed) {
    if (!n.startsWith(PREFIX) || !/^[A-Z0-9_]+$/.test(n))
      fail("JUDGE_GUARD_ALLOW_UNKNOWN", allowRaw, `1, or a comma-separated list of ${PREFIX}* names`);
  }
  const known = new Set(KNOWN_VARIABLES);
  const unknown = Object.keys(env)
    .filter((k) => k.startsWith(PREFIX) && !known.has(k) && !allowed.has(k))
    .sort();
  if (unknown.length === 0) return;
  const each = unknown.map((name) => {
    const guesses = meant(name);
    const hint =
      guesses.length === 0
        ? "no judge-guard variable is spelt like it"
        : `did you mean ${guesses.length === 1 ? guesses[0] : `one of ${guesses.join(", ")}`}?`;
    return `${name} (${hint})`;
  });
  const what = unknown.length === 1 ? "is not a judge-guard variable" : "are not judge-guard variables";
  throw new ConfigError(
    unknown[0]!,
    `${each.join(", ")} ${what}, and would be ignored: fix the name (the README's Configuration lists every variable), or allow it with JUDGE_GUARD_ALLOW_UNKNOWN=${unknown.join(",")}`,
  );
}

const CHANNELS = ["none", "callback", "phantom-sqlite", "webhook"] as const;

/**
 * At start-up, not at the first stuck session: JUDGE_GUARD_PHANTOM_DB must be Phantom's database
 * now. (The sink itself, made in code, treats a missing file as a failed delivery, retried.)
 */
function checkPhantomDb(path: string): void {
  const bad = (why: string): never => {
    throw new ConfigError(
      "JUDGE_GUARD_PHANTOM_DB",
      `JUDGE_GUARD_PHANTOM_DB=${JSON.stringify(path)} (for JUDGE_GUARD_SIGNAL=phantom-sqlite) ${why}`,
    );
  };
  if (!existsSync(path)) {
    bad(
      existsSync(dirname(resolve(path)))
        ? "does not exist: give the path of Phantom's data/phantom.db. Phantom creates it at its first start: start Phantom once, or leave phantom-sqlite out of JUDGE_GUARD_SIGNAL until it has"
        : `does not exist, nor does its folder ${dirname(resolve(path))}: give the path of Phantom's data/phantom.db, as this process sees it`,
    );
  }
  if (statSync(path).isDirectory()) bad("is a folder: give the path of Phantom's data/phantom.db");
  try {
    openPhantomDb(path).close();
  } catch (e) {
    bad(`cannot be used: ${(e as Error).message.replace(`${path} `, "it ")}`);
  }
}

/** The sinks JUDGE_GUARD_SIGNAL asks for; `callback` must come from code (`overrides.signals`). */
function sinksFromEnv(env: Env, fromCode: readonly SignalSink[] | undefined): SignalSink[] | undefined {
  const raw = env.JUDGE_GUARD_SIGNAL?.trim();
  if (!raw) return fromCode === undefined ? undefined : [...fromCode];
  const channels = raw.split(",").map((c) => c.trim().toLowerCase());
  for (const c of channels) {
    if (!(CHANNELS as readonly string[]).includes(c))
      fail("JUDGE_GUARD_SIGNAL", raw, `a comma-separated list of ${CHANNELS.join(", ")}`);
  }
  if (channels.includes("none") && channels.length > 1)
    fail("JUDGE_GUARD_SIGNAL", raw, '"none" alone, or a list of channels');
  const sinks: SignalSink[] = [];
  const need = (name: string, channel: string): string => {
    const v = env[name]?.trim();
    if (!v) throw new ConfigError(name, `JUDGE_GUARD_SIGNAL includes ${channel}, which needs ${name}`);
    return v;
  };
  if (channels.includes("phantom-sqlite")) {
    if (process.versions.bun !== undefined) {
      throw new ConfigError(
        "JUDGE_GUARD_SIGNAL",
        "JUDGE_GUARD_SIGNAL includes phantom-sqlite, which needs Node (better-sqlite3 does not run under Bun): use callback in process, or set it on the judge-guard sidecar",
      );
    }
    const path = need("JUDGE_GUARD_PHANTOM_DB", "phantom-sqlite");
    checkPhantomDb(path);
    sinks.push(phantomSqliteSink({ path }));
  }
  if (channels.includes("webhook")) {
    const url = need("JUDGE_GUARD_WEBHOOK_URL", "webhook");
    const secret = need("JUDGE_GUARD_WEBHOOK_SECRET", "webhook");
    try {
      sinks.push(webhookSink({ url, secret }));
    } catch (e) {
      const variable = /secret/.test((e as Error).message)
        ? "JUDGE_GUARD_WEBHOOK_SECRET"
        : "JUDGE_GUARD_WEBHOOK_URL";
      // Never echo the secret.
      throw new ConfigError(
        variable,
        `${variable} is not valid: ${(e as Error).message.replace(/^webhookSink: /, "")}`,
      );
    }
  }
  if (channels.includes("callback") && (fromCode === undefined || fromCode.length === 0)) {
    throw new ConfigError(
      "JUDGE_GUARD_SIGNAL",
      "JUDGE_GUARD_SIGNAL includes callback, which needs the function from code: createGuard(fromEnv(process.env, { signals: [callbackSink(fn)] }))",
    );
  }
  return [...sinks, ...(fromCode ?? [])];
}

/**
 * Builds guard options from environment variables (default `process.env`). An invalid value,
 * or a `JUDGE_GUARD_*` variable it does not know ({@link checkVariableNames}), throws a
 * `ConfigError` naming the variable, the value and what is allowed. `overrides` win;
 * in `similarity` and `estimator`, field by field. Signal sinks passed in `overrides.signals`
 * always apply, added to the channels JUDGE_GUARD_SIGNAL names (even with `none`).
 */
export function fromEnv(env: Env = process.env, overrides: GuardOptions = {}): GuardOptions {
  checkVariableNames(env);
  const options: Record<string, unknown> = {};
  const given: Array<{ variable: Variable; value: unknown }> = [];
  for (const v of ENV_VARIABLES) {
    const raw = env[v.name];
    if (raw === undefined || raw.trim() === "") continue;
    const value = v.parse(raw.trim(), v.name);
    setOption(options, v.option, value);
    given.push({ variable: v, value });
  }
  const result: Record<string, unknown> = { ...options, ...overrides };
  const signals = sinksFromEnv(env, overrides.signals);
  if (signals !== undefined) result.signals = signals;
  for (const key of Object.keys(NESTED_DEFAULTS)) {
    const fromOverrides = (overrides as Record<string, unknown>)[key];
    if (options[key] !== undefined && fromOverrides !== null && typeof fromOverrides === "object")
      result[key] = { ...(options[key] as object), ...fromOverrides };
  }
  // Each value was valid alone; check how they combine, and blame the variables, not the options.
  try {
    resolveOptions(result as GuardOptions);
  } catch (e) {
    // Only a variable whose value is still in effect (not overridden) is to blame.
    const g =
      e instanceof ConfigError
        ? given.find(
            ({ variable, value }) =>
              variable.option === e.setting && optionAt(result as GuardOptions, variable.option) === value,
          )
        : undefined;
    if (g === undefined) throw e;
    const v = g.variable;
    let why = (e as ConfigError).message.replace(/^option \S+ /, "");
    for (const other of ENV_VARIABLES)
      why = why.replace(new RegExp(`\\b${other.option.replace(".", "\\.")}\\b`, "g"), other.name);
    throw new ConfigError(v.name, `${v.name}=${JSON.stringify(env[v.name]?.trim())} is not valid: ${why}`);
  }
  return result as GuardOptions;
}
