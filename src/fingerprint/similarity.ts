import type { ReplySignature } from "./fingerprint.js";
import { tokenize } from "./normalize.js";

/**
 * When two replies count as "the same reply".
 *
 * Equal fingerprints do, unless the replies fill one template with different data: a canned
 * line varies a counter or two, a status report varies many numbers. Otherwise the replies are compared on their *core*: the lines
 * that are not boilerplate for the session (a signature or footer seen under different replies).
 * Two cores are near-duplicates when the words they do not share are few both in absolute terms
 * and relative to their length, so "Please wait." and "Please wait a moment." agree while two
 * answers that only share a footer never do, however long the footer.
 */
export interface SimilarityLimits {
  /** Largest number of words (counted with multiplicity) the two cores may not share. */
  readonly maxWordDifference: number;
  /** Largest share of all words in both cores that may differ. */
  readonly maxRelativeDifference: number;
  /** Plain numbers that may differ between two replies of one template before they carry different data. */
  readonly maxNumberDifference: number;
}

export const DEFAULT_SIMILARITY: SimilarityLimits = {
  maxWordDifference: 6,
  maxRelativeDifference: 0.2,
  maxNumberDifference: 2,
};

/** Positions at which two lists of numbers differ, counting any extra ones. */
export function numberDifference(a: readonly string[], b: readonly string[]): number {
  let diff = Math.abs(a.length - b.length);
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) diff++;
  return diff;
}

/** Words of the lines of `sig` that are not in `boilerplate` (normalised lines). */
export function coreWords(sig: ReplySignature, boilerplate: ReadonlySet<string>): readonly string[] {
  if (boilerplate.size === 0 || !sig.lines.some((l) => boilerplate.has(l))) return sig.words;
  const words: string[] = [];
  for (const line of sig.lines) {
    if (boilerplate.has(line)) continue;
    for (const w of tokenize(line)) words.push(w);
  }
  return words;
}

/** Size of the symmetric difference of two word multisets. */
export function wordDifference(a: readonly string[], b: readonly string[]): number {
  const counts = new Map<string, number>();
  for (const w of a) counts.set(w, (counts.get(w) ?? 0) + 1);
  for (const w of b) counts.set(w, (counts.get(w) ?? 0) - 1);
  let diff = 0;
  for (const c of counts.values()) diff += Math.abs(c);
  return diff;
}

/** Whether word lists of these lengths can be near-duplicates: their difference is at least the gap. */
export function lengthsAllow(a: number, b: number, limits: SimilarityLimits): boolean {
  const gap = Math.abs(a - b);
  return gap <= limits.maxWordDifference && gap / (a + b) <= limits.maxRelativeDifference;
}

/** Whether two word lists are near-duplicates under `limits` (cheap length check first). */
export function nearWords(a: readonly string[], b: readonly string[], limits: SimilarityLimits): boolean {
  if (!lengthsAllow(a.length, b.length, limits)) return false;
  const total = a.length + b.length;
  const diff = wordDifference(a, b);
  return diff <= limits.maxWordDifference && diff / total <= limits.maxRelativeDifference;
}

export function sameReply(
  a: ReplySignature,
  b: ReplySignature,
  boilerplate: ReadonlySet<string>,
  limits: SimilarityLimits = DEFAULT_SIMILARITY,
): boolean {
  if (a.normalized === b.normalized) {
    return numberDifference(a.numbers, b.numbers) <= limits.maxNumberDifference;
  }
  // Most pairs of different replies differ in length too much: tell without splitting them.
  if (boilerplate.size === 0 && !lengthsAllow(a.wordCount, b.wordCount, limits)) return false;
  const wa = coreWords(a, boilerplate);
  const wb = coreWords(b, boilerplate);
  if (wa.length === 0 || wb.length === 0) return false;
  return nearWords(wa, wb, limits);
}
