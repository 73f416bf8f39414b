import { hash64, type ReplySignature, signReply } from "../fingerprint/fingerprint.js";
import { NON_ASCII, tokenize } from "../fingerprint/normalize.js";
import {
  lengthsAllow,
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
import { contentWords, onlyThanks, soundsBlocked, statusLine, topicWords } from "./vocabulary.js";

/** Replies a new reply is compared with. */
export const WINDOW = 12;
/** Replies longer than this (normalised characters) are compared by fingerprint only. */
const MAX_COMPARED_CHARS = 4000;
/**
 * Replies with at most this many tokens are compared word by word with the whole window (canned
 * lines are short); longer ones only with the reply just before them, and with the window by
 * their normalised core, which keeps a healthy session's work per reply small.
 */
const SHORT_TOKENS = 64;
/** A new reply with this much substance is a real answer. */
const LONG_CHARS = 400;
/** How much longer than the user's message a reply may be and still be searched for a quote of it. */
const QUOTE_SLACK_CHARS = 400;
/** A new reply this short that reads as a refusal, an error or a wait is a status line, not an answer. */
const BLOCKED_LINE_TOKENS = 20;
/** Content words beyond which two replies are not compared for relatedness. */
const MAX_RELATED_WORDS = 60;

/** Facts about one reply, as the detector weighs them. */
export interface ReplyWork {
  readonly work: Work;
}

/** One reply as the window keeps it: no raw text, its normalised form only. */
class Entry {
  readonly turn: number;
  /** Index of the user message it answered (-1 when there was none). */
  readonly inputTurn: number;
  /** The normalised reply, the fingerprint's source. */
  readonly normalized: string;
  /** Normalised core (boilerplate lines and a quote of the input set aside). */
  readonly core: string;
  readonly numbers: readonly string[];
  readonly quoted: boolean;
  readonly input: InputRef | undefined;
  readonly work: Work;
  /** The reply matches a canned pattern (checked for short replies only). */
  readonly patterned: boolean;
  /** New to the window and weighed against the evidence: an answer, as far as it could tell. */
  answered = false;
  /** A real answer, or work paid for that weighed against the evidence (a template filled with data). */
  worked = false;
  /** Core tokens: undefined until needed, null once dropped (a long reply that is no longer the latest). */
  #tokens: readonly string[] | null | undefined;
  readonly wordCount: number;
  #content: ReadonlySet<string> | null | undefined;
  #fingerprint: string | undefined;
  readonly #nonAscii: boolean;

  constructor(
    reply: NewReply,
    core: string,
    numbers: readonly string[],
    quoted: boolean,
    catalog: CannedCatalog,
  ) {
    const { sig } = reply;
    this.turn = reply.turn;
    this.inputTurn = reply.inputTurn;
    this.normalized = sig.normalized;
    this.core = core;
    this.numbers = numbers;
    this.quoted = quoted;
    this.input = reply.input;
    this.work = reply.work;
    this.#nonAscii = sig.nonAscii;
    if (core === sig.normalized) {
      this.wordCount = sig.wordCount;
      if (this.wordCount <= SHORT_TOKENS) this.#tokens = sig.words;
    } else {
      this.#tokens = core.length <= MAX_COMPARED_CHARS ? tokenize(core, sig.nonAscii) : null;
      this.wordCount = this.#tokens?.length ?? Number.POSITIVE_INFINITY;
    }
    // Patterns are for canned lines, which are short; a long reply is known by its fingerprint.
    this.patterned = this.short && catalog.matchesPattern(reply.text);
  }

  /** Short replies are compared word by word with the whole window; long ones with the previous reply. */
  get short(): boolean {
    return this.wordCount <= SHORT_TOKENS;
  }

  /**
   * The reply's fingerprint: of its normalised text, or, when it quotes the user's message, of
   * the text with the quote set aside, so that a canned line built around the quote is one
   * fingerprint in the registry whatever each user wrote.
   */
  get fingerprint(): string {
    this.#fingerprint ??= hash64(this.quoted ? this.core : this.normalized);
    return this.#fingerprint;
  }

  get tokens(): readonly string[] | null {
    if (this.#tokens === undefined)
      this.#tokens = this.core.length <= MAX_COMPARED_CHARS ? tokenize(this.core, this.#nonAscii) : null;
    return this.#tokens;
  }

  /** A long reply stops being compared word by word once another reply follows it. */
  retire(): void {
    if (!this.short) this.#tokens = null;
  }

  /** Content words, for short replies only. */
  get content(): ReadonlySet<string> | null {
    if (this.#content === undefined) {
      const words = this.short && this.tokens !== null ? contentWords(this.tokens) : null;
      this.#content = words !== null && words.size <= MAX_RELATED_WORDS ? words : null;
    }
    return this.#content;
  }

  known(catalog: CannedCatalog): boolean {
    return this.patterned || catalog.hasFingerprint(this.fingerprint);
  }
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

/** A step whose fingerprint is hashed only when someone reads it (most never are). */
class Step implements EvidenceStep {
  readonly #entry: Entry;
  readonly turn: number;
  readonly chars: number;
  readonly match: MatchKind | "new";
  readonly matchedTurn: number | null;
  readonly weight: number | "reset";
  readonly score: number;
  readonly threshold: number;
  readonly stuck: boolean;
  readonly reasons: readonly Reason[];

  constructor(entry: Entry, fields: Omit<EvidenceStep, "fingerprint" | "turn">) {
    this.#entry = entry;
    this.turn = entry.turn + 1;
    this.chars = fields.chars;
    this.match = fields.match;
    this.matchedTurn = fields.matchedTurn;
    this.weight = fields.weight;
    this.score = fields.score;
    this.threshold = fields.threshold;
    this.stuck = fields.stuck;
    this.reasons = fields.reasons;
  }

  get fingerprint(): string {
    return this.#entry.fingerprint;
  }

  toJSON(): EvidenceStep {
    return {
      turn: this.turn,
      fingerprint: this.fingerprint,
      chars: this.chars,
      match: this.match,
      matchedTurn: this.matchedTurn,
      weight: this.weight,
      score: this.score,
      threshold: this.threshold,
      stuck: this.stuck,
      reasons: this.reasons,
    };
  }
}

/** A step as a plain object (the steps the window gives compute their fingerprint on demand). */
export function plainStep(step: EvidenceStep): EvidenceStep {
  return step instanceof Step ? step.toJSON() : step;
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

/**
 * The user message a reply answered, signed only when a comparison needs it (most replies of a
 * healthy session never do). One per user message, shared by the replies that answered it.
 */
export class InputRef {
  readonly text: string | null;
  readonly chars: number;
  #sig: ReplySignature | undefined;
  /** Messages longer than this are kept as a hash: only an identical message is the same. */
  static readonly MAX_KEPT = 4000;
  readonly #hash: string | undefined;

  constructor(text: string) {
    this.chars = text.length;
    if (text.length > InputRef.MAX_KEPT) {
      this.text = null;
      this.#hash = hash64(text);
    } else this.text = text;
  }

  /** The signed message; null for a long one. */
  get sig(): ReplySignature | null {
    if (this.text === null) return null;
    this.#sig ??= signReply(this.text);
    return this.#sig;
  }

  get hash(): string | undefined {
    return this.#hash;
  }
}

export interface NewReply {
  readonly turn: number;
  readonly inputTurn: number;
  readonly text: string;
  readonly sig: ReplySignature;
  readonly input: InputRef | undefined;
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
    entry.answered = w.weight === "reset" || (comparison.match === null && w.weight < 0);
    entry.worked = w.weight === "reset" || (w.weight < 0 && entry.work === "paid");
    this.score = accumulate(this.score, w, o);
    if (this.score === 0) this.repeats = 0;
    else if (comparison.match !== null && (w.weight as number) > 0)
      this.repeats = Math.max(2, this.repeats + 1);
    const threshold = stuckThreshold(o);
    const isRepeat = comparison.match !== null && comparison.match !== "slot";
    const stuck = isRepeat && w.weight !== "reset" && w.weight >= 0 && this.score >= threshold;
    const step = new Step(entry, {
      chars: reply.text.length,
      match: comparison.match ?? "new",
      matchedTurn: matched ? matched.turn + 1 : null,
      weight: w.weight,
      score: round(this.score),
      threshold,
      stuck,
      reasons: w.reasons,
    });
    this.#entries.at(-1)?.retire();
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
    const substanceChars = substance(entry.core);
    const long = substanceChars >= LONG_CHARS;
    let best: { comparison: Comparison; matched: Entry; weight: number } | null = null;
    // Whether a real answer came between the prior reply being looked at and this one.
    let answeredSince = false;
    // Whether the reply names what any message it answered asked about (computed once, if needed).
    let onTopicOnce: boolean | undefined;
    const topical = () => {
      onTopicOnce ??= onTopic(entry, this.#entries);
      return onTopicOnce;
    };
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const prior = this.#entries[i]!;
      const match = matchKind(entry, prior, reply, o.similarity);
      if (match === null) {
        answeredSince ||= prior.worked;
        continue;
      }
      const monologue = prior.inputTurn === entry.inputTurn;
      const changed = numberDifference(entry.numbers, prior.numbers);
      // Object literals, not spreads: this runs for every reply (see bench/decision-overhead).
      const comparison: Comparison = {
        match,
        // A known canned line counts at once only where nothing but canned lines came between
        // its two occurrences: a healthy agent may print one (a context condensation) between
        // real answers.
        known: !answeredSince && (entry.known(catalog) || prior.known(catalog)),
        sameInput: !monologue && sameInput(entry.input, prior.input, o.similarity),
        sameTopic: !monologue && sameTopic(entry, prior),
        onTopic: !monologue && topical(),
        answer: prior.answered,
        substanceChars,
        // Data, not a counter: more values changed than a counter line has.
        manyNumbers: changed > o.similarity.maxNumberDifference,
        numbersChanged: changed > 0,
        work: entry.work === "none" ? prior.work : entry.work,
        blocked: entry.tokens !== null && soundsBlocked(entry.tokens),
        status: entry.wordCount <= BLOCKED_LINE_TOKENS && entry.tokens !== null && statusLine(entry.tokens),
        thanks: !monologue && thanksOnly(entry.input) && thanksOnly(prior.input),
        monologue,
        related: false,
        long: false,
      };
      const w = weigh(comparison, o).weight;
      const weight = w === "reset" ? Number.NEGATIVE_INFINITY : w;
      if (best === null || weight > best.weight) best = { comparison, matched: prior, weight };
      answeredSince ||= prior.worked;
    }
    if (best !== null) return { comparison: best.comparison, matched: best.matched };
    // Relatedness matters only to a new reply that is neither short, nor long, nor paid for
    // (see weigh): it is not computed for the others.
    const related =
      !long && entry.work !== "paid" && substanceChars >= o.minReplyChars && this.#related(entry);
    return {
      comparison: {
        match: null,
        known: entry.patterned,
        sameInput: false,
        sameTopic: false,
        onTopic: false,
        answer: false,
        substanceChars,
        manyNumbers: false,
        numbersChanged: false,
        work: entry.work,
        // A line, not an answer that happens to mention an error.
        blocked: entry.wordCount <= BLOCKED_LINE_TOKENS && entry.tokens !== null && statusLine(entry.tokens),
        status: false,
        thanks: false,
        monologue: false,
        related,
        long,
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
  // A reply that quotes the message is not much longer than it: a long answer to a short
  // question is not searched.
  const inputSig =
    input !== undefined && input.text !== null && reply.text.length <= input.chars + QUOTE_SLACK_CHARS
      ? input.sig
      : null;
  if (inputSig !== null && inputSig.normalized !== "" && core.length <= MAX_COMPARED_CHARS) {
    const quote = findQuote(reply.text, core, inputSig.normalized);
    if (quote !== null) {
      core = setAside(core, quote);
      numbers = without(numbers, inputSig.numbers);
      quoted = true;
    }
  }
  return new Entry(reply, core, numbers, quoted, catalog);
}

/** Characters of substance: a character of a script written without spaces says as much as a short word. */
function substance(core: string): number {
  if (!NON_ASCII.test(core)) return core.length;
  let n = core.length;
  for (const ch of core) if (ch.charCodeAt(0) >= 0x2e80) n += 2;
  return n;
}

/**
 * See {@link Comparison.onTopic}: the reply names a topic of its own message, or of a message
 * that an earlier occurrence of it (or a near-duplicate) in the window answered.
 */
function onTopic(entry: Entry, window: readonly Entry[]): boolean {
  if (entry.tokens === null || soundsBlocked(entry.tokens)) return false;
  const core = ` ${entry.core} `;
  const names = (input: InputRef | undefined) => {
    const sig = input?.sig;
    if (sig == null) return false;
    for (const w of topicWords(sig.words)) if (core.includes(` ${w} `)) return true;
    return false;
  };
  if (names(entry.input)) return true;
  for (const prior of window)
    if (prior.inputTurn !== entry.inputTurn && prior.core === entry.core && names(prior.input)) return true;
  return false;
}

/** See {@link Comparison.sameTopic}. */
function sameTopic(entry: Entry, prior: Entry): boolean {
  const a = entry.input?.sig;
  const b = prior.input?.sig;
  if (a == null || b == null || entry.tokens === null || soundsBlocked(entry.tokens)) return false;
  const topicB = topicWords(b.words);
  if (topicB.size === 0) return false;
  const core = ` ${entry.core} `;
  for (const w of topicWords(a.words)) if (topicB.has(w) && core.includes(` ${w} `)) return true;
  return false;
}

function thanksOnly(input: InputRef | undefined): boolean {
  const sig = input?.sig;
  return sig !== undefined && sig !== null && onlyThanks(sig.words);
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
  if (!(entry.short && prior.short) && prior.turn !== entry.turn - 1) return null;
  // Most pairs of different replies differ in length too much: tell without splitting them.
  if (!lengthsAllow(entry.wordCount, prior.wordCount, limits)) return null;
  const a = entry.tokens;
  const b = prior.tokens;
  if (a === null || b === null || a.length === 0 || b.length === 0) return null;
  if (!nearWords(a, b, limits)) return null;
  return fromInput(a, b, reply.input?.sig ?? undefined) ? "slot" : "near";
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
function sameInput(x: InputRef | undefined, y: InputRef | undefined, limits: SimilarityLimits): boolean {
  if (x === undefined || y === undefined) return false;
  if (x.text === null || y.text === null) return x.hash !== undefined && x.hash === y.hash;
  const a = x.sig!;
  const b = y.sig!;
  if (a.normalized === "" || b.normalized === "") return false;
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
