import { type MappaEvent as Event, MappaEvent, MappaWebhook } from "@mappa-webhooks/nestjs";
import { Controller, Post } from "@nestjs/common";

@Controller("webhooks")
export class WebhooksController {
  // Runs once per new, verified event; a throw answers 500 so Mappa retries.
  @Post("mappa")
  @MappaWebhook()
  receive(@MappaEvent() event: Event) {
    const key = event.id ?? event.idempotencyKey;
    if (!event.known) {
      console.log(`[mappa] ${event.type} ${key} (not a known type, ignored)`);
      return;
    }
    switch (event.type) {
      case "report.completed":
        console.log(`[mappa] ${event.type} ${key} report=${event.data.reportId}`);
        break;
      case "matching.completed":
        console.log(`[mappa] ${event.type} ${key} matching=${event.data.matchingId}`);
        break;
      case "report.failed":
      case "matching.failed":
        console.log(`[mappa] ${event.type} ${key} error=${event.data.error.code}`);
        break;
    }
  }
}
