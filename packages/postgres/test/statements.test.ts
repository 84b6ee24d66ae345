// What the inbox sends per delivery, over real HTTP against a real Postgres: its inserts as
// named prepared statements (or as plain text with `preparedStatements: false`), and the
// untracking of a stored event's job in the insert itself, not in a statement of its own.
import { isMappaWebhookError, parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInbox, type InboxOptions } from "../src/index.js";
import { createTestDatabase, deliver, keyOf, SECRET, type TestDatabase } from "./helpers.js";
import { startReceiver } from "./receivers.js";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("statements");
});

afterAll(async () => {
  await db.drop();
});

interface Sent {
  /** The prepared statement's name, or `undefined` when sent as text. */
  name: string | undefined;
  text: string;
}

/** A pool recording what each query sent; `textOnly` takes only `(text, values)`, like a minimal pool. */
function recordingPool(pool: pg.Pool, textOnly = false) {
  const sent: Sent[] = [];
  return {
    sent,
    pool: {
      options: pool.options,
      query: (
        config: string | { name?: string; text: string; values?: unknown[] },
        values?: unknown[],
      ) => {
        if (typeof config === "string") {
          sent.push({ name: undefined, text: config });
          return pool.query(config, values);
        }
        if (textOnly) throw new TypeError("this pool takes (text, values) only");
        sent.push({ name: config.name, text: config.text });
        return pool.query(config as pg.QueryConfig);
      },
      connect: () => pool.connect(),
    },
  };
}

async function receiverFor(
  options: Omit<InboxOptions, "pool">,
  recorded: ReturnType<typeof recordingPool>,
) {
  const inbox = createInbox({ pool: recorded.pool, schema: db.schema, ...options });
  return {
    inbox,
    receiver: await startReceiver("express", { secret: SECRET, ...inbox.receiverOptions }),
  };
}

const STORED = { status: 200, body: { received: true } };
const DUPLICATE = { status: 200, body: { received: true, duplicate: true } };

const isInsert = (sent: Sent) => sent.text.includes("INSERT INTO");
const isUntrack = (sent: Sent) => /^\s*DELETE FROM "[^"]+"\."tracked_jobs"/.test(sent.text);

async function trackedJobs(jobIds: string[]): Promise<string[]> {
  const result = await db.pool.query(
    `SELECT job_id FROM "${db.schema}".tracked_jobs WHERE job_id = ANY($1::text[]) ORDER BY job_id`,
    [jobIds],
  );
  return result.rows.map((row: { job_id: string }) => row.job_id);
}

