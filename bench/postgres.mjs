// Postgres benchmark: how fast the inbox mode of @mappa-webhooks/postgres acknowledges
// deliveries compared with the default in-memory receiver on Express, at 1, 10, 50 and 200
// connections, with and without group commit, next to transactional handlers; and how many
// events per second two inbox workers drain.
//
// Receiving: each variant runs in `instances` server processes (postgres/server.mjs), the load
// generator (postgres/load.mjs, autocannon) in another; every request carries a new event
// (unique id and job id, about 1 KiB, signed when sent), so every request takes the
// first-delivery path. Per round and connection count the variants run one after another in a
// rotating order; each variant's req/s is divided by the memory receiver's of the same round
// and connection count, and the result is the median of those ratios. Next to it: p50/p99
// latency, the server's own CPU time per request, and for the inbox the deliveries per INSERT
// statement (how many shared a commit).
//
// Draining: two worker processes (postgres/worker.mjs) wait on an empty inbox; one transaction
// then inserts `drainEvents` events (with NOTIFY), and the time until none is pending gives
// events per second. Each event's handler writes one row in the event's transaction.
//
// `node postgres.mjs` prints the result as JSON (BENCH_PG_MARKDOWN=1: as markdown).
// `runPostgres(log, options)` and `renderPostgres(result)` are for the main runner;
// `{ quick: true }` (BENCH_PG_QUICK=1) is a run of about a minute and a half.
// Env: DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_PG_ROUNDS (4; quick 1),
// BENCH_PG_HEADLINE_ROUNDS (rounds at 10 connections, the target's: 4; quick 3),
// BENCH_PG_SECONDS (3; quick 2), BENCH_PG_CONNECTIONS (1,10,50,200), BENCH_PG_INSTANCES (2;
// quick 1), BENCH_PG_VARIANTS (memory,inbox,inbox-ungrouped,transactional; add inbox-nowait
// for the not-durable diagnostic), BENCH_PG_DRAIN_EVENTS (5000; quick 1000; 0 skips draining),
// BENCH_PG_CPU_PROF=<dir> (each receiver writes a CPU profile there when it exits).
import { execFile, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { migrate } from "@mappa-webhooks/postgres";
import pg from "pg";
import { createEventBody, signBody, WEBHOOK_PATH } from "./lib/fixtures.mjs";
import { procCpuMs } from "./lib/processes.mjs";
import { formatInteger, formatRatio, median, quantile } from "./lib/stats.mjs";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const START_TIMEOUT_MS = 20_000;
const DRAIN_DEADLINE_MS = 600_000;

const SERVER = fileURLToPath(new URL("./postgres/server.mjs", import.meta.url));
const LOAD = fileURLToPath(new URL("./postgres/load.mjs", import.meta.url));
const WORKER = fileURLToPath(new URL("./postgres/worker.mjs", import.meta.url));

export const PG_VARIANT_LABELS = {
  memory: "default receiver, in-memory store (baseline)",
  inbox:
    "**inbox, group commit** (default): one multi-row `INSERT … ON CONFLICT` per batch, one batch in flight (a second when a full one waits or the first stalls), 200 after its commit, then a shared wake-up NOTIFY",
  "inbox-ungrouped":
    "inbox, `groupCommit: false`: one `INSERT … ON CONFLICT` per delivery, then a shared wake-up NOTIFY",
  transactional:
    "transactional handlers, no-op handler: BEGIN, lock, done check, done mark, COMMIT",
  "inbox-nowait":
    "diagnostic: inbox with group commit and `synchronous_commit = off` (not durable)",
  "inbox-nonotify":
    "diagnostic: inbox with group commit and `notify: false` (no NOTIFY; workers poll)",
  "inbox-inflight1": "diagnostic: inbox with `groupCommit: { maxInFlight: 1 }`",
  "inbox-inflight4": "diagnostic: inbox with `groupCommit: { maxInFlight: 4 }`",
};

/** The inbox's target: its req/s over the memory receiver's at this many connections. */
const INBOX_TARGET = { ratio: 0.5, connections: 10 };

const DEFAULT_VARIANTS = ["memory", "inbox", "inbox-ungrouped", "transactional"];

const numberList = (text) =>
  text === undefined || text === "" ? undefined : text.split(",").map((item) => Number(item));

/** The run's settings: `options`, else the environment, else the defaults (quick or full). */
function settings(options = {}) {
  const env = process.env;
  const quick = options.quick ?? env.BENCH_PG_QUICK === "1";
  const pick = (name, envName, full, short) =>
    options[name] ?? (env[envName] !== undefined ? Number(env[envName]) : quick ? short : full);
  const variants = [...(options.variants ?? env.BENCH_PG_VARIANTS?.split(",") ?? DEFAULT_VARIANTS)];
  if (!variants.includes("memory")) variants.unshift("memory");
  const result = {
    quick,
    rounds: pick("rounds", "BENCH_PG_ROUNDS", 4, 1),
    // The target's connection count is measured in more rounds than the rest of the curve.
    headlineRounds: pick("headlineRounds", "BENCH_PG_HEADLINE_ROUNDS", 4, 3),
    seconds: pick("seconds", "BENCH_PG_SECONDS", 3, 2),
    instances: pick("instances", "BENCH_PG_INSTANCES", 2, 1),
    drainEvents: pick("drainEvents", "BENCH_PG_DRAIN_EVENTS", 5000, 1000),
    connections: options.connections ?? numberList(env.BENCH_PG_CONNECTIONS) ?? [1, 10, 50, 200],
    variants,
  };
  for (const variant of variants) {
    if (!(variant in PG_VARIANT_LABELS)) throw new Error(`unknown variant ${variant}`);
  }
  for (const [name, value] of Object.entries(result)) {
    if (typeof value === "number" && !(Number.isSafeInteger(value) && value >= 0)) {
      throw new Error(`${name} must be a whole number, got ${value}`);
    }
  }
  if (result.rounds < 1 || result.seconds < 1 || result.instances < 1) {
    throw new Error("rounds, seconds and instances must be at least 1");
  }
  if (!result.connections.every((n) => Number.isSafeInteger(n) && n >= 1 && n <= 1000)) {
    throw new Error(`connections must be whole numbers in 1..1000, got ${result.connections}`);
  }
  return result;
}

function startChild(script, args, env, ready = "ready") {
  // E.g. BENCH_PG_CPU_PROF=.profiles: every receiver writes a CPU profile there on exit.
  const profile = script === SERVER && process.env.BENCH_PG_CPU_PROF;
  const child = fork(script, args, {
    env: { ...process.env, DATABASE_URL, ...env },
    execArgv: profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : [],
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
  const id = `evt_check_${randomBytes(8).toString("hex")}`;
  // A job id of its own: a known event is keyed by its job's outcome.
  const body = createEventBody(1024, id).replace('"jobId":"job_01JBENCH"', `"jobId":"${id}"`);
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
  if (valid.text.includes('"duplicate"')) throw new Error(`${url}: a new event answered duplicate`);
  return again.text.includes('"duplicate":true');
}

/** The INSERT statements a server's pool sent so far. */
function insertsOf(server) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.child.off("message", onStats);
      resolve(Number.NaN);
    }, 5000);
    function onStats(message) {
      if (message?.type !== "stats") return;
      clearTimeout(timer);
      server.child.off("message", onStats);
      resolve(message.inserts);
    }
    server.child.on("message", onStats);
    server.child.send({ type: "stats" });
  });
}

