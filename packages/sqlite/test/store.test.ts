import {
  describeIdempotencyStoreContract,
  describeJobTrackingContract,
  describeRecoveryWithStore,
} from "@mappa-webhooks/conformance";
import { MappaWebhookError } from "@mappa-webhooks/core";
import { afterAll, describe, expect, it } from "vitest";
import {
  createSqliteIdempotencyStore,
  createTransactionalHandlers,
  migrate,
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

// Job tracking (createMappaRecovery): the shared contract, replicas on connections of their own.
describeJobTrackingContract(`sqlite (${DRIVER})`, async () => freshStore());

describeJobTrackingContract(`sqlite (${DRIVER}), injected clock`, async () => {
  const now = Date.UTC(2026, 0, 17, 12, 5);
  return { ...freshStore(() => now), now: () => now };
});

// createMappaRecovery takes the store of each receiver this package makes.
describeRecoveryWithStore(`sqlite (${DRIVER}), the idempotency store`, async () => {
  const { store, close } = freshStore();
  return { options: { idempotency: store }, tracking: store, close };
});

describeRecoveryWithStore(`sqlite (${DRIVER}), transactional handlers`, async () => {
  const database = tempFile("recovery-tx");
  const tx = createTransactionalHandlers({
    database,
    driver: DRIVER,
    on: { "report.completed": () => {} },
  });
  const tracking = createSqliteIdempotencyStore({ database, driver: DRIVER });
  return {
    options: tx.receiverOptions,
    tracking,
    async close() {
      await tx.close();
      await tracking.close();
    },
  };
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

  it("adds the tracked jobs table to a file made before job tracking, keeping its rows", async () => {
    const database = tempFile("upgrade");
    // A version 1 file: the two tables of then, one completed key.
    const old = await openSqliteDatabase(database, { driver: DRIVER });
    old.exec(`CREATE TABLE mappa_webhooks_idempotency (
      key TEXT PRIMARY KEY NOT NULL, token TEXT NOT NULL,
      completed INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL)`);
    old.run("INSERT INTO mappa_webhooks_idempotency VALUES (?, ?, 1, ?)", [
      "evt_old",
      "t",
      Date.now() + 3_600_000,
    ]);
    old.close();
    await migrate({ database, driver: DRIVER });
    const store = createSqliteIdempotencyStore({ database, driver: DRIVER, migrate: false });
    expect(await store.claim("evt_old", { leaseMs: 1000 })).toEqual({ status: "completed" });
    await store.track("job_new", { trackedAt: 5 });
    expect(await store.tracked({ limit: 10 })).toEqual([{ jobId: "job_new", trackedAt: 5 }]);
    await store.close();
  });

  it("tracks jobs of transactional handlers outside any open event transaction", async () => {
    const database = tempFile("tx-tracking");
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tx = createTransactionalHandlers({
      database,
      driver: DRIVER,
      on: { "report.completed": () => gate },
    });
    const { idempotency } = tx.receiverOptions;
    // An event's transaction is open (claimed, handler not run yet) ...
    const claim = await idempotency.claim("evt_open", { leaseMs: 60_000 });
    expect(claim.status).toBe("claimed");
    // ... a track waits for its turn instead of joining it, so a rollback cannot undo it.
    const tracking = idempotency.track("job_outside", { trackedAt: 7 });
    if (claim.status === "claimed") await idempotency.release("evt_open", claim.token);
    await tracking;
    release();
    expect(await idempotency.tracked({ limit: 10 })).toEqual([
      { jobId: "job_outside", trackedAt: 7 },
    ]);
    await tx.close();
  });
});
