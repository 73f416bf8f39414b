import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { Logger } from "../log/logger.js";
import type { SignalDispatcher } from "../signals/dispatcher.js";
import type { KeyStateRecord, LedgerStore } from "../store/types.js";
import type { CannedCatalog } from "./catalog.js";
import type { Observation } from "./tracker.js";
import type { EvidenceStep } from "./window.js";

/** Whether a key is stuck now, and the episode it is stuck in. */
export interface StuckVerdict {
  /** The session is stuck (in shadow mode too). */
  readonly stuck: boolean;
  readonly episodeId: string | null;
  readonly fingerprint: string | null;
  readonly repeats: number;
}

export interface EpisodeOptions {
  readonly maxSessions: number;
  /** A channel whose delivery failed is retried at most this often. */
  readonly signalCooldownMs: number;
  readonly safely: <R>(fn: () => R) => R | undefined;
}

const NOT_STUCK: StuckVerdict = { stuck: false, episodeId: null, fingerprint: null, repeats: 0 };

export function clearedState(sessionKey: string, now: number): KeyStateRecord {
  return {
    sessionKey,
    stuck: false,
    episodeId: null,
    fingerprint: null,
    repeats: 0,
    lastSignalMs: null,
    signalled: false,
    updatedMs: now,
  };
}

/**
 * Turns the tracker's assessments into stuck episodes, persisted so that a restart forgets
 * nothing: opens one when a key becomes stuck (and registers its canned fingerprint for every
 * session), signals the runtime once per episode, and closes it when a different reply arrives.
 * Several processes sharing a ledger adopt the episode the first one opened.
 */
export class EpisodeBook {
  readonly #store: LedgerStore;
  readonly #catalog: CannedCatalog;
  readonly #signals: SignalDispatcher;
  readonly #log: Logger;
  readonly #o: EpisodeOptions;
  /** Per key: the persisted state, or a cleared one for keys the ledger has no row for. */
  readonly #states: LRUCache<string, KeyStateRecord>;
  opened = 0;
  /** Keys stuck right now, as this process knows them. */
  readonly stuckKeys = new Set<string>();

  constructor(
    store: LedgerStore,
    catalog: CannedCatalog,
    signals: SignalDispatcher,
    log: Logger,
    options: EpisodeOptions,
  ) {
    this.#store = store;
    this.#catalog = catalog;
    this.#signals = signals;
    this.#log = log;
    this.#o = options;
    this.#states = new LRUCache({ max: options.maxSessions });
  }

  state(sessionKey: string): KeyStateRecord {
    let ks = this.#states.get(sessionKey);
    if (ks === undefined) {
      ks = this.#o.safely(() => this.#store.keyState(sessionKey)) ?? clearedState(sessionKey, 0);
      this.#states.set(sessionKey, ks);
    }
    return ks;
  }

