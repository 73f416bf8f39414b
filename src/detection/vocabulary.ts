/**
 * Small word lists the evidence model consults. Each one only shifts the weight of evidence
 * that the replies' own repetition provides; none of them decides on its own. English only:
 * in other languages the lists simply never match, and detection rests on repetition and facts.
 */

/**
 * Words runtimes use when they did not do the work: errors, waits, limits, refusals, stops.
 * A reply made of them, repeated with a changing number, is more likely a runtime's canned
 * status ("Overloaded, retrying (attempt 3/10)") than a report of work done.
 */
const BLOCKER_WORDS = new Set([
  "error",
  "errors",
  "failed",
  "failure",
  "fail",
  "unable",
  "cannot",
  "cant",
  "couldnt",
  "unfortunately",
  "overloaded",
  "overload",
  "unavailable",
  "timeout",
  "timed",
  "retry",
  "retrying",
  "busy",
  "wait",
  "limit",
  "exceeded",
  "quota",
  "denied",
  "forbidden",
  "exception",
  "traceback",
  "stopped",
  "aborted",
  "interrupted",
  "crashed",
  "exited",
  "insufficient",
  "sorry",
  "queued",
  "later",
  "processing",
  "pending",
]);

/** Whether a reply's words include at least two different blocker words. */
export function soundsBlocked(words: readonly string[]): boolean {
  let first: string | undefined;
  for (const w of words) {
    if (!BLOCKER_WORDS.has(w)) continue;
    if (first === undefined) first = w;
    else if (w !== first) return true;
  }
  return false;
}

/**
 * Inputs that only thank or acknowledge. Replies to them are closers ("You're welcome!"), which
 * repeat in healthy sessions: a repeat between two such inputs is no evidence.
 */
const GRATITUDE_WORDS = new Set([
  "thanks",
  "thank",
  "thx",
  "ty",
  "tysm",
  "you",
  "so",
  "much",
  "very",
  "a",
  "lot",
  "again",
  "ok",
  "okay",
  "k",
  "great",
  "cool",
  "perfect",
  "nice",
  "awesome",
  "excellent",
  "got",
  "it",
  "sounds",
  "good",
  "lgtm",
  "cheers",
  "appreciate",
  "appreciated",
  "that",
  "alright",
  "all",
  "right",
  "brilliant",
  "wonderful",
  "amazing",
  "super",
  "helpful",
  "works",
  "worked",
  "now",
  "many",
  "merci",
  "danke",
  "gracias",
]);

/** Whether an input (its normalised words) only thanks or acknowledges. */
export function onlyThanks(words: readonly string[]): boolean {
  if (words.length === 0 || words.length > 8) return false;
  return words.every((w) => GRATITUDE_WORDS.has(w));
}

/** Function words left out when asking whether two short replies say related things. */
const STOPWORDS = new Set(
  (
    "a an the and or but if of to in on at for with from by as is are was were be been being am " +
    "i im me my you your yours we our it its this that these those there here do does did " +
    "not no so up out just can will would could should have has had let lets what which who how"
  ).split(" "),
);

/** The content words of a reply: long enough, not function words, not placeholders. */
export function contentWords(words: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const w of words) {
    // A character of a script without spaces is a word of its own (see tokenize).
    const unspaced = w.length === 1 && w.charCodeAt(0) >= 0x2e80;
    if ((w.length >= 3 || unspaced) && !STOPWORDS.has(w) && !w.startsWith("_")) out.add(w);
  }
  return out;
}
