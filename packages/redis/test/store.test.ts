import {
  describeIdempotencyStoreContract,
  describeJobTrackingContract,
  describeRecoveryWithStore,
} from "@mappa-webhooks/conformance";
import { DEFAULT_COMPLETED_TTL_MS, MappaWebhookError } from "@mappa-webhooks/core";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import type { Redis } from "ioredis";
import ioredisPackage from "ioredis/package.json" with { type: "json" };
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisIdempotencyStore, type RedisScriptRunner } from "../src/index.js";
import { CLAIM_SCRIPT } from "../src/scripts.js";
import {
  connect,
  deleteKeys,
  SECRET,
  startNodeReceiver,
  uniquePrefix,
  waitFor,
} from "./helpers.js";

const prefix = uniquePrefix("store");
let redis: Redis;

beforeAll(async () => {
  redis = connect();
  await redis.ping();
});

afterAll(async () => {
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

const LEASE = { leaseMs: 10_000 };

/** A store under `keys`, its replicas on separate connections (every claim races on its own). */
function storeWithReplicas(keys: string) {
  const clients: Redis[] = [];
  return {
    store: createRedisIdempotencyStore({ client: redis, prefix: keys }),
    async replicas(n: number) {
      const replicas = Array.from({ length: n }, () => connect());
      clients.push(...replicas);
      await Promise.all(replicas.map((client) => client.ping()));
      return replicas.map((client) => createRedisIdempotencyStore({ client, prefix: keys }));
    },
    async close() {
      for (const client of clients) client.disconnect();
      await deleteKeys(redis, keys);
    },
  };
}

// The shared contract (packages/conformance). Leases and TTLs expire on Redis's clock (PX), so
// it runs in real time: short leases, polling, bounds a busy machine can only make later. It
// covers claim/in_flight/completed, the race (20 separate connections, as Redis's own test did),
// lease expiry and take-over, release, owner-only release, complete after the lease, and TTL
// expiry; the tests below keep only what is Redis's: keys, PX values, the stored values.
let contractRun = 0;
describeIdempotencyStoreContract(
  "redis",
  async () => storeWithReplicas(`${prefix}:contract:${++contractRun}`),
  { clock: "real", concurrency: 20 },
);

// Job tracking (createMappaRecovery): the shared contract, replicas on their own connections.
let trackingRun = 0;
describeJobTrackingContract("redis", async () =>
  storeWithReplicas(`${prefix}:tracking:${++trackingRun}`),
);

describeRecoveryWithStore("redis", async () => {
  const keys = `${prefix}:recovery:${++trackingRun}`;
  const store = createRedisIdempotencyStore({ client: redis, prefix: keys });
  return {
    options: { idempotency: store },
    tracking: store,
    async close() {
      await deleteKeys(redis, keys);
    },
  };
});

describe("createRedisIdempotencyStore", () => {
  it("keeps the tracked jobs under the prefix, in one Cluster slot", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix: `${prefix}:slots` });
    expect(store.trackingKeys).toEqual({
      ids: `${prefix}:slots:{~tracked-jobs}:ids`,
      trackedAt: `${prefix}:slots:{~tracked-jobs}:at`,
    });
    await store.track("job_slot", { trackedAt: 42 });
    expect(await redis.zrange(store.trackingKeys.ids, "0", "-1")).toEqual(["job_slot"]);
    expect(await redis.hget(store.trackingKeys.trackedAt, "job_slot")).toBe("42");
    await expect(store.tracked({ limit: 0 })).rejects.toMatchObject({ code: "invalid_options" });
    await store.untrack("job_slot");
    expect(await redis.exists(store.trackingKeys.ids, store.trackingKeys.trackedAt)).toBe(0);
  });

  it("runs on the ioredis major this project names", () => {
    const expected = process.env.EXPECTED_IOREDIS_MAJOR;
    if (expected === undefined) throw new Error("run through vitest.config.ts (a named project)");
    expect(ioredisPackage.version.split(".")[0]).toBe(expected);
    console.log(`[store] ioredis ${ioredisPackage.version}`);
  });

  it("hash-tags every key on the event key, under the prefix", () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix });
    expect(store.keyFor("evt_1")).toBe(`${prefix}:{evt_1}`);
    expect(createRedisIdempotencyStore({ client: redis }).keyFor("evt_1")).toBe(
      "mappa-webhooks:{evt_1}",
    );
  });

  it("sets the claim's PX to its lease and a completed key's PX to its TTL", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix });
    const key = store.keyFor("evt_px");
    const claim = await store.claim("evt_px", { leaseMs: 2000 });
    if (claim.status !== "claimed") throw new Error("expected a claim");
    const leasePttl = await redis.pttl(key);
    expect(leasePttl).toBeGreaterThan(0);
    expect(leasePttl).toBeLessThanOrEqual(2000);
    await store.complete("evt_px", claim.token, { ttlMs: 3000 });
    expect(await redis.get(key)).toBe(`d:${claim.token}`);
    const ttlPttl = await redis.pttl(key);
    expect(ttlPttl).toBeGreaterThan(0);
    expect(ttlPttl).toBeLessThanOrEqual(3000);
  });

  it("deletes the key on release, and never creates one for a key nobody claimed", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix });
    const failed = await store.claim("evt_release", LEASE);
    if (failed.status !== "claimed") throw new Error("expected a claim");
    await store.release("evt_release", failed.token);
    expect(await redis.exists(store.keyFor("evt_release"))).toBe(0);
    await store.release("evt_never_claimed", "token");
    expect(await redis.exists(store.keyFor("evt_never_claimed"))).toBe(0);
  });

  it("keeps a handled event for the core's default TTL, past Mappa's retry window", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix });
    const handled: string[] = [];
    const receiver = await startNodeReceiver({
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
      const pttl = await redis.pttl(store.keyFor(handled[0] as string));
      expect(pttl).toBeGreaterThan(DEFAULT_COMPLETED_TTL_MS - 60_000);
      expect(pttl).toBeLessThanOrEqual(DEFAULT_COMPLETED_TTL_MS);
      expect(DEFAULT_COMPLETED_TTL_MS).toBeGreaterThan(36 * 60 * 1000);
    } finally {
      await receiver.close();
    }
  });

  it("loads its scripts when Redis does not know them (NOSCRIPT, e.g. after a restart)", async () => {
    // A real NOSCRIPT from Redis: the wrapper asks for a hash no script has.
    const forgetful = {
      status: "ready",
      evalsha: (_sha: string, numKeys: number, ...rest: string[]) =>
        redis.evalsha("0".repeat(40), numKeys, ...rest),
      eval: (source: string, numKeys: number, ...rest: string[]) =>
        redis.eval(source, numKeys, ...rest),
    };
    const store = createRedisIdempotencyStore({ client: forgetful, prefix });
    expect((await store.claim("evt_noscript", LEASE)).status).toBe("claimed");
    expect((await store.claim("evt_noscript", LEASE)).status).toBe("in_flight");
  });

  it("claims once even when the claim reaches Redis twice (a reconnecting client sends it again)", async () => {
    // ioredis resends commands that were not answered when the connection dropped; the first
    // copy may have run. Each script here runs twice and only the second answer is returned.
    const twice: RedisScriptRunner = {
      runScript: async (script, keys, args) => {
        await redis.eval(script.source, keys.length, ...keys, ...args);
        return redis.eval(script.source, keys.length, ...keys, ...args);
      },
    };
    const store = createRedisIdempotencyStore({ client: twice, prefix: `${prefix}:twice` });
    const claim = await store.claim("evt_twice", LEASE);
    expect(claim.status).toBe("claimed");
    expect(await store.claim("evt_twice", LEASE)).toEqual({ status: "in_flight" });
    if (claim.status !== "claimed") return;
    await store.complete("evt_twice", claim.token, { ttlMs: 10_000 });
    expect(await store.claim("evt_twice", LEASE)).toEqual({ status: "completed" });
  });

  it("works with any client through a runScript adapter", async () => {
    const runner: RedisScriptRunner = {
      runScript: (script, keys, args) => redis.eval(script.source, keys.length, ...keys, ...args),
    };
    const store = createRedisIdempotencyStore({ client: runner, prefix });
    const claim = await store.claim("evt_runner", LEASE);
    if (claim.status !== "claimed") throw new Error("expected a claim");
    await store.complete("evt_runner", claim.token, { ttlMs: 60_000 });
    expect(await store.claim("evt_runner", LEASE)).toEqual({ status: "completed" });
    expect(CLAIM_SCRIPT.sha1).toBe(await redis.script("LOAD", CLAIM_SCRIPT.source));
  });

  it("rejects bad options with invalid_options", () => {
    const attempts: Array<() => unknown> = [
      () => createRedisIdempotencyStore(undefined as never),
      () => createRedisIdempotencyStore({ client: {} as never }),
      () => createRedisIdempotencyStore({ client: redis, prefix: "{all}" }),
      () => createRedisIdempotencyStore({ client: redis, prefix: "" }),
      () => createRedisIdempotencyStore({ client: redis, timeoutMs: 0 }),
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

describe("renew", () => {
  it("extends a live claim to leaseMs from now, keeping its owner", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix });
    const key = store.keyFor("evt_renew");
    const claim = await store.claim("evt_renew", { leaseMs: 5000 });
    if (claim.status !== "claimed") throw new Error("expected a claim");
    expect(await redis.pttl(key)).toBeLessThanOrEqual(5000);
    expect(await store.renew("evt_renew", claim.token, { leaseMs: 120_000 })).toBe(true);
    // Past the first lease: the renewal set a new expiry, it did not add to the old one.
    const pttl = await redis.pttl(key);
    expect(pttl).toBeGreaterThan(5000);
    expect(pttl).toBeLessThanOrEqual(120_000);
    expect(await redis.get(key)).toBe(`c:${claim.token}`);
    expect(await store.claim("evt_renew", LEASE)).toEqual({ status: "in_flight" });
    // The owner still completes (or releases) it as usual.
    await store.complete("evt_renew", claim.token, { ttlMs: 60_000 });
    expect(await store.claim("evt_renew", LEASE)).toEqual({ status: "completed" });
  });

  it("returns false for anyone but the owner, and changes nothing", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix });
    const key = store.keyFor("evt_renew_other");
    const claim = await store.claim("evt_renew_other", LEASE);
    if (claim.status !== "claimed") throw new Error("expected a claim");
    expect(await store.renew("evt_renew_other", "not-the-owner", { leaseMs: 120_000 })).toBe(false);
    expect(await redis.pttl(key)).toBeLessThanOrEqual(LEASE.leaseMs);
    expect(await redis.get(key)).toBe(`c:${claim.token}`);
  });

  it("returns false after completion, leaving the completed key and its TTL as they were", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix });
    const key = store.keyFor("evt_renew_done");
    const claim = await store.claim("evt_renew_done", LEASE);
    if (claim.status !== "claimed") throw new Error("expected a claim");
    await store.complete("evt_renew_done", claim.token, { ttlMs: 30_000 });
    expect(await store.renew("evt_renew_done", claim.token, { leaseMs: 120_000 })).toBe(false);
    expect(await redis.get(key)).toBe(`d:${claim.token}`);
    expect(await redis.pttl(key)).toBeLessThanOrEqual(30_000);
    expect(await store.claim("evt_renew_done", LEASE)).toEqual({ status: "completed" });
  });

  it("returns false after a release, without bringing the claim back", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix });
    const claim = await store.claim("evt_renew_released", LEASE);
    if (claim.status !== "claimed") throw new Error("expected a claim");
    await store.release("evt_renew_released", claim.token);
    expect(await store.renew("evt_renew_released", claim.token, LEASE)).toBe(false);
    expect(await redis.exists(store.keyFor("evt_renew_released"))).toBe(0);
  });

  it("returns false once the lease expired, and after another delivery reclaimed the event", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix });
    const key = store.keyFor("evt_renew_late");
    const stalled = await store.claim("evt_renew_late", { leaseMs: 200 });
    if (stalled.status !== "claimed") throw new Error("expected a claim");
    await waitFor(async () => (await redis.exists(key)) === 0, 20_000, 50);
    // Expired: a late renewal does not resurrect the claim.
    expect(await store.renew("evt_renew_late", stalled.token, LEASE)).toBe(false);
    expect(await redis.exists(key)).toBe(0);
    // Reclaimed by a retry: the stalled delivery's renewal leaves the new claim alone.
    const retry = await store.claim("evt_renew_late", LEASE);
    if (retry.status !== "claimed") throw new Error("expected the retry to claim");
    expect(await store.renew("evt_renew_late", stalled.token, { leaseMs: 120_000 })).toBe(false);
    expect(await redis.get(key)).toBe(`c:${retry.token}`);
    expect(await redis.pttl(key)).toBeLessThanOrEqual(LEASE.leaseMs);
    expect(await store.renew("evt_renew_late", retry.token, { leaseMs: 120_000 })).toBe(true);
  });

  it("works through a runScript adapter too", async () => {
    const runner: RedisScriptRunner = {
      runScript: (script, keys, args) => redis.eval(script.source, keys.length, ...keys, ...args),
    };
    const store = createRedisIdempotencyStore({ client: runner, prefix });
    const claim = await store.claim("evt_renew_runner", LEASE);
    if (claim.status !== "claimed") throw new Error("expected a claim");
    expect(await store.renew("evt_renew_runner", claim.token, { leaseMs: 120_000 })).toBe(true);
    expect(await store.renew("evt_renew_runner", "someone-else", LEASE)).toBe(false);
    expect(await redis.pttl(store.keyFor("evt_renew_runner"))).toBeGreaterThan(LEASE.leaseMs);
  });

  it("fails with idempotency_store_failed when Redis cannot run it", async () => {
    const store = createRedisIdempotencyStore({
      client: { runScript: () => Promise.reject(new Error("READONLY replica")) },
    });
    await expect(store.renew("evt_x", "t", LEASE)).rejects.toMatchObject({
      code: "idempotency_store_failed",
      status: 503,
      message: expect.stringContaining("the renew of event evt_x failed: READONLY replica"),
    });
  });
});

