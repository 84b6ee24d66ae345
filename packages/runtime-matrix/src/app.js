// One Fetch app, the same on every runtime of the matrix: the core's `handleRequest` under
// /core/... and the Hono middleware under /hono/..., plus what the checks read back.
import { createMappaWebhooks, cryptoRuntime } from "@mappa-webhooks/core";
import { mappaWebhook } from "@mappa-webhooks/hono";
import { Hono } from "hono";

export const SECRET = "whsec_runtime_matrix";
export const MAX_BODY_BYTES = 16 * 1024;

/**
 * @param {string} runtime what the entry says it runs on
 * @returns {{ fetch(request: Request, env?: unknown, ctx?: unknown): Response | Promise<Response> }}
 */
export function createApp(runtime) {
  /** @type {Map<string, number>} */
  const handled = new Map();
  /** @type {Set<string>} */
  const failedOnce = new Set();
  /** Counts a run; fails the first run of an event whose id says `fail_once`. */
  const run = (/** @type {{ id?: string }} */ event) => {
    const id = String(event.id);
    if (id.includes("fail_once") && !failedOnce.has(id)) {
      failedOnce.add(id);
      throw new Error(`planned failure for ${id}`);
    }
    handled.set(id, (handled.get(id) ?? 0) + 1);
  };
  const options = {
    secret: SECRET,
    maxBodyBytes: MAX_BODY_BYTES,
    bodyTimeoutMs: 2_000,
    on: { "report.completed": run, "report.failed": run },
    onUnknown: run,
  };
  const core = createMappaWebhooks(options);

  const app = new Hono();
  app.get("/runtime", (c) =>
    c.json({
      runtime,
      cryptoRuntime,
      version:
        /** @type {{ Bun?: { version: string }, Deno?: { version: { deno: string } }, process?: { version: string } }} */ (
          globalThis
        ).Bun?.version ??
        /** @type {any} */ (globalThis).Deno?.version?.deno ??
        /** @type {any} */ (globalThis).process?.version ??
        "workerd",
    }),
  );
  app.get("/handled/:id", (c) => c.json({ count: handled.get(c.req.param("id")) ?? 0 }));
  app.all("/core/webhooks/mappa", (c) => core.handleRequest(c.req.raw));
  app.all("/hono/webhooks/mappa", mappaWebhook(options));

  // Signature vectors: each case's clock, secrets and tolerance come in the query string.
  /** @type {Map<string, { core: ReturnType<typeof createMappaWebhooks>, hono: ReturnType<typeof mappaWebhook> }>} */
  const vectorApps = new Map();
  const vectorApp = (/** @type {URL} */ url) => {
    let found = vectorApps.get(url.search);
    if (found === undefined) {
      const vectorOptions = {
        secret: (url.searchParams.get("secrets") ?? "").split(","),
        now: Number(url.searchParams.get("now")),
        toleranceSec: Number(url.searchParams.get("tolerance")),
        idempotency: /** @type {const} */ (false),
      };
      found = { core: createMappaWebhooks(vectorOptions), hono: mappaWebhook(vectorOptions) };
      vectorApps.set(url.search, found);
    }
    return found;
  };
  app.post("/core/vectors", (c) => vectorApp(new URL(c.req.url)).core.handleRequest(c.req.raw));
  app.post("/hono/vectors", (c, next) => vectorApp(new URL(c.req.url)).hono(c, next));
  return app;
}
