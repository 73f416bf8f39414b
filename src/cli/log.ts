import { Writable } from "node:stream";
import { pino } from "pino";
import type { Logger, LogLevel } from "../log/logger.js";
import { hasControls, printable } from "../util/printable.js";

const LEVEL_NAMES: Record<number, string> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warning",
  50: "error",
  60: "fatal",
};

/** pino's own fields, which the human line shows as its prefix and message, or not at all. */
const OWN_FIELDS = new Set(["level", "time", "pid", "hostname", "name", "msg", "v"]);

/** A field's value on the line: quoted when it has spaces or punctuation, always inert. */
function showValue(value: unknown): string {
  if (typeof value === "string")
    return value === "" || /[\s,()="]/.test(value) || hasControls(value)
      ? printable(JSON.stringify(value))
      : value;
  if (value !== null && typeof value === "object" && typeof (value as Error).message === "string") {
    return printable(JSON.stringify((value as Error).message)); // a serialised error: its message, not its stack
  }
  return printable(JSON.stringify(value) ?? String(value));
}

/**
 * One pino JSON line as one line for people:
 * `judge-guard: warning: no price for this model: charging it at the highest known rate (model=claude-mystery-9)`.
 * Only the log record's own message and fields are shown.
 */
export function formatLogLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return `judge-guard: ${printable(json)}`;
  }
  if (record === null || typeof record !== "object" || Array.isArray(record))
    return `judge-guard: ${printable(json)}`;
  const level = LEVEL_NAMES[record.level as number] ?? String(record.level ?? "log");
  const fields = Object.entries(record)
    .filter(([k, v]) => !OWN_FIELDS.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${showValue(v)}`);
  const msg = typeof record.msg === "string" ? printable(record.msg.replace(/\s*\n\s*/g, " ")) : "";
  return `judge-guard: ${level}: ${msg}${fields.length > 0 ? ` (${fields.join(", ")})` : ""}`;
}

/** A destination for pino that writes each JSON line as a human line to `out`. */
export class HumanLogStream extends Writable {
  #partial = "";
  readonly #out: NodeJS.WritableStream;
  readonly #beforeWrite: () => void;

  constructor(out: NodeJS.WritableStream = process.stderr, beforeWrite: () => void = () => {}) {
    super({ decodeStrings: false });
    this.#out = out;
    this.#beforeWrite = beforeWrite;
  }

  override _write(
    chunk: string | Buffer,
    _encoding: BufferEncoding,
    callback: (e?: Error | null) => void,
  ): void {
    const lines = (this.#partial + chunk.toString()).split("\n");
    this.#partial = lines.pop() ?? "";
    const text = lines
      .filter((l) => l.trim() !== "")
      .map((l) => `${formatLogLine(l)}\n`)
      .join("");
    if (text !== "") {
      this.#beforeWrite();
      this.#out.write(text);
    }
    callback();
  }

  override _final(callback: (e?: Error | null) => void): void {
    if (this.#partial.trim() !== "") this.#out.write(`${formatLogLine(this.#partial)}\n`);
    this.#partial = "";
    callback();
  }
}

/**
 * The CLI's logger: the guard's log records as human lines on stderr, at `level`.
 * `beforeWrite` runs before each line (e.g. to clear a progress bar).
 */
export function createCliLogger(level: LogLevel, beforeWrite?: () => void): Logger {
  return pino({ level, base: undefined, timestamp: false }, new HumanLogStream(process.stderr, beforeWrite));
}
