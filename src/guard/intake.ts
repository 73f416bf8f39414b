import type { CostEstimator, Estimate } from "../budget/estimator.js";
import type { Observation, SessionTracker } from "../detection/tracker.js";
import { type EvidenceStep, plainStep } from "../detection/window.js";
import type { SkipReason } from "../domain/decision.js";
import type { PriceTable, Usage } from "../pricing/prices.js";
import type { Clock } from "../util/clock.js";
import type { EpisodeBook, StuckVerdict } from "./episodes.js";
import type { Escalation, GuardMode } from "./options.js";
import type { SkippedOutcome } from "./outcome.js";
import {
  checkTranscriptSize,
  type JudgeRequest,
  type NormalizedRequest,
  type NormalizedSession,
  normalizeRequest,
  normalizeSession,
  type SessionRef,
} from "./request.js";
import type { Skips, WouldBeCall } from "./skips.js";
import type { Assessment, AssessOptions } from "./types.js";

/** A request that passed validation and the stuck check, on its way to admission. */
export interface Prepared {
  readonly kind: "prepared";
  readonly req: NormalizedRequest;
  readonly obs: Observation;
  readonly subject: WouldBeCall;
  /** When it was observed, on the guard's clock. */
  readonly now: number;
  readonly estimate: Estimate;
  /** What skipping it saves: its known cost (a replay), else its expected cost. */
  readonly savedMicros: number;
  /** In shadow mode, why enforce mode would skip it; otherwise null. */
  readonly shadowReason: SkipReason | null;
}

export interface IntakeOptions {
  readonly mode: GuardMode;
  readonly escalation: Escalation;
  readonly maxTranscriptTokens: number;
  readonly estimator: { readonly charsPerToken: number };
  readonly clock: Clock;
}

export interface IntakeParts {
  readonly tracker: SessionTracker;
  readonly episodes: EpisodeBook;
  readonly estimator: CostEstimator;
  readonly prices: PriceTable;
  readonly skips: Skips;
}

/**
 * What the guard makes of a request before any budget is asked: it validates it, refuses a
 * transcript larger than any model accepts, observes the session's new replies, and skips the
 * call when the session is stuck (or the turn was not handled).
 */
export class Intake {
  readonly #o: IntakeOptions;
  readonly #p: IntakeParts;

  constructor(options: IntakeOptions, parts: IntakeParts) {
    this.#o = options;
    this.#p = parts;
  }

  /** A request on its way to admission, or its skip. */
  accept(
    request: JudgeRequest,
    knownUsage: Usage | undefined,
  ): Prepared | { kind: "skipped"; outcome: SkippedOutcome } {
    const req = normalizeRequest(request);
    // Before the transcript is observed, so that a refused request changes nothing.
    this.#checkSize(request, req);
    const { obs, now, stuck } = this.#observe(req);
    const subject = subjectOf(req, obs);
    const estimate = this.estimate(req, obs);
    const savedMicros = knownUsage
      ? this.#p.prices.costMicros(req.model, knownUsage)
      : estimate.expectedMicros;
    // A turn the runtime did not handle (a busy bounce) is not judged, stuck yet or not.
    if ((stuck.stuck || req.facts?.handled === false) && this.#o.mode !== "shadow") {
      const why = stuck.stuck ? { stuck } : {};
      return {
        kind: "skipped",
        outcome: this.#p.skips.skip(subject, now, "stuck_session", savedMicros, why),
      };
    }
    const shadowReason = stuck.stuck ? "stuck_session" : null;
    return { kind: "prepared", req, obs, subject, now, estimate, savedMicros, shadowReason };
  }

  /** See {@link Guard.assess}. */
  assess(session: SessionRef, options: AssessOptions): Assessment {
    const s = normalizeSession(session);
    // Checked before the session is observed, so a bad entry changes nothing.
    const judges = (options.judges ?? []).map(
      (j): NormalizedRequest => ({
        ...normalizeRequest({
          sessionKey: s.sessionKey,
          judge: j.judge,
          model: j.model,
          ...(j.variant !== undefined && { variant: j.variant }),
          ...(j.maxTokens !== undefined && { maxTokens: j.maxTokens }),
        }),
        ...s,
      }),
    );
    this.#checkSize(session, s);
    const { obs, now, stuck: verdict } = this.#observe(s);
    const skip = (verdict.stuck || s.facts?.handled === false) && this.#o.mode !== "shadow";
    if (skip) {
      for (const req of judges) {
        const saved = this.#p.estimator.estimate(req.judge, req.model, obs.transcriptChars, req.maxTokens);
        const why = verdict.stuck ? { stuck: verdict } : {};
        this.#p.skips.skip(subjectOf(req, obs), now, "stuck_session", saved.expectedMicros, why);
      }
    }
    return { ...verdict, skip };
  }

  /**
   * A call's estimate. Its worst case, held against the caps while it runs, covers the models it
   * may escalate to: those the request names, or any model (the `escalation` option's default),
   * since a judge that reports a pricier model than it was admitted on is charged that price.
   */
  estimate(req: NormalizedRequest, obs: Observation): Estimate {
    // A named chain adds to the ceiling rather than replacing it: a judge that reports a model its
    // request did not name is still covered, unless the operator chose `none`.
    return this.#p.estimator.estimate(req.judge, req.model, obs.transcriptChars, req.maxTokens, {
      chain: req.escalation,
      ceiling: this.#o.escalation === "ceiling",
    });
  }

  /** See {@link Guard.explain}. */
  explain(sessionKey: string): readonly EvidenceStep[] {
    return (this.#p.tracker.explain(sessionKey) ?? []).map(plainStep);
  }

  /** Refuses a transcript larger than any model accepts, counting only what a resent one added. */
  #checkSize(raw: SessionRef | JudgeRequest, s: NormalizedSession): void {
    const chars = this.#p.tracker.transcriptChars(s.sessionKey, s.userMessages, s.assistantMessages);
    const limit = { maxTokens: this.#o.maxTranscriptTokens, charsPerToken: this.#o.estimator.charsPerToken };
    checkTranscriptSize(raw, s, limit, chars);
  }

  /** What the session's transcript says now: the tracker's observation and the stuck verdict. */
  #observe(s: NormalizedSession): { obs: Observation; now: number; stuck: StuckVerdict } {
    const now = this.#o.clock.now();
    const obs = this.#p.tracker.observe(s.sessionKey, s.userMessages, s.assistantMessages, s.facts);
    const trail = () => this.explain(s.sessionKey);
    return { obs, now, stuck: this.#p.episodes.update(obs, now, trail) };
  }
}

/** A would-be call's subject, and its identity: key, judge kind, model, variant and transcript. */
function subjectOf(req: NormalizedRequest, obs: Observation): WouldBeCall {
  return {
    sessionKey: req.sessionKey,
    judge: req.judge,
    model: req.model,
    turns: obs.turns,
    transcriptChars: obs.transcriptChars,
    transcriptHash: obs.transcriptHash,
    identity: `${req.sessionKey}\u0000${req.judge}\u0000${req.model}\u0000${req.variant}\u0000${obs.transcriptHash}`,
  };
}
