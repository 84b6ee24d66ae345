// The test Worker: the Hono adapter with the Durable Object store (and the object itself) at
// /webhooks/mappa, and with the D1 store at /d1/webhooks/mappa.
import { mappaWebhook } from "@mappa-webhooks/hono";
import { Hono, type MiddlewareHandler } from "hono";
import {
  createD1IdempotencyStore,
  createDurableObjectIdempotencyStore,
  type D1DatabaseLike,
  type DurableObjectIdempotencyStore,
  type DurableObjectNamespaceLike,
} from "../../src/index.js";

export { MappaIdempotencyObject } from "../../src/index.js";

interface Env {
  MAPPA_IDEMPOTENCY: DurableObjectNamespaceLike;
  DB: D1DatabaseLike;
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
let d1Receiver: MiddlewareHandler | undefined;
const storeOf = (env: Env) => {
  store ??= createDurableObjectIdempotencyStore(env.MAPPA_IDEMPOTENCY);
  return store;
};

const handlers = {
  "report.completed": async (event: { data: { reportId: string } }) => {
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
};

app.all("/webhooks/mappa", (c, next) => {
  receiver ??= mappaWebhook({ secret: SECRET, idempotency: storeOf(c.env), on: handlers });
  return receiver(c, next);
});

app.all("/d1/webhooks/mappa", (c, next) => {
  d1Receiver ??= mappaWebhook({
    secret: SECRET,
    idempotency: createD1IdempotencyStore({ database: c.env.DB }),
    on: handlers,
  });
  return d1Receiver(c, next);
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

// The D1 binding for the tests in Node: each call of a D1DatabaseLike there is one POST here,
// run on env.DB as sent (a batch stays one batch), so the tests await plain HTTP rather than
// Miniflare's synchronous proxy of prepare() and bind().
app.post("/d1", async (c) => {
  const { statements, batch } = await c.req.json<{
    statements: { sql: string; params: unknown[] }[];
    batch: boolean;
  }>();
  const prepared = statements.map(({ sql, params }) => c.env.DB.prepare(sql).bind(...params));
  try {
    const results = batch ? await c.env.DB.batch(prepared) : [await prepared[0]?.all()];
    return c.json({ results });
  } catch (error) {
    return c.json({ error: error instanceof Error ? error.message : String(error) }, 500);
  }
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
