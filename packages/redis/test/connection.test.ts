import { parseEvent } from "@mappa-webhooks/core";
import { createTestEvent, simulateDelivery } from "@mappa-webhooks/testing";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisIdempotencyStore } from "../src/index.js";
import { createMappaWorker, createQueueHandoff, type MappaJobData } from "../src/queue.js";
import {
  type Child,
  keyOf,
  messageChain,
  SECRET,
  startFixture,
  startNodeReceiver,
  uniquePrefix,
  waitFor,
} from "./helpers.js";
import { type OwnRedis, startOwnRedis } from "./own-redis.js";

// Lost connections against a redis-server of the test's own: killed with SIGKILL and started
// again (its append-only file keeps the jobs), or every client connection cut with
// `CLIENT KILL TYPE normal`. A receiver (Redis store + BullMQ hand-off) and a worker run as
// child processes; their ioredis clients and the receiver's Queue have no 'error' listener
// of the app's own, so a crash on an unhandled 'error' event would show as an exit.
const prefix = uniquePrefix("connection");
const bullPrefix = `${prefix}:bull`;
let own: OwnRedis;
let redis: Redis;
const children: Child[] = [];

beforeAll(async () => {
  own = await startOwnRedis("connection");
  redis = new Redis(own.url, { maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  redis?.disconnect();
  await own?.destroy();
});

function alive(child: Child): boolean {
  return child.process.exitCode === null && child.process.signalCode === null;
}

// Far longer than the test may take: a delivery blocked by a stale claim would show.
const LEASE_MS = 600_000;

async function startPair(queueName: string, leaseMs = LEASE_MS) {
  const env = {
    REDIS_URL: own.url,
    SOAK_PREFIX: `${prefix}:${queueName}`,
    BULL_PREFIX: bullPrefix,
  };
  const receiver = startFixture("receiver.mjs", {
    ...env,
    LEASE_MS: String(leaseMs),
    PORT: "0",
    MAPPA_WEBHOOK_SECRET: SECRET,
    INSTANCE: "receiver",
    MODE: "handoff",
    QUEUE_NAME: queueName,
  });
  const worker = startFixture("worker.mjs", {
    ...env,
    QUEUE_NAME: queueName,
    WORK_MS: "10",
    LOCK_MS: "4000",
    CONCURRENCY: "2",
  });
  children.push(receiver, worker);
  const [, port] = await receiver.waitForLine(/^listening on http:\/\/127\.0\.0\.1:(\d+)$/, 30_000);
  await worker.waitForLine(/^worker ready/, 30_000);
  const url = `http://127.0.0.1:${port}/webhooks/mappa`;
  const effects = (events: Array<Parameters<typeof keyOf>[0]>) =>
    redis
      .mget(...events.map((event) => `${prefix}:${queueName}:effect:${keyOf(event)}`))
      .then((values) => values.map(Number));
  return { receiver, worker, url, effects };
}

const deliverOnce = async (url: string, event: object) =>
  (await simulateDelivery(url, event, { secret: SECRET, schedule: [0] })).attempts[0]?.status;

// Mappa's retries, compressed: every 250 ms for at most 60 s.
const deliverWithRetries = (url: string, event: object) =>
  simulateDelivery(url, event, {
    secret: SECRET,
    schedule: [0, ...Array.from({ length: 240 }, () => 250)],
  });

describe("connection loss", { timeout: 240_000 }, () => {
  it("Redis killed and restarted: 503 meanwhile, nothing crashes, and everything is handled after", async () => {
    const { receiver, worker, url, effects } = await startPair("restart");
    const before = Array.from({ length: 5 }, () => createTestEvent("report.completed"));
    for (const event of before) expect(await deliverOnce(url, event)).toBe(200);
    await waitFor(async () => (await effects(before)).every((n) => n === 1), 60_000, 50);

    await own.stop("SIGKILL");
    const during = Array.from({ length: 3 }, () => createTestEvent("matching.completed"));
    const duringStatuses = [];
    for (const event of during) duringStatuses.push(await deliverOnce(url, event));
    // The worker noticed (through onError) and is still running; so is the receiver.
    await worker.waitForLine(/^onError worker /, 60_000);
    expect(alive(receiver)).toBe(true);
    expect(alive(worker)).toBe(true);

    await own.start();
    const started = performance.now();
    const retried = await Promise.all(during.map((event) => deliverWithRetries(url, event)));
    const recoveredMs = Math.round(performance.now() - started);
    await waitFor(
      async () => (await effects([...before, ...during])).every((n) => n === 1),
      60_000,
      50,
    );
    const summary = {
      answersWhileDown: duringStatuses,
      answersAfterRestart: retried.map((r) => r.attempts.map((a) => a.status).join(" ")),
      recoveredMs,
      receiverAlive: alive(receiver),
      workerAlive: alive(worker),
      workerErrorsReported: worker.output.filter((l) => l.startsWith("onError worker")).length,
    };
    console.log(`[connection] restart: ${JSON.stringify(summary)}`);
    expect(duringStatuses).toEqual([503, 503, 503]);
    for (const result of retried) {
      expect(result.delivered).toBe(true);
      expect(result.attempts.at(-1)?.status).toBe(200);
    }
    expect(await effects([...before, ...during])).toEqual(Array(8).fill(1));
    expect(alive(receiver)).toBe(true);
    expect(alive(worker)).toBe(true);
  });

  it("every connection cut (CLIENT KILL TYPE normal): nothing crashes, the worker carries on", async () => {
    // A release cut off with its connection leaves the claim until its lease ends (see the
    // README): a short lease keeps such a delivery's 409s brief.
    const { receiver, worker, url, effects } = await startPair("client-kill", 5000);
    const receiverOutput = () =>
      receiver.output
        .filter((l) => !l.includes("Unhandled error event"))
        .slice(-15)
        .join("\n");
    const events = Array.from({ length: 20 }, () => createTestEvent("report.completed"));
    const deliveries: Array<Promise<Awaited<ReturnType<typeof deliverWithRetries>>>> = [];
    for (const [i, event] of events.entries()) {
      deliveries.push(deliverWithRetries(url, event));
      if (i === 5 || i === 12) {
        // Once the clients are back from any earlier cut, cut the receiver's and the worker's
        // connections (the one sending the command is spared: SKIPME yes).
        const connected = async () =>
          String(await own.command("CLIENT", "LIST", "TYPE", "normal"))
            .trim()
            .split("\n").length;
        await waitFor(async () => (await connected()) >= 4, 30_000, 50);
        const killed = await own.command("CLIENT", "KILL", "TYPE", "normal");
        expect(Number(killed)).toBeGreaterThanOrEqual(3);
      }
    }
    const results = await Promise.all(deliveries);
    const undelivered = results.filter((result) => !result.delivered);
    if (undelivered.length > 0) {
      console.log(
        `[connection] undelivered: ${undelivered.map((r) => [...new Set(r.attempts.map((a) => a.status))].join(",")).join(" | ")}`,
      );
      console.log(receiverOutput());
    }
    for (const result of results) expect(result.delivered).toBe(true);
    await waitFor(async () => (await effects(events)).every((n) => n >= 1), 60_000, 50);
    const counts = await effects(events);
    const summary = {
      events: events.length,
      handled: counts.filter((n) => n >= 1).length,
      // At least once: a job whose completion was cut off may run again.
      ranTwice: counts.filter((n) => n > 1).length,
      non200Answers: results.flatMap((r) => r.attempts.filter((a) => a.status !== 200)).length,
      receiverAlive: alive(receiver),
      workerAlive: alive(worker),
    };
    console.log(`[connection] client kill: ${JSON.stringify(summary)}`);
    expect(summary.handled).toBe(events.length);
    expect(alive(receiver)).toBe(true);
    expect(alive(worker)).toBe(true);
  });

  it("Redis frozen, then resumed: a claim that lands after its 503 is given back, so the retry is not held off for a lease", async () => {
    // The claim reaches a Redis that does not answer (frozen with SIGSTOP, as a stalled host
    // or a long fork would be): the store gives up after timeoutMs and the receiver answers
    // 503. Once Redis resumes it runs the claim it was sent. Left alone, that claim would hold
    // the event for the whole lease and answer every retry 409.
    const client = new Redis(own.url);
    client.on("error", () => {});
    const errors: string[] = [];
    const receiver = await startNodeReceiver({
      secret: SECRET,
      leaseMs: LEASE_MS,
      idempotency: createRedisIdempotencyStore({
        client,
        prefix: `${prefix}:frozen`,
        timeoutMs: 500,
      }),
      on: { "report.completed": () => {} },
      onError: (error) => void errors.push(messageChain(error)),
    });
    try {
      await client.ping();
      const event = createTestEvent("report.completed");
      own.pause();
      let first: number | undefined;
      try {
        first = await deliverOnce(receiver.url, event);
      } finally {
        own.resume();
      }
      expect(first).toBe(503);
      expect(errors[0]).toContain("did not answer the claim of event");
      // The late claim ran once Redis resumed; the store releases it as soon as the answer
      // arrives, so within a few retries (not LEASE_MS) the event is handled.
      const retry = await deliverWithRetries(receiver.url, event);
      const statuses = retry.attempts.map((attempt) => attempt.status);
      console.log(`[connection] frozen then resumed: first 503, retries ${statuses.join(" ")}`);
      expect(retry.delivered).toBe(true);
      expect(statuses.at(-1)).toBe(200);
      expect(statuses.filter((status) => status === 409).length).toBeLessThanOrEqual(2);
    } finally {
      await receiver.close();
      client.disconnect();
    }
  });

  it("worker.close() resolves in bounded time with a hung handler while Redis is down", async () => {
    const connection = { host: "127.0.0.1", port: own.port };
    const queue = new Queue<MappaJobData>("close-down", { connection, prefix: bullPrefix });
    queue.on("error", () => {});
    const reported: string[] = [];
    let started = false;
    const worker = createMappaWorker({
      queueName: "close-down",
      connection,
      closeTimeoutMs: 1000,
      workerOptions: { prefix: bullPrefix },
      on: {
        "report.completed": () => {
          started = true;
          return new Promise<never>(() => {});
        },
      },
      onError: (error, info) => void reported.push(`${info.phase}: ${error.message}`),
    });
    try {
      await createQueueHandoff({ queue }).enqueue(
        parseEvent(JSON.stringify(createTestEvent("report.completed"))),
      );
      await waitFor(() => started, 30_000);
      await own.stop("SIGKILL");
      const closeStarted = performance.now();
      await worker.close();
      const closeMs = Math.round(performance.now() - closeStarted);
      console.log(`[connection] close() with Redis down and a hung handler: ${closeMs} ms`);
      // closeTimeoutMs, then 5 s for BullMQ to record and close, then it stops waiting.
      expect(closeMs).toBeGreaterThanOrEqual(950);
      expect(closeMs).toBeLessThan(30_000);
      expect(reported.some((line) => line.includes("stopped waiting for BullMQ"))).toBe(true);
    } finally {
      await queue.close().catch(() => {});
      await own.start();
    }
  });
});
