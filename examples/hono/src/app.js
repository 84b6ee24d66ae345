// The Hono app, shared by the Node server (server.js) and the Worker (worker.js).
import { mappaWebhook } from "@mappa-webhooks/hono";
import { Hono } from "hono";

/**
 * @param {string} secret the endpoint's signing secret
 * @param {{ ack?: "after-handlers" | "first" }} [options]
 */
export function createApp(secret, options = {}) {
  const app = new Hono();

  // Verifies, deduplicates, runs the handlers and answers. `app.all` hands it every method,
  // so anything but POST gets the JSON 405 (with `app.post`, Hono would answer 404).
  app.all(
    "/webhooks/mappa",
    mappaWebhook({
      secret,
      ...options,
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
      // Rejected deliveries (a wrong secret, a stale timestamp, ...) and failures, one line each.
      onError: (error, info) => {
        console.error(`[mappa:error] ${error.code} in ${info.phase}: ${error.message}`);
      },
    }),
  );

  // An ordinary JSON route beside the webhook.
  app.post("/api/echo", async (c) => c.json({ echo: await c.req.json() }));

  return app;
}
