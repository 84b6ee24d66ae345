import { parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createQueueHandoff, type MappaJobData } from "../src/queue.js";
import {
  bullConnection,
  type Child,
  connect,
  deleteKeys,
  sleep,
  startFixture,
  uniquePrefix,
} from "./helpers.js";

// A job whose handler kills its worker (SIGKILL, as the OOM killer would), with good jobs
// queued behind it and one worker process at a time, restarted whenever it dies, as a process
// manager would. BullMQ notices each dead worker through its stalled-job check (the lock is
// not renewed) and puts the job back at the head of the queue.
const LOCK_MS = 2000;
const GOOD_JOBS = 5;
const MAX_RESTARTS = 8;
const prefix = uniquePrefix("poison");
const bullPrefix = `${prefix}:bull`;
let redis: Redis;
const queues: Queue<MappaJobData>[] = [];
const children: Child[] = [];

beforeAll(async () => {
  redis = connect();
  await redis.ping();
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  for (const queue of queues) await queue.close();
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

function startWorker(queueName: string, poisonKey: string, env: Record<string, string> = {}) {
  const child = startFixture("worker.mjs", {
    QUEUE_NAME: queueName,
    BULL_PREFIX: bullPrefix,
    SOAK_PREFIX: `${prefix}:${queueName}`,
    WORK_MS: "10",
    LOCK_MS: String(LOCK_MS),
    CONCURRENCY: "1",
    POISON_KEY: poisonKey,
    ...env,
  });
  children.push(child);
  return child;
}

/**
 * Keeps one worker running, starting a new one whenever it dies, until `done` (bounded by
 * restarts and time). Resolves with every worker that ran, the live one last.
 */
async function supervise(
  start: () => Child,
  done: () => Promise<boolean>,
  timeoutMs: number,
): Promise<Child[]> {
  const ran = [start()];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await done()) return ran;
    const current = ran.at(-1) as Child;
    if (current.process.exitCode !== null || current.process.signalCode !== null) {
      if (ran.length > MAX_RESTARTS) {
        const ends = ran.map(
          (child) =>
            `${child.process.signalCode ?? child.process.exitCode}: ${child.output.slice(-4).join(" / ")}`,
        );
        throw new Error(`more than ${MAX_RESTARTS} worker restarts:\n${ends.join("\n")}`);
      }
      ran.push(start());
    }
    await sleep(100);
  }
  throw new Error(`not done within ${timeoutMs} ms after ${ran.length} workers`);
}

async function setUp(name: string, attempts: number) {
  const queue = new Queue<MappaJobData>(name, { connection: bullConnection(), prefix: bullPrefix });
  queues.push(queue);
  const handoff = createQueueHandoff({ queue, attempts, backoff: { type: "fixed", delay: 100 } });
  const poison = parseEvent(JSON.stringify(createTestEvent("report.completed")));
  const good = Array.from({ length: GOOD_JOBS }, () =>
    parseEvent(JSON.stringify(createTestEvent("matching.completed"))),
  );
  // The poison job is first in line; the good ones wait behind it (one job at a time).
  const poisonId = (await handoff.enqueue(poison)) as string;
  const goodIds = [];
  for (const event of good) goodIds.push((await handoff.enqueue(event)) as string);
  const effects = () =>
    redis.mget(...good.map((event) => `${prefix}:${name}:effect:${event.idempotencyKey}`));
  const done = async () =>
    (await queue.getJobState(poisonId)) === "failed" &&
    (await queue.getCompletedCount()) === GOOD_JOBS;
  return { queue, poison, poisonId, goodIds, effects, done };
}

