import { readFileSync } from "node:fs";
import { ConfigError } from "../errors.js";

/**
 * USD per million tokens. Money inside the guard is integer micro-dollars, and a price in USD
 * per million tokens is exactly micro-dollars per token, so costs are sums of integers.
 */
export interface ModelPrice {
  readonly input: number;
  readonly output: number;
  /** Writing the 5-minute prompt cache. @default 1.25 x input */
  readonly cacheWrite5m?: number;
  /** Writing the 1-hour prompt cache. @default 2 x input */
  readonly cacheWrite1h?: number;
  /** Reading the prompt cache. @default 0.1 x input */
  readonly cacheRead?: number;
  /**
   * Rates of a call whose prompt (input, cache reads and cache writes together) is over
   * `aboveInputTokens`: the whole call is billed at them (Gemini 2.5 Pro over 200k tokens, Claude
   * Sonnet 4 and 4.5 with the 1M-token context). Cache rates default from its own `input`.
   */
  readonly longContext?: LongContextPrice;
}

export interface LongContextPrice extends Omit<ModelPrice, "longContext"> {
  readonly aboveInputTokens: number;
}

const LONG_200K = 200_000;

/**
 * The largest context window of a model in {@link DEFAULT_PRICES}, in tokens: GPT-4.1 takes
 * 1,047,576, Gemini 2.5 1,048,576, Claude Sonnet 4 and 4.5 a million with the 1M-token context.
 */
export const LARGEST_CONTEXT_TOKENS = 1_048_576;

/**
 * List prices of the judge models of Anthropic, OpenAI and Google, as the providers published
 * them in 2026 (checked in November 2026). Dated or versioned ids (claude-sonnet-4-5-20250929,
 * gpt-4.1-2025-04-14, gemini-2.5-flash-preview-09-2025) match their family; other ids do not
 * (gpt-5-pro is not gpt-5), and a model not in the table is charged at its highest rates.
 * OpenAI and Gemini charge nothing to write their caches and bill cached input at `cacheRead`.
 */
export const DEFAULT_PRICES: Readonly<Record<string, ModelPrice>> = {
  // Anthropic
  "claude-opus-4-6": { input: 5, output: 25 },
  "claude-opus-4-5": { input: 5, output: 25 },
  "claude-opus-4-1": { input: 15, output: 75 },
  "claude-opus-4": { input: 15, output: 75 },
  "claude-sonnet-4-6": { input: 3, output: 15 },
  "claude-sonnet-4-5": {
    input: 3,
    output: 15,
    longContext: { aboveInputTokens: LONG_200K, input: 6, output: 22.5 },
  },
  "claude-sonnet-4": {
    input: 3,
    output: 15,
    longContext: { aboveInputTokens: LONG_200K, input: 6, output: 22.5 },
  },
  "claude-3-7-sonnet": { input: 3, output: 15 },
  "claude-haiku-4-5": { input: 1, output: 5 },
  "claude-3-5-haiku": { input: 0.8, output: 4 },
  "claude-3-haiku": { input: 0.25, output: 1.25 },
  // OpenAI (prompt_tokens include the cached ones; reasoning tokens are output)
  "gpt-5": { input: 1.25, output: 10, cacheRead: 0.125 },
  "gpt-5-mini": { input: 0.25, output: 2, cacheRead: 0.025 },
  "gpt-5-nano": { input: 0.05, output: 0.4, cacheRead: 0.005 },
  "gpt-4.1": { input: 2, output: 8, cacheRead: 0.5 },
  "gpt-4.1-mini": { input: 0.4, output: 1.6, cacheRead: 0.1 },
  "gpt-4.1-nano": { input: 0.1, output: 0.4, cacheRead: 0.025 },
  "gpt-4o": { input: 2.5, output: 10, cacheRead: 1.25 },
  "gpt-4o-mini": { input: 0.15, output: 0.6, cacheRead: 0.075 },
  o3: { input: 2, output: 8, cacheRead: 0.5 },
  "o3-mini": { input: 1.1, output: 4.4, cacheRead: 0.55 },
  "o4-mini": { input: 1.1, output: 4.4, cacheRead: 0.275 },
  // Google (promptTokenCount includes the cached tokens; thinking tokens are output)
  "gemini-2.5-pro": {
    input: 1.25,
    output: 10,
    cacheRead: 0.125,
    longContext: { aboveInputTokens: LONG_200K, input: 2.5, output: 15, cacheRead: 0.25 },
  },
  "gemini-2.5-flash": { input: 0.3, output: 2.5, cacheRead: 0.03 },
  "gemini-2.5-flash-lite": { input: 0.1, output: 0.4, cacheRead: 0.01 },
};

