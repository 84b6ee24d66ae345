import {
  describeIdempotencyStoreContract,
  describeJobTrackingContract,
  describeRecoveryWithStore,
} from "@mappa-webhooks/conformance";
import { DEFAULT_COMPLETED_TTL_MS, MappaWebhookError } from "@mappa-webhooks/core";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createInbox,
  createPostgresIdempotencyStore,
  createTransactionalHandlers,
} from "../src/index.js";
import { createPool, createTestDatabase, SECRET, sleep, type TestDatabase } from "./helpers.js";
import { startReceiver } from "./receivers.js";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("store");
});

afterAll(async () => {
  await db.drop();
});

let table = 0;
/**
 * A fresh store on a table of its own (same schema), on the injected clock `now` (or the
 * database's clock when it is undefined), with replicas on pools of their own for the races.
 */
async function freshStore(now?: () => number) {
  const idempotencyTable = `idempotency_${++table}`;
  await db.pool.query(
    `CREATE TABLE "${db.schema}"."${idempotencyTable}" (LIKE "${db.schema}"."idempotency" INCLUDING ALL)`,
  );
  const options = { schema: db.schema, idempotencyTable, ...(now === undefined ? {} : { now }) };
  const pools: pg.Pool[] = [];
  return {
    store: createPostgresIdempotencyStore({ pool: db.pool, ...options }),
    async replicas(n: number) {
      // Separate pools: every claim races on its own connection.
      return Array.from({ length: n }, () => {
        const pool = createPool({ max: 1 });
        pools.push(pool);
        return createPostgresIdempotencyStore({ pool, ...options });
      });
    },
    async close() {
      await Promise.all(pools.map((pool) => pool.end()));
      await db.pool.query(`DROP TABLE "${db.schema}"."${idempotencyTable}"`);
    },
  };
}

/** A tracked jobs table of its own (same schema), for one test of job tracking. */
async function freshTrackedJobs(): Promise<{ trackedJobsTable: string; drop(): Promise<void> }> {
  const trackedJobsTable = `tracked_jobs_${++table}`;
  await db.pool.query(
    `CREATE TABLE "${db.schema}"."${trackedJobsTable}" (LIKE "${db.schema}"."tracked_jobs" INCLUDING ALL)`,
  );
  return {
    trackedJobsTable,
    drop: async () => {
      await db.pool.query(`DROP TABLE "${db.schema}"."${trackedJobsTable}"`);
    },
  };
}

// Job tracking (createMappaRecovery): the shared contract, replicas on pools of their own.
describeJobTrackingContract("postgres", async () => {
  const tracked = await freshTrackedJobs();
  const options = { schema: db.schema, trackedJobsTable: tracked.trackedJobsTable };
  const pools: pg.Pool[] = [];
  return {
    store: createPostgresIdempotencyStore({ pool: db.pool, ...options }),
    async replicas(n) {
      return Array.from({ length: n }, () => {
        const pool = createPool({ max: 1 });
        pools.push(pool);
        return createPostgresIdempotencyStore({ pool, ...options });
      });
    },
    async close() {
      await Promise.all(pools.map((pool) => pool.end()));
      await tracked.drop();
    },
  };
});

describeJobTrackingContract("postgres, injected clock", async () => {
  const tracked = await freshTrackedJobs();
  const now = Date.UTC(2026, 0, 17, 12, 5);
  return {
    store: createPostgresIdempotencyStore({
      pool: db.pool,
      schema: db.schema,
      trackedJobsTable: tracked.trackedJobsTable,
      now: () => now,
    }),
    now: () => now,
    close: tracked.drop,
  };
});

// createMappaRecovery takes the store of each receiver this package makes.
describeRecoveryWithStore("postgres, the idempotency store", async () => {
  const tracked = await freshTrackedJobs();
  const store = createPostgresIdempotencyStore({ pool: db.pool, schema: db.schema, ...tracked });
  return { options: { idempotency: store }, tracking: store, close: tracked.drop };
});

describeRecoveryWithStore("postgres, transactional handlers", async () => {
  const tracked = await freshTrackedJobs();
  const tables = { schema: db.schema, trackedJobsTable: tracked.trackedJobsTable };
  const { receiverOptions } = createTransactionalHandlers({
    pool: db.pool,
    ...tables,
    on: { "report.completed": async () => {} },
  });
  const tracking = createPostgresIdempotencyStore({ pool: db.pool, ...tables });
  return { options: receiverOptions, tracking, close: tracked.drop };
});

describeRecoveryWithStore("postgres, the inbox", async () => {
  const tracked = await freshTrackedJobs();
  const tables = { schema: db.schema, trackedJobsTable: tracked.trackedJobsTable };
  const { receiverOptions } = createInbox({ pool: db.pool, ...tables });
  const tracking = createPostgresIdempotencyStore({ pool: db.pool, ...tables });
  return { options: receiverOptions, tracking, close: tracked.drop };
});

