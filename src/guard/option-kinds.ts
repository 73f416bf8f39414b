/**
 * The kinds of value an option can have. A kind has two faces over the same limits: `check`, for
 * a value given in code, whose error names the option (`option concurrency must be an integer
 * >= 1, got 0`), and `parse`, for an environment variable's text, whose error names the variable
 * and the text (`JUDGE_GUARD_CONCURRENCY="0" is not valid: expected a whole number >= 1`). A
 * limit is written once, in the options table, and an error is born naming the setting the user
 * wrote: nothing is caught and renamed on the way.
 */
import { readFileSync } from "node:fs";
import { compilePattern, compilePatterns } from "../detection/catalog.js";
import { ConfigError } from "../errors.js";
import { LOG_LEVELS, type LogLevel } from "../log/levels.js";
import type { Logger } from "../log/logger.js";
import {
  DEFAULT_PRICES,
  loadPriceFile,
  type ModelPrice,
  parsePrices,
  pricesFromJson,
} from "../pricing/prices.js";
import type { LedgerStore } from "../store/types.js";

export interface Kind<T, R = T> {
  /** Checks a value given in code (or the default, when none is) and returns what the guard uses. */
  check(value: T | undefined, option: string): R;
  /** Reads a variable's trimmed, non-empty text as a value of the option, within the same limits. */
  parse(text: string, variable: string): T;
  /** A value as a variable's text, for the documentation: `24h`, `none`. */
  show(value: T | undefined): string;
}

/** The words a variable may use for "no cap". */
const NONE = /^(none|off|unlimited|infinity)$/i;
/** Digits, with a fraction: Number() would also read "0x10", "1e3" and "Infinity". */
const DECIMAL = /^\d+(\.\d+)?$/;
const WHOLE = /^\d+$/;

/** A number as a variable writes it: Infinity is `none`. */
const showNumber = (n: number | undefined): string =>
  n === undefined ? "(none)" : n === Infinity ? "none" : String(n);

/** A whole number >= `min`; with `none`, also Infinity (`none` in a variable) for no limit. */
export function whole(min: number, none = false): Kind<number> {
  const inCode = `an integer >= ${min}${none ? ", or Infinity for no limit" : ""}`;
  const inText = `a whole number >= ${min}${none ? ', or "none"' : ""}`;
  return {
    check(value, option) {
      if (none && value === Infinity) return value;
      if (!Number.isInteger(value) || value! < min) throw ConfigError.option(option, inCode, value);
      return value!;
    },
    parse(text, variable) {
      if (none && NONE.test(text)) return Infinity;
      if (!WHOLE.test(text) || Number(text) < min) throw ConfigError.variable(variable, text, inText);
      return Number(text);
    },
    show: showNumber,
  };
}

/** A finite number from `min` (excluded with `above`) to `max`, written plainly ("0.2", "4"). */
export function decimal(min: number, max = Infinity, above = false): Kind<number> {
  const expected =
    max === Infinity ? `a number ${above ? ">" : ">="} ${min}` : `a number from ${min} to ${max}`;
  const within = (n: unknown): n is number =>
    typeof n === "number" && Number.isFinite(n) && (above ? n > min : n >= min) && n <= max;
  return {
    check(value, option) {
      if (!within(value)) throw ConfigError.option(option, expected, value);
      return value;
    },
    parse(text, variable) {
      const n = Number(text);
      if (!DECIMAL.test(text) || !within(n)) throw ConfigError.variable(variable, text, expected);
      return n;
    },
    show: showNumber,
  };
}

/** An amount in USD >= 0, or Infinity (`none` in a variable) for no cap. */
export function usd(): Kind<number> {
  const within = (n: unknown): n is number =>
    typeof n === "number" && n >= 0 && (Number.isFinite(n) || n === Infinity);
  return {
    check(value, option) {
      if (!within(value)) throw ConfigError.option(option, "a number >= 0, or Infinity for no cap", value);
      return value;
    },
    parse(text, variable) {
      if (NONE.test(text)) return Infinity;
      const n = Number(text);
      if (!DECIMAL.test(text) || !Number.isFinite(n))
        throw ConfigError.variable(variable, text, 'an amount in USD >= 0 such as "5" or "0.50", or "none"');
      return n;
    },
    show: showNumber,
  };
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * "90s", "30m", "24h", "7d", "250ms" (or "0") in milliseconds; undefined for anything else. A
 * unit is required, since a bare "24" could mean hours as well as milliseconds.
 */
export function durationMs(value: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value);
  if (!m || (m[2] === undefined && Number(m[1]) !== 0)) return undefined;
  return Math.round(Number(m[1]) * UNITS[(m[2] ?? "ms").toLowerCase()]!);
}

