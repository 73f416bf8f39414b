import { join } from "node:path";
import { describe } from "vitest";
import { MemoryStore } from "../../src/store/memory.js";
import { PostgresStore } from "../../src/store/postgres.js";
import { SqliteStore } from "../../src/store/sqlite.js";
import { postgresUnavailable, usePostgres } from "../helpers/postgres.js";
import { useTempDir } from "../helpers/tmp.js";
import { storeContract } from "./contract.js";

/** The same cases for every store the guard can run on (see contract.ts). */
const tmp = useTempDir();

describe("store contract: memory", () => {
  storeContract({
    async fresh() {
      const store = new MemoryStore();
      return { setting: undefined, open: () => store };
    },
  });
});

describe("store contract: SQLite", () => {
  storeContract({
    async fresh() {
      const path = join(tmp(), "ledger.db");
      return { setting: path, open: () => new SqliteStore(path) };
    },
  });
});

const noPostgres = postgresUnavailable();
describe.skipIf(noPostgres !== undefined)(
  `store contract: PostgreSQL${noPostgres ? ` (skipped: ${noPostgres})` : ""}`,
  () => {
    const cluster = usePostgres();
    storeContract({
      async fresh() {
        const url = await cluster().database();
        return { setting: url, open: () => new PostgresStore(url) };
      },
    });
  },
);
