import type { MappaEvent } from "./events.js";

/**
 * The job-tracking half of a store: which jobs were created and whose outcome has not been
 * handled yet. `createMappaRecovery` records a job with {@link JobTrackingStore.track}, lists
 * the open ones with {@link JobTrackingStore.tracked} and forgets one with
 * {@link JobTrackingStore.untrack} once its outcome was handled by either path (the receiver
 * untracks after a webhook's handlers succeed, recovery after its own). Every store of this
 * project implements it: the memory store, `@mappa-webhooks/redis`, `@mappa-webhooks/postgres`,
 * `@mappa-webhooks/sqlite`, `@mappa-webhooks/mysql` and `@mappa-webhooks/dynamodb`.
 *
 * @example
 * ```ts
 * const store = createMemoryIdempotencyStore();
 * await store.track("job_1");
 * await store.tracked({ limit: 100 }); // [{ jobId: "job_1", trackedAt: 1767225600000 }]
 * await store.untrack("job_1");
 * ```
 */
export interface JobTrackingStore {
  /** Records `jobId` (again: a no-op that keeps the first `trackedAt`). */
  track(jobId: string, options?: { trackedAt?: number }): Promise<void>;
  /** Forgets `jobId`; a job not tracked is no error. */
  untrack(jobId: string): Promise<void>;
  /**
   * Up to `limit` tracked jobs in job id order, starting after `after` (exclusive), so a caller
   * can page through every job in bounded steps and wrap around.
   */
  tracked(options: { limit: number; after?: string }): Promise<TrackedJob[]>;
}

/** A job {@link JobTrackingStore.track} recorded. */
export interface TrackedJob {
  jobId: string;
  /** Unix ms when it was first tracked. */
  trackedAt: number;
}

/** True when `store` implements {@link JobTrackingStore}. */
export function isJobTrackingStore(store: unknown): store is JobTrackingStore {
  const candidate = store as Partial<JobTrackingStore> | null | undefined;
  return (
    typeof candidate === "object" &&
    candidate !== null &&
    typeof candidate.track === "function" &&
    typeof candidate.untrack === "function" &&
    typeof candidate.tracked === "function"
  );
}

/**
 * After a known event's outcome was handled (or found already handled), forgets its job in a
 * tracking store, so recovery never asks the API about it again. A failure is reported, never
 * thrown: the outcome key still makes a later recovery a duplicate.
 */
export async function untrackHandled(
  store: unknown,
  event: MappaEvent,
  onFailure: (error: unknown) => void,
): Promise<void> {
  if (!event.known || !isJobTrackingStore(store)) return;
  try {
    await store.untrack(event.data.jobId);
  } catch (error) {
    onFailure(error);
  }
}

/** The in-process tracking of the memory store: a map, listed in job id order. */
export function memoryJobTracking(now: () => number): JobTrackingStore {
  const jobs = new Map<string, number>();
  return {
    async track(jobId, options = {}) {
      if (!jobs.has(jobId)) jobs.set(jobId, options.trackedAt ?? now());
    },
    async untrack(jobId) {
      jobs.delete(jobId);
    },
    async tracked({ limit, after }) {
      const ids = [...jobs.keys()].filter((id) => after === undefined || id > after).sort();
      return ids.slice(0, limit).map((jobId) => ({ jobId, trackedAt: jobs.get(jobId) as number }));
    },
  };
}
