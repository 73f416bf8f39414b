/**
 * The stuck rule, as a pure function of one run of "the same reply".
 *
 * A run is the latest stretch of consecutive replies that count as the same reply. It is stuck
 * when it is long enough, where "enough" depends on the evidence:
 *
 * | evidence                                                    | repeats needed          |
 * |-------------------------------------------------------------|-------------------------|
 * | known canned line (registry or pattern), or >= 2 replies    | `knownRepeatThreshold`  |
 * |   that cost nothing and carried no SDK session id           |                         |
 * | no facts                                                    | `repeatThreshold`       |
 * | a reply in the run was paid for or ran in an SDK session    | `repeatThreshold` + 2   |
 *
 * and it must not be a false positive: without strong evidence the replies must answer at least
 * two different user inputs (a user asking the same question twice gets the same answer) and
 * carry some substance (short acknowledgements such as "Done." repeat legitimately).
 */

export interface RunFacts {
  /** Replies in the run seen as they happened. */
  readonly length: number;
  /** Distinct user inputs the run's replies answered. */
  readonly distinctInputs: number;
  /** Characters of normalised text in the reply, boilerplate lines excluded. */
  readonly substanceChars: number;
  /** The reply is a registered canned fingerprint or matches an operator pattern. */
  readonly known: boolean;
  /** Replies in the run reported with zero cost and no SDK session id. */
  readonly zeroCostReplies: number;
  /** Replies in the run reported with a cost, an SDK session id or tools used. */
  readonly paidReplies: number;
}

export interface DetectionThresholds {
  readonly repeatThreshold: number;
  readonly knownRepeatThreshold: number;
  readonly minReplyChars: number;
}

export type StuckEvidence = "known_canned" | "zero_cost" | "repeats";

export interface Assessment {
  readonly stuck: boolean;
  /** Repeats the run needs before it counts as stuck; Infinity where it never will. */
  readonly required: number;
  readonly evidence: StuckEvidence;
}

export function assessRun(run: RunFacts, t: DetectionThresholds): Assessment {
  const strong = run.known || run.zeroCostReplies >= 2;
  const evidence: StuckEvidence = run.known ? "known_canned" : strong ? "zero_cost" : "repeats";
  let required: number;
  if (strong && run.paidReplies === 0) {
    required = t.knownRepeatThreshold;
  } else if (run.distinctInputs < 2 || run.substanceChars < t.minReplyChars) {
    required = Number.POSITIVE_INFINITY;
  } else {
    required = run.paidReplies > 0 ? t.repeatThreshold + 2 : t.repeatThreshold;
  }
  return { stuck: run.length >= required, required, evidence };
}
