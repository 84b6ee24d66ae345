// The delivery pattern of the stores' soak tests, one definition for every store: N events
// sent by concurrent lanes to two receivers, 30% of them twice (20% at the same moment to both
// receivers, 10% again to the other one after the first delivery was answered).

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
