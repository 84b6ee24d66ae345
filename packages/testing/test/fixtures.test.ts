// Every event the kit generates, in every shape, checked against Mappa's wire format (the
// rules in wire-format.ts, written independently of the core) and then parsed by the core.
import { MAPPA_EVENT_TYPES, parseEvent, verifySignature } from "@mappa-webhooks/core";
import { afterAll, describe, expect, it } from "vitest";
import {
  createDeliverySimulator,
  createSignedDelivery,
  createSignedRequest,
  createTestEvent,
  simulateDelivery,
  TEST_EVENT_SHAPES,
  type TestEventShape,
} from "../src/index.js";
import { startServer, type TestServer } from "./server.js";
import {
  isIso8601,
  WIRE_DATA_FIELDS,
  WIRE_SHAPES,
  wireBodyProblems,
  wireFormatProblems,
  wireShapeOf,
} from "./wire-format.js";

const secret = "whsec_fixture_rules";
const UNKNOWN_TYPE = "report.progress";
const TYPES = [...MAPPA_EVENT_TYPES, UNKNOWN_TYPE];
const CASES = TEST_EVENT_SHAPES.flatMap((shape) =>
  TYPES.map((type) => [type, shape] as [string, TestEventShape]),
);

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
});

/** The core must parse `body` as `event`: known for known types, every field as sent. */
function expectParsedAs(body: string, event: Record<string, unknown>) {
  const parsed = parseEvent(body);
  const type = event.type as string;
  const data = event.data as { jobId: string };
  const id = event.id as string | undefined;
  expect(parsed).toMatchObject({
    known: (MAPPA_EVENT_TYPES as readonly string[]).includes(type),
    type,
    data: event.data,
    raw: event,
  });
  expect(parsed.id).toBe(id);
  expect(parsed.createdAt).toBe(event.createdAt);
  expect(parsed.timestamp).toBe(event.timestamp);
  expect(parsed.occurredAt).toBe(event.createdAt ?? event.timestamp);
  expect(parsed.occurredAt).toBeDefined();
  // The documented keys: a known event is one job's outcome, keyed `~job:<type>:<jobId>`
  // whatever its id; any other event by its id as sent, or the same form without one.
  const known = (MAPPA_EVENT_TYPES as readonly string[]).includes(type);
  expect(parsed.idempotencyKey).toBe(
    known ? `~job:${type}:${data.jobId}` : (id ?? `~job:${type}:${data.jobId}`),
  );
}

describe("the wire-format rules themselves", () => {
  const valid = {
    current: {
      id: "evt_1",
      type: "report.completed",
      createdAt: "2026-01-17T12:05:00.000Z",
      timestamp: "2026-01-17T12:05:00.000Z",
      data: { jobId: "j", reportId: "r", status: "succeeded" },
    },
    guide: {
      id: "evt_1",
      type: "report.completed",
      createdAt: "2026-01-17T12:05:00.000Z",
      data: { jobId: "j", reportId: "r", status: "completed" },
    },
    "mappa-node-1.2": {
      type: "report.failed",
      timestamp: "2026-01-17T12:05:00Z",
      data: { jobId: "j", status: "failed", error: { code: "c", message: "m" } },
    },
  } as const;

  it.each(WIRE_SHAPES)("accepts a %s body as the SDKs describe it", (shape) => {
    expect(wireFormatProblems(valid[shape], shape)).toEqual([]);
    expect(wireShapeOf(valid[shape])).toBe(shape);
  });

  it("rejects what each shape does not send", () => {
    const { current, guide } = valid;
    const node = valid["mappa-node-1.2"];
    expect(wireFormatProblems(guide, "current")).toEqual([
      "top-level fields are {id, type, createdAt, data}, expected {id, type, createdAt, timestamp, data}",
      "`timestamp` is not an ISO 8601 string: undefined",
      '`data.status` is "completed", the current shape sends "succeeded"',
    ]);
    expect(wireFormatProblems(current, "guide")).toEqual([
      "top-level fields are {id, type, createdAt, timestamp, data}, expected {id, type, createdAt, data}",
      '`data.status` is "succeeded", the guide shape sends "completed"',
    ]);
    expect(wireFormatProblems({ ...node, id: "evt_1" }, "mappa-node-1.2")).toEqual([
      "top-level fields are {type, timestamp, data, id}, expected {type, timestamp, data}",
    ]);
    expect(wireFormatProblems({ ...current, createdAt: 1_768_651_500 }, "current")).toEqual([
      "`createdAt` is not an ISO 8601 string: 1768651500",
    ]);
    expect(
      wireFormatProblems({ ...current, data: { jobId: "j", status: "succeeded" } }, "current"),
    ).toEqual(["`data.reportId` is not a string: undefined"]);
    expect(
      wireFormatProblems(
        { ...node, data: { jobId: "j", status: "failed", error: { code: "c" } } },
        "mappa-node-1.2",
      ),
    ).toEqual(["`data.error.message` is not a string"]);
    expect(wireFormatProblems({ ...current, id: "" }, "current")).toEqual([
      "`id` is not a non-empty string",
    ]);
    expect(wireFormatProblems([current], "current")).toEqual(["the body is not a JSON object"]);
    expect(wireShapeOf({ type: "x", data: {} })).toBeUndefined();
    expect(wireBodyProblems(JSON.stringify(current, null, 2), "current").problems).toEqual([
      "the body is not compact JSON",
    ]);
  });

  it("knows an ISO 8601 date-time from look-alikes", () => {
    for (const good of [
      "2026-01-17T12:05:00.000Z",
      "2026-01-17T12:05:00Z",
      "2026-01-17T12:05:00.123456+01:00",
      "2024-02-29T00:00:00Z",
    ])
      expect([good, isIso8601(good)]).toEqual([good, true]);
    for (const bad of [
      "2026-01-17",
      "2026-01-17 12:05:00Z",
      "2026-01-17T12:05Z",
      "2026-01-17T12:05:00",
      "2026-02-30T00:00:00Z",
      "2026-13-01T00:00:00Z",
      "Sat, 17 Jan 2026 12:05:00 GMT",
      "1768651500",
      1_768_651_500,
    ])
      expect([bad, isIso8601(bad)]).toEqual([bad, false]);
  });
});

