import { printable } from "../util/printable.js";

/**
 * HTML that is safe to insert as is: only `html` makes it, from its own literal text and
 * escaped values. A string from the ledger (a session key, a judge name) can never become
 * markup by mistake, since every value that is not Markup is escaped.
 */
export class Markup {
  readonly #text: string;
  constructor(text: string) {
    this.#text = text;
  }
  toString(): string {
    return this.#text;
  }
}

export type Part = Markup | string | number | null | undefined | false | readonly Part[];

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Text for an element's content or a quoted attribute. */
export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

function render(p: Part): string {
  if (p === null || p === undefined || p === false) return "";
  if (p instanceof Markup) return p.toString();
  if (Array.isArray(p)) return p.map(render).join("");
  return escapeHtml(String(p));
}

/** A template literal tag: each interpolated value is escaped unless it is Markup (nested `html`). */
export function html(strings: TemplateStringsArray, ...values: Part[]): Markup {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new Markup(out);
}

/**
 * A name from the ledger as text: control characters and bidirectional overrides made visible
 * (`\u202e`), as in the table, so a key cannot reorder or hide what is shown around it.
 */
export const name = (s: string): string => printable(s);

/** Times as UTC and as the local time of the machine that wrote the report, said which is which. */
export class Times {
  readonly zone: string;
  readonly #local: Intl.DateTimeFormat;

  /** @param zone an IANA time zone; @default this process's (TZ, or the system's) */
  constructor(zone?: string) {
    this.zone = zone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
    this.#local = new Intl.DateTimeFormat("en-US", {
      timeZone: this.zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      timeZoneName: "longOffset",
    });
  }

  /** "2026-11-20 09:47" (or with seconds), in UTC, with no label. */
  utc(ms: number, seconds = false): string {
    const iso = new Date(ms).toISOString();
    return `${iso.slice(0, 10)} ${iso.slice(11, seconds ? 19 : 16)}`;
  }

  /** "2026-11-20 10:47 UTC+01:00": local time, labelled with its offset that day. */
  local(ms: number, seconds = false): string {
    const p: Record<string, string> = {};
    for (const { type, value } of this.#local.formatToParts(ms)) p[type] = value;
    const offset = p.timeZoneName === "GMT" ? "+00:00" : (p.timeZoneName ?? "").replace(/^GMT/, "");
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${seconds ? `:${p.second}` : ""} UTC${offset}`;
  }

  /** A <time> element: UTC, then the local time beneath it. */
  cell(ms: number): Markup {
    return html`<time datetime="${new Date(ms).toISOString()}">${this.utc(ms, true)} UTC<small>${this.local(ms, true)} local</small></time>`;
  }
}

/** "35 min", "2 h 05 min", "3 d 4 h". */
export function duration(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 1) return `${Math.max(0, Math.round(ms / 1000))} s`;
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}
