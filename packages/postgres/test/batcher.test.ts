// The group-commit batcher's rules on a fake clock: when a batch goes, how large, how many at
// once. `commit` is the test's: each batch waits until the test settles it.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createGroupCommit, type GroupCommitLimits } from "../src/group-commit.js";

interface Sent {
  items: readonly number[];
  settle(): void;
}

function batcher(limits: Partial<GroupCommitLimits> = {}) {
  const sent: Sent[] = [];
  const batches = createGroupCommit<number, number>({
    limits: { maxBatch: 64, maxInFlight: 2, stallMs: 20, ...limits },
    commit: (items) =>
      new Promise((resolve) => {
        sent.push({ items, settle: () => resolve(items.map((item) => item * 10)) });
      }),
    retrySingly: () => false,
    expired: () => new Error("expired"),
  });
  return { sent, batches };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("the group-commit batcher", () => {
  it("sends a lone item at once, and what queues behind it as one batch when it settles", async () => {
    const { sent, batches } = batcher();
    const first = batches.submit(1);
    expect(sent.map((batch) => batch.items)).toEqual([[1]]);
    const queued = [2, 3, 4].map((item) => batches.submit(item));
    await vi.advanceTimersByTimeAsync(5);
    expect(sent).toHaveLength(1);
    expect(batches.queued).toBe(3);
    sent[0]?.settle();
    expect(await first).toBe(10);
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.map((batch) => batch.items)).toEqual([[1], [2, 3, 4]]);
    sent[1]?.settle();
    expect(await Promise.all(queued)).toEqual([20, 30, 40]);
    expect(batches.inFlight).toBe(0);
  });

  it("sends a second batch beside one in flight for stallMs", async () => {
    const { sent, batches } = batcher();
    void batches.submit(1);
    void batches.submit(2);
    await vi.advanceTimersByTimeAsync(19);
    expect(sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent.map((batch) => batch.items)).toEqual([[1], [2]]);
    // maxInFlight 2: however long both take, the next items queue.
    void batches.submit(3);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent).toHaveLength(2);
    expect(batches.queued).toBe(1);
    // The newest batch's age counts: when it settles, the next goes beside the stalled first.
    sent[1]?.settle();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.map((batch) => batch.items)).toEqual([[1], [2], [3]]);
  });

  it("sends a second batch at once when a full batch waits", async () => {
    const { sent, batches } = batcher({ maxBatch: 3 });
    void batches.submit(0);
    for (const item of [1, 2]) void batches.submit(item);
    expect(sent).toHaveLength(1);
    void batches.submit(3);
    expect(sent.map((batch) => batch.items)).toEqual([[0], [1, 2, 3]]);
  });

  it("never sends more than maxInFlight batches", async () => {
    const { sent, batches } = batcher({ maxBatch: 2, maxInFlight: 3 });
    for (let item = 0; item < 20; item++) void batches.submit(item);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent.map((batch) => batch.items)).toEqual([[0], [1, 2], [3, 4]]);
    expect(batches.inFlight).toBe(3);
    expect(batches.queued).toBe(15);
  });

  it("rejects an item whose deadline passed while it queued, and never sends it", async () => {
    const { sent, batches } = batcher({ maxInFlight: 1 });
    void batches.submit(1);
    const late = batches.submit(2, performance.now() + 50);
    const outcome = late.then(
      () => "resolved",
      (error: Error) => error.message,
    );
    await vi.advanceTimersByTimeAsync(100);
    sent[0]?.settle();
    expect(await outcome).toBe("expired");
    expect(sent).toHaveLength(1);
  });
});
