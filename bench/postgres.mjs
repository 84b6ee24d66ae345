// Postgres benchmark: how fast the inbox mode of @mappa-webhooks/postgres acknowledges
// deliveries compared with the default in-memory receiver on Express, at the same concurrency,
// and how many events per second two inbox workers drain.
//
// Receiving: each variant runs in BENCH_PG_INSTANCES server processes (postgres/server.mjs),
// the load generator (postgres/load.mjs, autocannon) in another; every request carries a new
// event (unique id, 1 KiB, signed when sent), so every request takes the first-delivery path.
// Rounds are interleaved (A, B, C, then B, C, A, ...); per round the inbox's req/s is divided
// by the memory receiver's; the result is the median of those ratios. Next to it, the server's
// own CPU time per request and two diagnostic variants that show where the time goes.
//
// Draining: two worker processes (postgres/worker.mjs) wait on an empty inbox; one transaction
// then inserts BENCH_PG_DRAIN_EVENTS events (with NOTIFY), and the time until none is pending
// gives events per second. Each event's handler writes one row in the event's transaction.
// Three settings: 1 slot per worker, 4 slots, and 4 slots committing batches of 10 events.
//
// Env: DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_PG_ROUNDS (4),
// BENCH_PG_SECONDS (3), BENCH_PG_CONNECTIONS (10), BENCH_PG_INSTANCES (2),
// BENCH_PG_DRAIN_EVENTS (5000), BENCH_PG_DIAGNOSTICS (1; 0 leaves the diagnostic variants out).
import { execFile, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { migrate } from "@mappa-webhooks/postgres";
import pg from "pg";
import { createEventBody, signBody, WEBHOOK_PATH } from "./lib/fixtures.mjs";
import { procCpuMs } from "./lib/processes.mjs";
import { median, quantile } from "./lib/stats.mjs";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const ROUNDS = Number(process.env.BENCH_PG_ROUNDS ?? 4);
const SECONDS = Number(process.env.BENCH_PG_SECONDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_PG_CONNECTIONS ?? 10);
const INSTANCES = Number(process.env.BENCH_PG_INSTANCES ?? 2);
const DRAIN_EVENTS = Number(process.env.BENCH_PG_DRAIN_EVENTS ?? 5000);
const DIAGNOSTICS = process.env.BENCH_PG_DIAGNOSTICS !== "0";
const START_TIMEOUT_MS = 20_000;
const DRAIN_DEADLINE_MS = 600_000;

const SERVER = fileURLToPath(new URL("./postgres/server.mjs", import.meta.url));
const LOAD = fileURLToPath(new URL("./postgres/load.mjs", import.meta.url));
const WORKER = fileURLToPath(new URL("./postgres/worker.mjs", import.meta.url));

export const PG_VARIANT_LABELS = {
  memory: "default receiver, in-memory idempotency store (baseline)",
  inbox: "**inbox mode**: duplicate check + `INSERT … ON CONFLICT` + NOTIFY, 200 after the commit",
  "inbox-insert": "diagnostic: the insert only (no duplicate check)",
  "inbox-nowait": "diagnostic: inbox with `synchronous_commit = off` (not durable)",
};

function startChild(script, args, env, ready = "ready") {
  const child = fork(script, args, {
    env: { ...process.env, DATABASE_URL, ...env },
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`${script} ${args.join(" ")} did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} ${args.join(" ")} exited with ${code} before it was ready`));
    });
    child.on("message", function onReady(message) {
      if (message?.type !== ready) return;
      clearTimeout(timer);
      child.off("message", onReady);
      child.removeAllListeners("exit");
      resolve({
        child,
        pid: child.pid,
        port: message.port,
        close: () =>
          new Promise((done) => {
            if (child.exitCode !== null) return done();
            const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
            child.once("exit", () => {
              clearTimeout(killer);
              done();
            });
            child.disconnect();
          }),
      });
    });
  });
}

