import { LRUCache } from "lru-cache";
import { InvalidRequestError } from "../errors.js";
import { chainHash, type ReplySignature, signReply } from "../fingerprint/fingerprint.js";
import { normalizeLine, tokenize } from "../fingerprint/normalize.js";
import { coreWords, nearWords } from "../fingerprint/similarity.js";
import { shape } from "../util/describe.js";
import type { CannedCatalog } from "./catalog.js";
import type { StuckEvidence, Work } from "./evidence.js";
import { type EvidenceStep, EvidenceWindow, InputRef, type WindowOptions } from "./window.js";

/** Facts about the latest reply, where the runtime reports them. All optional. */
export interface ReplyFacts {
  /** What producing the reply cost the agent (Phantom's `cost_usd`). */
  readonly costUsd?: number | undefined;
  /** The SDK session id the reply ran in (Phantom's `session_id`); empty when none. */
  readonly sdkSessionId?: string | null | undefined;
  /** How long producing the reply took. */
  readonly durationMs?: number | undefined;
  /** Tools the agent used for the reply. */
  readonly toolsUsed?: readonly string[] | undefined;
  /** The runtime's outcome label ("success", "failure", ...); informational. */
  readonly outcome?: string | undefined;
  /**
   * False when the runtime answered without running the agent at all (Phantom's busy bounce,
   * as the Phantom install sees it): the turn holds nothing for a judge, so its judges are
   * skipped, with no stuck episode opened (that still needs repeats).
   */
  readonly handled?: boolean | undefined;
}

/** The detector's verdict on a key after its latest reply. */
export interface StuckAssessment {
  /** Skip judging: the score has reached the threshold and the latest reply is a repeat. */
  readonly stuck: boolean;
  /**
   * The score has reached the threshold (the key's episode, if any, goes on) even if the latest
   * reply is new and is judged.
   */
  readonly elevated: boolean;
  readonly score: number;
  readonly threshold: number;
  /** The strongest kind of evidence in the latest step. */
  readonly evidence: StuckEvidence;
  /** Replies counted in the current stretch of evidence (the first occurrence included). */
  readonly repeats: number;
}

/** What one call to {@link SessionTracker.observe} learned about a session key. */
export interface Observation {
  readonly sessionKey: string;
  /** Replies in the transcript. */
  readonly turns: number;
  /** Hash of the whole transcript, maintained incrementally. */
  readonly transcriptHash: string;
  /** Characters in the whole transcript (user and assistant). */
  readonly transcriptChars: number;
  /** Replies processed by this call (0 when the transcript did not grow). */
  readonly newReplies: number;
  /** True when the tracker had to start over (first sight of the key, or a rewritten transcript). */
  readonly rebuilt: boolean;
  /**
   * True when the transcript is one the tracker had already moved past (a request that arrived
   * late): the observation is the one made then, and must not change the key's state.
   */
  readonly stale: boolean;
  /** The evidence the latest reply added; null before the first reply. */
  readonly step: EvidenceStep | null;
  readonly assessment: StuckAssessment | null;
}

export interface TrackerOptions extends WindowOptions {
  /** Session keys whose state is kept in memory; older ones are rebuilt from their next transcript. */
  readonly maxSessions: number;
}

interface KeyState {
  replies: number;
  users: number;
  userChain: string;
  replyChain: string;
  chars: number;
  lastUser: string | undefined;
  lastReply: string | undefined;
  prev: ReplySignature | undefined;
  /** The user message the previous reply answered (for telling a footer from a canned line around a quote). */
  prevInput: string | undefined;
  /** The latest user message, signed once, with its index. */
  input: { index: number; ref: InputRef } | undefined;
  window: EvidenceWindow;
  boilerplate: Set<string>;
  /** The last few observations, newest first, for requests that arrive late. */
  history: Array<{
    users: number;
    replies: number;
    lastUser: string | undefined;
    lastReply: string | undefined;
    observation: Observation;
  }>;
}

function emptyState(): KeyState {
  return {
    replies: 0,
    users: 0,
    userChain: "",
    replyChain: "",
    chars: 0,
    lastUser: undefined,
    lastReply: undefined,
    prev: undefined,
    prevInput: undefined,
    input: undefined,
    window: new EvidenceWindow(),
    boilerplate: new Set(),
    history: [],
  };
}

const MAX_BOILERPLATE_LINES = 256;
/** How many turns back a late request is still answered from memory. */
const HISTORY = 8;

/**
 * Keeps, per session key, just enough to extend its analysis when the next, longer transcript
 * arrives: counts, running hashes, the previous reply and the evidence window. Work per call is
 * proportional to the messages added since the last call (plus one string comparison per array
 * to confirm the transcript was extended rather than rewritten), so a session of T turns costs
 * O(T) in total, however often its growing transcript is resent.
 */
