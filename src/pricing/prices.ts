import { readFileSync } from "node:fs";

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
}

/** Anthropic list prices, November 2026. Dated ids (claude-sonnet-4-5-20250929) match by prefix. */
export const DEFAULT_PRICES: Readonly<Record<string, ModelPrice>> = {
  "claude-opus-4-6": { input: 5, output: 25 },
  "claude-opus-4-5": { input: 5, output: 25 },
  "claude-opus-4-1": { input: 15, output: 75 },
  "claude-opus-4": { input: 15, output: 75 },
  "claude-sonnet-4-6": { input: 3, output: 15 },
  "claude-sonnet-4-5": { input: 3, output: 15 },
  "claude-sonnet-4": { input: 3, output: 15 },
  "claude-3-7-sonnet": { input: 3, output: 15 },
  "claude-haiku-4-5": { input: 1, output: 5 },
  "claude-3-5-haiku": { input: 0.8, output: 4 },
  "claude-3-haiku": { input: 0.25, output: 1.25 },
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

export interface ResolvedPrice {
  readonly model: string;
  readonly price: Required<ModelPrice>;
  /** False when the model had no price and the highest known rate is used. */
  readonly known: boolean;
}

function complete(p: ModelPrice): Required<ModelPrice> {
  return {
    input: p.input,
    output: p.output,
    cacheWrite5m: p.cacheWrite5m ?? p.input * 1.25,
    cacheWrite1h: p.cacheWrite1h ?? p.input * 2,
    cacheRead: p.cacheRead ?? p.input * 0.1,
  };
}

/**
 * Looks prices up by model id. A model with no price is charged at the highest rate of every
 * kind in the table (never at $0), and `onUnknown` is told once per model.
 */
export class PriceTable {
  readonly #prices = new Map<string, Required<ModelPrice>>();
  readonly #resolved = new Map<string, ResolvedPrice>();
  readonly #fallback: Required<ModelPrice>;
  readonly #byLength: string[];
  readonly #onUnknown: (model: string) => void;

  constructor(prices: Readonly<Record<string, ModelPrice>>, onUnknown: (model: string) => void = () => {}) {
    for (const [model, p] of Object.entries(prices)) this.#prices.set(model.toLowerCase(), complete(p));
    if (this.#prices.size === 0) throw new TypeError("the price table is empty: give at least one model");
    const all = [...this.#prices.values()];
    const max = (f: (p: Required<ModelPrice>) => number) => Math.max(...all.map(f));
    this.#fallback = {
      input: max((p) => p.input),
      output: max((p) => p.output),
      cacheWrite5m: max((p) => p.cacheWrite5m),
      cacheWrite1h: max((p) => p.cacheWrite1h),
      cacheRead: max((p) => p.cacheRead),
    };
    this.#byLength = [...this.#prices.keys()].sort((a, b) => b.length - a.length);
    this.#onUnknown = onUnknown;
  }

  resolve(model: string): ResolvedPrice {
    const hit = this.#resolved.get(model);
    if (hit !== undefined) return hit;
    const id = model.toLowerCase();
    const exact = this.#prices.get(id);
    const prefix = exact ? id : this.#byLength.find((k) => id.startsWith(`${k}-`) || id.startsWith(`${k}@`));
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

function priced(price: Required<ModelPrice>, usage: Usage): number {
  const micros =
    usage.inputTokens * price.input +
    usage.outputTokens * price.output +
    (usage.cacheReadTokens ?? 0) * price.cacheRead +
    (usage.cacheWriteTokens ?? 0) * price.cacheWrite5m +
    (usage.cacheWrite1hTokens ?? 0) * price.cacheWrite1h;
  return Math.round(micros);
}

const PRICE_FIELDS = ["input", "output", "cacheWrite5m", "cacheWrite1h", "cacheRead"] as const;

/**
 * Parses a price override file: `{"model-id": {"input": 3, "output": 15, ...}}` in USD per
 * million tokens. Entries are merged over {@link DEFAULT_PRICES}. Errors name the file, the
 * model and the field.
 */
export function loadPriceFile(path: string): Record<string, ModelPrice> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new TypeError(`cannot read the price file ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`the price file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return { ...DEFAULT_PRICES, ...parsePrices(data, `the price file ${path}`) };
}

export function parsePrices(data: unknown, where: string): Record<string, ModelPrice> {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new TypeError(
      `${where} must be a JSON object of model id -> {input, output} in USD per million tokens`,
    );
  }
  const out: Record<string, ModelPrice> = {};
  for (const [model, entry] of Object.entries(data)) {
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
      throw new TypeError(`${where}: "${model}" must be an object like {"input": 3, "output": 15}`);
    }
    const e = entry as Record<string, unknown>;
    const price: Record<string, number> = {};
    for (const field of PRICE_FIELDS) {
      const v = e[field];
      if (v === undefined && (field === "input" || field === "output")) {
        throw new TypeError(`${where}: "${model}" has no "${field}" price (USD per million tokens)`);
      }
      if (v === undefined) continue;
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
        throw new TypeError(
          `${where}: "${model}".${field} must be a non-negative number of USD per million tokens, got ${JSON.stringify(v)}`,
        );
      }
      price[field] = v;
    }
    for (const k of Object.keys(e)) {
      if (!(PRICE_FIELDS as readonly string[]).includes(k)) {
        throw new TypeError(
          `${where}: "${model}" has an unknown field "${k}" (allowed: ${PRICE_FIELDS.join(", ")})`,
        );
      }
    }
    out[model] = price as unknown as ModelPrice;
  }
  return out;
}
