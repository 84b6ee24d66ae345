import type { MappaJobError } from "@mappa-webhooks/core";
import { describe, expectTypeOf, it } from "vitest";
import { createTestEvent, type TestEvent, type UnknownEventData } from "../src/index.js";

describe("createTestEvent types", () => {
  it("narrows data by the literal type", () => {
    const completed = createTestEvent("report.completed");
    expectTypeOf(completed.type).toEqualTypeOf<"report.completed">();
    expectTypeOf(completed.data.reportId).toEqualTypeOf<string>();
    expectTypeOf(createTestEvent("matching.completed").data.matchingId).toEqualTypeOf<string>();
    expectTypeOf(createTestEvent("report.failed").data.error).toEqualTypeOf<MappaJobError>();
    expectTypeOf(createTestEvent("report.progress").data).toEqualTypeOf<UnknownEventData>();
  });

  it("checks overrides against the type's data", () => {
    createTestEvent("report.failed", { data: { error: { code: "x" } } });
    createTestEvent("report.completed", { data: { reportId: undefined } });
    // @ts-expect-error reportId is a string
    createTestEvent("report.completed", { data: { reportId: 5 } });
    // @ts-expect-error error.code is a string
    createTestEvent("matching.failed", { data: { error: { code: 1 } } });
  });

  it("distributes over a union of types", () => {
    expectTypeOf<TestEvent<"report.completed" | "report.failed">>().toEqualTypeOf<
      TestEvent<"report.completed"> | TestEvent<"report.failed">
    >();
  });
});
