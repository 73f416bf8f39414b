import fc from "fast-check";

/** Text of every kind: ASCII, any Unicode, lone surrogates and NUL included. */
export const anyText = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.string({ unit: "grapheme" }));
