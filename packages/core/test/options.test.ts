import { describe, expect, it } from "vitest";
import {
  createMappaWebhooks,
  createMemoryIdempotencyStore,
  MappaWebhookError,
  signPayload,
} from "../src/index.js";

// Every time option is checked when the receiver is created: a value the runtime cannot honour
// must fail at start-up with `invalid_options`, never on each delivery. Timers take at most
// 2^31−1 ms; a longer delay fires after 1 ms instead (Node prints a TimeoutOverflowWarning).
const MAX_TIMER_MS = 2 ** 31 - 1;
const SECRET = "whsec_options_test";
const NOW = 1_800_000_000;
const TIME_OPTIONS = ["bodyTimeoutMs", "leaseMs", "completedTtlMs"] as const;

function creationError(create: () => unknown): MappaWebhookError {
  try {
    create();
  } catch (error) {
    if (error instanceof MappaWebhookError) return error;
    throw error;
  }
  throw new Error("expected the creation to throw");
}

describe("createMappaWebhooks time options", () => {
  it.each(TIME_OPTIONS)(
    "refuses %s above 2^31−1 ms, naming the option, value and range",
    (name) => {
      const error = creationError(() =>
        createMappaWebhooks({ secret: SECRET, [name]: MAX_TIMER_MS + 1 }),
      );
      expect(error.code).toBe("invalid_options");
      expect(error.status).toBe(500);
      expect(error.message).toBe(
        `@mappa-webhooks: \`${name}\` must be a number of milliseconds from 1 to 2147483647 (2^31−1, the longest timer JavaScript runs), got 2147483648.`,
      );
    },
  );

  it.each(
    TIME_OPTIONS.flatMap((name) =>
      [
        [0, "0"],
        [-5, "-5"],
        [Number.NaN, "NaN"],
        [Number.POSITIVE_INFINITY, "Infinity"],
        [1e12, "1000000000000"],
        ["1000", '"1000"'],
      ].map(([value, shown]) => ({ name, value, shown })),
    ),
  )("refuses $name = $shown", ({ name, value, shown }) => {
    const error = creationError(() =>
      createMappaWebhooks({ secret: SECRET, [name]: value as number }),
    );
    expect(error.code).toBe("invalid_options");
    expect(error.message).toContain(`\`${name}\` must be a number of milliseconds from 1 to`);
    expect(error.message).toContain(`got ${shown}.`);
  });

  it("accepts the largest values and still delivers with them", async () => {
    const handled: string[] = [];
    const webhooks = createMappaWebhooks({
      secret: SECRET,
      now: NOW,
      bodyTimeoutMs: MAX_TIMER_MS,
      leaseMs: MAX_TIMER_MS,
      completedTtlMs: MAX_TIMER_MS,
      on: {
        "report.completed": async (event) => {
          // Long enough for a renewal timer of leaseMs / 3 to fire if it had overflowed to 1 ms.
          await new Promise((resolve) => setTimeout(resolve, 50));
          handled.push(event.data.reportId);
        },
      },
    });
    const body = JSON.stringify({
      id: "evt_options_max",
      type: "report.completed",
      createdAt: "2027-01-15T08:00:00.000Z",
      data: { jobId: "job_1", reportId: "rep_1", status: "completed" },
    });
    const signature = await signPayload({ payload: body, secret: SECRET, timestamp: NOW });
    const first = await webhooks.handle({
      method: "POST",
      headers: { "mappa-signature": signature },
      rawBody: body,
    });
    expect(first.status).toBe(200);
    const again = await webhooks.handle({
      method: "POST",
      headers: { "mappa-signature": signature },
      rawBody: body,
    });
    expect(again.status).toBe(200);
    expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
    expect(handled).toEqual(["rep_1"]);
  });

  it("accepts fractional milliseconds within the range", () => {
    expect(() =>
      createMappaWebhooks({ secret: SECRET, leaseMs: 1500.5, bodyTimeoutMs: 1.5 }),
    ).not.toThrow();
  });
});

describe("createMemoryIdempotencyStore options", () => {
  it.each([
    [0, "0"],
    [-1, "-1"],
    [2.5, "2.5"],
    [Number.NaN, "NaN"],
    [Number.POSITIVE_INFINITY, "Infinity"],
    ["100", '"100"'],
  ])("refuses maxEntries = %s", (value, shown) => {
    const error = creationError(() =>
      createMemoryIdempotencyStore({ maxEntries: value as number }),
    );
    expect(error.code).toBe("invalid_options");
    expect(error.message).toBe(
      `@mappa-webhooks: createMemoryIdempotencyStore: \`maxEntries\` must be a whole number from 1 to 9007199254740991, got ${shown}.`,
    );
  });

  it("refuses a `now` that is not a function, and options that are not an object", () => {
    const error = creationError(() =>
      createMemoryIdempotencyStore({ now: 1_700_000_000_000 as unknown as () => number }),
    );
    expect(error.code).toBe("invalid_options");
    expect(error.message).toContain("`now` must be a function");
    const notAnObject = creationError(() =>
      createMemoryIdempotencyStore(null as unknown as Record<string, never>),
    );
    expect(notAnObject.code).toBe("invalid_options");
    expect(notAnObject.message).toContain("takes an options object");
  });

  it("keeps at most maxEntries keys, also at the smallest limit", async () => {
    let clock = 1_000;
    const store = createMemoryIdempotencyStore({ maxEntries: 1, now: () => clock });
    const a = await store.claim("a", { leaseMs: 10_000 });
    expect(a.status).toBe("claimed");
    expect((await store.claim("b", { leaseMs: 10_000 })).status).toBe("claimed");
    expect(store.size).toBe(1);
    // "a" was forgotten to make room for "b", so it can be claimed again.
    expect((await store.claim("a", { leaseMs: 10_000 })).status).toBe("claimed");
    expect(store.size).toBe(1);
    clock += 20_000;
    // Past the lease, "a" is free again (the clock is the one given).
    expect((await store.claim("a", { leaseMs: 10_000 })).status).toBe("claimed");
  });
});
