import { spawnSync } from "node:child_process";
import { chmodSync } from "node:fs";

/**
 * Real read-only ledgers for child processes. chmod does not stop root, and CI runs as root: there
 * a child meets a read-only file or folder as user nobody (`setpriv`), and a read-only mount in a
 * mount namespace of its own (`unshare -m`, a read-only bind mount). Elsewhere chmod is enough.
 */

const root = process.getuid?.() === 0;
const NOBODY = 65534;

const works = (cmd: string, args: readonly string[]): boolean =>
  spawnSync(cmd, args, { stdio: "ignore", timeout: 10_000 }).status === 0;

/** The command a child runs under to be stopped by file modes: nothing, or setpriv as nobody. */
export const AS_OTHER_USER: readonly string[] = root
  ? ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups"]
  : [];

/** Why file modes cannot make a ledger read-only for a child here, or undefined when they can. */
export const fileModesUnavailable: string | undefined =
  !root || works(AS_OTHER_USER[0]!, [...AS_OTHER_USER.slice(1), "true"])
    ? undefined
    : "running as root without setpriv: a child cannot be kept from writing by file modes";

/** Why read-only mounts are unavailable here, or undefined when they are. */
export const mountsUnavailable: string | undefined = !root
  ? "read-only bind mounts need root"
  : works("unshare", ["-m", "sh", "-c", "mount --bind /tmp /tmp && mount -o remount,ro,bind /tmp"]) &&
      works("nsenter", ["--version"])
    ? undefined
    : "unshare -m cannot make a read-only bind mount here";

/**
 * The command that runs a child with `dir` read-only to it: a bind mount of `dir` onto itself,
 * remounted read-only, in a mount namespace of the child's own (nothing outside changes).
 */
export function readOnlyMount(dir: string): readonly string[] {
  return [
    "unshare",
    "-m",
    "sh",
    "-c",
    'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"',
    dir,
  ];
}

/** Lets the other user (nobody) into a test's temporary folder (mkdtemp makes it 0700). */
export function openToOthers(dir: string): void {
  chmodSync(dir, 0o755);
}

/** Makes `dir` writable again inside the mount namespace of the running child `pid`. */
export function remountWritable(pid: number, dir: string): void {
  const r = spawnSync("nsenter", ["-t", String(pid), "-m", "mount", "-o", "remount,rw,bind", dir], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`nsenter could not remount ${dir} read-write: ${r.stderr}`);
}
