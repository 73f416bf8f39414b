import type { ReplySignature } from "../fingerprint/fingerprint.js";
import { tokenize } from "../fingerprint/normalize.js";
import {
  nearWords,
  numberDifference,
  type SimilarityLimits,
  wordDifference,
} from "../fingerprint/similarity.js";
import type { CannedCatalog } from "./catalog.js";
import { findQuote, setAside } from "./echo.js";
import {
  accumulate,
  type Comparison,
  type DetectionThresholds,
  type MatchKind,
  type Reason,
  stuckThreshold,
  type Weighing,
  type Work,
  weigh,
} from "./evidence.js";
import { contentWords, onlyThanks, soundsBlocked } from "./vocabulary.js";

/** Replies a new reply is compared with. */
export const WINDOW = 12;
/** Replies longer than this (normalised characters) are compared by fingerprint only. */
const MAX_COMPARED_CHARS = 4000;
/** A new reply with this much substance is a real answer. */
const LONG_CHARS = 400;
/** Content words beyond which two replies are not compared for relatedness. */
const MAX_RELATED_WORDS = 60;

/** Facts about one reply, as the detector weighs them. */
export interface ReplyWork {
  readonly work: Work;
}

/** One reply as the window keeps it: no raw text, normalised words only while short. */
interface Entry {
  readonly turn: number;
  /** Index of the user message it answered (-1 when there was none). */
  readonly inputTurn: number;
  readonly fingerprint: string;
  /** Normalised core (boilerplate lines and a quote of the input set aside). */
  readonly core: string;
  /** Tokens of the core; null when the reply is too long to compare word by word. */
  readonly tokens: readonly string[] | null;
  readonly numbers: readonly string[];
  readonly quoted: boolean;
  readonly input: ReplySignature | undefined;
  readonly work: Work;
  readonly known: boolean;
  readonly content: ReadonlySet<string> | null;
}

/** One reply's step of evidence, for the ledger and `judge-guard explain`: no text. */
export interface EvidenceStep {
  /** 1-based index of the reply in the transcript. */
  readonly turn: number;
  readonly fingerprint: string;
  /** Characters of the reply as written. */
  readonly chars: number;
  /** How it matched an earlier reply in the window ("new" when it did not). */
  readonly match: MatchKind | "new";
  /** 1-based index of the reply it matched. */
  readonly matchedTurn: number | null;
  readonly weight: number | "reset";
  /** The accumulated score after this reply. */
  readonly score: number;
  readonly threshold: number;
  readonly stuck: boolean;
  readonly reasons: readonly Reason[];
}

/** Steps stored as JSON (the ledger's episodes.trail); null when absent or not a list. */
export function parseTrail(json: unknown): EvidenceStep[] | null {
  if (typeof json !== "string") return null;
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? (v as EvidenceStep[]) : null;
  } catch {
    return null;
  }
}

export interface NewReply {
  readonly turn: number;
  readonly inputTurn: number;
  readonly text: string;
  readonly sig: ReplySignature;
  readonly input: ReplySignature | undefined;
  readonly work: Work;
}

export interface WindowOptions extends DetectionThresholds {
  readonly similarity: SimilarityLimits;
}

/** What one key's replies have shown so far: the window and the accumulated score. */
export class EvidenceWindow {
  #entries: Entry[] = [];
  score = 0;
  /** Replies counted in the current stretch of evidence (since the score was last 0), plus one. */
  repeats = 0;
  /** The steps of the last {@link WINDOW} replies, oldest first. */
  readonly trail: EvidenceStep[] = [];

  reset(): void {
    this.#entries = [];
    this.score = 0;
    this.repeats = 0;
    this.trail.length = 0;
  }

