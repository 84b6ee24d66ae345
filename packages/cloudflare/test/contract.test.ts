// The shared store and tracking contracts, run in Node against the real Durable Object on
// workerd: Miniflare's getDurableObjectNamespace gives the test a real namespace binding, so
// every call goes through the object's fetch and its storage, as in a Worker.
import {
  describeIdempotencyStoreContract,
  describeJobTrackingContract,
  describeRecoveryWithStore,
} from "@mappa-webhooks/conformance";
import { MappaWebhookError } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createDurableObjectIdempotencyStore,
  type DurableObjectIdempotencyStoreOptions,
  type DurableObjectNamespaceLike,
} from "../src/index.js";
import { type RunningWorker, startWorker } from "./helpers.js";

let worker: RunningWorker;
let namespace: DurableObjectNamespaceLike;

beforeAll(async () => {
  worker = await startWorker();
  namespace = (await worker.mf.getDurableObjectNamespace(
    "MAPPA_IDEMPOTENCY",
  )) as unknown as DurableObjectNamespaceLike;
});

afterAll(async () => {
  await worker?.stop();
});

let instance = 0;
/** A store on an object instance of its own (a fresh name), with replicas on the same one. */
function freshStore(options: DurableObjectIdempotencyStoreOptions = {}) {
  const name = `contract-${++instance}-${Date.now()}`;
  // A generous answer deadline: workerd on a busy CI machine can stall for seconds, and these
  // checks are about what the object answers, not how fast.
  const make = () =>
    createDurableObjectIdempotencyStore(namespace, { timeoutMs: 30_000, ...options, name });
  return {
    store: make(),
    async replicas(n: number) {
      return Array.from({ length: n }, make);
    },
  };
}

// The object's clock is frozen far past this run's, so the alarm never sweeps a key the
// injected clock still holds.
describeIdempotencyStoreContract("Durable Object (workerd), injected clock", async () => {
  let now = Date.now() + 365 * 24 * 3600_000;
  return {
    ...freshStore({ now: () => now }),
    advance: (ms) => {
      now += ms;
    },
  };
});

describeIdempotencyStoreContract(
  "Durable Object (workerd), the object's clock",
  async () => freshStore(),
  {
    clock: "real",
    // Each renewal is a round trip through workerd; a lease of seconds survives a busy machine.
    realLeaseMs: 4000,
  },
);

describeJobTrackingContract("Durable Object (workerd)", async () => freshStore());

describeJobTrackingContract("Durable Object (workerd), injected clock", async () => {
  const now = Date.UTC(2026, 0, 17, 12, 5);
  return { ...freshStore({ now: () => now }), now: () => now };
});

describeRecoveryWithStore("Durable Object (workerd)", async () => {
  const { store } = freshStore();
  return { options: { idempotency: store }, tracking: store };
});

