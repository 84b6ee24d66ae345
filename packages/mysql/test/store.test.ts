import {
  describeIdempotencyStoreContract,
  describeJobTrackingContract,
  describeRecoveryWithStore,
} from "@mappa-webhooks/conformance";
import { MappaWebhookError } from "@mappa-webhooks/core";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMysqlIdempotencyStore, createTransactionalHandlers, migrate } from "../src/index.js";
import { createPool, createTestDatabase, type TestDatabase } from "./helpers.js";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase("store");
});
afterAll(async () => {
  await db.drop();
});

let table = 0;
/** A fresh store on a table of its own, with replicas on pools of their own for the races. */
async function freshStore(now?: () => number) {
  const idempotencyTable = `idempotency_${++table}`;
  await db.pool.query(`CREATE TABLE \`${idempotencyTable}\` LIKE mappa_webhooks_idempotency`);
  const options = { idempotencyTable, ...(now === undefined ? {} : { now }) };
  const pools: mysql.Pool[] = [];
  return {
    store: createMysqlIdempotencyStore({ pool: db.pool, ...options }),
    async replicas(n: number) {
      return Array.from({ length: n }, () => {
        const pool = createPool(db.name, { connectionLimit: 1 });
        pools.push(pool);
        return createMysqlIdempotencyStore({ pool, ...options });
      });
    },
    async close() {
      await Promise.all(pools.map((pool) => pool.end()));
      await db.pool.query(`DROP TABLE \`${idempotencyTable}\``);
    },
  };
}

describeIdempotencyStoreContract("mysql (MariaDB), injected clock", async () => {
  let now = Date.now();
  return {
    ...(await freshStore(() => now)),
    advance: (ms) => {
      now += ms;
    },
  };
});

describeIdempotencyStoreContract("mysql (MariaDB), database clock", () => freshStore(), {
  clock: "real",
});

/** A tracked jobs table of its own, for one test of job tracking. */
async function freshTrackedJobs() {
  const trackedJobsTable = `tracked_jobs_${++table}`;
  await db.pool.query(`CREATE TABLE \`${trackedJobsTable}\` LIKE mappa_webhooks_tracked_jobs`);
  return {
    trackedJobsTable,
    async drop() {
      await db.pool.query(`DROP TABLE \`${trackedJobsTable}\``);
    },
  };
}

// Job tracking (createMappaRecovery): the shared contract, replicas on pools of their own.
describeJobTrackingContract("mysql (MariaDB)", async () => {
  const tracked = await freshTrackedJobs();
  const options = { trackedJobsTable: tracked.trackedJobsTable };
  const pools: mysql.Pool[] = [];
  return {
    store: createMysqlIdempotencyStore({ pool: db.pool, ...options }),
    async replicas(n) {
      return Array.from({ length: n }, () => {
        const pool = createPool(db.name, { connectionLimit: 1 });
        pools.push(pool);
        return createMysqlIdempotencyStore({ pool, ...options });
      });
    },
    async close() {
      await Promise.all(pools.map((pool) => pool.end()));
      await tracked.drop();
    },
  };
});

describeJobTrackingContract("mysql (MariaDB), injected clock", async () => {
  const tracked = await freshTrackedJobs();
  const now = Date.UTC(2026, 0, 17, 12, 5);
  return {
    store: createMysqlIdempotencyStore({
      pool: db.pool,
      trackedJobsTable: tracked.trackedJobsTable,
      now: () => now,
    }),
    now: () => now,
    close: tracked.drop,
  };
});

// createMappaRecovery takes the store of each receiver this package makes.
describeRecoveryWithStore("mysql (MariaDB), the idempotency store", async () => {
  const tracked = await freshTrackedJobs();
  const store = createMysqlIdempotencyStore({ pool: db.pool, ...tracked });
  return { options: { idempotency: store }, tracking: store, close: tracked.drop };
});

describeRecoveryWithStore("mysql (MariaDB), transactional handlers", async () => {
  const tracked = await freshTrackedJobs();
  const tables = { trackedJobsTable: tracked.trackedJobsTable };
  const { receiverOptions } = createTransactionalHandlers({
    pool: db.pool,
    ...tables,
    on: { "report.completed": async () => {} },
  });
  const tracking = createMysqlIdempotencyStore({ pool: db.pool, ...tables });
  return { options: receiverOptions, tracking, close: tracked.drop };
});

