/**
 * Every error the guard raises is one of these classes, with a stable `code`. The type guards
 * check a brand rather than `instanceof`, so they work across two installed copies of the
 * package (an adapter bundled with one version, the guard with another).
 */

import { describe } from "./util/describe.js";
import { formatUsd } from "./util/money.js";

const BRAND = Symbol.for("judge-guard.error");

export type SkipCode =
  | "STUCK_SESSION"
  | "SESSION_BUDGET"
  | "SESSION_CALLS"
  | "JUDGE_BUDGET"
  | "GLOBAL_BUDGET"
  | "LEDGER_UNAVAILABLE";

export type ErrorCode =
  | SkipCode
  /** An option, environment variable or deployment setting is wrong: {@link ConfigError}. */
  | "CONFIG_INVALID"
  /** A judge request (or a sidecar body) is not what it must be: {@link InvalidRequestError}. */
  | "REQUEST_INVALID"
  /** A path that is no ledger, or a ledger of a newer schema: {@link LedgerSchemaError}. */
  | "LEDGER_SCHEMA"
  /** The ledger file cannot be used right now: {@link LedgerFaultError}. */
  | "LEDGER_FAULT"
  /** A report or `explain` cannot read the ledger: {@link LedgerReadError}. */
  | "LEDGER_UNREADABLE"
  | "GUARD_CLOSED"
  | "SIGNAL_DELIVERY"
  | "SIDECAR_UNREACHABLE"
  /** Phantom's database cannot be opened, or is not Phantom's: {@link PhantomDbError}. */
  | "PHANTOM_DB"
  /** The guard cannot be installed into this Phantom: {@link PhantomInstallError}. */
  | "PHANTOM_INSTALL"
  /** The sidecar refused an HTTP request (its body, path, method or token). */
  | "HTTP_REFUSED"
  /** The `judge-guard` command was called wrongly (a flag, a path it cannot use). */
  | "USAGE_INVALID"
  /** The `judge-guard` command could not read its input to the end (a truncated file). */
  | "INPUT_UNREADABLE";

export class JudgeGuardError extends Error {
  readonly code: ErrorCode;
  readonly [BRAND] = true;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Details every short-circuit carries, so a caller can act without parsing messages. */
export interface SkipDetails {
  readonly sessionKey: string;
  readonly judge: string;
  readonly model: string;
  /** What the skipped call was estimated to cost, USD. */
  readonly savedUsd: number;
  /** Stuck sessions: the canned reply's fingerprint, its repeats and the episode. */
  readonly fingerprint?: string;
  readonly repeats?: number;
  readonly episodeId?: string;
  /** Budget refusals: what was used and the cap (USD, or calls for SESSION_CALLS). */
  readonly used?: number;
  readonly cap?: number;
  /**
   * Budget refusals: the call alone would fit, but not together with the calls in flight on
   * the scope, and it waited for them (`admissionWaitMs`) in vain.
   */
  readonly concurrency?: boolean;
}

const money = (usd: number | undefined) => (usd === undefined ? "?" : formatUsd(usd));

/** The message of a budget refusal: how much of which cap, and what to change. */
function budgetMessage(
  who: string,
  budget: string,
  d: SkipDetails,
  variable: string,
  window: string,
): string {
  const spent = `${money(d.used)} of ${money(d.cap)} ${window}`;
  return d.concurrency
    ? `${who} could pass its ${budget} (${spent}) with the calls in flight, which the call waited for in vain: judge not called (raise JUDGE_GUARD_ADMISSION_WAIT, lower JUDGE_GUARD_CONCURRENCY, or raise ${variable})`
    : `${who} reached its ${budget} (${spent}): judge not called (raise ${variable}, or wait for the window to roll)`;
}

/** Base class of the short-circuits: the judge was not called and nothing was spent. */
export class JudgeSkippedError extends JudgeGuardError {
  declare readonly code: SkipCode;
  readonly details: SkipDetails;

