import { describe, expectTypeOf, it } from "vitest";
import {
  createMappaWebhooks,
  type MappaCompletedStatus,
  type MappaEvent,
  type MappaFailedStatus,
  type MappaKnownEvent,
  type MappaWebhookErrorCode,
  type MatchingCompletedData,
  type MatchingFailedData,
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

describe("events as Mappa sends them", () => {
  it("carries every top-level field of the three shapes, each optional as it really is", () => {
    const event = parseEvent("{}");
    expectTypeOf(event.id).toEqualTypeOf<string | undefined>();
    expectTypeOf(event.createdAt).toEqualTypeOf<string | undefined>();
    expectTypeOf(event.timestamp).toEqualTypeOf<string | undefined>();
    expectTypeOf(event.occurredAt).toEqualTypeOf<string | undefined>();
    expectTypeOf(event.type).toBeString();
  });

  it("types data.status by the values Mappa sends", () => {
    expectTypeOf<ReportCompletedData["status"]>().toEqualTypeOf<"succeeded" | "completed">();
    expectTypeOf<MatchingCompletedData["status"]>().toEqualTypeOf<MappaCompletedStatus>();
    expectTypeOf<ReportFailedData["status"]>().toEqualTypeOf<"failed">();
    expectTypeOf<MatchingFailedData["status"]>().toEqualTypeOf<MappaFailedStatus>();
    // @ts-expect-error not a status Mappa sends
    const wrong: ReportCompletedData["status"] = "done";
    void wrong;
  });

  it("accepts the SDK's own data types where ours are expected", () => {
    // Shaped exactly like @mappa-ai/conduit 0.2 and @mappa-ai/mappa-node 1.2 declare them.
    type SdkReportCompletedData = { jobId: string; reportId: string; status: "succeeded" };
    type SdkReportFailedData = {
      jobId: string;
      status: "failed";
      error: { code: string; message: string };
    };
    interface SdkMatchingCompletedData {
      jobId: string;
      matchingId: string;
      status: "succeeded";
    }
    interface SdkMatchingFailedData {
      jobId: string;
      status: "failed";
      error: { code: string; message: string };
    }
    expectTypeOf<SdkReportCompletedData>().toExtend<ReportCompletedData>();
    expectTypeOf<SdkReportFailedData>().toExtend<ReportFailedData>();
    expectTypeOf<SdkMatchingCompletedData>().toExtend<MatchingCompletedData>();
    expectTypeOf<SdkMatchingFailedData>().toExtend<MatchingFailedData>();
    // And a function written against the SDK's types takes ours.
    const fromSdk = (data: SdkReportFailedData) => data.error.message;
    const event = parseEvent("{}");
    if (event.known && event.type === "report.failed") {
      expectTypeOf(fromSdk).toBeCallableWith(event.data);
    }
  });

  it("has no index signature: a typo in a field name is a type error", () => {
    const event = parseEvent("{}");
    if (event.known && event.type === "report.completed") {
      // @ts-expect-error `reportID` is not a field
      void event.data.reportID;
    }
  });
});
