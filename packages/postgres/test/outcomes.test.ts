import { MappaWebhookError, parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createInbox,
  createInboxWorker,
  createPostgresIdempotencyStore,
  createTransactionalHandlers,
  getEvent,
  type InboxWorker,
  migrate,
} from "../src/index.js";
import {
  createPool,
  createTestDatabase,
  DATABASE_URL,
  SECRET,
  type TestDatabase,
  uniqueSchema,
  waitFor,
} from "./helpers.js";
import { startReceiver } from "./receivers.js";

// Whatever a handler does (throw a message Postgres cannot store, swallow a failed statement,
// end the transaction itself, never settle, sleep in the database), its outcome is recorded:
// the attempt counts, the event is retried or parked, and nothing loops or hangs.
let db: TestDatabase;
const workers: InboxWorker[] = [];

beforeAll(async () => {
  db = await createTestDatabase("outcomes", { pool: { max: 20 } });
  await db.pool.query(
    `CREATE TABLE "${db.schema}".effects (id serial PRIMARY KEY, event_key text NOT NULL)`,
  );
});

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.close()));
  await db.drop();
});

const admin = () => ({ pool: db.pool, schema: db.schema });

/** Resolves like `promise`, or rejects after `ms`: a hang fails the test instead of stalling it. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function eventWith(mode: string) {
  const base = createTestEvent("report.completed");
  return parseEvent(JSON.stringify({ ...base, data: { ...base.data, mode } }));
}
const modeOf = (event: { data: unknown }) => (event.data as { mode?: string }).mode;

describe("a pool without an error listener", () => {
  it("gets one warning that says how to add it", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => void warnings.push(warning);
    process.on("warning", onWarning);
    const bare = [new pg.Pool({ connectionString: DATABASE_URL }), new pg.Pool()];
    try {
      createInbox({ pool: bare[0] as pg.Pool });
      createInbox({ pool: bare[1] as pg.Pool });
      createInbox({ pool: db.pool });
      await waitFor(() => warnings.length > 0, 5000);
      await new Promise((resolve) => setImmediate(resolve));
      const ours = warnings.filter(
        (w) => (w as { code?: string }).code === "MAPPA_POSTGRES_POOL_ERROR_LISTENER",
      );
      expect(ours).toHaveLength(1);
      expect(ours[0]?.message).toMatch(
        /^@mappa-webhooks\/postgres: the pg Pool has no "error" listener/,
      );
      expect(ours[0]?.message).toContain('pool.on("error"');
    } finally {
      process.off("warning", onWarning);
      await Promise.all(bare.map((pool) => pool.end()));
    }
  });
});

describe("inbox worker outcomes", () => {
  it("park an event whose error message holds a NUL byte after maxAttempts runs, no more", async () => {
    const inbox = createInbox(admin());
    let runs = 0;
    const worker = createInboxWorker({
      ...admin(),
      pollIntervalMs: 50,
      maxAttempts: 3,
      backoff: () => 0,
      on: {
        "report.completed": () => {
          runs++;
          throw new Error("upstream said: bad\u0000byte");
        },
      },
    });
    workers.push(worker);
    const event = parseEvent(JSON.stringify(createTestEvent("report.completed")));
    await inbox.store(event);
    await waitFor(
      async () => (await inbox.get(event.idempotencyKey as string))?.status === "failed",
      30_000,
    );
    const stored = await inbox.get(event.idempotencyKey as string);
    expect(stored).toMatchObject({ attempts: 3, lastError: "upstream said: bad\\u0000byte" });
    expect(runs).toBe(3);
    expect(worker.stats).toMatchObject({ retried: 2, failed: 1, done: 0 });
    await within(worker.close(), 20_000, "close()");
    expect(runs).toBe(3);
  });

  it("count a handler that swallowed a failed statement as a failed attempt, and one that ended the transaction itself", async () => {
    const inbox = createInbox(admin());
    const runs = new Map<string, number>();
    const errors: string[] = [];
    const worker = createInboxWorker({
      ...admin(),
      pollIntervalMs: 50,
      maxAttempts: 2,
      backoff: () => 0,
      onError: (error, info) => void errors.push(`${info.outcome}: ${error.message}`),
      on: {
        "report.completed": async (event, client) => {
          runs.set(
            event.idempotencyKey as string,
            (runs.get(event.idempotencyKey as string) ?? 0) + 1,
          );
          await client.query(`INSERT INTO "${db.schema}".effects (event_key) VALUES ($1)`, [
            event.idempotencyKey,
          ]);
          if (modeOf(event) === "swallow") {
            await client.query("SELECT 1 / 0").catch(() => {});
          } else {
            await client.query("ROLLBACK");
          }
        },
      },
    });
    workers.push(worker);
    const swallowed = eventWith("swallow");
    const ended = eventWith("rollback");
    await inbox.store(swallowed);
    await inbox.store(ended);
    const keys = [swallowed.idempotencyKey as string, ended.idempotencyKey as string];
    await waitFor(async () => {
      const rows = await Promise.all(keys.map((key) => inbox.get(key)));
      return rows.every((row) => row?.status === "failed");
    }, 30_000);
    const [a, b] = await Promise.all(keys.map((key) => inbox.get(key)));
    expect(a).toMatchObject({ attempts: 2 });
    expect(a?.lastError).toMatch(
      /returned normally, but a statement of its transaction had failed.*25P02/,
    );
    expect(b).toMatchObject({ attempts: 2 });
    expect(b?.lastError).toMatch(/never run COMMIT, ROLLBACK or RELEASE/);
    expect(keys.map((key) => runs.get(key))).toEqual([2, 2]);
    const effects = await db.pool.query(
      `SELECT count(*)::int AS n FROM "${db.schema}".effects WHERE event_key = ANY($1)`,
      [keys],
    );
    expect(effects.rows[0].n).toBe(0);
    await within(worker.close(), 20_000, "close()");
  });

  it("fail a handler past handlerTimeoutMs (stuck in JavaScript or in pg_sleep), free its slot, end its backend, and close() still resolves", async () => {
    const pool = createPool({ max: 4 });
    const inbox = createInbox({ pool, schema: db.schema });
    const marker = `mappa_hang_${db.schema}`;
    const codes: string[] = [];
    const worker = createInboxWorker({
      pool,
      schema: db.schema,
      concurrency: 1,
      pollIntervalMs: 50,
      maxAttempts: 2,
      backoff: () => 0,
      handlerTimeoutMs: 400,
      onError: (error, info) =>
        void codes.push(`${info.outcome}:${(error as MappaWebhookError).code}`),
      on: {
        "report.completed": async (event, client) => {
          if (modeOf(event) === "js") await new Promise(() => {});
          if (modeOf(event) === "db") await client.query(`SELECT pg_sleep(3600) /* ${marker} */`);
          await client.query(`INSERT INTO "${db.schema}".effects (event_key) VALUES ($1)`, [
            event.idempotencyKey,
          ]);
        },
      },
    });
    try {
      const hungJs = eventWith("js");
      const hungDb = eventWith("db");
      const good = eventWith("good");
      for (const event of [hungJs, hungDb, good]) await inbox.store(event);
      await waitFor(
        async () => (await inbox.get(good.idempotencyKey as string))?.status === "done",
        30_000,
      );
      await waitFor(async () => {
        const rows = await Promise.all(
          [hungJs, hungDb].map((event) => inbox.get(event.idempotencyKey as string)),
        );
        return rows.every((row) => row?.status === "failed");
      }, 30_000);
      for (const event of [hungJs, hungDb]) {
        const stored = await inbox.get(event.idempotencyKey as string);
        expect(stored?.attempts).toBe(2);
        expect(stored?.lastError).toMatch(/did not settle within handlerTimeoutMs \(400 ms\)/);
      }
      expect(worker.stats).toMatchObject({ done: 1, retried: 2, failed: 2 });
      expect(codes.filter((code) => code.endsWith(":handler_timeout")).sort()).toEqual([
        "failed:handler_timeout",
        "failed:handler_timeout",
        "retry:handler_timeout",
        "retry:handler_timeout",
      ]);
      // The backend that slept holds nothing any more.
      await waitFor(async () => {
        const sleeping = await db.pool.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
          [`%${marker}%`],
        );
        return sleeping.rows[0].n === 0;
      }, 20_000);
      await within(worker.close(), 20_000, "close()");
      // Nothing left checked out: the pool serves a query at once.
      expect(pool.waitingCount).toBe(0);
      await within(pool.query("SELECT 1"), 10_000, "a query on the worker's pool");
    } finally {
      await within(worker.close(), 20_000, "close()");
      await pool.end();
    }
  });
});

describe("transactional handlers' outcomes", () => {
  it("answer 500 and record the attempt for a NUL in the error, a swallowed failed statement, and a handler past handlerTimeoutMs; the retry then runs", async () => {
    const marker = `mappa_txhang_${db.schema}`;
    const calls = new Map<string, number>();
    const tx = createTransactionalHandlers({
      ...admin(),
      handlerTimeoutMs: 500,
      on: {
        "report.completed": async (event, client) => {
          const key = event.idempotencyKey as string;
          const call = (calls.get(key) ?? 0) + 1;
          calls.set(key, call);
          const mode = modeOf(event);
          if (call === 1 && mode === "nul") throw new Error("bad\u0000byte");
          if (call === 1 && mode === "swallow") {
            await client.query("SELECT 1 / 0").catch(() => {});
            return;
          }
          if (call === 1 && mode === "db")
            await client.query(`SELECT pg_sleep(3600) /* ${marker} */`);
          if (call === 2 && mode === "db") await new Promise(() => {});
          await client.query(`INSERT INTO "${db.schema}".effects (event_key) VALUES ($1)`, [key]);
        },
      },
    });
    const receiver = await startReceiver("express", { secret: SECRET, ...tx.receiverOptions });
    const { signPayload } = await import("@mappa-webhooks/testing");
    const post = async (event: { raw: unknown }) => {
      const body = JSON.stringify(event.raw);
      const response = await fetch(receiver.url, {
        method: "POST",
        body,
        headers: { "mappa-signature": await signPayload({ payload: body, secret: SECRET }) },
        signal: AbortSignal.timeout(30_000),
      });
      return response.status;
    };
    try {
      for (const [mode, failures, error] of [
        ["nul", 1, /^bad\\u0000byte$/],
        ["swallow", 1, /returned normally, but a statement of its transaction had failed/],
        ["db", 2, /did not settle within handlerTimeoutMs \(500 ms\)/],
      ] as const) {
        const event = eventWith(mode);
        const key = event.idempotencyKey as string;
        for (let attempt = 1; attempt <= failures; attempt++) {
          expect(await post(event), `${mode} attempt ${attempt}`).toBe(500);
          const stored = await getEvent(admin(), key);
          expect(stored, mode).toMatchObject({ status: "failed", attempts: attempt });
          expect(stored?.lastError, mode).toMatch(error);
        }
        // Mappa's next retry runs on clean state: no 409 from a transaction left open.
        expect(await post(event), `${mode} retry`).toBe(200);
        expect(await getEvent(admin(), key)).toMatchObject({ status: "done" });
        const effects = await db.pool.query(
          `SELECT count(*)::int AS n FROM "${db.schema}".effects WHERE event_key = $1`,
          [key],
        );
        expect(effects.rows[0].n, mode).toBe(1);
      }
      const sleeping = await db.pool.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
        [`%${marker}%`],
      );
      expect(sleeping.rows[0].n).toBe(0);
    } finally {
      await receiver.close();
    }
  });
});

describe("time options", () => {
  it("are checked at start-up: above 2^31 - 1 ms is invalid_options, not a failure of every delivery", () => {
    const pool = db.pool;
    const tooLong = 2 ** 31;
    const attempts: Array<[string, () => unknown]> = [
      ["lockTimeoutMs", () => createInboxWorker({ pool, lockTimeoutMs: tooLong })],
      ["handlerTimeoutMs", () => createInboxWorker({ pool, handlerTimeoutMs: tooLong })],
      ["pollIntervalMs", () => createInboxWorker({ pool, pollIntervalMs: tooLong })],
      ["timeoutMs", () => createTransactionalHandlers({ pool, timeoutMs: tooLong })],
      ["handlerTimeoutMs", () => createTransactionalHandlers({ pool, handlerTimeoutMs: tooLong })],
      ["timeoutMs", () => createInbox({ pool, timeoutMs: tooLong })],
      ["timeoutMs", () => createPostgresIdempotencyStore({ pool, timeoutMs: tooLong })],
    ];
    for (const [name, create] of attempts) {
      expect(create, name).toThrow(
        expect.objectContaining({
          code: "invalid_options",
          message: expect.stringMatching(
            new RegExp(
              `^@mappa-webhooks/postgres: \\w+: \`${name}\` is ${tooLong} ms, above .*2147483647`,
            ),
          ),
        }),
      );
    }
  });

  it("take a receiver's leaseMs above 2^31 - 1 ms without failing the delivery", async () => {
    const tx = createTransactionalHandlers(admin());
    const key = `evt_long_lease_${Date.now()}`;
    const claim = await tx.receiverOptions.idempotency.claim(key, { leaseMs: 2 ** 32 });
    expect(claim.status).toBe("claimed");
    const token = (claim as { token: string }).token;
    expect(await tx.receiverOptions.idempotency.renew(key, token, { leaseMs: 2 ** 33 })).toBe(true);
    await tx.receiverOptions.idempotency.release(key, token);
  });
});

