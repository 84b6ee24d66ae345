// A durable Mappa webhook inbox on Postgres: the receiver stores each verified event and
// answers 200 once the insert committed; the worker runs the handlers, each in a transaction
// with the event's done mark, retries failures and parks an event as failed after the last
// attempt (replay it with `mappa-webhooks-postgres replay`). One process runs both by default;
// ROLE=receiver or ROLE=worker runs one of them.
import { mappaWebhook } from "@mappa-webhooks/express";
import {
  createInbox,
  createInboxWorker,
  exponentialBackoff,
  migrate,
} from "@mappa-webhooks/postgres";
import express from "express";
import pg from "pg";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
const role = process.env.ROLE ?? "both";
if (!secret && role !== "worker") {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret (e.g. whsec_...).");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";
const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
// Where the inbox lives (and this example's own table); default mappa_webhooks.
const schema = process.env.MAPPA_SCHEMA ?? "mappa_webhooks";
// For trying failures out: a comma-separated list of event types whose handler throws.
const failTypes = new Set((process.env.FAIL_TYPES ?? "").split(",").filter(Boolean));
const maxAttempts = Number(process.env.MAX_ATTEMPTS ?? 5);
const retryMs = Number(process.env.RETRY_MS ?? 1000);

const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
pool.on("error", (error) => console.error(`[postgres] ${error.message}`));

// The inbox's tables, and the table the handlers write to: safe at every start.
await migrate({ pool, schema });
const reports = `"${schema.replace(/"/g, '""')}".example_reports`;
await pool.query(`CREATE TABLE IF NOT EXISTS ${reports} (
  event_key text PRIMARY KEY, type text NOT NULL, detail text, handled_at timestamptz DEFAULT now())`);

/** The app's handler: one row per event, written in the event's transaction. */
async function save(event, client, detail) {
  if (failTypes.has(event.type)) throw new Error(`FAIL_TYPES makes ${event.type} fail`);
  await client.query(`INSERT INTO ${reports} (event_key, type, detail) VALUES ($1, $2, $3)`, [
    event.idempotencyKey,
    event.type,
    detail,
  ]);
  console.log(`[mappa] ${event.type} ${event.id ?? event.idempotencyKey} ${detail}`);
}

let server;
if (role !== "worker") {
  const inbox = createInbox({ pool, schema });
  const app = express();
  // POST /webhooks/mappa (other methods get 405); before any body parser.
  app.use(
    mappaWebhook({
      secret,
      ...inbox.receiverOptions,
      onError: (error, info) => console.error(`[mappa:error] ${error.code} in ${info.phase}`),
    }),
  );
  // The app's other routes parse JSON as usual.
  app.use(express.json());
  app.post("/api/echo", (req, res) => {
    res.json({ echo: req.body });
  });
  server = app.listen(port, host, () => {
    console.log(`listening on http://${host}:${server.address().port}`);
  });
}

let worker;
if (role !== "receiver") {
  worker = createInboxWorker({
    pool,
    schema,
    concurrency: 2,
    maxAttempts,
    backoff: exponentialBackoff(retryMs),
    on: {
      "report.completed": (event, client) => save(event, client, `report=${event.data.reportId}`),
      "report.failed": (event, client) => save(event, client, `error=${event.data.error.code}`),
      "matching.completed": (event, client) =>
        save(event, client, `matching=${event.data.matchingId}`),
      "matching.failed": (event, client) => save(event, client, `error=${event.data.error.code}`),
    },
    onError: (error, info) => {
      if (info.outcome === "retry") {
        console.log(`[retry] ${info.key} attempt ${info.attempts} failed: ${error.message}`);
      } else if (info.outcome === "failed") {
        console.log(
          `[failed] ${info.key} parked after ${info.attempts} attempts: ${error.message}`,
        );
      } else console.error(`[worker] ${error.message}`);
    },
  });
  await worker.ready;
  console.log(`worker ready (${maxAttempts} attempts per event)`);
}

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    server?.close();
    server?.closeAllConnections();
    await worker?.close();
    await pool.end();
    process.exit(0);
  });
}