describe("a runScript adapter that fails", () => {
  it("turns a synchronous throw or a rejection into idempotency_store_failed", async () => {
    const throwing = createRedisIdempotencyStore({
      client: {
        runScript: () => {
          throw new Error("socket closed");
        },
      },
    });
    await expect(throwing.claim("evt_x", LEASE)).rejects.toMatchObject({
      code: "idempotency_store_failed",
      message: expect.stringContaining("socket closed"),
    });
    const rejecting = createRedisIdempotencyStore({
      client: { runScript: () => Promise.reject(new Error("READONLY replica")) },
    });
    await expect(rejecting.release("evt_x", "t")).rejects.toMatchObject({
      code: "idempotency_store_failed",
      status: 503,
    });
  });
});

// The receiver completes a delivery and untracks its job in the same tick; on one Redis server
// the store sends both as one script (one write, one answer). On Cluster they stay two scripts.
describe("complete and untrack in one script", () => {
  /** A client that records the script of each call (by hash or source), then runs it on Redis. */
  function recordingClient() {
    const scripts: string[] = [];
    let failNext: Error | undefined;
    const client = {
      status: "ready",
      evalsha: (sha: string, numKeys: number, ...rest: string[]) => {
        scripts.push(sha);
        if (failNext !== undefined) {
          const error = failNext;
          failNext = undefined;
          return Promise.reject(error);
        }
        return redis.evalsha(sha, numKeys, ...rest);
      },
      eval: (source: string, numKeys: number, ...rest: string[]) =>
        redis.eval(source, numKeys, ...rest),
    };
    const failWith = (error: Error) => {
      failNext = error;
    };
    return { client, scripts, failNext: failWith };
  }

  it("sends one script for a complete and an untrack asked for in the same tick", async () => {
    const recorded = recordingClient();
    const keys = `${prefix}:paired`;
    const store = createRedisIdempotencyStore({ client: recorded.client, prefix: keys });
    await store.track("job_paired");
    await store.track("job_other");
    const claim = await store.claim("evt_paired", LEASE);
    if (claim.status !== "claimed") throw new Error("expected a claim");
    const before = recorded.scripts.length;
    await Promise.all([
      store.complete("evt_paired", claim.token, { ttlMs: 60_000 }),
      store.untrack("job_paired"),
    ]);
    expect(recorded.scripts.length - before).toBe(1);
    expect(await redis.get(store.keyFor("evt_paired"))).toBe(`d:${claim.token}`);
    expect(await redis.pttl(store.keyFor("evt_paired"))).toBeGreaterThan(50_000);
    expect(await store.tracked({ limit: 10 })).toEqual([
      { jobId: "job_other", trackedAt: expect.any(Number) },
    ]);
    // Alone, each is its own script, as before.
    const alone = recorded.scripts.length;
    await store.untrack("job_other");
    const second = await store.claim("evt_alone", LEASE);
    if (second.status !== "claimed") throw new Error("expected a claim");
    await store.complete("evt_alone", second.token, { ttlMs: 60_000 });
    expect(recorded.scripts.length - alone).toBe(3);
    expect(await store.tracked({ limit: 10 })).toEqual([]);
    expect(await store.claim("evt_alone", LEASE)).toEqual({ status: "completed" });
  });

  it("needs two scripts per delivery over HTTP: the claim, then the complete with the untrack", async () => {
    const recorded = recordingClient();
    const store = createRedisIdempotencyStore({
      client: recorded.client,
      prefix: `${prefix}:http`,
    });
    const receiver = await startNodeReceiver({
      secret: SECRET,
      idempotency: store,
      on: { "report.completed": () => {} },
    });
    try {
      const events = Array.from({ length: 5 }, () => createTestEvent("report.completed"));
      for (const event of events) await store.track(event.data.jobId as string);
      const before = recorded.scripts.length;
      for (const event of events) {
        const body = JSON.stringify(event);
        const signature = await signPayload({ payload: body, secret: SECRET });
        const response = await fetch(receiver.url, {
          method: "POST",
          body,
          headers: { "content-type": "application/json", "mappa-signature": signature },
        });
        expect(response.status).toBe(200);
      }
      expect(recorded.scripts.length - before).toBe(10);
      expect(await store.tracked({ limit: 10 })).toEqual([]);
    } finally {
      await receiver.close();
    }
  });

  it("fails both with idempotency_store_failed when their one script fails", async () => {
    const recorded = recordingClient();
    const store = createRedisIdempotencyStore({
      client: recorded.client,
      prefix: `${prefix}:fail`,
    });
    const claim = await store.claim("evt_fail", LEASE);
    if (claim.status !== "claimed") throw new Error("expected a claim");
    recorded.failNext(new Error("READONLY You can't write against a read only replica."));
    const [complete, untrack] = await Promise.allSettled([
      store.complete("evt_fail", claim.token, { ttlMs: 60_000 }),
      store.untrack("job_fail"),
    ]);
    for (const outcome of [complete, untrack]) {
      expect(outcome.status).toBe("rejected");
      const reason = (outcome as PromiseRejectedResult).reason;
      expect(reason).toBeInstanceOf(MappaWebhookError);
      expect(reason.code).toBe("idempotency_store_failed");
      expect(reason.message).toMatch(
        /complete and untrack of event evt_fail and job job_fail failed: READONLY/,
      );
    }
  });
});
