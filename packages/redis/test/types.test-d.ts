import { createMappaWebhooks, type IdempotencyStore } from "@mappa-webhooks/core";
import { type Job, Queue } from "bullmq";
import { Queue as Queue5 } from "bullmq5";
import { Queue as Queue6 } from "bullmq6";
import { type Cluster, Redis } from "ioredis";
import { type Cluster as Cluster5, Redis as Redis5 } from "ioredis5";
import { type Cluster as Cluster6, Redis as Redis6 } from "ioredis6";
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
    expectTypeOf(store.renew).returns.toEqualTypeOf<Promise<boolean>>();
  });

  it("accepts the clients of both supported ioredis majors", () => {
    expectTypeOf<Redis5>().toExtend<IoRedisLikeClient>();
    expectTypeOf<Cluster5>().toExtend<IoRedisLikeClient>();
    expectTypeOf<Redis6>().toExtend<IoRedisLikeClient>();
    expectTypeOf<Cluster6>().toExtend<IoRedisLikeClient>();
    createRedisIdempotencyStore({ client: new Redis5({ lazyConnect: true }) });
    createRedisIdempotencyStore({ client: new Redis6({ lazyConnect: true }) });
  });

  it("takes a Queue of both supported BullMQ majors", () => {
    createQueueHandoff({ queue: new Queue5("mappa-webhooks", { connection: {} }) });
    createQueueHandoff({ queue: new Queue6("mappa-webhooks", { connection: {} }) });
    // An app's ioredis 6 client as BullMQ 6's connection, as the README shows.
    new Queue6("mappa-webhooks", { connection: new Redis6({ maxRetriesPerRequest: null }) });
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
