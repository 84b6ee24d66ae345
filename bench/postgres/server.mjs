// One receiver of the Postgres benchmark in its own process: `node postgres/server.mjs <variant>`.
// Listens on 127.0.0.1:0, reports `{ type: "ready", port }` over IPC, answers
// `{ type: "stats" }` with `{ type: "stats", inserts }` (the INSERT statements its pool sent),
// exits when the parent disconnects. Every variant is Express + @mappa-webhooks/express,
// answering 200 once done:
//   memory           the default receiver: in-memory idempotency store, a no-op handler
//   inbox            inbox mode with group commit (the default): concurrent deliveries share
//                    one prepared INSERT ... SELECT FROM json_to_recordset(...) ON CONFLICT
//                    (and the untrack of its jobs) and its commit; then a wake-up NOTIFY
//   inbox-ungrouped  inbox mode, `groupCommit: false`: one INSERT ... ON CONFLICT per delivery
//   transactional    createTransactionalHandlers, a no-op handler: BEGIN, the event's lock,
//                    the done check, the done mark, COMMIT per delivery
//   inbox-nowait     diagnostic: grouped inbox with synchronous_commit = off (no wait for the
//                    WAL flush; NOT durable, shows what the flush costs)
//   inbox-nonotify   diagnostic: grouped inbox with `notify: false` (no wake-up NOTIFY;
//                    workers would poll)
//   inbox-inflight1, inbox-inflight4
//                    diagnostic: grouped inbox with `groupCommit: { maxInFlight: 1 | 4 }`
// Env: DATABASE_URL, BENCH_SCHEMA, BENCH_POOL_MAX (10), BENCH_PG_GROUP_COMMIT (the inbox's
// `groupCommit` option as JSON, e.g. {"maxInFlight":4}; default: the package's default).
import { mappaWebhook } from "@mappa-webhooks/express";
import { createInbox, createTransactionalHandlers } from "@mappa-webhooks/postgres";
import express from "express";
import pg from "pg";
import { SECRET, WEBHOOK_PATH } from "../lib/fixtures.mjs";

const [variant] = process.argv.slice(2);
const { DATABASE_URL, BENCH_SCHEMA } = process.env;
const max = Number(process.env.BENCH_POOL_MAX ?? 10);

let options;
let pool;
let inserts = 0;
if (variant === "memory") {
  options = { secret: SECRET, on: { "report.completed": () => {} } };
} else if (variant.startsWith("inbox") || variant === "transactional") {
  pool = new pg.Pool({
    connectionString: DATABASE_URL,
    max,
    ...(variant === "inbox-nowait" ? { options: "-c synchronous_commit=off" } : {}),
  });
  pool.on("error", () => {});
  const query = pool.query.bind(pool);
  // Counts INSERT statements, sent as text or (prepared) as pg's `{ name, text, values }`.
  pool.query = (text, values) => {
    const sql = typeof text === "string" ? text : text?.text;
    if (typeof sql === "string" && sql.includes("INSERT INTO")) inserts++;
    return query(text, values);
  };
  if (variant === "transactional") {
    const tx = createTransactionalHandlers({
      pool,
      schema: BENCH_SCHEMA,
      on: { "report.completed": async () => {} },
    });
    options = { secret: SECRET, ...tx.receiverOptions };
  } else {
    const inbox = createInbox({
      pool,
      schema: BENCH_SCHEMA,
      ...(variant === "inbox-nonotify" ? { notify: false } : {}),
      ...(variant === "inbox-ungrouped"
        ? { groupCommit: false }
        : variant.startsWith("inbox-inflight")
          ? { groupCommit: { maxInFlight: Number(variant.slice("inbox-inflight".length)) } }
          : process.env.BENCH_PG_GROUP_COMMIT
            ? { groupCommit: JSON.parse(process.env.BENCH_PG_GROUP_COMMIT) }
            : {}),
    });
    options = { secret: SECRET, ...inbox.receiverOptions };
  }
} else throw new Error(`unknown variant ${variant}`);

const app = express();
app.disable("x-powered-by");
app.use(mappaWebhook({ ...options, path: WEBHOOK_PATH }));
const server = app.listen(0, "127.0.0.1");
await new Promise((resolve, reject) => server.once("listening", resolve).once("error", reject));
process.send({ type: "ready", port: server.address().port });
process.on("message", (message) => {
  if (message?.type === "stats") process.send({ type: "stats", inserts });
});
process.on("disconnect", async () => {
  server.close();
  server.closeAllConnections();
  await pool?.end();
  process.exit(0);
});
