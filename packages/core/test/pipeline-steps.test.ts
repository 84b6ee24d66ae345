import { afterEach, describe, expect, it, vi } from "vitest";
import {
  createMappaWebhooks,
  createMemoryIdempotencyStore,
  type IdempotencyStore,
  isMappaWebhookError,
  type MappaErrorInfo,
  MappaWebhookError,
  type MappaWebhooksOptions,
  parseEvent,
  signPayload,
} from "../src/index.js";

const secret = "whsec_pipeline_steps";
const NOW = 1_800_000_000;

function eventBody(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    id: "evt_steps_1",
    type: "report.completed",
    createdAt: "2027-01-15T08:00:00.000Z",
    timestamp: "2027-01-15T08:00:01.000Z",
    data: { jobId: "job_1", reportId: "rep_1", status: "succeeded" },
    ...overrides,
  });
}

async function delivery(body: string) {
  return {
    method: "POST",
    headers: { "mappa-signature": await signPayload({ payload: body, secret, timestamp: NOW }) },
    rawBody: new TextEncoder().encode(body),
  };
}

function receiver(options: Partial<MappaWebhooksOptions> = {}) {
  return createMappaWebhooks({ secret, now: NOW, ...options });
}

afterEach(() => {
  vi.useRealTimers();
});

/** Fake clocks for timers and Date only: setImmediate stays real, so `until` can wait on I/O. */
function fakeClock() {
  vi.useFakeTimers({
    now: NOW * 1000,
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
  });
}

