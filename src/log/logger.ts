import { pino } from "pino";
import type { LogLevel } from "./levels.js";

export { LOG_LEVELS, type LogLevel } from "./levels.js";

/** The logging surface the guard uses: pino's, so a host can pass its own pino logger. */
export type Logger = Pick<pino.Logger, "debug" | "info" | "warn" | "error" | "child">;

/**
 * Structured JSON logs on stderr, quiet by default (warnings and errors only). The guard logs
 * session keys, fingerprints, counts and costs; it never logs transcript text or secrets.
 */
export function createLogger(level: LogLevel = "warn"): Logger {
  return pino(
    { name: "judge-guard", level, base: { pid: process.pid } },
    pino.destination({ dest: 2, sync: true }),
  );
}
