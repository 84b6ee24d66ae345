// The test Worker: the Hono adapter with the Durable Object store, and the object itself.
import { mappaWebhook } from "@mappa-webhooks/hono";
import { Hono, type MiddlewareHandler } from "hono";
import {
  createDurableObjectIdempotencyStore,
  type DurableObjectIdempotencyStore,
  type DurableObjectNamespaceLike,
} from "../../src/index.js";

export { MappaIdempotencyObject } from "../../src/index.js";

interface Env {
  MAPPA_IDEMPOTENCY: DurableObjectNamespaceLike;
}

const SECRET = "whsec_cloudflare_test";

/** Handler runs by report id (one isolate in Miniflare: module state is shared). */
const runs = new Map<string, number>();
const failed = new Set<string>();
const open = new Set<string>();

const app = new Hono<{ Bindings: Env }>();
let store: DurableObjectIdempotencyStore | undefined;
// Made on the first request (the binding is in `env`), then reused by every later one: the
// store keeps no I/O object of the request that made it.
let receiver: MiddlewareHandler | undefined;
const storeOf = (env: Env) => {
  store ??= createDurableObjectIdempotencyStore(env.MAPPA_IDEMPOTENCY);
  return store;
};

app.all("/webhooks/mappa", (c, next) => {
  receiver ??= mappaWebhook({
    secret: SECRET,
    idempotency: storeOf(c.env),
    on: {
      "report.completed": async (event) => {
        const id = event.data.reportId;
        runs.set(id, (runs.get(id) ?? 0) + 1);
        // Held until the test opens its gate (bounded), so copies arrive while it runs.
        for (let waited = 0; id.startsWith("rep_gated") && !open.has(id) && waited < 30_000; ) {
          await new Promise((resolve) => setTimeout(resolve, 10));
          waited += 10;
        }
        if (id.startsWith("rep_fail_once") && !failed.has(id)) {
          failed.add(id);
          throw new Error("the first attempt fails");
        }
      },
    },
  });
  return receiver(c, next);
});

app.post("/open/:id", (c) => {
  open.add(c.req.param("id"));
  return c.json({ open: c.req.param("id") });
});

app.get("/runs/:id", (c) => c.json({ runs: runs.get(c.req.param("id")) ?? 0 }));

app.post("/track/:jobId", async (c) => {
  await storeOf(c.env).track(c.req.param("jobId"), { trackedAt: Number(c.req.query("at") ?? 1) });
  return c.json({ tracked: c.req.param("jobId") });
});

app.get("/tracked", async (c) => {
  const after = c.req.query("after");
  const limit = Number(c.req.query("limit") ?? 100);
  return c.json(await storeOf(c.env).tracked(after === undefined ? { limit } : { limit, after }));
});

app.get("/bad-binding", (c) => {
  try {
    createDurableObjectIdempotencyStore(
      (c.env as unknown as Record<string, DurableObjectNamespaceLike>)
        .MISSING as DurableObjectNamespaceLike,
    );
    return c.json({ error: null });
  } catch (error) {
    const { code, message } = error as { code: string; message: string };
    return c.json({ code, message });
  }
});

export default app;
