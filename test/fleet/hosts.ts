import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { BIN } from "../helpers/cli.js";
import { freePort, SIDECAR_TOKEN } from "../helpers/sidecar.js";

/**
 * "Hosts" for the fleet tests: each is a process tree in a UTS namespace of its own (its own
 * hostname, as the guard's owner row records it) and a PID namespace of its own (so that no guard
 * can prove another dead by its pid, as none can across real hosts: only the lease tells). They
 * share this machine's network, so 127.0.0.1 reaches the test cluster and each sidecar.
 */

const UNSHARE = ["--uts", "--pid", "--fork", "--kill-child", "--mount-proc"];

/** Why hosts cannot be made here (unshare refused by the kernel or not permitted), or undefined. */
export function hostsUnavailable(): string | undefined {
  const r = spawnSync("unshare", [...UNSHARE, "sh", "-c", "hostname fleet-probe && hostname"], {
    encoding: "utf8",
  });
  if (r.error) return `unshare is not installed (${r.error.message})`;
  if (r.status !== 0 || r.stdout.trim() !== "fleet-probe")
    return `unshare --uts --pid refused here (run as root, or allow user namespaces): ${r.stderr.trim()}`;
  return undefined;
}

export interface Host {
  readonly name: string;
  readonly child: ChildProcess;
  /** Complete lines written to stdout so far. */
  readonly lines: string[];
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) once the host's process tree has ended. */
  readonly exited: Promise<number | string>;
  /** The pid, in this namespace, of the program the host runs (pid 1 in its own). */
  innerPid(): number;
  /** SIGKILLs the program: the host is gone, as a host that loses power is. */
  kill(): Promise<void>;
  /** SIGTERMs the program (it must handle the signal: it is pid 1 of its namespace) and waits for it. */
  stop(): Promise<void>;
}

const live = new Set<Host>();

/** Kills every host still running (for afterEach). */
export async function killHosts(): Promise<void> {
  await Promise.all([...live].map((h) => h.kill()));
}

/**
 * Runs `argv` (argv[0] is the program) as host `name`. `env` is added to this process's
 * environment, without its JUDGE_GUARD_* variables.
 */
export function startHost(name: string, argv: readonly string[], env: Record<string, string> = {}): Host {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith("JUDGE_GUARD_")) base[k] = v;
  const child = spawn("unshare", [...UNSHARE, "sh", "-c", 'hostname "$0" && exec "$@"', name, ...argv], {
    env: { ...base, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let buf = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    const parts = buf.split("\n");
    buf = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  const innerPid = (): number => {
    const pid = child.pid!;
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(" ");
    return Number(kids[0]);
  };
  const host: Host = {
    name,
    child,
    lines,
    stderr: () => err,
    exited,
    innerPid,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(innerPid(), "SIGKILL");
        } catch {
          child.kill("SIGKILL");
        }
      }
      await exited;
      live.delete(host);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) process.kill(innerPid(), "SIGTERM");
      await exited;
    },
  };
  live.add(host);
  void exited.then(() => live.delete(host));
  return host;
}

/** Waits until `f` returns something other than undefined, polling; throws after `ms`. */
export async function until<T>(
  what: string,
  f: () => T | undefined | Promise<T | undefined>,
  ms = 30_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const LOAD = fileURLToPath(new URL("./fixtures/host-load.mjs", import.meta.url));

/** What host-load.mjs is told: see that file. */
export interface LoadPlan {
  /** Tags of this host's calls start here: a call's reported cost is (10,000 + tag) micro-dollars. */
  readonly tagBase: number;
  /** How many calls; without it, calls go on until the test writes "stop" to the host's stdin. */
  readonly calls?: number;
  readonly inFlight: number;
  readonly keys: readonly string[];
  readonly judges: readonly string[];
  /** How long each fake judge call takes. */
  readonly judgeMs: number;
  /** Workers start this far apart (default 0: all at once). */
  readonly rampMs?: number;
  readonly guard: Record<string, unknown>;
}

/** An in-process guard on the shared ledger, making calls as host-load.mjs describes. */
export function startLoadHost(name: string, ledger: string, plan: LoadPlan): Host {
  return startHost(name, [process.execPath, LOAD, JSON.stringify(plan)], { JUDGE_GUARD_DB: ledger });
}

/** One outcome a host saw, as host-load.mjs prints it. */
export interface Seen {
  readonly tag: number;
  readonly key: string;
  readonly judge: string;
  readonly status: "judged" | "skipped" | "reused" | "error";
  readonly reason?: string;
  /** What the guard said it charged. */
  readonly costUsd?: number;
  /** The call's estimate (the outcome says the same whether the call was reserved or, the ledger down, `open`, not). */
  readonly reservedUsd?: number;
  /** What the fake judge reported (micro-dollars), when it ran. */
  readonly reportedMicros?: number;
}

export const outcomes = (h: Host): Seen[] =>
  h.lines.filter((l) => l.startsWith('{"tag"')).map((l) => JSON.parse(l) as Seen);

export const done = (h: Host): Record<string, unknown> | undefined => {
  const l = h.lines.find((x) => x.startsWith('{"done"'));
  return l === undefined ? undefined : (JSON.parse(l) as { done: Record<string, unknown> }).done;
};

export interface SidecarHost extends Host {
  readonly url: string;
  readonly port: number;
}

/** `judge-guard serve` as host `name`, on 127.0.0.1 and a free port, its ledger at `ledger`. */
export async function startSidecarHost(
  name: string,
  ledger: string,
  env: Record<string, string>,
): Promise<SidecarHost> {
  const port = await freePort();
  const host = startHost(
    name,
    [process.execPath, BIN, "serve", "--host", "127.0.0.1", "--port", String(port)],
    {
      JUDGE_GUARD_DB: ledger,
      JUDGE_GUARD_TOKEN: SIDECAR_TOKEN,
      ...env,
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await until(
    `${name}'s sidecar to answer /healthz`,
    async () => {
      if (host.child.exitCode !== null) throw new Error(`${name}'s sidecar exited: ${host.stderr()}`);
      try {
        const r = await fetch(`${url}/healthz`);
        return r.ok ? true : undefined;
      } catch {
        return undefined;
      }
    },
    30_000,
  );
  return Object.assign(host, { url, port });
}
