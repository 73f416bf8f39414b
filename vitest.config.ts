import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["./test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real child processes and SQLite files: two workers fit the 2-core machines.
    maxWorkers: 2,
    reporters: ["default", "./test/summary-reporter.ts"],
  },
});
