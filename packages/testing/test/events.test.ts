import { MAPPA_EVENT_TYPES, parseEvent } from "@mappa-webhooks/core";
import { describe, expect, it } from "vitest";
import { createEventId, createTestEvent, mergeData } from "../src/index.js";

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

describe("createTestEvent", () => {
  it.each(MAPPA_EVENT_TYPES)("builds a %s event the core parses as known", (type) => {
    const event = createTestEvent(type);
    expect(event.type).toBe(type);
    expect(event.id).toMatch(/^evt_[0-9a-z]{24}$/);
    expect(event.createdAt).toMatch(ISO);
    expect(event.timestamp).toBe(event.createdAt);
    expect(Math.abs(Date.parse(event.createdAt) - Date.now())).toBeLessThan(5_000);
    expect(event.data.jobId).toMatch(/^cm[0-9a-z]{23}$/);
    const parsed = parseEvent(JSON.stringify(event));
    expect(parsed).toMatchObject({
      known: true,
      type,
      id: event.id,
      idempotencyKey: `~job:${type}:${event.data.jobId}`,
    });
  });

  it("fills the fields each type promises", () => {
    const completed = createTestEvent("report.completed");
    expect(completed.data).toEqual({
      jobId: expect.any(String),
      reportId: expect.stringMatching(/^cm/),
      status: "succeeded",
    });
    expect(createTestEvent("report.completed", {}, { shape: "guide" }).data.status).toBe(
      "completed",
    );
    expect(createTestEvent("matching.completed", {}, { shape: "mappa-node-1.2" }).data.status).toBe(
      "succeeded",
    );
    expect(createTestEvent("matching.completed").data.matchingId).toMatch(/^cm/);
    const failed = createTestEvent("report.failed");
    expect(failed.data.status).toBe("failed");
    expect(failed.data.error).toEqual({ code: "target_not_found", message: expect.any(String) });
    expect(createTestEvent("matching.failed").data.error.code).toBe("insufficient_credits");
  });

  it("builds a generic event for an unknown type, which the core passes through", () => {
    const event = createTestEvent("report.progress", { data: { progress: 0.5 } });
    expect(event.data).toEqual({ jobId: expect.any(String), progress: 0.5 });
    const parsed = parseEvent(JSON.stringify(event));
    expect(parsed.known).toBe(false);
    expect(parsed.type).toBe("report.progress");
  });

  it("deep-merges data overrides and keeps the other defaults", () => {
    const event = createTestEvent("report.failed", {
      id: "evt_fixed",
      createdAt: new Date("2026-01-17T12:05:00Z"),
      data: { jobId: "job_1", error: { code: "audio_too_short" } },
    });
    expect(event.id).toBe("evt_fixed");
    expect(event.createdAt).toBe("2026-01-17T12:05:00.000Z");
    expect(event.data.jobId).toBe("job_1");
    expect(event.data.error).toEqual({
      code: "audio_too_short",
      message: "Could not identify the target speaker in the recording.",
    });
    expect(
      createTestEvent("report.completed", { createdAt: "2026-01-01T00:00:00Z" }).createdAt,
    ).toBe("2026-01-01T00:00:00Z");
  });

  it("removes a field set to undefined, to build events the core rejects", () => {
    const event = createTestEvent("report.completed", { data: { reportId: undefined } });
    expect("reportId" in event.data).toBe(false);
    expect(() => parseEvent(JSON.stringify(event))).toThrow(
      expect.objectContaining({ code: "invalid_event" }),
    );
  });

  it("replaces arrays and copies values, so the event never aliases the overrides", () => {
    const tags = ["a", "b"];
    const nested = { deep: { value: 1 } };
    const event = createTestEvent("report.progress", { data: { tags, nested } });
    expect(event.data.tags).toEqual(["a", "b"]);
    expect(event.data.tags).not.toBe(tags);
    (nested.deep as { value: number }).value = 2;
    expect(event.data.nested).toEqual({ deep: { value: 1 } });
    expect(mergeData({ list: [1, 2, 3] }, { list: [9] })).toEqual({ list: [9] });
  });

  it("ignores __proto__, constructor and prototype keys and never pollutes Object.prototype", () => {
    const hostile = JSON.parse(
      '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"prototype":1,"error":{"__proto__":{"polluted":true},"code":"x"}}',
    );
    const event = createTestEvent("report.failed", { data: hostile });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(event.data)).toBe(Object.prototype);
    expect(Object.keys(event.data)).not.toContain("constructor");
    expect(Object.keys(event.data)).not.toContain("prototype");
    expect(event.data.error.code).toBe("x");
    expect((event.data.error as unknown as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("makes unique ids", () => {
    const ids = new Set(Array.from({ length: 500 }, () => createEventId()));
    expect(ids.size).toBe(500);
    const jobs = new Set(
      Array.from({ length: 200 }, () => createTestEvent("report.completed").data.jobId),
    );
    expect(jobs.size).toBe(200);
  });

  it("builds each shape's fields in the order Mappa writes them", () => {
    expect(Object.keys(createTestEvent("report.completed"))).toEqual([
      "id",
      "type",
      "createdAt",
      "timestamp",
      "data",
    ]);
    expect(Object.keys(createTestEvent("report.completed", {}, { shape: "guide" }))).toEqual([
      "id",
      "type",
      "createdAt",
      "data",
    ]);
    expect(
      Object.keys(createTestEvent("report.completed", {}, { shape: "mappa-node-1.2" })),
    ).toEqual(["type", "timestamp", "data"]);
  });

  it("lets createdAt and timestamp follow each other unless both are given", () => {
    const at = "2026-01-17T12:05:00.000Z";
    expect(createTestEvent("report.completed", { createdAt: at }).timestamp).toBe(at);
    expect(createTestEvent("report.completed", { timestamp: new Date(at) }).createdAt).toBe(at);
    const both = createTestEvent("report.completed", {
      createdAt: at,
      timestamp: "2026-01-17T12:05:01.000Z",
    });
    expect([both.createdAt, both.timestamp]).toEqual([at, "2026-01-17T12:05:01.000Z"]);
    expect(
      createTestEvent("report.failed", { timestamp: at }, { shape: "mappa-node-1.2" }).timestamp,
    ).toBe(at);
  });

  it("refuses a field the chosen shape does not have, an unknown shape and an invalid Date", () => {
    expect(() =>
      createTestEvent("report.completed", { id: "evt_1" } as never, { shape: "mappa-node-1.2" }),
    ).toThrow(
      "@mappa-webhooks/testing: the mappa-node-1.2 shape has no `id` (it sends {type, timestamp, data}); drop the override or pick another shape.",
    );
    expect(() =>
      createTestEvent("report.completed", { createdAt: new Date() } as never, {
        shape: "mappa-node-1.2",
      }),
    ).toThrow(/has no `createdAt`/);
    expect(() =>
      createTestEvent("report.completed", { timestamp: "2026-01-17T12:05:00Z" } as never, {
        shape: "guide",
      }),
    ).toThrow(/the guide shape has no `timestamp` \(it sends \{id, type, createdAt, data\}\)/);
    expect(() => createTestEvent("report.completed", {}, { shape: "conduit" as never })).toThrow(
      'unknown shape "conduit"; use one of "current", "guide", "mappa-node-1.2".',
    );
    expect(() => createTestEvent("report.completed", { createdAt: new Date("nope") })).toThrow(
      "`overrides.createdAt` must be a valid Date or a string.",
    );
    expect(() => createTestEvent("report.completed", null as never)).toThrow(
      /`overrides` must be an object/,
    );
    expect(() => createTestEvent("report.completed", {}, "guide" as never)).toThrow(
      /must be an options object/,
    );
  });

  it("rejects an empty type and non-object data", () => {
    expect(() => createTestEvent("")).toThrow(/non-empty event type/);
    expect(() =>
      createTestEvent("report.completed", { data: [] as unknown as Record<string, never> }),
    ).toThrow(/plain object/);
  });
});