describe("createTestEvent follows the wire format", () => {
  it.each(CASES)("%s in the %s shape", (type, shape) => {
    const event = createTestEvent(type, {}, { shape }) as unknown as Record<string, unknown>;
    expect(wireFormatProblems(event, shape)).toEqual([]);
    expect(wireShapeOf(event)).toBe(shape);
    const fields = WIRE_DATA_FIELDS[type] ?? ["jobId"];
    expect(Object.keys(event.data as object).sort()).toEqual([...fields].sort());
    expectParsedAs(JSON.stringify(event), event);
  });

  it("defaults to the current shape, with createdAt and timestamp the same instant", () => {
    for (const type of TYPES) {
      const event = createTestEvent(type);
      expect(wireShapeOf(event)).toBe("current");
      expect(event.timestamp).toBe(event.createdAt);
      expect(Math.abs(Date.parse(event.createdAt) - Date.now())).toBeLessThan(60_000);
    }
  });

  it.each(CASES)("%s in the %s shape keeps to the format with overrides", (type, shape) => {
    const at = new Date("2026-01-17T12:05:00Z");
    const overrides =
      shape === "guide"
        ? { id: "evt_fixed", createdAt: at }
        : shape === "mappa-node-1.2"
          ? { timestamp: at }
          : { id: "evt_fixed", createdAt: at, timestamp: new Date(at.getTime() + 1_000) };
    const event = createTestEvent(
      type,
      { ...overrides, data: { jobId: "job_fixed" } },
      { shape },
    ) as unknown as Record<string, unknown>;
    expect(wireFormatProblems(event, shape)).toEqual([]);
    expect((event.data as { jobId: string }).jobId).toBe("job_fixed");
    if (shape !== "mappa-node-1.2") expect(event.id).toBe("evt_fixed");
    expectParsedAs(JSON.stringify(event), event);
  });
});

describe("the signing helpers send bodies that follow the wire format", () => {
  it.each(CASES)("createSignedDelivery: %s in the %s shape", async (type, shape) => {
    const event = createTestEvent(type, {}, { shape });
    const { body, headers } = await createSignedDelivery(event, { secret });
    const checked = wireBodyProblems(body, shape);
    expect(checked.problems).toEqual([]);
    await expect(verifySignature({ payload: body, headers, secret })).resolves.toMatchObject({
      ok: true,
    });
    expectParsedAs(body, checked.event as Record<string, unknown>);
  });

  it.each(CASES)("createSignedRequest: %s in the %s shape", async (type, shape) => {
    const event = createTestEvent(type, {}, { shape });
    const request = await createSignedRequest("http://127.0.0.1/webhooks/mappa", event, {
      secret,
    });
    const body = await request.text();
    const checked = wireBodyProblems(body, shape);
    expect(checked.problems).toEqual([]);
    await expect(
      verifySignature({ payload: body, headers: request.headers, secret }),
    ).resolves.toMatchObject({ ok: true });
    expectParsedAs(body, checked.event as Record<string, unknown>);
  });
});

describe("the simulator delivers bodies that follow the wire format, over HTTP", () => {
  it("simulateDelivery and createDeliverySimulator, every type in every shape", async () => {
    const target = await startServer(() => 200);
    servers.push(target);
    const mappa = createDeliverySimulator({ secret, timeScale: 0 });
    const sent: Array<[string, TestEventShape]> = [];
    for (const [type, shape] of CASES) {
      const event = createTestEvent(type, {}, { shape });
      const report = await simulateDelivery(target.url, event, { secret, schedule: [0] });
      expect(report.delivered).toBe(true);
      expect((await mappa.deliver(target.url, event)).delivered).toBe(true);
      sent.push([type, shape], [type, shape]);
    }
    expect(target.received).toHaveLength(sent.length);
    for (const [index, request] of target.received.entries()) {
      const [type, shape] = sent[index] as [string, TestEventShape];
      const checked = wireBodyProblems(request.body, shape);
      expect({ type, shape, problems: checked.problems }).toEqual({ type, shape, problems: [] });
      await expect(
        verifySignature({ payload: request.body, headers: request.headers, secret }),
      ).resolves.toMatchObject({ ok: true });
      expectParsedAs(request.body, checked.event as Record<string, unknown>);
    }
  });
});
