import { describeIdempotencyStoreContract } from "@mappa-webhooks/conformance";
import { MappaWebhookError } from "@mappa-webhooks/core";
import { afterAll, describe, expect, it } from "vitest";
import {
  createSqliteIdempotencyStore,
  openSqliteDatabase,
  type SqliteIdempotencyStore,
} from "../src/index.js";
import { cleanupDirs, DRIVER, tempFile } from "./helpers.js";

afterAll(cleanupDirs);

/**
 * A fresh store on a file of its own, on the injected clock `now` (or the machine's clock when
 * undefined), with replicas on connections of their own for the races.
 */
function freshStore(now?: () => number) {
  const database = tempFile("store");
  const options = { database, driver: DRIVER, ...(now === undefined ? {} : { now }) };
  const stores: SqliteIdempotencyStore[] = [createSqliteIdempotencyStore(options)];
  return {
    store: stores[0] as SqliteIdempotencyStore,
    async replicas(n: number) {
      // Separate connections to the same file: every claim races through SQLite's own locks.
      const more = Array.from({ length: n }, () => createSqliteIdempotencyStore(options));
      stores.push(...more);
      return more;
    },
    async close() {
      await Promise.all(stores.map((store) => store.close()));
    },
  };
}

// The shared contract (packages/conformance), on a clock the tests move: exact boundaries.
describeIdempotencyStoreContract(`sqlite (${DRIVER}), injected clock`, async () => {
  let now = Date.now();
  return {
    ...freshStore(() => now),
    advance: (ms) => {
      now += ms;
    },
  };
});

// The same contract on the machine's clock, as deployed.
describeIdempotencyStoreContract(`sqlite (${DRIVER}), machine clock`, async () => freshStore(), {
  clock: "real",
});

describe(`createSqliteIdempotencyStore (${DRIVER})`, () => {
  it("keeps its dedup across a restart: a new store on the same file sees the completed key", async () => {
    const database = tempFile("restart");
    const first = createSqliteIdempotencyStore({ database, driver: DRIVER });
    const claim = await first.claim("evt_restart", { leaseMs: 60_000 });
    if (claim.status !== "claimed") throw new Error("expected a claim");
    await first.complete("evt_restart", claim.token, { ttlMs: 3_600_000 });
    await first.close();
    const second = createSqliteIdempotencyStore({ database, driver: DRIVER });
    expect(await second.claim("evt_restart", { leaseMs: 60_000 })).toEqual({ status: "completed" });
    const connection = await second.ready();
    expect(connection.driver).toBe(DRIVER);
    expect(connection.get<{ journal_mode: string }>("PRAGMA journal_mode")?.journal_mode).toBe(
      "wal",
    );
    await second.close();
  });

  it("waits for another connection's write lock without blocking, then claims", async () => {
    const database = tempFile("locked");
    const store = createSqliteIdempotencyStore({ database, driver: DRIVER });
    await store.ready();
    const other = await openSqliteDatabase(database, { driver: DRIVER });
    other.exec("BEGIN IMMEDIATE");
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    const claiming = store.claim("evt_locked", { leaseMs: 60_000 });
    // The event loop keeps running while the claim waits for the lock.
    await new Promise((resolve) => setTimeout(resolve, 300));
    other.exec("COMMIT");
    expect((await claiming).status).toBe("claimed");
    clearInterval(ticker);
    expect(ticks).toBeGreaterThan(5);
    other.close();
    await store.close();
  });

  it("answers idempotency_store_failed (503) when the lock is held past timeoutMs, naming the cause", async () => {
    const database = tempFile("timeout");
    const store = createSqliteIdempotencyStore({ database, driver: DRIVER, timeoutMs: 200 });
    await store.ready();
    const other = await openSqliteDatabase(database, { driver: DRIVER });
    other.exec("BEGIN IMMEDIATE");
    const error = await store.claim("evt_x", { leaseMs: 1000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    other.exec("ROLLBACK");
    other.close();
    expect(error).toBeInstanceOf(MappaWebhookError);
    expect((error as MappaWebhookError).code).toBe("idempotency_store_failed");
    expect((error as MappaWebhookError).status).toBe(503);
    expect((error as Error).message).toMatch(/^@mappa-webhooks\/sqlite: .*write lock/);
    // Free again: the store works.
    expect((await store.claim("evt_x", { leaseMs: 1000 })).status).toBe("claimed");
    await store.close();
  });

  it("names the fix when the tables are missing and migrate is off", async () => {
    const store = createSqliteIdempotencyStore({
      database: tempFile("nomigrate"),
      driver: DRIVER,
      migrate: false,
    });
    const error = await store.claim("evt_x", { leaseMs: 1000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as MappaWebhookError).code).toBe("idempotency_store_failed");
    expect((error as Error).message).toMatch(/migrate/);
    await store.close();
  });

  it("says how to fix a folder that does not exist", async () => {
    const store = createSqliteIdempotencyStore({
      database: "/nonexistent-mappa-dir/x/mappa.db",
      driver: DRIVER,
    });
    const error = await store.claim("evt_x", { leaseMs: 1000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MappaWebhookError);
    expect((error as Error).message).toMatch(/folder exists/);
  });

  it("rejects bad options with invalid_options", () => {
    const attempts: Array<() => unknown> = [
      () => createSqliteIdempotencyStore(undefined as never),
      () => createSqliteIdempotencyStore({} as never),
      () => createSqliteIdempotencyStore({ database: "" }),
      () => createSqliteIdempotencyStore({ database: { not: "a database" } }),
      () => createSqliteIdempotencyStore({ database: "x.db", timeoutMs: 0 }),
      () => createSqliteIdempotencyStore({ database: "x.db", busyTimeoutMs: -1 }),
      () => createSqliteIdempotencyStore({ database: "x.db", idempotencyTable: "" }),
      () => createSqliteIdempotencyStore({ database: "x.db", now: 5 as never }),
    ];
    for (const attempt of attempts) {
      let thrown: unknown;
      try {
        attempt();
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(MappaWebhookError);
      expect((thrown as MappaWebhookError).code).toBe("invalid_options");
      expect((thrown as Error).message).toMatch(/^@mappa-webhooks\/sqlite: /);
    }
  });
});
