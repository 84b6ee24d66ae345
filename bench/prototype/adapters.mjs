// The request paths of the Express and Hono adapters (packages/express, packages/hono, at the
// time of writing), reduced to what a valid delivery goes through, with the fix BENCHMARKS.md
// recommends for each. Served as the `prototype` variant by http/server.mjs when
// BENCH_HTTP_PROTOTYPES=1, to size a fix before it is made in the package.
import { createMappaWebhooks, payloadTooLarge, readBodyWithLimit } from "@mappa-webhooks/core";

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
