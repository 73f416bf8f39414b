/** A mistake in how the command was called (exit status 2). */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** An input the command could not read through, such as a truncated file (exit status 1, no stack). */
export class InputError extends Error {
  override readonly name = "InputError";
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
