// C0 and C1 controls, DEL, the line and paragraph separators, and the bidirectional overrides:
// what lets a string start a line of its own, move the cursor, recolour or reorder a terminal.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;
const NAMED: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * A string as one inert line for a terminal, a text report or a log line: each control
 * character becomes a visible escape (`\n`, `\x1b`, `\u202e`), so a session key, judge or model
 * name cannot forge lines, move the cursor or recolour what follows. Other text is unchanged.
 */
export function printable(s: string): string {
  return s.replace(UNSAFE, (c) => {
    const named = NAMED[c];
    if (named !== undefined) return named;
    const code = c.charCodeAt(0);
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

const ANY_UNSAFE = new RegExp(UNSAFE.source);

/** Whether `printable` would change `s`. */
export function hasControls(s: string): boolean {
  return ANY_UNSAFE.test(s);
}
