import { parseEvent } from "@mappa-webhooks/core";
import { createTestEvent, signPayload, simulateDelivery } from "@mappa-webhooks/testing";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createQueueHandoff, type MappaJobData } from "../src/queue.js";
import {
  bullConnection,
  type Child,
  connect,
  deleteKeys,
  escapeRegExp,
  keyOf,
  SECRET,
  startFixture,
  uniquePrefix,
  waitFor,
} from "./helpers.js";

// A worker is SIGKILLed while it is in the middle of its jobs. After a new worker starts,
// BullMQ's stalled-job check hands the jobs over and each completes exactly once.
const JOBS = 5;
// Short so a dead worker's jobs come back within seconds (BullMQ's default is 30 s), and long
// enough that a live worker on a busy machine renews its locks in time (every LOCK_MS / 2).
const LOCK_MS = 4000;
const prefix = uniquePrefix("crash");
const bullPrefix = `${prefix}:bull`;
const queueName = "mappa-crash";
let redis: Redis;
let queue: Queue<MappaJobData>;
const workers: Child[] = [];
const receivers: Child[] = [];

beforeAll(async () => {
  redis = connect();
  await redis.ping();
  queue = new Queue<MappaJobData>(queueName, { connection: bullConnection(), prefix: bullPrefix });
});