function runLoad(url, seconds, connections) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [LOAD, url, String(seconds), String(connections)],
      { timeout: (seconds + 30) * 1000, maxBuffer: 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`load run failed: ${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout.trim().split("\n").pop()));
      },
    );
  });
}

async function checkServer(url) {
  const body = createEventBody(1024, `evt_check_${randomBytes(8).toString("hex")}`);
  const post = async (signature) => {
    const response = await fetch(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "mappa-signature": signature },
    });
    return { status: response.status, text: await response.text() };
  };
  const forged = await post(await signBody(`${body} `));
  const valid = await post(await signBody(body));
  const again = await post(await signBody(body));
  if (forged.status !== 401 || valid.status !== 200 || again.status !== 200) {
    throw new Error(
      `${url}: forged → ${forged.status}, valid → ${valid.status}, again → ${again.status}`,
    );
  }
  return again.text.includes('"duplicate":true');
}

const summary = (values) => ({
  median: median(values),
  p25: quantile(values, 0.25),
  p75: quantile(values, 0.75),
});

async function benchReceiving(schema, log) {
  const variants = ["memory", "inbox", ...(DIAGNOSTICS ? ["inbox-insert", "inbox-nowait"] : [])];
  const instances = [];
  try {
    for (let i = 0; i < INSTANCES; i++) {
      const set = [];
      for (const variant of variants) {
        const server = await startChild(SERVER, [variant], { BENCH_SCHEMA: schema });
        set.push({ ...server, variant, url: `http://127.0.0.1:${server.port}${WEBHOOK_PATH}` });
      }
      instances.push(set);
    }
    for (const server of instances.flat()) {
      server.answersDuplicates = await checkServer(server.url);
      await runLoad(server.url, 1, CONNECTIONS);
    }
    const rounds = [];
    for (let round = 0; round < ROUNDS; round++) {
      const servers = instances[round % instances.length];
      const runs = {};
      for (let k = 0; k < servers.length; k++) {
        const server = servers[(round + k) % servers.length];
        const cpuBefore = procCpuMs(server.pid);
        const result = await runLoad(server.url, SECONDS, CONNECTIONS);
        const cpuAfter = procCpuMs(server.pid);
        result.cpuUsPerRequest =
          cpuBefore === undefined ? Number.NaN : ((cpuAfter - cpuBefore) * 1000) / result.total;
        if (result.non2xx > 0 || result.errors > 0) {
          throw new Error(
            `${server.variant}: ${result.non2xx} non-2xx answers, ${result.errors} errors under load`,
          );
        }
        runs[server.variant] = result;
      }
      rounds.push(runs);
      log(`postgres receiving round ${round + 1}/${ROUNDS}`);
    }
    return {
      rounds: ROUNDS,
      instances: INSTANCES,
      seconds: SECONDS,
      connections: CONNECTIONS,
      results: variants.map((variant) => ({
        variant,
        label: PG_VARIANT_LABELS[variant],
        answersDuplicates: instances[0].find((s) => s.variant === variant).answersDuplicates,
        requestsPerSec: median(rounds.map((r) => r[variant].requestsPerSec)),
        latencyP50Ms: median(rounds.map((r) => r[variant].latencyP50Ms)),
        latencyP99Ms: median(rounds.map((r) => r[variant].latencyP99Ms)),
        cpuUsPerRequest: median(rounds.map((r) => r[variant].cpuUsPerRequest)),
        vsMemory: summary(rounds.map((r) => r[variant].requestsPerSec / r.memory.requestsPerSec)),
      })),
    };
  } finally {
    await Promise.all(instances.flat().map((server) => server.close()));
  }
}

async function benchDrain(pool, schema, workers, concurrency, batchSize, log) {
  await pool.query(`TRUNCATE "${schema}".events, "${schema}".effects`);
  const started = [];
  try {
    for (let i = 0; i < workers; i++) {
      started.push(
        await startChild(WORKER, [], {
          BENCH_SCHEMA: schema,
          BENCH_WORKER_CONCURRENCY: String(concurrency),
          BENCH_WORKER_BATCH: String(batchSize),
        }),
      );
    }
    const template = JSON.parse(createEventBody(1024));
    // One transaction stores every event and wakes the workers at its commit.
    const t0 = performance.now();
    await pool.query(
      `WITH stored AS (
         INSERT INTO "${schema}".events (key, event_id, type, payload)
         SELECT 'evt_drain_' || n, 'evt_drain_' || n, 'report.completed',
                json_build_object('id', 'evt_drain_' || n, 'type', 'report.completed',
                                  'createdAt', $2::text, 'data', $3::json)
           FROM generate_series(1, $1::int) AS n
         RETURNING 1)
       SELECT count(*), pg_notify($4, '') FROM stored`,
      [DRAIN_EVENTS, template.createdAt, JSON.stringify(template.data), `${schema}.events`],
    );
    const deadline = Date.now() + DRAIN_DEADLINE_MS;
    let pending = DRAIN_EVENTS;
    while (pending > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const result = await pool.query(
        `SELECT count(*)::int AS n FROM "${schema}".events WHERE status = 'pending'`,
      );
      pending = result.rows[0].n;
    }
    const seconds = (performance.now() - t0) / 1000;
    if (pending > 0) throw new Error(`drain: ${pending} events still pending after the deadline`);
    const effects = await pool.query(
      `SELECT count(*)::int AS n, count(DISTINCT event_key)::int AS distinct_keys FROM "${schema}".effects`,
    );
    const perWorker = await Promise.all(
      started.map(
        (worker) =>
          new Promise((resolve) => {
            worker.child.on("message", function onStats(message) {
              if (message?.type !== "stats") return;
              worker.child.off("message", onStats);
              resolve(message.done);
            });
            worker.child.send({ type: "stats" });
          }),
      ),
    );
    log(
      `postgres drain ${workers} workers × ${concurrency} slots, batch ${batchSize}: ${Math.round(DRAIN_EVENTS / seconds)} events/s`,
    );
    return {
      workers,
      concurrency,
      batchSize,
      events: DRAIN_EVENTS,
      seconds,
      eventsPerSec: DRAIN_EVENTS / seconds,
      effects: effects.rows[0].n,
      distinctEffects: effects.rows[0].distinct_keys,
      perWorker,
    };
  } finally {
    await Promise.all(started.map((worker) => worker.close()));
  }
}

/** The whole Postgres benchmark in a schema of its own (dropped after); `log` gets progress. */
export async function runPostgres(log = () => {}) {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  pool.on("error", () => {});
  const schema = `mappa_bench_${process.pid}_${randomBytes(3).toString("hex")}`;
  try {
    const settings = await pool.query(
      "SELECT version() AS version, current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS synchronous_commit",
    );
    await migrate({ pool, schema });
    await pool.query(
      `CREATE TABLE "${schema}".effects (id bigserial PRIMARY KEY, event_key text NOT NULL)`,
    );
    const receiving = await benchReceiving(schema, log);
    const drains = [];
    for (const [concurrency, batchSize] of [
      [1, 1],
      [4, 1],
      [4, 10],
    ]) {
      drains.push(await benchDrain(pool, schema, 2, concurrency, batchSize, log));
    }
    return { postgres: settings.rows[0], receiving, drains };
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await pool.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runPostgres((line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
