// The delivery pattern of the stores' soak tests, one definition for every store: N events
// sent by concurrent lanes to two receivers, 30% of them twice (20% at the same moment to both
// receivers, 10% again to the other one after the first delivery was answered), and the one
// soak driver of the stores' tests on top of it (runStoreSoak).
import { expect } from "vitest";
import type { Child } from "./process.js";
import { webhookUrlOf } from "./store.js";

/** How one soak event is delivered. */
export type SoakPlan = "once" | "concurrent-duplicate" | "late-duplicate";

/**
 * The plan of the event at `index`: 2 in 10 concurrent duplicates, 1 in 10 late duplicates,
 * the rest once.
 *
 * @example
 * ```ts
 * soakPlanFor(0); // "concurrent-duplicate"
 * soakPlanFor(2); // "late-duplicate"
 * ```
 */
export function soakPlanFor(index: number): SoakPlan {
  const slot = index % 10;
  if (slot === 0 || slot === 1) return "concurrent-duplicate";
  if (slot === 2) return "late-duplicate";
  return "once";
}

/** What {@link runSoakDeliveries} sends, and how. */
export interface SoakDeliveriesOptions<TEvent> {
  events: readonly TEvent[];
  /** The two receivers: event `i` goes first to `urls[i % 2]`, its duplicate to the other. */
  urls: readonly [string, string];
  /** Delivers one event to one URL until it is answered for good (e.g. Mappa's schedule). */
  deliver(url: string, event: TEvent): Promise<void>;
  /** Concurrent lanes. Default 16. */
  lanes?: number;
  /** Rejects if the deliveries are not all done by then. Default 120 000 ms. */
  deadlineMs?: number;
}

/**
 * Sends every event per {@link soakPlanFor} from `lanes` concurrent lanes (bounded: each lane
 * takes events until none are left) and resolves how many deliveries were made and how long
 * they took.
 *
 * @example
 * ```ts
 * const { deliveries } = await runSoakDeliveries({ events, urls: [a, b], deliver });
 * expect(deliveries).toBe(events.length * 1.3);
 * ```
 */
export async function runSoakDeliveries<TEvent>(
  options: SoakDeliveriesOptions<TEvent>,
): Promise<{ deliveries: number; duplicatedEvents: number; receivedMs: number }> {
  const { events, urls, deliver } = options;
  const lanes = options.lanes ?? 16;
  const deadlineMs = options.deadlineMs ?? 120_000;
  let deliveries = 0;
  let next = 0;
  const send = (url: string, event: TEvent) => {
    deliveries++;
    return deliver(url, event);
  };
  const started = performance.now();
  const lane = async () => {
    while (next < events.length) {
      const index = next++;
      const event = events[index] as TEvent;
      const primary = urls[index % 2] as string;
      const other = urls[(index + 1) % 2] as string;
      const plan = soakPlanFor(index);
      if (plan === "concurrent-duplicate") {
        await Promise.all([send(primary, event), send(other, event)]);
      } else {
        await send(primary, event);
        if (plan === "late-duplicate") await send(other, event);
      }
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      Promise.all(Array.from({ length: lanes }, lane)),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`soak deliveries not done within ${deadlineMs} ms`)),
          deadlineMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  const duplicatedEvents = events.filter((_, index) => soakPlanFor(index) !== "once").length;
  return { deliveries, duplicatedEvents, receivedMs: Math.round(performance.now() - started) };
}

/** One HTTP attempt of a soak delivery (the simulator's `DeliveryAttempt`, as far as read). */
export interface SoakAttempt {
  status?: number;
  errorCode?: string;
  responseBody?: string;
}

/** What one store's soak test brings to {@link runStoreSoak}; the rest is the same for all. */
export interface StoreSoakOptions<TEvent> {
  /** The first fields of the printed result, e.g. `{ mode, database: "MariaDB" }`. */
  label: Record<string, unknown>;
  /** How many events: 30% are delivered twice, 20% fail their first handler attempt. */
  events: number;
  /** Event `index` of the run, with `data` merged into its data (`failFirst`). */
  createEvent(index: number, data: { failFirst: boolean }): TEvent;
  keyOf(event: TEvent): string;
  /** Starts receiver process `instance` ("a", then "b") on the store under test. */
  startReceiver(instance: string): Child;
  /** Mappa's delivery schedule (`createDeliverySimulator` of @mappa-webhooks/testing). */
  createDeliverySimulator(options: {
    secret: string;
    timeScale: number;
    timeoutMs: number;
    onAttempt(attempt: SoakAttempt): void;
  }): { deliver(url: string, event: TEvent): Promise<{ delivered: boolean }> };
  secret: string;
  /**
   * Reads the store once every delivery is done: one `{ key, worker }` per effect written,
   * how many handlers failed their first attempt (the markers), and any store-specific counts
   * to print with the result (e.g. `doneMarks`).
   */
  measure(): Promise<{
    effects: Iterable<{ key: string; worker: string }>;
    handlersFailingOnce: number;
    extra?: Record<string, unknown>;
  }>;
  /** Concurrent lanes. Default 16. */
  lanes?: number;
  /** Default 180 000 ms. */
  deadlineMs?: number;
}

/** What a store's soak run counted (printed as `[soak] {...}`). */
export interface StoreSoakResult {
  eventsSent: number;
  duplicatedEvents: number;
  deliveries: number;
  httpRequests: number;
  /** HTTP attempts by status (or error code). */
  answers: Record<string, number>;
  /** 200 answers that said `"duplicate":true`. */
  duplicateAnswers200: number;
  handlersFailingOnce: number;
  effectsRecorded: number;
  missing: number;
  doubled: number;
  effectsByProcess: Record<string, number>;
  abandoned: number;
  /** Receiver processes that had exited (crashed) before the soak ended: must be 0. */
  receiversExited: number;
  receivedMs: number;
  [extra: string]: unknown;
}

