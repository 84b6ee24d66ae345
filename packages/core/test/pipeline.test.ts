import { describe, expect, it, vi } from "vitest";
import {
  createMappaWebhooks,
  createMemoryIdempotencyStore,
  type IdempotencyStore,
  type MappaEvent,
  MappaWebhookError,
  type MappaWebhooksOptions,
  signPayload,
} from "../src/index.js";

const secret = "whsec_pipeline_test";
const NOW = 1_800_000_000;

function eventBody(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    id: "evt_pipe_1",
    type: "report.completed",
    createdAt: "2027-01-15T08:00:00.000Z",
    data: { jobId: "job_1", reportId: "rep_1", status: "completed" },
    ...overrides,
  });
}

async function delivery(body: string, t = NOW) {
  return {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "mappa-signature": await signPayload({ payload: body, secret, timestamp: t }),
    },
    rawBody: new TextEncoder().encode(body),
  };
}

function receiver(options: Partial<MappaWebhooksOptions> = {}) {
  return createMappaWebhooks({ secret, now: NOW, ...options });
}

describe("statuses", () => {
  it("200 for a handled event, with the typed event reaching the handler", async () => {
    const seen: string[] = [];
    const webhooks = receiver({
      on: { "report.completed": (event) => void seen.push(event.data.reportId) },
    });
    const response = await webhooks.handle(await delivery(eventBody()));
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ received: true });
    expect(response.headers["content-type"]).toMatch(/application\/json/);
    expect(seen).toEqual(["rep_1"]);
  });

  it("401 with only the code for each signature failure", async () => {
    const onError = vi.fn();
    const webhooks = receiver({ onError });
    const body = eventBody();
    const good = await delivery(body);
    const cases: Array<[Record<string, string>, string]> = [
      [{}, "missing_signature"],
      [{ "mappa-signature": "garbage" }, "malformed_signature"],
      [
        { "mappa-signature": await signPayload({ payload: body, secret, timestamp: NOW - 301 }) },
        "timestamp_outside_tolerance",
      ],
      [
        {
          "mappa-signature": await signPayload({
            payload: body,
            secret: "whsec_x",
            timestamp: NOW,
          }),
        },
        "signature_mismatch",
      ],
    ];
    for (const [headers, code] of cases) {
      const response = await webhooks.handle({ ...good, headers });
      expect(response.status).toBe(401);
      expect(JSON.parse(response.body)).toEqual({ error: code });
    }
    expect(onError).toHaveBeenCalledTimes(4);
  });

  it("400 for invalid JSON and for JSON that is not an event", async () => {
    const webhooks = receiver();
    for (const [body, code] of [
      ["{nope", "invalid_json"],
      ["[1,2]", "invalid_event"],
      [JSON.stringify({ id: "e", type: "report.completed" }), "invalid_event"],
    ]) {
      const response = await webhooks.handle(await delivery(body as string));
      expect(response.status).toBe(400);
      expect(JSON.parse(response.body).error).toBe(code);
    }
  });

  it("405 with Allow: POST for other methods", async () => {
    const response = await receiver().handle({ method: "GET", headers: {}, rawBody: "" });
    expect(response.status).toBe(405);
    expect(response.headers.allow).toBe("POST");
  });

  it("413 over maxBodyBytes, before verifying", async () => {
    const webhooks = receiver({ maxBodyBytes: 64 });
    const response = await webhooks.handle(await delivery(eventBody()));
    expect(response.status).toBe(413);
    expect(JSON.parse(response.body).error).toBe("payload_too_large");
  });

  it("500 when a handler throws, with onError told", async () => {
    const onError = vi.fn();
    const webhooks = receiver({
      onError,
      on: {
        "report.completed": () => {
          throw new Error("database down");
        },
      },
    });
    const response = await webhooks.handle(await delivery(eventBody()));
    expect(response.status).toBe(500);
    expect(JSON.parse(response.body)).toEqual({ error: "handler_failed" });
    expect(response.body).not.toContain("database down");
    const [error, info] = onError.mock.calls[0] as [MappaWebhookError, { phase: string }];
    expect(error.code).toBe("handler_failed");
    expect((error.cause as Error).message).toBe("database down");
    expect(info.phase).toBe("handler");
  });

  it("200 for an unknown type without onUnknown; onUnknown can make it 500", async () => {
    const body = eventBody({
      id: "evt_new",
      type: "report.progress",
      data: { jobId: "j", progress: 0.5 },
    });
    expect((await receiver().handle(await delivery(body))).status).toBe(200);
    const seen: string[] = [];
    const webhooks = receiver({ onUnknown: (event) => void seen.push(event.type) });
    expect((await webhooks.handle(await delivery(body))).status).toBe(200);
    expect(seen).toEqual(["report.progress"]);
    const strict = receiver({
      onUnknown: () => {
        throw new Error("not yet supported");
      },
    });
    expect((await strict.handle(await delivery(body))).status).toBe(500);
  });

  it("rejects bad options at creation with a typed error", () => {
    expect(() => createMappaWebhooks({ secret: "" })).toThrow(MappaWebhookError);
    expect(() => createMappaWebhooks({ secret, maxBodyBytes: -1 })).toThrow(/maxBodyBytes/);
    expect(() => createMappaWebhooks({ secret, ack: "later" as "first" })).toThrow(/ack/);
    expect(() =>
      createMappaWebhooks({ secret, on: { "report.completed": 1 as unknown as () => void } }),
    ).toThrow(/report.completed/);
  });
});

