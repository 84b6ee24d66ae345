// A real Fastify app receiving Mappa webhooks beside an ordinary JSON API.

import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { mappaWebhookPlugin } from "@mappa-webhooks/fastify";
import { createSqliteIdempotencyStore } from "@mappa-webhooks/sqlite";
import Fastify from "fastify";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret (e.g. whsec_...).");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

// Handled events are remembered in an SQLite file beside this server (SQLITE_FILE moves it), so
// a restart keeps the dedup; MAPPA_STORE=memory keeps them in memory (a restart forgets them).
// One line at start says which one is used.
async function idempotencyStore() {
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

// Fastify waits forever for a slow request unless told otherwise. The webhook route has its own
// deadline (`bodyTimeoutMs`, 10 s by default: a stalled body gets 408); this one covers the rest
// of the app.
const app = Fastify({ requestTimeout: 30_000 });

// The plugin's raw-body parser is scoped to POST /webhooks/mappa; every other route keeps
// Fastify's JSON parser.
await app.register(mappaWebhookPlugin, {
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
});

app.post("/api/echo", async (request) => ({ echo: request.body }));

await app.listen({ port, host });
console.log(`listening on http://${host}:${app.server.address().port}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () =>
    app
      .close()
      .then(() => closeStore?.())
      .then(() => process.exit(0)),
  );
}