describe("poison: a job that kills every worker running it", { timeout: 240_000 }, () => {
  it("counts each crash as an attempt, parks the job after its last, and the jobs behind it run", async () => {
    const name = "poison-attempts";
    const ATTEMPTS = 3;
    const { queue, poison, poisonId, goodIds, effects, done } = await setUp(name, ATTEMPTS);
    const started = performance.now();
    const ran = await supervise(
      () => startWorker(name, poison.idempotencyKey as string),
      done,
      150_000,
    );
    const parkedAfterMs = Math.round(performance.now() - started);

    const killed = ran.filter((child) => child.process.signalCode === "SIGKILL");
    const poisonRuns = ran.flatMap((child) => child.output.filter((l) => l.startsWith("poison")));
    const job = await queue.getJob(poisonId);
    const live = ran.at(-1) as Child;
    const summary = {
      attempts: ATTEMPTS,
      workersStarted: ran.length,
      workersKilled: killed.length,
      poisonRuns: poisonRuns.length,
      poisonState: await job?.getState(),
      attemptsStarted: job?.attemptsStarted,
      attemptsMade: job?.attemptsMade,
      goodCompleted: await queue.getCompletedCount(),
      parkedAfterMs,
    };
    console.log(`[poison] ${JSON.stringify(summary)}`);

    // Three tries, each one a dead worker; the fourth start parks it without running it.
    expect(poisonRuns).toHaveLength(ATTEMPTS);
    expect(killed).toHaveLength(ATTEMPTS);
    expect(live.process.exitCode).toBeNull();
    expect(summary.poisonState).toBe("failed");
    expect(job?.attemptsStarted).toBe(ATTEMPTS + 1);
    expect(job?.failedReason).toMatch(
      /^@mappa-webhooks\/redis: job .+ was started 3 times and 3 of them never finished \(its worker died or lost the job's lock mid-handler\), so all 3 attempts are used: the job is parked in the failed set/,
    );
    expect(job?.failedReason).toContain("resetAttemptsStarted: true");
    const parkedLine = live.output.find((line) => line.startsWith("onError handler"));
    expect(parkedLine).toMatch(new RegExp(`^onError handler handler_failed ${poisonId} true `));
    // Every good job ran once, after the poison one was parked.
    expect((await effects()).map(Number)).toEqual(Array(GOOD_JOBS).fill(1));
    for (const id of goodIds) expect(await queue.getJobState(id)).toBe("completed");

    // Replayable: once the cause is fixed, a replay with fresh counters runs it to completion.
    await live.kill("SIGTERM");
    const cured = startWorker(name, poison.idempotencyKey as string, { CURED: "1" });
    await cured.waitForLine(/^worker ready/, 30_000);
    await job?.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
    await cured.waitForLine(
      new RegExp(`^completed ${poisonId.replace(/[%~.]/g, "\\$&")}$`),
      60_000,
    );
    expect(await queue.getJobState(poisonId)).toBe("completed");
    const poisonEffect = await redis.get(`${prefix}:${name}:effect:${poison.idempotencyKey}`);
    expect(poisonEffect).toBe("1");
  });

  it("with BullMQ's own stall limit (maxStalledCount: 1) parks it after two crashes", async () => {
    // What BullMQ does past maxStalledCount (5.x and 6.x): the stalled check marks the job
    // with a deferred failure and puts it back in the queue; the next worker to take it fails
    // it at once ("job stalled more than allowable limit") without running the processor.
    const name = "poison-bullmq-limit";
    const { queue, poison, poisonId, effects, done } = await setUp(name, 10);
    const ran = await supervise(
      () => startWorker(name, poison.idempotencyKey as string, { MAX_STALLED_COUNT: "1" }),
      done,
      150_000,
    );
    const poisonRuns = ran.flatMap((child) => child.output.filter((l) => l.startsWith("poison")));
    const job = await queue.getJob(poisonId);
    console.log(
      `[poison] maxStalledCount 1: ${JSON.stringify({ workersStarted: ran.length, poisonRuns: poisonRuns.length, attemptsStarted: job?.attemptsStarted, failedReason: job?.failedReason })}`,
    );
    expect(poisonRuns).toHaveLength(2);
    expect(job?.failedReason).toBe("job stalled more than allowable limit");
    expect(await job?.getState()).toBe("failed");
    expect((await effects()).map(Number)).toEqual(Array(GOOD_JOBS).fill(1));
  });
});