/** Token counts of one call, in the Anthropic API's own terms. */
export interface Usage {
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cacheReadTokens?: number;
  /** Cache writes billed at the 5-minute rate. */
  readonly cacheWriteTokens?: number;
  /** Cache writes billed at the 1-hour rate. */
  readonly cacheWrite1hTokens?: number;
}

/** A model's rates with every default filled in. */
export interface Rates {
  readonly input: number;
  readonly output: number;
  readonly cacheWrite5m: number;
  readonly cacheWrite1h: number;
  readonly cacheRead: number;
  readonly longContext?: Rates & { readonly aboveInputTokens: number };
}

export interface ResolvedPrice {
  readonly model: string;
  readonly price: Rates;
  /** False when the model had no price and the highest known rate is used. */
  readonly known: boolean;
}

function flat(p: Omit<ModelPrice, "longContext">): Omit<Rates, "longContext"> {
  return {
    input: p.input,
    output: p.output,
    cacheWrite5m: p.cacheWrite5m ?? p.input * 1.25,
    cacheWrite1h: p.cacheWrite1h ?? p.input * 2,
    cacheRead: p.cacheRead ?? p.input * 0.1,
  };
}

function complete(p: ModelPrice): Rates {
  const l = p.longContext;
  return l === undefined
    ? flat(p)
    : { ...flat(p), longContext: { ...flat(l), aboveInputTokens: l.aboveInputTokens } };
}

const RATE_KINDS = ["input", "output", "cacheWrite5m", "cacheWrite1h", "cacheRead"] as const;

/**
 * What follows a family's id in a dated or versioned id of it: a date or version number
 * (`-20250929`, `-2025-04-14`, `-001`), `-latest`, `-preview...`, `-exp...`, or `@...` (Vertex).
 * A word (`-pro`, `-mini`, `-lite`) names another model, which may cost far more.
 */
const VERSION_SUFFIX = /^(@|-(\d|latest|preview|exp))/;

/**
 * Looks prices up by model id. A model with no price is charged at the highest rate of every
 * kind in the table (never at $0), and `onUnknown` is told once per model.
 */
export class PriceTable {
  readonly #prices = new Map<string, Rates>();
  readonly #resolved = new Map<string, ResolvedPrice>();
  readonly #fallback: Rates;
  readonly #byLength: string[];
  readonly #onUnknown: (model: string) => void;

