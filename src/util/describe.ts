/** A short description of a bad setting for an error message: a short string is quoted. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string")
    return value.length > 40 ? `a string of ${value.length} characters` : JSON.stringify(value);
  if (typeof value === "number") return String(value);
  return typeof value;
}

/**
 * What a value is, never what it says: for values that may hold transcript text (a request's
 * messages, say), where even 10 characters quoted in an error would leak into logs.
 */
export function shape(value: unknown): string {
  if (typeof value === "string") return `a string of ${value.length} characters`;
  return describe(value);
}