describe("migrate on an existing schema", () => {
  it("records the schema version, and fails with the fix on a table of another shape or a newer version", async () => {
    const pool = db.pool;
    const schema = uniqueSchema("shape");
    try {
      await migrate({ pool, schema });
      const comment = await pool.query("SELECT obj_description(to_regclass($1), 'pg_class') AS c", [
        `"${schema}"."events"`,
      ]);
      expect(comment.rows[0].c).toBe("@mappa-webhooks/postgres schema 2");

      await pool.query(`ALTER TABLE "${schema}".events DROP COLUMN attempts`);
      await pool.query(`ALTER TABLE "${schema}".events ALTER COLUMN payload TYPE jsonb`);
      const error = await migrate({ pool, schema }).then(
        () => undefined,
        (e: unknown) => e as MappaWebhookError,
      );
      expect(error).toBeInstanceOf(MappaWebhookError);
      expect(error?.code).toBe("invalid_options");
      expect(error?.message).toMatch(/^@mappa-webhooks\/postgres: migrate: the existing tables/);
      expect(error?.message).toContain(`"${schema}"."events" has no column attempts (integer)`);
      expect(error?.message).toContain(`"${schema}"."events".payload is jsonb, not json`);
      expect(error?.message).toMatch(/migrate --print/);

      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await migrate({ pool, schema });
      await pool.query(
        `COMMENT ON TABLE "${schema}".events IS '@mappa-webhooks/postgres schema 99'`,
      );
      await expect(migrate({ pool, schema })).rejects.toMatchObject({
        code: "invalid_options",
        message: expect.stringMatching(/has schema 99, made by a newer @mappa-webhooks\/postgres/),
      });
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });
});