/**
 * The soak test of a store, one driver for all: two receiver processes ("a" and "b") on one
 * store, `events` events delivered by Mappa's schedule per {@link runSoakDeliveries}, 20% of
 * them failing their first handler attempt; then the effects are counted per event and per
 * process. Resolves the counts (also printed); the caller asserts (see {@link expectSoakExactlyOnce}).
 * The receivers are SIGKILLed at the end.
 *
 * @example
 * ```ts
 * const result = await runStoreSoak({ label: { store: "x" }, events: 300, ... });
 * expectSoakExactlyOnce(result, 300);
 * ```
 */
export async function runStoreSoak<TEvent>(
  options: StoreSoakOptions<TEvent>,
): Promise<StoreSoakResult> {
  const receivers = ["a", "b"].map((instance) => options.startReceiver(instance));
  try {
    const urls = [
      await webhookUrlOf(receivers[0] as Child),
      await webhookUrlOf(receivers[1] as Child),
    ] as const;
    const events = Array.from({ length: options.events }, (_, index) =>
      options.createEvent(index, { failFirst: index % 5 === 0 }),
    );
    const attempts: SoakAttempt[] = [];
    // Mappa's schedule at 1/500 (0, 10, 60, 600, 3600 ms): errors and 409s are retried.
    const mappa = options.createDeliverySimulator({
      secret: options.secret,
      timeScale: 0.002,
      timeoutMs: 30_000,
      onAttempt: (attempt) => void attempts.push(attempt),
    });
    let abandoned = 0;
    const sent = await runSoakDeliveries({
      events,
      urls,
      lanes: options.lanes ?? 16,
      deadlineMs: options.deadlineMs ?? 180_000,
      deliver: async (url, event) => {
        const report = await mappa.deliver(url, event);
        if (!report.delivered) abandoned++;
      },
    });
    const receiversExited = receivers.filter(
      (child) => child.process.exitCode !== null || child.process.signalCode !== null,
    ).length;
    const measured = await options.measure();
    const perKey = new Map<string, number>(events.map((event) => [options.keyOf(event), 0]));
    const byProcess: Record<string, number> = {};
    for (const { key, worker } of measured.effects) {
      perKey.set(key, (perKey.get(key) ?? 0) + 1);
      byProcess[worker] = (byProcess[worker] ?? 0) + 1;
    }
    const answers: Record<string, number> = {};
    for (const attempt of attempts) {
      const label =
        attempt.status === undefined ? (attempt.errorCode ?? "error") : String(attempt.status);
      answers[label] = (answers[label] ?? 0) + 1;
    }
    const counts = [...perKey.values()];
    const result: StoreSoakResult = {
      ...options.label,
      eventsSent: options.events,
      duplicatedEvents: sent.duplicatedEvents,
      deliveries: sent.deliveries,
      httpRequests: attempts.length,
      answers,
      duplicateAnswers200: attempts.filter(
        (a) => a.status === 200 && a.responseBody?.includes('"duplicate":true') === true,
      ).length,
      handlersFailingOnce: measured.handlersFailingOnce,
      effectsRecorded: counts.filter((n) => n === 1).length,
      missing: counts.filter((n) => n === 0).length,
      doubled: counts.filter((n) => n > 1).length,
      effectsByProcess: byProcess,
      abandoned,
      receiversExited,
      receivedMs: sent.receivedMs,
      ...measured.extra,
    };
    console.log(`[soak] ${JSON.stringify(result)}`);
    return result;
  } finally {
    await Promise.all(receivers.map((child) => child.kill("SIGKILL")));
  }
}

/**
 * Connection-level failures a busy machine can give an attempt that never reached a handler
 * (a keep-alive socket closed by the server as the client reused it): Mappa retries them, as
 * the simulator does, so they are allowed while both receivers stay up.
 */
const RETRIED_CONNECTION_ERRORS = ["UND_ERR_SOCKET", "ECONNRESET", "EPIPE"];

/**
 * The soak's verdict, the same for every store: nothing abandoned, no receiver crashed, 30%
 * delivered twice, every failing-once event answered 500 once and handled on a retry, every
 * effect exactly once, only 200/409/500 answers (or a retried connection error), and both
 * processes did work.
 *
 * @example
 * ```ts
 * expectSoakExactlyOnce(await runStoreSoak(options), 1000);
 * ```
 */
export function expectSoakExactlyOnce(result: StoreSoakResult, events: number): void {
  expect(result.abandoned).toBe(0);
  expect(result.receiversExited).toBe(0);
  expect(result.duplicatedEvents).toBe(events * 0.3);
  expect(result.deliveries).toBe(events * 1.3);
  expect(result.handlersFailingOnce).toBe(events / 5);
  expect(result.effectsRecorded).toBe(events);
  expect(result.missing).toBe(0);
  expect(result.doubled).toBe(0);
  // Each failing-once event was answered 500 once, then handled on a retry.
  expect(result.answers["500"]).toBe(events / 5);
  for (const status of Object.keys(result.answers))
    expect(["200", "409", "500", ...RETRIED_CONNECTION_ERRORS]).toContain(status);
  expect(result.effectsByProcess.a).toBeGreaterThan(0);
  expect(result.effectsByProcess.b).toBeGreaterThan(0);
}
