/** Money inside the guard is integer micro-dollars: sums of integers do not drift. */
export const toMicros = (usd: number): number =>
  usd === Number.POSITIVE_INFINITY ? usd : Math.round(usd * 1_000_000);
export const toUsd = (micros: number): number => micros / 1_000_000;
