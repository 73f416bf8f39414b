/**
 * Signals tell the agent's runtime to act: for a stuck session, to drop the stale SDK session
 * and start a fresh one. A sink delivers an event one way (a callback, a SQL update, a webhook);
 * the dispatcher decides when to send and records every delivery in the ledger.
 */

export interface StuckSessionEvent {
  readonly type: "stuck_session";
  readonly session_key: string;
  readonly reason: "stuck_session";
  readonly fingerprint: string;
  readonly repeats: number;
  readonly episode_id: string;
  /** ISO-8601 time the event was raised. */
  readonly ts: string;
}

export type GuardEvent = StuckSessionEvent;

export interface SignalSink {
  /** Short name recorded with each delivery ("callback", "webhook", ...). */
  readonly name: string;
  /** Delivers one event; throws (or rejects) when delivery failed. */
  send(event: GuardEvent): void | Promise<void>;
}

/** A sink that calls a function the embedding code supplies. */
export function callbackSink(fn: (event: GuardEvent) => void | Promise<void>, name = "callback"): SignalSink {
  if (typeof fn !== "function") throw new TypeError(`callbackSink expects a function, got ${typeof fn}`);
  return { name, send: fn };
}
