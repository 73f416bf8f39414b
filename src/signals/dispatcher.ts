import type { Logger } from "../log/logger.js";
import type { LedgerStore } from "../store/types.js";
import type { GuardEvent, SignalSink } from "./types.js";

export interface DispatcherOptions {
  /** Shadow mode: record what would have been sent, send nothing. */
  readonly shadow: boolean;
  /** Registers a delivery in flight, so that closing the guard waits for it. */
  readonly track: (delivery: Promise<unknown>) => void;
  /** Runs a ledger write whose failure must not break delivery (logged and counted). */
  readonly safely: <R>(fn: () => R) => R | undefined;
}

/**
 * Delivers events to the signal sinks and records every delivery in the ledger. An event is
 * sent to each channel until that channel has delivered it once; `onDelivered` runs when every
 * channel has. Deliveries run in the background: a slow or failing receiver never delays or
 * breaks a judge call.
 */
export class SignalDispatcher {
  readonly #sinks: readonly SignalSink[];
  readonly #store: LedgerStore;
  readonly #log: Logger;
  readonly #o: DispatcherOptions;
  /** Channels that delivered each episode's event, while some have not. */
  readonly #delivered = new Map<string, Set<string>>();
  delivered = 0;
  failed = 0;

  constructor(sinks: readonly SignalSink[], store: LedgerStore, log: Logger, options: DispatcherOptions) {
    this.#sinks = sinks;
    this.#store = store;
    this.#log = log;
    this.#o = options;
  }

  get enabled(): boolean {
    return this.#sinks.length > 0;
  }

  send(event: GuardEvent, now: number, onDelivered: () => void): void {
    const key = event.episode_id;
    let done = this.#delivered.get(key);
    if (done === undefined) {
      done = new Set();
      this.#delivered.set(key, done);
    }
    const delivered = done;
    const pending = this.#sinks.filter((s) => !delivered.has(s.name));
    const deliveries = pending.map(async (sink) => {
      let error: string | null = null;
      if (this.#o.shadow) {
        delivered.add(sink.name);
      } else {
        try {
          await sink.send(event);
          delivered.add(sink.name);
          this.delivered++;
        } catch (e) {
          error = (e as Error)?.message ?? String(e);
          this.failed++;
          this.#log.warn(
            { channel: sink.name, sessionKey: event.session_key, err: error },
            "signal delivery failed",
          );
        }
      }
      this.#o.safely(() =>
        this.#store.recordSignal({
          ts: now,
          episodeId: event.episode_id,
          sessionKey: event.session_key,
          channel: sink.name,
          event: event.type,
          status: this.#o.shadow ? "shadow" : error === null ? "delivered" : "failed",
          attempts: 1,
          error,
        }),
      );
    });
    this.#o.track(
      Promise.allSettled(deliveries).then(() => {
        if (delivered.size < this.#sinks.length) return;
        this.#delivered.delete(key);
        onDelivered();
      }),
    );
  }
}
