// A Cloudflare Worker built on the adapter, bundled by workerd.test.ts with the `workerd`
// export conditions (so the core's Web Crypto build is the one inside) and run on workerd.
import { cryptoRuntime } from "@mappa-webhooks/core";
import { Hono } from "hono";
import { type MappaWebhookVariables, mappaWebhook } from "../../src/index.js";

const handled = new Map<string, number>();
const count = (id: string | undefined) =>
  handled.set(String(id), (handled.get(String(id)) ?? 0) + 1);
const SECRET = "whsec_workerd_test";

const app = new Hono<{ Variables: MappaWebhookVariables }>();

app.get("/runtime", (c) =>
  c.json({ cryptoRuntime, hasProcess: typeof (globalThis as { process?: unknown }).process }),
);
app.get("/handled/:id", (c) => c.json({ count: handled.get(c.req.param("id")) ?? 0 }));

app.use(
  "/webhooks/mappa",
  mappaWebhook({
    secret: SECRET,
    maxBodyBytes: 1024,
    on: { "report.completed": (event) => void count(event.id) },
    onUnknown: (event) => void count(event.id),
  }),
);

app.use(
  "/webhooks/ack-first",
  mappaWebhook({
    secret: SECRET,
    ack: "first",
    on: {
      "report.completed": async (event) => {
        // Finishes after the response was sent: only waitUntil keeps it alive.
        await new Promise((resolve) => setTimeout(resolve, 50));
        count(event.id);
      },
    },
  }),
);

app.post("/webhooks/next", mappaWebhook({ secret: SECRET, mode: "next" }), async (c) => {
  const body = (await c.req.json()) as { id: string };
  return c.json({ event: c.get("mappaEvent").id, body: body.id });
});

// Signature vectors: each case's clock, secrets and tolerance come in the query string.
const vectorReceivers = new Map<string, ReturnType<typeof mappaWebhook>>();
app.post("/vectors", (c, next) => {
  const query = new URL(c.req.url).search;
  let receiver = vectorReceivers.get(query);
  if (receiver === undefined) {
    const secrets = (c.req.query("secrets") ?? "").split(",");
    receiver = mappaWebhook({
      secret: secrets,
      now: Number(c.req.query("now")),
      toleranceSec: Number(c.req.query("tolerance")),
      idempotency: false,
    });
    vectorReceivers.set(query, receiver);
  }
  return receiver(c, next);
});

export default app;