/** Waits (on real I/O turns, not the fake clock) until `check` holds; bounded. */
async function until(check: () => boolean): Promise<void> {
  for (let turn = 0; turn < 100_000 && !check(); turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  expect(check()).toBe(true);
}

describe("a handler failure is always 500 handler_failed", () => {
  it("even when the handler throws a MappaWebhookError of another status", async () => {
    for (const code of ["signature_mismatch", "invalid_event", "payload_too_large"] as const) {
      const errors: Array<[MappaWebhookError, MappaErrorInfo]> = [];
      const inner = new MappaWebhookError(code, `secret detail of ${code}`);
      const webhooks = receiver({
        on: {
          "report.completed": () => {
            throw inner;
          },
        },
        onError: (error, info) => void errors.push([error, info]),
      });
      const response = await webhooks.handle(await delivery(eventBody()));
      expect(response.status).toBe(500);
      expect(JSON.parse(response.body)).toEqual({ error: "handler_failed" });
      expect(response.body).not.toContain("secret detail");
      expect(errors).toHaveLength(1);
      const [error, info] = errors[0] as [MappaWebhookError, MappaErrorInfo];
      expect(error.code).toBe("handler_failed");
      expect(error.cause).toBe(inner);
      expect(info).toMatchObject({ phase: "handler", status: 500 });
    }
  });

  it("and the same with ack-first: reported, never rethrown", async () => {
    const errors: MappaWebhookError[] = [];
    let background: Promise<unknown> | undefined;
    const webhooks = receiver({
      ack: "first",
      on: {
        "report.completed": async () => {
          throw new MappaWebhookError("signature_mismatch", "nested");
        },
      },
      onError: (error) => void errors.push(error),
    });
    const input = await delivery(eventBody());
    const response = await webhooks.handle({
      ...input,
      waitUntil: (promise) => {
        background = promise;
      },
    });
    expect(response.status).toBe(200);
    await background;
    expect(errors.map((e) => e.code)).toEqual(["handler_failed"]);
  });

  it("an impostor error with an inherited key as its code gives a valid 500", async () => {
    const impostor = Object.assign(new Error("x"), { name: "MappaWebhookError", code: "toString" });
    expect(isMappaWebhookError(impostor)).toBe(false);
    const webhooks = receiver({
      on: {
        "report.completed": () => {
          throw impostor;
        },
      },
    });
    const response = await webhooks.handle(await delivery(eventBody()));
    expect(response.status).toBe(500);
    expect(JSON.parse(response.body)).toEqual({ error: "handler_failed" });
  });

  it("an error handed to errorResponse with a forged status answers its code's status", () => {
    const forged = Object.assign(new Error("forged"), {
      name: "MappaWebhookError",
      code: "invalid_json",
      status: 999,
    });
    const response = receiver().errorResponse(forged);
    expect(response.status).toBe(400);
  });

  it("a code outside the union never yields an undefined status", () => {
    const odd = new MappaWebhookError("toString" as never, "plain JavaScript caller");
    expect(odd.status).toBe(500);
    expect(receiver().errorResponse(odd).status).toBe(500);
  });
});

describe("lease renewal while handlers run", () => {
  it("a retry after leaseMs gets 409 while a slow handler is still running; then a duplicate", async () => {
    fakeClock();
    const store = createMemoryIdempotencyStore();
    let finish: () => void = () => {};
    let runs = 0;
    const webhooks = receiver({
      idempotency: store,
      leaseMs: 1_000,
      on: {
        "report.completed": () => {
          runs++;
          return new Promise<void>((resolve) => {
            finish = resolve;
          });
        },
      },
    });
    const first = webhooks.handle(await delivery(eventBody()));
    await until(() => runs === 1);
    await vi.advanceTimersByTimeAsync(5_000); // five leases later, still running
    const retry = await webhooks.handle(await delivery(eventBody()));
    expect(retry.status).toBe(409);
    expect(runs).toBe(1);
    finish();
    expect((await first).status).toBe(200);
    const late = await webhooks.handle(await delivery(eventBody()));
    expect(late.duplicate).toBe(true);
    expect(runs).toBe(1);
  });

  it("a claim nobody renews (a crashed instance) expires and the retry runs the handler", async () => {
    fakeClock();
    const store = createMemoryIdempotencyStore();
    const crashed = await store.claim("~job:report.completed:job_1", { leaseMs: 1_000 });
    expect(crashed.status).toBe("claimed");
    const handler = vi.fn();
    const webhooks = receiver({
      idempotency: store,
      leaseMs: 1_000,
      on: { "report.completed": handler },
    });
    expect((await webhooks.handle(await delivery(eventBody()))).status).toBe(409);
    await vi.advanceTimersByTimeAsync(1_001);
    expect((await webhooks.handle(await delivery(eventBody()))).status).toBe(200);
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it("stops renewing once handlers finish, and reports a lost claim", async () => {
    fakeClock();
    const renewals: string[] = [];
    const memory = createMemoryIdempotencyStore();
    const store: IdempotencyStore = {
      claim: (key, options) => memory.claim(key, options),
      complete: (key, token, options) => memory.complete(key, token, options),
      release: (key, token) => memory.release(key, token),
      renew: async (key) => {
        renewals.push(key);
        return renewals.length < 2; // the second renewal finds the claim gone
      },
    };
    const errors: MappaWebhookError[] = [];
    let finish: (() => void) | undefined;
    const webhooks = receiver({
      idempotency: store,
      leaseMs: 3_000,
      onError: (error) => void errors.push(error),
      on: {
        "report.completed": () =>
          new Promise<void>((resolve) => {
            finish = resolve;
          }),
      },
    });
    const pending = webhooks.handle(await delivery(eventBody()));
    await until(() => finish !== undefined);
    await vi.advanceTimersByTimeAsync(2_500); // renewals at 1 s and 2 s
    expect(renewals).toHaveLength(2);
    expect(errors.map((e) => e.code)).toEqual(["idempotency_store_failed"]);
    expect(errors[0]?.message).toMatch(/Raise `leaseMs`/);
    finish?.();
    expect((await pending).status).toBe(200);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(renewals).toHaveLength(2);
  });

  it("hands the verified event to the store's claim, for stores that keep it", async () => {
    const memory = createMemoryIdempotencyStore();
    const claimed: unknown[] = [];
    const webhooks = receiver({
      idempotency: {
        ...memory,
        claim: (key, options) => {
          claimed.push(options.event);
          return memory.claim(key, options);
        },
      },
    });
    const response = await webhooks.handle(await delivery(eventBody()));
    expect(claimed).toEqual([response.event]);
    expect(response.event?.idempotencyKey).toBe("~job:report.completed:job_1");
  });

  it("does not start a timer for synchronous handlers", async () => {
    const renew = vi.fn(async () => true);
    const memory = createMemoryIdempotencyStore();
    const webhooks = receiver({
      idempotency: { ...memory, claim: memory.claim, renew },
      on: { "report.completed": () => {} },
    });
    expect((await webhooks.handle(await delivery(eventBody()))).status).toBe(200);
    expect(renew).not.toHaveBeenCalled();
  });
});

describe("reading a Fetch request", () => {
  it("answers 408 body_timeout to a body that stalls, and tells onError", async () => {
    fakeClock();
    const errors: MappaWebhookError[] = [];
    const webhooks = receiver({ bodyTimeoutMs: 2_000, onError: (e) => void errors.push(e) });
    let cancelled = false;
    const stalled = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"id":'));
      },
      cancel() {
        cancelled = true;
      },
    });
    const request = new Request("http://127.0.0.1/webhooks/mappa", {
      method: "POST",
      body: stalled,
      // @ts-expect-error Node's fetch needs `duplex` for a stream body
      duplex: "half",
    });
    const answer = webhooks.handleRequest(request);
    await new Promise<void>((resolve) => setImmediate(resolve));
    await vi.advanceTimersByTimeAsync(2_001);
    const response = await answer;
    expect(response.status).toBe(408);
    expect(await response.json()).toMatchObject({ error: "body_timeout" });
    expect(errors.map((e) => e.code)).toEqual(["body_timeout"]);
    expect(cancelled).toBe(true);
  });

  it("reports a body that errors mid-way as request_aborted", async () => {
    const errors: MappaWebhookError[] = [];
    const webhooks = receiver({ onError: (e) => void errors.push(e) });
    const broken = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.error(new Error("socket hang up"));
      },
    });
    const request = new Request("http://127.0.0.1/webhooks/mappa", {
      method: "POST",
      body: broken,
      // @ts-expect-error Node's fetch needs `duplex` for a stream body
      duplex: "half",
    });
    const response = await webhooks.handleRequest(request);
    expect(errors.map((e) => e.code)).toEqual(["request_aborted"]);
    expect(response.status).toBe(400);
  });

  it("answers body_already_parsed when the body was read before, naming the fix", async () => {
    const errors: MappaWebhookError[] = [];
    const webhooks = receiver({ onError: (e) => void errors.push(e) });
    const body = eventBody();
    const request = new Request("http://127.0.0.1/webhooks/mappa", {
      method: "POST",
      body,
      headers: (await delivery(body)).headers,
    });
    await request.text();
    const response = await webhooks.handleRequest(request);
    expect(response.status).toBe(500);
    expect(errors.map((e) => e.code)).toEqual(["body_already_parsed"]);
    expect(errors[0]?.message).toMatch(/before handing the request/);
  });
});

