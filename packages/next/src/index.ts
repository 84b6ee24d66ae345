import type { IncomingMessage, ServerResponse } from "node:http";
import {
  createMappaWebhooks,
  createRecoveryEndpoint,
  type MappaRecovery,
  type MappaWebhooks,
  type MappaWebhooksOptions,
  type RecoveryEndpointOptions,
} from "@mappa-webhooks/core";
import { receiveNodeRequest, writeNodeResponse } from "@mappa-webhooks/core/node";

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

type WaitUntil = (promise: Promise<unknown>) => void;

/** An App Router route handler: a Fetch `Request` in, a `Response` out. */
export type MappaRouteHandler = (request: Request) => Promise<Response>;

/** The HTTP methods Next routes to a route handler's named exports. */
export type NextRouteMethod = "GET" | "HEAD" | "OPTIONS" | "POST" | "PUT" | "PATCH" | "DELETE";

/**
 * What {@link createMappaWebhookHandler} returns: the route handler, which also carries itself
 * under every method name Next routes, so one line can export it for all of them.
 *
 * @example
 * ```ts
 * export const { POST, GET, PUT, PATCH, DELETE, OPTIONS } = createMappaWebhookHandler({ secret, on });
 * ```
 */
export type MappaWebhookRouteHandler = MappaRouteHandler &
  Readonly<Record<NextRouteMethod, MappaRouteHandler>>;

const ROUTE_METHODS: readonly NextRouteMethod[] = [
  "GET",
  "HEAD",
  "OPTIONS",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
];

/**
 * Options of {@link createMappaWebhookHandler}: the core's options; handlers get the `Request`.
 *
 * @example
 * ```ts
 * const options: MappaNextOptions = {
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   ack: "first", // answer at once; handlers finish in after()
 *   on: { "report.completed": (event, request) => enqueue(event.data.reportId) },
 * };
 * ```
 */
export interface MappaNextOptions extends MappaWebhooksOptions<Request> {
  /**
   * Keeps ack-first work alive after the answer. Default: Next's `after()` (Next 15+), which
   * maps to the platform's `waitUntil` on serverless and edge hosts.
   */
  waitUntil?: WaitUntil;
}

/**
 * Options of {@link createMappaPagesHandler}: the core's options; handlers get the Node request.
 *
 * @example
 * ```ts
 * import { waitUntil } from "@vercel/functions";
 * const options: MappaPagesOptions = { secret: process.env.MAPPA_WEBHOOK_SECRET!, ack: "first", waitUntil };
 * ```
 */
export interface MappaPagesOptions extends MappaWebhooksOptions<IncomingMessage> {
  /** Keeps ack-first work alive after the answer (e.g. `waitUntil` from `@vercel/functions`). */
  waitUntil?: WaitUntil;
}

// Next evaluates route modules during `next build`, where the secret is often not set yet. The
// receiver is therefore created on the first request when the secret is missing; with a secret
// it is created at once, so invalid options fail the build instead of the first delivery.
function lazyReceiver<TContext>(
  options: MappaWebhooksOptions<TContext>,
): () => MappaWebhooks<TContext> {
  let receiver: MappaWebhooks<TContext> | undefined;
  const get = () => {
    receiver ??= createMappaWebhooks<TContext>(options);
    return receiver;
  };
  if (options.secret !== undefined && options.secret !== "") get();
  return get;
}

let afterModule: Promise<WaitUntil | undefined> | undefined;

// `after` is loaded lazily and looked up by name, so versions of Next without it (and apps
// without Next) still work: ack-first work then just runs on after the answer.
function loadAfter(): Promise<WaitUntil | undefined> {
  afterModule ??= import("next/server").then(
    (server) => (server as { after?: WaitUntil }).after,
    () => undefined,
  );
  return afterModule;
}

async function afterOrNothing(): Promise<WaitUntil | undefined> {
  const after = await loadAfter();
  if (after === undefined) return undefined;
  return (promise) => {
    try {
      after(promise);
    } catch {
      // Called outside a Next request scope: the promise runs on regardless.
    }
  };
}

