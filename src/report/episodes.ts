import type { EvidenceStep } from "../detection/window.js";
import { openReader } from "../store/open.js";
import type { KeyEpisodeRow } from "../store/reader.js";

/** A stuck episode of one key as the ledger recorded it, with the evidence it opened on (null before schema v5). */
export type KeyEpisode = KeyEpisodeRow & { readonly trail: readonly EvidenceStep[] | null };

export interface KeyHistory {
  readonly sessionKey: string;
  /** The key is in an episode now. */
  readonly stuck: boolean;
  readonly episodes: readonly KeyEpisode[];
}

/** The stuck episodes the ledger at `path` recorded for one key, oldest first. */
export function keyHistory(path: string, sessionKey: string): KeyHistory {
  const reader = openReader(path);
  try {
    return reader.snapshot(() => ({
      sessionKey,
      stuck: reader.keyStuck(sessionKey),
      episodes: reader.keyEpisodes(sessionKey),
    }));
  } finally {
    reader.close();
  }
}
