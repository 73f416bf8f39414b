/**
 * Every `JUDGE_GUARD_*` variable this package reads. A variable that sets an option is a mapping
 * from its name to the option's path: its limits, its default and how its text is read are the
 * option's, in the options table (`guard/options.ts`); only what the variable says is written
 * here. The README's table of variables is generated from these lists (`npm run docs`).
 */

import { ConfigError } from "../errors.js";
import { OPTIONS, type OptionPath, type OptionSpec } from "../guard/options.js";
import { LOG_LEVELS } from "../log/levels.js";
import { LARGEST_CONTEXT_TOKENS } from "../pricing/prices.js";
import { nearest } from "../util/nearest.js";

type Env = Readonly<Record<string, string | undefined>>;

/** One environment variable that sets an option: its option, default (as documented) and parser. */
export interface Variable {
  readonly name: string;
  readonly option: OptionPath;
  readonly doc: string;
  readonly defaultText: string;
  /** Reads the variable's trimmed text; an invalid one throws a `ConfigError` naming the variable. */
  readonly parse: (value: string) => unknown;
}

/** The variable of each option, and what it says, in documentation order. */
const OPTION_VARIABLES: ReadonlyArray<{ name: string; option: OptionPath; doc: string }> = [
  {
    name: "JUDGE_GUARD_DB",
    option: "ledger",
    doc: 'SQLite ledger path, or a PostgreSQL URL (`postgres://user:password@host/db`) for one ledger shared by a fleet of hosts (see docs/postgres.md); ":memory:" for none',
  },
  {
    name: "JUDGE_GUARD_MODE",
    option: "mode",
    doc: "`enforce`, or `shadow` to decide and record without blocking",
  },
  {
    name: "JUDGE_GUARD_ON_ERROR",
    option: "onError",
    doc: "when the ledger fails: `closed` skips judging, `open` judges unguarded",
  },
  {
    name: "JUDGE_GUARD_REPEAT_THRESHOLD",
    option: "repeatThreshold",
    doc: "evidence that makes a session stuck, in repeats of one reply to different messages (see How it decides)",
  },
  {
    name: "JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD",
    option: "knownRepeatThreshold",
    doc: "occurrences of a known canned line (or of a free, session-less bounce) that make a session stuck",
  },
  {
    name: "JUDGE_GUARD_MIN_REPLY_CHARS",
    option: "minReplyChars",
    doc: 'shorter replies (e.g. "Done.") never count as repeats, unless a known canned line',
  },
  {
    name: "JUDGE_GUARD_CANNED_PATTERNS",
    option: "cannedPatterns",
    doc: "extra canned patterns: a JSON array, or a file with one regular expression per line",
  },
  {
    name: "JUDGE_GUARD_BUILTIN_PATTERNS",
    option: "builtinPatterns",
    doc: "recognise the known canned lines of Phantom and the Claude Agent SDK (usage limit, overloaded, ...)",
  },
  {
    name: "JUDGE_GUARD_MAX_WORD_DIFFERENCE",
    option: "similarity.maxWordDifference",
    doc: "near-duplicates: the most words two replies may differ in and still be one reply",
  },
  {
    name: "JUDGE_GUARD_MAX_RELATIVE_DIFFERENCE",
    option: "similarity.maxRelativeDifference",
    doc: "near-duplicates: the largest share of their words two replies may differ in (0 to 1)",
  },
  {
    name: "JUDGE_GUARD_MAX_NUMBER_DIFFERENCE",
    option: "similarity.maxNumberDifference",
    doc: "a repeat whose numbers differ in more places than this is data (a report), not a counter: it weighs 0",
  },
  {
    name: "JUDGE_GUARD_SESSION_BUDGET_USD",
    option: "sessionBudgetUsd",
    doc: "USD per session key per budget window (`none` for no cap)",
  },
  {
    name: "JUDGE_GUARD_SESSION_MAX_CALLS",
    option: "sessionMaxCalls",
    doc: "judge calls per session key per budget window (`none` for no cap)",
  },
  {
    name: "JUDGE_GUARD_BUDGET_WINDOW",
    option: "budgetWindowMs",
    doc: "rolling window of the per-key caps (`90m`, `24h`, `7d`: every duration needs its unit)",
  },
  {
    name: "JUDGE_GUARD_DAILY_BUDGET_USD",
    option: "dailyBudgetUsd",
    doc: "USD for all keys together per rolling 24 h (`none` for no cap)",
  },
  {
    name: "JUDGE_GUARD_JUDGE_BUDGET_USD",
    option: "judgeBudgetUsd",
    doc: "USD per judge kind (all keys together) per rolling 24 h, for every kind `JUDGE_GUARD_JUDGE_BUDGETS` does not name (`none` for no cap)",
  },
  {
    name: "JUDGE_GUARD_JUDGE_BUDGETS",
    option: "judgeBudgetsUsd",
    doc: 'caps of named judge kinds in USD per rolling 24 h, a JSON object: `{"quality_assessment": 2, "gate": "none"}`',
  },
  { name: "JUDGE_GUARD_CONCURRENCY", option: "concurrency", doc: "judge calls in flight at once" },
  {
    name: "JUDGE_GUARD_PRICES",
    option: "prices",
    doc: "prices in USD per million tokens, merged over the built-in table: a JSON file, or inline JSON",
  },
  {
    name: "JUDGE_GUARD_DEFAULT_OUTPUT_TOKENS",
    option: "estimator.defaultOutputTokens",
    doc: "output tokens expected of a judge before its sizes are learned",
  },
  {
    name: "JUDGE_GUARD_DEFAULT_MAX_TOKENS",
    option: "estimator.defaultMaxTokens",
    doc: "output ceiling of a request that gives no `maxTokens`",
  },
  {
    name: "JUDGE_GUARD_CHARS_PER_TOKEN",
    option: "estimator.charsPerToken",
    doc: "transcript characters per input token, for estimates",
  },
  {
    name: "JUDGE_GUARD_PROMPT_OVERHEAD_TOKENS",
    option: "estimator.promptOverheadTokens",
    doc: "input tokens of a judge's own prompt around the transcript, for estimates",
  },
  {
    name: "JUDGE_GUARD_MAX_TRANSCRIPT_TOKENS",
    option: "maxTranscriptTokens",
    doc:
      "a request whose transcript is estimated (characters / `JUDGE_GUARD_CHARS_PER_TOKEN`) above this many tokens fits no model and is refused, naming the field and the limit; " +
      `the default is twice the largest context window of a priced model (${LARGEST_CONTEXT_TOKENS.toLocaleString("en")} tokens: GPT-4.1, Gemini 2.5, Claude Sonnet 4/4.5 with 1M context); \`none\` for no limit`,
  },
  {
    name: "JUDGE_GUARD_SIGNAL_COOLDOWN",
    option: "signalCooldownMs",
    doc: "a stuck episode is signalled once; a failed delivery is retried at most this often",
  },
  {
    name: "JUDGE_GUARD_VERDICT_TTL",
    option: "verdictTtlMs",
    doc: "how long identical requests reuse a verdict (`0` to never reuse)",
  },
  { name: "JUDGE_GUARD_VERDICT_CACHE_SIZE", option: "verdictCacheSize", doc: "verdicts kept for reuse" },
  {
    name: "JUDGE_GUARD_MAX_SESSIONS",
    option: "maxSessions",
    doc: "session keys whose detection state is kept in memory",
  },
  {
    name: "JUDGE_GUARD_ADMISSION_WAIT",
    option: "admissionWaitMs",
    doc: "near a cap, how long a call waits for calls in flight to settle before it is skipped",
  },
  {
    name: "JUDGE_GUARD_LEASE",
    option: "leaseMs",
    doc: "a guard in another PID namespace or on another host whose heartbeat has not moved for this long is gone: its calls in flight are charged at their estimate, or wait for their settlement",
  },
  {
    name: "JUDGE_GUARD_ESCALATION",
    option: "escalation",
    doc: "`ceiling`: a call's worst case is priced at the highest rates in the price table, since a judge may report a pricier model than it was admitted on; `none`: at its own model",
  },
  {
    name: "JUDGE_GUARD_ALERT_AT",
    option: "alertAt",
    doc: "budget alerts go out when a key or the global window uses this fraction of its cap (`off` for none)",
  },
  {
    name: "JUDGE_GUARD_LOG_LEVEL",
    option: "logger",
    doc: `log level on stderr (text or JSON lines: see Logs): ${LOG_LEVELS.join(", ")}`,
  },
];

