import { execFile, execFileSync, spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";

/**
 * A throwaway PostgreSQL cluster for one test file: initdb into a temporary folder, started on a
 * free port on 127.0.0.1 only, a password for the `postgres` role over TCP (so that URLs carry a
 * secret, which no message may echo), a fresh database per call of {@link PgCluster.database}.
 * `restart()` and `stop()` serve the fault tests. As root (initdb refuses root) the cluster runs
 * as the `postgres` user through `runuser`.
 *
 * Where PostgreSQL is not installed the tests that need it are skipped, saying how to install it,
 * unless JUDGE_GUARD_REQUIRE_POSTGRES=1 (CI), where they fail.
 */

/** The password of the test cluster's `postgres` role: tests assert it never shows. */
export const PG_PASSWORD = "s3cret-Pa55word-of-the-test-cluster";

/** Where PostgreSQL's server binaries are, or undefined when it is not installed. */
export function postgresBin(): string | undefined {
  const candidates: string[] = [];
  const config = spawnSync("pg_config", ["--bindir"], { encoding: "utf8" });
  if (config.status === 0) candidates.push(config.stdout.trim());
  try {
    const versions = readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(join("/usr/lib/postgresql", v, "bin"));
  } catch {}
  return candidates.find((d) => existsSync(join(d, "initdb")) && existsSync(join(d, "pg_ctl")));
}

/** Why the PostgreSQL tests cannot run here, or undefined when they can. */
export function postgresUnavailable(): string | undefined {
  if (postgresBin() !== undefined) return undefined;
  const why =
    "PostgreSQL is not installed (no initdb/pg_ctl in `pg_config --bindir` or /usr/lib/postgresql/*/bin): install it (Debian/Ubuntu: apt-get install postgresql) to run the PostgreSQL store's tests";
  if (process.env.JUDGE_GUARD_REQUIRE_POSTGRES === "1")
    throw new Error(`${why} (JUDGE_GUARD_REQUIRE_POSTGRES=1)`);
  return why;
}

export interface PgCluster {
  readonly port: number;
  /** A URL for database `db`, with the password. */
  url(db: string): string;
  /** Creates a fresh database and returns its URL. */
  database(): Promise<string>;
  /** Runs SQL as the superuser on database `db`. */
  sql(db: string, text: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** Stops the server (fast: connections are closed). */
  stop(): void;
  start(): void;
  /** Stops and starts the server: every open connection is lost. */
  restart(): void;
  /** {@link restart} without blocking this thread (the caller's guard goes on running sections meanwhile). */
  restartInBackground(): Promise<void>;
  /** Stops the server and removes its folder. */
  destroy(): void;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts a cluster; throws when PostgreSQL is missing. */
export async function startCluster(): Promise<PgCluster> {
  const bin = postgresBin();
  if (bin === undefined) throw new Error(postgresUnavailable() ?? "PostgreSQL is not installed");
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), "judge-guard-pg-"));
  const data = join(dir, "data");
  const pwfile = join(dir, "pw");
  writeFileSync(pwfile, `${PG_PASSWORD}\n`, { mode: 0o600 });
  if (root) {
    const { uid, gid } = idsOf("postgres");
    chownSync(dir, uid, gid);
    chownSync(pwfile, uid, gid);
  }
  const as = (cmd: string, args: string[]) => {
    const [file, argv] = root ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
    const r = spawnSync(file, argv, { encoding: "utf8", timeout: 120_000 });
    if (r.status !== 0)
      throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout}${r.stderr}`);
  };
  as(join(bin, "initdb"), [
    "-D",
    data,
    "-U",
    "postgres",
    `--pwfile=${pwfile}`,
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    "--no-sync",
    "-E",
    "UTF8",
    "--locale=C",
  ]);
  const port = await freePort();
  // Speed over durability for a throwaway cluster: no fsync (the store's own settings are the
  // server's defaults; synchronous_commit stays on).
  const options = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    `-c unix_socket_directories=${dir}`,
    "-c fsync=off",
    "-c full_page_writes=off",
    "-c max_connections=200",
  ].join(" ");
  const ctlArgs = (...args: string[]) => ["-D", data, "-w", "-t", "60", ...args];
  const ctl = (...args: string[]) => as(join(bin, "pg_ctl"), ctlArgs(...args));
  const startArgs = ["-o", options, "-l", join(dir, "server.log"), "start"];
  const start = () => ctl(...startArgs);
  const stop = () => ctl("-m", "fast", "stop");
  const ctlInBackground = (args: string[]) =>
    new Promise<void>((resolve, reject) => {
      const cmd = join(bin, "pg_ctl");
      const [file, argv] = root ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
      execFile(file, argv, { encoding: "utf8", timeout: 120_000 }, (err, stdout, stderr) =>
        err
          ? reject(new Error(`pg_ctl ${args.join(" ")} failed: ${err.message}\n${stdout}${stderr}`))
          : resolve(),
      );
    });
  start();
  let n = 0;
  const url = (db: string) =>
    `postgres://postgres:${encodeURIComponent(PG_PASSWORD)}@127.0.0.1:${port}/${db}`;
  const sql = async (db: string, text: string, params: unknown[] = []) => {
    const c = new pg.Client({ connectionString: url(db) });
    await c.connect();
    try {
      return await c.query(text, params);
    } finally {
      await c.end();
    }
  };
  let running = true;
  return {
    port,
    url,
    sql,
    async database() {
      const name = `jg_${process.pid}_${++n}`;
      await sql("postgres", `CREATE DATABASE ${name}`);
      return url(name);
    },
    stop() {
      if (running) stop();
      running = false;
    },
    start() {
      if (!running) start();
      running = true;
    },
    restart() {
      if (running) stop();
      start();
      running = true;
    },
    async restartInBackground() {
      if (running) await ctlInBackground(ctlArgs("-m", "fast", "stop"));
      running = false;
      await ctlInBackground(ctlArgs(...startArgs));
      running = true;
    },
    destroy() {
      try {
        if (running) stop();
      } catch {}
      running = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function idsOf(user: string): { uid: number; gid: number } {
  const uid = Number(execFileSync("id", ["-u", user], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", user], { encoding: "utf8" }).trim());
  return { uid, gid };
}

/**
 * One cluster for the calling test file, started before its tests and destroyed after them.
 * Returns a getter (the cluster exists once `beforeAll` ran). Use with
 * `describe.skipIf(postgresUnavailable() !== undefined)`.
 */
export function usePostgres(): () => PgCluster {
  let cluster: PgCluster | undefined;
  beforeAll(async () => {
    if (postgresUnavailable() !== undefined) return;
    cluster = await startCluster();
  }, 120_000);
  afterAll(() => cluster?.destroy());
  return () => {
    if (cluster === undefined) throw new Error("the PostgreSQL cluster did not start");
    return cluster;
  };
}
