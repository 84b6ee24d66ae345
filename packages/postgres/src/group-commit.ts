// Group commit in the application: concurrent inbox inserts share one statement and one
// transaction, so one WAL flush acknowledges many deliveries.
import { isConnectionError, sqlState } from "./pg.js";
import type { ResolvedTables } from "./schema.js";

/**
 * How a batcher forms batches: at most `maxBatch` items each, at most `maxInFlight` at once,
 * a batch beyond the first only when a full batch waits or the newest batch in flight has
 * taken `stallMs`.
 */
export interface GroupCommitLimits {
  maxBatch: number;
  maxInFlight: number;
  stallMs: number;
}

export const DEFAULT_GROUP_COMMIT: Readonly<GroupCommitLimits> = Object.freeze({
  maxBatch: 64,
  maxInFlight: 2,
  // A local commit takes a millisecond or two; one that has taken this long is stuck on a slow
  // or dying connection, and the deliveries behind it should not wait for it.
  stallMs: 20,
});

interface Entry<TItem, TResult> {
  item: TItem;
  /** `performance.now()` after which the caller stopped waiting: the item is not sent. */
  deadline: number;
  resolve(result: TResult): void;
  reject(error: unknown): void;
}

/** Submits items; each settles after the commit that holds it. */
export interface GroupCommit<TItem, TResult> {
  submit(item: TItem, deadline?: number): Promise<TResult>;
  /** Batches sent and not settled yet. */
  readonly inFlight: number;
  /** Items waiting for a batch. */
  readonly queued: number;
}

/**
 * A batcher: an item submitted while no batch is in flight goes at once (no timer, so a lone
 * delivery waits for nothing); otherwise it queues, and when the batch settles the queue (up
 * to `maxBatch` items) goes as the next one. One batch at a time makes the batches large: the
 * fewer statements, the less CPU per item, on both sides. Another batch goes alongside (up to
 * `maxInFlight`) only when a full batch waits, or when the newest batch in flight has taken
 * `stallMs` (a slow or hung connection must not hold up the items behind it). `commit` runs
 * one batch and resolves one result per item, in order. When it rejects with an error
 * `retrySingly` accepts (an error about one row's data), each item is committed again on its
 * own, so only the bad item fails; any other error (a lost connection, a timeout) fails the
 * whole batch.
 */
export function createGroupCommit<TItem, TResult>(options: {
  limits: GroupCommitLimits;
  commit(items: readonly TItem[]): Promise<TResult[]>;
  retrySingly(error: unknown): boolean;
  /** The error of an item whose deadline passed while it queued (it is never sent). */
  expired(): Error;
}): GroupCommit<TItem, TResult> {
  const { limits, commit, retrySingly, expired } = options;
  const queue: Entry<TItem, TResult>[] = [];
  /** When each batch in flight was sent (`performance.now()`), oldest first. */
  const sentAt: number[] = [];
  let inFlight = 0;
  let stallTimer: ReturnType<typeof setTimeout> | undefined;

  const commitSingly = (entries: Entry<TItem, TResult>[]) =>
    Promise.all(
      entries.map((entry) =>
        commit([entry.item]).then(
          (results) => entry.resolve(results[0] as TResult),
          (error: unknown) => entry.reject(error),
        ),
      ),
    );

  const run = async (entries: Entry<TItem, TResult>[]) => {
    try {
      const results = await commit(entries.map((entry) => entry.item));
      for (let i = 0; i < entries.length; i++) entries[i]?.resolve(results[i] as TResult);
    } catch (error) {
      if (entries.length > 1 && retrySingly(error)) await commitSingly(entries);
      else for (const entry of entries) entry.reject(error);
    }
  };

  /** How long until the newest batch in flight (the last sent) counts as stalled. */
  const untilStalled = (now: number) =>
    (sentAt.at(-1) ?? Number.NEGATIVE_INFINITY) + limits.stallMs - now;

  const pump = () => {
    while (inFlight < limits.maxInFlight && queue.length > 0) {
      const now = performance.now();
      if (inFlight > 0 && queue.length < limits.maxBatch) {
        const wait = untilStalled(now);
        if (wait > 0) {
          // Looked at again when a batch settles, a full batch waits, or this fires.
          if (stallTimer === undefined) {
            stallTimer = setTimeout(() => {
              stallTimer = undefined;
              pump();
            }, wait);
            stallTimer.unref?.();
          }
          return;
        }
      }
      const entries: Entry<TItem, TResult>[] = [];
      while (entries.length < limits.maxBatch && queue.length > 0) {
        const entry = queue.shift() as Entry<TItem, TResult>;
        // Its caller has answered already (timed out): storing it now would help no one.
        if (entry.deadline <= now) entry.reject(expired());
        else entries.push(entry);
      }
      if (entries.length === 0) return;
      inFlight++;
      sentAt.push(now);
      void run(entries).finally(() => {
        inFlight--;
        sentAt.splice(sentAt.indexOf(now), 1);
        pump();
      });
    }
  };

  return {
    submit(item, deadline = Number.POSITIVE_INFINITY) {
      return new Promise<TResult>((resolve, reject) => {
        queue.push({ item, deadline, resolve, reject });
        pump();
      });
    },
    get inFlight() {
      return inFlight;
    },
    get queued() {
      return queue.length;
    },
  };
}

