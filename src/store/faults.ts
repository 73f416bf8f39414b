import { accessSync, constants, existsSync } from "node:fs";
import { dirname } from "node:path";
import { type LedgerFault, LedgerFaultError } from "../errors.js";

/**
 * Which errors mean that the ledger file itself cannot be used (rather than a moment's lock or a
 * full disk, which pass), and what to tell the operator about each.
 */

const FS_REASONS: Readonly<Record<string, string>> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "the file system is read-only",
  ENOENT: "its folder does not exist",
  ENOTDIR: "part of its path is a file, not a folder",
  // mkdir -p of the ledger's folder, where a file has the name
  EEXIST: "part of its path is a file, not a folder",
  EIO: "an I/O error",
};

/** The fault an error of SQLite or of the file system means, or undefined for one that passes. */
export function faultKind(e: unknown): LedgerFault | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return undefined;
  if (code.startsWith("SQLITE_READONLY") || code === "EROFS") return "read-only";
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB") return "corrupt";
  if (code.startsWith("SQLITE_IOERR") || code === "EIO") return "io";
  if (
    code.startsWith("SQLITE_CANTOPEN") ||
    code === "SQLITE_PERM" ||
    code === "SQLITE_AUTH" ||
    code in FS_REASONS
  )
    return "cannot-open";
  return undefined;
}

function detail(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  const message = (e as Error)?.message ?? String(e);
  if (typeof code === "string" && code.startsWith("SQLITE_")) return `SQLite: ${message}`;
  if (typeof code === "string" && FS_REASONS[code]) return `${FS_REASONS[code]} (${code})`;
  return message;
}

const who = (): string => {
  const uid = process.getuid?.();
  return uid === undefined ? "this user" : `user ${uid}`;
};

const ELSEWHERE = "or set JUDGE_GUARD_DB (--db) to another path";

/**
 * The fault behind a file that SQLite could not open or write, as the file system tells it:
 * SQLite says "unable to open database file" for a read-only mount or folder alike.
 */
export function openFault(path: string, e: unknown): LedgerFaultError | undefined {
  let kind = faultKind(e);
  if (kind !== "cannot-open" && kind !== "read-only") return kind && ledgerFault(path, kind, e);
  const where: Array<[string, string]> = [[dirname(path), "its folder"]];
  if (existsSync(path)) where.push([path, "the file"]);
  for (const [p, what] of where) {
    try {
      accessSync(p, constants.R_OK | constants.W_OK);
    } catch (denied) {
      const code = (denied as NodeJS.ErrnoException).code ?? "";
      if (code === "EROFS" || code === "EACCES" || code === "EPERM") kind = "read-only";
      return ledgerFault(path, kind, e, undefined, `${what}: ${FS_REASONS[code] ?? code} (${code})`);
    }
  }
  return ledgerFault(path, kind, e);
}

/** The error for a fault, naming the file, what is wrong and what to do. */
export function ledgerFault(
  path: string,
  fault: LedgerFault,
  cause?: unknown,
  note?: string,
  found?: string,
): LedgerFaultError {
  const why =
    cause === undefined
      ? ""
      : ` (${detail(cause)}${found === undefined || detail(cause).includes(found) ? "" : `; ${found}`})`;
  let message: string;
  switch (fault) {
    case "read-only":
      message = `the ledger ${path} cannot be written${why}: make the file, its -wal and -shm beside it, and the folder it is in writable by ${who()} on a volume mounted read-write, ${ELSEWHERE}`;
      break;
    case "cannot-open":
      message = `the ledger ${path} cannot be opened${why}: create its folder and let ${who()} read and write the file and create files in the folder, ${ELSEWHERE}`;
      break;
    case "corrupt":
      message = `the ledger ${path} is corrupt${why}: judge-guard never repairs a ledger; stop every judge-guard using it, put a backup in its place (or move it aside to begin a new ledger), delete ${path}-wal and ${path}-shm, and start them again`;
      break;
    case "io":
      message = `the ledger ${path} cannot be read or written${why}: check the disk or volume it is on`;
      break;
    case "deleted":
      message = `the ledger ${path} was deleted while in use${note ? ` and ${note}` : ""}: restore it, or restart judge-guard to begin a new one`;
      break;
    case "replaced":
      message = `the ledger ${path} was replaced by another file while in use${note ? `, and ${note}` : ": the guard switches to the new file"}`;
      break;
  }
  return new LedgerFaultError(path, fault, message, cause === undefined ? undefined : { cause });
}