/**
 * Creates an App Router route handler that verifies, parses and handles Mappa webhooks.
 * Works in the Node.js runtime (the default, and the one to prefer) and in the Edge runtime
 * (its bundle uses Web Crypto only). Ack-first work is kept alive with Next's `after()`.
 * Handlers get the `Request` as second argument.
 *
 * Next answers the methods a route does not export itself, with an empty 405. The handler
 * also carries itself as `GET`, `HEAD`, `OPTIONS`, `POST`, `PUT`, `PATCH` and `DELETE`:
 * export those too and every other method gets the JSON 405 with `Allow: POST`.
 *
 * @example
 * ```ts
 * // app/webhooks/mappa/route.ts
 * import { createMappaWebhookHandler } from "@mappa-webhooks/next";
 *
 * export const { POST, GET, PUT, PATCH, DELETE, OPTIONS } = createMappaWebhookHandler({
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   on: { "report.completed": async (event) => saveReport(event.data.reportId) },
 * });
 * ```
 */
export function createMappaWebhookHandler(options: MappaNextOptions): MappaWebhookRouteHandler {
  const { waitUntil, ...coreOptions } = options;
  const receiver = lazyReceiver(coreOptions);
  const ackFirst = coreOptions.ack === "first";
  const handler: MappaRouteHandler = async (request) => {
    const webhooks = receiver();
    const keepAlive = waitUntil ?? (ackFirst ? await afterOrNothing() : undefined);
    return webhooks.handleRequest(
      request,
      keepAlive === undefined ? { context: request } : { context: request, waitUntil: keepAlive },
    );
  };
  const methods: Partial<Record<NextRouteMethod, MappaRouteHandler>> = {};
  for (const method of ROUTE_METHODS) methods[method] = handler;
  return Object.assign(handler, methods as Record<NextRouteMethod, MappaRouteHandler>);
}

/**
 * Creates a Pages Router API route that verifies, parses and handles Mappa webhooks. The route
 * must turn Next's body parser off, so the raw bytes can be verified:
 * `export const config = { api: { bodyParser: false } }`. Without it every delivery is answered
 * 500 `body_already_parsed`. Handlers get the Node request as second argument.
 *
 * @example
 * ```ts
 * // pages/api/webhooks/mappa.ts
 * import { createMappaPagesHandler } from "@mappa-webhooks/next";
 *
 * export const config = { api: { bodyParser: false } };
 * export default createMappaPagesHandler({
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   on: { "report.completed": async (event) => saveReport(event.data.reportId) },
 * });
 * ```
 */
export function createMappaPagesHandler(
  options: MappaPagesOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { waitUntil, ...coreOptions } = options;
  const receiver = lazyReceiver(coreOptions);

  return async (req: IncomingMessage & { body?: unknown }, res) => {
    const result = await receiveNodeRequest(receiver(), req, {
      // Next's body parser sets req.body and drains the stream; the raw bytes are gone.
      consumed: req.body !== undefined,
      consumedMessage:
        "The request body was parsed before the webhook handler could read its raw bytes. Add `export const config = { api: { bodyParser: false } }` to this API route.",
      context: req,
      ...(waitUntil === undefined ? {} : { waitUntil }),
    });
    // A client that went away gets nothing; onError was told.
    writeNodeResponse(req, res, result);
  };
}

/**
 * An App Router route that runs recovery (`createMappaRecovery` from `@mappa-webhooks/core`)
 * once per authorized request: point a cron at it. Vercel Cron calls `GET` with
 * `Authorization: Bearer $CRON_SECRET`; a wrong token gets 401 and runs nothing. Answers 200
 * with the run's report, or 503 with `Retry-After` when Mappa's API failed.
 *
 * @example
 * ```ts
 * // app/api/mappa-recovery/route.ts
 * import { createRecoveryRoute } from "@mappa-webhooks/next";
 * import { recovery } from "@/lib/recovery";
 *
 * export const GET = createRecoveryRoute(recovery, { token: process.env.CRON_SECRET! });
 * ```
 */
export function createRecoveryRoute(
  recovery: MappaRecovery,
  options: RecoveryEndpointOptions,
): MappaRouteHandler {
  const endpoint = createRecoveryEndpoint(recovery, options);
  return async (request) => {
    const { status, headers, body } = await endpoint({
      method: request.method,
      headers: request.headers,
    });
    return new Response(body, { status, headers });
  };
}