/**
 * Whether a failed batch is worth retrying row by row: errors about the data of some row
 * (SQLSTATE classes 22 data exception, 23 integrity constraint, 54 program limit such as an
 * index row too large) and transaction conflicts (class 40, which single-row statements
 * avoid). A lost connection, a timeout or a missing table fails every row alike.
 */
export function isRowError(error: unknown): boolean {
  if (isConnectionError(error)) return false;
  const state = sqlState(error) ?? "";
  return /^(22|23|40|54)/.test(state);
}

/** One inbox row, as the insert sends it. */
export interface InboxRow {
  key: string;
  eventId: string | null;
  type: string;
  /** The event as JSON text (`JSON.stringify`'s: the batch insert splices it in as is). */
  payload: string;
  /** The delivery's trace context as JSON text (`JSON.stringify`'s), or `null`. */
  traceContext: string | null;
  /** The job of a known event, untracked for recovery in the same statement; else `null`. */
  jobId: string | null;
}

/**
 * The multi-row inbox insert: the rows as one JSON array through `json_to_recordset` (each
 * payload is already JSON text, so it is spliced in, not escaped again, and Postgres parses one
 * document), `ON CONFLICT (key) DO NOTHING`, and the keys it stored as one array. In the same
 * statement the batch's jobs are untracked for recovery: their outcomes are in the inbox now
 * (or were already). No `NOTIFY` here: the inbox wakes the workers after the commit.
 */
export function batchInsertSql(t: ResolvedTables): string {
  return `WITH batch AS (
         SELECT * FROM json_to_recordset($1::json)
           AS r(key text, event_id text, type text, payload json, trace_context jsonb, job_id text)
       ), untracked AS (
         DELETE FROM ${t.trackedJobs}
          WHERE job_id IN (SELECT job_id FROM batch WHERE job_id IS NOT NULL)
       ), stored AS (
         INSERT INTO ${t.events} (key, event_id, type, payload, trace_context)
         SELECT key, event_id, type, payload, trace_context FROM batch
         ON CONFLICT (key) DO NOTHING
         RETURNING key
       )
       SELECT array_agg(key) AS keys FROM stored`;
}

/**
 * The parameters of {@link batchInsertSql} for `rows`: one row per key (the first of the
 * batch), sorted by key so that concurrent batches take their row locks in the same order and
 * never deadlock, as one JSON array.
 */
export function batchInsertValues(rows: readonly InboxRow[]): unknown[] {
  const seen = new Set<string>();
  const unique: InboxRow[] = [];
  for (const row of rows) {
    if (seen.has(row.key)) continue;
    seen.add(row.key);
    unique.push(row);
  }
  unique.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  let json = "[";
  for (let i = 0; i < unique.length; i++) {
    const row = unique[i] as InboxRow;
    json += `${i === 0 ? "" : ","}{"key":${JSON.stringify(row.key)},"event_id":${JSON.stringify(row.eventId)},"type":${JSON.stringify(row.type)},"payload":${row.payload},"trace_context":${row.traceContext ?? "null"},"job_id":${JSON.stringify(row.jobId)}}`;
  }
  json += "]";
  return [json];
}

/**
 * Whether each row was stored, given the keys the statement returned: the first row of each
 * stored key is, any later row of the same key in the batch is a duplicate.
 */
export function storedFlags(rows: readonly InboxRow[], storedKeys: readonly string[]): boolean[] {
  const unclaimed = new Set(storedKeys);
  return rows.map((row) => unclaimed.delete(row.key));
}
