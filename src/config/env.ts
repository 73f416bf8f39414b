import { readFileSync } from "node:fs";
import { compilePatterns } from "../detection/catalog.js";
import { ConfigError } from "../errors.js";
import { DEFAULTS, type GuardOptions, resolveOptions } from "../guard/options.js";
import { LOG_LEVELS, type LogLevel } from "../log/logger.js";
import { loadPriceFile } from "../pricing/prices.js";

type Env = Readonly<Record<string, string | undefined>>;

/** One environment variable: its option, default (as documented) and parser. */
interface Variable {
  readonly name: string;
  readonly option: keyof GuardOptions;
  readonly doc: string;
  readonly defaultText: string;
  readonly parse: (value: string, name: string) => unknown;
}

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

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "90s", "30m", "24h", "7d" or a bare number of milliseconds. */
export function parseDuration(value: string, name: string, minMs = 0): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value);
  if (!m) fail(name, value, 'a duration such as "90s", "30m", "24h" or "7d"');
  const ms = Math.round(Number(m[1]) * UNITS[(m[2] ?? "ms").toLowerCase()]!);
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
        `${name}: cannot read the patterns file ${value} (${(e as NodeJS.ErrnoException).code ?? e})`,
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

function prices(value: string, name: string) {
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
    doc: "repeats of one reply to different inputs that make a session stuck",
    parse: intAtLeast(2),
  },
  {
    name: "JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD",
    option: "knownRepeatThreshold",
    defaultText: "2",
    doc: "repeats needed for a known canned line or a reply reported free and session-less",
    parse: intAtLeast(1),
  },
  {
    name: "JUDGE_GUARD_MIN_REPLY_CHARS",
    option: "minReplyChars",
    defaultText: "16",
    doc: 'shorter replies (e.g. "Done.") need strong evidence to count as canned',
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
    doc: "recognise Phantom's known canned lines",
    parse: bool,
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
    doc: "rolling window of the per-key caps (`90m`, `24h`, `7d`)",
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
    doc: "JSON file of prices in USD per million tokens, merged over the built-in table",
    parse: prices,
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
    doc: "a reservation whose guard stopped heart-beating this long ago is reclaimed",
    parse: (v, n) => parseDuration(v, n, 1000),
  },
  {
    name: "JUDGE_GUARD_LOG_LEVEL",
    option: "logger",
    defaultText: "warn",
    doc: `log level on stderr: ${LOG_LEVELS.join(", ")}`,
    parse: oneOf(LOG_LEVELS) as (v: string, n: string) => LogLevel,
  },
];

/**
 * Builds guard options from environment variables (default `process.env`). An invalid value
 * throws a `ConfigError` naming the variable, the value and what is allowed. `overrides` win.
 */
export function fromEnv(env: Env = process.env, overrides: GuardOptions = {}): GuardOptions {
  const options: Record<string, unknown> = {};
  const given = new Map<string, Variable>();
  for (const v of ENV_VARIABLES) {
    const raw = env[v.name];
    if (raw === undefined || raw.trim() === "") continue;
    options[v.option] = v.parse(raw.trim(), v.name);
    given.set(v.option, v);
  }
  const result = { ...(options as GuardOptions), ...overrides };
  // Each value was valid alone; check how they combine, and blame the variables, not the options.
  try {
    resolveOptions(result);
  } catch (e) {
    const v = e instanceof ConfigError ? given.get(e.setting) : undefined;
    if (v === undefined) throw e;
    let why = (e as ConfigError).message.replace(/^option \S+ /, "");
    for (const other of ENV_VARIABLES)
      why = why.replace(new RegExp(`\\b${other.option}\\b`, "g"), other.name);
    throw new ConfigError(v.name, `${v.name}=${JSON.stringify(env[v.name]?.trim())} is not valid: ${why}`);
  }
  return result;
}
