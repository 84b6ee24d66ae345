// The contract every JobTrackingStore keeps, as one suite any store runs: track is idempotent
// and keeps the first trackedAt, untrack forgets (an unknown job is no error), tracked() lists
// in job id order and pages with an exclusive `after`, odd job ids round-trip, and replicas on
// separate connections tracking and untracking one job end consistent.
//
// Order: the memory store compares JavaScript strings (UTF-16 code units), the server stores
// compare bytes or code points. Both agree on the ASCII ids the ordering checks use; for odd
// ids the contract only asks that paging in the store's own order sees every job once.
import {
  createMappaRecovery,
  createMappaWebhooks,
  type IdempotencyStore,
  type JobTrackingStore,
  type MappaWebhooksOptions,
  type TrackedJob,
} from "@mappa-webhooks/core";
import { createSignedDelivery, createTestEvent } from "@mappa-webhooks/testing";
import { describe, expect, it } from "vitest";

/** One tracking store, made fresh (with no jobs) for one test by the factory. */
export interface JobTrackingStoreUnderTest {
  /** A store with no tracked jobs yet (its own key prefix, schema or table). */
  store: JobTrackingStore;
  /**
   * The clock `track` reads when no `trackedAt` is given, in unix ms. Default `Date.now`
   * (the store's default `trackedAt` is then checked to be within the test's run).
   */
  now?(): number;
  /**
   * `n` stores sharing this store's jobs, each over its own connection, so the concurrent
   * track/untrack check runs on separate connections. Without it, on `store` n times.
   */
  replicas?(n: number): Promise<JobTrackingStore[]>;
  /** Frees what the factory made (connections, keys, tables); runs after each test. */
  close?(): Promise<void>;
}

/** Makes a fresh, empty tracking store for one test of the contract. */
export type JobTrackingStoreFactory = () => Promise<JobTrackingStoreUnderTest>;

/** Options of {@link describeJobTrackingContract}. */
export interface JobTrackingContractOptions {
  /** Replicas in the concurrency check. Default 8. */
  concurrency?: number;
  /** Test timeout (real servers, 250+ round trips). Default 60 000 ms. */
  timeoutMs?: number;
}

/** Every tracked job, read `limit` at a time through `after`; fails on a loop. */
async function pageAll(store: JobTrackingStore, limit: number): Promise<TrackedJob[]> {
  const seen: TrackedJob[] = [];
  let after: string | undefined;
  for (let page = 0; page < 10_000; page++) {
    const batch = await store.tracked(after === undefined ? { limit } : { limit, after });
    expect(batch.length).toBeLessThanOrEqual(limit);
    if (batch.length === 0) return seen;
    seen.push(...batch);
    const last = batch[batch.length - 1] as TrackedJob;
    expect(last.jobId, "a page must end after its cursor").not.toBe(after);
    after = last.jobId;
    if (batch.length < limit) return seen;
  }
  throw new Error("tracked() never ran out of pages");
}

const ids = (jobs: TrackedJob[]) => jobs.map((job) => job.jobId);

/**
 * Registers the contract every {@link JobTrackingStore} keeps, run against the stores `factory`
 * makes (a fresh, empty one per test).
 *
 * @example
 * ```ts
 * import { createMemoryIdempotencyStore } from "@mappa-webhooks/core";
 * import { describeJobTrackingContract } from "@mappa-webhooks/conformance";
 *
 * describeJobTrackingContract("memory", async () => {
 *   const now = 1_767_225_600_000;
 *   return { store: createMemoryIdempotencyStore({ now: () => now }), now: () => now };
 * });
 * ```
 */
