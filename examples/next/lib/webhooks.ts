import type {
  MappaHandlerMap,
  MappaUnknownEvent,
  MappaWebhookError,
  MappaWebhooksOptions,
} from "@mappa-webhooks/next";

// One line per handled event, so you can watch deliveries arrive.
function log(event: { type: string; id?: string; idempotencyKey: string | undefined }): void {
  console.log(`[mappa] ${event.type} ${event.id ?? event.idempotencyKey}`);
}

/** The handlers every route of this example shares. Replace the logging with your own work. */
export const on: MappaHandlerMap<unknown> = {
  "report.completed": (event) => log(event),
  "report.failed": (event) => log(event),
  "matching.completed": (event) => log(event),
  "matching.failed": (event) => log(event),
};

export const onUnknown = (event: MappaUnknownEvent): void => log(event);

/** Rejected deliveries (a wrong secret, a stale timestamp, ...) and failures, one line each. */
export const onError: NonNullable<MappaWebhooksOptions["onError"]> = (
  error: MappaWebhookError,
  info,
) => {
  console.error(`[mappa:error] ${error.code} in ${info.phase}: ${error.message}`);
};

// Read at request time: `next build` does not need the secret.
export const secret = process.env.MAPPA_WEBHOOK_SECRET as string;
