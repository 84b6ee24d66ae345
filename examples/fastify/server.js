// A real Fastify app receiving Mappa webhooks beside an ordinary JSON API.

import { mappaWebhookPlugin } from "@mappa-webhooks/fastify";
import Fastify from "fastify";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret (e.g. whsec_...).");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

// Fastify waits forever for a slow request unless told otherwise. The webhook route has its own
// deadline (`bodyTimeoutMs`, 10 s by default: a stalled body gets 408); this one covers the rest
// of the app.
const app = Fastify({ requestTimeout: 30_000 });

// The plugin's raw-body parser is scoped to POST /webhooks/mappa; every other route keeps
// Fastify's JSON parser.
await app.register(mappaWebhookPlugin, {
  secret,
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
  process.on(signal, () => app.close().then(() => process.exit(0)));
}
