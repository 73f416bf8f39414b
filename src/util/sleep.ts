/** Resolves after `ms` milliseconds (a retry's backoff, a shutdown's poll). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
