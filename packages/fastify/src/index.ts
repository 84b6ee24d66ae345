import {
  createMappaWebhooks,
  type MappaEvent,
  type MappaWebhooksOptions,
  payloadTooLarge,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import type {
  FastifyError,
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
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
export const DEFAULT_WEBHOOK_PATH = "/webhooks/mappa";

const EMPTY_BODY = new Uint8Array(0);

function send(reply: FastifyReply, result: WebhookResponse): FastifyReply {
  return reply.code(result.status).headers(result.headers).send(result.body);
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

  // A child context of its own: the raw-body parser below replaces JSON parsing for the
  // webhook route only; every other route keeps the app's parsers.
  // fastify-plugin skips `prefix` for the plugin itself, so it is handed to the child context.
  await fastify.register(
    async (scope: FastifyInstance) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => {
        done(null, body);
      });
      scope.route({
        method: [...scope.supportedMethods],
        url: path,
        bodyLimit: webhooks.maxBodyBytes,
        errorHandler(error: FastifyError, _request, reply) {
          if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
            return send(reply, webhooks.errorResponse(payloadTooLarge(webhooks.maxBodyBytes)));
          }
          throw error;
        },
        async handler(request, reply) {
          if (request.method !== "POST") {
            const rejected = await webhooks.handle({
              method: request.method,
              headers: request.headers,
              rawBody: EMPTY_BODY,
            });
            return send(reply, rejected);
          }
          const rawBody = request.body instanceof Uint8Array ? request.body : EMPTY_BODY;
          const result = await webhooks.handle({
            method: request.method,
            headers: request.headers,
            rawBody,
            context: { request, reply },
            onVerified: (event) => {
              request.mappaEvent = event;
            },
          });
          return send(reply, result);
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
 * The raw-body parser is scoped to the webhook route, so your other routes keep Fastify's JSON
 * parsing. Bodies over `maxBodyBytes` are refused with 413 through Fastify's `bodyLimit`.
 * `request.mappaEvent` holds the verified event on the webhook route.
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

export type { MappaEvent, MappaKnownEvent, MappaUnknownEvent } from "@mappa-webhooks/core";
