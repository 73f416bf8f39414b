import { Writable } from "node:stream";
import { type Logger, pino } from "pino";

export interface CapturedLogs {
  readonly logger: Logger;
  /** Each line written so far, parsed. */
  readonly lines: Array<Record<string, unknown>>;
  /** Everything written so far, as written. */
  text(): string;
}

/** A pino logger at `level` that keeps every line it writes. */
export function captureLogs(level = "warn"): CapturedLogs {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of chunk.toString().split("\n").filter(Boolean)) {
        raw.push(l);
        lines.push(JSON.parse(l));
      }
      done();
    },
  });
  return { logger: pino({ level }, stream), lines, text: () => raw.join("\n") };
}
