import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { IdempotencyStore } from "@mappa-webhooks/core";
import { mappaWebhook } from "@mappa-webhooks/express";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import express from "express";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisIdempotencyStore } from "../src/index.js";
import {
  type Child,
  connect,
  deleteKeys,
  escapeRegExp,
  keyOf,
  SECRET,
  sleep,
  startFixture,
  uniquePrefix,
  waitFor,
} from "./helpers.js";

// The lease while handlers run, over real HTTP: two Express receivers share one Redis, as two
// instances behind a load balancer do. A live handler slower than the lease keeps its claim
// (the receiver renews it every third of the lease), so a retry is answered 409 instead of
// running the handlers a second time in parallel; a receiver that dies stops renewing, and a
// retry after the lease runs the handlers.
const prefix = uniquePrefix("lease");
let redis: Redis;
const cleanups: Array<() => Promise<unknown> | unknown> = [];

beforeAll(async () => {
  redis = connect();
  await redis.ping();
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

interface Gate {
  /** Resolves once the handler may finish. */
  wait: Promise<void>;
  open(): void;
}

function gate(): Gate {
  let open = () => {};
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

/** Handler runs of one event across both instances: how many started, the most at once. */
function tracker() {
  const state = { started: 0, running: 0, mostAtOnce: 0, finished: 0 };
  return {
    state,
    async run(until: Promise<void>) {
      state.started++;
      state.running++;
      state.mostAtOnce = Math.max(state.mostAtOnce, state.running);
      try {
        await until;
      } finally {
        state.running--;
        state.finished++;
      }
    },
  };
}

/** An Express app with the adapter on its webhook path, on a port of its own. */
async function startExpress(options: Parameters<typeof mappaWebhook>[0]): Promise<string> {
  const app = express();
  app.use(mappaWebhook(options));
  const server: Server = await new Promise((resolve) => {
    const listening = app.listen(0, "127.0.0.1", () => resolve(listening));
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/mappa`;
}

/** A store on its own connection, as each instance has; `withoutRenew` hides `renew`. */
function instanceStore(storePrefix: string, withoutRenew = false): IdempotencyStore {
  const client = connect();
  cleanups.push(() => client.disconnect());
  const store = createRedisIdempotencyStore({ client, prefix: storePrefix });
  if (!withoutRenew) return store;
  return {
    claim: (key, options) => store.claim(key, options),
    complete: (key, token, options) => store.complete(key, token, options),
    release: (key, token) => store.release(key, token),
  };
}

async function post(url: string, body: string): Promise<{ status: number; body: unknown }> {
  const signature = await signPayload({ payload: body, secret: SECRET });
  const response = await fetch(url, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", "mappa-signature": signature },
  });
  return { status: response.status, body: await response.json() };
}

describe("a handler slower than the lease", () => {
  it("is never run in parallel: a retry after leaseMs gets 409 while it runs", async () => {
    const LEASE_MS = 2000;
    const storePrefix = `${prefix}:live`;
    const runs = tracker();
    const finish = gate();
    const instances = await Promise.all(
      ["a", "b"].map(() =>
        startExpress({
          secret: SECRET,
          idempotency: instanceStore(storePrefix),
          leaseMs: LEASE_MS,
          on: { "report.completed": () => runs.run(finish.wait) },
        }),
      ),
    );
    const [a, b] = instances as [string, string];
    const event = createTestEvent("report.completed");
    const body = JSON.stringify(event);
    const key = `${storePrefix}:{${keyOf(event)}}`;

    const first = post(a, body);
    // Answered only once the gate opens; should the test fail before, nothing is left unhandled.
    first.catch(() => {});
    cleanups.push(() => finish.open());
    await waitFor(() => runs.state.started === 1, 20_000);
    const claimedAt = performance.now();
    const owner = await redis.get(key);
    expect(owner).toMatch(/^c:/);
    expect(await redis.pttl(key)).toBeLessThanOrEqual(LEASE_MS);

    // Well past the lease: without renewals the key would be gone by now.
    await sleep(2.5 * LEASE_MS);
    expect(performance.now() - claimedAt).toBeGreaterThan(2 * LEASE_MS);
    expect(await redis.get(key)).toBe(owner);
    expect(await redis.pttl(key)).toBeGreaterThan(0);
    const retries = [await post(b, body), await post(a, body)];
    for (const retry of retries) {
      expect(retry).toMatchObject({ status: 409, body: { error: "event_in_flight" } });
    }
    expect(runs.state).toMatchObject({ started: 1, running: 1, mostAtOnce: 1 });

    finish.open();
    expect(await first).toEqual({ status: 200, body: { received: true } });
    expect(await post(b, body)).toEqual({ status: 200, body: { received: true, duplicate: true } });
    expect(await redis.get(key)).toBe(owner?.replace(/^c:/, "d:"));
    expect(runs.state).toEqual({ started: 1, running: 0, mostAtOnce: 1, finished: 1 });
    console.log(
      `[lease] handler ran ${Math.round(performance.now() - claimedAt)} ms with leaseMs ${LEASE_MS}: retries ${retries.map((r) => r.status).join(", ")}, one run`,
    );
  });

  it("control: with a store that cannot renew, the retry after the lease runs in parallel", async () => {
    const LEASE_MS = 1000;
    const storePrefix = `${prefix}:no-renew`;
    const runs = tracker();
    const finish = gate();
    const instances = await Promise.all(
      ["a", "b"].map(() =>
        startExpress({
          secret: SECRET,
          idempotency: instanceStore(storePrefix, true),
          leaseMs: LEASE_MS,
          on: { "report.completed": () => runs.run(finish.wait) },
        }),
      ),
    );
    const [a, b] = instances as [string, string];
    const event = createTestEvent("report.completed");
    const body = JSON.stringify(event);
    const key = `${storePrefix}:{${keyOf(event)}}`;

    const first = post(a, body);
    first.catch(() => {});
    cleanups.push(() => finish.open());
    await waitFor(() => runs.state.started === 1, 20_000);
    await waitFor(async () => (await redis.exists(key)) === 0, 20_000, 50);
    const retry = post(b, body);
    retry.catch(() => {});
    await waitFor(() => runs.state.started === 2, 20_000);
    expect(runs.state.mostAtOnce).toBe(2);
    finish.open();
    expect((await first).status).toBe(200);
    expect((await retry).status).toBe(200);
  });
});

describe("a receiver that dies mid-handler", () => {
  it("stops renewing: a retry after the lease runs the handlers on the other instance", async () => {
    const LEASE_MS = 3000;
    const runPrefix = `${prefix}:crash`;
    const start = (instance: string): Child => {
      const child = startFixture("receiver.mjs", {
        PORT: "0",
        MAPPA_WEBHOOK_SECRET: SECRET,
        SOAK_PREFIX: runPrefix,
        INSTANCE: instance,
        LEASE_MS: String(LEASE_MS),
      });
      cleanups.push(() => child.kill("SIGKILL"));
      return child;
    };
    const urlOf = async (child: Child) => {
      const [, port] = await child.waitForLine(
        /^listening on http:\/\/127\.0\.0\.1:(\d+)$/,
        30_000,
      );
      return `http://127.0.0.1:${port}/webhooks/mappa`;
    };
    const doomed = start("a");
    const survivor = start("b");
    const [doomedUrl, survivorUrl] = [await urlOf(doomed), await urlOf(survivor)];
    // `stallOn` tells instance a to stay in its handler (a field Mappa never sends).
    const sent = createTestEvent("report.completed");
    const event = { ...sent, data: { ...sent.data, stallOn: "a" } };
    const body = JSON.stringify(event);
    const key = `${runPrefix}:idem:{${keyOf(event)}}`;

    const firstAttempt = post(doomedUrl, body).then(
      (answer) => `HTTP ${answer.status}`,
      (error: Error) =>
        `network error (${(error.cause as { code?: string })?.code ?? error.message})`,
    );
    await doomed.waitForLine(new RegExp(`^stalling ${escapeRegExp(keyOf(event))}$`), 20_000);
    await doomed.kill("SIGKILL");
    const killedAt = performance.now();
    expect(await firstAttempt).toMatch(/^network error/);
    // The dead instance's claim is still there, and lasts at most one lease.
    expect(await redis.get(key)).toMatch(/^c:/);
    expect(await redis.pttl(key)).toBeLessThanOrEqual(LEASE_MS);

    // Mappa's retries reach the survivor: 409 while the claim lasts, then the handlers run.
    const answers: number[] = [];
    for (let attempt = 0; attempt < 200; attempt++) {
      const answer = await post(survivorUrl, body);
      answers.push(answer.status);
      if (answer.status !== 409) break;
      await sleep(100);
    }
    const retriedAfterMs = Math.round(performance.now() - killedAt);
    expect(answers[0]).toBe(409);
    expect(answers.at(-1)).toBe(200);
    expect(answers.slice(0, -1).every((status) => status === 409)).toBe(true);
    expect(await redis.lrange(`${runPrefix}:started:${keyOf(event)}`, 0, -1)).toEqual(["a", "b"]);
    expect(await redis.get(`${runPrefix}:effect:${keyOf(event)}`)).toBe("1");
    expect(await redis.get(key)).toMatch(/^d:/);
    expect(await post(survivorUrl, body)).toEqual({
      status: 200,
      body: { received: true, duplicate: true },
    });
    console.log(
      `[lease-crash] leaseMs ${LEASE_MS}: ${answers.filter((s) => s === 409).length} × 409, then 200 ${retriedAfterMs} ms after the kill`,
    );
  });
});
