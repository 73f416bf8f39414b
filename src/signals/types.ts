/**
 * Signals tell the agent's runtime (and its operators) to act: for a stuck session, to drop the
 * stale SDK session and start a fresh one; for a budget, that a cap is near or reached. A sink
 * delivers an event one way (a callback, Phantom's sessions table, a signed webhook); the guard
 * decides when to send and records every delivery in the ledger.
 */

import { ConfigError } from "../errors.js";

/** A session is stuck: force a fresh session for `session_key`. */
export interface StuckSessionEvent {
  readonly type: "stuck_session";
  readonly session_key: string;
  readonly reason: "stuck_session";
  /** Fingerprint of the canned reply. */
  readonly fingerprint: string;
  /** Repeats of the canned reply when the event was raised. */
  readonly repeats: number;
  readonly episode_id: string;
  /** ISO-8601 time the event was raised. */
  readonly ts: string;
}

/**
 * A budget crossed the alert fraction of its cap (`level: "warning"`) or refused a call
 * (`level: "cap_reached"`); sent once per window and level.
 */
export interface BudgetAlertEvent {
  readonly type: "budget_alert";
  readonly level: "warning" | "cap_reached";
  readonly scope: "session" | "judge" | "global";
  /** The key for a session budget; null for the global one and a judge kind's. */
  readonly session_key: string | null;
  /** The judge kind, for a judge kind's budget (`scope: "judge"`) only. */
  readonly judge?: string;
  readonly reason: "session_budget" | "session_calls" | "judge_budget" | "global_budget";
  /** What is used of the cap: USD, or calls for `session_calls`. */
  readonly used: number;
  readonly cap: number;
  /** Start of the rolling window the alert belongs to (ISO-8601). */
  readonly window_start: string;
  /** Identifies this alert: one per scope, reason, level and window. */
  readonly alert_id: string;
  readonly ts: string;
}

export type GuardEvent = StuckSessionEvent | BudgetAlertEvent;

/** What a sink may report about a delivery that succeeded. */
export interface DeliveryReport {
  /** Attempts it took (a webhook retries). @default 1 */
  readonly attempts?: number;
}

export interface SignalSink {
  /** Short name recorded with each delivery ("callback", "webhook", ...); unique per guard. */
  readonly name: string;
  /**
   * Delivers one event; throws (or rejects) when delivery failed. It may resolve with a
   * {@link DeliveryReport}; an error may carry `attempts` (a number) to record how many were made.
   */
  send(event: GuardEvent): unknown;
  /** Releases what the sink holds (a database handle), when the guard closes. */
  close?(): void | Promise<void>;
}

/** The identity of an event for delivery bookkeeping: one episode, or one alert. */
export function eventId(event: GuardEvent): string {
  return event.type === "stuck_session" ? event.episode_id : event.alert_id;
}

/** A sink that calls a function the embedding code supplies. */
export function callbackSink(fn: (event: GuardEvent) => void | Promise<void>, name = "callback"): SignalSink {
  if (typeof fn !== "function") throw ConfigError.option("fn", "a function", fn, "callbackSink");
  return { name, send: async (e) => void (await fn(e)) };
}
