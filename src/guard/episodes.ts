import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { CannedCatalog } from "../detection/catalog.js";
import type { Observation } from "../detection/tracker.js";
import type { EvidenceStep } from "../detection/window.js";
import type { Logger } from "../log/logger.js";
import type { SignalDispatcher } from "../signals/dispatcher.js";
import type { SafeLedger } from "../store/safe.js";
import type { EpisodeLedger, KeyStateRecord } from "../store/types.js";

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
  readonly #ledger: SafeLedger<EpisodeLedger>;
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
    ledger: SafeLedger<EpisodeLedger>,
    catalog: CannedCatalog,
    signals: SignalDispatcher,
    log: Logger,
    options: EpisodeOptions,
  ) {
    this.#ledger = ledger;
    this.#catalog = catalog;
    this.#signals = signals;
    this.#log = log;
    this.#o = options;
    this.#states = new LRUCache({ max: options.maxSessions });
  }

  state(sessionKey: string): KeyStateRecord {
    let ks = this.#states.get(sessionKey);
    if (ks === undefined) {
      ks = this.#ledger.attempt((s) => s.keyState(sessionKey)) ?? clearedState(sessionKey, 0);
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
    this.#ledger.attempt((s) =>
      s.atomically(() => {
        if (ks.episodeId) s.closeEpisode(ks.episodeId, now);
        s.saveKeyState(cleared);
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
    if (ks.stuck && ks.episodeId && ks.repeats === a.repeats && !this.#signalDue(ks, now)) return verdict(ks);
    const { next, opened, claimed } = this.#enter(obs, ks, now, trail);
    if (opened) {
      this.opened++;
      this.#log.info(
        {
          sessionKey: key,
          episodeId: next.episodeId,
          fingerprint: step.fingerprint,
          repeats: a.repeats,
          evidence: a.evidence,
          score: a.score,
        },
        "session is stuck: judging stops until it recovers",
      );
    }
    if (claimed) {
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
    return verdict(next);
  }

  #register(fingerprint: string, now: number): void {
    this.#catalog.addFingerprint(fingerprint);
    this.#ledger.attempt((s) => s.addCannedFingerprint(fingerprint, "episode", now));
  }

  /**
   * A stuck observation, in one transaction: adopts the key's open episode (another process
   * sharing the ledger may have opened it) or opens one, saves the key's state, and claims the
   * episode's signal when one is due. Of several processes that see a key turn stuck at once,
   * one opens the episode and one sends its signal.
   */
  #enter(
    obs: Observation,
    ks: KeyStateRecord,
    now: number,
    trail: () => readonly EvidenceStep[],
  ): { next: KeyStateRecord; opened: boolean; claimed: boolean } {
    const step = obs.step!;
    const a = obs.assessment!;
    const key = obs.sessionKey;
    let fresh: KeyStateRecord | undefined;
    const open = (): KeyStateRecord => {
      fresh = {
        sessionKey: key,
        stuck: true,
        episodeId: randomUUID(),
        fingerprint: step.fingerprint,
        repeats: a.repeats,
        lastSignalMs: null,
        signalled: false,
        updatedMs: now,
      };
      return fresh;
    };
    let claimed = false;
    const inLedger = this.#ledger.attempt((s) =>
      s.atomically(() => {
        claimed = false;
        const current = s.keyState(key);
        let next: KeyStateRecord;
        if (current?.stuck && current.episodeId) {
          next = { ...current, repeats: a.repeats, updatedMs: now };
        } else {
          next = open();
          const previous = current?.episodeId ?? ks.episodeId;
          if (previous) s.closeEpisode(previous, now);
          s.openEpisode({
            id: next.episodeId!,
            sessionKey: key,
            fingerprint: step.fingerprint,
            evidence: a.evidence,
            repeats: a.repeats,
            detectedTurn: obs.turns,
            startedMs: now,
            trail: trail(),
          });
        }
        if (this.#signalDue(next, now)) {
          const claim = this.#signals.claim(next.episodeId!, now);
          if (claim === "claimed") {
            next = { ...next, lastSignalMs: now };
            claimed = true;
          } else if (claim === "delivered") next = { ...next, signalled: true };
        }
        s.saveKeyState(next);
        return next;
      }),
    );
    // Without a ledger the episode still holds in this process: detection does not need it.
    let next = inLedger;
    if (next === undefined) {
      next = ks.stuck && ks.episodeId ? { ...ks, repeats: a.repeats, updatedMs: now } : open();
      claimed = this.#signalDue(next, now);
      if (claimed) next = { ...next, lastSignalMs: now };
    }
    return { next, opened: next.episodeId === fresh?.episodeId, claimed };
  }

  #recover(ks: KeyStateRecord, now: number): void {
    this.stuckKeys.delete(ks.sessionKey);
    this.#log.info(
      { sessionKey: ks.sessionKey, episodeId: ks.episodeId },
      "session recovered: judging resumes",
    );
    const cleared = clearedState(ks.sessionKey, now);
    this.#states.set(ks.sessionKey, cleared);
    this.#ledger.attempt((s) =>
      s.atomically(() => {
        if (ks.episodeId) s.closeEpisode(ks.episodeId, now);
        s.saveKeyState(cleared);
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
    if (ks?.episodeId === episodeId) this.#states.set(sessionKey, { ...ks, signalled: true });
    // The ledger's row, not this process's copy of it: another process may have moved it on.
    this.#ledger.attempt((s) =>
      s.atomically(() => {
        const current = s.keyState(sessionKey);
        if (current?.episodeId === episodeId && !current.signalled)
          s.saveKeyState({ ...current, signalled: true });
      }),
    );
  }
}

function verdict(ks: KeyStateRecord): StuckVerdict {
  return { stuck: ks.stuck, episodeId: ks.episodeId, fingerprint: ks.fingerprint, repeats: ks.repeats };
}