const summary = (values) => ({
  median: median(values),
  p25: quantile(values, 0.25),
  p75: quantile(values, 0.75),
});

async function benchReceiving(schema, run, log) {
  const { variants, connections, rounds: ROUNDS, seconds, instances: INSTANCES } = run;
  const headline = connections.includes(INBOX_TARGET.connections)
    ? Math.max(ROUNDS, run.headlineRounds)
    : ROUNDS;
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
      await runLoad(server.url, 1, 10);
    }
    // rounds[round][connections][variant]
    const rounds = [];
    for (let round = 0; round < headline; round++) {
      const servers = instances[round % instances.length];
      const byConnections = {};
      for (const n of connections) {
        if (round >= ROUNDS && n !== INBOX_TARGET.connections) continue;
        const runs = {};
        for (let k = 0; k < servers.length; k++) {
          const server = servers[(round + k) % servers.length];
          const cpuBefore = procCpuMs(server.pid);
          const insertsBefore = await insertsOf(server);
          const result = await runLoad(server.url, seconds, n);
          const cpuAfter = procCpuMs(server.pid);
          const insertsAfter = await insertsOf(server);
          result.cpuUsPerRequest =
            cpuBefore === undefined ? Number.NaN : ((cpuAfter - cpuBefore) * 1000) / result.total;
          result.perInsert = server.variant.startsWith("inbox")
            ? result.total / (insertsAfter - insertsBefore)
            : Number.NaN;
          if (result.non2xx > 0 || result.errors > 0) {
            throw new Error(
              `${server.variant} at ${n} connections: ${result.non2xx} non-2xx answers, ${result.errors} errors under load`,
            );
          }
          runs[server.variant] = result;
        }
        byConnections[n] = runs;
        log(
          `postgres receiving round ${round + 1}/${n === INBOX_TARGET.connections ? headline : ROUNDS}, ${n} connections: ${variants
            .map((v) => `${v} ${Math.round(runs[v].requestsPerSec)}`)
            .join(", ")} req/s`,
        );
      }
      rounds.push(byConnections);
    }
    const measured = (n) => rounds.filter((r) => r[n] !== undefined);
    const at = (n, variant, field) => measured(n).map((r) => r[n][variant][field]);
    return {
      rounds: ROUNDS,
      headlineRounds: headline,
      instances: INSTANCES,
      seconds,
      connections,
      variants: variants.map((variant) => ({
        variant,
        label: PG_VARIANT_LABELS[variant],
        answersDuplicates: instances[0].find((s) => s.variant === variant).answersDuplicates,
      })),
      curve: connections.map((n) => ({
        connections: n,
        results: variants.map((variant) => ({
          variant,
          requestsPerSec: median(at(n, variant, "requestsPerSec")),
          latencyP50Ms: median(at(n, variant, "latencyP50Ms")),
          latencyP99Ms: median(at(n, variant, "latencyP99Ms")),
          cpuUsPerRequest: median(at(n, variant, "cpuUsPerRequest")),
          deliveriesPerInsert: median(at(n, variant, "perInsert")),
          vsMemory: summary(
            measured(n).map((r) => r[n][variant].requestsPerSec / r[n].memory.requestsPerSec),
          ),
        })),
      })),
    };
  } finally {
    await Promise.all(instances.flat().map((server) => server.close()));
  }
}

