import diagnostics from "node:diagnostics_channel";
import { afterEach, describe, expect, it } from "vitest";
import {
  createLogWriter,
  createMappaWebhooks,
  MAPPA_DELIVERY_CHANNEL,
  type MappaDeliveryMessage,
  type MappaLogger,
  MappaWebhookError,
  type MappaWebhooksOptions,
  signPayload,
} from "../src/index.js";

const secret = "whsec_observability_test_7c2e";
const NOW = 1_800_000_000;

function body(id: string, type = "report.completed"): string {
  return JSON.stringify({
    id,
    type,
    createdAt: "2027-01-15T08:00:00.000Z",
    data: { jobId: `job_${id}`, reportId: `rep_secretish_${id}`, status: "succeeded" },
  });
}

async function delivery(raw: string, options: { t?: number; tamper?: boolean } = {}) {
  const signature = await signPayload({ payload: raw, secret, timestamp: options.t ?? NOW });
  return {
    method: "POST",
    headers: { "content-type": "application/json", "mappa-signature": signature },
    rawBody: new TextEncoder().encode(options.tamper ? raw.replace("rep_", "rex_") : raw),
  };
}

function capture(): { logger: MappaLogger; lines: Array<[string, string]> } {
  const lines: Array<[string, string]> = [];
  return {
    lines,
    logger: {
      debug: (m) => lines.push(["debug", m]),
      info: (m) => lines.push(["info", m]),
      warn: (m) => lines.push(["warn", m]),
      error: (m) => lines.push(["error", m]),
    },
  };
}

const receiver = (options: Partial<MappaWebhooksOptions> = {}) =>
  createMappaWebhooks({ secret, now: NOW, ...options });

describe("logs by default", () => {
  const original = { warn: console.warn, error: console.error, info: console.info };
  afterEach(() => {
    Object.assign(console, original);
  });

  it("writes one console.warn line per rejected delivery, with the code and the fix, never the body or the secret", async () => {
    const seen: string[] = [];
    console.warn = (message: string) => void seen.push(message);
    const webhooks = receiver();
    const response = await webhooks.handle(await delivery(body("evt_log_1"), { tamper: true }));
    expect(response.status).toBe(401);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/^@mappa-webhooks: delivery rejected 401 signature_mismatch: /);
    expect(seen[0]).toContain("Check the secret is this endpoint's");
    expect(seen[0]).not.toContain(secret);
    expect(seen[0]).not.toContain("rep_secretish");
    expect(seen[0]).not.toContain("rex_secretish");
  });

  it("writes nothing for a success at the default level", async () => {
    const seen: string[] = [];
    console.warn = console.error = console.info = (m: string) => void seen.push(m);
    const response = await receiver().handle(await delivery(body("evt_log_2")));
    expect(response.status).toBe(200);
    expect(seen).toEqual([]);
  });

  it("logs a handler failure at error, with the handler's own message", async () => {
    const { logger, lines } = capture();
    const webhooks = receiver({
      logger,
      on: {
        "report.completed": () => {
          throw new Error("the database is read-only");
        },
      },
    });
    const response = await webhooks.handle(await delivery(body("evt_log_3")));
    expect(response.status).toBe(500);
    expect(lines).toEqual([
      [
        "error",
        "@mappa-webhooks: delivery failed 500 handler_failed (report.completed evt_log_3): A webhook handler threw; answered 500 so Mappa retries the delivery. See `cause`. Cause: Error: the database is read-only",
      ],
    ]);
  });

  it("logger: false silences everything", async () => {
    const seen: string[] = [];
    console.warn = console.error = (m: string) => void seen.push(m);
    const webhooks = receiver({ logger: false });
    await webhooks.handle(await delivery(body("evt_log_4"), { tamper: true }));
    await webhooks.handle({ method: "GET", headers: {}, rawBody: "" });
    expect(seen).toEqual([]);
  });

  it('logLevel "info" logs each handled and duplicate delivery too', async () => {
    const { logger, lines } = capture();
    const webhooks = receiver({ logger, logLevel: "info" });
    const sent = await delivery(body("evt_log_5"));
    await webhooks.handle(sent);
    await webhooks.handle(sent);
    expect(lines).toEqual([
      ["info", "@mappa-webhooks: delivery handled 200 (report.completed evt_log_5)"],
      ["info", "@mappa-webhooks: delivery duplicate 200 (report.completed evt_log_5)"],
    ]);
  });

  it('logLevel "error" keeps rejections out, failures in', async () => {
    const { logger, lines } = capture();
    const webhooks = receiver({ logger, logLevel: "error" });
    await webhooks.handle(await delivery(body("evt_log_6"), { t: NOW - 3600 }));
    expect(lines).toEqual([]);
  });

  it("a throwing logger never changes the answer", async () => {
    const throwing = () => {
      throw new Error("logger down");
    };
    const webhooks = receiver({
      logger: { debug: throwing, info: throwing, warn: throwing, error: throwing },
    });
    const response = await webhooks.handle(await delivery(body("evt_log_7"), { tamper: true }));
    expect(response.status).toBe(401);
  });

  it.each([
    {
      label: "a logger without warn",
      options: { logger: { info() {} } as unknown as MappaLogger },
    },
    { label: "an unknown level", options: { logLevel: "loud" as "info" } },
  ])("rejects $label at start-up with invalid_options", ({ options }) => {
    let thrown: unknown;
    try {
      receiver(options);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(MappaWebhookError);
    expect((thrown as MappaWebhookError).code).toBe("invalid_options");
    expect((thrown as MappaWebhookError).message).toMatch(/^@mappa-webhooks: `(logger|logLevel)`/);
  });

  it("createLogWriter follows the same options for workers", () => {
    const { logger, lines } = capture();
    const log = createLogWriter({ logger, logLevel: "warn" });
    log.info("hidden");
    log.warn("shown");
    createLogWriter({ logger: false }).error("nowhere");
    expect(lines).toEqual([["warn", "shown"]]);
  });
});

