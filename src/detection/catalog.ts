import { ConfigError } from "../errors.js";

/**
 * What the guard already knows to be canned: fingerprints confirmed in a stuck episode (of any
 * session, kept in the ledger across restarts) and operator-supplied patterns. A reply it
 * recognises here needs fewer repeats before its session counts as stuck.
 */

/** The canned lines Phantom is known to produce (v0.18.2 and current main). */
export const PHANTOM_CANNED_PATTERNS: readonly RegExp[] = [
  /still working on your previous message/i,
  /session busy \(previous execution still running\)/i,
];

/**
 * Lines agent runtimes print in place of an answer when the model did not run or stopped: the
 * Claude Agent SDK / Claude Code errors, and the iteration-limit stops of common agent loops.
 * A reply matching one still has to recur before its session counts as stuck.
 */
export const RUNTIME_CANNED_PATTERNS: readonly RegExp[] = [
  // Claude Code / the Claude Agent SDK.
  /claude ai usage limit reached/i,
  /\b(?:5-hour|weekly|opus|session) limit reached\b/i,
  /credit balance is too low/i,
  /prompt is too long/i,
  /invalid api key\b.*\/login/i,
  /\boverloaded_error\b/i,
  /\brate_limit_error\b/i,
  /\bapi error: (?:4\d\d|5\d\d)\b/i,
  /\bapi error: request timed out/i,
  /claude code process exited with code \d+/i,
  // An empty assistant turn, as Claude Code renders it.
  /^\s*\(no content\)\s*$/i,
  // OpenAI-compatible runtimes.
  /\binsufficient_quota\b|you exceeded your current quota/i,
  /\bcontext_length_exceeded\b/i,
  // Iteration limits of agent loops (the Agent SDK's max turns, LangChain, OpenHands).
  /reached (?:the )?max(?:imum)? (?:number of )?(?:turns|iterations|steps)/i,
  /agent stopped due to (?:max iterations|iteration limit)/i,
];

const WHITESPACE = /\s+/g;

export class CannedCatalog {
  readonly #fingerprints = new Set<string>();
  readonly #patterns: readonly RegExp[];

  constructor(patterns: readonly RegExp[], fingerprints: Iterable<string> = []) {
    // Global or sticky flags would make test() stateful between calls.
    this.#patterns = patterns.map((p) =>
      p.global || p.sticky ? new RegExp(p.source, p.flags.replace(/[gy]/g, "")) : p,
    );
    for (const f of fingerprints) this.#fingerprints.add(f);
  }

  hasFingerprint(fingerprint: string): boolean {
    return this.#fingerprints.has(fingerprint);
  }

  removeFingerprint(fingerprint: string): boolean {
    return this.#fingerprints.delete(fingerprint);
  }

  addFingerprint(fingerprint: string): boolean {
    if (this.#fingerprints.has(fingerprint)) return false;
    this.#fingerprints.add(fingerprint);
    return true;
  }

  /** True when the text matches a canned pattern. */
  matchesPattern(rawText: string): boolean {
    if (this.#patterns.length === 0 || rawText === "") return false;
    const text = rawText.normalize("NFKC").replace(WHITESPACE, " ");
    return this.#patterns.some((p) => p.test(text));
  }

  /** True when the reply's fingerprint is registered or its text matches an operator pattern. */
  recognises(fingerprint: string, rawText: string): boolean {
    if (this.#fingerprints.has(fingerprint)) return true;
    if (this.#patterns.length === 0) return false;
    const text = rawText.normalize("NFKC").replace(WHITESPACE, " ");
    return this.#patterns.some((p) => p.test(text));
  }
}

/**
 * Compiles one operator pattern: a regular expression source, matched case-insensitively against
 * the reply with whitespace collapsed; a plain phrase works too. Throws a `ConfigError` for
 * `setting` (the option or the variable that gave it), naming the pattern by `label`.
 */
export function compilePattern(source: string, label: string, setting = "cannedPatterns"): RegExp {
  if (source.trim() === "") throw new ConfigError(setting, `${label} is empty; remove it or give a phrase`);
  try {
    return new RegExp(source, "i");
  } catch (e) {
    throw new ConfigError(
      setting,
      `${label} (${JSON.stringify(source)}) is not a valid regular expression: ${(e as Error).message}`,
    );
  }
}

/** Compiles operator patterns ({@link compilePattern}); an error names the entry `${origin} #n`. */
export function compilePatterns(
  sources: readonly string[],
  origin = "canned pattern",
  setting = "cannedPatterns",
): RegExp[] {
  return sources.map((source, i) => compilePattern(source, `${origin} #${i + 1}`, setting));
}
