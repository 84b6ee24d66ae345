// POST /webhooks/mappa in the Node.js runtime.
import { createMappaWebhookHandler } from "@mappa-webhooks/next";
import { on, onUnknown, secret } from "../../../lib/webhooks";

export const POST = createMappaWebhookHandler({ secret, on, onUnknown });
