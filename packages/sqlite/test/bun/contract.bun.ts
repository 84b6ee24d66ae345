// The shared store contract under Bun, on bun:sqlite: `bun test` runs this file (Bun maps the
// contract's `vitest` imports to its own test runner). Started by test/runtimes.test.ts.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeIdempotencyStoreContract } from "../../../conformance/src/store-contract.js";
import { createSqliteIdempotencyStore, type SqliteIdempotencyStore } from "../../dist/index.js";

function freshStore(now?: () => number) {
  const dir = mkdtempSync(join(tmpdir(), "mappa-sqlite-bun-"));
  const options = {
    database: join(dir, "mappa.db"),
    driver: "bun:sqlite" as const,
    ...(now ? { now } : {}),
  };
  const stores: SqliteIdempotencyStore[] = [createSqliteIdempotencyStore(options)];
  return {
    store: stores[0] as SqliteIdempotencyStore,
    async replicas(n: number) {
      const more = Array.from({ length: n }, () => createSqliteIdempotencyStore(options));
      stores.push(...more);
      return more;
    },
    async close() {
      await Promise.all(stores.map((store) => store.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describeIdempotencyStoreContract("sqlite (bun:sqlite), injected clock", async () => {
  let now = Date.now();
  return {
    ...freshStore(() => now),
    advance: (ms: number) => {
      now += ms;
    },
  };
});
describeIdempotencyStoreContract("sqlite (bun:sqlite), machine clock", async () => freshStore(), {
  clock: "real",
});