export function describeJobTrackingContract(
  name: string,
  factory: JobTrackingStoreFactory,
  options: JobTrackingContractOptions = {},
): void {
  const concurrency = options.concurrency ?? 8;
  const timeout = options.timeoutMs ?? 60_000;

  const check =
    (test: (subject: JobTrackingStoreUnderTest) => Promise<void>): (() => Promise<void>) =>
    async () => {
      const subject = await factory();
      try {
        await test(subject);
      } finally {
        await subject.close?.();
      }
    };

  describe(`JobTrackingStore contract: ${name}`, () => {
    it(
      "starts empty, tracks, lists and untracks",
      check(async ({ store }) => {
        expect(await store.tracked({ limit: 10 })).toEqual([]);
        await store.track("job_a", { trackedAt: 1_000 });
        expect(await store.tracked({ limit: 10 })).toEqual([{ jobId: "job_a", trackedAt: 1_000 }]);
        await store.untrack("job_a");
        expect(await store.tracked({ limit: 10 })).toEqual([]);
      }),
      timeout,
    );

    it(
      "keeps the first trackedAt when a job is tracked again",
      check(async ({ store }) => {
        await store.track("job_again", { trackedAt: 5_000 });
        await store.track("job_again", { trackedAt: 9_000 });
        await store.track("job_again");
        expect(await store.tracked({ limit: 10 })).toEqual([
          { jobId: "job_again", trackedAt: 5_000 },
        ]);
        // Tracked again after an untrack: a new first time.
        await store.untrack("job_again");
        await store.track("job_again", { trackedAt: 7_000 });
        expect(await store.tracked({ limit: 10 })).toEqual([
          { jobId: "job_again", trackedAt: 7_000 },
        ]);
      }),
      timeout,
    );

    it(
      "defaults trackedAt to the store's now",
      check(async ({ store, now }) => {
        const clock = now ?? Date.now;
        const before = clock();
        await store.track("job_now");
        const after = clock();
        const [job] = await store.tracked({ limit: 1 });
        expect(job?.jobId).toBe("job_now");
        expect(Number.isInteger(job?.trackedAt)).toBe(true);
        // Whole milliseconds either side: a store may round.
        expect(job?.trackedAt).toBeGreaterThanOrEqual(Math.floor(before) - 1);
        expect(job?.trackedAt).toBeLessThanOrEqual(Math.ceil(after) + 1);
      }),
      timeout,
    );

    it(
      "untracks a job never tracked, or twice, without an error",
      check(async ({ store }) => {
        await store.untrack("job_never");
        await store.track("job_kept", { trackedAt: 1 });
        await store.track("job_twice", { trackedAt: 2 });
        await store.untrack("job_twice");
        await store.untrack("job_twice");
        expect(await store.tracked({ limit: 10 })).toEqual([{ jobId: "job_kept", trackedAt: 1 }]);
      }),
      timeout,
    );

    it(
      "lists in job id order, at most limit, strictly after `after`",
      check(async ({ store }) => {
        // Tracked out of order, with trackedAt unrelated to the id order.
        const order = ["job_c", "job_a", "job_e", "job_b", "job_d", "job_A", "job_1", "job_a1"];
        for (const [i, jobId] of order.entries()) await store.track(jobId, { trackedAt: 100 - i });
        const sorted = [...order].sort();
        expect(ids(await store.tracked({ limit: 100 }))).toEqual(sorted);
        expect(ids(await store.tracked({ limit: 3 }))).toEqual(sorted.slice(0, 3));
        expect(ids(await store.tracked({ limit: 1 }))).toEqual(sorted.slice(0, 1));
        // `after` is exclusive, and need not be a tracked id.
        expect(ids(await store.tracked({ limit: 2, after: "job_a" }))).toEqual(["job_a1", "job_b"]);
        expect(ids(await store.tracked({ limit: 100, after: "job_b0" }))).toEqual([
          "job_c",
          "job_d",
          "job_e",
        ]);
        expect(await store.tracked({ limit: 10, after: "job_e" })).toEqual([]);
        expect(await store.tracked({ limit: 10, after: "zzz" })).toEqual([]);
        // The trackedAt of each listed job is its own.
        const all = await store.tracked({ limit: 100 });
        for (const job of all) expect(job.trackedAt).toBe(100 - order.indexOf(job.jobId));
      }),
      timeout,
    );

    it(
      "pages through 250 jobs in steps of 100, seeing each once",
      check(async ({ store }) => {
        const jobIds = Array.from({ length: 250 }, (_, i) => `job_${String(i).padStart(4, "0")}`);
        // Tracked in a shuffled order (a fixed permutation: 97 is coprime with 250).
        for (let i = 0; i < jobIds.length; i++) {
          await store.track(jobIds[(i * 97) % 250] as string, { trackedAt: 1_000 + i });
        }
        const pages: number[] = [];
        let after: string | undefined;
        const seen: string[] = [];
        for (;;) {
          const page = await store.tracked(
            after === undefined ? { limit: 100 } : { limit: 100, after },
          );
          pages.push(page.length);
          if (page.length === 0) break;
          seen.push(...ids(page));
          after = page[page.length - 1]?.jobId;
        }
        expect(pages).toEqual([100, 100, 50, 0]);
        expect(seen).toEqual(jobIds);
        // Untracking while paging: the rest is still seen once.
        await store.untrack("job_0150");
        const rest = await store.tracked({ limit: 100, after: "job_0149" });
        expect(ids(rest)).toEqual(jobIds.slice(151));
      }),
      timeout,
    );

    it(
      "round-trips job ids with odd characters",
      check(async ({ store }) => {
        const odd = [
          "job:with:colons",
          "job_{braces}",
          "{job}",
          "job_100%_%25",
          "job with spaces",
          "job\twith\ttabs",
          "job_'quote\"double`back\\slash",
          "job_ünïcödé_日本語",
          "job_emoji_🚀",
          "job_%_and_*_?_[x]",
          "job_;DROP TABLE x;--",
          `job_${"x".repeat(196)}`, // 200 characters
          "ジョブ",
          "~job:report.completed:job_1",
        ];
        expect(odd[11]).toHaveLength(200);
        for (const [i, jobId] of odd.entries()) await store.track(jobId, { trackedAt: 10 + i });
        // Read one at a time: every cursor is an odd id itself.
        const seen = await pageAll(store, 1);
        expect([...ids(seen)].sort()).toEqual([...odd].sort());
        for (const job of seen) expect(job.trackedAt).toBe(10 + odd.indexOf(job.jobId));
        // The store's own order, however it compares, is the one `after` pages by.
        expect(ids(await pageAll(store, 5))).toEqual(ids(seen));
        expect(ids(await store.tracked({ limit: 100 }))).toEqual(ids(seen));
        for (const jobId of odd) await store.untrack(jobId);
        expect(await store.tracked({ limit: 100 })).toEqual([]);
      }),
      timeout,
    );

    it(
      `ends consistent when ${concurrency} replicas track and untrack one job at once`,
      check(async ({ store, replicas }) => {
        const stores: JobTrackingStore[] = replicas
          ? await replicas(concurrency)
          : Array.from({ length: concurrency }, () => store);
        // All track at once, each with its own trackedAt: one row, one of theirs.
        await Promise.all(
          stores.map((each, i) => each.track("job_race", { trackedAt: 1_000 + i })),
        );
        const [raced, ...others] = await store.tracked({ limit: 10 });
        expect(others).toEqual([]);
        expect(raced?.jobId).toBe("job_race");
        expect(raced?.trackedAt).toBeGreaterThanOrEqual(1_000);
        expect(raced?.trackedAt).toBeLessThan(1_000 + concurrency);
        // The replicas see the same job.
        for (const each of stores) expect(await each.tracked({ limit: 10 })).toEqual([raced]);
        // Tracked again by all at once: the first trackedAt stays.
        await Promise.all(stores.map((each) => each.track("job_race", { trackedAt: 9_999 })));
        expect(await store.tracked({ limit: 10 })).toEqual([raced]);
        // All untrack at once: gone, and no one failed.
        await Promise.all(stores.map((each) => each.untrack("job_race")));
        expect(await store.tracked({ limit: 10 })).toEqual([]);
        // Mixed at once, several rounds: present once or absent, never twice; then settled.
        for (let round = 0; round < 5; round++) {
          const jobId = `job_mixed_${round}`;
          await Promise.all(
            stores.map((each, i) =>
              i % 2 === 0 ? each.track(jobId, { trackedAt: 2_000 + i }) : each.untrack(jobId),
            ),
          );
          const listed = ids(await store.tracked({ limit: 10 }));
          expect(listed.every((id) => id === jobId)).toBe(true);
          expect(listed.length).toBeLessThanOrEqual(1);
          await store.track(jobId, { trackedAt: 3_000 });
          expect(ids(await store.tracked({ limit: 10 }))).toEqual([jobId]);
          await store.untrack(jobId);
        }
        expect(await store.tracked({ limit: 10 })).toEqual([]);
        // Many jobs at once from every replica: each listed once.
        const many = Array.from({ length: 40 }, (_, i) => `job_many_${String(i).padStart(2, "0")}`);
        await Promise.all(
          many.map((jobId, i) => (stores[i % stores.length] as JobTrackingStore).track(jobId)),
        );
        expect(ids(await pageAll(store, 7))).toEqual(many);
      }),
      timeout,
    );
  });
}

