import type { SkipReason } from "../domain/decision.js";
import type { Usage } from "../pricing/prices.js";
import type { StuckVerdict } from "./episodes.js";

/** Read-only counters since the guard was created. */
export interface GuardStats {
  judged: number;
  failed: number;
  reused: number;
  skipped: Record<Exclude<SkipReason, "duplicate">, number>;
  chargedUsd: number;
  savedUsd: number;
  stuckEpisodes: number;
  /** Session keys stuck right now (as this process has seen them). */
  stuckKeys: number;
  signalsDelivered: number;
  signalsFailed: number;
  ledgerErrors: number;
  reclaimedReservations: number;
  /** Settlements the ledger refused, waiting to be written again. */
  unsettled: number;
}

/** A judge call a cycle would make: its identity, as in a {@link JudgeRequest}. */
export interface AssessedJudge {
  readonly judge: string;
  readonly model: string;
  /** Tells apart calls of one judge kind with different prompts. */
  readonly variant?: string;
  /** The call's output ceiling, for its estimate. */
  readonly maxTokens?: number;
}

export interface AssessOptions {
  /** The judge calls a skip saves (recorded as skipped decisions with their estimates). */
  readonly judges?: ReadonlyArray<AssessedJudge>;
}

/** What {@link Guard.assess} decides. */
export interface Assessment extends StuckVerdict {
  /** Skip the judges: the session is stuck and the guard enforces (not shadow mode). */
  readonly skip: boolean;
}

/** A call admitted by {@link Guard.admit}: make it, then settle it. */
export interface Ticket {
  readonly status: "admitted";
  readonly reservationId: string;
  readonly reservedUsd: number;
  /** In shadow mode, why enforce mode would have skipped this call; otherwise null. */
  readonly shadowReason: SkipReason | null;
}

/** What an admitted call really cost. */
export interface Settlement {
  /** False when the call failed. */
  readonly ok: boolean;
  readonly usage?: Usage;
  /** A cost reported without tokens. */
  readonly costUsd?: number;
  /** The model that really ran, if not the one admitted. */
  readonly model?: string;
  /** The client never settled (it timed out or went away): charge the reservation's estimate. */
  readonly expired?: boolean;
}

/** What {@link Guard.session} reports about one key. */
export interface SessionState {
  readonly sessionKey: string;
  readonly stuck: boolean;
  readonly episodeId: string | null;
  readonly fingerprint: string | null;
  readonly repeats: number;
  readonly spentUsd: number;
  readonly calls: number;
  readonly budgetUsd: number;
  readonly maxCalls: number;
}
