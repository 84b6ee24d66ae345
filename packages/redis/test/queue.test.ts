import {
  createMappaWebhooks,
  idempotencyKeyFor,
  type MappaEvent,
  parseEvent,
} from "@mappa-webhooks/core";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { Queue, QueueEvents, type Worker } from "bullmq";
import bullmqPackage from "bullmq/package.json" with { type: "json" };
import { Redis } from "ioredis";
import ioredisPackage from "ioredis/package.json" with { type: "json" };
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisIdempotencyStore } from "../src/index.js";
import {
  createMappaWorker,
  createQueueHandoff,
  jobIdFor,
  type MappaJobData,
} from "../src/queue.js";
import {
  bullConnection,
  connect,
  deleteKeys,
  keyOf,
  messageChain,
  REDIS_URL,
  SECRET,
  startNodeReceiver,
  uniquePrefix,
  waitFor,
} from "./helpers.js";

const prefix = uniquePrefix("queue");
const bullPrefix = `${prefix}:bull`;
let redis: Redis;
const closers: Array<() => Promise<unknown>> = [];

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

async function post(url: string, body: string) {
  const signature = await signPayload({ payload: body, secret: SECRET });
  const response = await fetch(url, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", "mappa-signature": signature },
  });
  return { status: response.status, body: await response.json() };
}

describe("client versions", () => {
  it("runs on the ioredis and BullMQ majors this project names", () => {
    const { EXPECTED_IOREDIS_MAJOR, EXPECTED_BULLMQ_MAJOR } = process.env;
    if (EXPECTED_IOREDIS_MAJOR === undefined || EXPECTED_BULLMQ_MAJOR === undefined) {
      throw new Error("run through vitest.config.ts (a named project)");
    }
    expect(ioredisPackage.version.split(".")[0]).toBe(EXPECTED_IOREDIS_MAJOR);
    expect(bullmqPackage.version.split(".")[0]).toBe(EXPECTED_BULLMQ_MAJOR);
    console.log(`[queue] ioredis ${ioredisPackage.version}, bullmq ${bullmqPackage.version}`);
  });
});

describe("jobIdFor", () => {
  it("keeps ordinary ids and encodes what BullMQ rejects, without collisions", () => {
    expect(jobIdFor("evt_01HZX")).toBe("evt_01HZX");
    // The key of an event without an id: `~` is kept, `:` encoded.
    expect(jobIdFor("~job:report.completed:job_1")).toBe("~job%3Areport.completed%3Ajob_1");
    expect(jobIdFor("~~job:x")).toBe("~~job%3Ax");
    expect(jobIdFor("report.completed:job_1")).toBe("report.completed%3Ajob_1");
    expect(jobIdFor("100%:x")).toBe("100%25%3Ax");
    expect(jobIdFor("12345")).toBe("%312345");
    const keys = [
      "a:b",
      "a%3Ab",
      "a%b",
      "a%25b",
      "1",
      "%31",
      "12",
      "1:2",
      "1%3A2",
      "~job:report.completed:1",
      "~~job:report.completed:1",
      "~job%3Areport.completed%3A1",
    ];
    const ids = keys.map(jobIdFor);
    expect(new Set(ids).size).toBe(keys.length);
    for (const id of ids) {
      expect(id).not.toContain(":");
      expect(`${Number.parseInt(id, 10)}`).not.toBe(id);
    }
  });
});

