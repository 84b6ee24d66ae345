// POST /webhooks/mappa-edge in the Edge runtime: the same handler, verified with Web Crypto.
import { createMappaWebhookHandler } from "@mappa-webhooks/next";
import { on, onUnknown, secret } from "../../../lib/webhooks";

export const runtime = "edge";

export const POST = createMappaWebhookHandler({ secret, on, onUnknown });
