// The Hono app, shared by the Node server (server.js) and the Worker (worker.js).
import { mappaWebhook } from "@mappa-webhooks/hono";
import { Hono } from "hono";

/** @param {{ type: string, idempotencyKey: string | undefined }} event */
function log(event) {
  console.log(`[mappa] ${event.type} ${event.idempotencyKey}`);
}

/**
 * @param {string} secret the endpoint's signing secret
 * @param {{ ack?: "after-handlers" | "first" }} [options]
 */
export function createApp(secret, options = {}) {
  const app = new Hono();

  // Verifies, deduplicates, runs the handlers and answers; other methods get 405.
  app.use(
    "/webhooks/mappa",
    mappaWebhook({
      secret,
      ...options,
      on: {
        "report.completed": (event) => log(event), // event.data.reportId is typed
        "report.failed": (event) => log(event),
        "matching.completed": (event) => log(event),
        "matching.failed": (event) => log(event),
      },
      onUnknown: (event) => log(event),
    }),
  );

  // An ordinary JSON route beside the webhook.
  app.post("/api/echo", async (c) => c.json({ echo: await c.req.json() }));

  return app;
}
