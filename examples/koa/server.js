// A real Koa app receiving Mappa webhooks beside an ordinary JSON API.

import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bodyParser } from "@koa/bodyparser";
import Router from "@koa/router";
import { mappaWebhook } from "@mappa-webhooks/koa";
import { createSqliteIdempotencyStore } from "@mappa-webhooks/sqlite";
import Koa from "koa";

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

const app = new Koa();

// 1. The webhook first: it verifies the raw bytes, so it must see the body before any parser.
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

// 2. The body parsing and routes the rest of the app needs.
app.use(bodyParser());
const router = new Router();
router.post("/api/echo", (ctx) => {
  ctx.body = { echo: ctx.request.body };
});
app.use(router.routes());
app.use(router.allowedMethods());

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
