// One inbox worker process of the drain benchmark: `node postgres/worker.mjs`. Each event's
// handler writes one row in the event's transaction. Reports `{ type: "ready" }` over IPC and
// `{ type: "stats", done }` when asked; exits when the parent disconnects.
// Env: DATABASE_URL, BENCH_SCHEMA, BENCH_WORKER_CONCURRENCY (4), BENCH_WORKER_BATCH (1).
import { createInboxWorker } from "@mappa-webhooks/postgres";
import pg from "pg";

const { DATABASE_URL, BENCH_SCHEMA } = process.env;
const concurrency = Number(process.env.BENCH_WORKER_CONCURRENCY ?? 4);
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: concurrency + 1 });
pool.on("error", () => {});
const effects = `"${BENCH_SCHEMA}".effects`;
const write = (event, client) =>
  client.query(`INSERT INTO ${effects} (event_key) VALUES ($1)`, [event.idempotencyKey]);

const worker = createInboxWorker({
  pool,
  schema: BENCH_SCHEMA,
  concurrency,
  batchSize: Number(process.env.BENCH_WORKER_BATCH ?? 1),
  pollIntervalMs: 1000,
  on: { "report.completed": write },
});
await worker.ready;
process.send({ type: "ready" });
process.on("message", (message) => {
  if (message?.type === "stats") process.send({ type: "stats", done: worker.stats.done });
});
process.on("disconnect", async () => {
  await worker.close();
  await pool.end();
  process.exit(0);
});
