import { describe, expectTypeOf, it } from "vitest";
import {
  createMappaWebhooks,
  type MappaEvent,
  type MappaKnownEvent,
  type MappaWebhookErrorCode,
  parseEvent,
  type ReportCompletedData,
  type ReportFailedData,
} from "../src/index.js";

describe("event union", () => {
  it("narrows data by type once the event is known", () => {
    const event = parseEvent("{}");
    expectTypeOf(event).toEqualTypeOf<MappaEvent>();
    if (event.known && event.type === "report.completed") {
      expectTypeOf(event.data).toEqualTypeOf<ReportCompletedData>();
      expectTypeOf(event.data.reportId).toBeString();
      expectTypeOf(event.idempotencyKey).toBeString();
    }
    if (event.known && event.type === "matching.failed") {
      expectTypeOf(event.data.error.code).toBeString();
    }
    if (!event.known) {
      expectTypeOf(event.data).toBeUnknown();
      expectTypeOf(event.idempotencyKey).toEqualTypeOf<string | undefined>();
    }
  });

  it("does not let an unchecked event claim typed data", () => {
    const event = parseEvent("{}");
    if (event.type === "report.completed") {
      // @ts-expect-error unknown events share the type string, so `known` must be checked first
      void event.data.reportId;
    }
  });

  it("keeps error codes a closed union", () => {
    expectTypeOf<"signature_mismatch">().toExtend<MappaWebhookErrorCode>();
    expectTypeOf<"nope">().not.toExtend<MappaWebhookErrorCode>();
  });
});

describe("handler map", () => {
  it("narrows each handler's event to its key", () => {
    createMappaWebhooks({
      secret: "s",
      on: {
        "report.completed": (event) => {
          expectTypeOf(event).toEqualTypeOf<MappaKnownEvent<"report.completed">>();
          expectTypeOf(event.data).toEqualTypeOf<ReportCompletedData>();
        },
        "report.failed": (event) => {
          expectTypeOf(event.data).toEqualTypeOf<ReportFailedData>();
        },
      },
      onUnknown: (event) => {
        expectTypeOf(event.known).toEqualTypeOf<false>();
      },
    });
  });

  it("rejects handlers for types that do not exist", () => {
    createMappaWebhooks({
      secret: "s",
      on: {
        // @ts-expect-error not an event type
        "report.complete": () => {},
      },
    });
  });

  it("types the emitter style and the handler context", () => {
    const webhooks = createMappaWebhooks<{ requestId: string }>({ secret: "s" });
    webhooks.on("matching.completed", (event, context) => {
      expectTypeOf(event.data.matchingId).toBeString();
      expectTypeOf(context.requestId).toBeString();
    });
    // @ts-expect-error not an event type
    webhooks.on("matching.complete", () => {});
  });
});