  constructor(code: SkipCode, message: string, details: SkipDetails, options?: { cause?: unknown }) {
    super(code, message, options);
    this.details = details;
  }
}

export class StuckSessionError extends JudgeSkippedError {
  constructor(details: SkipDetails) {
    super(
      "STUCK_SESSION",
      `session ${details.sessionKey} is stuck (the same canned reply ${details.repeats ?? "several"} times): judge not called; judging resumes when the session replies differently, or after guard.resetSession() or judge-guard reset-sessions`,
      details,
    );
  }
}

export class SessionBudgetError extends JudgeSkippedError {
  constructor(details: SkipDetails) {
    super(
      "SESSION_BUDGET",
      budgetMessage(
        `session ${details.sessionKey}`,
        "judge budget",
        details,
        "JUDGE_GUARD_SESSION_BUDGET_USD",
        "in its window",
      ),
      details,
    );
  }
}

export class SessionCallsError extends JudgeSkippedError {
  constructor(details: SkipDetails) {
    super(
      "SESSION_CALLS",
      `session ${details.sessionKey} reached its judge call limit (${details.used ?? "?"} of ${details.cap ?? "?"} calls in its window): judge not called (raise JUDGE_GUARD_SESSION_MAX_CALLS, or wait for the window to roll)`,
      details,
    );
  }
}

export class JudgeBudgetError extends JudgeSkippedError {
  constructor(details: SkipDetails) {
    super(
      "JUDGE_BUDGET",
      budgetMessage(
        `judge kind ${details.judge}`,
        "budget",
        details,
        "JUDGE_GUARD_JUDGE_BUDGETS or JUDGE_GUARD_JUDGE_BUDGET_USD",
        "in the last 24 hours, all keys together",
      ),
      details,
    );
  }
}

export class GlobalBudgetError extends JudgeSkippedError {
  constructor(details: SkipDetails) {
    super(
      "GLOBAL_BUDGET",
      budgetMessage(
        "the deployment",
        "global judge budget",
        details,
        "JUDGE_GUARD_DAILY_BUDGET_USD",
        "in the last 24 hours",
      ),
      details,
    );
  }
}

export class LedgerUnavailableError extends JudgeSkippedError {
  constructor(details: SkipDetails, cause: unknown) {
    super(
      "LEDGER_UNAVAILABLE",
      `the judge-guard ledger failed (${(cause as Error)?.message ?? cause}); failing closed: judge not called`,
      details,
      { cause },
    );
  }
}

export class ConfigError extends JudgeGuardError {
  /** The option or environment variable at fault. */
  readonly setting: string;

  constructor(setting: string, message: string) {
    super("CONFIG_INVALID", message);
    this.setting = setting;
  }

  /**
   * An option given in code that is not what it must be: `option concurrency must be an integer
   * >= 1, got 0`. `of` names the function the option belongs to, when it is not the guard.
   */
  static option(path: string, expected: string, got: unknown, of?: string): ConfigError {
    const option = of === undefined ? `option ${path}` : `option ${path} of ${of}`;
    return new ConfigError(path, `${option} must be ${expected}, got ${describe(got)}`);
  }

  /**
   * An environment variable whose text is not what it must be: `JUDGE_GUARD_CONCURRENCY="0" is
   * not valid: expected a whole number >= 1`. A secret's text (`text` undefined) is not shown.
   */
  static variable(name: string, text: string | undefined, expected: string): ConfigError {
    const given = text === undefined ? name : `${name}=${JSON.stringify(text)}`;
    return new ConfigError(name, `${given} is not valid: expected ${expected}`);
  }
}

export class InvalidRequestError extends JudgeGuardError {
  readonly field: string;

  constructor(field: string, message: string) {
    super("REQUEST_INVALID", message);
    this.field = field;
  }
}

export class LedgerSchemaError extends JudgeGuardError {
  constructor(message: string) {
    super("LEDGER_SCHEMA", message);
  }
}

/** What went wrong with a ledger file that was usable as a ledger. */
export type LedgerFault = "read-only" | "cannot-open" | "corrupt" | "deleted" | "replaced" | "io";

/**
 * The ledger file cannot be used right now: it cannot be opened or written, it is corrupt, or it
 * was deleted or replaced while in use. The message names the file and what to do. A guard keeps
 * running (skipping judges with `LEDGER_UNAVAILABLE`, or judging unguarded with `onError:
 * "open"`) and tries the file again on its heartbeat.
 */
export class LedgerFaultError extends JudgeGuardError {
  readonly path: string;
  readonly fault: LedgerFault;

