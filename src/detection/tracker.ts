import { LRUCache } from "lru-cache";
import { InvalidRequestError } from "../errors.js";
import { chainHash, type ReplySignature, signReply } from "../fingerprint/fingerprint.js";
import { normalize } from "../fingerprint/normalize.js";
import { coreWords, nearWords, type SimilarityLimits, sameReply } from "../fingerprint/similarity.js";
import { describe } from "../util/describe.js";
import { type Assessment, assessRun, type DetectionThresholds } from "./assess.js";
import type { CannedCatalog } from "./catalog.js";

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
  /** The current run of the same reply. */
  readonly run: RunView | null;
  readonly assessment: Assessment | null;
}

export interface RunView {
  readonly fingerprint: string;
  readonly length: number;
  /** Index (0-based) of the run's first reply in the transcript. */
  readonly startTurn: number;
}

export interface TrackerOptions extends DetectionThresholds {
  readonly similarity: SimilarityLimits;
  /** Session keys whose state is kept in memory; older ones are rebuilt from their next transcript. */
  readonly maxSessions: number;
}

const NO_BOILERPLATE: ReadonlySet<string> = new Set();

interface Run {
  rep: ReplySignature;
  length: number;
  startTurn: number;
  /**
   * Distinct user inputs the run answered (near-duplicates count once), collected only up to
   * two: the stuck rule asks whether there were at least two.
   */
  inputs: ReplySignature[];
  /** The first reply's input, signed only if the run grows past one reply. */
  firstInput: string | undefined;
  /** Whether the reply is a known canned line; asked only once the run repeats. */
  known: boolean | undefined;
  zeroCost: number;
  paid: number;
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
  run: Run | undefined;
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
    run: undefined,
    boilerplate: new Set(),
    history: [],
  };
}

const MAX_BOILERPLATE_LINES = 256;
/** How many turns back a late request is still answered from memory. */
const HISTORY = 8;

