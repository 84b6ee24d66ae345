import { describe, expect, it } from "vitest";
import { parseEvent } from "../src/index.js";

describe("parseEvent", () => {
  it("keys an event without id by type and job id", () => {
    const event = parseEvent(
      JSON.stringify({
        type: "report.completed",
        timestamp: "2026-01-17T12:05:00.000Z",
        data: { jobId: "j9", reportId: "r", status: "succeeded" },
      }),
    );
    expect(event.id).toBeUndefined();
    expect(event.idempotencyKey).toBe("~job:report.completed:j9");
    expect(event.createdAt).toBeUndefined();
    expect(event.timestamp).toBe("2026-01-17T12:05:00.000Z");
    expect(event.occurredAt).toBe("2026-01-17T12:05:00.000Z");
  });

  it("keys a known event by its job outcome, whatever its id", () => {
    const body = (id: string | undefined) =>
      JSON.stringify({
        ...(id === undefined ? {} : { id }),
        type: "report.completed",
        data: { jobId: "job_7", reportId: "r", status: "succeeded" },
      });
    const keys = [body("evt_a"), body("evt_b"), body(undefined), body("~job:x")].map(
      (b) => parseEvent(b).idempotencyKey,
    );
    expect(new Set(keys)).toEqual(new Set(["~job:report.completed:job_7"]));
    const failed = parseEvent(
      JSON.stringify({
        id: "evt_a",
        type: "report.failed",
        data: { jobId: "job_7", status: "failed", error: { code: "c", message: "m" } },
      }),
    );
    expect(failed.idempotencyKey).toBe("~job:report.failed:job_7");
    expect(failed.recovered).toBe(false);
    expect(
      parseEvent(JSON.stringify({ id: "evt_u", type: "x.y", data: { jobId: "job_7" } }))
        .idempotencyKey,
    ).toBe("evt_u");
  });

  it("passes unknown types through, keyed when it can be", () => {
    const event = parseEvent(
      JSON.stringify({ id: "evt_n", type: "report.progress", data: { progress: 1 } }),
    );
    expect(event.known).toBe(false);
    expect(event.idempotencyKey).toBe("evt_n");
    const anonymous = parseEvent(JSON.stringify({ type: "future.thing", data: 1 }));
    expect(anonymous.idempotencyKey).toBeUndefined();
  });

  it("keeps extra fields in raw and data", () => {
    const event = parseEvent(
      JSON.stringify({
        id: "e",
        type: "report.completed",
        apiVersion: "x",
        data: { jobId: "j", reportId: "r", status: "succeeded", extra: 1 },
      }),
    );
    expect(event.raw.apiVersion).toBe("x");
    expect((event.data as Record<string, unknown>).extra).toBe(1);
  });

  it("never pollutes prototypes", () => {
    const hostile =
      '{"id":"evt_p","type":"report.completed","__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},' +
      '"data":{"jobId":"j","reportId":"r","status":"succeeded","__proto__":{"polluted":true}}}';
    const event = parseEvent(hostile);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
    expect((event as unknown as Record<string, unknown>).polluted).toBeUndefined();
    expect(event.id).toBe("evt_p");
    expect(event.idempotencyKey).toBe("~job:report.completed:j");
  });

  it("accepts bytes with a BOM and an ArrayBuffer", () => {
    const bytes = new TextEncoder().encode('\uFEFF{"id":"e","type":"x.y","data":{}}');
    expect(parseEvent(bytes).type).toBe("x.y");
    expect(parseEvent(bytes.buffer as ArrayBuffer).type).toBe("x.y");
  });
});