export class SessionTracker {
  readonly #states: LRUCache<string, KeyState>;
  readonly #options: TrackerOptions;
  readonly #catalog: CannedCatalog;

  constructor(options: TrackerOptions, catalog: CannedCatalog) {
    this.#options = options;
    this.#catalog = catalog;
    this.#states = new LRUCache({ max: options.maxSessions });
  }

  /**
   * Forgets the key's evidence: the replies so far no longer count. The transcript's hashes and
   * counts are kept.
   */
  resetRun(sessionKey: string): void {
    const state = this.#states.get(sessionKey);
    if (state) {
      state.window.reset();
      state.history.length = 0;
    }
  }

  /** The key's evidence, reply by reply (the last few replies), or null for a key not in memory. */
  explain(sessionKey: string): readonly EvidenceStep[] | null {
    const state = this.#states.peek(sessionKey);
    return state ? [...state.window.trail] : null;
  }

  /**
   * The characters of a transcript as {@link observe} would count them, changing nothing: what
   * the key's state holds plus the messages added since, so a resent transcript costs the new
   * messages only (all of them when it does not extend what was seen). Elements that are not
   * strings count nothing here; `observe` names them.
   */
  transcriptChars(
    sessionKey: string,
    userMessages: readonly string[],
    assistantMessages: readonly string[],
  ): number {
    const state = this.#states.peek(sessionKey);
    const known = state !== undefined && extends_(state, userMessages, assistantMessages);
    let chars = known ? state.chars : 0;
    const add = (list: readonly string[], from: number) => {
      for (let i = from; i < list.length; i++) {
        const m = list[i];
        if (typeof m === "string") chars += m.length;
      }
    };
    add(userMessages, known ? state.users : 0);
    add(assistantMessages, known ? state.replies : 0);
    return chars;
  }

  observe(
    sessionKey: string,
    userMessages: readonly string[],
    assistantMessages: readonly string[],
    facts: ReplyFacts | undefined,
  ): Observation {
    let state = this.#states.get(sessionKey);
    let rebuilt = false;
    if (state === undefined || !extends_(state, userMessages, assistantMessages)) {
      // Requests are not always in order (Phantom fires its judges without awaiting them): a
      // transcript a few turns behind is answered from what was seen then, not re-analysed.
      const earlier = state?.history.find(
        (h) =>
          h.users === userMessages.length &&
          h.replies === assistantMessages.length &&
          h.lastUser === userMessages[h.users - 1] &&
          h.lastReply === assistantMessages[h.replies - 1],
      );
      if (earlier) return { ...earlier.observation, newReplies: 0, stale: true };
      state = emptyState();
      rebuilt = true;
    }
    checkStrings(userMessages, state.users, "userMessages");
    checkStrings(assistantMessages, state.replies, "assistantMessages");
    if (rebuilt) this.#states.set(sessionKey, state);

    for (let i = state.users; i < userMessages.length; i++) {
      const text = userMessages[i]!;
      state.userChain = chainHash(state.userChain, text);
      state.chars += text.length;
    }
    const newReplies = assistantMessages.length - state.replies;
    let step: EvidenceStep | null = state.window.trail.at(-1) ?? null;
    for (let i = state.replies; i < assistantMessages.length; i++) {
      const text = assistantMessages[i]!;
      state.replyChain = chainHash(state.replyChain, text);
      state.chars += text.length;
      const isLatest = i === assistantMessages.length - 1;
      // A reply answers the user message with the same index, or failing that the latest one.
      const inputTurn = Math.min(i, userMessages.length - 1);
      step = this.#addReply(state, i, text, inputTurn, userMessages, isLatest ? facts : undefined);
    }
    state.users = userMessages.length;
    state.replies = assistantMessages.length;
    state.lastUser = userMessages[userMessages.length - 1];
    state.lastReply = assistantMessages[assistantMessages.length - 1];

    const assessment = step === null ? null : assess(step, state.window);
    const observation: Observation = {
      sessionKey,
      turns: state.replies,
      transcriptHash: `${state.userChain}${state.replyChain}`,
      transcriptChars: state.chars,
      newReplies: Math.max(0, newReplies),
      rebuilt,
      stale: false,
      step,
      assessment,
    };
    if (newReplies > 0 || rebuilt) {
      state.history.unshift({
        users: state.users,
        replies: state.replies,
        lastUser: state.lastUser,
        lastReply: state.lastReply,
        observation,
      });
      if (state.history.length > HISTORY) state.history.pop();
    }
    return observation;
  }