/** A receiver's options on one store, for {@link describeRecoveryWithStore}. */
export interface RecoveryStoreUnderTest {
  /**
   * The receiver's options without `secret`: at least `idempotency` (the store under test, or
   * the one a package's receiver helper passes), and `on` when the helper wraps handlers. A
   * `report.completed` handler is added when `on` has none.
   */
  options: Omit<MappaWebhooksOptions<unknown>, "secret" | "idempotency"> & {
    idempotency: IdempotencyStore;
  };
  /** Where the jobs are tracked: the same jobs `options.idempotency` tracks. */
  tracking: JobTrackingStore;
  close?(): Promise<void>;
}

const RECOVERY_SECRET = "whsec_tracking_contract_8c2f";

/**
 * Registers the check that `createMappaRecovery` accepts a package's store (it tracks jobs),
 * and that a handled webhook of a tracked job untracks it, so recovery never asks about it.
 *
 * @example
 * ```ts
 * describeRecoveryWithStore("redis", async () => {
 *   const store = createRedisIdempotencyStore({ client, prefix: uniquePrefix() });
 *   return { options: { idempotency: store }, tracking: store };
 * });
 * ```
 */
export function describeRecoveryWithStore(
  name: string,
  factory: () => Promise<RecoveryStoreUnderTest>,
  options: JobTrackingContractOptions = {},
): void {
  const timeout = options.timeoutMs ?? 60_000;
  describe(`recovery on ${name}`, () => {
    it(
      "is accepted by createMappaRecovery, and a handled webhook untracks its job",
      async () => {
        const subject = await factory();
        try {
          const handled: string[] = [];
          const on = subject.options.on ?? {};
          const receiverOptions: MappaWebhooksOptions<unknown> & {
            idempotency: IdempotencyStore;
          } = {
            ...subject.options,
            secret: RECOVERY_SECRET,
            on:
              on["report.completed"] === undefined
                ? {
                    ...on,
                    "report.completed": (event) => {
                      handled.push(event.data.jobId);
                    },
                  }
                : on,
          };
          const asked: string[] = [];
          const recovery = createMappaRecovery({
            ...receiverOptions,
            fetchJob: async (jobId) => {
              asked.push(jobId);
              return { id: jobId, status: "running" };
            },
          });
          const jobId = `job_recovery_${Date.now().toString(36)}`;
          await recovery.track(jobId);
          await recovery.track("job_still_open");
          expect(ids(await subject.tracking.tracked({ limit: 10 }))).toEqual(
            [jobId, "job_still_open"].sort(),
          );

          const webhooks = createMappaWebhooks(receiverOptions);
          const event = createTestEvent("report.completed", { data: { jobId } });
          const { body, headers } = await createSignedDelivery(event, { secret: RECOVERY_SECRET });
          const response = await webhooks.handle({ method: "POST", headers, rawBody: body });
          expect(response.status).toBe(200);
          if (subject.options.on === undefined) expect(handled).toEqual([jobId]);
          expect(ids(await subject.tracking.tracked({ limit: 10 }))).toEqual(["job_still_open"]);

          // Recovery now asks only about the job still open.
          const report = await recovery.reconcile();
          expect(asked).toEqual(["job_still_open"]);
          expect(report.jobs.map((job) => [job.jobId, job.outcome])).toEqual([
            ["job_still_open", "running"],
          ]);
        } finally {
          await subject.close?.();
        }
      },
      timeout,
    );
  });
}
