// The other half of MODE=queue: a BullMQ worker running the typed handlers, with retries and
// backoff. Run as many as you like; a job whose worker dies is picked up by another.
import { createMappaWorker } from "@mappa-webhooks/redis/queue";
import { Redis } from "ioredis";

const connection = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", {
  maxRetriesPerRequest: null,
});
const log = (event, detail) =>
  console.log(`[mappa] ${event.type} ${event.idempotencyKey} ${detail} (worker ${process.pid})`);

const keyPrefix = process.env.KEY_PREFIX ?? "mappa-webhooks";
const worker = createMappaWorker({
  queueName: "mappa-webhooks",
  connection,
  workerOptions: { prefix: `${keyPrefix}:bull` },
  concurrency: 5,
  on: {
    "report.completed": (event) => log(event, `report=${event.data.reportId}`),
    "report.failed": (event) => log(event, `error=${event.data.error.code}`),
    "matching.completed": (event) => log(event, `matching=${event.data.matchingId}`),
    "matching.failed": (event) => log(event, `error=${event.data.error.code}`),
  },
  onUnknown: (event) => log(event, "(not a known type, ignored)"),
});
worker.on("failed", (job, error) => {
  console.error(`[worker] job ${job?.id} attempt ${job?.attemptsMade} failed: ${error.message}`);
});
await worker.waitUntilReady();
console.log(`worker ready (queue "mappa-webhooks", pid ${process.pid})`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await worker.close();
    connection.disconnect();
    process.exit(0);
  });
}
