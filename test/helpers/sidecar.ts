import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../..", import.meta.url));

export const SIDECAR_TOKEN = "phantom-integration-token-0123456789";

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolvePort(port));
    });
    srv.on("error", reject);
  });
}

export interface Sidecar {
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** What it wrote to stderr so far. */
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * The real sidecar (`judge-guard serve`) as a child process on 127.0.0.1, with its ledger at
 * `db`; on `port` when given (a restart on the same address), else on a free one.
 */
export async function startSidecar(db: string, env: NodeJS.ProcessEnv = {}, port?: number): Promise<Sidecar> {
  const at = port ?? (await freePort());
  const child = spawn(
    process.execPath,
    [join(REPO, "dist/cli/main.js"), "serve", "--host", "127.0.0.1", "--port", String(at)],
    {
      env: { ...process.env, JUDGE_GUARD_DB: db, JUDGE_GUARD_TOKEN: SIDECAR_TOKEN, ...env },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let err = "";
  child.stderr?.on("data", (c) => {
    err += c;
  });
  const stop = (): Promise<void> =>
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise((done) => {
          child.once("exit", () => done());
          child.kill("SIGTERM");
        });
  const url = `http://127.0.0.1:${at}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`the sidecar exited: ${err}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return { url, port: at, child, stderr: () => err, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`the sidecar did not start: ${err}`);
}
