// /webhooks/mappa in the Node.js runtime (the default, and the one to use).
import { createMappaWebhookHandler } from "@mappa-webhooks/next";
import { on, onError, onUnknown, secret } from "../../../lib/webhooks";

// POST receives deliveries; exporting the other methods too answers them with the JSON 405
// (`Allow: POST`) instead of Next's empty one.
export const { POST, GET, PUT, PATCH, DELETE, OPTIONS } = createMappaWebhookHandler({
  secret,
  on,
  onUnknown,
  onError,
});