/** A variable's duration in milliseconds, at least `minMs`; only "0" may go without a unit, where 0 is allowed. */
export function parseDuration(value: string, name: string, minMs = 0): number {
  const withUnit = 'a duration with a unit such as "90s", "30m", "24h" or "7d"';
  const ms = durationMs(value);
  if (ms === undefined)
    throw ConfigError.variable(name, value, minMs === 0 ? `${withUnit}, or "0"` : withUnit);
  if (ms < minMs) throw ConfigError.variable(name, value, `a duration of at least ${minMs / 1000}s`);
  return ms;
}

/** A duration of at least `minMs`, in milliseconds in code and with a unit in a variable. */
export function duration(minMs = 0): Kind<number> {
  const ms = whole(minMs);
  return {
    check: ms.check,
    parse: (text, variable) => parseDuration(text, variable, minMs),
    // In the largest unit that writes it whole, up to hours: "24h" reads better than "1d".
    show(value) {
      if (value === undefined || value === 0) return showNumber(value);
      const unit = ["h", "m", "s", "ms"].find((u) => value % UNITS[u]! === 0)!;
      return `${value / UNITS[unit]!}${unit}`;
    },
  };
}

/** A fraction from 0 to 1, where 0 (`off` in a variable) turns the feature off. */
export function fraction(): Kind<number> {
  return {
    check(value, option) {
      if (typeof value !== "number" || !(value >= 0 && value <= 1))
        throw ConfigError.option(option, "a fraction from 0 to 1 (0 turns it off)", value);
      return value;
    },
    parse(text, variable) {
      if (/^(off|none|0)$/i.test(text)) return 0;
      const x = Number(text);
      if (!/^(0?\.\d+|1(\.0+)?)$/.test(text) || !(x > 0 && x <= 1))
        throw ConfigError.variable(variable, text, 'a fraction such as "0.8", or "off"');
      return x;
    },
    show: (value) => (value === 0 ? "off" : String(value)),
  };
}

/** One of a few words; a variable's text is read in any case. */
export function choice<const T extends string>(allowed: readonly T[]): Kind<T> {
  const expected = `one of ${allowed.join(", ")}`;
  return {
    check(value, option) {
      if (!allowed.includes(value!)) throw ConfigError.option(option, expected, value);
      return value!;
    },
    parse(text, variable) {
      const v = text.toLowerCase() as T;
      if (!allowed.includes(v)) throw ConfigError.variable(variable, text, expected);
      return v;
    },
    show: String,
  };
}

/** true or false; a variable may also say 1/0, yes/no, on/off. */
export function flag(): Kind<boolean> {
  return {
    check(value, option) {
      if (typeof value !== "boolean") throw ConfigError.option(option, "true or false", value);
      return value;
    },
    parse(text, variable) {
      if (/^(1|true|yes|on)$/i.test(text)) return true;
      if (/^(0|false|no|off)$/i.test(text)) return false;
      throw ConfigError.variable(variable, text, "true or false");
    },
    show: String,
  };
}

const hasMethods = (v: unknown, names: readonly string[]): boolean =>
  v !== null &&
  typeof v === "object" &&
  names.every((n) => typeof (v as Record<string, unknown>)[n] === "function");

/** Where the ledger is: a SQLite file's path, ":memory:", or (in code) a store. */
export function ledger(): Kind<string | LedgerStore> {
  return {
    check(value, option) {
      const ok =
        (typeof value === "string" && value !== "") ||
        hasMethods(value, ["atomically", "scopeUsage", "recordDecision", "close"]);
      if (!ok)
        throw ConfigError.option(
          option,
          'a file path, ":memory:", or a LedgerStore (e.g. new SqliteStore(path))',
          value,
        );
      return value!;
    },
    parse: (text) => text,
    show: String,
  };
}

/** A log level, or (in code) a pino logger. */
export function logger(): Kind<Logger | LogLevel> {
  const level = choice(LOG_LEVELS);
  return {
    check(value, option) {
      if (typeof value === "string" && (LOG_LEVELS as readonly string[]).includes(value)) return value;
      if (!hasMethods(value, ["error", "warn", "info", "debug"]))
        throw ConfigError.option(option, `a pino logger or one of ${LOG_LEVELS.join(", ")}`, value);
      return value!;
    },
    parse: level.parse,
    show: String,
  };
}