  add(
    reply: NewReply,
    boilerplate: ReadonlySet<string>,
    catalog: CannedCatalog,
    o: WindowOptions,
  ): EvidenceStep {
    const entry = makeEntry(reply, boilerplate, catalog);
    const { comparison, matched } = this.#compare(entry, reply, catalog, o);
    const w: Weighing = weigh(comparison, o);
    this.score = accumulate(this.score, w, o);
    if (this.score === 0) this.repeats = 0;
    else if (comparison.match !== null && (w.weight as number) > 0)
      this.repeats = Math.max(2, this.repeats + 1);
    const threshold = stuckThreshold(o);
    const isRepeat = comparison.match !== null && comparison.match !== "slot";
    const stuck = isRepeat && w.weight !== "reset" && w.weight >= 0 && this.score >= threshold;
    const step: EvidenceStep = {
      turn: reply.turn + 1,
      fingerprint: reply.sig.fingerprint,
      chars: reply.text.length,
      match: comparison.match ?? "new",
      matchedTurn: matched ? matched.turn + 1 : null,
      weight: w.weight,
      score: round(this.score),
      threshold,
      stuck,
      reasons: w.reasons,
    };
    this.#entries.push(entry);
    if (this.#entries.length > WINDOW) this.#entries.shift();
    this.trail.push(step);
    if (this.trail.length > WINDOW) this.trail.shift();
    return step;
  }

  /** Compares the reply with the window: the match that weighs most. */
  #compare(
    entry: Entry,
    reply: NewReply,
    catalog: CannedCatalog,
    o: WindowOptions,
  ): { comparison: Comparison; matched: Entry | null } {
    const substanceChars = entry.core.length;
    const base = {
      substanceChars,
      blocked: false,
      thanks: false,
      related: false,
      long: substanceChars >= LONG_CHARS,
    };
    let best: { comparison: Comparison; matched: Entry; weight: number } | null = null;
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const prior = this.#entries[i]!;
      const match = matchKind(entry, prior, reply, o.similarity);
      if (match === null) continue;
      const work = entry.work === "none" ? prior.work : entry.work;
      const monologue = prior.inputTurn === entry.inputTurn;
      const comparison: Comparison = {
        ...base,
        match,
        known: entry.known || prior.known || catalog.hasFingerprint(prior.fingerprint),
        sameInput: !monologue && sameInput(entry.input, prior.input, o.similarity),
        numberChanges: numberDifference(entry.numbers, prior.numbers),
        work,
        blocked: entry.tokens !== null && soundsBlocked(entry.tokens),
        thanks:
          !monologue &&
          entry.input !== undefined &&
          prior.input !== undefined &&
          onlyThanks(entry.input.words) &&
          onlyThanks(prior.input.words),
        long: false,
      };
      const w = weigh(comparison, o).weight;
      const weight = w === "reset" ? -Infinity : w;
      if (best === null || weight > best.weight) best = { comparison, matched: prior, weight };
    }
    if (best !== null) return { comparison: best.comparison, matched: best.matched };
    return {
      comparison: {
        ...base,
        match: null,
        known: entry.known,
        sameInput: false,
        numberChanges: 0,
        work: entry.work,
        related: this.#related(entry),
      },
      matched: null,
    };
  }

  /** Whether a new reply says much the same as some reply in the window (a paraphrase). */
  #related(entry: Entry): boolean {
    const a = entry.content;
    if (a === null || a.size < 3) return false;
    for (const prior of this.#entries) {
      const b = prior.content;
      if (b === null || b.size < 3) continue;
      let shared = 0;
      for (const w of a) if (b.has(w)) shared++;
      if (shared >= 3 && shared >= 0.5 * Math.min(a.size, b.size)) return true;
    }
    return false;
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

