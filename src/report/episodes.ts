import type { StuckEvidence } from "../detection/evidence.js";
import { type EvidenceStep, parseTrail } from "../detection/window.js";
import { openForReading, ReportDataError } from "./report.js";

/** A stuck episode of one key as the ledger recorded it. */
export interface KeyEpisode {
  readonly id: string;
  readonly fingerprint: string;
  readonly evidence: StuckEvidence;
  readonly repeats: number;
  /** 1-based index of the reply at which it was detected. */
  readonly detectedTurn: number;
  readonly startedMs: number;
  readonly endedMs: number | null;
  /** The evidence it opened on; null for episodes recorded before schema v5. */
  readonly trail: readonly EvidenceStep[] | null;
}

export interface KeyHistory {
  readonly sessionKey: string;
  /** The key is in an episode now. */
  readonly stuck: boolean;
  readonly episodes: readonly KeyEpisode[];
}

type Row = Record<string, unknown>;

/** The stuck episodes the ledger at `path` recorded for one key, oldest first. */
export function keyHistory(path: string, sessionKey: string): KeyHistory {
  const db = openForReading(path);
  try {
    const version = Number(db.pragma("user_version", { simple: true }));
    const trail = version >= 5 ? "trail" : "NULL AS trail";
    const rows = db
      .prepare(
        `SELECT id, fingerprint, evidence, repeats, detected_turn, started_ms, ended_ms, ${trail}
         FROM episodes WHERE session_key = ? ORDER BY started_ms, id`,
      )
      .all(sessionKey) as Row[];
    const state = db.prepare("SELECT stuck FROM key_state WHERE session_key = ?").get(sessionKey) as
      | Row
      | undefined;
    return {
      sessionKey,
      stuck: state !== undefined && Number(state.stuck) === 1,
      episodes: rows.map((r) => ({
        id: String(r.id),
        fingerprint: String(r.fingerprint),
        evidence: String(r.evidence) as StuckEvidence,
        repeats: Number(r.repeats),
        detectedTurn: Number(r.detected_turn),
        startedMs: Number(r.started_ms),
        endedMs: r.ended_ms === null ? null : Number(r.ended_ms),
        trail: parseTrail(r.trail),
      })),
    };
  } catch (e) {
    throw e instanceof ReportDataError
      ? e
      : new ReportDataError(`cannot read the ledger ${path}: ${(e as Error).message}`);
  } finally {
    db.close();
  }
}
