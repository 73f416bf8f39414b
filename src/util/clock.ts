/** A source of wall-clock time in milliseconds since the epoch. */
export interface Clock {
  now(): number;
}

/**
 * The system clock as budgets need it: read once, then carried forward by the monotonic clock.
 *
 * A wall clock can jump (a bad NTP answer, an operator's `date -s`, a VM restored from a
 * snapshot). If windows followed it, a jump forward would empty every rolling window at once
 * (a full budget again), and a jump back would date charges in the past, where they leave the
 * window early. Time carried forward by the monotonic clock cannot jump; it follows the slow
 * corrections NTP makes by slewing (the monotonic clock is slewed too) and lags a step the
 * wall clock makes, which errs on the side of the budget: a window expires late, never early.
 *
 * Where the two disagree by more than `toleranceMs`, `skew()` says by how much, so the guard
 * can say so in its log; a restart adopts the wall clock as it is then.
 */
export class SteadyClock implements Clock {
  readonly #wall: () => number;
  readonly #mono: () => number;
  readonly #anchorWall: number;
  readonly #anchorMono: number;

  constructor(wall: () => number = Date.now, mono: () => number = () => performance.now()) {
    this.#wall = wall;
    this.#mono = mono;
    this.#anchorWall = wall();
    this.#anchorMono = mono();
  }

  now(): number {
    return Math.round(this.#anchorWall + (this.#mono() - this.#anchorMono));
  }

  /** How far the wall clock is from this clock now: positive when it has jumped ahead. */
  skew(): number {
    return this.#wall() - this.now();
  }
}
