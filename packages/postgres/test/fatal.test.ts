import { parseEvent } from "@mappa-webhooks/core";
import { createTestEvent, simulateDelivery } from "@mappa-webhooks/testing";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInbox, migrate } from "../src/index.js";
import { type FatalProxy, startFatalProxy } from "./fatal-proxy.js";
import {
  type Child,
  createTestDatabase,
  DATABASE_URL,
  keyOf,
  SECRET,
  startFixture,
  type TestDatabase,
  uniqueSchema,
  waitFor,
  webhookUrlOf,
} from "./helpers.js";
import { type OwnCluster, startOwnCluster } from "./own-cluster.js";

// No connection fault may crash a process that uses the package (its pool has an "error"
// listener, as the README says): not a FATAL that arrives with a new connection's first
// ReadyForQuery, not pg_terminate_backend mid-statement, not a Postgres restart.
let db: TestDatabase;
let proxy: FatalProxy;
const children: Child[] = [];

beforeAll(async () => {
  db = await createTestDatabase("fatal");
  await db.pool.query(`CREATE TABLE "${db.schema}".effects (event_key text NOT NULL)`);
  proxy = await startFatalProxy(new URL(DATABASE_URL));
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await proxy.close();
  await db.drop();
});

function start(env: Record<string, string>): Child {
  const child = startFixture("fatal-app.mjs", {
    SCHEMA: db.schema,
    MAPPA_WEBHOOK_SECRET: SECRET,
    PORT: "0",
    ...env,
  });
  children.push(child);
  return child;
}

const alive = (child: Child) =>
  child.process.exitCode === null && child.process.signalCode === null;

async function effects(key: string): Promise<number> {
  const result = await db.pool.query(
    `SELECT count(*)::int AS n FROM "${db.schema}".effects WHERE event_key = $1`,
    [key],
  );
  return result.rows[0].n;
}

describe("a FATAL with a new connection's first ReadyForQuery", () => {
  it("does not crash the inbox worker: it reports, retries, and handles the event", async () => {
    const worker = start({ MODE: "worker", DATABASE_URL: proxy.url });
    await worker.waitForLine(/^worker ready \d+$/, 30_000);
    const before = proxy.injected;
    proxy.injectNext(3);
    // Drop the worker's idle connections so its next takes need new ones; again while the
    // injections are not all used (on a busy machine a connection may be busy, not idle, at
    // the first sweep, and the worker would keep it).
    const dropIdle = () =>
      db.pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mappa-fatal' AND state = 'idle' AND query NOT LIKE 'LISTEN%'",
      );
    await waitFor(
      async () => {
        if (proxy.injected >= before + 3 || !alive(worker)) return true;
        await dropIdle();
        return false;
      },
      90_000,
      1_000,
    );
    const event = parseEvent(JSON.stringify(createTestEvent("report.completed")));
    await createInbox({ pool: db.pool, schema: db.schema }).store(event);
    await waitFor(async () => !alive(worker) || (await effects(keyOf(event))) === 1, 90_000);
    expect(worker.output.filter((line) => /Unhandled|uncaught/i.test(line))).toEqual([]);
    expect(alive(worker)).toBe(true);
    expect(await effects(keyOf(event))).toBe(1);
    await worker.kill();
  }, 240_000);

  it("does not crash the transactional receiver: the delivery gets 503, and Mappa's retry 200", async () => {
    const receiver = start({ MODE: "receiver", DATABASE_URL: proxy.url });
    const url = await webhookUrlOf(receiver);
    proxy.injectNext(2);
    const event = createTestEvent("matching.completed");
    // Mappa's schedule at 1/100 (the last retry 21 s in): room for the pool to reconnect on a
    // busy machine.
    const report = await simulateDelivery(url, event, { secret: SECRET, timeScale: 0.01 });
    expect(report.attempts.map((attempt) => attempt.status)).toContain(503);
    expect(report.delivered).toBe(true);
    expect(alive(receiver)).toBe(true);
    expect(receiver.output.filter((line) => /Unhandled|uncaught/i.test(line))).toEqual([]);
    expect(await effects(keyOf(event))).toBe(1);
    await receiver.kill();
  });

  it("does not crash migrate: it rejects, and the next run succeeds", async () => {
    proxy.injectNext(1);
    const migrating = start({
      MODE: "migrate",
      DATABASE_URL: proxy.url,
      SCHEMA: uniqueSchema("fatal_migrate"),
      MIGRATE_RUNS: "2",
    });
    const code = await migrating.exited;
    expect(migrating.output.join("\n")).toMatch(
      /^migrate failed: idempotency_store_failed: @mappa-webhooks\/postgres: migrate/m,
    );
    expect(migrating.output).toContain("migrate ok");
    expect(code).toBe(0);
  });
});

