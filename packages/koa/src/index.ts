import {
  createMappaWebhooks,
  type MappaEvent,
  type MappaWebhooksOptions,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import {
  adapterMode,
  DEFAULT_WEBHOOK_PATH,
  lingerAfterEarlyAnswer,
  passesToNext,
  receiveNodeRequest,
} from "@mappa-webhooks/core/node";
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
  type MappaWebhooksOptions,
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
export { DEFAULT_WEBHOOK_PATH };

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

function send(ctx: Context, result: WebhookResponse): void {
  // Koa writes the answer; a rejected body still arriving is drained, not reset.
  lingerAfterEarlyAnswer(ctx.req);
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
    mode: modeOption,
    ...coreOptions
  } = options ?? ({} as MappaKoaOptions);
  const mode = adapterMode(modeOption);
  const webhooks = createMappaWebhooks<Context>(coreOptions);
  const pathWithSlash = path.endsWith("/") ? path : `${path}/`;

  const middleware: Middleware = async (ctx: Context, next: Next) => {
    if (!isRouteHandler(ctx, middleware) && ctx.path !== path && ctx.path !== pathWithSlash) {
      await next();
      return;
    }
    // Typed failures (405, 413, 408, a client gone, a consumed body) get the core's answer;
    // Koa does not write to a request whose client went away.
    const result = await receiveNodeRequest(webhooks, ctx.req, {
      consumedMessage: BODY_ALREADY_PARSED,
      context: ctx,
      // Set before handlers run, so they and later middleware see it.
      onVerified: (event) => {
        ctx.state.mappaEvent = event;
      },
    });
    if (passesToNext(mode, result)) {
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
