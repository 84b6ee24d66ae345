// /webhooks/mappa-edge in the Edge runtime: the same handler, verified with Web Crypto. Next 16
// deprecates the Edge runtime for route handlers; prefer the Node.js route in app/webhooks/mappa.
import { createMappaWebhookHandler } from "@mappa-webhooks/next";
import { on, onError, onUnknown, secret } from "../../../lib/webhooks";

export const runtime = "edge";

export const { POST, GET, PUT, PATCH, DELETE, OPTIONS } = createMappaWebhookHandler({
  secret,
  on,
  onUnknown,
  onError,
});
