import {
  createMappaWebhooks,
  type MappaEvent,
  type MappaWebhooks,
  type MappaWebhooksOptions,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import {
  canAnswer,
  DEFAULT_WEBHOOK_PATH,
  lingerAfterEarlyAnswer,
  type ReceiveNodeRequestOptions,
  receiveNodeRequest,
} from "@mappa-webhooks/core/node";
import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  RequestPayload,
} from "fastify";
import fp from "fastify-plugin";

declare module "fastify" {
  interface FastifyRequest {
    /** The verified Mappa event on the webhook route, set once the signature checked out. */
    mappaEvent?: MappaEvent | null;
  }
}

/**
 * What handlers receive as their second argument: Fastify's request and reply.
 *
 * @example
 * ```ts
 * await app.register(mappaWebhookPlugin, {
 *   secret,
 *   on: { "report.completed": (event, { request }) => request.log.info(event.data.reportId) },
 * });
 * ```
 */
export interface MappaFastifyContext {
  request: FastifyRequest;
  reply: FastifyReply;
}

/**
 * Options of {@link mappaWebhookPlugin}: the core's options (`secret`, `on`, `onUnknown`,
 * `onError`, `idempotency`, `ack`, `maxBodyBytes`, `toleranceSec`, ...) plus the route's path.
 *
 * @example
 * ```ts
 * const options: MappaFastifyOptions = { secret, path: "/hooks/mappa", maxBodyBytes: 256 * 1024 };
 * await app.register(mappaWebhookPlugin, options);
 * ```
 */
export interface MappaFastifyOptions extends MappaWebhooksOptions<MappaFastifyContext> {
  /** The webhook route's path. Default `/webhooks/mappa`. */
  path?: string;
}

/**
 * The default path of {@link mappaWebhookPlugin}'s route.
 *
 * @example
 * ```ts
 * app.log.info(`Point Mappa at https://your.host${DEFAULT_WEBHOOK_PATH}`);
 * ```
 */
export { DEFAULT_WEBHOOK_PATH };

const BODY_ALREADY_PARSED =
  "A hook read the request stream before the webhook route could read the raw bytes the signature covers. Do not read the body in `onRequest` or `preParsing` hooks for this route (skip them where `request.routeOptions.url` is the webhook's path), or return a stream of the same bytes from `preParsing`.";

function send(reply: FastifyReply, result: WebhookResponse): void {
  // A client that went away gets nothing; a handler may have answered through `reply` itself.
  if (reply.sent || !canAnswer(reply.raw, result)) return;
  // A rejected body still arriving is drained, not reset.
  lingerAfterEarlyAnswer(reply.request.raw);
  reply.code(result.status).headers(result.headers).send(result.body);
}

/** Answers one request to the webhook route, whatever its method, content type or body. */
async function receive(
  webhooks: MappaWebhooks<MappaFastifyContext>,
  request: FastifyRequest,
  reply: FastifyReply,
  payload: RequestPayload,
): Promise<void> {
  // Only the stream counts: a `request.body` set by a hook is not what the signature covers.
  const result = await receiveNodeRequest(webhooks, request.raw, {
    stream: payload as unknown as NonNullable<ReceiveNodeRequestOptions<unknown>["stream"]>,
    consumedMessage: BODY_ALREADY_PARSED,
    context: { request, reply },
    onVerified: (event) => {
      request.mappaEvent = event;
    },
  });
  send(reply, result);
}

const plugin: FastifyPluginAsync<MappaFastifyOptions> = async (fastify, options) => {
  const {
    path = DEFAULT_WEBHOOK_PATH,
    // Fastify's own registration options are not the receiver's.
    prefix,
    logLevel: _logLevel,
    logSerializers: _logSerializers,
    ...coreOptions
  } = options as MappaFastifyOptions & {
    prefix?: string;
    logLevel?: unknown;
    logSerializers?: unknown;
  };
  const webhooks = createMappaWebhooks<MappaFastifyContext>(coreOptions);

  if (!fastify.hasRequestDecorator("mappaEvent")) fastify.decorateRequest("mappaEvent", null);

  const answer = (request: FastifyRequest, reply: FastifyReply, payload: RequestPayload) => {
    receive(webhooks, request, reply, payload).catch((error: unknown) => {
      send(reply, webhooks.errorResponse(error));
    });
  };

  // The route answers from its own preParsing hook, with the raw request stream: Fastify's
  // content-type parsing (which refuses a media type it cannot parse with 415, and has no
  // deadline) never runs for it, and every other route keeps the app's parsers. Hooks of the
  // app's onRequest and preParsing stages run first; preValidation and preHandler hooks do not
  // run for this route, as there is no parsed body. onSend, onResponse and onError hooks do.
  // fastify-plugin skips `prefix` for the plugin itself, so it is handed to the child context.
  await fastify.register(
    async (scope: FastifyInstance) => {
      scope.route({
        method: [...scope.supportedMethods],
        url: path,
        preParsing(request, reply, payload, _done) {
          // Never calling `done` ends the lifecycle here: the answer is sent from this hook.
          answer(request, reply, payload);
        },
        // Fastify requires a handler; the preParsing hook above has always answered first.
        handler(request, reply) {
          answer(request, reply, request.raw);
          return reply;
        },
      });
    },
    prefix === undefined ? {} : { prefix },
  );
};

/**
 * A Fastify plugin that receives Mappa webhooks on one route (default `POST /webhooks/mappa`;
 * other methods get 405): it verifies the signature over the raw bytes, deduplicates, runs
 * your handlers and answers (200, 401, 400, 413, 500, ...).
 *
 * The route reads the raw request stream itself, whatever its content type, so your other routes
 * keep Fastify's JSON parsing. Bodies over `maxBodyBytes` are answered 413 while streaming, bodies
 * slower than `bodyTimeoutMs` 408. `request.mappaEvent` holds the verified event on the webhook
 * route.
 *
 * @example
 * ```ts
 * import Fastify from "fastify";
 * import { mappaWebhookPlugin } from "@mappa-webhooks/fastify";
 *
 * const app = Fastify();
 * await app.register(mappaWebhookPlugin, {
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   on: { "report.completed": (event) => console.log(event.data.reportId) },
 * });
 * ```
 */
export const mappaWebhookPlugin: FastifyPluginAsync<MappaFastifyOptions> = fp(plugin, {
  name: "@mappa-webhooks/fastify",
  fastify: "5.x",
});

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