/** Every variable that sets an option, in documentation order; its default and parser are the option's. */
export const ENV_VARIABLES: readonly Variable[] = OPTION_VARIABLES.map(({ name, option, doc }) => {
  const { kind, default: value } = OPTIONS[option] as OptionSpec<unknown>;
  return { name, option, doc, defaultText: kind.show(value), parse: (text) => kind.parse(text, name) };
});

/** The variable that sets each option. */
export const VARIABLE_OF = new Map(ENV_VARIABLES.map((v) => [v.option, v.name]));

/**
 * The variables that choose where signals go. They build sinks rather than set one option, so
 * they are read apart from {@link ENV_VARIABLES}; the documentation lists them together.
 */
export const SIGNAL_VARIABLES = [
  {
    name: "JUDGE_GUARD_SIGNAL",
    defaultText: "none",
    doc: "where signals go, comma-separated: `none`, `callback` (a function passed in code), `phantom-sqlite`, `webhook`",
  },
  {
    name: "JUDGE_GUARD_PHANTOM_DB",
    defaultText: "(none)",
    doc: "`phantom-sqlite`: Phantom's database, e.g. `data/phantom.db` (same host only; it must exist at start-up)",
  },
  { name: "JUDGE_GUARD_WEBHOOK_URL", defaultText: "(none)", doc: "`webhook`: where events are POSTed" },
  {
    name: "JUDGE_GUARD_WEBHOOK_SECRET",
    defaultText: "(none)",
    doc: "`webhook`: HMAC-SHA256 secret for `X-Judge-Guard-Signature` (16+ characters; never logged)",
  },
] as const;

