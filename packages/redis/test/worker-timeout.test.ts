import { type MappaEvent, MappaWebhookError, parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { Queue, type Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createMappaWorker,
  createQueueHandoff,
  type MappaJobData,
  type MappaWorkerErrorInfo,
} from "../src/queue.js";
import { bullConnection, connect, deleteKeys, uniquePrefix, waitFor } from "./helpers.js";

// Handlers that never settle, in a real BullMQ worker on the test Redis.
const prefix = uniquePrefix("worker-timeout");
const bullPrefix = `${prefix}:bull`;
let redis: Redis;
const closers: Array<() => Promise<unknown>> = [];
const never = () => new Promise<never>(() => {});

beforeAll(async () => {
  redis = connect();
  await redis.ping();
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

function newQueue(name: string): Queue<MappaJobData> {
  const queue = new Queue<MappaJobData>(name, { connection: bullConnection(), prefix: bullPrefix });
  closers.push(() => queue.close());
  return queue;
}

function newWorker(options: Parameters<typeof createMappaWorker>[0]): Worker<MappaJobData> {
  const worker = createMappaWorker({
    ...options,
    workerOptions: { prefix: bullPrefix, ...options.workerOptions },
  });
  closers.push(() => worker.close());
  return worker;
}

const event = (type: "report.completed" | "matching.completed"): MappaEvent =>
  parseEvent(JSON.stringify(createTestEvent(type)));

interface Reported {
  error: Error;
  info: MappaWorkerErrorInfo;
  at: number;
}

describe("handlerTimeoutMs", () => {
  it("fails an attempt that never settles with handler_timeout, frees its slot, tells onError, retries, then parks", async () => {
    const queue = newQueue("hang-retry");
    const handoff = createQueueHandoff({
      queue,
      attempts: 2,
      backoff: { type: "fixed", delay: 50 },
    });
    const reported: Reported[] = [];
    const hangStarts: number[] = [];
    let goodDoneAt = 0;
    newWorker({
      queueName: "hang-retry",
      connection: bullConnection(),
      concurrency: 1,
      handlerTimeoutMs: 1000,
      on: {
        "report.completed": () => {
          hangStarts.push(performance.now());
          return never();
        },
        "matching.completed": () => {
          goodDoneAt = performance.now();
        },
      },
      onError: (error, info) => void reported.push({ error, info, at: performance.now() }),
    });
    const hungId = (await handoff.enqueue(event("report.completed"))) as string;
    const goodId = (await handoff.enqueue(event("matching.completed"))) as string;
    await waitFor(
      async () =>
        (await queue.getJobState(hungId)) === "failed" &&
        (await queue.getJobState(goodId)) === "completed",
      60_000,
      50,
    );

    expect(hangStarts).toHaveLength(2);
    expect(
      reported.map(({ error, info }) => [(error as MappaWebhookError).code, info.phase]),
    ).toEqual([
      ["handler_timeout", "handler"],
      ["handler_timeout", "handler"],
    ]);
    expect(reported.map(({ info }) => info.phase === "handler" && info.final)).toEqual([
      false,
      true,
    ]);
    for (const [i, { error, info, at }] of reported.entries()) {
      expect(error).toBeInstanceOf(MappaWebhookError);
      expect((error as MappaWebhookError).status).toBe(500);
      expect(error.message).toContain("did not settle within 1000 ms (`handlerTimeoutMs`)");
      expect(info.phase === "handler" && info.job.id).toBe(hungId);
      // Not before the limit (the bound above catches a hang).
      expect(at - (hangStarts[i] as number)).toBeGreaterThanOrEqual(950);
    }
    // With one slot, the good job could only run because the timed-out attempt freed it.
    expect(goodDoneAt).toBeGreaterThan(0);
    expect(goodDoneAt).toBeLessThan(reported[1]?.at as number);
    const job = await queue.getJob(hungId);
    expect(job?.attemptsMade).toBe(2);
    expect(job?.failedReason).toContain("did not settle within 1000 ms");
    console.log(
      `[hang] timeouts after ${reported.map(({ at }, i) => Math.round(at - (hangStarts[i] as number))).join(" ms, ")} ms; good job done between them`,
    );
  });
});

describe("worker.close()", () => {
  it("resolves within closeTimeoutMs with a hung handler, and the attempt is recorded for a retry", async () => {
    const queue = newQueue("hang-close");
    const handoff = createQueueHandoff({
      queue,
      attempts: 3,
      backoff: { type: "fixed", delay: 60_000 },
    });
    const reported: Reported[] = [];
    let started = false;
    const worker = newWorker({
      queueName: "hang-close",
      connection: bullConnection(),
      handlerTimeoutMs: 600_000,
      closeTimeoutMs: 1000,
      on: {
        "report.completed": () => {
          started = true;
          return never();
        },
      },
      onError: (error, info) => void reported.push({ error, info, at: performance.now() }),
    });
    const jobId = (await handoff.enqueue(event("report.completed"))) as string;
    await waitFor(() => started, 30_000);

    const closeStarted = performance.now();
    await worker.close();
    const closeMs = performance.now() - closeStarted;
    expect(closeMs).toBeGreaterThanOrEqual(950);
    expect(closeMs).toBeLessThan(30_000);
    expect(worker.isRunning()).toBe(false);
    // Recorded while the connection was still open: waiting for its retry, not stuck "active".
    expect(await queue.getJobState(jobId)).toBe("delayed");
    const job = await queue.getJob(jobId);
    expect(job?.attemptsMade).toBe(1);
    expect(job?.failedReason).toContain("had not settled when the worker closed");
    expect(reported).toHaveLength(1);
    expect(reported[0]?.error).toMatchObject({ code: "handler_timeout" });
    expect(reported[0]?.info.phase === "handler" && reported[0].info.final).toBe(false);
    console.log(`[hang] close() with a hung handler took ${Math.round(closeMs)} ms`);
  });

  it("still waits for a handler that finishes within closeTimeoutMs", async () => {
    const queue = newQueue("close-graceful");
    const handoff = createQueueHandoff({ queue });
    let started = false;
    let finished = false;
    const worker = newWorker({
      queueName: "close-graceful",
      connection: bullConnection(),
      closeTimeoutMs: 20_000,
      on: {
        "report.completed": async () => {
          started = true;
          await new Promise((resolve) => setTimeout(resolve, 300));
          finished = true;
        },
      },
    });
    const jobId = (await handoff.enqueue(event("report.completed"))) as string;
    await waitFor(() => started, 30_000);
    await worker.close();
    expect(finished).toBe(true);
    expect(await queue.getJobState(jobId)).toBe("completed");
  });
});