describe("the mappa-webhooks:delivery TracingChannel", () => {
  const channel = diagnostics.tracingChannel(MAPPA_DELIVERY_CHANNEL);
  const seen: Array<{ name: string; message: MappaDeliveryMessage; outcome?: string }> = [];
  const handlers = {
    start: (m: unknown) => seen.push({ name: "start", message: m as MappaDeliveryMessage }),
    end: (m: unknown) => seen.push({ name: "end", message: m as MappaDeliveryMessage }),
    asyncStart: (m: unknown) =>
      seen.push({ name: "asyncStart", message: m as MappaDeliveryMessage }),
    asyncEnd: (m: unknown) => {
      const message = m as MappaDeliveryMessage;
      const entry: { name: string; message: MappaDeliveryMessage; outcome?: string } = {
        name: "asyncEnd",
        message,
      };
      if (message.outcome !== undefined) entry.outcome = message.outcome;
      seen.push(entry);
    },
    error: (m: unknown) => seen.push({ name: "error", message: m as MappaDeliveryMessage }),
  };
  afterEach(() => {
    channel.unsubscribe(handlers);
    seen.length = 0;
  });

  it("publishes start, end, asyncStart and asyncEnd with the event, outcome and timings", async () => {
    channel.subscribe(handlers);
    const webhooks = receiver({ logger: false, on: { "report.completed": async () => {} } });
    const response = await webhooks.handle(await delivery(body("evt_dc_1")));
    expect(response.status).toBe(200);
    await expect
      .poll(() => seen.map((s) => s.name), { timeout: 20_000 })
      .toEqual(["start", "end", "asyncStart", "asyncEnd"]);
    const message = seen[3]?.message as MappaDeliveryMessage;
    expect(message.method).toBe("POST");
    expect(message.event?.id).toBe("evt_dc_1");
    expect(message.outcome).toBe("handled");
    expect(message.status).toBe(200);
    expect(message.error).toBeUndefined();
    for (const key of ["verifyMs", "claimMs", "handlersMs", "durationMs"] as const) {
      expect(message.timings[key]).toBeGreaterThanOrEqual(0);
    }
  });

  it("publishes error for a rejected delivery, with its code", async () => {
    channel.subscribe(handlers);
    const webhooks = receiver({ logger: false });
    const response = await webhooks.handle(await delivery(body("evt_dc_2"), { tamper: true }));
    expect(response.status).toBe(401);
    await expect.poll(() => seen.map((s) => s.name), { timeout: 20_000 }).toContain("asyncEnd");
    const error = seen.find((s) => s.name === "error")?.message;
    expect(error?.outcome).toBe("rejected");
    expect(error?.error?.code).toBe("signature_mismatch");
    expect(error?.status).toBe(401);
  });

  it('ack: "first" ends the delivery with its background work: a late failure is the outcome', async () => {
    channel.subscribe(handlers);
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const webhooks = receiver({
      logger: false,
      ack: "first",
      on: {
        "report.completed": async () => {
          await gate;
          throw new Error("late");
        },
      },
    });
    const response = await webhooks.handle(await delivery(body("evt_dc_3")));
    expect(response.status).toBe(200);
    expect(seen.map((s) => s.name)).not.toContain("asyncEnd");
    release();
    await expect.poll(() => seen.map((s) => s.name), { timeout: 20_000 }).toContain("asyncEnd");
    const end = seen.find((s) => s.name === "asyncEnd")?.message;
    expect(end?.outcome).toBe("failed");
    expect(end?.error?.code).toBe("handler_failed");
  });

  it("answers the same with nobody subscribed, and with a throwing instrumentation", async () => {
    const throwing = () => {
      throw new Error("broken instrumentation");
    };
    const webhooks = receiver({ logger: false, instrumentation: { startDelivery: throwing } });
    const response = await webhooks.handle(await delivery(body("evt_dc_4")));
    expect(response.status).toBe(200);
    expect(seen).toEqual([]);
  });
});

describe("the instrumentation option", () => {
  it("gets the steps, the carrier in the claim, and stored as the outcome of a storing claim", async () => {
    const calls: string[] = [];
    let claimedWith: Readonly<Record<string, string>> | undefined;
    const webhooks = receiver({
      logger: false,
      idempotency: {
        async claim(_key, options) {
          claimedWith = options.traceContext;
          return { status: "claimed", token: "t", stored: true };
        },
        async complete() {},
        async release() {},
      },
      instrumentation: {
        startDelivery: () => ({
          verified: (event) => void calls.push(`verified ${event.id}`),
          step: (step, name) => {
            calls.push(`step ${step}${name === undefined ? "" : ` ${name}`}`);
            return {
              run: (fn) => fn(),
              end: (error) =>
                void calls.push(`end ${step} ${error === undefined ? "ok" : "error"}`),
            };
          },
          carrier: () => ({
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
          }),
          end: (result) => void calls.push(`end ${result.outcome} ${result.status}`),
        }),
      },
    });
    const response = await webhooks.handle(await delivery(body("evt_inst_1")));
    expect(response.status).toBe(200);
    expect(claimedWith).toEqual({
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    });
    expect(calls).toEqual([
      "step verify",
      "end verify ok",
      "verified evt_inst_1",
      "step claim",
      "end claim ok",
      "end stored 200",
    ]);
  });

  it("rejects an instrumentation without startDelivery", () => {
    expect(() => receiver({ instrumentation: {} as never })).toThrow(/`instrumentation` must have/);
  });
});