/** The sidecar's variable, in the documentation's table with the guard's. */
export const SERVE_VARIABLES = [
  {
    name: "JUDGE_GUARD_TOKEN",
    defaultText: "(none)",
    doc: "`serve`: bearer token for every route but /healthz and /readyz (16+ characters); required to listen beyond loopback",
  },
] as const;

/** The variables of the README's table, in its order: generated from here by `npm run docs`. */
export const DOCUMENTED_VARIABLES: ReadonlyArray<{ name: string; defaultText: string; doc: string }> = [
  ...ENV_VARIABLES,
  ...SIGNAL_VARIABLES,
  ...SERVE_VARIABLES,
];

/**
 * The `JUDGE_GUARD_*` variables read elsewhere than `fromEnv` and `serve`: by the Phantom preload,
 * and by this package's own tests and CI. They are known names, so that setting them is not taken
 * for a misspelling (see {@link checkVariableNames}).
 */
export const OTHER_VARIABLES = [
  { name: "JUDGE_GUARD_URL", usedBy: "the Phantom preload: the sidecar's address" },
  { name: "JUDGE_GUARD_PHANTOM_ROOT", usedBy: "the Phantom preload: Phantom's folder" },
  { name: "JUDGE_GUARD_PHANTOM_RECOVER", usedBy: "the Phantom preload: `off` only skips and records" },
  {
    name: "JUDGE_GUARD_PHANTOM_RELEASE_AFTER",
    usedBy: "the Phantom preload: the age at which a stuck key's request is released",
  },
  { name: "JUDGE_GUARD_ALLOW_UNKNOWN", usedBy: "the names of unknown variables to allow (below)" },
  { name: "JUDGE_GUARD_LONG_TESTS", usedBy: "this package's tests: the long variants (CI)" },
  { name: "JUDGE_GUARD_REQUIRE_CHROMIUM", usedBy: "this package's tests: fail without Chromium (CI)" },
  { name: "JUDGE_GUARD_REQUIRE_POSTGRES", usedBy: "this package's tests: fail without PostgreSQL (CI)" },
  { name: "JUDGE_GUARD_PHANTOM_SNAPSHOTS", usedBy: "this package's tests: Phantom checkouts to test on" },
  { name: "JUDGE_GUARD_REPO", usedBy: "this package's tests: the checkout, for Phantom scenarios" },
] as const;