describe("createQueueHandoff", () => {
  it("answers 200 only once the job is stored, and a duplicate enqueues nothing", async () => {
    const queue = newQueue("handoff");
    const handoff = createQueueHandoff({ queue });
    const receiver = await startNodeReceiver({
      secret: SECRET,
      idempotency: createRedisIdempotencyStore({ client: redis, prefix }),
      ...handoff.handlers,
    });
    closers.push(() => receiver.close());

    const event = createTestEvent("report.completed");
    const body = JSON.stringify(event);
    expect(await post(receiver.url, body)).toEqual({ status: 200, body: { received: true } });
    // No waiting: the 200 means the job is already in Redis.
    // A known event's job id is its key, `~job:<type>:<jobId>`, not its `id`.
    const job = await queue.getJob(jobIdFor(keyOf(event)));
    expect(job?.name).toBe("report.completed");
    expect(job?.data.event).toEqual(event);
    expect(job?.opts.attempts).toBe(10);
    expect(job?.opts.backoff).toEqual({ type: "exponential", delay: 1000 });

    expect(await post(receiver.url, body)).toEqual({
      status: 200,
      body: { received: true, duplicate: true },
    });
    expect(await queue.count()).toBe(1);
  });

  it("lets BullMQ dedupe by job id even without an idempotency store", async () => {
    const queue = newQueue("handoff-no-store");
    const handoff = createQueueHandoff({ queue });
    const receiver = await startNodeReceiver({
      secret: SECRET,
      idempotency: false,
      ...handoff.handlers,
    });
    closers.push(() => receiver.close());
    const fallbackKeyEvent = {
      type: "matching.failed",
      data: createTestEvent("matching.failed").data,
    };
    const unknown = createTestEvent("transcript.ready");
    for (const event of [fallbackKeyEvent, unknown, fallbackKeyEvent, unknown]) {
      expect((await post(receiver.url, JSON.stringify(event))).status).toBe(200);
    }
    expect(await queue.count()).toBe(2);
    const key = idempotencyKeyFor({ type: "matching.failed", jobId: fallbackKeyEvent.data.jobId });
    expect(key).toBe(`~job:matching.failed:${fallbackKeyEvent.data.jobId}`);
    const job = await queue.getJob(jobIdFor(key as string));
    expect(job?.id).toBe(`~job%3Amatching.failed%3A${fallbackKeyEvent.data.jobId}`);
    expect(job?.name).toBe("matching.failed");
    expect((await queue.getJob(jobIdFor(unknown.id)))?.name).toBe("transcript.ready");
  });

  it("answers 500 (Mappa retries) when Redis does not take the job in time", async () => {
    // Nothing listens on port 1; with the offline queue on, `add` would wait for a reconnect.
    const offline = new Redis({ host: "127.0.0.1", port: 1, maxRetriesPerRequest: null });
    offline.on("error", () => {});
    const queue = new Queue<MappaJobData>("handoff-offline", { connection: offline });
    queue.on("error", () => {});
    closers.push(async () => {
      offline.disconnect();
      await queue.close().catch(() => {});
    });
    const failures: string[] = [];
    const handoff = createQueueHandoff({ queue, timeoutMs: 200 });
    const webhooks = createMappaWebhooks({
      secret: SECRET,
      ...handoff.handlers,
      onError: (error) => void failures.push(messageChain(error)),
    });
    const body = JSON.stringify(createTestEvent("report.failed"));
    const result = await webhooks.handle({
      method: "POST",
      headers: { "mappa-signature": await signPayload({ payload: body, secret: SECRET }) },
      rawBody: body,
    });
    expect(result.status).toBe(500);
    expect(failures[0]).toContain('to the BullMQ queue "handoff-offline"');
    expect(failures[0]).toContain("within 200 ms");
  });
});

