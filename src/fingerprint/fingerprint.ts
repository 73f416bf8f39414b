import { createHash } from "node:crypto";
import { normalizeLines } from "./normalize.js";

/** A 64-bit hex digest. Collisions among one deployment's replies are not a practical concern. */
export function hash64(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

/** Chains a running transcript hash with the next message's fingerprint in O(1). */
export function chainHash(previous: string, next: string): string {
  return createHash("sha256").update(previous).update("\u0000").update(next).digest("hex").slice(0, 16);
}

/**
 * Everything the detector needs to know about one reply, computed once when the reply is first
 * seen. It holds hashes and normalised tokens, never the raw text, and is never persisted.
 */
export interface ReplySignature {
  /** Fingerprint of the whole normalised reply. */
  readonly fingerprint: string;
  /** Fingerprint of each normalised line, in order. */
  readonly lineFingerprints: readonly string[];
  /** Normalised lines, kept so that near-duplicates can be compared without boilerplate. */
  readonly lines: readonly string[];
  /** Length of the raw reply in UTF-16 code units. */
  readonly rawLength: number;
  /** Values of the plain numbers in the reply, in order. */
  readonly numbers: readonly string[];
}

/** Fingerprints a reply: normalise, then hash the whole and each line. */
export function signReply(text: string): ReplySignature {
  const numbers: string[] = [];
  const lines = normalizeLines(text, numbers);
  const lineFingerprints = lines.length === 1 ? [hash64(lines[0]!)] : lines.map(hash64);
  const fingerprint = lines.length === 1 ? lineFingerprints[0]! : hash64(lines.join(" "));
  return { fingerprint, lineFingerprints, lines, rawLength: text.length, numbers };
}

/** Fingerprint of any text after normalisation (used for user inputs and canned lines). */
export function fingerprint(text: string): string {
  return hash64(normalizeLines(text).join(" "));
}