async function benchDrain(pool, schema, drainEvents, workers, concurrency, batchSize, log) {
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
                                  'createdAt', $2::text,
                                  'data', $3::jsonb || jsonb_build_object('jobId', 'job_drain_' || n))
           FROM generate_series(1, $1::int) AS n
         RETURNING 1)
       SELECT count(*), pg_notify($4, '') FROM stored`,
      [drainEvents, template.createdAt, JSON.stringify(template.data), `${schema}.events`],
    );
    const deadline = Date.now() + DRAIN_DEADLINE_MS;
    let pending = drainEvents;
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
      `postgres drain ${workers} workers × ${concurrency} slots, batch ${batchSize}: ${Math.round(drainEvents / seconds)} events/s`,
    );
    return {
      workers,
      concurrency,
      batchSize,
      events: drainEvents,
      seconds,
      eventsPerSec: drainEvents / seconds,
      effects: effects.rows[0].n,
      distinctEffects: effects.rows[0].distinct_keys,
      perWorker,
    };
  } finally {
    await Promise.all(started.map((worker) => worker.close()));
  }
}

/**
 * The whole Postgres benchmark in a schema of its own (dropped after); `log` gets progress.
 * `options` (each also from the environment, see the top of this file): `quick`, `rounds`,
 * `seconds`, `instances`, `connections` (a list), `variants` (a list), `drainEvents`.
 */
export async function runPostgres(log = () => {}, options = {}) {
  const run = settings(options);
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  pool.on("error", () => {});
  const schema = `mappa_bench_${process.pid}_${randomBytes(3).toString("hex")}`;
  const startedAt = new Date();
  const t0 = performance.now();
  try {
    const server = await pool.query(
      "SELECT version() AS version, current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS synchronous_commit, current_setting('commit_delay') AS commit_delay",
    );
    await migrate({ pool, schema });
    await pool.query(
      `CREATE TABLE "${schema}".effects (id bigserial PRIMARY KEY, event_key text NOT NULL)`,
    );
    const receiving = await benchReceiving(schema, run, log);
    const drains = [];
    if (run.drainEvents > 0) {
      const drainSettings = run.quick
        ? [[4, 10]]
        : [
            [1, 1],
            [4, 1],
            [4, 10],
          ];
      for (const [concurrency, batchSize] of drainSettings) {
        drains.push(
          await benchDrain(pool, schema, run.drainEvents, 2, concurrency, batchSize, log),
        );
      }
    }
    return {
      startedAt,
      seconds: (performance.now() - t0) / 1000,
      quick: run.quick,
      postgres: server.rows[0],
      receiving,
      drains,
    };
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await pool.end();
  }
}

const ms = (value) =>
  Number.isFinite(value) ? (value < 10 ? value.toFixed(1) : Math.round(value).toString()) : "n/a";

/** The result of {@link runPostgres} as a markdown section (tables only; causes are prose). */
export function renderPostgres(result) {
  const { receiving, drains, postgres } = result;
  const lines = [];
  const version = String(postgres.version).split(" ").slice(0, 2).join(" ");
  lines.push(
    `${version}, \`fsync = ${postgres.fsync}\`, \`synchronous_commit = ${postgres.synchronous_commit}\`, \`commit_delay = ${postgres.commit_delay}\`. ` +
      `${receiving.rounds} interleaved round(s) of ${receiving.seconds} s per connection count (${receiving.headlineRounds ?? receiving.rounds} at ${INBOX_TARGET.connections}, the target's), ` +
      `${receiving.instances} server process(es) per variant${result.quick ? " (quick mode)" : ""}; ` +
      "ratio = the variant's req/s over the memory receiver's in the same round and connection count, median [p25–p75].",
    "",
  );
  lines.push("| variant | re-delivery answered `duplicate` |", "|---|:---:|");
  for (const v of receiving.variants) {
    lines.push(`| ${v.label} | ${v.answersDuplicates ? "yes" : "no"} |`);
  }
  lines.push("");
  lines.push(
    "| connections | variant | req/s | vs memory | p50 / p99 latency | server CPU per request | deliveries per INSERT |",
    "|---:|---|---:|---:|---:|---:|---:|",
  );
  const short = {
    memory: "memory",
    inbox: "**inbox (group commit)**",
    "inbox-ungrouped": "inbox, ungrouped",
    transactional: "transactional",
    "inbox-nowait": "inbox, not durable (diagnostic)",
    "inbox-nonotify": "inbox, no NOTIFY (diagnostic)",
    "inbox-inflight1": "inbox, maxInFlight 1 (diagnostic)",
    "inbox-inflight4": "inbox, maxInFlight 4 (diagnostic)",
  };
  for (const point of receiving.curve) {
    for (const r of point.results) {
      const ratio =
        r.variant === "memory"
          ? "1.00×"
          : `${r.variant === "inbox" ? "**" : ""}${formatRatio(r.vsMemory.median)}${r.variant === "inbox" ? "**" : ""} [${formatRatio(r.vsMemory.p25)}–${formatRatio(r.vsMemory.p75)}]`;
      lines.push(
        `| ${point.connections} | ${short[r.variant] ?? r.variant} | ${formatInteger(r.requestsPerSec)} | ${ratio} | ${ms(r.latencyP50Ms)} / ${ms(r.latencyP99Ms)} ms | ${formatInteger(r.cpuUsPerRequest)} µs | ${Number.isFinite(r.deliveriesPerInsert) ? r.deliveriesPerInsert.toFixed(1) : "–"} |`,
      );
    }
  }
  const headline = receiving.curve.find((point) => point.connections === INBOX_TARGET.connections);
  const inbox = headline?.results.find((r) => r.variant === "inbox");
  if (inbox !== undefined) {
    const met = inbox.vsMemory.median >= INBOX_TARGET.ratio;
    lines.push(
      "",
      `Target, inbox receiving ≥ ${INBOX_TARGET.ratio.toFixed(2)}× the memory receiver at ${INBOX_TARGET.connections} connections, each answer after its durable commit: **${met ? "met" : "missed"}** (${formatRatio(inbox.vsMemory.median)} [${formatRatio(inbox.vsMemory.p25)}–${formatRatio(inbox.vsMemory.p75)}]).`,
    );
  }
  if (drains.length > 0) {
    lines.push(
      "",
      "| workers × slots | `batchSize` | events | time | events/s | effects (distinct / rows) |",
      "|---|---:|---:|---:|---:|---:|",
    );
    for (const d of drains) {
      lines.push(
        `| ${d.workers} × ${d.concurrency} | ${d.batchSize} | ${formatInteger(d.events)} | ${d.seconds.toFixed(1)} s | **${formatInteger(d.eventsPerSec)}** | ${formatInteger(d.distinctEffects)} / ${formatInteger(d.effects)} |`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runPostgres((line) => process.stderr.write(`${line}\n`));
  process.stdout.write(
    process.env.BENCH_PG_MARKDOWN === "1" ? renderPostgres(result) : `${JSON.stringify(result)}\n`,
  );
}