describe("events as Mappa sends them", () => {
  it("an event id can never equal the key of an id-less event", async () => {
    const handler = vi.fn();
    const webhooks = receiver({ on: { "report.completed": handler } });
    const idless = JSON.stringify({
      type: "report.completed",
      timestamp: "2027-01-15T08:00:00.000Z",
      data: { jobId: "j1", reportId: "r1", status: "succeeded" },
    });
    const idlessKey = parseEvent(idless).idempotencyKey as string;
    for (const id of [idlessKey, "report.completed:j1", `~${idlessKey}`]) {
      expect(parseEvent(eventBody({ id })).idempotencyKey).not.toBe(idlessKey);
    }
    expect((await webhooks.handle(await delivery(eventBody({ id: idlessKey })))).duplicate).toBe(
      undefined,
    );
    expect((await webhooks.handle(await delivery(idless))).duplicate).toBe(undefined);
    expect(handler).toHaveBeenCalledTimes(2);
  });

  it("answers 400 invalid_event naming the missing field, and never runs a handler", async () => {
    const handler = vi.fn();
    const errors: MappaWebhookError[] = [];
    const webhooks = receiver({
      on: { "report.failed": handler },
      onError: (e) => void errors.push(e),
    });
    const body = JSON.stringify({
      id: "evt_bad",
      type: "report.failed",
      createdAt: "2027-01-15T08:00:00.000Z",
      data: { jobId: "j1", status: "failed", error: { code: "x" } },
    });
    const response = await webhooks.handle(await delivery(body));
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body)).toMatchObject({ error: "invalid_event" });
    expect(JSON.parse(response.body).message).toContain("data.error.message");
    expect(errors.map((e) => e.code)).toEqual(["invalid_event"]);
    expect(handler).not.toHaveBeenCalled();
  });

  it("unknown types keep passing through, with their times checked", async () => {
    const unknown = vi.fn();
    const webhooks = receiver({ onUnknown: unknown });
    const ok = await webhooks.handle(
      await delivery(
        JSON.stringify({ type: "report.progress", timestamp: "2027-01-15T08:00:00Z" }),
      ),
    );
    expect(ok.status).toBe(200);
    expect(unknown).toHaveBeenCalledTimes(1);
    const bad = await webhooks.handle(
      await delivery(JSON.stringify({ id: "e", type: "report.progress", createdAt: 5 })),
    );
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).message).toContain("createdAt");
  });
});
