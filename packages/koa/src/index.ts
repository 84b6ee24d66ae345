import {
  createMappaWebhooks,
  type MappaEvent,
  MappaWebhookError,
  type MappaWebhooksOptions,
  payloadTooLarge,
  readBodyWithLimit,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import type { Context, Middleware, Next } from "koa";

// The event types and the error class, so apps need no direct dependency on the core.
export {
  isMappaWebhookError,
  type MappaEvent,
  type MappaEventType,
  type MappaHandlerMap,
  type MappaKnownEvent,
  type MappaUnknownEvent,
  MappaWebhookError,
} from "@mappa-webhooks/core";

declare module "koa" {
  interface DefaultState {
    /** The verified Mappa event, set by `mappaWebhook` once the signature checked out. */
    mappaEvent?: MappaEvent;
  }
}

/**
 * Options of {@link mappaWebhook}: the core's options (`secret`, `on`, `onUnknown`, `onError`,
 * `idempotency`, `ack`, `maxBodyBytes`, `bodyTimeoutMs`, `toleranceSec`, ...) with Koa's `ctx`
 * as the handlers' second argument, plus where the middleware listens.
 *
 * @example
 * ```ts
 * const options: MappaKoaOptions = {
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   path: "/hooks/mappa",
 *   on: { "report.failed": (event, ctx) => console.warn(ctx.ip, event.data.error.code) },
 * };
 * app.use(mappaWebhook(options));
 * ```
 */
export interface MappaKoaOptions extends MappaWebhooksOptions<Context> {
  /**
   * The path handled when mounted with `app.use(...)` (compared with `ctx.path`). Default
   * `/webhooks/mappa`. Ignored when the middleware is a route's handler in `@koa/router`
   * (`router.post(path, mappaWebhook(...))`): the route decides.
   */
  path?: string;
  /**
   * `"respond"` (default): the middleware answers every delivery itself. `"next"`: for a new
   * event whose handlers succeeded it sets `ctx.state.mappaEvent` (and `ctx.request.body` to
   * the parsed JSON) and awaits `next()`, and your next middleware answers; failures and
   * duplicates are still answered by the middleware.
   */
  mode?: "respond" | "next";
}

/**
 * The default path of {@link mappaWebhook} when mounted with `app.use`.
 *
 * @example
 * ```ts
 * console.log(`Point Mappa at https://your.host${DEFAULT_WEBHOOK_PATH}`);
 * ```
 */
export const DEFAULT_WEBHOOK_PATH = "/webhooks/mappa";

const BODY_ALREADY_PARSED =
  "The request body was read by a body parser (e.g. `koa-bodyparser` or `@koa/bodyparser`) before `mappaWebhook`, so the raw bytes the signature covers are gone (a parser's `rawBody` is decoded text, not the bytes). Register `app.use(mappaWebhook(...))` before `app.use(bodyParser())`.";

/** The parts of @koa/router's context the middleware reads to know it is a route's handler. */
interface RouterLayer {
  methods?: readonly string[];
  stack?: readonly unknown[];
}

function isRouteHandler(ctx: Context, middleware: Middleware): boolean {
  const matched = (ctx as Context & { matched?: readonly RouterLayer[] }).matched;
  if (!Array.isArray(matched)) return false;
  return matched.some(
    (layer) => (layer.methods?.length ?? 0) > 0 && (layer.stack?.includes(middleware) ?? false),
  );
}

/** True once something read the request stream, so its bytes cannot be read again. */
function streamConsumed(ctx: Context): boolean {
  const req = ctx.req;
  return req.readableEnded || req.readableDidRead || (req.complete && !req.readable);
}

function send(ctx: Context, result: WebhookResponse): void {
  ctx.status = result.status;
  ctx.set(result.headers);
  ctx.body = result.body;
}

/**
 * Koa middleware (Koa 2 and 3) that receives Mappa webhooks: it reads the raw body, verifies
 * the signature, deduplicates, runs your handlers and answers (200, 401, 400, 405, 408, 409,
 * 413, 500, 503) with the core's JSON bodies.
 *
 * - `app.use(mappaWebhook(options))` handles requests whose `ctx.path` is `options.path`
 *   (default `/webhooks/mappa`; other methods get 405) and awaits `next()` for every other path.
 * - As an `@koa/router` route's handler, `router.post("/hooks", mappaWebhook(options))`, it
 *   handles every request the route gives it; `path` is then ignored.
 *
 * Register it before `koa-bodyparser` / `@koa/bodyparser`: a body already read by a parser is
 * answered 500 `body_already_parsed` (never re-serialised), and `onError` gets the fix.
 *
 * @example
 * ```ts
 * import Koa from "koa";
 * import { bodyParser } from "@koa/bodyparser";
 * import { mappaWebhook } from "@mappa-webhooks/koa";
 *
 * const app = new Koa();
 * app.use(mappaWebhook({
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   on: { "report.completed": (event) => console.log(event.data.reportId) },
 * }));
 * app.use(bodyParser()); // after the webhook, for your other routes
 * ```
 */
export function mappaWebhook(options: MappaKoaOptions): Middleware {
  const {
    path = DEFAULT_WEBHOOK_PATH,
    mode = "respond",
    ...coreOptions
  } = options ?? ({} as MappaKoaOptions);
  if (mode !== "respond" && mode !== "next") {
    throw new MappaWebhookError("invalid_options", '`mode` must be "respond" or "next".');
  }
  const webhooks = createMappaWebhooks<Context>(coreOptions);
  const pathWithSlash = path.endsWith("/") ? path : `${path}/`;

  const readRawBody = async (ctx: Context): Promise<Uint8Array> => {
    if (streamConsumed(ctx))
      throw new MappaWebhookError("body_already_parsed", BODY_ALREADY_PARSED);
    const declared = Number(ctx.get("content-length") || Number.NaN);
    if (declared > webhooks.maxBodyBytes) throw payloadTooLarge(webhooks.maxBodyBytes);
    return readBodyWithLimit(ctx.req, webhooks.maxBodyBytes, { timeoutMs: webhooks.bodyTimeoutMs });
  };

  const middleware: Middleware = async (ctx: Context, next: Next) => {
    if (!isRouteHandler(ctx, middleware) && ctx.path !== path && ctx.path !== pathWithSlash) {
      await next();
      return;
    }
    if (ctx.method.toUpperCase() !== "POST") {
      send(ctx, await webhooks.handle({ method: ctx.method, headers: ctx.headers, rawBody: "" }));
      return;
    }
    let rawBody: Uint8Array;
    try {
      rawBody = await readRawBody(ctx);
    } catch (error) {
      // Typed errors (413, 408, a client gone mid-body, a consumed body) get the core's answer;
      // Koa does not write to a request whose client went away.
      send(ctx, webhooks.errorResponse(error));
      return;
    }
    const result = await webhooks.handle({
      method: ctx.method,
      headers: ctx.headers,
      rawBody,
      context: ctx,
      // Set before handlers run, so they and later middleware see it.
      onVerified: (event) => {
        ctx.state.mappaEvent = event;
      },
    });
    if (mode === "next" && result.status === 200 && result.duplicate !== true) {
      // The stream is read: later body parsers must not wait for it, and get the parsed JSON.
      const request = ctx.request as Context["request"] & { body?: unknown };
      if (request.body === undefined) request.body = result.event?.raw;
      (ctx as Context & { disableBodyParser?: boolean }).disableBodyParser = true;
      await next();
      return;
    }
    send(ctx, result);
  };
  return middleware;
}