describe("createDurableObjectIdempotencyStore", () => {
  it("names the binding fix for something that is not a namespace", () => {
    for (const bad of [undefined, null, {}, "MAPPA_IDEMPOTENCY", { idFromName: () => 1 }]) {
      let caught: unknown;
      try {
        createDurableObjectIdempotencyStore(bad as never);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(MappaWebhookError);
      expect((caught as MappaWebhookError).code).toBe("invalid_options");
      expect((caught as Error).message).toContain("wrangler.toml [[durable_objects.bindings]]");
      expect((caught as Error).message).toContain("pass env.MAPPA_IDEMPOTENCY");
    }
  });

  it("rejects bad options at start-up", () => {
    for (const options of [{ name: "" }, { timeoutMs: 0 }, { timeoutMs: Number.NaN }, { now: 5 }]) {
      expect(() => createDurableObjectIdempotencyStore(namespace, options as never)).toThrow(
        expect.objectContaining({ code: "invalid_options" }),
      );
    }
  });

  it("defaults to the instance named mappa-webhooks", () => {
    expect(createDurableObjectIdempotencyStore(namespace).name).toBe("mappa-webhooks");
  });

  it("reports a stub that fails as idempotency_store_failed (503)", async () => {
    const broken: DurableObjectNamespaceLike = {
      idFromName: (name) => name,
      get: () => ({
        fetch: async () => {
          throw new Error("Durable Object reset because its code was updated.");
        },
      }),
    };
    const store = createDurableObjectIdempotencyStore(broken);
    await expect(store.claim("evt_1", { leaseMs: 1000 })).rejects.toMatchObject({
      code: "idempotency_store_failed",
      status: 503,
      message: expect.stringContaining("reset because its code was updated"),
    });
    await expect(store.tracked({ limit: 1 })).rejects.toMatchObject({
      code: "idempotency_store_failed",
    });
  });

  it("reports a binding to another class, and a call that never answers, as 503", async () => {
    const other: DurableObjectNamespaceLike = {
      idFromName: (name) => name,
      get: () => ({ fetch: async () => new Response("Not found", { status: 404 }) }),
    };
    await expect(
      createDurableObjectIdempotencyStore(other).claim("evt_1", { leaseMs: 1000 }),
    ).rejects.toMatchObject({
      code: "idempotency_store_failed",
      message: expect.stringContaining("class_name MappaIdempotencyObject"),
    });
    const silent: DurableObjectNamespaceLike = {
      idFromName: (name) => name,
      get: () => ({ fetch: () => new Promise<Response>(() => {}) }),
    };
    await expect(
      createDurableObjectIdempotencyStore(silent, { timeoutMs: 50 }).complete("evt_1", "t", {
        ttlMs: 1000,
      }),
    ).rejects.toMatchObject({
      code: "idempotency_store_failed",
      message: expect.stringContaining("within 50 ms"),
    });
  });

  it("refuses a key the object cannot store, before any call", async () => {
    const store = createDurableObjectIdempotencyStore(namespace, { name: `long-${Date.now()}` });
    await expect(store.claim("x".repeat(2001), { leaseMs: 1000 })).rejects.toMatchObject({
      code: "idempotency_store_failed",
    });
    await expect(store.track("")).rejects.toMatchObject({ code: "invalid_options" });
  });
});

describe("MappaIdempotencyObject's storage", () => {
  it("deletes expired claims and completed marks on its alarm, and keeps live ones", async () => {
    const name = `sweep-${Date.now()}`;
    const store = createDurableObjectIdempotencyStore(namespace, { name, timeoutMs: 30_000 });
    const size = async () => {
      const stub = namespace.get(namespace.idFromName(name) as never);
      const res = await stub.fetch("https://object/rpc", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ op: "size" }),
      });
      return (JSON.parse(await res.text()) as { result: number }).result;
    };
    const live = await store.claim("evt_live", { leaseMs: 10 * 60_000 });
    expect(live.status).toBe("claimed");
    for (let i = 0; i < 5; i++) {
      const claim = await store.claim(`evt_short_${i}`, { leaseMs: 200 });
      if (claim.status !== "claimed") throw new Error(claim.status);
      if (i % 2 === 0) await store.complete(`evt_short_${i}`, claim.token, { ttlMs: 300 });
    }
    // A renewal moves a claim's expiry: the sweep follows it.
    // Its first lease is long enough to renew on a busy machine; the check below waits it out.
    const renewedLeaseMs = 3000;
    const renewedAt = Date.now();
    const renewed = await store.claim("evt_renewed", { leaseMs: renewedLeaseMs });
    if (renewed.status !== "claimed") throw new Error(renewed.status);
    expect(await store.renew("evt_renewed", renewed.token, { leaseMs: 10 * 60_000 })).toBe(true);
    // 7 stored (fewer if the alarm already swept some: its time is the machine's, not the test's).
    expect(await size()).toBeLessThanOrEqual(7);
    // The alarm fires on the object's clock: a generous bound for a busy machine.
    const deadline = Date.now() + 30_000;
    let left = await size();
    while (left > 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      left = await size();
    }
    expect(left).toBe(2);
    // Past the renewed claim's first expiry, so only the renewal can have kept it.
    const pastFirstExpiry = renewedAt + renewedLeaseMs + 500 - Date.now();
    if (pastFirstExpiry > 0) await new Promise((resolve) => setTimeout(resolve, pastFirstExpiry));
    expect(await size()).toBe(2);
    expect(await store.claim("evt_live", { leaseMs: 1000 })).toEqual({ status: "in_flight" });
    expect(await store.claim("evt_renewed", { leaseMs: 1000 })).toEqual({ status: "in_flight" });
    expect((await store.claim("evt_short_0", { leaseMs: 1000 })).status).toBe("claimed");
  });
});