function makeEntry(reply: NewReply, boilerplate: ReadonlySet<string>, catalog: CannedCatalog): Entry {
  const { sig, input } = reply;
  let core =
    boilerplate.size === 0 || !sig.lines.some((l) => boilerplate.has(l))
      ? sig.normalized
      : sig.lines.filter((l) => !boilerplate.has(l)).join(" ");
  let numbers = sig.numbers;
  let quoted = false;
  if (input !== undefined && input.normalized !== "" && core.length <= MAX_COMPARED_CHARS) {
    const quote = findQuote(reply.text, core, input.normalized);
    if (quote !== null) {
      core = setAside(core, quote);
      numbers = without(numbers, input.numbers);
      quoted = true;
    }
  }
  const short = core.length <= MAX_COMPARED_CHARS;
  const tokens = short ? (core === sig.normalized ? sig.words : tokenize(core)) : null;
  const content = tokens !== null && tokens.length <= 4 * MAX_RELATED_WORDS ? contentWords(tokens) : null;
  return {
    turn: reply.turn,
    inputTurn: reply.inputTurn,
    fingerprint: sig.fingerprint,
    core,
    tokens,
    numbers,
    quoted,
    input,
    work: reply.work,
    known: catalog.recognises(sig.fingerprint, reply.text.length <= MAX_COMPARED_CHARS ? reply.text : ""),
    content: content !== null && content.size <= MAX_RELATED_WORDS ? content : null,
  };
}

/** `numbers` without one occurrence of each of `remove`. */
function without(numbers: readonly string[], remove: readonly string[]): readonly string[] {
  if (remove.length === 0) return numbers;
  const left = [...numbers];
  for (const n of remove) {
    const at = left.indexOf(n);
    if (at >= 0) left.splice(at, 1);
  }
  return left;
}

/** How `entry` matches `prior`, or null when they are different replies. */
function matchKind(entry: Entry, prior: Entry, reply: NewReply, limits: SimilarityLimits): MatchKind | null {
  if (entry.core === prior.core) {
    if (entry.core === "") return null;
    if (entry.quoted || prior.quoted) return "quote";
    return numberDifference(entry.numbers, prior.numbers) === 0 ? "exact" : "volatile";
  }
  const a = entry.tokens;
  const b = prior.tokens;
  if (a === null || b === null || a.length === 0 || b.length === 0) return null;
  if (!nearWords(a, b, limits)) return null;
  return fromInput(a, b, reply.input) ? "slot" : "near";
}

/**
 * Whether the words that differ between two near-duplicate replies include a word of the
 * user's latest message: the reply was filled in from the request, not repeated.
 */
function fromInput(a: readonly string[], b: readonly string[], input: ReplySignature | undefined): boolean {
  if (input === undefined || wordDifference(a, b) === 0) return false;
  const counts = new Map<string, number>();
  for (const w of a) counts.set(w, (counts.get(w) ?? 0) + 1);
  for (const w of b) counts.set(w, (counts.get(w) ?? 0) - 1);
  const asked = new Set(input.words);
  for (const [w, c] of counts)
    if (c !== 0 && w.length >= 3 && !w.startsWith("_") && asked.has(w)) return true;
  return false;
}

/**
 * Near-identical inputs: the user asked the same thing again, perhaps with words added ("sorry,
 * when exactly is the branch cut?" after "when is the branch cut?"). A word or number put in
 * place of another makes another question ("restart service a" / "restart service b").
 */
function sameInput(
  a: ReplySignature | undefined,
  b: ReplySignature | undefined,
  limits: SimilarityLimits,
): boolean {
  if (a === undefined || b === undefined || a.normalized === "" || b.normalized === "") return false;
  if (numberDifference(a.numbers, b.numbers) !== 0) return false;
  if (a.normalized === b.normalized) return true;
  if (!nearWords(a.words, b.words, limits)) return false;
  const [small, large] = a.words.length <= b.words.length ? [a.words, b.words] : [b.words, a.words];
  const counts = new Map<string, number>();
  for (const w of large) counts.set(w, (counts.get(w) ?? 0) + 1);
  for (const w of small) {
    const c = counts.get(w) ?? 0;
    if (c === 0) return false;
    counts.set(w, c - 1);
  }
  return true;
}
