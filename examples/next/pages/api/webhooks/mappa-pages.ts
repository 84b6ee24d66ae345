// /api/webhooks/mappa-pages with the Pages Router. The body parser must be off, so the handler
// can verify the raw bytes. Every method reaches the handler: anything but POST gets 405.
import { createMappaPagesHandler } from "@mappa-webhooks/next";
import { on, onError, onUnknown, secret } from "../../../lib/webhooks";

export const config = { api: { bodyParser: false } };

export default createMappaPagesHandler({ secret, on, onUnknown, onError });
