/**
 * The stuck rule, as evidence accumulated reply by reply.
 *
 * Each new reply is compared with the last few replies of its session (the window). What the
 * comparison shows is weighed as evidence that the session is stuck (replies independent of
 * what the user writes) rather than healthy (replies that answer it), in units of one plain
 * repeat. A one-sided CUSUM accumulates the weights:
 *
 *     score = clamp(score + weight, 0, threshold)        threshold = repeatThreshold - 1
 *
 * and the session is stuck while the score has reached the threshold and the latest reply is
 * itself a repeat: a reply new to the window is always judged, so judging resumes with the
 * first real answer after a recovery. A long or paid-for new reply (a real answer) resets the
 * score to 0.
 *
 * A repeat (the reply recurs in the window, exactly or nearly, with its volatile data and any
 * quote of the user's message set aside) weighs:
 *
 * | what the comparison shows                                         | weight            |
 * |-------------------------------------------------------------------|-------------------|
 * | either reply is a known canned line (registry or pattern)         | the threshold     |
 * | the same question again (a near-identical input, another turn)    | 0                 |
 * | too little text to tell (under `minReplyChars`: "Done.")          | 0                 |
 * | both inputs only thank or acknowledge (closers)                   | 0                 |
 * | the same reply, or a near-duplicate of it                         | 1                 |
 * | the same reply with other numbers or another quote of the input,  | 1 (0 when more    |
 * |   and no sign of real work                                        |   than 2 change)  |
 * |   ... and only an SDK session id as a sign of work                | 0.5               |
 * |   ... and a cost or tools (a template filled with data)           | -0.5              |
 * |   ... when the reply reads as an error, a wait or a limit         | 1 (0.5), 1, 0.5   |
 * | words that differ are the user's own ("Deployed web" / "api")     | 0, -0.5 if paid   |
 * | the runtime reported a free bounce (no cost, no SDK session)      | + 1               |
 *
 * A new reply weighs 0 when short or related to the replies in the window (a paraphrase), -1
 * otherwise, and resets the score when it is long or was paid for.
 */

/** How the latest reply matched an earlier one in the window. */
export type MatchKind =
  /** The same normalised text and the same numbers. */
  | "exact"
  /** The same normalised text with other numbers. */
  | "volatile"
  /** The same once the quote of the user's message is set aside. */
  | "quote"
  /** A near-duplicate: a few words differ. */
  | "near"
  /** A near-duplicate whose differing words come from the user's message. */
  | "slot";

/** The strongest sign of work the runtime reported for the reply. */
export type Work =
  /** No facts. */
  | "none"
  /** No cost, no SDK session id (or no time): the runtime answered without the model. */
  | "bounce"
  /** An SDK session id but no cost and no tools. */
  | "session"
  /** A cost or tools used. */
  | "paid";

/** What comparing the latest reply with its window found. */
export interface Comparison {
  /** null when the reply is new to the window. */
  readonly match: MatchKind | null;
  /** Either reply is a registered canned fingerprint or matches a canned pattern. */
  readonly known: boolean;
  /** The two replies answered near-identical inputs in different user turns. */
  readonly sameInput: boolean;
  /**
   * The two inputs ask about one thing, and the reply answers about it: they share a topic word
   * ("backup"), which the reply uses too ("did last night's backup run?" / "backup status?" and
   * "Backup finished: 1,204 files"). A canned line never names the user's topic.
   */
  readonly sameTopic: boolean;
  /**
   * The reply names what one of the two messages asked about (a topic word of it): an answer
   * that happens to repeat ("Yes, a clean working tree on main" to "is the tree clean?" and
   * "pull and check again"), rather than a line that ignores what was asked.
   */
  readonly onTopic: boolean;
  /** The earlier reply was itself a real answer (it weighed against the evidence). */
  readonly answer: boolean;
  /** Characters of the reply's core: boilerplate lines and quotes of the input set aside. */
  readonly substanceChars: number;
  /** More plain numbers differ between the two replies than `maxNumberDifference`: data, not a counter. */
  readonly manyNumbers: boolean;
  /** Some plain number differs between the two replies. */
  readonly numbersChanged: boolean;
  readonly work: Work;
  /** The reply reads as an error, a wait, a limit or a refusal. */
  readonly blocked: boolean;
  /** The reply is a status line: a sentence or so that reads blocked and names at most one thing. */
  readonly status: boolean;
  /** Both inputs only thank or acknowledge. */
  readonly thanks: boolean;
  /**
   * The two replies answered the same user message (or none): the agent said it again on its
   * own, so no template filled in for different requests explains the repeat.
   */
  readonly monologue: boolean;
  /** New replies only: shares most content words with a reply in the window. */
  readonly related: boolean;
  /** New replies only: long enough to be a real answer. */
  readonly long: boolean;
}

export interface DetectionThresholds {
  /** Repeats of a reply, to different inputs, that make a session stuck without other evidence. */
  readonly repeatThreshold: number;
  /** Occurrences of a known canned line that make a session stuck. */
  readonly knownRepeatThreshold: number;
  /** Replies with less text than this are too short to count as repeats ("Done."). */
  readonly minReplyChars: number;
}