describe("inbox statements", () => {
  it("sends its inserts as named prepared statements by default, one name per statement text", async () => {
    const recorded = recordingPool(db.pool);
    const { receiver } = await receiverFor({}, recorded);
    try {
      const sent = Array.from({ length: 8 }, () => createTestEvent("report.completed"));
      for (const event of sent.slice(0, 2))
        expect(await deliver(receiver.url, event)).toEqual(STORED);
      const together = await Promise.all(
        sent.slice(2).map((event) => deliver(receiver.url, event)),
      );
      expect(together).toEqual(sent.slice(2).map(() => STORED));
      const inserts = recorded.sent.filter(isInsert);
      expect(inserts.length).toBeGreaterThan(0);
      for (const insert of inserts)
        expect(insert.name).toMatch(/^mappa_inbox_(insert|batch)_[0-9a-f]{12}$/);
      // The single-row insert and the batch insert each keep one name.
      const names = new Map<string, Set<string>>();
      for (const insert of inserts) {
        names.set(insert.text, (names.get(insert.text) ?? new Set()).add(insert.name as string));
      }
      for (const set of names.values()) expect(set.size).toBe(1);
      const rows = await db.pool.query(
        `SELECT count(*)::int AS n FROM "${db.schema}".events WHERE key = ANY($1::text[])`,
        [sent.map(keyOf)],
      );
      expect(rows.rows[0].n).toBe(8);
    } finally {
      await receiver.close();
    }
  });

  it("gives the inserts of inboxes on other tables of one pool names of their own", async () => {
    // The names carry a hash of the text: pg refuses one name for two texts on a connection.
    const recordedA = recordingPool(db.pool);
    const recordedB = recordingPool(db.pool);
    const event = () => parseEvent(JSON.stringify(createTestEvent("report.completed")));
    expect(await createInbox({ pool: recordedA.pool, schema: db.schema }).store(event())).toBe(
      true,
    );
    // A schema that does not exist: the insert fails, and it was sent under its own name.
    await expect(
      createInbox({ pool: recordedB.pool, schema: `${db.schema}_missing` }).store(event()),
    ).rejects.toThrow(/migrate/);
    const nameA = recordedA.sent.find((sent) => sent.text.includes("INSERT INTO"))?.name;
    const nameB = recordedB.sent.find((sent) => sent.text.includes("INSERT INTO"))?.name;
    expect(nameA).toMatch(/^mappa_inbox_insert_/);
    expect(nameB).toMatch(/^mappa_inbox_insert_/);
    expect(nameA).not.toBe(nameB);
  });

  it("sends plain text with preparedStatements: false, for pools that take only (text, values)", async () => {
    const recorded = recordingPool(db.pool, true);
    const { receiver } = await receiverFor({ preparedStatements: false }, recorded);
    try {
      const sent = Array.from({ length: 6 }, () => createTestEvent("matching.completed"));
      const answers = await Promise.all(sent.map((event) => deliver(receiver.url, event)));
      expect(answers).toEqual(sent.map(() => STORED));
      expect(recorded.sent.filter(isInsert).length).toBeGreaterThan(0);
      expect(recorded.sent.every((sent) => sent.name === undefined)).toBe(true);
      expect(await deliver(receiver.url, sent[0])).toEqual(DUPLICATE);
    } finally {
      await receiver.close();
    }
  });

  it("untracks a stored event's job in its insert, and sends no DELETE of its own", async () => {
    const recorded = recordingPool(db.pool);
    const { inbox, receiver } = await receiverFor({}, recorded);
    try {
      const sent = Array.from({ length: 6 }, () => createTestEvent("report.completed"));
      const jobIds = sent.map((event) => event.data.jobId as string);
      const other = createTestEvent("report.completed");
      for (const jobId of [...jobIds, other.data.jobId as string]) {
        await inbox.receiverOptions.idempotency.track(jobId);
      }
      expect(await deliver(receiver.url, sent[0])).toEqual(STORED);
      const together = await Promise.all(
        sent.slice(1).map((event) => deliver(receiver.url, event)),
      );
      expect(together).toEqual(sent.slice(1).map(() => STORED));
      expect(await trackedJobs(jobIds)).toEqual([]);
      // A job whose outcome has not arrived stays tracked.
      expect(await trackedJobs([other.data.jobId as string])).toEqual([other.data.jobId]);
      expect(recorded.sent.filter(isUntrack)).toEqual([]);
      // A re-delivery is a duplicate and untracks (again) in its insert, nothing more.
      await inbox.receiverOptions.idempotency.track(jobIds[0] as string);
      expect(await deliver(receiver.url, sent[0])).toEqual(DUPLICATE);
      expect(await trackedJobs([jobIds[0] as string])).toEqual([]);
      expect(recorded.sent.filter(isUntrack)).toEqual([]);
      // Recovery's own untrack still deletes.
      await inbox.receiverOptions.idempotency.track(jobIds[1] as string);
      await inbox.receiverOptions.idempotency.untrack(jobIds[1] as string);
      expect(await trackedJobs([jobIds[1] as string])).toEqual([]);
    } finally {
      await receiver.close();
    }
  });

  it("checks the preparedStatements option, and names the fix when a pooler loses the statements", async () => {
    for (const bad of ["yes", 1, null]) {
      let caught: unknown;
      try {
        createInbox({
          pool: db.pool,
          schema: db.schema,
          preparedStatements: bad,
        } as unknown as InboxOptions);
      } catch (error) {
        caught = error;
      }
      expect(isMappaWebhookError(caught) && caught.code).toBe("invalid_options");
      expect(String((caught as Error).message)).toMatch(/preparedStatements/);
    }
    // What a pooler in transaction mode does: the session that runs the statement is not the
    // one that prepared it (SQLSTATE 26000).
    const lost = {
      options: db.pool.options,
      query: (config: unknown) =>
        typeof config === "string"
          ? db.pool.query(config)
          : Promise.reject(
              Object.assign(new Error('prepared statement "mappa_inbox_insert_x" does not exist'), {
                code: "26000",
              }),
            ),
      connect: () => db.pool.connect(),
    };
    const inbox = createInbox({ pool: lost, schema: db.schema });
    const receiver = await startReceiver("express", { secret: SECRET, ...inbox.receiverOptions });
    try {
      const answer = await deliver(receiver.url, createTestEvent("report.completed"));
      expect(answer).toEqual({ status: 503, body: { error: "idempotency_store_failed" } });
      const event = parseEvent(JSON.stringify(createTestEvent("report.completed")));
      await expect(inbox.store(event)).rejects.toThrow(
        /preparedStatements: false.*max_prepared_statements/,
      );
    } finally {
      await receiver.close();
    }
  });
});
