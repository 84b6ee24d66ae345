// A real Express app receiving Mappa webhooks beside an ordinary JSON API.

import { mappaWebhook } from "@mappa-webhooks/express";
import express from "express";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret (e.g. whsec_...).");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

// One instance keeps handled events in memory; several instances share Redis (REDIS_URL).
async function idempotencyStore() {
  if (!process.env.REDIS_URL) return {};
  const { Redis } = await import("ioredis");
  const { createRedisIdempotencyStore } = await import("@mappa-webhooks/redis");
  return { idempotency: createRedisIdempotencyStore({ client: new Redis(process.env.REDIS_URL) }) };
}

const app = express();

// 1. The webhook first: it verifies the raw bytes, so it must see the body before any parser.
//    (Or keep a global parser first with `express.json({ verify: rawBodySaver })`.)
app.use(
  mappaWebhook({
    secret,
    ...(await idempotencyStore()),
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
  process.on(signal, () => server.close(() => process.exit(0)));
}
