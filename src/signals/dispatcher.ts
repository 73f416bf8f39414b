import type { Logger } from "../log/logger.js";
import type { SafeLedger } from "../store/safe.js";
import type { SignalClaim, SignalLedger } from "../store/types.js";
import { type DeliveryReport, eventId, type GuardEvent, type SignalSink } from "./types.js";

/** The ledger as delivery records are written to it: a failed write never breaks a delivery. */
type Ledger = SafeLedger<SignalLedger>;

export interface DispatcherOptions {
  /** Shadow mode: record what would have been sent, send nothing. */
  readonly shadow: boolean;
  /** Registers a delivery in flight, so that closing the guard waits for it. */
  readonly track: (delivery: Promise<unknown>) => void;
  /** A claim whose delivery did not complete may be taken again after this long (the signal cooldown). */
  readonly retryAfterMs: number;
}

/**
 * Delivers events to the signal sinks and records every delivery in the ledger. An event is
 * sent to each channel until that channel has delivered it once; `onDelivered` runs when every
 * channel has. Deliveries run in the background: a slow or failing receiver never delays or
 * breaks a judge call. Processes sharing a ledger {@link claim} an event before sending it, so
 * that one of them sends it.
 */
export class SignalDispatcher {
  readonly #sinks: readonly SignalSink[];
  readonly #ledger: Ledger;
  readonly #log: Logger;
  readonly #o: DispatcherOptions;
  /** Channels that delivered each event (an episode or an alert), while some have not. */
  readonly #delivered = new Map<string, Set<string>>();
  delivered = 0;
  failed = 0;

  constructor(sinks: readonly SignalSink[], ledger: Ledger, log: Logger, options: DispatcherOptions) {
    this.#sinks = sinks;
    this.#ledger = ledger;
    this.#log = log;
    this.#o = options;
  }

  get enabled(): boolean {
    return this.#sinks.length > 0;
  }

  /**
   * Claims an event's delivery for this process (see `LedgerStore.claimSignal`); run it inside
   * the atomic section that opens the event. A store without claims always grants one.
   */
  claim(eventId: string, now: number): SignalClaim {
    return this.#ledger.store.claimSignal?.(eventId, now, this.#o.retryAfterMs) ?? "claimed";
  }

  send(event: GuardEvent, now: number, onDelivered: () => void = () => {}): void {
    const key = eventId(event);
    let done = this.#delivered.get(key);
    if (done === undefined) {
      done = new Set();
      this.#delivered.set(key, done);
    }
    const delivered = done;
    const deliveries = this.#sinks
      .filter((s) => !delivered.has(s.name))
      .map(async (sink) => {
        const result = this.#o.shadow ? { error: null, attempts: 0 } : await this.#deliver(sink, event);
        if (result.error === null) delivered.add(sink.name);
        this.#ledger.attempt((s) =>
          s.recordSignal({
            ts: now,
            eventId: key,
            episodeId: event.type === "stuck_session" ? event.episode_id : null,
            sessionKey: event.session_key ?? "*",
            channel: sink.name,
            event: event.type === "stuck_session" ? event.type : `${event.type}:${event.level}`,
            status: this.#o.shadow ? "shadow" : result.error === null ? "delivered" : "failed",
            attempts: result.attempts,
            error: result.error,
          }),
        );
      });
    this.#o.track(
      Promise.allSettled(deliveries).then(() => {
        if (delivered.size < this.#sinks.length) return;
        this.#delivered.delete(key);
        // Shadow mode sent nothing: an enforcing guard may still have to.
        if (!this.#o.shadow) this.#ledger.attempt((s) => s.completeSignal?.(key, now));
        onDelivered();
      }),
    );
  }

  async #deliver(sink: SignalSink, event: GuardEvent): Promise<{ error: string | null; attempts: number }> {
    try {
      const report = (await sink.send(event)) as DeliveryReport | undefined;
      this.delivered++;
      return { error: null, attempts: typeof report?.attempts === "number" ? report.attempts : 1 };
    } catch (e) {
      const error = (e as Error)?.message ?? String(e);
      const tried = (e as { attempts?: unknown })?.attempts;
      const attempts = typeof tried === "number" ? tried : 1;
      this.failed++;
      this.#log.warn(
        { channel: sink.name, event: event.type, sessionKey: event.session_key, attempts, err: error },
        "signal delivery failed",
      );
      return { error, attempts };
    }
  }

  /** Closes the sinks that hold resources. */
  async close(): Promise<void> {
    for (const sink of this.#sinks) {
      try {
        await sink.close?.();
      } catch (e) {
        this.#log.warn(
          { channel: sink.name, err: (e as Error)?.message },
          "signal sink did not close cleanly",
        );
      }
    }
  }
}
