import { createHash } from "node:crypto";
import { normalizeLines, tokenize } from "./normalize.js";

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
 * seen. It holds normalised text and numbers in memory only; what leaves the process (the
 * ledger, logs, signals) is the fingerprint, a hash.
 */
export class ReplySignature {
  /** Normalised lines, so that near-duplicates can be compared without boilerplate lines. */
  readonly lines: readonly string[];
  /** The normalised reply: its lines joined by spaces. Equal iff the fingerprints are equal. */
  readonly normalized: string;
  /** Values of the plain numbers in the reply, in order. */
  readonly numbers: readonly string[];
  #fingerprint: string | undefined;
  #words: string[] | undefined;

  /** The reply has characters outside ASCII (Unicode steps apply). */
  readonly nonAscii: boolean;

  constructor(text: string) {
    const numbers: string[] = [];
    const seen = { nonAscii: false };
    this.lines = normalizeLines(text, numbers, seen);
    this.nonAscii = seen.nonAscii;
    this.normalized = this.lines.length === 1 ? this.lines[0]! : this.lines.join(" ");
    this.numbers = numbers;
  }

  /** 64-bit hex hash of the normalised reply, computed when first asked for. */
  get fingerprint(): string {
    this.#fingerprint ??= hash64(this.normalized);
    return this.#fingerprint;
  }

  /** How many words {@link words} holds, counted without splitting where that is exact. */
  get wordCount(): number {
    if (this.#words !== undefined) return this.#words.length;
    const n = this.normalized;
    if (n === "") return 0;
    if (this.nonAscii) return this.words.length;
    let count = 1;
    for (let i = n.indexOf(" "); i !== -1; i = n.indexOf(" ", i + 1)) count++;
    return count;
  }

  /** All normalised words (characters, in scripts without spaces), in order. */
  get words(): readonly string[] {
    this.#words ??= tokenize(this.normalized, this.nonAscii);
    return this.#words;
  }
}

/** Fingerprints a reply: normalise it, keep what comparisons need, hash on demand. */
export function signReply(text: string): ReplySignature {
  return new ReplySignature(text);
}

/** Fingerprint of any text after normalisation (used for user inputs and canned lines). */
export function fingerprint(text: string): string {
  return hash64(normalizeLines(text).join(" "));
}
