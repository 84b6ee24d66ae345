// Group commit of the inbox's inserts, over real HTTP against a real Postgres. A table lock
// held by the test (LOCK ... IN SHARE MODE blocks every INSERT) keeps the first statements
// waiting while the next deliveries arrive, so which deliveries share a statement is decided
// by the test, not by timing.
import { randomBytes } from "node:crypto";
import { isMappaWebhookError, parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createInbox,
  createInboxWorker,
  type InboxOptions,
  type InboxReceiverOptions,
} from "../src/index.js";
import { resolveTables } from "../src/schema.js";
import {
  createTestDatabase,
  deliver,
  keyOf,
  SECRET,
  sleep,
  type TestDatabase,
  waitFor,
} from "./helpers.js";
import { type RunningReceiver, startReceiver } from "./receivers.js";

let db: TestDatabase;
let events: string;

beforeAll(async () => {
  db = await createTestDatabase("group_commit", { pool: { max: 20 } });
  events = `"${db.schema}".events`;
});

afterAll(async () => {
  await db.drop();
});

/** The pool the inbox gets, recording each statement's text (to count the inserts). */
function countingPool(pool: pg.Pool) {
  const statements: string[] = [];
  return {
    statements,
    inserts: () => statements.filter((text) => text.includes("INSERT INTO")),
    pool: {
      options: pool.options,
      // Text, or (prepared statements) pg's `{ name, text, values }`.
      query: (text: string | { text: string }, values?: unknown[]) => {
        statements.push(typeof text === "string" ? text : text.text);
        return pool.query(text as string, values);
      },
      connect: () => pool.connect(),
    },
  };
}

/** The receiver options with a count of the claims that reached the inbox. */
function countingClaims(options: InboxReceiverOptions) {
  let claims = 0;
  const idempotency: InboxReceiverOptions["idempotency"] = {
    ...options.idempotency,
    claim: (key, claimOptions) => {
      claims++;
      return options.idempotency.claim(key, claimOptions);
    },
  };
  return { options: { ...options, idempotency }, claims: () => claims };
}

/** Holds a lock that blocks every insert into the events table until `release()`. */
async function blockInserts() {
  const client = await db.pool.connect();
  await client.query("BEGIN");
  await client.query(`LOCK TABLE ${events} IN SHARE MODE`);
  let held = true;
  return {
    async release() {
      if (!held) return;
      held = false;
      await client.query("COMMIT");
      client.release();
    },
  };
}

/** Backends of this schema's inserts that wait for the lock. */
async function blockedInserts(): Promise<number[]> {
  const result = await db.pool.query(
    `SELECT pid FROM pg_stat_activity
      WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()
        AND position($1 in query) > 0 AND query LIKE '%INSERT INTO%'`,
    [db.schema],
  );
  return result.rows.map((row: { pid: number }) => row.pid);
}

async function rowCount(keys: readonly string[]): Promise<number> {
  const result = await db.pool.query(
    `SELECT count(*)::int AS n FROM ${events} WHERE key = ANY($1::text[])`,
    [keys],
  );
  return result.rows[0].n;
}

interface Setup {
  counted: ReturnType<typeof countingPool>;
  claims: () => number;
  receiver: RunningReceiver;
}

async function withReceiver(
  options: Omit<InboxOptions, "pool">,
  run: (setup: Setup) => Promise<void>,
): Promise<void> {
  const counted = countingPool(db.pool);
  const inbox = createInbox({ pool: counted.pool, schema: db.schema, ...options });
  const { options: receiverOptions, claims } = countingClaims(inbox.receiverOptions);
  const receiver = await startReceiver("express", { secret: SECRET, ...receiverOptions });
  try {
    await run({ counted, claims, receiver });
  } finally {
    await receiver.close();
  }
}

const STORED = { status: 200, body: { received: true } };
const DUPLICATE = { status: 200, body: { received: true, duplicate: true } };
const UNAVAILABLE = { status: 503, body: { error: "idempotency_store_failed" } };

