// The request paths of the Express, Fastify and Hono adapters (packages/*, at the time of
// writing), reduced to what a valid delivery goes through, with the fixes BENCHMARKS.md
// recommends. Served as the `prototype` variant by http/server.mjs when
// BENCH_HTTP_PROTOTYPES=1, to size a fix before it is made in the package.
import { createMappaWebhooks, payloadTooLarge, readBodyWithLimit } from "@mappa-webhooks/core";
import { createLeanHandle } from "./pipeline.mjs";

/**
 * Reads a Node request within `limit` bytes with 'data'/'end' listeners instead of an async
 * iterator (`for await` over `req`), which costs an iterator, promises and listener churn per
 * request. On overflow it stops buffering, leaves the stream open (so the 413 can be written)
 * and rejects.
 */
export function readNodeBodyWithLimit(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let total = 0;
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("aborted", onError);
    };
    const onData = (chunk) => {
      total += chunk.length;
      if (total > limit) {
        cleanup();
        req.pause();
        reject(payloadTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total));
    };
    const onError = (error) => {
      cleanup();
      reject(error);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("aborted", onError);
  });
}

/** Express: the adapter's path (read, handle, write) with the listener-based body reader. */
export function expressPrototype(options) {
  const webhooks = createMappaWebhooks(options);
  return async (req, res) => {
    let result;
    try {
      const declared = Number(req.headers["content-length"]);
      if (declared > webhooks.maxBodyBytes) throw payloadTooLarge(webhooks.maxBodyBytes);
      const rawBody = await readNodeBodyWithLimit(req, webhooks.maxBodyBytes);
      result = await webhooks.handle({
        method: req.method,
        headers: req.headers,
        rawBody,
        context: { req, res },
      });
    } catch (error) {
      result = webhooks.errorResponse(error);
    }
    res.statusCode = result.status;
    for (const [name, value] of Object.entries(result.headers)) res.setHeader(name, value);
    res.end(result.body);
  };
}

/**
 * Hono: the adapter's path with `waitUntil` resolved lazily. The adapter reads
 * `c.executionCtx` on every request to build `waitUntil`, and on Node that getter throws (an
 * Error with a stack trace per request) although only `ack: "first"` ever calls `waitUntil`.
 */
export function honoPrototype(options) {
  const webhooks = createMappaWebhooks(options);
  const toResponse = (result) =>
    new Response(result.body, { status: result.status, headers: result.headers });
  return async (c) => {
    let rawBody;
    try {
      const declared = Number(c.req.header("content-length") ?? Number.NaN);
      if (declared > webhooks.maxBodyBytes) throw payloadTooLarge(webhooks.maxBodyBytes);
      rawBody = await readBodyWithLimit(c.req.raw.body, webhooks.maxBodyBytes);
      // As the adapter does: later handlers can read the body from Hono's cache.
      const copy = new Uint8Array(rawBody.byteLength);
      copy.set(rawBody);
      c.req.bodyCache.arrayBuffer = Promise.resolve(copy.buffer);
    } catch (error) {
      return toResponse(webhooks.errorResponse(error));
    }
    const result = await webhooks.handle({
      method: c.req.method,
      headers: c.req.raw.headers,
      rawBody,
      context: c,
      waitUntil: (promise) => {
        try {
          c.executionCtx.waitUntil(promise);
        } catch {
          // No ExecutionContext (Node, Bun): the promise runs on by itself.
        }
      },
    });
    if (result.event !== undefined) c.set("mappaEvent", result.event);
    return toResponse(result);
  };
}

/**
 * Fastify: the adapter's plugin (scoped buffer parser, one route, async handler, the same
 * reply calls) with the lean pipeline sketch of pipeline.mjs (verifier arguments built as a
 * literal, no spreads, no per-call closures) in place of `webhooks.handle`. With
 * `options.verifyAndParse` (the optimal route's synchronous verify + JSON.parse) in place of
 * the pipeline instead, it shows what the Fastify side of the adapter alone costs.
 */
export async function fastifyPrototype(fastify, options) {
  const { path, verifyAndParse, syncExperiment = false } = options;
  // The core's verifier already carries the fixes of verify-fast.mjs (core a9c76be).
  const handle = createLeanHandle(options);
  const send = (reply, result) =>
    reply.code(result.status).headers(result.headers).send(result.body);
  const headers = {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
  };
  await fastify.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => {
      done(null, body);
    });
    scope.route({
      method: [...scope.supportedMethods],
      url: path,
      bodyLimit: options.maxBodyBytes,
      async handler(request, reply) {
        if (syncExperiment) {
          const { status } = verifyAndParse(request.body, request.headers["mappa-signature"]);
          return reply
            .code(status)
            .headers(headers)
            .send(status === 200 ? '{"received":true}' : `{"error":${status}}`);
        }
        const result = await handle({
          method: request.method,
          headers: request.headers,
          rawBody: request.body,
          context: { request, reply },
          onVerified: (event) => {
            request.mappaEvent = event;
          },
        });
        return send(reply, result);
      },
    });
  });
}
