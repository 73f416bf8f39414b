/** A one-line progress bar for a TTY, redrawn in place at most every 100 ms. */
export class ProgressBar {
  #last = 0;
  readonly #stream: NodeJS.WriteStream;
  readonly #label: string;
  #drawn = false;

  constructor(stream: NodeJS.WriteStream, label: string) {
    this.#stream = stream;
    this.#label = label;
  }

  update(done: number, total: number, detail: string): void {
    const now = Date.now();
    if (now - this.#last < 100) return;
    this.#last = now;
    const width = Math.max(10, Math.min(40, (this.#stream.columns ?? 80) - 40 - detail.length));
    const ratio = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(ratio * width);
    const bar = `${"#".repeat(filled)}${"-".repeat(width - filled)}`;
    this.#stream.write(
      `\r${this.#label} [${bar}] ${(ratio * 100).toFixed(0).padStart(3)}% ${detail}\u001b[K`,
    );
    this.#drawn = true;
  }

  clear(): void {
    if (this.#drawn) this.#stream.write("\r\u001b[K");
    this.#drawn = false;
  }
}
