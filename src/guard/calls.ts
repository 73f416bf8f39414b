import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import pLimit, { type LimitFunction } from "p-limit";
import { type PendingCall, pendingCallOfRow } from "../budget/pending.js";
import type { AdmissionQueue } from "../budget/queue.js";
import type { Settlements } from "../budget/settlement.js";
import { InvalidRequestError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import type { Usage } from "../pricing/prices.js";
import { hasUnreadUsage, type ReportedCost } from "../pricing/usage.js";
import type { SafeLedger } from "../store/safe.js";
import type { ReservationLedger } from "../store/types.js";
import type { Clock } from "../util/clock.js";
import { toUsd } from "../util/money.js";
import type { Intake, Prepared } from "./intake.js";
import type { Outcome, RunOptions, SkippedOutcome } from "./outcome.js";
import type { Skips } from "./skips.js";
import type { Settlement, Ticket } from "./types.js";

type UsageOf = (result: unknown) => ReportedCost | undefined;

/** How long a remote reservation waits for its settlement once its owner is gone, by default. */
const REMOTE_TTL_MS = 600_000;

export interface CallsOptions {
  readonly concurrency: number;
  /** The longest a call waits in line for admission. */
  readonly admissionWaitMs: number;
  readonly usageOf: UsageOf;
  readonly usageOfError: UsageOf;
  readonly clock: Clock;
}

export interface CallsParts {
  readonly intake: Intake;
  readonly queue: AdmissionQueue;
  readonly settlements: Settlements;
  readonly skips: Skips;
  readonly ledger: SafeLedger<ReservationLedger>;
  readonly log: Logger;
}

/** How a call is admitted: settled by id (`remote`, the sidecar's clients), and its waits. */
interface AdmitHow {
  readonly waitMs?: number | undefined;
  readonly remote?: boolean;
  readonly ttlMs?: number;
}

/**
 * A prepared call's way through the budgets: admission (or its skip), the judge within the
 * concurrency limit, and settlement; or, for a caller that calls the judge itself, a ticket held
 * from {@link admit} until {@link settle}.
 */
export class Calls {
  readonly #o: CallsOptions;
  readonly #p: CallsParts;
  readonly #limit: LimitFunction;
  /** Calls admitted through `admit`, waiting for `settle`. */
  readonly #tickets = new Map<string, { call: PendingCall; started: number }>();
  /** Judge kinds and models whose unreadable usage was warned about. */
  readonly #unreadWarned = new LRUCache<string, true>({ max: 1000 });

  constructor(options: CallsOptions, parts: CallsParts) {
    this.#o = options;
    this.#p = parts;
    this.#limit = pLimit(options.concurrency);
  }

  /** Admission, then the judge within the concurrency limit, then settlement. */
  async run<T>(p: Prepared, judge: () => Promise<T> | T, options: RunOptions<T>): Promise<Outcome<T>> {
    const a = await this.#admit(p, options.knownUsage);
    if (a.kind === "skipped") return a.outcome;
    return this.#limit(() => this.#call(a.call, judge, options));
  }

  /** Admits a call its caller makes itself, and holds its ticket until {@link settle}. */
  async admit(p: Prepared, knownUsage: Usage | undefined, how: AdmitHow): Promise<Ticket | SkippedOutcome> {
    const a = await this.#admit(p, knownUsage, { ...how, remote: true, ttlMs: how.ttlMs ?? REMOTE_TTL_MS });
    if (a.kind === "skipped") return a.outcome;
    const { call } = a;
    this.#tickets.set(call.reservationId, { call, started: performance.now() });
    return {
      status: "admitted",
      reservationId: call.reservationId,
      reservedUsd: call.reserved ? toUsd(call.estimate.expectedMicros) : 0,
      shadowReason: call.shadowReason,
    };
  }

  /** Settles a ticket; see {@link Guard.settle}. */
  settle(reservationId: string, result: Settlement): { costUsd: number } {
    let ticket = this.#tickets.get(reservationId);
    if (ticket !== undefined) this.#tickets.delete(reservationId);
    else {
      // Admitted by a guard that is gone (a sidecar that crashed and restarted), or charged at
      // its estimate after its timeout: the call was made, so its settlement counts.
      const row = this.#p.ledger.attempt((s) => s.reservation(reservationId));
      if (row === undefined || (row.chargedMicros !== null && result.expired)) {
        throw settledAlready(reservationId);
      }
      const started = performance.now() - Math.max(0, this.#o.clock.now() - row.createdMs);
      ticket = { call: pendingCallOfRow(row), started };
    }
    const { call, started } = ticket;
    // An expired call's client never said what it cost: charge what was reserved, not nothing,
    // and keep the reservation's row, so that a settlement arriving after all corrects it.
    const reported: ReportedCost = result.expired
      ? { costUsd: toUsd(call.estimate.expectedMicros), estimated: true }
      : result;
    const decision = result.ok && !result.expired ? "judged" : "failed";
    const charged = this.#p.settlements.settle(call, decision, reported, started, result.expired === true);
    if (charged.moot === true && result.expired !== true) throw settledAlready(reservationId);
    return { costUsd: toUsd(charged.micros) };
  }

  /** Tickets not settled yet, oldest first. */
  openTickets(): Array<{ reservationId: string; ageMs: number }> {
    const now = performance.now();
    return [...this.#tickets].map(([id, t]) => ({ reservationId: id, ageMs: now - t.started }));
  }

  /** Admits a prepared call (waiting in line near a cap), or skips it with the reason. */
  async #admit(
    p: Prepared,
    knownUsage: Usage | undefined,
    how: AdmitHow = {},
  ): Promise<{ kind: "admitted"; call: PendingCall } | { kind: "skipped"; outcome: SkippedOutcome }> {
    const waitMs = Math.min(how.waitMs ?? this.#o.admissionWaitMs, this.#o.admissionWaitMs);
    const { subject } = p;
    const call: PendingCall = {
      sessionKey: subject.sessionKey,
      judge: subject.judge,
      model: subject.model,
      turns: subject.turns,
      transcriptChars: subject.transcriptChars,
      transcriptHash: subject.transcriptHash,
      reservationId: randomUUID(),
      remote: how.remote === true,
      ttlMs: how.ttlMs ?? 0,
      knownUsage,
      estimate: p.estimate,
      shadowReason: p.shadowReason,
      at: p.now,
      reserved: false,
    };
    const estimate = () => this.#p.intake.estimate(p.req, p.obs);
    const a = await this.#p.queue.admit(call, performance.now() + waitMs, estimate);
    if (a.kind === "admitted") return a;
    const { skips } = this.#p;
    const outcome =
      a.kind === "refused"
        ? skips.skip(p.subject, a.at, a.refusal.reason, p.savedMicros, { refusal: a.refusal })
        : skips.skip(p.subject, a.at, "ledger_error", p.savedMicros, { cause: a.cause });
    return { kind: "skipped", outcome };
  }

  async #call<T>(
    call: PendingCall,
    judge: () => Promise<T> | T,
    options: RunOptions<T>,
  ): Promise<Outcome<T>> {
    const { settlements } = this.#p;
    const started = performance.now();
    let value: T;
    try {
      value = await judge();
    } catch (error) {
      settlements.settle(call, "failed", this.#o.usageOfError(error), started);
      throw error;
    }
    const usageOf = (options.usageOf as UsageOf | undefined) ?? this.#o.usageOf;
    const reported = usageOf(value);
    if (reported?.usage === undefined && reported?.costUsd === undefined && hasUnreadUsage(value))
      this.#warnUnread(call.judge, call.model);
    const charged = settlements.settle(call, "judged", reported, started);
    return {
      status: "judged",
      value,
      costUsd: toUsd(charged.micros),
      usage: charged.usage,
      reservedUsd: call.reserved ? toUsd(call.estimate.expectedMicros) : 0,
      shadowReason: call.shadowReason,
    };
  }

  /**
   * A judge's result carried a usage object in a shape the guard does not read: its call is
   * charged its estimate. Said once per judge kind and model, so the caller can give `usageOf`.
   */
  #warnUnread(judge: string, model: string): void {
    const key = `${judge}\u0000${model}`;
    if (this.#unreadWarned.has(key)) return;
    this.#unreadWarned.set(key, true);
    this.#p.log.warn(
      { judge, model },
      "the judge's result has a usage object in a shape the guard does not read: charged its estimate; give usageOf",
    );
  }
}

const settledAlready = (reservationId: string): InvalidRequestError =>
  new InvalidRequestError(
    "reservation_id",
    `no open reservation ${JSON.stringify(reservationId)}: it was settled already, or never made`,
  );
