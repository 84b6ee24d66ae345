// A minimal receiver on @mappa-webhooks/core that follows the examples' contract (PORT, HOST,
// MAPPA_WEBHOOK_SECRET; `listening on …`; one `[mappa] <type> <id> …` line per handled event,
// its id or, for an id-less event, its idempotency key, here with the fields worth a glance:
// `job=… report=… status=succeeded`). Duplicates are recognised by the idempotency key, in an
// SQLite file as in the examples (SQLITE_FILE, default ./mappa-webhooks.db; MAPPA_STORE=memory
// or no SQLite driver: the core's memory store), announced by one `store: …` line.
// The demo falls back to it when examples/express is not available.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import {
  createMappaWebhooks,
  type IdempotencyStore,
  readBodyWithLimit,
} from "@mappa-webhooks/core";
import { formatKeyData, keyData } from "./explain.js";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (secret === undefined || secret === "") {
  process.stderr.write("demo-receiver: set MAPPA_WEBHOOK_SECRET\n");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

/** The SQLite store and how to close it, or nothing (the core's memory store). */
async function idempotencyStore(): Promise<
  { idempotency: IdempotencyStore; close: () => Promise<void> } | undefined
> {
  if (process.env.MAPPA_STORE === "memory") {
    process.stdout.write("store: memory (MAPPA_STORE=memory): a restart forgets handled events\n");
    return undefined;
  }
  const file = resolve(process.env.SQLITE_FILE || "mappa-webhooks.db");
  try {
    const { createSqliteIdempotencyStore } = await import("@mappa-webhooks/sqlite");
    const idempotency = createSqliteIdempotencyStore({ database: file });
    const { driver } = await idempotency.ready();
    process.stdout.write(`store: SQLite ${file} (${driver}): a restart keeps the dedup\n`);
    return { idempotency, close: () => idempotency.close() };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const reason = /bindings file|could not be loaded|not available here|NODE_MODULE_VERSION/.test(
      message,
    )
      ? "no SQLite driver here (Node 22.13+ and 24 have node:sqlite; on Node 20 install better-sqlite3 12: npm install better-sqlite3)"
      : (message.split("\n")[0] ?? message);
    process.stdout.write(`store: memory, a restart forgets handled events: ${reason}\n`);
    return undefined;
  }
}

const store = await idempotencyStore();
const webhooks = createMappaWebhooks({
  secret,
  ...(store === undefined ? {} : { idempotency: store.idempotency }),
});
webhooks.onAny((event) => {
  const fields = formatKeyData(keyData(event));
  const note = event.known ? "" : " (not a known type, ignored)";
  process.stdout.write(
    `[mappa] ${event.type} ${event.id ?? event.idempotencyKey ?? "-"}${fields === "" ? "" : ` ${fields}`}${note}\n`,
  );
});

const server = createServer(async (req, res) => {
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  try {
    const rawBody = await readBodyWithLimit(req, webhooks.maxBodyBytes);
    if (path === "/webhooks/mappa") {
      const result = await webhooks.handle({
        method: req.method ?? "GET",
        headers: req.headers,
        rawBody,
      });
      res.writeHead(result.status, result.headers).end(result.body);
    } else if (path === "/api/echo" && req.method === "POST") {
      const echo = JSON.parse(new TextDecoder().decode(rawBody)) as unknown;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ echo }));
    } else {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not_found"}');
    }
  } catch (error) {
    const result = webhooks.errorResponse(error);
    res.writeHead(result.status, result.headers).end(result.body);
  }
});
server.listen(port, host, () => {
  const address = server.address() as AddressInfo;
  process.stdout.write(`listening on http://${host}:${address.port}\n`);
});
const stop = () =>
  server.close(async () => {
    await store?.close();
    process.exit(0);
  });
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