describe("createMappaWorker", () => {
  it("runs the typed handlers, retrying failures with exponential backoff", async () => {
    const queue = newQueue("worker-retry");
    const events = new QueueEvents("worker-retry", {
      connection: bullConnection(),
      prefix: bullPrefix,
    });
    closers.push(() => events.close());
    await events.waitUntilReady();
    const handoff = createQueueHandoff({
      queue,
      attempts: 4,
      backoff: { type: "exponential", delay: 100 },
    });
    const attemptsAt: number[] = [];
    const seen: MappaEvent[] = [];
    newWorker({
      queueName: "worker-retry",
      connection: bullConnection(),
      on: {
        "report.completed": async (event, job) => {
          attemptsAt.push(Date.now());
          if (job.attemptsMade < 2) throw new Error(`transient failure ${job.attemptsMade + 1}`);
          seen.push(event);
        },
      },
      onUnknown: (event) => void seen.push(event),
    });
    const event = createTestEvent("report.completed");
    const unknown = createTestEvent("transcript.ready");
    const jobId = await handoff.enqueue(parseEvent(JSON.stringify(event)));
    await handoff.enqueue(parseEvent(JSON.stringify(unknown)));
    const job = await queue.getJob(jobId as string);
    await job?.waitUntilFinished(events, 30_000);
    await waitFor(() => seen.length === 2, 30_000);

    expect(attemptsAt).toHaveLength(3);
    const gaps = attemptsAt.slice(1).map((at, i) => at - (attemptsAt[i] as number));
    expect(gaps[0]).toBeGreaterThanOrEqual(95);
    expect(gaps[1]).toBeGreaterThanOrEqual(195);
    const handled = seen.find((e) => e.type === "report.completed");
    expect(handled?.known && handled.type === "report.completed" && handled.data.reportId).toBe(
      event.data.reportId,
    );
    expect(seen.find((e) => !e.known)?.idempotencyKey).toBe(unknown.id);
    console.log(`[worker-retry] attempts: 3, backoff gaps: ${gaps.join(" ms, ")} ms`);
  });

  it("takes ioredis clients as connections, and events without an id by their fallback key", async () => {
    // As the README shows: the app's own ioredis clients, `maxRetriesPerRequest: null` as BullMQ
    // requires for workers. With BullMQ 5 this is a client of another ioredis major than BullMQ's own.
    const queueClient = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const workerClient = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    closers.push(async () => {
      queueClient.disconnect();
      workerClient.disconnect();
    });
    const queue = new Queue<MappaJobData>("client-connection", {
      connection: queueClient,
      prefix: bullPrefix,
    });
    closers.push(() => queue.close());
    const handoff = createQueueHandoff({ queue });
    const seen: MappaEvent[] = [];
    newWorker({
      queueName: "client-connection",
      connection: workerClient,
      on: { "report.completed": (event) => void seen.push(event) },
    });
    // mappa-node 1.2.x sends no id: the key is `~job:<type>:<jobId>`.
    const withoutId = {
      type: "report.completed",
      timestamp: new Date().toISOString(),
      data: { jobId: "job_no_id:1", reportId: "rep_no_id", status: "succeeded" },
    };
    const event = parseEvent(JSON.stringify(withoutId));
    expect(event.idempotencyKey).toBe("~job:report.completed:job_no_id:1");
    const jobId = await handoff.enqueue(event);
    expect(jobId).toBe("~job%3Areport.completed%3Ajob_no_id%3A1");
    // A second enqueue of the same event is the same job.
    expect(await handoff.enqueue(parseEvent(JSON.stringify(withoutId)))).toBe(jobId);
    await waitFor(() => seen.length === 1, 30_000);
    const job = await queue.getJob(jobId as string);
    await waitFor(async () => (await job?.getState()) === "completed", 30_000);
    expect(seen[0]?.idempotencyKey).toBe("~job:report.completed:job_no_id:1");
    expect(await queue.count()).toBe(0);
  });

  it("fails a job that holds no event without retrying it", async () => {
    const queue = newQueue("worker-corrupt");
    const events = new QueueEvents("worker-corrupt", {
      connection: bullConnection(),
      prefix: bullPrefix,
    });
    closers.push(() => events.close());
    await events.waitUntilReady();
    let ran = 0;
    newWorker({
      queueName: "worker-corrupt",
      connection: bullConnection(),
      onUnknown: () => void ran++,
    });
    const job = await queue.add("junk", { event: { no: "type" }, receivedAt: "" }, { attempts: 5 });
    await expect(job.waitUntilFinished(events, 30_000)).rejects.toThrow(
      /does not hold a Mappa event/,
    );
    const failed = await queue.getJob(job.id as string);
    expect(failed?.attemptsMade).toBe(1);
    expect(ran).toBe(0);
  });
});
