// One receiver of the Postgres benchmark in its own process: `node postgres/server.mjs <variant>`.
// Listens on 127.0.0.1:0, reports `{ type: "ready", port }` over IPC, exits when the parent
// disconnects. Every variant is Express + @mappa-webhooks/express, answering 200 once done:
//   memory         the default receiver: in-memory idempotency store, a no-op handler
//   inbox          inbox mode: duplicate check (SELECT) + one INSERT ... ON CONFLICT with NOTIFY
//   inbox-insert   diagnostic: the insert only (no duplicate check, so no `duplicate` flag)
//   inbox-nowait   diagnostic: inbox with synchronous_commit = off (no wait for the WAL flush;
//                  NOT durable, shows what the flush costs)
// Env: DATABASE_URL, BENCH_SCHEMA, BENCH_POOL_MAX (10).
import { mappaWebhook } from "@mappa-webhooks/express";
import { createInbox } from "@mappa-webhooks/postgres";
import express from "express";
import pg from "pg";
import { SECRET, WEBHOOK_PATH } from "../lib/fixtures.mjs";

const [variant] = process.argv.slice(2);
const { DATABASE_URL, BENCH_SCHEMA } = process.env;
const max = Number(process.env.BENCH_POOL_MAX ?? 10);

let options;
let pool;
if (variant === "memory") {
  options = { secret: SECRET, on: { "report.completed": () => {} } };
} else if (variant.startsWith("inbox")) {
  pool = new pg.Pool({
    connectionString: DATABASE_URL,
    max,
    ...(variant === "inbox-nowait" ? { options: "-c synchronous_commit=off" } : {}),
  });
  pool.on("error", () => {});
  const inbox = createInbox({ pool, schema: BENCH_SCHEMA });
  options = { secret: SECRET, ...inbox.receiverOptions };
  if (variant === "inbox-insert") options.idempotency = false;
} else throw new Error(`unknown variant ${variant}`);

const app = express();
app.disable("x-powered-by");
app.use(mappaWebhook({ ...options, path: WEBHOOK_PATH }));
const server = app.listen(0, "127.0.0.1");
await new Promise((resolve, reject) => server.once("listening", resolve).once("error", reject));
process.send({ type: "ready", port: server.address().port });
process.on("disconnect", async () => {
  server.close();
  server.closeAllConnections();
  await pool?.end();
  process.exit(0);
});
