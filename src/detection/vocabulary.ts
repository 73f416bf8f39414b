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
  "afraid",
  "apologies",
  "apologize",
  "impossible",
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
  "working",
  "thinking",
  "hold",
]);

/** "not able", "not possible": a negated capability reads as a blocker word. */
const NEGATED = new Set(["able", "possible", "available", "allowed", "permitted"]);

/**
 * Whether a reply's words include at least two different blocker words (one is enough in a
 * reply of a sentence or so: "I'm not able to do that just now").
 */
export function soundsBlocked(words: readonly string[]): boolean {
  const needed = words.length <= 12 ? 1 : 2;
  let first: string | undefined;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    // "0 failed", "3 errors": a count in a report, not a status.
    if (words[i - 1] === "_n_") continue;
    const blocker = BLOCKER_WORDS.has(w)
      ? w
      : NEGATED.has(w) && words[i - 1] === "not"
        ? `not ${w}`
        : undefined;
    if (blocker === undefined) continue;
    if (needed === 1) return true;
    if (first === undefined) first = blocker;
    else if (blocker !== first) return true;
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

/**
 * Words of a conversation about the conversation ("any update on my previous message?"): two
 * messages sharing one of them, and a canned line saying it too, are not on one topic.
 */
const META_WORDS = new Set(
  (
    "message messages request requests previous still working wait waiting please answer answers " +
    "question questions reply replies update updates status help hello there anything something " +
    "again sorry thanks thank going done what when where your about know tell time right just like " +
    "think want need with this that have been does from will would could should them they then " +
    "than also only some more much very really okay sure yeah yes here work task issue problem " +
    // Function words of other languages written in the Latin alphabet, four letters or more
    // (German, French, Spanish, Italian, Portuguese, Dutch): "bist du noch da?" is not about "noch".
    "noch auch schon nicht eine einen einer dein deine mein meine sind bist habe hast kann dass oder " +
    "aber wenn dann jetzt sehr mehr bitte danke immer hier alles etwas nach warte moment " +
    "pour dans avec mais plus tout vous nous votre cette sont fait encore merci toujours ici " +
    "para pero como todo esta este estoy tengo ahora todavia aqui gracias favor puedes " +
    "ancora sono questo questa della grazie adesso ainda voce isso agora obrigado " +
    "nog niet maar heel graag even"
  ).split(" "),
);

/**
 * The words that say what a message is about: Latin-script content words of four letters or
 * more, not about the conversation itself. (Scripts without spaces are left out: single
 * characters say too little about a topic.)
 */
export function topicWords(words: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const w of words) if (w.length >= 4 && /^[a-z]+$/.test(w) && !META_WORDS.has(w)) out.add(w);
  return out;
}

/**
 * A status line rather than an answer: it reads blocked, and names at most one thing besides
 * ("I'm afraid I can't do that at the moment"; not "Sorry for the wait: the migration is done
 * and tests pass").
 */
export function statusLine(words: readonly string[]): boolean {
  if (!soundsBlocked(words)) return false;
  let named = 0;
  for (const w of topicWords(words))
    if (!BLOCKER_WORDS.has(w) && !NEGATED.has(w) && ++named > 1) return false;
  return true;
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