describe("pg_terminate_backend mid-statement", () => {
  it("does not crash migrate waiting on its lock: it rejects with the cause", async () => {
    const holder = await db.pool.connect();
    const schema = uniqueSchema("fatal_lock");
    try {
      await holder.query("SELECT pg_advisory_lock(hashtextextended($1, 0))", [
        "@mappa-webhooks/postgres:migrate",
      ]);
      const migrating = start({ MODE: "migrate", DATABASE_URL, SCHEMA: schema, APP: schema });
      await waitFor(async () => {
        const waiting = await db.pool.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
          [schema],
        );
        return waiting.rows[0].n > 0;
      }, 30_000);
      await db.pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        [schema],
      );
      const code = await migrating.exited;
      expect(migrating.output.join("\n")).toMatch(
        /^migrate failed: idempotency_store_failed: .*terminating connection due to administrator command/m,
      );
      expect(code).toBe(0);
    } finally {
      await holder.query("SELECT pg_advisory_unlock_all()");
      holder.release();
    }
  });
});

describe("a Postgres restart", () => {
  let cluster: OwnCluster;
  let pool: pg.Pool;
  const schema = "mappa_restart";

  beforeAll(async () => {
    cluster = await startOwnCluster();
    pool = new pg.Pool({ connectionString: cluster.url, max: 3 });
    pool.on("error", () => {});
    await migrate({ pool, schema });
    await pool.query(`CREATE TABLE "${schema}".effects (event_key text NOT NULL)`);
  }, 180_000);

  afterAll(async () => {
    await pool?.end();
    await cluster?.stop();
  });

  it("crashes neither the worker nor the receiver; both carry on once it is back", async () => {
    const env = { DATABASE_URL: cluster.url, SCHEMA: schema };
    const worker = start({ MODE: "worker", ...env });
    const receiver = start({ MODE: "receiver", ...env });
    await worker.waitForLine(/^worker ready \d+$/, 30_000);
    const url = await webhookUrlOf(receiver);
    const first = createTestEvent("report.completed");
    expect((await simulateDelivery(url, first, { secret: SECRET, schedule: [0] })).delivered).toBe(
      true,
    );

    await cluster.restart();
    await pool.query("SELECT 1").catch(() => {});

    const inbox = createInbox({ pool, schema });
    const queued = parseEvent(JSON.stringify(createTestEvent("matching.completed")));
    await inbox.store(queued);
    const second = createTestEvent("report.completed");
    const delivered = await simulateDelivery(url, second, { secret: SECRET, timeScale: 0.002 });
    expect(delivered.delivered).toBe(true);
    const count = async (key: string) =>
      (
        await pool.query(
          `SELECT count(*)::int AS n FROM "${schema}".effects WHERE event_key = $1`,
          [key],
        )
      ).rows[0].n;
    await waitFor(async () => (await count(keyOf(queued))) === 1, 30_000);
    expect(await count(keyOf(second))).toBe(1);
    for (const child of [worker, receiver]) {
      expect(alive(child)).toBe(true);
      expect(child.output.filter((line) => /Unhandled|uncaught/i.test(line))).toEqual([]);
    }
    // And the worker still shuts down cleanly.
    worker.process.kill("SIGTERM");
    expect(await worker.exited).toBe(0);
    expect(worker.output).toContain("closed");
    await receiver.kill();
  });
});
