import { pino } from "pino";

/** The logging surface the guard uses: pino's, so a host can pass its own pino logger. */
export type Logger = Pick<pino.Logger, "debug" | "info" | "warn" | "error" | "child">;

export const LOG_LEVELS = ["silent", "fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

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
