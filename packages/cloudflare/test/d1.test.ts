// The shared store and tracking contracts, run in Node against the D1 store on a real D1
// database in workerd: each statement and batch the store makes is sent to the test Worker,
// which runs it on its D1 binding as sent (a batch as one batch), in D1's own SQLite.
import {
  describeIdempotencyStoreContract,
  describeJobTrackingContract,
  describeRecoveryWithStore,
} from "@mappa-webhooks/conformance";
import { MappaWebhookError } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createD1IdempotencyStore,
  type D1DatabaseLike,
  type D1IdempotencyStoreOptions,
} from "../src/index.js";
import { d1Over, type RunningWorker, startWorker } from "./helpers.js";

let worker: RunningWorker;
let database: D1DatabaseLike;

beforeAll(async () => {
  worker = await startWorker();
  database = d1Over(worker.url);
});

afterAll(async () => {
  await worker?.stop();
});

let instance = 0;
/** A store on tables of its own (a fresh prefix), with replicas on the same tables. */
function freshStore(options: Omit<D1IdempotencyStoreOptions, "database"> = {}) {
  const table = `contract_${++instance}_${Date.now()}`;
  const make = () => createD1IdempotencyStore({ ...options, database, table });
  return {
    store: make(),
    async replicas(n: number) {
      return Array.from({ length: n }, make);
    },
  };
}

describeIdempotencyStoreContract("D1 (workerd), injected clock", async () => {
  let now = Date.now();
  return {
    ...freshStore({ now: () => now }),
    advance: (ms) => {
      now += ms;
    },
  };
});

describeIdempotencyStoreContract("D1 (workerd), the database's clock", async () => freshStore(), {
  clock: "real",
});

describeJobTrackingContract("D1 (workerd)", async () => freshStore());

describeJobTrackingContract("D1 (workerd), injected clock", async () => {
  const now = Date.UTC(2026, 0, 17, 12, 5);
  return { ...freshStore({ now: () => now }), now: () => now };
});

describeRecoveryWithStore("D1 (workerd)", async () => {
  const { store } = freshStore();
  return { options: { idempotency: store }, tracking: store };
});

describe("createD1IdempotencyStore", () => {
  it("names the binding fix for something that is not a D1 database", () => {
    for (const bad of [undefined, null, {}, "DB", { prepare: () => 1 }]) {
      let caught: unknown;
      try {
        createD1IdempotencyStore({ database: bad as never });
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(MappaWebhookError);
      expect((caught as MappaWebhookError).code).toBe("invalid_options");
      expect((caught as Error).message).toContain("wrangler.toml [[d1_databases]]");
      expect((caught as Error).message).toContain("{ database: env.DB }");
    }
  });

  it("rejects bad options at start-up", () => {
    for (const options of [{ table: "" }, { table: "drop table;" }, { table: "1x" }, { now: 5 }]) {
      expect(() => createD1IdempotencyStore({ database, ...options } as never)).toThrow(
        expect.objectContaining({ code: "invalid_options" }),
      );
    }
    expect(() => createD1IdempotencyStore(undefined as never)).toThrow(
      expect.objectContaining({ code: "invalid_options" }),
    );
  });

  it("creates its tables on first use, under the default prefix", async () => {
    const store = createD1IdempotencyStore({ database });
    expect(store.table).toBe("mappa_webhooks");
    expect((await store.claim(`evt_default_${Date.now()}`, { leaseMs: 1000 })).status).toBe(
      "claimed",
    );
    const { results } = await database
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'mappa_webhooks_%' ORDER BY name",
      )
      .all<{ name: string }>();
    expect(results.map((row) => row.name)).toEqual([
      "mappa_webhooks_events",
      "mappa_webhooks_jobs",
    ]);
  });

  it("reports a database that fails as idempotency_store_failed (503), and tries again", async () => {
    let fail = true;
    const flaky: D1DatabaseLike = {
      prepare: (query) => database.prepare(query),
      batch: (statements) => {
        if (fail) return Promise.reject(new Error("D1_ERROR: Network connection lost."));
        return database.batch(statements);
      },
    };
    const store = createD1IdempotencyStore({ database: flaky, table: `flaky_${Date.now()}` });
    await expect(store.claim("evt_1", { leaseMs: 1000 })).rejects.toMatchObject({
      code: "idempotency_store_failed",
      status: 503,
      message: expect.stringContaining("Network connection lost"),
    });
    fail = false;
    expect((await store.claim("evt_1", { leaseMs: 1000 })).status).toBe("claimed");
  });

  it("refuses a key it does not store, before any statement", async () => {
    const store = createD1IdempotencyStore({ database, table: `long_${Date.now()}` });
    await expect(store.claim("x".repeat(2001), { leaseMs: 1000 })).rejects.toMatchObject({
      code: "idempotency_store_failed",
    });
    await expect(store.track("")).rejects.toMatchObject({ code: "invalid_options" });
  });

  it("deletes expired keys as claims go, and on sweep(), and keeps live ones", async () => {
    let now = 1_000_000;
    const table = `sweep_${Date.now()}`;
    const store = createD1IdempotencyStore({ database, table, now: () => now });
    const count = async () =>
      Number(
        (await database.prepare(`SELECT count(*) AS n FROM ${table}_events`).all<{ n: number }>())
          .results[0]?.n,
      );
    for (let i = 0; i < 30; i++) {
      const claim = await store.claim(`evt_${i}`, { leaseMs: 1000 });
      if (claim.status !== "claimed") throw new Error(claim.status);
      if (i % 2 === 0) await store.complete(`evt_${i}`, claim.token, { ttlMs: 2000 });
    }
    const live = await store.claim("evt_live", { leaseMs: 60_000 });
    expect(live.status).toBe("claimed");
    expect(await count()).toBe(31);
    now += 5000;
    // One claim deletes a few expired keys (8) besides taking its own.
    expect((await store.claim("evt_new", { leaseMs: 1000 })).status).toBe("claimed");
    expect(await count()).toBe(31 - 8 + 1);
    expect(await store.sweep({ limit: 500 })).toBe(22);
    expect(await count()).toBe(2);
    expect(await store.claim("evt_live", { leaseMs: 1000 })).toEqual({ status: "in_flight" });
    expect((await store.claim("evt_0", { leaseMs: 1000 })).status).toBe("claimed");
  });
});