/**
 * Canned patterns, compiled: in code, strings (regular expressions or phrases) or RegExps; in a
 * variable, a JSON array of strings or the path of a file with one a line (blank lines and lines
 * starting with # are ignored).
 */
export function patterns(): Kind<readonly (string | RegExp)[], RegExp[]> {
  return {
    check(value, option) {
      if (value === undefined) return [];
      if (!Array.isArray(value)) throw ConfigError.option(option, "an array of strings or RegExps", value);
      return value.map((p, i) => {
        if (p instanceof RegExp) return p;
        if (typeof p !== "string") throw ConfigError.option(option, "strings or RegExps", p);
        return compilePattern(p, `option ${option}[${i}]`, option);
      });
    },
    parse(text, variable) {
      let list: unknown;
      let origin: string;
      if (text.startsWith("[")) {
        try {
          list = JSON.parse(text);
        } catch (e) {
          throw ConfigError.variable(
            variable,
            text,
            `a JSON array of strings or a file path (${(e as Error).message})`,
          );
        }
        origin = `${variable} entry`;
      } else {
        let file: string;
        try {
          file = readFileSync(text, "utf8");
        } catch (e) {
          throw new ConfigError(
            variable,
            `${variable}: cannot read the patterns file ${text} (${(e as NodeJS.ErrnoException).code ?? e}) ` +
              '(to give patterns inline, use a JSON array such as ["session busy"])',
          );
        }
        list = file
          .split(/\r?\n/)
          .map((l) => l.trim())
          .filter((l) => l !== "" && !l.startsWith("#"));
        origin = `${variable} (${text}) pattern`;
      }
      if (!Array.isArray(list) || list.some((p) => typeof p !== "string"))
        throw ConfigError.variable(variable, text, "a JSON array of strings");
      compilePatterns(list as string[], origin, variable);
      return list as string[];
    },
    show: (value) => (value === undefined ? "(none)" : JSON.stringify(value)),
  };
}

/** Caps per judge kind, in USD (Infinity, or `"none"` in a variable's JSON, for no cap). */
export function judgeCaps(): Kind<Readonly<Record<string, number>>, Record<string, number>> {
  const cap = usd();
  return {
    check(value, option) {
      if (value === undefined) return {};
      if (value === null || typeof value !== "object" || Array.isArray(value))
        throw ConfigError.option(
          option,
          "an object of judge kind -> USD per 24 h (Infinity for no cap)",
          value,
        );
      const out: Record<string, number> = {};
      for (const [judge, usd] of Object.entries(value)) {
        if (judge === "" || judge.length > 256)
          throw ConfigError.option(option, "judge kinds of 1 to 256 characters", judge);
        out[judge] = cap.check(usd, `${option}.${judge}`);
      }
      return out;
    },
    parse(text, variable) {
      const example =
        'a JSON object of judge kind -> USD per 24 h, such as {"quality_assessment": 2, "gate": "none"}';
      let data: unknown;
      try {
        data = JSON.parse(text);
      } catch (e) {
        throw new ConfigError(
          variable,
          `${variable} is not valid JSON (${(e as Error).message}): expected ${example}`,
        );
      }
      if (data === null || typeof data !== "object" || Array.isArray(data))
        throw ConfigError.variable(variable, text, example);
      const out: Record<string, number> = {};
      for (const [judge, usd] of Object.entries(data)) {
        if (typeof usd === "string" && NONE.test(usd)) out[judge] = Infinity;
        else if (typeof usd === "number" && Number.isFinite(usd) && usd >= 0) out[judge] = usd;
        else {
          throw new ConfigError(
            variable,
            `${variable}: the cap of judge kind ${JSON.stringify(judge)} must be an amount in USD >= 0 or "none", got ${JSON.stringify(usd)}`,
          );
        }
      }
      return out;
    },
    show: (value) => (value === undefined ? "(none)" : JSON.stringify(value)),
  };
}

/**
 * Prices in USD per million tokens, merged over {@link DEFAULT_PRICES}: in a variable, inline JSON
 * (a text starting with "{") or the path of a JSON file.
 */
export function prices(): Kind<Readonly<Record<string, ModelPrice>>> {
  return {
    check: (value, option) =>
      value === undefined
        ? DEFAULT_PRICES
        : { ...DEFAULT_PRICES, ...parsePrices(value, `option ${option}`, option) },
    // "[" too: an inline array is a mistake to report as such, not a file that cannot be read.
    parse: (text, variable) =>
      /^[{[]/.test(text) ? pricesFromJson(text, variable) : loadPriceFile(text, variable),
    show: (value) => (value === undefined ? "(built in)" : JSON.stringify(value)),
  };
}
