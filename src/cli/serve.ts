import { fromEnv } from "../config/env.js";
import { createGuard } from "../guard/guard.js";
import { DEFAULTS } from "../guard/options.js";
import { createLogger, type LogLevel } from "../log/logger.js";
import { isLoopback, serve } from "../server/server.js";
import { UsageError } from "./errors.js";
import { createCliLogger } from "./log.js";

export interface ServeCommandOptions {
  readonly host?: string;
  readonly port?: string;
  readonly logFormat?: string;
}

const LOG_FORMATS = ["text", "json"] as const;

/**
 * How `serve` writes the guard's log records on stderr: `--log-format`, else text lines for
 * people at a terminal and pino's JSON lines anywhere else (a container, a service manager, a
 * log shipper), where a collector reads them.
 */
export function serveLogFormat(flag: string | undefined, stderrIsTty: boolean): "text" | "json" {
  if (flag === undefined) return stderrIsTty ? "text" : "json";
  const f = flag.trim().toLowerCase();
  if (!(LOG_FORMATS as readonly string[]).includes(f))
    throw new UsageError(`--log-format ${JSON.stringify(flag)} is not one of ${LOG_FORMATS.join(", ")}`);
  return f as "text" | "json";
}

/** `judge-guard serve`: runs until SIGTERM or SIGINT, then shuts down cleanly. */
export async function serveCommand(o: ServeCommandOptions): Promise<number> {
  const port = Number(o.port ?? 8787);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port ${o.port} is not a port number (0-65535)`);
  const host = o.host ?? "127.0.0.1";
  const token = process.env.JUDGE_GUARD_TOKEN?.trim() || undefined;
  if (token !== undefined && token.length < 16)
    throw new UsageError("JUDGE_GUARD_TOKEN must be at least 16 characters");
  const format = serveLogFormat(o.logFormat, process.stderr.isTTY === true);
  const options = fromEnv(process.env);
  const level: LogLevel = typeof options.logger === "string" ? options.logger : DEFAULTS.logger;
  const log = format === "json" ? createLogger(level) : createCliLogger(level);
  const guard = createGuard({ ...options, logger: log });
  let running: Awaited<ReturnType<typeof serve>>;
  try {
    running = await serve({ guard, log, host, port, token });
  } catch (e) {
    await guard.close();
    if ((e as NodeJS.ErrnoException).code === "EADDRINUSE")
      throw new UsageError(`port ${port} on ${host} is already in use (--port)`);
    throw e;
  }
  process.stdout.write(
    `judge-guard serving on ${running.url} (${token ? "bearer token required" : isLoopback(host) ? "no token: loopback only" : ""})\n`,
  );
  const fault = guard.ledgerFault;
  if (fault !== null) {
    const failing =
      options.onError === "open"
        ? "judge calls run unguarded (JUDGE_GUARD_ON_ERROR=open)"
        : "judge calls are skipped (JUDGE_GUARD_ON_ERROR=closed)";
    process.stderr.write(
      `judge-guard: ${fault.message}. Until then ${failing}; the ledger is tried again every 5 s\n`,
    );
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  await running.close();
  process.stdout.write("judge-guard stopped: requests in flight finished, ledger closed\n");
  return 0;
}