/**
 * Keeps, per session key, just enough to extend its analysis when the next, longer transcript
 * arrives: counts, running hashes, the previous reply and the current run. Work per call is
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
   * Ends the key's current run: the replies so far no longer count, and the next reply starts
   * a new run. The transcript's hashes and counts are kept.
   */
  resetRun(sessionKey: string): void {
    const state = this.#states.get(sessionKey);
    if (state) {
      state.run = undefined;
      state.history.length = 0;
    }
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
    for (let i = state.replies; i < assistantMessages.length; i++) {
      const text = assistantMessages[i]!;
      state.replyChain = chainHash(state.replyChain, text);
      state.chars += text.length;
      const isLatest = i === assistantMessages.length - 1;
      // A reply answers the user message with the same index, or failing that the latest one.
      const input = userMessages[Math.min(i, userMessages.length - 1)];
      this.#addReply(state, i, text, input, isLatest ? facts : undefined);
    }
    state.users = userMessages.length;
    state.replies = assistantMessages.length;
    state.lastUser = userMessages[userMessages.length - 1];
    state.lastReply = assistantMessages[assistantMessages.length - 1];

    const run = state.run;
    const assessment = run ? assessRun(this.#runFacts(state, run), this.#options) : null;
    const observation: Observation = {
      sessionKey,
      turns: state.replies,
      transcriptHash: `${state.userChain}${state.replyChain}`,
      transcriptChars: state.chars,
      newReplies: Math.max(0, newReplies),
      rebuilt,
      stale: false,
      run: run ? { fingerprint: run.rep.fingerprint, length: run.length, startTurn: run.startTurn } : null,
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
    input: string | undefined,
    facts?: ReplyFacts,
  ): void {
    const sig = signReply(text);
    const prev = state.prev;
    if (prev !== undefined && prev.normalized !== sig.normalized)
      learnBoilerplate(state, prev, sig, this.#options);
    state.prev = sig;

    let run = state.run;
    const same =
      run !== undefined &&
      sameReply(sig, run.rep, state.boilerplate, this.#options.similarity) &&
      !echoesInput(sig, run.rep, input, state.boilerplate);
    if (run === undefined || !same) {
      run = {
        rep: sig,
        length: 0,
        startTurn: index,
        inputs: [],
        firstInput: input,
        known: undefined,
        zeroCost: 0,
        paid: 0,
      };
      state.run = run;
    }
    run.length++;
    // Work that only matters for a repeated reply is done once it repeats, so a healthy
    // session's varied replies cost one normalisation each and nothing more.
    if (run.known === undefined && run.length >= Math.min(2, this.#options.knownRepeatThreshold)) {
      run.known =
        this.#catalog.hasFingerprint(run.rep.fingerprint) || this.#catalog.recognises(sig.fingerprint, text);
    }
    if (run.length >= 2 && run.inputs.length < 2) {
      if (run.inputs.length === 0) run.inputs.push(signReply(run.firstInput ?? ""));
      run.firstInput = undefined;
      // "when is the branch cut?" and "sorry, when exactly is the branch cut?" are one question.
      const asked = signReply(input ?? "");
      if (!run.inputs.some((prior) => sameReply(asked, prior, NO_BOILERPLATE, this.#options.similarity))) {
        run.inputs.push(asked);
      }
    }
    if (facts !== undefined) {
      if (isPaid(facts)) run.paid++;
      else if (isZeroCost(facts)) run.zeroCost++;
    }
  }

  #runFacts(state: KeyState, run: Run) {
    const distinctInputs = Math.max(run.inputs.length, run.length > 0 ? 1 : 0);
    // Substance matters only to a run that answered different inputs (see assessRun): a
    // healthy session's single replies are not split into words for it.
    let substanceChars = 0;
    if (distinctInputs >= 2)
      for (const w of coreWords(run.rep, state.boilerplate)) substanceChars += w.length;
    return {
      length: run.length,
      distinctInputs,
      substanceChars,
      // The registry may have learned this fingerprint from another session since the run began.
      known: run.known === true || (run.length >= 2 && this.#catalog.hasFingerprint(run.rep.fingerprint)),
      zeroCostReplies: run.zeroCost,
      paidReplies: run.paid,
    };
  }
}

/**
 * A reply that differs from the run's reply in a word the user just wrote is answering the
 * user ("Deployed web to staging" after "deploy web"), not repeating a canned line.
 */
function echoesInput(
  sig: ReplySignature,
  rep: ReplySignature,
  input: string | undefined,
  boilerplate: ReadonlySet<string>,
): boolean {
  if (input === undefined || sig.normalized === rep.normalized) return false;
  const counts = new Map<string, number>();
  for (const w of coreWords(sig, boilerplate)) counts.set(w, (counts.get(w) ?? 0) + 1);
  for (const w of coreWords(rep, boilerplate)) counts.set(w, (counts.get(w) ?? 0) - 1);
  const asked = new Set(normalize(input).split(" "));
  for (const [w, c] of counts)
    if (c !== 0 && w.length >= 3 && !w.startsWith("_") && asked.has(w)) return true;
  return false;
}

function checkStrings(list: readonly unknown[], from: number, field: string): void {
  for (let i = from; i < list.length; i++) {
    if (typeof list[i] !== "string") {
      throw new InvalidRequestError(
        `${field}[${i}]`,
        `${field}[${i}] must be a string, got ${describe(list[i])}`,
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

function isPaid(f: ReplyFacts): boolean {
  return (
    (typeof f.costUsd === "number" && f.costUsd > 0) ||
    (typeof f.sdkSessionId === "string" && f.sdkSessionId !== "") ||
    (f.toolsUsed !== undefined && f.toolsUsed.length > 0)
  );
}

function isZeroCost(f: ReplyFacts): boolean {
  const noSession = f.sdkSessionId === "" || f.sdkSessionId === null;
  const free = f.costUsd === 0;
  const instant = f.durationMs === 0;
  // Two of the three signs, so that one missing field does not hide the bounce.
  return (noSession ? 1 : 0) + (free ? 1 : 0) + (instant ? 1 : 0) >= 2;
}

/**
 * Lines shared by two consecutive, different replies are boilerplate (a signature, a footer)
 * when the rest of the two replies differs in substance. When the rest is itself a
 * near-duplicate, the replies are variants of one multi-line message and nothing is learned.
 */
function learnBoilerplate(
  state: KeyState,
  a: ReplySignature,
  b: ReplySignature,
  options: TrackerOptions,
): void {
  if (a.lines.length < 2 && b.lines.length < 2) return; // one-line replies have no footer
  const inA = new Set(a.lines);
  const shared = b.lines.filter((l) => inA.has(l) && !state.boilerplate.has(l));
  if (shared.length === 0) return;
  const sharedSet = new Set(shared);
  const restA = coreWords(a, sharedSet);
  const restB = coreWords(b, sharedSet);
  if (restA.length + restB.length > 0 && nearWords(restA, restB, options.similarity)) return;
  for (const f of shared) {
    if (state.boilerplate.size >= MAX_BOILERPLATE_LINES) return;
    state.boilerplate.add(f);
  }
}