// The shared contract (packages/conformance), on a clock the tests move: exact boundaries.
describeIdempotencyStoreContract("postgres, injected clock", async () => {
  let now = Date.now();
  return {
    ...(await freshStore(() => now)),
    advance: (ms) => {
      now += ms;
    },
  };
});

// The same contract on the database's own clock (clock_timestamp()), as deployed.
describeIdempotencyStoreContract("postgres, database clock", () => freshStore(), {
  clock: "real",
});

describe("createPostgresIdempotencyStore on the database's clock", () => {
  it("expires a lease by the database's time", async () => {
    const store = createPostgresIdempotencyStore({ pool: db.pool, schema: db.schema });
    const crashed = await store.claim("evt_db_clock", { leaseMs: 300 });
    expect(crashed.status).toBe("claimed");
    const row = await db.pool.query(
      `SELECT extract(epoch FROM expires_at - clock_timestamp()) * 1000 AS left_ms
         FROM "${db.schema}".idempotency WHERE key = $1`,
      ["evt_db_clock"],
    );
    // The expiry lies at most one lease ahead of the database's clock.
    expect(Number(row.rows[0].left_ms)).toBeLessThanOrEqual(300);
    await sleep(600);
    const retry = await store.claim("evt_db_clock", { leaseMs: 60_000 });
    expect(retry.status).toBe("claimed");
  });

  it("keeps a handled event for the core's default TTL, past Mappa's retry window", async () => {
    const store = createPostgresIdempotencyStore({ pool: db.pool, schema: db.schema });
    const handled: string[] = [];
    const receiver = await startReceiver("express", {
      secret: SECRET,
      idempotency: store,
      on: { "report.completed": (event) => void handled.push(event.idempotencyKey) },
    });
    try {
      const body = JSON.stringify(createTestEvent("report.completed"));
      const send = async () => {
        const signature = await signPayload({ payload: body, secret: SECRET });
        const response = await fetch(receiver.url, {
          method: "POST",
          body,
          headers: { "content-type": "application/json", "mappa-signature": signature },
        });
        return { status: response.status, body: await response.json() };
      };
      expect(await send()).toEqual({ status: 200, body: { received: true } });
      expect(await send()).toEqual({ status: 200, body: { received: true, duplicate: true } });
      expect(handled).toHaveLength(1);
      const row = await db.pool.query(
        `SELECT completed, extract(epoch FROM expires_at - clock_timestamp()) * 1000 AS left_ms
           FROM "${db.schema}".idempotency WHERE key = $1`,
        [handled[0]],
      );
      expect(row.rows[0].completed).toBe(true);
      expect(Number(row.rows[0].left_ms)).toBeGreaterThan(DEFAULT_COMPLETED_TTL_MS - 60_000);
      expect(Number(row.rows[0].left_ms)).toBeLessThanOrEqual(DEFAULT_COMPLETED_TTL_MS);
    } finally {
      await receiver.close();
    }
  });

  it("answers 503 idempotency_store_failed when the database is unreachable", async () => {
    const { Pool } = (await import("pg")).default;
    const dead = new Pool({ connectionString: "postgres://postgres@127.0.0.1:1/test", max: 1 });
    dead.on("error", () => {});
    try {
      const store = createPostgresIdempotencyStore({ pool: dead, timeoutMs: 5000 });
      await expect(store.claim("evt_x", { leaseMs: 1000 })).rejects.toMatchObject({
        code: "idempotency_store_failed",
        status: 503,
      });
    } finally {
      await dead.end();
    }
  });

  it("names the fix when the tables are missing", async () => {
    const store = createPostgresIdempotencyStore({ pool: db.pool, schema: `${db.schema}_none` });
    const error = await store.claim("evt_x", { leaseMs: 1000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MappaWebhookError);
    expect((error as MappaWebhookError).code).toBe("idempotency_store_failed");
    expect((error as Error).message).toMatch(/migrate/);
  });

  it("rejects bad options with invalid_options", () => {
    const attempts: Array<() => unknown> = [
      () => createPostgresIdempotencyStore(undefined as never),
      () => createPostgresIdempotencyStore({ pool: {} as never }),
      () => createPostgresIdempotencyStore({ pool: db.pool, timeoutMs: 0 }),
      () => createPostgresIdempotencyStore({ pool: db.pool, schema: "" }),
      () => createPostgresIdempotencyStore({ pool: db.pool, idempotencyTable: "x".repeat(64) }),
    ];
    for (const attempt of attempts) {
      expect(attempt).toThrow(MappaWebhookError);
      try {
        attempt();
      } catch (error) {
        expect((error as MappaWebhookError).code).toBe("invalid_options");
      }
    }
  });
});
