import type { ReportCompletedEvent } from "@mappa-webhooks/core";
import type { DynamicModule } from "@nestjs/common";
import { describe, expectTypeOf, it } from "vitest";
import { type MappaEvent, type MappaNestContext, MappaWebhookModule } from "../src/index.js";

describe("types", () => {
  it("narrows the module's handlers and gives them the Nest context", () => {
    const module = MappaWebhookModule.forRoot({
      secret: "whsec_x",
      on: {
        "report.completed": (event, context) => {
          expectTypeOf(event).toEqualTypeOf<ReportCompletedEvent>();
          expectTypeOf(context).toEqualTypeOf<MappaNestContext>();
        },
      },
    });
    expectTypeOf(module).toEqualTypeOf<DynamicModule>();
  });

  it("narrows the controller's event by type", () => {
    const read = (event: MappaEvent) => {
      if (event.known && event.type === "report.completed")
        expectTypeOf(event.data.reportId).toBeString();
    };
    expectTypeOf(read).toBeFunction();
  });

  it('rejects ack: "first", a missing secret and a bad path', () => {
    // @ts-expect-error the controller is the handler: ack-first is not offered
    MappaWebhookModule.forRoot({ secret: "whsec_x", ack: "first" });
    // @ts-expect-error secret is required
    MappaWebhookModule.forRoot({ path: "/hooks" });
    // @ts-expect-error path is a string, a list or false
    MappaWebhookModule.forRoot({ secret: "whsec_x", path: 3 });
    MappaWebhookModule.forRootAsync({ useFactory: () => ({ secret: "whsec_x" }) });
  });
});
