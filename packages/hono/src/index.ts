import {
  createMappaWebhooks,
  type MappaEvent,
  MappaWebhookError,
  type MappaWebhooksOptions,
  payloadTooLarge,
  readBodyWithLimit,
  type WebhookRequestInput,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import type { Context, MiddlewareHandler } from "hono";

// The event types and the error class, so apps need no direct dependency on the core.
export {
  isMappaWebhookError,
  type MappaEvent,
  type MappaEventType,
  type MappaHandlerMap,
  type MappaKnownEvent,
  type MappaUnknownEvent,
  MappaWebhookError,
  type MappaWebhooksOptions,
} from "@mappa-webhooks/core";

/**
 * The variables {@link mappaWebhook} sets on the Hono context.
 *
 * @example
 * ```ts
 * const app = new Hono<{ Variables: MappaWebhookVariables }>();
 * app.all("/webhooks/mappa", mappaWebhook({ secret, mode: "next" }), (c) => {
 *   const event = c.get("mappaEvent");
 *   return c.json({ received: event.id });
 * });
 * ```
 */
export interface MappaWebhookVariables {
  /** The verified event of this delivery. */
  mappaEvent: MappaEvent;
}

/**
 * The Hono `Env` of {@link mappaWebhook}, for apps that declare their env in one place.
 *
 * @example
 * ```ts
 * type AppEnv = { Bindings: { MAPPA_WEBHOOK_SECRET: string } } & MappaWebhookEnv;
 * const app = new Hono<AppEnv>();
 * ```
 */
export type MappaWebhookEnv = { Variables: MappaWebhookVariables };

/**
 * Options of {@link mappaWebhook}: the core's options, with the Hono context as handler context.
 *
 * @example
 * ```ts
 * const options: MappaHonoOptions = {
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   mode: "next",
 *   on: { "report.failed": (event, c) => console.warn(c.req.url, event.data.error.code) },
 * };
 * ```
 */
export interface MappaHonoOptions extends MappaWebhooksOptions<Context> {
  /**
   * `"respond"` (default): the middleware answers itself with the core's response (200, 401,
   * 400, 405, 409, 413, 500, 503) and does not call `next()`.
   * `"next"`: after a first delivery was verified and its handlers ran, it calls `next()` so
   * the following handler writes the answer (with `c.get("mappaEvent")`). Failures and
   * duplicates are still answered by the middleware, so the next handler only sees new events.
   * Work that must not be lost belongs in `on` handlers: the event counts as handled once they
   * succeeded, even if a later handler fails.
   */
  mode?: "respond" | "next";
}

const BODY_ALREADY_PARSED =
  "The request body was read before mappaWebhook() as decoded text or parsed data (c.req.json(), c.req.text(), c.req.parseBody(), a validator, or c.req.raw itself), so the exact bytes the signature covers are gone. Register mappaWebhook() before that middleware, or have it read the body with c.req.arrayBuffer() (Hono caches those exact bytes and the middleware verifies them).";

// Hono caches what c.req read in `bodyCache`, under the name of the method that read it. Only
// the first entry came from the request itself; later ones are derived from it (an arrayBuffer
// after a text() is the text re-encoded, not the bytes sent). So the bytes are exact only when
// the first entry is an arrayBuffer or a blob.
type BodyCache = Record<string, Promise<unknown> | undefined>;

async function cachedExactBytes(cache: BodyCache): Promise<Uint8Array | undefined> {
  const first = Object.keys(cache)[0];
  if (first === undefined) return undefined;
  if (first === "arrayBuffer") return new Uint8Array((await cache[first]) as ArrayBuffer);
  if (first === "blob") return new Uint8Array(await ((await cache[first]) as Blob).arrayBuffer());
  throw new MappaWebhookError("body_already_parsed", BODY_ALREADY_PARSED);
}

async function readRawBody(c: Context, limit: number, timeoutMs: number): Promise<Uint8Array> {
  // Hono caches bodies on c.req, so an earlier middleware may have read the stream already.
  const cache = c.req.bodyCache as unknown as BodyCache;
  const cached = await cachedExactBytes(cache);
  if (cached !== undefined) return cached;
  if (c.req.raw.bodyUsed) throw new MappaWebhookError("body_already_parsed", BODY_ALREADY_PARSED);
  const declared = Number(c.req.header("content-length") ?? Number.NaN);
  if (declared > limit) throw payloadTooLarge(limit);
  const bytes = await readBodyWithLimit(c.req.raw.body, limit, { timeoutMs });
  // Later handlers can still call c.req.json() / text() / arrayBuffer(): Hono reads the cache,
  // which needs an ArrayBuffer of exactly the body.
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  const buffer = (whole ? bytes : bytes.slice()).buffer as ArrayBuffer;
  cache.arrayBuffer = Promise.resolve(buffer);
  return bytes;
}

// Read lazily: on Node the executionCtx getter throws, and only ack-first needs it.
function waitUntilOf(c: Context): (promise: Promise<unknown>) => void {
  return (promise) => {
    try {
      c.executionCtx.waitUntil(promise);
    } catch {
      // No ExecutionContext (Node, Bun): the promise runs on by itself.
    }
  };
}

function toResponse(result: WebhookResponse): Response {
  return new Response(result.body, { status: result.status, headers: result.headers });
}

/**
 * Hono middleware that verifies, parses and handles Mappa webhooks. Reads the raw body (later
 * handlers can still read it), answers with the right status, and sets `c.get("mappaEvent")`.
 * Runs on every runtime Hono runs on; ack-first uses `c.executionCtx.waitUntil` when present.
 * Mount it with `app.all` (or `app.use`) so other methods get the JSON 405; with `app.post`
 * Hono answers them 404 itself. A body read before it as text (`c.req.text()`, `c.req.json()`)
 * is answered 500 `body_already_parsed`: only exact bytes are verified.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { mappaWebhook } from "@mappa-webhooks/hono";
 *
 * const app = new Hono();
 * app.all(
 *   "/webhooks/mappa",
 *   mappaWebhook({
 *     secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *     on: { "report.completed": (event) => saveReport(event.data.reportId) },
 *   }),
 * );
 * ```
 */
export function mappaWebhook(options: MappaHonoOptions): MiddlewareHandler<MappaWebhookEnv> {
  const { mode = "respond", ...coreOptions } = options;
  if (mode !== "respond" && mode !== "next") {
    throw new MappaWebhookError("invalid_options", '`mode` must be "respond" or "next".');
  }
  const webhooks = createMappaWebhooks<Context>(coreOptions);
  const ackFirst = coreOptions.ack === "first";

  return async (c, next) => {
    const method = c.req.method;
    let rawBody: Uint8Array | string = "";
    if (method.toUpperCase() === "POST") {
      try {
        rawBody = await readRawBody(c, webhooks.maxBodyBytes, webhooks.bodyTimeoutMs);
      } catch (error) {
        // Reported to onError; for a client that went away, nobody reads this answer.
        return toResponse(webhooks.errorResponse(error));
      }
    }
    const input: WebhookRequestInput<Context> = {
      method,
      headers: c.req.raw.headers,
      rawBody,
      context: c,
      // Set before handlers run, so they and later handlers can c.get("mappaEvent").
      onVerified: (event) => c.set("mappaEvent", event),
    };
    if (ackFirst) input.waitUntil = waitUntilOf(c);
    const result = await webhooks.handle(input);
    if (mode === "next" && result.status === 200 && result.duplicate !== true) {
      await next();
      return;
    }
    return toResponse(result);
  };
}
