/**
 * Phantom v0.18.2's reply to every message on a session whose lock is held (issue #25): the
 * canned line of the incident, which the guard knows by default.
 */
export const CANNED = "I'm still working on your previous message. Please wait.";

/** Phantom main's reply in the same case: a line the guard learns by repetition. */
export const CANNED_MAIN = "Error: session busy (previous execution still running)";

/**
 * Healthy replies for tests that need many turns of a session that is not stuck: each one
 * differs from every other reply within a detection window in several words, as real answers
 * do (a counter that is the only change would be a canned line's).
 */
const OPENINGS = [
  "the build cache",
  "our billing worker",
  "that flaky test",
  "the nightly export",
  "your login page",
  "the search index",
  "this migration script",
];
const FINDINGS = [
  "now passes every check",
  "needed one more retry",
  "was missing an index",
  "reads the wrong config",
  "ran out of memory",
  "is slower since Tuesday",
  "leaks file handles",
  "skips the last batch",
  "uses a stale token",
  "logs far too much",
  "works on staging only",
];
const NEXT = [
  "so I opened a pull request",
  "and I left a comment",
  "which the runbook covers",
  "until we pin the version",
  "after the deploy tonight",
  "if nobody objects today",
  "unless traffic spikes again",
  "pending your review",
  "per the team's notes",
  "while keeping the old path",
  "before the freeze starts",
  "with a short writeup",
  "as discussed on Monday",
];

/** The i-th healthy reply (distinct words from the previous dozen), with `extra` words appended. */
export function healthyReply(i: number, extra = ""): string {
  const a = OPENINGS[i % OPENINGS.length]!;
  const b = FINDINGS[i % FINDINGS.length]!;
  const c = NEXT[i % NEXT.length]!;
  return `Checked ${a}: it ${b}, ${c}.${extra ? ` ${extra}` : ""}`;
}
