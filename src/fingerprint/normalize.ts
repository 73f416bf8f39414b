/**
 * Normalisation turns a reply into the form its fingerprint is taken from, so that variants of
 * one canned line (a counter, the elapsed minutes, a request id, curly quotes, a non-breaking
 * space) collapse onto one string while the words that carry meaning stay.
 *
 * Volatile tokens are replaced by placeholders, in an order where the most specific pattern
 * wins (a UUID is not left as five hex ids, a timestamp not as six numbers).
 */

const INVISIBLE = /[\u00ad\u200b-\u200f\u2060\ufeff]/g;
const QUOTES = /[\u2018\u2019\u201a\u201b\u2032\u0060\u00b4]/g;
const DQUOTES = /[\u201c\u201d\u201e\u201f\u2033]/g;

/**
 * Every volatile token in one pass. At each position the first alternative that matches wins,
 * so the more specific kinds come first: a UUID is not read as hex ids, a timestamp not as
 * numbers, "3m12s" not as two numbers. A plain number is what is left.
 */
const VOLATILE = new RegExp(
  [
    String.raw`\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`,
    String.raw`\b\d{4}-\d{2}-\d{2}(?:[t ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?\b`,
    String.raw`\b\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s?[ap]\.?m\.?)?(?!\w)`,
    // Identifiers: hex runs that mix digits and letters, and prefixed ids such as req_8f2c or sdk-91ab.
    String.raw`\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b`,
    String.raw`\b[a-z]{2,12}[_-](?=[a-z0-9]*\d)[a-z0-9]{4,}\b`,
    // Durations, including compound ones such as 3m12s or 1h 05m.
    String.raw`\b(?:\d+(?:[.,]\d+)?\s?(?:ms|msecs?|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?)(?=\d|\b)\s?)+`,
    String.raw`\d+(?:[.,]\d+)*`,
  ]
    .map((p) => `(${p})`)
    .join("|"),
  "g",
);
const PLACEHOLDERS = [" _uuid_ ", " _ts_ ", " _ts_ ", " _id_ ", " _id_ ", " _dur_ "];

const PUNCTUATION = /[^\p{L}\p{N}_\s]+/gu;
const ASCII_PUNCTUATION = /[^a-z0-9_\s]+/g;
export const NON_ASCII = /[\u0080-\uffff]/;
const DIGIT = /\d/;
const PLACEHOLDER_WORD = /^_(?:uuid|ts|id|dur|n|quote)_$/;
const EDGE_UNDERSCORES = /^_+|_+$/g;
// Runs of blanks and any whitespace other than a single space: replacing every lone space by
// itself would cost a match per word.
const SPACES = /\s{2,}|[^\S ]/g;
const REPEATED_PLACEHOLDER = /\b(_(?:uuid|ts|id|dur|n)_)(?: (?:_(?:uuid|ts|id|dur|n)_))+\b/g;

/**
 * Normalises one line of text. Plain numbers (what is left once ids, times and durations are
 * replaced) become `_n_`; when `numbers` is given, their values are appended to it, so that
 * replies built from one template but carrying different data can still be told apart.
 */
export function normalizeLine(line: string, numbers?: string[]): string {
  // Most replies are plain ASCII: the Unicode steps, and the volatile patterns when there is no
  // digit to replace, are skipped rather than run for nothing (this is the guard's hot path).
  const ascii = !NON_ASCII.test(line);
  let s = ascii
    ? line.toLowerCase().replaceAll("`", "'")
    : line.normalize("NFKC").toLowerCase().replace(INVISIBLE, "").replace(QUOTES, "'").replace(DQUOTES, '"');
  if (DIGIT.test(s)) {
    s = s.replace(VOLATILE, (match: string, ...groups: unknown[]) => {
      const kind = groups.findIndex((g) => g !== undefined);
      if (kind < PLACEHOLDERS.length) return PLACEHOLDERS[kind]!;
      numbers?.push(match);
      return " _n_ ";
    });
  }
  // Apostrophes inside words ("i'm") are dropped rather than split, so "im" and "i'm" agree.
  if (s.includes("'")) s = s.replace(/(\p{L})'(\p{L})/gu, "$1$2");
  s = s
    .replace(ascii ? ASCII_PUNCTUATION : PUNCTUATION, " ")
    .replace(SPACES, " ")
    .trim();
  // Markdown emphasis with underscores (_text_, __text__) is decoration, as * is: underscores at
  // the edges of a word go, those inside it (snake_case) and placeholders stay.
  if (s.includes("_")) s = stripEmphasis(s);
  // "3m12s" becomes two duration placeholders; collapse runs so the count of parts does not matter.
  return s.includes("_ _") ? s.replace(REPEATED_PLACEHOLDER, "$1") : s;
}

/**
 * Normalises a whole reply line by line, dropping lines that normalise to nothing. `seen`, when
 * given, learns whether the text has any non-ASCII character (so that later steps can skip
 * Unicode work for the plain ASCII most replies are).
 */
export function normalizeLines(text: string, numbers?: string[], seen?: { nonAscii: boolean }): string[] {
  if (seen !== undefined) seen.nonAscii = NON_ASCII.test(text);
  const out: string[] = [];
  for (const raw of text.split(/\r?\n|\r|\u2028|\u2029/)) {
    const line = normalizeLine(raw, numbers);
    if (line.length > 0) out.push(line);
  }
  return out;
}

/** The normalised form of a whole reply: its normalised lines joined by single spaces. */
export function normalize(text: string): string {
  return normalizeLines(text).join(" ");
}

/**
 * Scripts written without spaces between words. Their characters are compared one by one: a
 * Chinese or Japanese line normalises to one long "word", and two variants of it would
 * otherwise differ in that single word however little they differ.
 */
const UNSPACED =
  /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}]/u;
const UNSPACED_SPLIT =
  /([\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}])/u;

/** The comparison tokens of normalised text: its words, with unspaced scripts split into characters. */
export function tokenize(normalized: string, nonAscii = true): string[] {
  if (normalized === "") return [];
  const words = normalized.split(" ");
  if (!nonAscii || !NON_ASCII.test(normalized) || !UNSPACED.test(normalized)) return words;
  const out: string[] = [];
  for (const w of words) {
    if (!UNSPACED.test(w)) {
      out.push(w);
      continue;
    }
    for (const part of w.split(UNSPACED_SPLIT)) if (part !== "") out.push(part);
  }
  return out;
}

function stripEmphasis(s: string): string {
  const words: string[] = [];
  for (const w of s.split(" ")) {
    const kept = PLACEHOLDER_WORD.test(w) ? w : w.replace(EDGE_UNDERSCORES, "");
    if (kept !== "") words.push(kept);
  }
  return words.join(" ");
}
