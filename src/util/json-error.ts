/**
 * Where a text that is not valid JSON goes wrong, in words that quote none of it. V8's own
 * messages quote the text around the mistake ("Unexpected token 'h', "my diagnos"... is not
 * valid JSON"), and that text may be a transcript.
 */
export interface JsonSyntaxError {
  /** 0-based, in UTF-16 code units. */
  readonly offset: number;
  /** 1-based. */
  readonly line: number;
  /** 1-based, in characters (UTF-16 code units) from the start of the line. */
  readonly column: number;
  /** What was wrong, in fixed words. */
  readonly problem: string;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPES = new Set(['"', "\\", "/", "b", "f", "n", "r", "t"]);
const HEX4 = /[0-9a-fA-F]{4}/y;

type Expect = "value" | "firstValue" | "key" | "firstKey" | "colon" | "after";

/** The first syntax error in `text`, or undefined when it is valid JSON. Iterative: any depth. */
export function findJsonSyntaxError(text: string): JsonSyntaxError | undefined {
  const at = (offset: number, problem: string): JsonSyntaxError => {
    let line = 1;
    let start = 0;
    for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) {
      line++;
      start = i + 1;
    }
    return { offset, line, column: offset - start + 1, problem };
  };
  /** The offset after the string that starts at `i`, or the error in it. */
  const string = (i: number): number | JsonSyntaxError => {
    for (let j = i + 1; j < text.length; j++) {
      const c = text.charCodeAt(j);
      if (c === 0x22) return j + 1;
      if (c < 0x20) return at(j, "a control character inside a string (escape it)");
      if (c === 0x5c) {
        const e = text[j + 1];
        if (e === "u") {
          HEX4.lastIndex = j + 2;
          if (!HEX4.test(text)) return at(j, "a \\u escape without four hex digits");
          j += 5;
        } else if (e !== undefined && ESCAPES.has(e)) j++;
        else return at(j, "an unknown escape in a string");
      }
    }
    return at(i, "a string that is never closed");
  };

  const stack: Array<"{" | "["> = [];
  let expect: Expect = "value";
  let i = 0;
  for (;;) {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
    if (i >= text.length) {
      if (expect === "after" && stack.length === 0) return undefined;
      return at(i, "the text ends before the JSON does");
    }
    const c = text[i]!;
    if (expect === "after") {
      const top = stack.at(-1);
      if (top === undefined) return at(i, "more text after the JSON value");
      if (c === ",") {
        expect = top === "{" ? "key" : "value";
        i++;
      } else if ((top === "{" && c === "}") || (top === "[" && c === "]")) {
        stack.pop();
        i++;
      } else return at(i, top === "{" ? "expected , or } after a value" : "expected , or ] after a value");
      continue;
    }
    if (expect === "colon") {
      if (c !== ":") return at(i, "expected : after a property name");
      expect = "value";
      i++;
      continue;
    }
    if (expect === "key" || expect === "firstKey") {
      if (expect === "firstKey" && c === "}") {
        stack.pop();
        expect = "after";
        i++;
        continue;
      }
      if (c !== '"') return at(i, "expected a property name in double quotes");
      const end = string(i);
      if (typeof end !== "number") return end;
      i = end;
      expect = "colon";
      continue;
    }
    // A value.
    if (expect === "firstValue" && c === "]") {
      stack.pop();
      expect = "after";
      i++;
      continue;
    }
    if (c === "{" || c === "[") {
      stack.push(c);
      expect = c === "{" ? "firstKey" : "firstValue";
      i++;
      continue;
    }
    expect = "after";
    if (c === '"') {
      const end = string(i);
      if (typeof end !== "number") return end;
      i = end;
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      NUMBER.lastIndex = i;
      if (!NUMBER.test(text)) return at(i, "a malformed number");
      i = NUMBER.lastIndex;
    } else {
      const word = ["true", "false", "null"].find((w) => text.startsWith(w, i));
      if (word === undefined) return at(i, "an unexpected character where a value should be");
      i += word.length;
    }
  }
}

/** "not valid JSON (line 1, column 57: expected , or } after a value)": where, never what. */
export function jsonErrorMessage(text: string): string {
  const e = findJsonSyntaxError(text);
  return e === undefined
    ? "not valid JSON"
    : `not valid JSON (line ${e.line}, column ${e.column}: ${e.problem})`;
}
