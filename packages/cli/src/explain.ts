import type { MappaEvent, MappaWebhookError, MappaWebhookErrorCode } from "@mappa-webhooks/core";

/** The check each error code means failed, in words. */
export const CHECK_FOR_CODE: Record<MappaWebhookErrorCode, string> = {
  missing_signature: "signature header present",
  malformed_signature: "signature header well-formed",
  timestamp_outside_tolerance: "timestamp within tolerance",
  signature_mismatch: "signature matches the body",
  invalid_json: "body is JSON",
  invalid_event: "body is a Mappa event",
  method_not_allowed: "method is POST",
  payload_too_large: "body within the size limit",
  event_in_flight: "event not being handled already",
  handler_failed: "handlers succeeded",
  handler_timeout: "handlers settled in time",
  idempotency_store_failed: "idempotency store reachable",
  mappa_api_failed: "Mappa's API answered",
  job_not_recoverable: "job has an outcome to recover",
  missing_secret: "a secret is configured",
  invalid_options: "options are valid",
  body_already_parsed: "raw body available",
  body_timeout: "body arrived in time",
  request_aborted: "client stayed connected",
};

/** The error's message without the package prefix and the appended hint (shown on its own). */
export function plainMessage(error: MappaWebhookError): string {
  let message = error.message.replace(/^@mappa-webhooks: /, "");
  if (error.hint !== undefined && message.endsWith(` Hint: ${error.hint}`)) {
    message = message.slice(0, -` Hint: ${error.hint}`.length);
  }
  return message;
}

/** The fields worth a glance for an event: job, report or matching, status, error code. */
export function keyData(event: MappaEvent): Record<string, string> {
  const data =
    typeof event.data === "object" && event.data !== null
      ? (event.data as Record<string, unknown>)
      : {};
  const out: Record<string, string> = {};
  const pick = (label: string, value: unknown) => {
    if (typeof value === "string" || typeof value === "number") out[label] = String(value);
  };
  pick("job", data.jobId);
  pick("report", data.reportId);
  pick("matching", data.matchingId);
  pick("status", data.status);
  const error = data.error;
  if (typeof error === "object" && error !== null)
    pick("error", (error as { code?: unknown }).code);
  return out;
}

export function formatKeyData(data: Record<string, string>): string {
  return Object.entries(data)
    .map(([label, value]) => `${label}=${value}`)
    .join("  ");
}
