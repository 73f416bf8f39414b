// A throwaway PostgreSQL cluster for the benchmarks: initdb in a temporary folder, one server on
// 127.0.0.1 and a free port, removed by stop(). The benchmarks are plain ESM and cannot import
// the tests' TypeScript harness (test/helpers/postgres.ts); this is its small equivalent.
//
// PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user (initdb
// and the server run through runuser). Authentication is `trust` on 127.0.0.1 only: no password
// exists to leak. Durability is PostgreSQL's default (fsync, synchronous_commit on), as in
// production: both sides of every comparison run on this one cluster.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BIN_DIRS = ["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"];

function which(cmd) {
  const found = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).stdout.trim();
  if (found) return found;
  for (const d of BIN_DIRS) if (spawnSync("test", ["-x", join(d, cmd)]).status === 0) return join(d, cmd);
  return undefined;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** Whether a cluster can be started here (initdb and pg_ctl on the PATH or in Debian's folders). */
export function postgresAvailable() {
  return which("initdb") !== undefined && which("pg_ctl") !== undefined;
}

/**
 * Starts a cluster and returns `{ url, database(name), stop }`; `url` is a postgres:// URL with no password.
 * `settings` are extra `-c name=value` server settings.
 */
export async function startPostgres(settings = {}) {
  const initdb = which("initdb");
  const pgCtl = which("pg_ctl");
  if (!initdb || !pgCtl) throw new Error("PostgreSQL's initdb and pg_ctl are not installed");
  const root = mkdtempSync(join(tmpdir(), "judge-guard-bench-pg-"));
  const data = join(root, "data");
  const asRoot = process.getuid?.() === 0;
  // The server's user must own its folders; as root that is `postgres`, which must reach them.
  chmodSync(root, 0o755);
  const run = (cmd, args) =>
    asRoot
      ? execFileSync("runuser", ["-u", "postgres", "--", cmd, ...args], { stdio: "pipe" })
      : execFileSync(cmd, args, { stdio: "pipe" });
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(root, uid, gid);
  }
  run(initdb, ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
  const port = await freePort();
  const conf = {
    listen_addresses: "127.0.0.1",
    port: String(port),
    unix_socket_directories: root,
    max_connections: "200",
    ...settings,
  };
  const options = Object.entries(conf)
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(" ");
  run(pgCtl, ["-D", data, "-l", join(root, "server.log"), "-o", options, "-w", "-t", "60", "start"]);
  let stopped = false;
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    url,
    port,
    /** Creates database `name` and returns its URL. */
    async database(name) {
      const { default: pg } = await import("pg");
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(`CREATE DATABASE ${name}`);
      await c.end();
      return url.replace(/\/postgres$/, `/${name}`);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      try {
        run(pgCtl, ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
}
