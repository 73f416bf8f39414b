/** Money inside the guard is integer micro-dollars: sums of integers do not drift. */
export const toMicros = (usd: number): number =>
  usd === Number.POSITIVE_INFINITY ? usd : Math.round(usd * 1_000_000);
export const toUsd = (micros: number): number => micros / 1_000_000;

/** Dollars to the whole micro-dollar, the precision of the ledger (a sum made in dollars, for a summary). */
export const roundUsd = (usd: number): number => toUsd(toMicros(usd));

/**
 * A ledger aggregate of micro-dollars in dollars: `SUM` is null over no rows, and `AVG` need not
 * be a whole number of micro-dollars.
 */
export const ledgerUsd = (micros: number | null | undefined): number =>
  toUsd(Math.round(Number(micros ?? 0)));

/** Money for a person to read: cents for dollars, four decimals below a dollar, six below a cent. */
export function formatUsd(n: number): string {
  if (n === 0) return "$0.00";
  const abs = Math.abs(n);
  const digits = abs >= 1 ? 2 : abs >= 0.01 ? 4 : 6;
  return `${n < 0 ? "-" : ""}$${abs.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })}`;
}
