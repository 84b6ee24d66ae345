import { MappaWebhookError, parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisIdempotencyStore } from "../src/index.js";
import { createMappaWorker, createQueueHandoff, type MappaJobData } from "../src/queue.js";
import { bullConnection, connect, deleteKeys, uniquePrefix, waitFor } from "./helpers.js";

// Every time and count option is checked at creation. A timer longer than 2^31−1 ms fires
// after 1 ms instead, so such a value used to be accepted and then fail every call at run time.
const MAX = 2 ** 31 - 1;
const RANGE = "must be a number of milliseconds from";
const prefix = uniquePrefix("options");
let redis: Redis;
let queue: Queue<MappaJobData>;

beforeAll(async () => {
  redis = connect();
  await redis.ping();
  queue = new Queue<MappaJobData>("options", { connection: bullConnection(), prefix });
});

afterAll(async () => {
  await queue.close();
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

function creationError(create: () => unknown): MappaWebhookError {
  try {
    create();
  } catch (error) {
    if (error instanceof MappaWebhookError) return error;
    throw error;
  }
  throw new Error("expected the creation to throw");
}

const BAD_MS: Array<[unknown, string]> = [
  [MAX + 1, "2147483648"],
  [1e12, "1000000000000"],
  [Number.NaN, "NaN"],
  [Number.POSITIVE_INFINITY, "Infinity"],
  [-1, "-1"],
  ["1000", '"1000"'],
];

describe("createRedisIdempotencyStore", () => {
  it.each(BAD_MS)("refuses timeoutMs = %s, naming the option, value and range", (value, shown) => {
    const error = creationError(() =>
      createRedisIdempotencyStore({ client: redis, timeoutMs: value as number }),
    );
    expect(error.code).toBe("invalid_options");
    expect(error.message).toBe(
      `@mappa-webhooks: createRedisIdempotencyStore: \`timeoutMs\` ${RANGE} 1 to 2147483647 (2^31−1, the longest timer JavaScript runs), got ${shown}.`,
    );
  });

  it("accepts the largest timeoutMs and answers with it", async () => {
    const store = createRedisIdempotencyStore({ client: redis, prefix, timeoutMs: MAX });
    const claim = await store.claim("evt_options_max", { leaseMs: 10_000 });
    expect(claim.status).toBe("claimed");
    expect(await store.claim("evt_options_max", { leaseMs: 10_000 })).toEqual({
      status: "in_flight",
    });
  });
});

describe("createQueueHandoff", () => {
  it.each(BAD_MS)("refuses timeoutMs = %s", (value, shown) => {
    const error = creationError(() => createQueueHandoff({ queue, timeoutMs: value as number }));
    expect(error.code).toBe("invalid_options");
    expect(error.message).toContain(`createQueueHandoff: \`timeoutMs\` ${RANGE} 1 to 2147483647`);
    expect(error.message).toContain(`got ${shown}.`);
  });

  it.each([
    [{ attempts: 0 }, "`attempts` must be a whole number from 1", "got 0."],
    [{ attempts: 2.5 }, "`attempts` must be a whole number from 1", "got 2.5."],
    [{ backoff: MAX + 1 }, `\`backoff\` ${RANGE} 0 to 2147483647`, "got 2147483648."],
    [
      { backoff: { type: "fixed", delay: MAX + 1 } },
      `\`backoff.delay\` ${RANGE} 0 to 2147483647`,
      "got 2147483648.",
    ],
    [{ backoff: { type: "exponential", delay: -5 } }, "`backoff.delay`", "got -5."],
    [{ backoff: "fast" }, "`backoff` must be a number of milliseconds or", 'got "fast".'],
    [{ jobOptions: { delay: MAX + 1 } }, `\`jobOptions.delay\` ${RANGE} 0 to`, "got 2147483648."],
    [{ jobOptions: { attempts: -1 } }, "`jobOptions.attempts` must be a whole number", "got -1."],
  ] as const)("refuses %j", (options, named, got) => {
    const error = creationError(() =>
      createQueueHandoff({ queue, ...(options as Record<string, unknown>) }),
    );
    expect(error.code).toBe("invalid_options");
    expect(error.message).toContain(`createQueueHandoff: ${named}`);
    expect(error.message).toContain(got);
  });

  it("accepts the largest values", () => {
    expect(() =>
      createQueueHandoff({
        queue,
        timeoutMs: MAX,
        backoff: { type: "fixed", delay: MAX },
        jobOptions: { delay: 0 },
      }),
    ).not.toThrow();
  });
});

describe("createMappaWorker", () => {
  const base = { queueName: "options", connection: bullConnection() };
  it.each([
    [{ handlerTimeoutMs: MAX + 1 }, `\`handlerTimeoutMs\` ${RANGE} 1 to 2147483647`, "2147483648."],
    [{ handlerTimeoutMs: 0 }, `\`handlerTimeoutMs\` ${RANGE} 1 to`, "got 0."],
    [{ closeTimeoutMs: Number.NaN }, `\`closeTimeoutMs\` ${RANGE} 1 to`, "got NaN."],
    [{ concurrency: 0 }, "`concurrency` must be a whole number from 1", "got 0."],
    [
      { workerOptions: { lockDuration: MAX + 1 } },
      `\`workerOptions.lockDuration\` ${RANGE} 1 to`,
      "got 2147483648.",
    ],
    [
      { workerOptions: { stalledInterval: 1e10 } },
      `\`workerOptions.stalledInterval\` ${RANGE} 1 to`,
      "got 10000000000.",
    ],
    [
      { workerOptions: { lockRenewTime: Number.POSITIVE_INFINITY } },
      "`workerOptions.lockRenewTime`",
      "got Infinity.",
    ],
    [
      { workerOptions: { maxStalledCount: -1 } },
      "`workerOptions.maxStalledCount` must be a whole number from 0",
      "got -1.",
    ],
    [{ onError: "log" }, "`onError` must be a function", ""],
  ] as const)("refuses %j before connecting", (options, named, got) => {
    const error = creationError(() =>
      createMappaWorker({ ...base, ...(options as Record<string, unknown>) }),
    );
    expect(error.code).toBe("invalid_options");
    expect(error.message).toContain(`createMappaWorker: ${named}`);
    expect(error.message).toContain(got);
  });

  it("refuses a missing connection", () => {
    const error = creationError(() =>
      createMappaWorker({ queueName: "options" } as Parameters<typeof createMappaWorker>[0]),
    );
    expect(error.code).toBe("invalid_options");
    expect(error.message).toContain("needs `queueName`");
  });

  it("accepts the largest values, and close() then still waits for a running handler", async () => {
    const reported: string[] = [];
    let started = false;
    let finished = false;
    const worker = createMappaWorker({
      ...base,
      handlerTimeoutMs: MAX,
      closeTimeoutMs: MAX,
      onError: (error) => void reported.push(error.message),
      workerOptions: { prefix, lockDuration: 30_000, stalledInterval: 30_000 },
      on: {
        "report.completed": async () => {
          started = true;
          await new Promise((resolve) => setTimeout(resolve, 300));
          finished = true;
        },
      },
    });
    await createQueueHandoff({ queue }).enqueue(
      parseEvent(JSON.stringify(createTestEvent("report.completed"))),
    );
    await waitFor(() => started, 30_000);
    await worker.close();
    // closeTimeoutMs plus the time close() leaves BullMQ is past 2^31−1 ms: a timer that
    // overflowed would fire after 1 ms and give up on the handler.
    expect(finished).toBe(true);
    expect(reported).toEqual([]);
  });
});
