import { type ErrorCode, isJudgeGuardError, JudgeGuardError } from "../errors.js";

/** A mistake in how the command was called: a flag, or a path it cannot use (exit status 2). */
export class UsageError extends JudgeGuardError {
  constructor(message: string) {
    super("USAGE_INVALID", message);
  }
}

/** An input the command could not read through, such as a truncated file (exit status 1, no stack). */
export class InputError extends JudgeGuardError {
  constructor(message: string) {
    super("INPUT_UNREADABLE", message);
  }
}

/**
 * The exit status of a command that failed with a coded error, by its code (README, "Exit
 * statuses"): 2 for a command called wrongly or a setting that is wrong, 1 for the rest (data
 * the command could not read or change, a ledger it could not use). An error without a code
 * (a bug) exits 1, with its stack under --verbose.
 */
export const EXIT_STATUS: Readonly<Record<ErrorCode, 1 | 2>> = {
  USAGE_INVALID: 2,
  CONFIG_INVALID: 2,
  INPUT_UNREADABLE: 1,
  REQUEST_INVALID: 1,
  LEDGER_SCHEMA: 1,
  LEDGER_FAULT: 1,
  LEDGER_UNREADABLE: 1,
  PHANTOM_DB: 1,
  PHANTOM_INSTALL: 1,
  GUARD_CLOSED: 1,
  SIGNAL_DELIVERY: 1,
  SIDECAR_UNREACHABLE: 1,
  HTTP_REFUSED: 1,
  STUCK_SESSION: 1,
  SESSION_BUDGET: 1,
  SESSION_CALLS: 1,
  JUDGE_BUDGET: 1,
  GLOBAL_BUDGET: 1,
  LEDGER_UNAVAILABLE: 1,
};

/** The exit status for an error that reached the command's top: by its code, else 1. */
export function exitStatus(e: unknown): 1 | 2 {
  // A code this copy does not know (another installed version's) is no success either.
  return (isJudgeGuardError(e) && EXIT_STATUS[e.code]) || 1;
}

const FS_REASONS: Readonly<Record<string, string>> = {
  ENOENT: "it does not exist",
  EISDIR: "it is a folder",
  ENOTDIR: "part of the path is not a folder",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "the file system is read-only",
  ENOSPC: "the disk is full",
};

/** A file system error in words ("it does not exist"), with its code for searching. */
export function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === undefined) return (e as Error)?.message ?? String(e);
  return FS_REASONS[code] ? `${FS_REASONS[code]} (${code})` : ((e as Error).message ?? code);
}
