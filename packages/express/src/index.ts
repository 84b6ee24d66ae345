import type { IncomingMessage } from "node:http";
import {
  createMappaWebhooks,
  type MappaEvent,
  type MappaWebhooksOptions,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import {
  adapterMode,
  DEFAULT_WEBHOOK_PATH,
  passesToNext,
  receiveNodeRequest,
  writeNodeResponse,
} from "@mappa-webhooks/core/node";
import type { Request, RequestHandler, Response } from "express";

declare global {
  namespace Express {
    interface Request {
      /** The verified Mappa event, set by `mappaWebhook` once the signature checked out. */
      mappaEvent?: MappaEvent;
      /** The raw body bytes, saved by `rawBodySaver` in `express.json({ verify: rawBodySaver })`. */
      rawBody?: Buffer;
    }
  }
}

/**
 * What handlers receive as their second argument: the Express request and response.
 *
 * @example
 * ```ts
 * mappaWebhook({
 *   secret,
 *   on: { "report.completed": (event, { req }) => req.log?.info(event.data.reportId) },
 * });
 * ```
 */
export interface MappaExpressContext {
  req: Request;
  res: Response;
}

/**
 * Options of {@link mappaWebhook}: the core's options (`secret`, `on`, `onUnknown`, `onError`,
 * `idempotency`, `ack`, `maxBodyBytes`, `toleranceSec`, ...) plus where the middleware listens.
 *
 * @example
 * ```ts
 * const options: MappaExpressOptions = { secret, path: "/hooks/mappa", maxBodyBytes: 256 * 1024 };
 * app.use(mappaWebhook(options));
 * ```
 */
export interface MappaExpressOptions extends MappaWebhooksOptions<MappaExpressContext> {
  /**
   * The path handled when mounted with `app.use(...)`, relative to the mount point. Default
   * `/webhooks/mappa`. Ignored when used as a route handler (`app.post(path, ...)`), where the
   * route decides.
   */
  path?: string;
  /**
   * `"respond"` (default): the middleware answers every delivery itself. `"next"`: for a new
   * event whose handlers succeeded it sets `req.mappaEvent` and calls `next()`, and your next
   * middleware answers; failures (401, 400, 405, 409, 413, 500, 503) and duplicates are still
   * answered by the middleware, so the next middleware only sees new, verified events.
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
  "The request body was consumed by another body parser (e.g. a global `express.json()`) before `mappaWebhook`, so the raw bytes the signature covers are gone. Mount `app.use(mappaWebhook(...))` before `express.json()`, or keep the raw bytes with `express.json({ verify: rawBodySaver })`.";

/**
 * A `verify` hook for Express's body parsers that keeps the raw bytes on `req.rawBody`, so
 * `mappaWebhook` can verify them even after a global `express.json()` parsed the body.
 *
 * @example
 * ```ts
 * import { mappaWebhook, rawBodySaver } from "@mappa-webhooks/express";
 *
 * app.use(express.json({ verify: rawBodySaver }));
 * app.use(mappaWebhook({ secret: process.env.MAPPA_WEBHOOK_SECRET! }));
 * ```
 */
export function rawBodySaver(req: IncomingMessage, _res: unknown, buffer: Buffer): void {
  (req as IncomingMessage & { rawBody?: Buffer }).rawBody = buffer;
}

/** The raw bytes a parser's `verify` hook (or `express.raw()`) kept, when the stream is read. */
function keptRawBody(req: Request): Uint8Array | undefined {
  const { rawBody } = req;
  if (rawBody !== undefined && Buffer.isBuffer(rawBody)) return rawBody;
  const { body } = req;
  if (body !== undefined && Buffer.isBuffer(body)) return body;
  return undefined;
}

/**
 * True when Express runs this middleware as a route's handler (`app.post(path, ...)`), not
 * through `app.use`. `req.route` alone is not enough: Express keeps it from an earlier route.
 */
function isRouteHandler(req: Request, middleware: RequestHandler): boolean {
  const route = req.route as { stack?: ReadonlyArray<{ handle?: unknown }> } | undefined;
  const stack = route?.stack;
  if (stack === undefined) return false;
  for (let i = 0; i < stack.length; i++) if (stack[i]?.handle === middleware) return true;
  return false;
}

/**
 * Characters that `req.path` (Express's `parseurl`) returns unchanged from `req.url`, up to its
 * query: a path made only of them can be matched against `req.url` without parsing the URL.
 */
const PLAIN_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;

/**
 * Matches `req.path` against `path` and `path/` as before, without computing `req.path` (a URL
 * parse per request) when `req.url` already is one of them, with or without a query.
 */
function pathMatcher(path: string): (req: Request) => boolean {
  const withSlash = path.endsWith("/") ? path : `${path}/`;
  const slow = (req: Request) => req.path === path || req.path === withSlash;
  if (!PLAIN_PATH.test(path)) return slow;
  const query = `${path}?`;
  const queryWithSlash = `${withSlash}?`;
  return (req) => {
    const url = req.url;
    if (url === path || url === withSlash) return true;
    if (url.startsWith(query) || url.startsWith(queryWithSlash)) return true;
    return slow(req);
  };
}

/** The bytes as the `Buffer` `req.rawBody` holds (most bodies arrive as one `Buffer` already). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Express middleware that receives Mappa webhooks: it reads the raw body, verifies the
 * signature, deduplicates, runs your handlers and answers (200, 401, 400, 405, 413, 500, ...).
 *
 * - `app.use(mappaWebhook(options))` handles requests to `options.path` (default
 *   `/webhooks/mappa`; non-POST methods get 405) and calls `next()` for every other path.
 * - As a route handler, `app.post("/hooks", mappaWebhook(options))`, it handles every request
 *   the route gives it (detected through `req.route`); `path` is then ignored.
 *
 * Mount it before `express.json()`, or use `express.json({ verify: rawBodySaver })`: a body
 * parsed without its raw bytes cannot be verified and is answered 500 `body_already_parsed`.
 * `req.mappaEvent` holds the verified event for handlers and anything observing the request;
 * with `mode: "next"` the next middleware answers new events itself.
 *
 * @example
 * ```ts
 * import express from "express";
 * import { mappaWebhook } from "@mappa-webhooks/express";
 *
 * const app = express();
 * app.use(mappaWebhook({
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   on: { "report.completed": (event) => console.log(event.data.reportId) },
 * }));
 * app.use(express.json()); // after the webhook, for your other routes
 * ```
 */
export function mappaWebhook(options: MappaExpressOptions): RequestHandler {
  const {
    path = DEFAULT_WEBHOOK_PATH,
    mode: modeOption,
    ...coreOptions
  } = options ?? ({} as MappaExpressOptions);
  const mode = adapterMode(modeOption);
  const webhooks = createMappaWebhooks<MappaExpressContext>(coreOptions);
  const matchesPath = pathMatcher(path);

  // Every failure is answered here as JSON: nothing reaches Express's default error handler,
  // whose HTML page carries a stack trace.
  const fail = (req: Request, res: Response, error: unknown) => {
    writeNodeResponse(req, res, webhooks.errorResponse(error));
  };

  // No async wrapper around the core's promise: each one adds a promise and microtask ticks
  // per delivery, which measurably cost throughput (see BENCHMARKS.md).
  const middleware: RequestHandler = (req, res, next) => {
    let received: Promise<WebhookResponse>;
    try {
      // The path first: it reads `req.url`, which Express read already; `req.route` is one
      // more property lookup, and every one costs on Express's requests (see BENCHMARKS.md).
      if (!matchesPath(req) && !isRouteHandler(req, middleware)) {
        next();
        return;
      }
      received = receiveNodeRequest(webhooks, req, {
        consumedMessage: BODY_ALREADY_PARSED,
        rawBody: keptRawBody(req),
        // Later middleware (mode "next") can still get at the bytes the stream no longer has.
        onRawBody: (bytes) => {
          req.rawBody = asBuffer(bytes);
        },
        context: { req, res },
        // Set before handlers run, so they and later middleware see it.
        onVerified: (event) => {
          req.mappaEvent = event;
        },
      });
    } catch (error) {
      fail(req, res, error);
      return;
    }
    received.then(
      (result) => {
        try {
          if (passesToNext(mode, result)) next();
          else writeNodeResponse(req, res, result);
        } catch (error) {
          fail(req, res, error);
        }
      },
      (error: unknown) => fail(req, res, error),
    );
  };
  return middleware;
}

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
