// A real Express app receiving Mappa webhooks beside an ordinary JSON API.

import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { mappaWebhook } from "@mappa-webhooks/express";
import { createSqliteIdempotencyStore } from "@mappa-webhooks/sqlite";
import express from "express";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret (e.g. whsec_...).");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

// Handled events are remembered in an SQLite file beside this server (SQLITE_FILE moves it), so
// a restart keeps the dedup. REDIS_URL shares them in Redis between instances; MAPPA_STORE=memory
// keeps them in memory (a restart forgets them). One line at start says which one is used.
async function idempotencyStore() {
  if (process.env.REDIS_URL) {
    const { Redis } = await import("ioredis");
    const { createRedisIdempotencyStore } = await import("@mappa-webhooks/redis");
    const client = new Redis(process.env.REDIS_URL);
    const { host: server } = new URL(process.env.REDIS_URL);
    console.log(`store: Redis at ${server} (REDIS_URL), shared by every instance`);
    return { idempotency: createRedisIdempotencyStore({ client }), close: () => client.quit() };
  }
  if (process.env.MAPPA_STORE === "memory") {
    console.log("store: memory (MAPPA_STORE=memory): a restart forgets handled events");
    return {};
  }
  const file = process.env.SQLITE_FILE
    ? resolve(process.env.SQLITE_FILE)
    : fileURLToPath(new URL("mappa-webhooks.db", import.meta.url));
  const idempotency = createSqliteIdempotencyStore({ database: file });
  try {
    const { driver } = await idempotency.ready();
    console.log(`store: SQLite ${file} (${driver}): a restart keeps the dedup`);
    return { idempotency, close: () => idempotency.close() };
  } catch (error) {
    // Never a crash for want of SQLite: the core's memory store works everywhere.
    console.log(`store: memory, a restart forgets handled events: ${sqliteProblem(error)}`);
    return {};
  }
}

/** Why SQLite did not open, in one line, with the fix. */
function sqliteProblem(error) {
  const message = error instanceof Error ? error.message : String(error);
  if (/bindings file|could not be loaded|not available here|NODE_MODULE_VERSION/.test(message)) {
    return "no SQLite driver here (Node 22.13+ and 24 have node:sqlite; on Node 20 install better-sqlite3 12: npm install better-sqlite3)";
  }
  return message.split("\n")[0];
}
const { close: closeStore, ...storeOptions } = await idempotencyStore();

const app = express();

// 1. The webhook first: it verifies the raw bytes, so it must see the body before any parser.
//    (Or keep a global parser first with `express.json({ verify: rawBodySaver })`.)
app.use(
  mappaWebhook({
    secret,
    ...storeOptions,
    on: {
      "report.completed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} report=${event.data.reportId}`,
        );
      },
      "report.failed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} error=${event.data.error.code}`,
        );
      },
      "matching.completed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} matching=${event.data.matchingId}`,
        );
      },
      "matching.failed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} error=${event.data.error.code}`,
        );
      },
    },
    onUnknown: (event) => {
      console.log(
        `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} (not a known type, ignored)`,
      );
    },
    onError: (error, info) => {
      console.error(`[mappa:error] ${error.code} in ${info.phase}: ${error.message}`);
    },
  }),
);

// 2. The JSON parsing the rest of the app needs.
app.use(express.json());
app.post("/api/echo", (req, res) => {
  res.json({ echo: req.body });
});

const server = app.listen(port, host, () => {
  console.log(`listening on http://${host}:${server.address().port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () =>
    server.close(async () => {
      await closeStore?.();
      process.exit(0);
    }),
  );
}
