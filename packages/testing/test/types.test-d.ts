import type {
  MappaEventDataMap,
  MappaJobError,
  ReportCompletedData,
  ReportFailedData,
} from "@mappa-webhooks/core";
import { describe, expectTypeOf, it } from "vitest";
import {
  createTestEvent,
  TEST_EVENT_SHAPES,
  type TestEvent,
  type TestEventShape,
  type UnknownEventData,
} from "../src/index.js";

describe("createTestEvent types", () => {
  it("narrows data by the literal type", () => {
    const completed = createTestEvent("report.completed");
    expectTypeOf(completed.type).toEqualTypeOf<"report.completed">();
    expectTypeOf(completed.data.reportId).toEqualTypeOf<string>();
    expectTypeOf(createTestEvent("matching.completed").data.matchingId).toEqualTypeOf<string>();
    expectTypeOf(createTestEvent("report.failed").data.error).toEqualTypeOf<MappaJobError>();
    expectTypeOf(createTestEvent("report.progress").data).toEqualTypeOf<UnknownEventData>();
  });

  it("defaults to the current shape: id, createdAt, timestamp and status succeeded", () => {
    const event = createTestEvent("report.completed");
    expectTypeOf(event).toEqualTypeOf<TestEvent<"report.completed", "current">>();
    expectTypeOf(event.id).toEqualTypeOf<string>();
    expectTypeOf(event.createdAt).toEqualTypeOf<string>();
    expectTypeOf(event.timestamp).toEqualTypeOf<string>();
    expectTypeOf(event.data.status).toEqualTypeOf<"succeeded">();
    expectTypeOf(createTestEvent("matching.failed").data.status).toEqualTypeOf<"failed">();
  });

  it("types each shape's top-level fields and status", () => {
    const guide = createTestEvent("report.completed", {}, { shape: "guide" });
    expectTypeOf(guide).toEqualTypeOf<TestEvent<"report.completed", "guide">>();
    expectTypeOf(guide.data.status).toEqualTypeOf<"completed">();
    expectTypeOf(guide).toHaveProperty("createdAt");
    expectTypeOf(guide).not.toHaveProperty("timestamp");

    const node = createTestEvent("report.completed", {}, { shape: "mappa-node-1.2" });
    expectTypeOf(node.timestamp).toEqualTypeOf<string>();
    expectTypeOf(node.data.status).toEqualTypeOf<"succeeded">();
    expectTypeOf(node).not.toHaveProperty("id");
    expectTypeOf(node).not.toHaveProperty("createdAt");
    expectTypeOf(
      createTestEvent("report.failed", {}, { shape: "mappa-node-1.2" }).data.error,
    ).toEqualTypeOf<MappaJobError>();
  });

  it("widens to every shape when the shape is not a literal", () => {
    const shape = TEST_EVENT_SHAPES[0] as TestEventShape;
    const event = createTestEvent("matching.completed", {}, { shape });
    expectTypeOf(event.data.status).toEqualTypeOf<"succeeded" | "completed">();
    expectTypeOf(event).toEqualTypeOf<TestEvent<"matching.completed", TestEventShape>>();
  });

  it("is assignable to the core's data types", () => {
    expectTypeOf(createTestEvent("report.completed").data).toExtend<ReportCompletedData>();
    expectTypeOf(
      createTestEvent("report.completed", {}, { shape: "guide" }).data,
    ).toExtend<ReportCompletedData>();
    expectTypeOf(createTestEvent("report.failed").data).toExtend<ReportFailedData>();
    expectTypeOf(
      createTestEvent("matching.completed", {}, { shape: "mappa-node-1.2" }).data,
    ).toExtend<MappaEventDataMap["matching.completed"]>();
  });

  it("checks overrides against the type's data and the shape's fields", () => {
    createTestEvent("report.failed", { data: { error: { code: "x" } } });
    createTestEvent("report.completed", { data: { reportId: undefined } });
    createTestEvent("report.completed", {
      timestamp: new Date(),
      createdAt: "2026-01-17T12:05:00Z",
    });
    createTestEvent("report.completed", { id: "evt_1" }, { shape: "guide" });
    createTestEvent("report.completed", { timestamp: new Date() }, { shape: "mappa-node-1.2" });
    // @ts-expect-error reportId is a string
    createTestEvent("report.completed", { data: { reportId: 5 } });
    // @ts-expect-error error.code is a string
    createTestEvent("matching.failed", { data: { error: { code: 1 } } });
    // @ts-expect-error the current shape's completed status is "succeeded"
    createTestEvent("report.completed", { data: { status: "completed" } });
    // @ts-expect-error the guide's completed status is "completed"
    createTestEvent("report.completed", { data: { status: "succeeded" } }, { shape: "guide" });
    // @ts-expect-error the guide's shape has no timestamp
    createTestEvent("report.completed", { timestamp: "2026-01-17T12:05:00Z" }, { shape: "guide" });
    // @ts-expect-error mappa-node 1.2 sends no id
    createTestEvent("report.completed", { id: "evt_1" }, { shape: "mappa-node-1.2" });
    // @ts-expect-error mappa-node 1.2 sends no createdAt
    createTestEvent("report.completed", { createdAt: new Date() }, { shape: "mappa-node-1.2" });
    // @ts-expect-error not a shape
    createTestEvent("report.completed", {}, { shape: "v3" });
  });

  it("distributes over a union of types", () => {
    expectTypeOf<TestEvent<"report.completed" | "report.failed">>().toEqualTypeOf<
      TestEvent<"report.completed"> | TestEvent<"report.failed">
    >();
  });
});