  /** Operator action: ends the key's episode, if any. */
  reset(sessionKey: string, now: number): void {
    this.stuckKeys.delete(sessionKey);
    const ks = this.state(sessionKey);
    const cleared = clearedState(sessionKey, now);
    this.#states.set(sessionKey, cleared);
    this.#o.safely(() =>
      this.#store.atomically(() => {
        if (ks.episodeId) this.#store.closeEpisode(ks.episodeId, now);
        this.#store.saveKeyState(cleared);
      }),
    );
  }

  /**
   * Applies the key's latest observation. `trail` gives the evidence that decided, asked for
   * only when an episode opens (the ledger keeps it for `judge-guard explain`).
   */
  update(obs: Observation, now: number, trail: () => readonly EvidenceStep[] = () => []): StuckVerdict {
    const key = obs.sessionKey;
    const ks = this.state(key);
    const step = obs.step;
    const a = obs.assessment;
    const stuckNow = a?.stuck === true && step !== null;
    if (obs.stale) {
      // A late request reports an older transcript: answer it, but let it change nothing.
      return stuckNow
        ? { stuck: true, episodeId: ks.episodeId, fingerprint: step.fingerprint, repeats: a.repeats }
        : NOT_STUCK;
    }
    if (!stuckNow) {
      // A new reply is judged; the episode ends only once the evidence has fallen below the
      // threshold (a real answer), not at each paraphrase of a rotating canned line.
      if (ks.stuck && a?.elevated !== true) this.#recover(ks, now);
      return NOT_STUCK;
    }

    this.stuckKeys.add(key);
    // The episode's other canned forms (a rotation, an alternation) are canned for every session.
    if (!this.#catalog.hasFingerprint(step.fingerprint)) this.#register(step.fingerprint, now);
    let next: KeyStateRecord;
    if (ks.stuck && ks.episodeId) {
      if (ks.repeats === a.repeats && !this.#signalDue(ks, now)) return verdict(ks);
      next = { ...ks, repeats: a.repeats, updatedMs: now };
    } else {
      next = this.#open(obs, ks, now, trail());
    }
    if (this.#signalDue(next, now)) {
      next = { ...next, lastSignalMs: now };
      const episodeId = next.episodeId!;
      this.#signals.send(
        {
          type: "stuck_session",
          session_key: key,
          reason: "stuck_session",
          fingerprint: next.fingerprint ?? step.fingerprint,
          repeats: a.repeats,
          episode_id: episodeId,
          ts: new Date(now).toISOString(),
        },
        now,
        () => this.#markSignalled(key, episodeId),
      );
    }
    this.#states.set(key, next);
    const saved = next;
    this.#o.safely(() => this.#store.saveKeyState(saved));
    return verdict(next);
  }

  #register(fingerprint: string, now: number): void {
    this.#catalog.addFingerprint(fingerprint);
    this.#o.safely(() => this.#store.addCannedFingerprint(fingerprint, "episode", now));
  }

  /** Opens an episode, or adopts the one another process sharing the ledger opened already. */
  #open(obs: Observation, ks: KeyStateRecord, now: number, trail: readonly EvidenceStep[]): KeyStateRecord {
    const step = obs.step!;
    const a = obs.assessment!;
    const key = obs.sessionKey;
    const fresh: KeyStateRecord = {
      sessionKey: key,
      stuck: true,
      episodeId: randomUUID(),
      fingerprint: step.fingerprint,
      repeats: a.repeats,
      lastSignalMs: null,
      signalled: false,
      updatedMs: now,
    };
    // Without a ledger the episode still holds in this process: detection does not need it.
    const chosen =
      this.#o.safely(() =>
        this.#store.atomically(() => {
          const current = this.#store.keyState(key);
          if (current?.stuck && current.episodeId) {
            return { ...current, repeats: a.repeats, updatedMs: now };
          }
          const previous = current?.episodeId ?? ks.episodeId;
          if (previous) this.#store.closeEpisode(previous, now);
          this.#store.openEpisode({
            id: fresh.episodeId!,
            sessionKey: key,
            fingerprint: step.fingerprint,
            evidence: a.evidence,
            repeats: a.repeats,
            detectedTurn: obs.turns,
            startedMs: now,
            trail,
          });
          return fresh;
        }),
      ) ?? fresh;
    if (chosen === fresh) {
      this.opened++;
      this.#log.info(
        {
          sessionKey: key,
          episodeId: fresh.episodeId,
          fingerprint: step.fingerprint,
          repeats: a.repeats,
          evidence: a.evidence,
          score: a.score,
        },
        "session is stuck: judging stops until it recovers",
      );
    }
    return chosen;
  }

  #recover(ks: KeyStateRecord, now: number): void {
    this.stuckKeys.delete(ks.sessionKey);
    this.#log.info(
      { sessionKey: ks.sessionKey, episodeId: ks.episodeId },
      "session recovered: judging resumes",
    );
    const cleared = clearedState(ks.sessionKey, now);
    this.#states.set(ks.sessionKey, cleared);
    this.#o.safely(() =>
      this.#store.atomically(() => {
        if (ks.episodeId) this.#store.closeEpisode(ks.episodeId, now);
        this.#store.saveKeyState(cleared);
      }),
    );
  }

  /**
   * One signal per episode: once every channel has delivered it, it is not sent again (if the
   * runtime acts on it the next reply differs and the episode ends; if not, an operator must
   * look). A channel that failed is retried, at most once per cooldown.
   */
  #signalDue(ks: KeyStateRecord, now: number): boolean {
    if (!this.#signals.enabled || ks.signalled) return false;
    return ks.lastSignalMs === null || now - ks.lastSignalMs >= this.#o.signalCooldownMs;
  }

  #markSignalled(sessionKey: string, episodeId: string): void {
    const ks = this.#states.get(sessionKey);
    if (ks?.episodeId !== episodeId) return;
    const done = { ...ks, signalled: true };
    this.#states.set(sessionKey, done);
    this.#o.safely(() => this.#store.saveKeyState(done));
  }
}

function verdict(ks: KeyStateRecord): StuckVerdict {
  return { stuck: ks.stuck, episodeId: ks.episodeId, fingerprint: ks.fingerprint, repeats: ks.repeats };
}
