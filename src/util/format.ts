/* Numbers for people, shared by the CLI's summaries and the report's table and HTML. */

/**
 * Money for figures shown together (a table column, a summary block): one precision for all of
 * them, cents when every amount is a dollar or more (or a whole number of cents), else four
 * decimals, so that `$0.4321` never stands next to `$2.11`. An amount that is not zero but
 * rounds to zero says so (`<$0.0001`).
 */
export function usdColumn(amounts: readonly number[]): (n: number) => string {
  const inCents = (n: number) => Math.abs(Math.round(n * 100) - n * 100) < 1e-6;
  const digits = amounts.some((n) => n !== 0 && Math.abs(n) < 1 && !inCents(n)) ? 4 : 2;
  const least = 10 ** -digits;
  return (n) => {
    const abs = Math.abs(n);
    if (n !== 0 && abs < least / 2) return `${n < 0 ? ">-" : "<"}$${least.toFixed(digits)}`;
    const text = abs.toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
    return `${n < 0 && Number(text.replaceAll(",", "")) !== 0 ? "-" : ""}$${text}`;
  };
}

export function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** A count and its noun, singular for one: "1 call", "2 calls", "1,076 lines". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${count(n)} ${n === 1 ? one : many}`;
}

/** A share, always with one decimal ("0.0%" when there is nothing to share). */
export function percent(part: number, whole: number): string {
  if (whole === 0) return "0.0%";
  return `${((part / whole) * 100).toFixed(1)}%`;
}