afterAll(async () => {
  await Promise.all([...workers, ...receivers].map((child) => child.kill("SIGKILL")));
  await queue.close();
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

function startWorker(workMs: number, name = queueName): Child {
  const child = startFixture("worker.mjs", {
    QUEUE_NAME: name,
    BULL_PREFIX: bullPrefix,
    SOAK_PREFIX: prefix,
    WORK_MS: String(workMs),
    LOCK_MS: String(LOCK_MS),
    CONCURRENCY: String(JOBS),
  });
  workers.push(child);
  return child;
}

describe("crash: a worker killed mid-job", { timeout: 120_000 }, () => {
  it("completes every job exactly once after a new worker starts", async () => {
    const handoff = createQueueHandoff({
      queue,
      attempts: 3,
      backoff: { type: "fixed", delay: 100 },
    });
    const events = Array.from({ length: JOBS }, () =>
      parseEvent(JSON.stringify(createTestEvent("report.completed"))),
    );
    const jobIds = await Promise.all(events.map((event) => handoff.enqueue(event)));

    // The first worker takes every job and would need 60 s for each: it never gets there.
    const doomed = startWorker(60_000);
    const [, doomedPid] = await doomed.waitForLine(/^worker ready (\d+)$/, 30_000);
    await waitFor(async () => (await redis.llen(`${prefix}:started`)) === JOBS, 30_000);
    expect(await queue.getActiveCount()).toBe(JOBS);
    const killedAt = performance.now();
    await doomed.kill("SIGKILL");
    const effectKeys = events.map((event) => `${prefix}:effect:${event.idempotencyKey}`);
    const effectsBeforeRestart = (await redis.mget(...effectKeys)).filter((v) => v !== null).length;
    expect(effectsBeforeRestart).toBe(0);

    const rescuer = startWorker(200);
    const [, rescuerPid] = await rescuer.waitForLine(/^worker ready (\d+)$/, 30_000);
    await waitFor(async () => (await queue.getCompletedCount()) === JOBS, 60_000, 50);
    const recoveryMs = Math.round(performance.now() - killedAt);

    const counts = (await redis.mget(...effectKeys)).map((value) => Number(value ?? 0));
    const started = await redis.lrange(`${prefix}:started`, 0, -1);
    const jobs = await Promise.all(jobIds.map((id) => queue.getJob(id as string)));
    const summary = {
      jobs: JOBS,
      startedByKilledWorker: started.filter((line) => line.startsWith(`${doomedPid} `)).length,
      startedByNewWorker: started.filter((line) => line.startsWith(`${rescuerPid} `)).length,
      effectsBeforeRestart,
      effectsRecorded: counts.filter((count) => count === 1).length,
      doubled: counts.filter((count) => count > 1).length,
      completed: await queue.getCompletedCount(),
      failed: await queue.getFailedCount(),
      recoveryMs,
    };
    console.log(`[crash] ${JSON.stringify(summary)}`);

    expect(summary.startedByKilledWorker).toBe(JOBS);
    expect(summary.startedByNewWorker).toBe(JOBS);
    expect(counts).toEqual(Array(JOBS).fill(1));
    expect(summary.failed).toBe(0);
    for (const job of jobs) {
      expect(await job?.getState()).toBe("completed");
      expect(job?.attemptsStarted).toBe(2);
    }
  });
});

describe("crash: a receiver killed mid-delivery (hand-off mode)", { timeout: 120_000 }, () => {
  it("loses nothing: stored jobs survive, and the retry goes through once the lease expires", async () => {
    const handoffQueue = "mappa-crash-handoff";
    const LEASE_MS = 3000;
    const start = (instance: string) => {
      const child = startFixture("receiver.mjs", {
        PORT: "0",
        MAPPA_WEBHOOK_SECRET: SECRET,
        SOAK_PREFIX: prefix,
        INSTANCE: instance,
        MODE: "handoff",
        QUEUE_NAME: handoffQueue,
        BULL_PREFIX: bullPrefix,
        LEASE_MS: String(LEASE_MS),
      });
      receivers.push(child);
      return child;
    };
    const doomed = start("doomed");
    const survivor = start("survivor");
    const urlOf = async (child: Child) => {
      const [, port] = await child.waitForLine(
        /^listening on http:\/\/127\.0\.0\.1:(\d+)$/,
        30_000,
      );
      return `http://127.0.0.1:${port}/webhooks/mappa`;
    };
    const doomedUrl = await urlOf(doomed);
    const survivorUrl = await urlOf(survivor);

    // 20 events answered 200 by the receiver that is about to die.
    const acknowledged = Array.from({ length: 20 }, () => createTestEvent("matching.completed"));
    for (const event of acknowledged) {
      const report = await simulateDelivery(doomedUrl, event, { secret: SECRET, schedule: [0] });
      expect(report.attempts[0]?.status).toBe(200);
    }
    // One more that it stores but never answers: it is killed inside the handler.
    // `stallOn` tells that instance to stay in its handler (a field Mappa never sends).
    const sent = createTestEvent("report.completed");
    const interrupted = { ...sent, data: { ...sent.data, stallOn: "doomed" } };
    const body = JSON.stringify(interrupted);
    const firstAttempt = fetch(doomedUrl, {
      method: "POST",
      body,
      headers: { "mappa-signature": await signPayload({ payload: body, secret: SECRET }) },
    }).then(
      (response) => `HTTP ${response.status}`,
      (error: Error) =>
        `network error (${(error.cause as { code?: string } | undefined)?.code ?? error.message})`,
    );
    await doomed.waitForLine(new RegExp(`^stalling ${escapeRegExp(keyOf(interrupted))}$`), 30_000);
    const killedAt = performance.now();
    await doomed.kill("SIGKILL");
    const firstOutcome = await firstAttempt;
    expect(firstOutcome).toMatch(/^network error/);

    // Retries (every 250 ms, at most 30 s) reach the other instance: 409 while the dead
    // instance's lease lasts, then the retry claims it; the job id dedupes the enqueue.
    const retry = await simulateDelivery(survivorUrl, interrupted, {
      secret: SECRET,
      schedule: [0, ...Array.from({ length: 120 }, () => 250)],
    });
    const retryMs = Math.round(performance.now() - killedAt);
    const statuses = retry.attempts.map((attempt) => attempt.status);
    expect(retry.delivered).toBe(true);
    expect(statuses[0]).toBe(409);
    expect(statuses.at(-1)).toBe(200);

    const queue2 = new Queue<MappaJobData>(handoffQueue, {
      connection: bullConnection(),
      prefix: bullPrefix,
    });
    try {
      const all = [...acknowledged, interrupted];
      expect(await queue2.count()).toBe(all.length);
      const worker = startWorker(10, handoffQueue);
      await worker.waitForLine(/^worker ready/, 30_000);
      await waitFor(async () => (await queue2.getCompletedCount()) === all.length, 60_000, 50);
      const counts = (await redis.mget(...all.map((e) => `${prefix}:effect:${keyOf(e)}`))).map(
        Number,
      );
      const summary = {
        acknowledgedBeforeKill: acknowledged.length,
        interruptedFirstAttempt: firstOutcome,
        retryAnswers: statuses,
        retryDoneAfterKillMs: retryMs,
        jobsInQueue: all.length,
        effectsRecorded: counts.filter((count) => count === 1).length,
        doubled: counts.filter((count) => count > 1).length,
      };
      console.log(`[crash-receiver] ${JSON.stringify(summary)}`);
      expect(counts).toEqual(Array(all.length).fill(1));
    } finally {
      await queue2.close();
    }
  });
});