describe("inbox group commit", () => {
  it("stores concurrent deliveries in fewer statements than requests, each answered 200 once", async () => {
    await withReceiver(
      { timeoutMs: 60_000, groupCommit: { maxInFlight: 1 } },
      async ({ counted, claims, receiver }) => {
        const lock = await blockInserts();
        const sent = Array.from({ length: 40 }, () => createTestEvent("report.completed"));
        const answers = Promise.all(sent.map((event) => deliver(receiver.url, event)));
        // One insert in flight, waiting; the other 39 deliveries queue behind it.
        await waitFor(async () => claims() === 40 && (await blockedInserts()).length === 1, 30_000);
        await lock.release();
        expect(await answers).toEqual(sent.map(() => STORED));
        // A single-row statement (a batch of one is the plain insert), then one batch of 39.
        expect(counted.inserts().map((text) => text.includes("json_to_recordset"))).toEqual([
          false,
          true,
        ]);
        expect(await rowCount(sent.map(keyOf))).toBe(40);
        // Each stored with its own payload.
        const stored = await db.pool.query(`SELECT key, payload FROM ${events} WHERE key = $1`, [
          keyOf(sent[17]),
        ]);
        expect(stored.rows[0].payload).toEqual(sent[17]);
        expect(await deliver(receiver.url, sent[5])).toEqual(DUPLICATE);
      },
    );
  });

  it("sends a second batch beside an insert that stalls, and never more than maxInFlight", async () => {
    await withReceiver({ timeoutMs: 60_000 }, async ({ counted, claims, receiver }) => {
      const lock = await blockInserts();
      try {
        const sent = Array.from({ length: 6 }, () => createTestEvent("report.completed"));
        const first = deliver(receiver.url, sent[0]);
        await waitFor(async () => (await blockedInserts()).length === 1, 30_000);
        // The first insert is stuck: after `stallMs` the next delivery does not wait for it.
        const second = deliver(receiver.url, sent[1]);
        await waitFor(async () => (await blockedInserts()).length === 2, 30_000);
        // Two in flight (the default maxInFlight): the rest queue.
        const rest = Promise.all(sent.slice(2).map((event) => deliver(receiver.url, event)));
        await waitFor(() => claims() === 6, 30_000);
        await sleep(300);
        expect(await blockedInserts()).toHaveLength(2);
        await lock.release();
        expect([await first, await second, ...(await rest)]).toEqual(sent.map(() => STORED));
        expect(counted.inserts()).toHaveLength(3);
        expect(await rowCount(sent.map(keyOf))).toBe(6);
      } finally {
        await lock.release();
      }
    });
  });

  it("wakes an idle worker after each burst's commits, with NOTIFYs outside the inserts", async () => {
    // The channel the worker listens on, heard here too: how many NOTIFYs were sent.
    const listener = await db.pool.connect();
    let notifications = 0;
    listener.on("notification", () => notifications++);
    await listener.query(`LISTEN "${resolveTables({ schema: db.schema }).channel}"`);
    // Polling once a minute: only a NOTIFY sent after a burst's last commit wakes it in time.
    const worker = createInboxWorker({
      pool: db.pool,
      schema: db.schema,
      pollIntervalMs: 60_000,
      on: { "report.completed": async () => {} },
    });
    await worker.ready;
    try {
      await withReceiver({}, async ({ counted, receiver }) => {
        for (let burst = 0; burst < 3; burst++) {
          const sent = Array.from({ length: 20 }, () => createTestEvent("report.completed"));
          const answers = await Promise.all(sent.map((event) => deliver(receiver.url, event)));
          expect(answers).toEqual(sent.map(() => STORED));
          await waitFor(async () => {
            const done = await db.pool.query(
              `SELECT count(*)::int AS n FROM ${events} WHERE key = ANY($1::text[]) AND status = 'done'`,
              [sent.map(keyOf)],
            );
            return done.rows[0].n === 20;
          }, 30_000);
        }
        const wakeUps = counted.statements.filter((text) => text.includes("pg_notify"));
        expect(counted.inserts().some((text) => text.includes("pg_notify"))).toBe(false);
        expect(wakeUps.length).toBeGreaterThanOrEqual(3);
        // Commits that land while a wake-up is on its way share the next one.
        expect(wakeUps.length).toBeLessThanOrEqual(counted.inserts().length);
        await waitFor(() => notifications >= wakeUps.length, 30_000);
      });
    } finally {
      await worker.close();
      listener.release();
    }
  });

  it("answers one of the duplicates in a batch `stored`, the others `duplicate`", async () => {
    await withReceiver(
      { timeoutMs: 60_000, groupCommit: { maxInFlight: 1 } },
      async ({ counted, claims, receiver }) => {
        const lock = await blockInserts();
        const first = createTestEvent("matching.completed");
        const firstAnswer = deliver(receiver.url, first);
        await waitFor(async () => (await blockedInserts()).length === 1, 30_000);
        // The five deliveries of one event queue behind it: one batch.
        const twin = createTestEvent("report.failed");
        const answers = Promise.all([1, 2, 3, 4, 5].map(() => deliver(receiver.url, twin)));
        await waitFor(() => claims() === 6, 30_000);
        await lock.release();
        expect(await firstAnswer).toEqual(STORED);
        const twins = await answers;
        expect(twins.filter((answer) => answer.body.duplicate === undefined)).toEqual([STORED]);
        expect(twins.filter((answer) => answer.body.duplicate === true)).toHaveLength(4);
        expect(counted.inserts()).toHaveLength(2);
        expect(await rowCount([keyOf(twin)])).toBe(1);
      },
    );
  });

  it("stores each row of a batch with its own trace context; store() shares batches too", async () => {
    const counted = countingPool(db.pool);
    const inbox = createInbox({
      pool: counted.pool,
      schema: db.schema,
      timeoutMs: 60_000,
      groupCommit: { maxInFlight: 1 },
    });
    const lock = await blockInserts();
    const parsed = [1, 2, 3, 4].map(() =>
      parseEvent(JSON.stringify(createTestEvent("report.completed"))),
    );
    const [head, ...rest] = parsed;
    const trace = (i: number) => ({ traceparent: `00-${"a".repeat(31)}${i}-${"b".repeat(16)}-01` });
    const claim = (event: (typeof parsed)[number], i: number) =>
      inbox.receiverOptions.idempotency.claim(
        event.idempotencyKey as string,
        {
          leaseMs: 1000,
          event,
          traceContext: trace(i),
        } as never,
      );
    const heads = claim(head as (typeof parsed)[number], 0);
    await waitFor(async () => (await blockedInserts()).length === 1, 30_000);
    const claimed = Promise.all(rest.map((event, i) => claim(event, i + 1)));
    const unrelated = parseEvent(JSON.stringify(createTestEvent("matching.failed")));
    const storedByStore = inbox.store(unrelated);
    await lock.release();
    expect(await heads).toMatchObject({ status: "claimed", stored: true });
    expect(await claimed).toEqual(
      rest.map((event) => ({ status: "claimed", token: event.idempotencyKey, stored: true })),
    );
    expect(await storedByStore).toBe(true);
    expect(await inbox.store(unrelated)).toBe(false);
    // The head alone, then the three claims and the store together, then the re-store.
    expect(counted.inserts()).toHaveLength(3);
    const rows = await db.pool.query(
      `SELECT key, trace_context FROM ${events} WHERE key = ANY($1::text[])`,
      [parsed.map((event) => event.idempotencyKey)],
    );
    const byKey = new Map(
      rows.rows.map((row: { key: string; trace_context: unknown }) => [row.key, row.trace_context]),
    );
    expect(parsed.map((event) => byKey.get(event.idempotencyKey as string))).toEqual(
      parsed.map((_, i) => trace(i)),
    );
  });

  it("fails only the delivery whose row Postgres rejects; the rest of its batch is stored", async () => {
    await withReceiver(
      { timeoutMs: 60_000, groupCommit: { maxInFlight: 1 } },
      async ({ counted, claims, receiver }) => {
        const lock = await blockInserts();
        const first = createTestEvent("report.completed");
        const firstAnswer = deliver(receiver.url, first);
        await waitFor(async () => (await blockedInserts()).length === 1, 30_000);
        const good = [1, 2, 3].map(() => createTestEvent("report.completed"));
        // A key larger than a btree index entry can hold (8,000 random characters: no
        // compression helps), and a key with a NUL character, which `text` cannot store.
        const tooLong = createTestEvent("report.completed", {
          data: { jobId: `job_${randomBytes(6000).toString("base64url")}` },
        });
        const withNul = createTestEvent("matching.completed", { data: { jobId: "job_\u0000" } });
        const batch = [good[0], tooLong, good[1], withNul, good[2]];
        const answers = Promise.all(batch.map((event) => deliver(receiver.url, event)));
        await waitFor(() => claims() === 6, 30_000);
        await lock.release();
        expect(await firstAnswer).toEqual(STORED);
        expect(await answers).toEqual([STORED, UNAVAILABLE, STORED, UNAVAILABLE, STORED]);
        expect(await rowCount([...good, first].map(keyOf))).toBe(4);
        // The first alone, the batch of five that failed, then its five rows one by one.
        expect(counted.inserts()).toHaveLength(7);
        // Mappa's retry of a good one is a duplicate; of a bad one, the same answer again.
        expect(await deliver(receiver.url, good[1])).toEqual(DUPLICATE);
        expect(await deliver(receiver.url, tooLong)).toEqual(UNAVAILABLE);
      },
    );
  });

  it("fails a batch whose connection is killed with the typed error; the next batch works", async () => {
    await withReceiver(
      { timeoutMs: 60_000, groupCommit: { maxInFlight: 1 } },
      async ({ counted, claims, receiver }) => {
        const lock = await blockInserts();
        try {
          const first = createTestEvent("report.completed");
          const firstAnswer = deliver(receiver.url, first);
          await waitFor(async () => (await blockedInserts()).length === 1, 30_000);
          const queued = [1, 2, 3].map(() => createTestEvent("report.failed"));
          const answers = Promise.all(queued.map((event) => deliver(receiver.url, event)));
          await waitFor(() => claims() === 4, 30_000);
          // Kill the first statement's backend; then the batch of three, once it waits too.
          for (const pid of await blockedInserts()) {
            await db.pool.query("SELECT pg_terminate_backend($1)", [pid]);
          }
          expect(await firstAnswer).toEqual(UNAVAILABLE);
          await waitFor(async () => (await blockedInserts()).length === 1, 30_000);
          for (const pid of await blockedInserts()) {
            await db.pool.query("SELECT pg_terminate_backend($1)", [pid]);
          }
          expect(await answers).toEqual(queued.map(() => UNAVAILABLE));
          expect(counted.inserts()).toHaveLength(2);
          await lock.release();
          // Mappa's retries: stored now, in one more batch (or two).
          const retried = await Promise.all(
            [first, ...queued].map((event) => deliver(receiver.url, event)),
          );
          expect(retried).toEqual([STORED, STORED, STORED, STORED]);
          expect(await rowCount([first, ...queued].map(keyOf))).toBe(4);
        } finally {
          await lock.release();
        }
      },
    );
  });

  it("answers a delivery that waited in the queue past timeoutMs with the typed error", async () => {
    const counted = countingPool(db.pool);
    const inbox = createInbox({
      pool: counted.pool,
      schema: db.schema,
      timeoutMs: 300,
      groupCommit: { maxInFlight: 1 },
    });
    const lock = await blockInserts();
    const [a, b] = [1, 2].map(() =>
      parseEvent(JSON.stringify(createTestEvent("report.completed"))),
    );
    const outcomes = await Promise.allSettled([inbox.store(a as never), inbox.store(b as never)]);
    await lock.release();
    for (const outcome of outcomes) {
      expect(outcome.status).toBe("rejected");
      const reason = (outcome as PromiseRejectedResult).reason;
      expect(isMappaWebhookError(reason) && reason.code).toBe("handler_failed");
      expect(String(reason.message)).toMatch(/did not commit within 300 ms/);
    }
    // Nothing is stuck: the next store commits.
    const c = parseEvent(JSON.stringify(createTestEvent("report.completed")));
    await waitFor(async () => {
      try {
        return await inbox.store(c);
      } catch {
        return false;
      }
    }, 30_000);
    expect(await rowCount([c.idempotencyKey as string])).toBe(1);
  });

  it("sends one statement per delivery with groupCommit: false, as before", async () => {
    await withReceiver({ groupCommit: false }, async ({ counted, receiver }) => {
      const sent = Array.from({ length: 12 }, () => createTestEvent("matching.completed"));
      const answers = await Promise.all(sent.map((event) => deliver(receiver.url, event)));
      expect(answers).toEqual(sent.map(() => STORED));
      expect(counted.inserts()).toHaveLength(12);
      expect(counted.inserts().some((text) => text.includes("json_to_recordset"))).toBe(false);
      expect(await rowCount(sent.map(keyOf))).toBe(12);
      const twice = await Promise.all([1, 2, 3].map(() => deliver(receiver.url, sent[0])));
      expect(twice).toEqual([DUPLICATE, DUPLICATE, DUPLICATE]);
    });
  });

  it("checks the groupCommit option", () => {
    const make = (groupCommit: unknown) =>
      createInbox({ pool: db.pool, schema: db.schema, groupCommit } as InboxOptions);
    for (const bad of [
      "yes",
      1,
      null,
      { maxBatch: 0 },
      { maxInFlight: 1.5 },
      { maxBatch: Number.NaN },
    ]) {
      expect(() => make(bad)).toThrow(
        expect.objectContaining({
          code: "invalid_options",
          message: expect.stringMatching(/^@mappa-webhooks\/postgres: createInbox: `groupCommit/),
        }),
      );
    }
    for (const good of [
      undefined,
      true,
      false,
      {},
      { maxBatch: 1 },
      { maxBatch: 128, maxInFlight: 4 },
    ]) {
      expect(() => make(good)).not.toThrow();
    }
  });
});
