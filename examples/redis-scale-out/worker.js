// The other half of MODE=queue: a BullMQ worker running the typed handlers, with retries and
// backoff. Run as many as you like; a job whose worker dies is picked up by another, and that
// try counts against the job's attempts (10), so a job that keeps killing workers is parked.
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
  // A handler still running after a minute fails its attempt (handler_timeout) and is retried.
  handlerTimeoutMs: 60_000,
  // On SIGTERM, running handlers get 10 s before their attempts are failed and retried elsewhere.
  closeTimeoutMs: 10_000,
  onError: (error, info) =>
    console.error(
      info.phase === "handler"
        ? `[worker] job ${info.job.id} attempt failed${info.final ? " (last one: parked)" : ""}: ${error.message}`
        : `[worker] ${error.message}`,
    ),
  on: {
    "report.completed": (event) => log(event, `report=${event.data.reportId}`),
    "report.failed": (event) => log(event, `error=${event.data.error.code}`),
    "matching.completed": (event) => log(event, `matching=${event.data.matchingId}`),
    "matching.failed": (event) => log(event, `error=${event.data.error.code}`),
  },
  onUnknown: (event) => log(event, "(not a known type, ignored)"),
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