  #addReply(
    state: KeyState,
    index: number,
    text: string,
    inputTurn: number,
    userMessages: readonly string[],
    facts?: ReplyFacts,
  ): EvidenceStep {
    const sig = signReply(text);
    const prev = state.prev;
    const inputText = inputTurn >= 0 ? userMessages[inputTurn] : undefined;
    if (prev !== undefined && prev.normalized !== sig.normalized)
      learnBoilerplate(state, prev, sig, this.#options, [state.prevInput, inputText]);
    state.prev = sig;
    state.prevInput = inputText;
    let input: InputRef | undefined;
    if (inputTurn >= 0) {
      if (state.input?.index !== inputTurn)
        state.input = { index: inputTurn, ref: new InputRef(userMessages[inputTurn]!) };
      input = state.input.ref;
    }
    return state.window.add(
      { turn: index, inputTurn, text, sig, input, work: workOf(facts) },
      state.boilerplate,
      this.#catalog,
      this.#options,
    );
  }
}

function assess(step: EvidenceStep, window: EvidenceWindow): StuckAssessment {
  const evidence: StuckEvidence = step.reasons.includes("known_canned")
    ? "known_canned"
    : step.reasons.includes("free_bounce")
      ? "zero_cost"
      : "repeats";
  return {
    stuck: step.stuck,
    elevated: step.score >= step.threshold,
    score: step.score,
    threshold: step.threshold,
    evidence,
    repeats: window.repeats,
  };
}

function checkStrings(list: readonly unknown[], from: number, field: string): void {
  for (let i = from; i < list.length; i++) {
    if (typeof list[i] !== "string") {
      throw new InvalidRequestError(
        `${field}[${i}]`,
        `${field}[${i}] must be a string, got ${shape(list[i])}`,
      );
    }
  }
}

function extends_(state: KeyState, users: readonly string[], replies: readonly string[]): boolean {
  if (users.length < state.users || replies.length < state.replies) return false;
  if (state.users > 0 && users[state.users - 1] !== state.lastUser) return false;
  if (state.replies > 0 && replies[state.replies - 1] !== state.lastReply) return false;
  return true;
}

/** The strongest sign of work in a reply's facts. */
function workOf(f: ReplyFacts | undefined): Work {
  if (f === undefined) return "none";
  if (
    (typeof f.costUsd === "number" && f.costUsd > 0) ||
    (f.toolsUsed !== undefined && f.toolsUsed.length > 0)
  )
    return "paid";
  const session = typeof f.sdkSessionId === "string" && f.sdkSessionId !== "";
  if (session) return "session";
  const noSession = f.sdkSessionId === "" || f.sdkSessionId === null;
  const free = f.costUsd === 0;
  const instant = f.durationMs === 0;
  // Two of the three signs, so that one missing field does not hide the bounce.
  return (noSession ? 1 : 0) + (free ? 1 : 0) + (instant ? 1 : 0) >= 2 ? "bounce" : "none";
}

/**
 * Lines shared by two consecutive, different replies are boilerplate (a signature, a footer)
 * when the rest of the two replies differs in substance. When the rest is itself a
 * near-duplicate, the replies are variants of one multi-line message, and when the rest of each
 * is a quote of the message it answered, they are one canned line around a quote ('> your
 * message', then "still busy"): nothing is learned.
 */
function learnBoilerplate(
  state: KeyState,
  a: ReplySignature,
  b: ReplySignature,
  options: TrackerOptions,
  inputs: readonly [string | undefined, string | undefined],
): void {
  if (a.lines.length < 2 && b.lines.length < 2) return; // one-line replies have no footer
  const inA = new Set(a.lines);
  const shared = b.lines.filter((l) => inA.has(l) && !state.boilerplate.has(l));
  if (shared.length === 0) return;
  const sharedSet = new Set(shared);
  const restA = coreWords(a, sharedSet);
  const restB = coreWords(b, sharedSet);
  if (restA.length + restB.length > 0 && nearWords(restA, restB, options.similarity)) return;
  if (quotes(restA, inputs[0]) && quotes(restB, inputs[1])) return;
  for (const f of shared) {
    if (state.boilerplate.size >= MAX_BOILERPLATE_LINES) return;
    state.boilerplate.add(f);
  }
}

/** Whether `words` are the words of `input`, whole or its opening (a truncated quote). */
function quotes(words: readonly string[], input: string | undefined): boolean {
  if (input === undefined || words.length === 0 || input.length > InputRef.MAX_KEPT) return false;
  const asked = tokenize(normalizeLine(input));
  // The last quoted word may be cut short.
  const whole = words.length === asked.length ? words : words.slice(0, -1);
  return whole.length > 0 && whole.length <= asked.length && whole.every((w, i) => asked[i] === w);
}
