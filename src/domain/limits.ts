/**
 * How large anything taken from outside may be: a sidecar body, a recorded replay line, a
 * library request. Absurd input is refused before it costs anything. One table, so that a
 * request the sidecar takes is a line replay takes, and the other way round. No zod here: the
 * library and the client (which Phantom loads under Bun) read it too.
 */
export const LIMITS = {
  /** A sidecar request body, in bytes. */
  bodyBytes: 8 * 1024 * 1024,
  /** A replay line, in characters. */
  lineBytes: 64 * 1024 * 1024,
  /**
   * A name or a short text: session key, judge kind, model id, variant, SDK session id, user
   * id, tool name, outcome, time stamp.
   */
  label: 256,
  /**
   * Messages in each of a transcript's two arrays. Their size is the guard's to refuse (option
   * `maxTranscriptTokens`), in the library, the sidecar and replay alike, naming the longest.
   */
  messages: 200_000,
  /** Names in a list the guard reads (the tools a reply used). */
  names: 1000,
  /** Models one call may escalate to. */
  escalation: 8,
  /** Judges named in one assessment. */
  judges: 64,
  /** A judge's max_tokens. */
  maxTokens: 1_000_000,
  /** Tokens in one count of a usage object. */
  usageTokens: 100_000_000,
  /** Entries in one of Gemini's per-modality token lists. */
  modalities: 16,
  /** A cost in USD (a reply's, a judge call's). */
  costUsd: 1_000_000,
  /** How long a reply took, in milliseconds. */
  durationMs: 1_000_000_000,
  /** How long a client will wait for an admission, in milliseconds. */
  waitMs: 600_000,
  /** A reservation id. */
  reservationId: 64,
} as const;
