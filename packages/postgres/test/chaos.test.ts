import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import {
  createDeliverySimulator,
  createTestEvent,
  type DeliveryAttempt,
} from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Child,
  createTestDatabase,
  keyOf,
  SECRET,
  sleep,
  startFixture,
  type TestDatabase,
  waitFor,
  webhookUrlOf,
} from "./helpers.js";

// Chaos soak: two inbox receivers and two workers (child processes) share one database while a
// random connection of theirs is ended with pg_terminate_backend every ~200 ms. 1,000 events in
// the suite (MAPPA_CHAOS_EVENTS=2000 for the full 2,000, ~1 min on a quiet 2-core machine),
// 2% of them poison (crash the worker, hang, a NUL in the error, a swallowed failed
// statement). Every good event must be handled exactly once, every poison event parked
// within maxAttempts, no process may crash (except the deliberate poison crashes, after which
// the test restarts the worker, as a process manager would), and every close() resolves.
// MAPPA_CHAOS_EVENTS=2000 runs the full size (minutes on a busy machine).
const EVENTS = Number(process.env.MAPPA_CHAOS_EVENTS ?? 1000);
const POISON_EVERY = 50; // 2%
// The crash poisons end their worker with process.exit or SIGKILL, one kind each.
const POISONS = ["exit", "hang", "nul", "swallow", "kill", "hang", "nul", "swallow"] as const;
const MAX_ATTEMPTS = 5;
const LANES = 24;
const KILL_EVERY_MS = 200;
const DEADLINE_MS = 300_000;
let db: TestDatabase;
const children: Child[] = [];

beforeAll(async () => {
  db = await createTestDatabase("chaos", { pool: { max: 4 } });
  await db.pool.query(
    `CREATE TABLE "${db.schema}".effects (id serial PRIMARY KEY, event_key text NOT NULL, worker text NOT NULL)`,
  );
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await db.drop();
});

const crashedBadly = (child: Child) =>
  child.output.filter((line) => /Unhandled|uncaught|ERR_UNHANDLED/i.test(line));

