import { type MappaEvent, parseEvent } from "./events.js";
import { type VerifySignatureParams, verifySignature } from "./verify.js";

/**
 * Verifies the signature, then parses the body: the common path when you write the route
 * yourself. Rejects with a {@link MappaWebhookError} (401-type codes for the signature,
 * `invalid_json` / `invalid_event` for the body).
 *
 * @example
 * ```ts
 * import { constructEvent } from "@mappa-webhooks/core";
 *
 * const event = await constructEvent({ payload: rawBody, headers, secret: process.env.MAPPA_WEBHOOK_SECRET! });
 * if (event.known && event.type === "report.completed") await fetchReport(event.data.reportId);
 * ```
 */
export async function constructEvent(params: VerifySignatureParams): Promise<MappaEvent> {
  await verifySignature(params);
  return parseEvent(params.payload);
}
