import { parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { afterAll, describe, expect, it } from "vitest";
import { createInbox, getEvent } from "../src/index.js";
import {
  type Child,
  createTestDatabase,
  sleep,
  startFixture,
  type TestDatabase,
} from "./helpers.js";

// An event whose handler ends the worker process (process.exit, SIGKILL; an OOM looks the
// same to the database) must count as an attempt, be parked after `maxAttempts`, and never
// keep the events behind it from running. The test restarts the worker after each death, as a
// process manager would, at most MAX_RESTARTS times.
const MAX_ATTEMPTS = 3;
const MAX_RESTARTS = 15;
const GOOD = 8;
// Each crash loop gives up well inside the test's own timeout, so a slow run fails with the
// state it reached (and what the workers printed) instead of a bare timeout.
const LOOP_DEADLINE_MS = 90_000;
const TEST_TIMEOUT_MS = 180_000;
const databases: TestDatabase[] = [];
const children: Child[] = [];

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await Promise.all(databases.map((db) => db.drop()));
});

interface Run {
  deaths: number;
  unexpectedExits: string[];
  poison: {
    status: string | undefined;
    attempts: number | undefined;
    lastError: string | null | undefined;
  };
  goodDone: number;
  effectsPerGood: number[];
  /** Set when the loop gave up at its deadline: what the inbox held and the workers printed. */
  timedOut?: { afterMs: number; events: unknown[]; connections: number; lastWorker: string[] };
}

async function crashLoop(
  name: string,
  poison: "exit" | "kill",
  env: Record<string, string>,
): Promise<Run> {
  const db = await createTestDatabase(`poison_${name}`);
  databases.push(db);
  await db.pool.query(
    `CREATE TABLE "${db.schema}".effects (id serial PRIMARY KEY, event_key text NOT NULL, worker text NOT NULL)`,
  );
  const inbox = createInbox({ pool: db.pool, schema: db.schema });
  const base = createTestEvent("report.completed");
  const bad = parseEvent(JSON.stringify({ ...base, data: { ...base.data, poison } }));
  // Stored first, so it is the first event every worker takes.
  await inbox.store(bad);
  const good = Array.from({ length: GOOD }, () =>
    parseEvent(JSON.stringify(createTestEvent("matching.completed"))),
  );
  for (const event of good) await inbox.store(event);
  const badKey = bad.idempotencyKey as string;
  const goodKeys = good.map((event) => event.idempotencyKey as string);

  const settled = async () => {
    const result = await db.pool.query(
      `SELECT count(*)::int AS n FROM "${db.schema}".events WHERE status = 'pending'`,
    );
    return result.rows[0].n === 0;
  };
  let deaths = 0;
  const unexpectedExits: string[] = [];
  const started = Date.now();
  const deadline = started + LOOP_DEADLINE_MS;
  let finished = false;
  let child = startFixture("poison-worker.mjs", { SCHEMA: db.schema, ...env });
  children.push(child);
  // Bounded: at most MAX_RESTARTS restarts and a deadline.
  while (Date.now() < deadline) {
    if (child.process.exitCode !== null || child.process.signalCode !== null) {
      const { exitCode, signalCode } = child.process;
      const deliberate = poison === "exit" ? exitCode === 77 : signalCode === "SIGKILL";
      if (!deliberate)
        unexpectedExits.push(`${exitCode} ${signalCode}: ${child.output.join("\n")}`);
      deaths++;
      if (deaths > MAX_RESTARTS) break;
      child = startFixture("poison-worker.mjs", { SCHEMA: db.schema, ...env });
      children.push(child);
      continue;
    }
    if (await settled()) {
      finished = true;
      break;
    }
    await sleep(50);
  }
  let timedOut: Run["timedOut"];
  if (!finished && deaths <= MAX_RESTARTS) {
    const events = await db.pool.query(
      `SELECT key, type, status, attempts, last_error, run_at FROM "${db.schema}".events ORDER BY key`,
    );
    const connections = await db.pool.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database()",
    );
    timedOut = {
      afterMs: Date.now() - started,
      events: events.rows,
      connections: connections.rows[0].n,
      lastWorker: child.output.slice(-40),
    };
  }
  await child.kill();
  const stored = await getEvent({ pool: db.pool, schema: db.schema }, badKey);
  const done = await db.pool.query(
    `SELECT count(*)::int AS n FROM "${db.schema}".events WHERE key = ANY($1) AND status = 'done'`,
    [goodKeys],
  );
  const effects = await db.pool.query(
    `SELECT k, count(e.id)::int AS n FROM unnest($1::text[]) AS k
       LEFT JOIN "${db.schema}".effects e ON e.event_key = k GROUP BY k`,
    [goodKeys],
  );
  return {
    ...(timedOut === undefined ? {} : { timedOut }),
    deaths,
    unexpectedExits,
    poison: { status: stored?.status, attempts: stored?.attempts, lastError: stored?.lastError },
    goodDone: done.rows[0].n,
    effectsPerGood: effects.rows.map((row: { n: number }) => row.n),
  };
}

describe("inbox events whose handler kills the worker", () => {
  it(
    "are counted, parked after maxAttempts and never starve the others (concurrency 1 and 4, batchSize 4)",
    async () => {
      const common = { MAX_ATTEMPTS: String(MAX_ATTEMPTS), POLL_MS: "100" };
      const [one, four, batch] = await Promise.all([
        crashLoop("c1", "exit", { ...common, CONCURRENCY: "1" }),
        crashLoop("c4", "kill", { ...common, CONCURRENCY: "4" }),
        crashLoop("b4", "exit", { ...common, CONCURRENCY: "1", BATCH_SIZE: "4" }),
      ]);
      console.log(`[poison] ${JSON.stringify({ one, four, batch })}`);
      for (const run of [one, four, batch]) {
        expect(run.timedOut).toBeUndefined();
        expect(run.unexpectedExits).toEqual([]);
        // Each attempt killed the worker once; then the event was parked and the worker lived.
        expect(run.deaths).toBe(MAX_ATTEMPTS);
        expect(run.poison).toMatchObject({ status: "failed", attempts: MAX_ATTEMPTS });
        expect(run.poison.lastError).toMatch(/recorded no outcome: the worker stopped/);
        expect(run.goodDone).toBe(GOOD);
        expect(run.effectsPerGood).toEqual(Array(GOOD).fill(1));
      }
    },
    TEST_TIMEOUT_MS,
  );
});