  constructor(prices: Readonly<Record<string, ModelPrice>>, onUnknown: (model: string) => void = () => {}) {
    for (const [model, p] of Object.entries(prices)) this.#prices.set(model.toLowerCase(), complete(p));
    if (this.#prices.size === 0)
      throw new ConfigError("prices", "the price table is empty: give at least one model");
    // Every rate a call may be billed at, long-context ones included.
    const all = [...this.#prices.values()].flatMap((p) => (p.longContext ? [p, p.longContext] : [p]));
    const max = (k: (typeof RATE_KINDS)[number]) => Math.max(...all.map((p) => p[k]));
    this.#fallback = {
      input: max("input"),
      output: max("output"),
      cacheWrite5m: max("cacheWrite5m"),
      cacheWrite1h: max("cacheWrite1h"),
      cacheRead: max("cacheRead"),
    };
    this.#byLength = [...this.#prices.keys()].sort((a, b) => b.length - a.length);
    this.#onUnknown = onUnknown;
  }

  resolve(model: string): ResolvedPrice {
    const hit = this.#resolved.get(model);
    if (hit !== undefined) return hit;
    const id = model.toLowerCase();
    const exact = this.#prices.get(id);
    const prefix = exact
      ? id
      : this.#byLength.find((k) => id.startsWith(k) && VERSION_SUFFIX.test(id.slice(k.length)));
    const price = exact ?? (prefix === undefined ? undefined : this.#prices.get(prefix));
    const resolved: ResolvedPrice =
      price === undefined
        ? { model, price: this.#fallback, known: false }
        : { model: prefix ?? id, price, known: true };
    if (!resolved.known) this.#onUnknown(model);
    if (this.#resolved.size < 1000) this.#resolved.set(model, resolved);
    return resolved;
  }

  /** Cost of a call in integer micro-dollars (rounded to the nearest). */
  costMicros(model: string, usage: Usage): number {
    return priced(this.resolve(model).price, usage);
  }

  /** The most a call of this usage can cost on any model: at the table's highest rate of each kind. */
  ceilingMicros(usage: Usage): number {
    return priced(this.#fallback, usage);
  }
}

function priced(rates: Rates, usage: Usage): number {
  const prompt =
    usage.inputTokens +
    (usage.cacheReadTokens ?? 0) +
    (usage.cacheWriteTokens ?? 0) +
    (usage.cacheWrite1hTokens ?? 0);
  const long = rates.longContext;
  const price = long !== undefined && prompt > long.aboveInputTokens ? long : rates;
  const micros =
    usage.inputTokens * price.input +
    usage.outputTokens * price.output +
    (usage.cacheReadTokens ?? 0) * price.cacheRead +
    (usage.cacheWriteTokens ?? 0) * price.cacheWrite5m +
    (usage.cacheWrite1hTokens ?? 0) * price.cacheWrite1h;
  return Math.round(micros);
}

const PRICE_FIELDS = [...RATE_KINDS, "longContext"] as const;
const LONG_FIELDS = [...RATE_KINDS, "aboveInputTokens"] as const;

/**
 * Parses a price override file: `{"model-id": {"input": 3, "output": 15, ...}}` in USD per
 * million tokens. Entries are merged over {@link DEFAULT_PRICES}. Errors are `ConfigError`s
 * naming the file, the model and the field; `variable`, when the path came from one, first.
 */
export function loadPriceFile(path: string, variable?: string): Record<string, ModelPrice> {
  const setting = variable ?? "prices";
  const from = variable === undefined ? "" : `${variable}: `;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? e;
    throw new ConfigError(setting, `${from}cannot read the price file ${path}: ${why}`);
  }
  return pricesFromJson(text, `${from}the price file ${path}`, setting);
}

/** Prices written as JSON, merged over {@link DEFAULT_PRICES}; `where` names the text in errors. */
export function pricesFromJson(text: string, where: string, setting = where): Record<string, ModelPrice> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(setting, `${where} is not valid JSON: ${(e as Error).message}`);
  }
  return { ...DEFAULT_PRICES, ...parsePrices(data, where, setting) };
}

/**
 * Checks a table of prices, `where` naming it in errors (`ConfigError`s for `setting`, the option
 * or variable that gave it).
 */
export function parsePrices(data: unknown, where: string, setting = where): Record<string, ModelPrice> {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new ConfigError(
      setting,
      `${where} must be a JSON object of model id -> {input, output} in USD per million tokens`,
    );
  }
  const out: Record<string, ModelPrice> = {};
  for (const [model, entry] of Object.entries(data)) {
    const price = rates(entry, `"${model}"`, where, setting, PRICE_FIELDS) as Record<string, unknown>;
    if (price.longContext !== undefined) {
      const long = rates(price.longContext, `"${model}".longContext`, where, setting, LONG_FIELDS);
      if (long.aboveInputTokens === undefined) {
        throw new ConfigError(
          setting,
          `${where}: "${model}".longContext has no "aboveInputTokens" (the prompt size, in tokens, above which its rates apply)`,
        );
      }
      price.longContext = long;
    }
    out[model] = price as unknown as ModelPrice;
  }
  return out;
}

/** One entry's rates, checked field by field; errors name the model and the field. */
function rates(
  entry: unknown,
  name: string,
  where: string,
  setting: string,
  fields: readonly string[],
): Record<string, number | object> {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    throw new ConfigError(setting, `${where}: ${name} must be an object like {"input": 3, "output": 15}`);
  }
  const e = entry as Record<string, unknown>;
  for (const k of Object.keys(e)) {
    if (!fields.includes(k)) {
      throw new ConfigError(
        setting,
        `${where}: ${name} has an unknown field "${k}" (allowed: ${fields.join(", ")})`,
      );
    }
  }
  const price: Record<string, number | object> = {};
  for (const field of fields) {
    const v = e[field];
    if (v === undefined && (field === "input" || field === "output")) {
      throw new ConfigError(setting, `${where}: ${name} has no "${field}" price (USD per million tokens)`);
    }
    if (v === undefined) continue;
    if (field === "longContext") {
      price[field] = v as object;
      continue;
    }
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      const what =
        field === "aboveInputTokens"
          ? "a non-negative number of tokens"
          : "a non-negative number of USD per million tokens";
      throw new ConfigError(setting, `${where}: ${name}.${field} must be ${what}, got ${JSON.stringify(v)}`);
    }
    price[field] = v;
  }
  return price;
}
