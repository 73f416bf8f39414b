import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The layers of src/, lowest first (README, "Layout"). A module may import its own folder and
 * any folder of a lower layer; an import of a higher layer, or of another folder in its own
 * layer, is a wrong edge. Type-only imports count: a type is a dependency too.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["util", "log"],
  ["errors", "domain"],
  ["fingerprint"],
  ["detection"],
  ["pricing"],
  ["store"],
  ["signals"],
  ["budget"],
  ["guard"],
  ["wire"],
  ["config"],
  ["replay", "report", "server", "client"],
  ["adapters"],
  ["cli"],
  ["index"],
];

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../../src");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** A module's unit: its folder under src/, or its name for a file at the top (errors, index). */
function unitOf(file: string): string {
  const [head, ...rest] = relative(SRC, file).split(/[\\/]/);
  return rest.length > 0 ? head! : head!.replace(/\.[jt]s$/, "");
}

const layerOf = new Map(LAYERS.flatMap((units, i) => units.map((u) => [u, i] as const)));

/** Every relative specifier a file names: import/export ... from, side-effect imports, import(). */
function specifiers(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/\b(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) found.push(m[1]!);
  return found;
}

/** The wrong edges: "file imports specifier (unit -> unit)". */
function wrongEdges(): string[] {
  const wrong: string[] = [];
  for (const file of sources(SRC)) {
    const from = unitOf(file);
    for (const spec of specifiers(readFileSync(file, "utf8"))) {
      const to = unitOf(resolve(dirname(file), spec));
      if (to === from) continue;
      const a = layerOf.get(from);
      const b = layerOf.get(to);
      if (a === undefined || b === undefined || b >= a) {
        const why = a === undefined || b === undefined ? "not in a layer" : b > a ? "up" : "across";
        wrong.push(`${relative(SRC, file)} imports ${spec} (${from} -> ${to}: ${why})`);
      }
    }
  }
  return wrong;
}

describe("layers: every import in src/ points down", () => {
  it("every folder of src/ is in exactly one layer", () => {
    const units = [...new Set(sources(SRC).map(unitOf))].sort();
    expect(units.filter((u) => !layerOf.has(u))).toEqual([]);
    expect(LAYERS.flat().length).toBe(layerOf.size);
  });

  it("no module imports a higher layer, or another folder of its own layer", () => {
    expect(wrongEdges()).toEqual([]);
  });

  it("the check sees type-only, re-exported and inline type imports", () => {
    const text = [
      'import type { A } from "../a/x.js";',
      'export { B } from "./b.js";',
      'export type { C } from "../c/y.js";',
      'type D = import("../d/z.js").D;',
      'import "../e/side.js";',
      'import { f } from "node:fs";',
    ].join("\n");
    expect(specifiers(text)).toEqual(["../a/x.js", "./b.js", "../c/y.js", "../d/z.js", "../e/side.js"]);
  });
});
