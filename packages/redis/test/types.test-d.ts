import { createMappaWebhooks, type IdempotencyStore } from "@mappa-webhooks/core";
import { type Job, Queue } from "bullmq";
import { type Cluster, Redis } from "ioredis";
import { describe, expectTypeOf, it } from "vitest";
import { createRedisIdempotencyStore, type IoRedisLikeClient } from "../src/index.js";
import { createMappaWorker, createQueueHandoff, type MappaJobData } from "../src/queue.js";

describe("types", () => {
  it("accepts ioredis Redis and Cluster clients as they are", () => {
    expectTypeOf<Redis>().toExtend<IoRedisLikeClient>();
    expectTypeOf<Cluster>().toExtend<IoRedisLikeClient>();
    const store = createRedisIdempotencyStore({ client: new Redis({ lazyConnect: true }) });
    expectTypeOf(store).toExtend<IdempotencyStore>();
    // @ts-expect-error a client is required
    createRedisIdempotencyStore({ prefix: "x" });
  });

  it("plugs the hand-off into any receiver's options", () => {
    const queue = new Queue("mappa-webhooks", { connection: {} });
    const handoff = createQueueHandoff({ queue });
    createMappaWebhooks({ secret: "whsec_x", ...handoff.handlers });
    // Also into a receiver whose handlers get a framework context.
    createMappaWebhooks<{ req: Request }>({ secret: "whsec_x", ...handoff.handlers });
  });

  it("narrows the worker's handlers by event type and passes the job", () => {
    createMappaWorker({
      queueName: "mappa-webhooks",
      connection: {},
      on: {
        "report.completed": (event, job) => {
          expectTypeOf(event.data.reportId).toEqualTypeOf<string>();
          expectTypeOf(job).toEqualTypeOf<Job<MappaJobData>>();
        },
        "matching.failed": (event) => {
          expectTypeOf(event.data.error.code).toEqualTypeOf<string>();
          // @ts-expect-error a failed matching has no typed matchingId
          expectTypeOf(event.data.matchingId).toEqualTypeOf<string>();
        },
      },
    });
  });
});
