import { normalizeLine, tokenize } from "../fingerprint/normalize.js";

/**
 * Finds where a reply quotes the user's message, so that a canned line built around the quote
 * ('I received "deploy web" but I am still busy') compares equal whatever the user wrote.
 *
 * A quote is the user's whole message (normalised) inside the reply, or, inside quotation
 * marks or a "> " block, a prefix of it of at least three words (a truncated quote). Words of
 * the user's that a reply merely uses ("Deployed web to staging" after "deploy web to
 * staging") are not a quote: that is a reply filled in from the request (see `slot` in
 * evidence.ts).
 */

const QUOTED =
  /["\u201c\u201d\u201e\u00ab\u00bb\u300c\u300d\u300e\u300f`]([^"\u201c\u201d\u201e\u00ab\u00bb\u300c\u300d\u300e\u300f`\n]{1,2000})["\u201c\u201d\u201e\u00ab\u00bb\u300c\u300d\u300e\u300f`]|^[ \t]*>[ \t]?(.+)$/gm;
/** Inputs shorter than this (in tokens) are quoted only inside quotation marks. */
const BARE_QUOTE_TOKENS = 3;
const MIN_PREFIX_TOKENS = 3;
/** Longer inputs are not searched for (quoting a whole pasted log is not a canned line's habit). */
const MAX_INPUT_CHARS = 4000;

export interface Quote {
  /** The quoted text, normalised: to be set aside from the normalised reply. */
  readonly normalized: string;
}

/**
 * The quote of `input` in `reply`, or null. `replyNormalized` is the reply's normalised text
 * (lines joined by spaces), `inputNormalized` the input's.
 */
export function findQuote(reply: string, replyNormalized: string, inputNormalized: string): Quote | null {
  if (inputNormalized === "" || inputNormalized.length > MAX_INPUT_CHARS) return null;
  const padded = ` ${replyNormalized} `;
  const inputTokens = tokenize(inputNormalized);
  if (inputTokens.length >= BARE_QUOTE_TOKENS && padded.includes(` ${inputNormalized} `))
    return { normalized: inputNormalized };
  // Quotation marks: the whole message, however short, or a prefix of it.
  if (!/["\u201c\u201d\u201e\u00ab\u00bb\u300c\u300d\u300e\u300f`>]/.test(reply)) return null;
  for (const m of reply.matchAll(QUOTED)) {
    const inner = normalizeLine(m[1] ?? m[2] ?? "");
    if (inner === "") continue;
    if (inner === inputNormalized) return { normalized: inner };
    const innerTokens = tokenize(inner);
    if (innerTokens.length < MIN_PREFIX_TOKENS) continue;
    // A truncated quote: all but its last word (which may be cut) open the message.
    const whole = innerTokens.slice(0, -1);
    if (whole.length >= MIN_PREFIX_TOKENS - 1 && whole.every((t, i) => inputTokens[i] === t))
      return { normalized: inner };
  }
  return null;
}

/** The normalised reply with the quote replaced by a placeholder word. */
export function setAside(replyNormalized: string, quote: Quote): string {
  const padded = ` ${replyNormalized} `;
  const at = padded.indexOf(` ${quote.normalized} `);
  if (at < 0) return replyNormalized;
  return `${padded.slice(0, at)} _quote_ ${padded.slice(at + quote.normalized.length + 2)}`.trim();
}