  constructor(path: string, fault: LedgerFault, message: string, options?: { cause?: unknown }) {
    super("LEDGER_FAULT", message, options);
    this.path = path;
    this.fault = fault;
  }
}

export function isLedgerFaultError(e: unknown): e is LedgerFaultError {
  return isJudgeGuardError(e) && e.code === "LEDGER_FAULT";
}

/** The ledger cannot be read: missing, not a ledger, a newer schema, or a read that failed. */
export class LedgerReadError extends JudgeGuardError {
  constructor(message: string) {
    super("LEDGER_UNREADABLE", message);
  }
}

export function isLedgerReadError(e: unknown): e is LedgerReadError {
  return isJudgeGuardError(e) && e.code === "LEDGER_UNREADABLE";
}

/**
 * Phantom's database cannot be used: it does not exist, cannot be opened or read, or has no
 * sessions table with the columns a reset uses.
 */
export class PhantomDbError extends JudgeGuardError {
  readonly path: string;
  /** What is wrong, the file called "it": for a message that names the file already. */
  readonly problem: string;

  constructor(path: string, message: string, problem: string = message) {
    super("PHANTOM_DB", message);
    this.path = path;
    this.problem = problem;
  }
}

export function isPhantomDbError(e: unknown): e is PhantomDbError {
  return isJudgeGuardError(e) && e.code === "PHANTOM_DB";
}

/**
 * The guard cannot be installed into this Phantom: it is installed already, or a class or
 * method it wraps is not there (a Phantom version judge-guard does not support).
 */
export class PhantomInstallError extends JudgeGuardError {
  constructor(message: string) {
    super("PHANTOM_INSTALL", message);
  }
}

/** A signal sink could not deliver an event; `attempts` says how many tries were made. */
export class SignalDeliveryError extends JudgeGuardError {
  readonly attempts: number;

  constructor(message: string, attempts: number, options?: { cause?: unknown }) {
    super("SIGNAL_DELIVERY", message, options);
    this.attempts = attempts;
  }
}

/**
 * The sidecar did not answer an operator action of `judge-guard/client` (`session`,
 * `resetSession`): unlike a judge call, it has no local fallback.
 */
export class SidecarUnreachableError extends JudgeGuardError {
  /** The sidecar's URL. */
  readonly url: string;

  constructor(url: string, reason: string) {
    super("SIDECAR_UNREACHABLE", `${reason}; the operator action was not done`);
    this.url = url;
  }
}

export class GuardClosedError extends JudgeGuardError {
  constructor() {
    super("GUARD_CLOSED", "the guard is closed: create a new one");
  }
}

export function isJudgeGuardError(e: unknown): e is JudgeGuardError {
  return typeof e === "object" && e !== null && (e as Record<symbol, unknown>)[BRAND] === true;
}

export function isConfigError(e: unknown): e is ConfigError {
  return isJudgeGuardError(e) && e.code === "CONFIG_INVALID";
}

/** True for any short-circuit; with `code`, only for that one. */
export function isJudgeSkippedError(e: unknown, code?: SkipCode): e is JudgeSkippedError {
  if (!isJudgeGuardError(e) || !("details" in e)) return false;
  return code === undefined || e.code === code;
}

export function isStuckSessionError(e: unknown): e is StuckSessionError {
  return isJudgeSkippedError(e, "STUCK_SESSION");
}

export function isBudgetError(
  e: unknown,
): e is SessionBudgetError | SessionCallsError | JudgeBudgetError | GlobalBudgetError {
  return (
    isJudgeSkippedError(e, "SESSION_BUDGET") ||
    isJudgeSkippedError(e, "SESSION_CALLS") ||
    isJudgeSkippedError(e, "JUDGE_BUDGET") ||
    isJudgeSkippedError(e, "GLOBAL_BUDGET")
  );
}

const SKIP_ERRORS: Record<SkipCode, (details: SkipDetails, cause?: unknown) => JudgeSkippedError> = {
  STUCK_SESSION: (d) => new StuckSessionError(d),
  SESSION_BUDGET: (d) => new SessionBudgetError(d),
  SESSION_CALLS: (d) => new SessionCallsError(d),
  JUDGE_BUDGET: (d) => new JudgeBudgetError(d),
  GLOBAL_BUDGET: (d) => new GlobalBudgetError(d),
  LEDGER_UNAVAILABLE: (d, cause) => new LedgerUnavailableError(d, cause),
};

/** The error class of a short-circuit, by its code. */
export function skipError(code: SkipCode, details: SkipDetails, cause?: unknown): JudgeSkippedError {
  return SKIP_ERRORS[code](details, cause);
}
