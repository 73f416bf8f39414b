import type { PriceTable, Usage } from "../pricing/prices.js";
import type { EstimateStats } from "../store/types.js";
import type { CallEstimate } from "./admission.js";

export interface EstimatorOptions {
  /** Output tokens assumed before a judge kind has been seen a few times. @default 1024 */
  readonly defaultOutputTokens: number;
  /** Ceiling on output tokens when the request gives no max-tokens hint. @default 4096 */
  readonly defaultMaxTokens: number;
  /** Characters per token for the input guess. @default 4 */
  readonly charsPerToken: number;
  /** Tokens of system prompt and instructions around the transcript. @default 600 */
  readonly promptOverheadTokens: number;
}

export const DEFAULT_ESTIMATOR: EstimatorOptions = {
  defaultOutputTokens: 1024,
  defaultMaxTokens: 4096,
  charsPerToken: 4,
  promptOverheadTokens: 600,
};

const ALPHA = 0.2;

/**
 * Before a judge has been seen, its prompt size is unknown: its worst-case input is taken as one
 * token per transcript character (tokenizers average three to four characters a token) plus
 * four times the assumed prompt overhead. Once observed, the largest input ratio seen, with a
 * margin, replaces it.
 */
const COLD_OVERHEAD_FACTOR = 4;
const WARM_UP = 3;

export interface Estimate extends CallEstimate {
  readonly expected: Usage;
  readonly worst: Usage;
}

export class CostEstimator {
  readonly #stats = new Map<string, EstimateStats>();
  readonly #options: EstimatorOptions;
  readonly #prices: PriceTable;

  constructor(
    prices: PriceTable,
    options: EstimatorOptions = DEFAULT_ESTIMATOR,
    initial: Iterable<EstimateStats> = [],
  ) {
    this.#prices = prices;
    this.#options = options;
    for (const s of initial) this.#stats.set(statKey(s.judge, s.model), s);
  }

  /**
   * What a call may cost. `worstOn` shapes the worst case: `chain`, the models it may escalate
   * to, each run in turn (summed over the chain); `ceiling`, at least the call priced at the
   * table's highest rates (any model). Neither: its own model only.
   */
  estimate(
    judge: string,
    model: string,
    transcriptChars: number,
    maxTokens?: number,
    worstOn: { readonly chain?: readonly string[] | undefined; readonly ceiling?: boolean } = {},
  ): Estimate {
    const o = this.#options;
    const s = this.#stats.get(statKey(judge, model));
    const ceiling = maxTokens ?? Math.max(o.defaultMaxTokens, s?.outputMax ?? 0);
    const base = transcriptChars / o.charsPerToken + o.promptOverheadTokens;
    const warm = s !== undefined && s.samples >= WARM_UP;
    const expectedOut = warm
      ? Math.min(ceiling, Math.ceil(s.outputMean + Math.sqrt(s.outputVar)))
      : Math.min(ceiling, o.defaultOutputTokens);
    const expectedIn = Math.ceil(base * (warm ? s.inputRatio : 1));
    const worstIn =
      s === undefined
        ? Math.ceil(transcriptChars + COLD_OVERHEAD_FACTOR * o.promptOverheadTokens)
        : Math.ceil(base * Math.max(1.5, s.inputRatioMax * 1.25));
    const expected: Usage = { inputTokens: expectedIn, outputTokens: Math.max(1, expectedOut) };
    const worst: Usage = { inputTokens: worstIn, outputTokens: ceiling };
    return {
      expected,
      worst,
      expectedMicros: this.#prices.costMicros(model, expected),
      worstMicros: Math.max(
        (worstOn.chain ?? []).reduce(
          (sum, m) => sum + this.#prices.costMicros(m, worst),
          this.#prices.costMicros(model, worst),
        ),
        worstOn.ceiling ? this.#prices.ceilingMicros(worst) : 0,
      ),
    };
  }

  /** Folds one observed call into the statistics and returns the updated row (to persist). */
  learn(judge: string, model: string, transcriptChars: number, usage: Usage): EstimateStats {
    const k = statKey(judge, model);
    const prev = this.#stats.get(k);
    const base = transcriptChars / this.#options.charsPerToken + this.#options.promptOverheadTokens;
    const inputs = usage.inputTokens + (usage.cacheReadTokens ?? 0) + (usage.cacheWriteTokens ?? 0);
    const ratio = inputs / base;
    const out = usage.outputTokens;
    let next: EstimateStats;
    if (prev === undefined) {
      next = {
        judge,
        model,
        samples: 1,
        outputMean: out,
        outputVar: 0,
        outputMax: out,
        inputRatio: ratio,
        inputRatioMax: ratio,
      };
    } else {
      // Plain averages while warming up, then exponential weighting to follow drift.
      const a = prev.samples < 1 / ALPHA ? 1 / (prev.samples + 1) : ALPHA;
      const delta = out - prev.outputMean;
      const mean = prev.outputMean + a * delta;
      const variance = (1 - a) * (prev.outputVar + a * delta * delta);
      next = {
        judge,
        model,
        samples: prev.samples + 1,
        outputMean: mean,
        outputVar: variance,
        outputMax: Math.max(prev.outputMax, out),
        inputRatio: prev.inputRatio + a * (ratio - prev.inputRatio),
        inputRatioMax: Math.max(prev.inputRatioMax, ratio),
      };
    }
    this.#stats.set(k, next);
    return next;
  }
}

function statKey(judge: string, model: string): string {
  return `${judge}\u0000${model}`;
}