describe("createMysqlIdempotencyStore", () => {
  it("adds the tracked jobs table to a database migrated before job tracking", async () => {
    const old = await createTestDatabase("upgrade", { migrate: false });
    try {
      // Version 1: the two tables of then (today's first two statements), one completed key.
      await old.pool.query(
        "CREATE TABLE mappa_webhooks_idempotency (event_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, token CHAR(36) NOT NULL, completed TINYINT(1) NOT NULL DEFAULT 0, expires_at BIGINT NOT NULL, PRIMARY KEY (event_key), KEY expires_at (expires_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
      );
      const store = createMysqlIdempotencyStore({ pool: old.pool });
      const claim = await store.claim("evt_old", { leaseMs: 60_000 });
      if (claim.status !== "claimed") throw new Error("expected a claim");
      await store.complete("evt_old", claim.token, { ttlMs: 3_600_000 });
      await migrate({ pool: old.pool });
      expect(await store.claim("evt_old", { leaseMs: 1000 })).toEqual({ status: "completed" });
      await store.track("job_new", { trackedAt: 5 });
      expect(await store.tracked({ limit: 10 })).toEqual([{ jobId: "job_new", trackedAt: 5 }]);
    } finally {
      await old.drop();
    }
  });

  it("keeps job ids that differ only in case or a trailing space apart", async () => {
    const tracked = await freshTrackedJobs();
    try {
      const store = createMysqlIdempotencyStore({ pool: db.pool, ...tracked });
      for (const jobId of ["job_x", "job_X", "job_x "]) await store.track(jobId, { trackedAt: 1 });
      expect((await store.tracked({ limit: 10 })).map((job) => job.jobId).sort()).toEqual(
        ["job_X", "job_x", "job_x "].sort(),
      );
      await expect(store.track("é".repeat(600))).rejects.toMatchObject({
        code: "idempotency_store_failed",
      });
    } finally {
      await tracked.drop();
    }
  });

  it("expires a lease by the database's clock", async () => {
    const store = createMysqlIdempotencyStore({ pool: db.pool });
    expect((await store.claim("evt_db_clock", { leaseMs: 300 })).status).toBe("claimed");
    const [rows] = await db.pool.query(
      "SELECT expires_at - CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED) AS left_ms FROM mappa_webhooks_idempotency WHERE event_key = ?",
      ["evt_db_clock"],
    );
    expect(Number((rows as Array<{ left_ms: number }>)[0]?.left_ms)).toBeLessThanOrEqual(300);
    let status = "in_flight";
    for (let i = 0; i < 600 && status !== "claimed"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      status = (await store.claim("evt_db_clock", { leaseMs: 60_000 })).status;
    }
    expect(status).toBe("claimed");
  });

  it("keeps keys that differ only in case apart (binary collation)", async () => {
    const store = createMysqlIdempotencyStore({ pool: db.pool });
    expect((await store.claim("evt_Case", { leaseMs: 60_000 })).status).toBe("claimed");
    expect((await store.claim("evt_case", { leaseMs: 60_000 })).status).toBe("claimed");
  });

  it("answers 503 idempotency_store_failed when the database is unreachable", async () => {
    const dead = mysql.createPool({ uri: "mysql://root@127.0.0.1:1/test", connectionLimit: 1 });
    try {
      const store = createMysqlIdempotencyStore({ pool: dead });
      const error = await store.claim("evt_x", { leaseMs: 1000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(MappaWebhookError);
      expect((error as MappaWebhookError).code).toBe("idempotency_store_failed");
      expect((error as MappaWebhookError).status).toBe(503);
      expect((error as Error).message).toMatch(/^@mappa-webhooks\/mysql: /);
    } finally {
      await dead.end();
    }
  });

  it("names the fix when the tables are missing", async () => {
    const store = createMysqlIdempotencyStore({ pool: db.pool, idempotencyTable: "missing_table" });
    const error = await store.claim("evt_x", { leaseMs: 1000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as MappaWebhookError).code).toBe("idempotency_store_failed");
    expect((error as Error).message).toMatch(/migrate/);
  });

  it("rejects bad options with invalid_options", () => {
    const attempts: Array<() => unknown> = [
      () => createMysqlIdempotencyStore(undefined as never),
      () => createMysqlIdempotencyStore({ pool: {} as never }),
      () => createMysqlIdempotencyStore({ pool: db.pool, timeoutMs: 0 }),
      () => createMysqlIdempotencyStore({ pool: db.pool, idempotencyTable: "" }),
      () => createMysqlIdempotencyStore({ pool: db.pool, idempotencyTable: "x".repeat(65) }),
    ];
    for (const attempt of attempts) {
      let thrown: unknown;
      try {
        attempt();
      } catch (error) {
        thrown = error;
      }
      expect((thrown as MappaWebhookError).code).toBe("invalid_options");
    }
  });
});