/** Every `JUDGE_GUARD_*` name this package reads. */
export const KNOWN_VARIABLES: readonly string[] = [
  ...ENV_VARIABLES.map((v) => v.name),
  ...SIGNAL_VARIABLES.map((v) => v.name),
  ...SERVE_VARIABLES.map((v) => v.name),
  ...OTHER_VARIABLES.map((v) => v.name),
];

const PREFIX = "JUDGE_GUARD_";

/** Known names that are likely meant by `name`: the nearest by spelling, else those sharing its most words. */
function meant(name: string): string[] {
  const suffixes = KNOWN_VARIABLES.map((k) => k.slice(PREFIX.length));
  const close = nearest(name.slice(PREFIX.length), suffixes);
  if (close !== undefined) return [PREFIX + close];
  const words = new Set(name.slice(PREFIX.length).split("_").filter(Boolean));
  const shared = KNOWN_VARIABLES.map((k) => ({
    k,
    n: k
      .slice(PREFIX.length)
      .split("_")
      .filter((w) => words.has(w)).length,
  }));
  const most = Math.max(0, ...shared.map((s) => s.n));
  return most === 0
    ? []
    : shared
        .filter((s) => s.n === most)
        .map((s) => s.k)
        .slice(0, 3);
}

/**
 * Stops start-up on a `JUDGE_GUARD_*` variable this package does not know: a misspelt cap
 * (`SESION` for `SESSION`) would otherwise leave the default cap in force without a word. Throws a `ConfigError` naming each unknown variable and the known one likely meant.
 * `JUDGE_GUARD_ALLOW_UNKNOWN` lets names through: a comma-separated list of them, or `1` for any.
 * `fromEnv` and every CLI command call it; call it yourself where you read the environment
 * without `fromEnv`.
 */
export function checkVariableNames(env: Env = process.env): void {
  const allowRaw = env.JUDGE_GUARD_ALLOW_UNKNOWN?.trim() ?? "";
  if (/^(1|true|yes|\*)$/i.test(allowRaw)) return;
  const allowed = new Set(
    allowRaw
      .split(",")
      .map((n) => n.trim())
      .filter(Boolean),
  );
  for (const n of allowed) {
    if (!n.startsWith(PREFIX) || !/^[A-Z0-9_]+$/.test(n)) {
      throw ConfigError.variable(
        "JUDGE_GUARD_ALLOW_UNKNOWN",
        allowRaw,
        `1, or a comma-separated list of ${PREFIX}* names`,
      );
    }
  }
  const known = new Set(KNOWN_VARIABLES);
  const unknown = Object.keys(env)
    .filter((k) => k.startsWith(PREFIX) && !known.has(k) && !allowed.has(k))
    .sort();
  if (unknown.length === 0) return;
  const each = unknown.map((name) => {
    const guesses = meant(name);
    const hint =
      guesses.length === 0
        ? "no judge-guard variable is spelt like it"
        : `did you mean ${guesses.length === 1 ? guesses[0] : `one of ${guesses.join(", ")}`}?`;
    return `${name} (${hint})`;
  });
  const what = unknown.length === 1 ? "is not a judge-guard variable" : "are not judge-guard variables";
  throw new ConfigError(
    unknown[0]!,
    `${each.join(", ")} ${what}, and would be ignored: fix the name (the README's Configuration lists every variable), or allow it with JUDGE_GUARD_ALLOW_UNKNOWN=${unknown.join(",")}`,
  );
}
