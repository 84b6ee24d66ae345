// The core pipeline's `handle` (packages/core/src/pipeline.ts) reduced to the path a valid
// delivery takes without an idempotency store and with `ack: "after-handlers"`, written to
// allocate and await as little as possible: the verifier's arguments built once per call
// without object spreads, no `settle`/`runHandlers` closures or async functions when no
// handler returns a promise, and the response built without spreads. A sketch to size the
// bookkeeping cost of `handle`, not a replacement: the store, ack-first, listeners and error
// reporting paths are left out.
import { MappaWebhookError, parseEvent, verifySignature } from "@mappa-webhooks/core";

const RECEIVED = JSON.stringify({ received: true });

/** `verify` defaults to the core's `verifySignature`; pass the prototype's to combine fixes. */
export function createLeanHandle({ secret, on = {} }, verify = verifySignature) {
  const secrets = typeof secret === "string" ? [secret] : secret;
  const fail = (error) => ({
    status: error.status ?? 500,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
    body: JSON.stringify({ error: error.code ?? "handler_failed" }),
    error,
  });
  return async function handle(input) {
    if (input.method !== "POST" && input.method.toUpperCase() !== "POST") {
      return fail(new MappaWebhookError("method_not_allowed", "Use POST."));
    }
    let event;
    let verification;
    try {
      verification = await verify({
        payload: input.rawBody,
        headers: input.headers,
        secret: secrets,
      });
      event = parseEvent(input.rawBody);
    } catch (error) {
      return fail(error);
    }
    input.onVerified?.(event);
    const handler = event.known ? on[event.type] : undefined;
    if (handler !== undefined) {
      try {
        const returned = handler(event, input.context);
        if (returned !== null && typeof returned?.then === "function") await returned;
      } catch (error) {
        return fail(error);
      }
    }
    return {
      status: 200,
      headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
      body: RECEIVED,
      event,
      verification,
    };
  };
}