describe("chaos soak: receivers and workers under connection kills and poison events", () => {
  it("handles every good event once, parks every poison event within maxAttempts, and nothing crashes", async () => {
    const app = `chaos_${db.schema}`.slice(0, 63);
    const env = { MAPPA_WEBHOOK_SECRET: SECRET, SCHEMA: db.schema, PORT: "0", PGAPPNAME: app };
    const start = (script: string, instance: string, extra: Record<string, string> = {}) => {
      const child = startFixture(script, { ...env, INSTANCE: instance, ...extra });
      children.push(child);
      return child;
    };
    const receivers = ["a", "b"].map((name) => start("receiver.mjs", name));
    const urls = await Promise.all(receivers.map((receiver) => webhookUrlOf(receiver)));
    const workerEnv = { MAX_ATTEMPTS: String(MAX_ATTEMPTS), HANDLER_TIMEOUT_MS: "1500" };
    const workers = ["w1", "w2"].map((name) => start("chaos-worker.mjs", name, workerEnv));
    for (const worker of workers) await worker.waitForLine(/^worker ready \d+$/, 30_000);

    const events = Array.from({ length: EVENTS }, (_, index) => {
      const type = MAPPA_EVENT_TYPES[index % MAPPA_EVENT_TYPES.length] as string;
      const poison =
        index % POISON_EVERY === POISON_EVERY - 1
          ? POISONS[Math.floor(index / POISON_EVERY) % POISONS.length]
          : undefined;
      return createTestEvent(type, poison === undefined ? {} : { data: { poison } });
    });
    const poisonKeys = events
      .filter((event) => (event.data as { poison?: string }).poison !== undefined)
      .map((event) => keyOf(event));
    const goodKeys = events
      .filter((event) => (event.data as { poison?: string }).poison === undefined)
      .map((event) => keyOf(event));

    // The chaos: a random connection of these processes ended every ~200 ms.
    let chaos = true;
    let kills = 0;
    const killer = (async () => {
      const deadline = Date.now() + DEADLINE_MS;
      while (chaos && Date.now() < deadline) {
        const result = await db.pool
          .query(
            `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
              WHERE application_name = $1 AND pid <> pg_backend_pid()
              ORDER BY random() LIMIT 1`,
            [app],
          )
          .catch(() => ({ rows: [] }));
        if (result.rows[0]?.ok === true) kills++;
        await sleep(KILL_EVERY_MS);
      }
    })();

    // Supervision: a worker that died is restarted; only the poison deaths are expected.
    let supervising = true;
    const deaths: string[] = [];
    const dead: Child[] = [];
    const unexpected: string[] = [];
    const supervisor = (async () => {
      const deadline = Date.now() + DEADLINE_MS;
      while (supervising && Date.now() < deadline) {
        for (let index = 0; index < workers.length; index++) {
          const worker = workers[index] as Child;
          const { exitCode, signalCode } = worker.process;
          if (exitCode === null && signalCode === null) continue;
          const deliberate = exitCode === 77 || signalCode === "SIGKILL";
          deaths.push(`${exitCode ?? signalCode}`);
          dead.push(worker);
          if (!deliberate || crashedBadly(worker).length > 0) {
            unexpected.push(`${exitCode} ${signalCode}\n${worker.output.slice(-20).join("\n")}`);
          }
          workers[index] = start("chaos-worker.mjs", `w${index + 1}`, workerEnv);
        }
        await sleep(50);
      }
    })();

    const attempts: DeliveryAttempt[] = [];
    const mappa = createDeliverySimulator({
      secret: SECRET,
      timeScale: 0.002,
      timeoutMs: 30_000,
      onAttempt: (attempt) => void attempts.push(attempt),
    });
    let abandoned = 0;
    let next = 0;
    const started = performance.now();
    const lane = async () => {
      // Bounded: each lane takes events until none are left.
      while (next < events.length) {
        const index = next++;
        const report = await mappa.deliver(
          urls[index % 2] as string,
          events[index] as (typeof events)[number],
        );
        if (!report.delivered) abandoned++;
      }
    };
    await Promise.all(Array.from({ length: LANES }, lane));
    console.log(
      `[chaos] delivered in ${Math.round(performance.now() - started)} ms, kills ${kills}`,
    );
    const receivedMs = Math.round(performance.now() - started);

    const statusOf = async (keys: string[]) => {
      const result = await db.pool.query(
        `SELECT status, count(*)::int AS n FROM "${db.schema}".events WHERE key = ANY($1) GROUP BY status`,
        [keys],
      );
      const counts: Record<string, number> = { pending: 0, done: 0, failed: 0 };
      for (const row of result.rows) counts[row.status] = row.n;
      return counts;
    };
    let lastProgress = 0;
    await waitFor(
      async () => {
        const good = await statusOf(goodKeys);
        const poison = await statusOf(poisonKeys);
        if (performance.now() - lastProgress > 10_000) {
          lastProgress = performance.now();
          console.log(
            `[chaos] ${Math.round(performance.now() - started)} ms: good ${JSON.stringify(good)} poison ${JSON.stringify(poison)} kills ${kills} deaths ${deaths.length}`,
          );
        }
        return good.pending === 0 && poison.pending === 0;
      },
      DEADLINE_MS,
      250,
    ).catch(() => {});
    const settledMs = Math.round(performance.now() - started);
    chaos = false;
    supervising = false;
    await Promise.all([killer, supervisor]);

    // Every close() resolves: SIGTERM, then `closed in <ms> ms` and exit 0.
    const closes = await Promise.all(
      workers.map(async (worker) => {
        worker.process.kill("SIGTERM");
        const line = await worker.waitForLine(/^closed in (\d+) ms$/, 60_000).catch(() => null);
        const code = await Promise.race([worker.exited, sleep(60_000).then(() => "hung")]);
        return { closedMs: line === null ? null : Number(line[1]), code };
      }),
    );
    const receiversAlive = receivers.every(
      (receiver) => receiver.process.exitCode === null && receiver.process.signalCode === null,
    );
    const receiverCrashes = receivers.flatMap(crashedBadly);

    const perKey = await db.pool.query(
      `SELECT k, count(e.id)::int AS n FROM unnest($1::text[]) AS k
         LEFT JOIN "${db.schema}".effects e ON e.event_key = k GROUP BY k`,
      [goodKeys],
    );
    const effectCounts = perKey.rows.map((row: { n: number }) => row.n);
    const poisonRows = await db.pool.query(
      `SELECT payload->'data'->>'poison' AS poison, status, attempts, last_error
         FROM "${db.schema}".events WHERE key = ANY($1)`,
      [poisonKeys],
    );
    const poisonAttempts: Record<string, number[]> = {};
    for (const row of poisonRows.rows) {
      const list = poisonAttempts[row.poison] ?? [];
      list.push(row.attempts);
      poisonAttempts[row.poison] = list;
    }
    const goodAttempts = await db.pool.query(
      `SELECT attempts, count(*)::int AS n FROM "${db.schema}".events WHERE key = ANY($1) GROUP BY attempts ORDER BY attempts`,
      [goodKeys],
    );
    const answers: Record<string, number> = {};
    for (const attempt of attempts) {
      const label =
        attempt.status === undefined ? (attempt.errorCode ?? "error") : String(attempt.status);
      answers[label] = (answers[label] ?? 0) + 1;
    }
    const result = {
      events: EVENTS,
      good: goodKeys.length,
      poison: poisonKeys.length,
      kills,
      workerDeaths: deaths.length,
      unexpectedExits: unexpected.length,
      answers,
      abandoned,
      good_status: await statusOf(goodKeys),
      poison_status: await statusOf(poisonKeys),
      goodAttempts: Object.fromEntries(goodAttempts.rows.map((row) => [row.attempts, row.n])),
      poisonAttempts,
      effectsOnce: effectCounts.filter((n: number) => n === 1).length,
      missing: effectCounts.filter((n: number) => n === 0).length,
      doubled: effectCounts.filter((n: number) => n > 1).length,
      closes,
      receiversAlive,
      receivedMs,
      settledMs,
    };
    console.log(`[chaos] ${JSON.stringify(result)}`);

    expect(unexpected).toEqual([]);
    expect(receiverCrashes).toEqual([]);
    expect(receiversAlive).toBe(true);
    expect(abandoned).toBe(0);
    expect(result.effectsOnce).toBe(goodKeys.length);
    expect(result.missing).toBe(0);
    expect(result.doubled).toBe(0);
    expect(result.good_status).toEqual({ pending: 0, done: goodKeys.length, failed: 0 });
    expect(result.poison_status).toEqual({ pending: 0, done: 0, failed: poisonKeys.length });
    for (const row of poisonRows.rows) {
      expect(row.attempts).toBeGreaterThanOrEqual(1);
      expect(row.attempts).toBeLessThanOrEqual(MAX_ATTEMPTS);
    }
    // The crash poisons killed their worker at each attempt, and only they did.
    const crashPoisons = (poisonAttempts.exit ?? []).concat(poisonAttempts.kill ?? []);
    expect(crashPoisons).toEqual(Array(poisonKeys.length / 4).fill(MAX_ATTEMPTS));
    // Every death was a crash poison's handler ending its worker, one per dead worker, and a
    // crash poison's handler never ran without ending its worker. An attempt can count without
    // its handler running: the chaos ended the connection of its transaction first (e.g. while
    // it waited for the worker's other slots, as a retried event runs alone), so the deaths can
    // be fewer than crashPoisons.length * MAX_ATTEMPTS, never more.
    const crashing = (child: Child) =>
      child.output.flatMap((line) => /^crashing (\S+)$/.exec(line)?.[1] ?? []);
    const crashKeys = events
      .filter((event) =>
        ["exit", "kill"].includes((event.data as { poison?: string }).poison ?? ""),
      )
      .map((event) => keyOf(event));
    for (const child of dead) {
      expect(crashing(child)).toHaveLength(1);
      expect(crashKeys).toContain(crashing(child)[0]);
    }
    const crashRuns = children.flatMap(crashing);
    expect(crashRuns).toHaveLength(deaths.length);
    for (const key of crashKeys) {
      const runs = crashRuns.filter((run) => run === key).length;
      expect(runs, key).toBeGreaterThanOrEqual(1);
      expect(runs, key).toBeLessThanOrEqual(MAX_ATTEMPTS);
    }
    for (const close of closes) {
      expect(close.code).toBe(0);
      expect(close.closedMs).not.toBeNull();
    }
    expect(kills).toBeGreaterThan(0);
  }, 420_000);
});