/** Why a step weighed what it did, as stable codes (shown by `judge-guard explain`). */
export type Reason =
  | "new"
  | "new_short"
  | "new_related"
  | "real_answer"
  | "known_canned"
  | "same_question"
  | "same_topic"
  | "on_topic"
  | "answered_again"
  | "too_short"
  | "closer"
  | "repeat"
  | "changed_numbers"
  | "many_numbers"
  | "quoted_input"
  | "user_words"
  | "paid"
  | "sdk_session"
  | "reads_blocked"
  | "new_blocked"
  | "monologue"
  | "free_bounce";

export interface Weighing {
  /** Units of one plain repeat; "reset" sets the score back to 0. */
  readonly weight: number | "reset";
  readonly reasons: readonly Reason[];
}

/** The score at which a session is stuck. */
export function stuckThreshold(t: DetectionThresholds): number {
  return t.repeatThreshold - 1;
}

export function weigh(c: Comparison, t: DetectionThresholds): Weighing {
  const threshold = stuckThreshold(t);
  if (c.match === null) {
    if (c.long || (c.work === "paid" && c.substanceChars >= t.minReplyChars))
      return { weight: "reset", reasons: ["real_answer"] };
    if (c.substanceChars < t.minReplyChars) return { weight: 0, reasons: ["new_short"] };
    if (c.related) return { weight: 0, reasons: ["new_related"] };
    // "I'm not able to do that right now": no sign of an answer, whatever else it is.
    if (c.blocked) return { weight: 0, reasons: ["new_blocked"] };
    return { weight: -1, reasons: ["new"] };
  }
  if (c.known)
    return { weight: threshold / Math.max(1, t.knownRepeatThreshold - 1), reasons: ["known_canned"] };
  // The same question answered again as before: an answer, whatever came between.
  if (c.sameInput && c.answer) return { weight: -1, reasons: ["same_question", "answered_again"] };
  if (c.sameInput) return { weight: 0, reasons: ["same_question"] };
  if (c.sameTopic) return { weight: 0, reasons: ["same_topic"] };
  // Short repeats are acknowledgements ("Done."), unless they read as a wait or an error
  // ("Working on it…").
  if (c.substanceChars < t.minReplyChars && !c.status) return { weight: 0, reasons: ["too_short"] };
  if (c.thanks) return { weight: 0, reasons: ["closer"] };

  const reasons: Reason[] = [];
  let weight: number;
  switch (c.match) {
    case "exact":
      reasons.push("repeat");
      if (c.onTopic) {
        weight = 0.5;
        reasons.push("on_topic");
      } else weight = 1;
      break;
    case "near":
      // A few words changed. Between runtime bounces that is one line's variants; in work the
      // agent paid for, or did on its own between two user messages, it is as likely the next
      // step on another file ("Reading file1.txt" / "Reading file2.txt").
      reasons.push("repeat");
      if (c.work === "paid" && c.numbersChanged) {
        // Paid work whose data changed as well: a template filled in ("37 files, 118 MB").
        weight = -0.5;
        reasons.push("changed_numbers", "paid");
      } else if (c.work === "paid") {
        weight = 0.5;
        reasons.push("paid");
      } else if (c.monologue) {
        weight = 0.5;
        reasons.push("monologue");
      } else weight = 1;
      break;
    case "slot":
      reasons.push("user_words");
      weight = c.work === "paid" || c.work === "session" ? -0.5 : 0;
      if (c.work === "paid") reasons.push("paid");
      break;
    default: {
      // The data differs: a counter or a clock in a canned line, or a template filled with
      // data. The runtime's facts tell which, and an error-like wording tips it.
      reasons.push(c.match === "quote" ? "quoted_input" : "changed_numbers");
      if (c.monologue && !c.manyNumbers) {
        // No request to fill a template in for: the agent did the same thing again, a pid or
        // a counter aside, paid for or not.
        weight = 1;
        reasons.push("monologue");
      } else if (c.work === "paid") {
        weight = -0.5;
        reasons.push("paid");
      } else if (c.work === "session") {
        weight = 0.5;
        reasons.push("sdk_session");
      } else if (c.manyNumbers) {
        // Many values changing at once is data (a report), not a counter.
        weight = 0;
        reasons.push("many_numbers");
      } else weight = 1;
      if (c.blocked && weight < 1) {
        weight = weight < 0 ? weight + 1 : Math.min(1, weight + 0.5);
        reasons.push("reads_blocked");
      }
    }
  }
  if (c.work === "bounce") {
    weight += 1;
    reasons.push("free_bounce");
  }
  return { weight, reasons };
}

/**
 * The score after a step, kept between 0 and the threshold: however long an episode, one new
 * reply that weighs against it ends it.
 */
export function accumulate(score: number, w: Weighing, t: DetectionThresholds): number {
  if (w.weight === "reset") return 0;
  return Math.min(stuckThreshold(t), Math.max(0, score + w.weight));
}

/** The kind of evidence an episode was opened on, as the ledger records it. */
export type StuckEvidence = "known_canned" | "zero_cost" | "repeats";
