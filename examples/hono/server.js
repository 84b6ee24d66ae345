// `pnpm start`: the example on Node. PORT (default 3000, 0 picks a free port), HOST (default
// 127.0.0.1) and MAPPA_WEBHOOK_SECRET come from the environment.
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { createSqliteIdempotencyStore } from "@mappa-webhooks/sqlite";
import { createApp } from "./src/app.js";

const hostname = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT ?? 3000);
const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret.");
  process.exit(1);
}

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

// The Worker (worker.js) keeps the memory store: workerd has no SQLite file.
const server = serve({ fetch: createApp(secret, storeOptions).fetch, port, hostname }, (info) => {
  console.log(`listening on http://${hostname}:${info.port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () =>
    server.close(async () => {
      await closeStore?.();
      process.exit(0);
    }),
  );
}
