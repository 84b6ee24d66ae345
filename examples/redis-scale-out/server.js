// One instance of an Express receiver that can run many times side by side: every instance
// dedupes through the same Redis, so a retried or duplicated event is handled once overall.
// MODE=queue hands each event to a BullMQ queue instead (run `pnpm worker` to handle them).
import { mappaWebhook } from "@mappa-webhooks/express";
import { createRedisIdempotencyStore } from "@mappa-webhooks/redis";
import express from "express";
import { Redis } from "ioredis";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret (e.g. whsec_...).");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const instance = process.env.INSTANCE ?? `pid ${process.pid}`;
const queueMode = process.env.MODE === "queue";
// Lets several apps (or test runs) share one Redis; keys are `<prefix>:{<event key>}`.
const keyPrefix = process.env.KEY_PREFIX ?? "mappa-webhooks";

const redis = new Redis(redisUrl);
redis.on("error", (error) => console.error(`[redis] ${error.message}`));
const idempotency = createRedisIdempotencyStore({ client: redis, prefix: keyPrefix });

const log = (event, detail) =>
  console.log(`[mappa] ${event.type} ${event.idempotencyKey} ${detail} (handled by ${instance})`);

/** Inline mode: the handlers run in the request; 200 once they finished. */
const inlineHandlers = {
  on: {
    "report.completed": (event) => log(event, `report=${event.data.reportId}`),
    "report.failed": (event) => log(event, `error=${event.data.error.code}`),
    "matching.completed": (event) => log(event, `matching=${event.data.matchingId}`),
    "matching.failed": (event) => log(event, `error=${event.data.error.code}`),
  },
  onUnknown: (event) => log(event, "(not a known type, ignored)"),
};

/** Queue mode: the only handler enqueues; 200 once Redis stored the job. */
async function queueHandlers() {
  const { Queue } = await import("bullmq");
  const { createQueueHandoff } = await import("@mappa-webhooks/redis/queue");
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue("mappa-webhooks", { connection, prefix: `${keyPrefix}:bull` });
  const handoff = createQueueHandoff({ queue });
  const enqueueAndLog = async (event) => {
    const jobId = await handoff.enqueue(event);
    log(event, `queued as job ${jobId}`);
  };
  const on = {};
  for (const type of Object.keys(handoff.handlers.on)) on[type] = enqueueAndLog;
  return { on, onUnknown: enqueueAndLog };
}

const app = express();
// Mounted with app.use, the adapter owns its path for every method: POST is a delivery, any
// other method is answered 405 {"error":"method_not_allowed", ...}; other paths go on to next().
app.use(
  mappaWebhook({
    path: "/webhooks/mappa",
    secret,
    idempotency,
    ...(queueMode ? await queueHandlers() : inlineHandlers),
    onError: (error, info) => {
      console.error(`[mappa:error] ${error.code} in ${info.phase}: ${error.message}`);
    },
  }),
);
app.use(express.json());
app.post("/api/echo", (req, res) => {
  res.json({ echo: req.body });
});

const server = app.listen(port, host, () => {
  console.log(`listening on http://${host}:${server.address().port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    redis.disconnect();
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