describe("onVerified", () => {
  it("sees the event before handlers, and duplicates too, but never an unverified one", async () => {
    const order: string[] = [];
    const webhooks = receiver({ on: { "report.completed": () => void order.push("handler") } });
    const onVerified = (event: MappaEvent) => void order.push(`verified:${event.idempotencyKey}`);
    await webhooks.handle({ ...(await delivery(eventBody())), onVerified });
    await webhooks.handle({ ...(await delivery(eventBody())), onVerified });
    await webhooks.handle({ ...(await delivery(eventBody())), headers: {}, onVerified });
    expect(order).toEqual([
      "verified:~job:report.completed:job_1",
      "handler",
      "verified:~job:report.completed:job_1",
    ]);
  });
});

describe("idempotency", () => {
  it("a duplicate after success answers 200 without running handlers", async () => {
    const handler = vi.fn();
    const webhooks = receiver({ on: { "report.completed": handler } });
    const first = await webhooks.handle(await delivery(eventBody()));
    const second = await webhooks.handle(await delivery(eventBody(), NOW + 5));
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(JSON.parse(second.body)).toEqual({ received: true, duplicate: true });
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it("a failing handler releases the claim, so the retry runs it again", async () => {
    let attempts = 0;
    const effects: string[] = [];
    const webhooks = receiver({
      on: {
        "report.completed": (event) => {
          attempts++;
          if (attempts === 1) throw new Error("transient");
          effects.push(event.idempotencyKey);
        },
      },
    });
    expect((await webhooks.handle(await delivery(eventBody()))).status).toBe(500);
    expect((await webhooks.handle(await delivery(eventBody()))).status).toBe(200);
    expect((await webhooks.handle(await delivery(eventBody()))).status).toBe(200);
    expect(attempts).toBe(2);
    expect(effects).toEqual(["~job:report.completed:job_1"]);
  });

  it("concurrent copies run the handler once and are answered 200 or 409, never 5xx", async () => {
    let runs = 0;
    // The first copy's handler holds until every other copy has been answered: no timing.
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const webhooks = receiver({
      on: {
        "report.completed": async () => {
          runs++;
          await gate;
        },
      },
    });
    const request = await delivery(eventBody());
    let answered = 0;
    const pending = Array.from({ length: 8 }, () =>
      webhooks.handle(request).then((response) => {
        if (++answered === 7) open();
        return response;
      }),
    );
    const responses = await Promise.all(pending);
    const statuses = responses.map((r) => r.status);
    expect(runs).toBe(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(7);
    expect(responses.find((r) => r.status === 409)?.headers["retry-after"]).toBe("5");
    // Once the first finished, a retry is a plain duplicate.
    expect(JSON.parse((await webhooks.handle(request)).body).duplicate).toBe(true);
  });

  it("events without id dedupe on type and job id", async () => {
    const handler = vi.fn();
    const webhooks = receiver({ on: { "report.completed": handler } });
    const body = JSON.stringify({
      type: "report.completed",
      timestamp: "2027-01-15T08:00:00.000Z",
      data: { jobId: "j7", reportId: "r", status: "succeeded" },
    });
    await webhooks.handle(await delivery(body));
    await webhooks.handle(await delivery(body));
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it("idempotency: false runs every delivery", async () => {
    const handler = vi.fn();
    const webhooks = receiver({ idempotency: false, on: { "report.completed": handler } });
    await webhooks.handle(await delivery(eventBody()));
    await webhooks.handle(await delivery(eventBody()));
    expect(handler).toHaveBeenCalledTimes(2);
  });

  it("a failing store answers 503 and never runs the handler", async () => {
    const handler = vi.fn();
    const broken: IdempotencyStore = {
      claim: () => Promise.reject(new Error("ECONNREFUSED")),
      complete: () => Promise.resolve(),
      release: () => Promise.resolve(),
    };
    const response = await receiver({
      idempotency: broken,
      on: { "report.completed": handler },
    }).handle(await delivery(eventBody()));
    expect(response.status).toBe(503);
    expect(JSON.parse(response.body).error).toBe("idempotency_store_failed");
    expect(handler).not.toHaveBeenCalled();
  });

  it("a store that fails to record completion still answers 200 (the effect happened)", async () => {
    const onError = vi.fn();
    const memory = createMemoryIdempotencyStore();
    const flaky: IdempotencyStore = {
      ...memory,
      complete: () => Promise.reject(new Error("timeout")),
    };
    const response = await receiver({ idempotency: flaky, onError }).handle(
      await delivery(eventBody()),
    );
    expect(response.status).toBe(200);
    const [error] = onError.mock.calls[0] as [MappaWebhookError];
    expect(error.code).toBe("idempotency_store_failed");
  });
});

describe("memory store", () => {
  it("expires leases and completed keys, and bounds its size", async () => {
    let clock = 0;
    const store = createMemoryIdempotencyStore({ maxEntries: 3, now: () => clock });
    const claim = await store.claim("a", { leaseMs: 100 });
    expect(claim.status).toBe("claimed");
    expect((await store.claim("a", { leaseMs: 100 })).status).toBe("in_flight");
    clock = 101; // the lease ran out: a crashed handler's event may be retried
    const retry = await store.claim("a", { leaseMs: 100 });
    expect(retry.status).toBe("claimed");
    // Only the owner releases.
    await store.release("a", "not-the-token");
    expect((await store.claim("a", { leaseMs: 100 })).status).toBe("in_flight");
    await store.complete("a", retry.status === "claimed" ? retry.token : "", { ttlMs: 1000 });
    expect((await store.claim("a", { leaseMs: 100 })).status).toBe("completed");
    clock = 2000;
    expect((await store.claim("a", { leaseMs: 100 })).status).toBe("claimed");
    for (const key of ["b", "c", "d", "e"]) await store.claim(key, { leaseMs: 100_000 });
    expect(store.size).toBe(3);
  });
});

describe("ack-first", () => {
  it("answers 200 before the handler finishes and reports a later failure", async () => {
    const onError = vi.fn();
    let finish: () => void = () => {};
    const started = vi.fn();
    const webhooks = receiver({
      ack: "first",
      onError,
      on: {
        "report.completed": async () => {
          started();
          await new Promise<void>((resolve) => {
            finish = resolve;
          });
          throw new Error("after the ack");
        },
      },
    });
    const pending: Promise<unknown>[] = [];
    const response = await webhooks.handle({
      ...(await delivery(eventBody())),
      waitUntil: (p) => pending.push(p),
    });
    expect(response.status).toBe(200);
    expect(started).toHaveBeenCalled();
    expect(pending).toHaveLength(1);
    finish();
    await Promise.all(pending);
    const [error, info] = onError.mock.calls[0] as [MappaWebhookError, { phase: string }];
    expect(error.code).toBe("handler_failed");
    expect(info.phase).toBe("background");
    // The claim was released, so a later delivery runs again.
    const again = await webhooks.handle({
      ...(await delivery(eventBody())),
      waitUntil: (p) => pending.push(p),
    });
    expect(again.status).toBe(200);
    expect(JSON.parse(again.body).duplicate).toBeUndefined();
  });
});

describe("emitter style", () => {
  it("on(type) and onAny run after the map handler and can be removed", async () => {
    const order: string[] = [];
    const webhooks = receiver({
      idempotency: false,
      on: { "report.completed": () => void order.push("map") },
    });
    const off = webhooks.on(
      "report.completed",
      (event) => void order.push(`on:${event.data.reportId}`),
    );
    webhooks.onAny((event: MappaEvent) => void order.push(`any:${event.type}`));
    await webhooks.handle(await delivery(eventBody()));
    off();
    await webhooks.handle(await delivery(eventBody()));
    expect(order).toEqual([
      "map",
      "on:rep_1",
      "any:report.completed",
      "map",
      "any:report.completed",
    ]);
  });
});

describe("handler order", () => {
  it("waits for an async handler before the next one, and a rejection is a 500", async () => {
    const order: string[] = [];
    const webhooks = receiver({
      idempotency: false,
      on: {
        "report.completed": async () => {
          await new Promise((resolve) => setTimeout(resolve, 10));
          order.push("map");
        },
      },
    });
    webhooks.on("report.completed", () => void order.push("listener"));
    webhooks.onAny(async () => {
      order.push("any");
      throw new Error("late failure");
    });
    const response = await webhooks.handle(await delivery(eventBody()));
    expect(order).toEqual(["map", "listener", "any"]);
    expect(response.status).toBe(500);
  });
});

describe("handleRequest (Fetch)", () => {
  it("handles a Fetch Request end to end", async () => {
    const webhooks = receiver();
    const body = eventBody();
    const request = new Request("http://localhost/webhooks/mappa", {
      method: "POST",
      body,
      headers: { "mappa-signature": await signPayload({ payload: body, secret, timestamp: NOW }) },
    });
    const response = await webhooks.handleRequest(request);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ received: true });
  });

  it("stops reading a streamed body over the limit", async () => {
    const webhooks = receiver({ maxBodyBytes: 1024 });
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        if (pulled > 10_000) controller.close();
        else controller.enqueue(new Uint8Array(512));
      },
    });
    const request = new Request("http://localhost/", {
      method: "POST",
      body: stream,
      duplex: "half",
    } as RequestInit);
    const response = await webhooks.handleRequest(request);
    expect(response.status).toBe(413);
    expect(pulled).toBeLessThan(10);
  });

  it("refuses a declared Content-Length over the limit without reading", async () => {
    const webhooks = receiver({ maxBodyBytes: 10 });
    const request = new Request("http://localhost/", { method: "POST", body: "x".repeat(100) });
    expect((await webhooks.handleRequest(request)).status).toBe(413);
  });

  it("answers 405 to GET", async () => {
    const response = await receiver().handleRequest(new Request("http://localhost/"));
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("POST");
  });
});
