// Stores benchmark: the receiver over HTTP with each idempotency store, against the default
// in-memory store, at 1, 10, 50 and 200 connections.
//
// Each variant is Express + @mappa-webhooks/express with a no-op handler and the store spread
// into the receiver options (stores/server.mjs), in BENCH_STORES_INSTANCES server processes
// used in alternate rounds; the load generator is one long-lived process (stores/load.mjs,
// autocannon) and every request carries a NEW event (unique id and job id, 1 KiB, signed when
// sent), so every delivery takes the first-delivery path: claim, handler, complete (and the
// untrack of the event's job). Each server first answers a forged delivery 401, a valid one
// 200 and its re-delivery 200 `duplicate`. Rounds are interleaved (A, B, C, then B, C, A, ...);
// per round each store's req/s is divided by the memory receiver's of the same round, and the
// result is the median [p25–p75] of those ratios. Next to it: p50/p99 latency (medians over the
// rounds), the server's own CPU time per request, and the calls each delivery made to the
// store's database, counted in the server process. Each run checks that the handler ran once
// per delivery answered 2xx (none was taken for a duplicate); failed requests (non-2xx, errors,
// timeouts, e.g. a store's timeout at 200 connections) are counted and shown, not hidden.
//
// Each store gets its own key prefix (Redis), schema (Postgres), database (MySQL), files in a
// temporary folder (SQLite) and table in a dynalite started here (DynamoDB), removed after.
//
// The Cloudflare stores run in workerd, not Node: one Worker on Miniflare (stores/cloudflare.mjs,
// offline, its state in a temporary folder removed after) with the Hono adapter on three routes,
// the core's memory store (`workerd-memory`, their baseline), the Durable Object store
// (`durable-object`) and the D1 store (`d1`). They are checked, warmed up and interleaved in the
// same rounds as the Express receivers; their ratio is to `workerd-memory` of the same round,
// and `workerd-memory` is also shown against the Express memory receiver, for context.
//
// Env: BENCH_STORES (memory,redis,postgres,sqlite,mysql,dynamodb,workerd-memory,durable-object,
// d1; also sqlite-tx, mysql-tx and the diagnostics redis-autopipeline, redis-no-untrack,
// redis-unpaired),
// BENCH_STORES_CONNECTIONS (1,10,50,200), BENCH_STORES_HEADLINE (10), BENCH_STORES_ROUNDS (4,
// at the headline), BENCH_STORES_CURVE_ROUNDS (2, at the other levels), BENCH_STORES_SECONDS
// (2), BENCH_STORES_WARMUP_SECONDS (1), BENCH_STORES_INSTANCES (2), BENCH_POOL_MAX (10);
// REDIS_URL (redis://127.0.0.1:6379), DATABASE_URL (postgres://postgres@127.0.0.1:5432/test),
// MYSQL_URL (mysql://root@127.0.0.1:3306); BENCH_STORES_CPU_PROF=<dir>: each receiver writes a
// CPU profile (node --cpu-prof) there when it exits, for profile/summarize.mjs;
// BENCH_TRACE_CALLS=1: the calls per delivery also by kind (SQL, command), in the JSON.
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createEventBody, signBody, WEBHOOK_PATH } from "./lib/fixtures.mjs";
import { procCpuMs } from "./lib/processes.mjs";
import { formatInteger, formatRatio, median, quantile } from "./lib/stats.mjs";
import { startWorkerd } from "./stores/cloudflare.mjs";

const SERVER = fileURLToPath(new URL("./stores/server.mjs", import.meta.url));
const LOAD = fileURLToPath(new URL("./stores/load.mjs", import.meta.url));
const DYNALITE = fileURLToPath(new URL("./stores/dynalite.mjs", import.meta.url));
const START_TIMEOUT_MS = 30_000;

/** Every variant: its label, and what its cost per delivery is made of. */
export const STORE_VARIANTS = {
  memory: {
    label: "memory (default store, baseline)",
    cause:
      "no I/O: a `Map` lookup and insert in the process; what is left is HTTP, verification and parsing.",
  },
  redis: {
    label: "Redis (`createRedisIdempotencyStore`, ioredis)",
    cause:
      "one Lua script (`EVALSHA`) per step on one ioredis connection, commands of concurrent deliveries sharing it: the claim, then the complete and the untrack (a handled job leaves the recovery set), which the core asks for in the same tick and the store sends as one script on a single Redis server: two round trips per delivery, two commands, each with its encoding and reply parsing in the receiver's CPU.",
  },
  "redis-autopipeline": {
    label: "diagnostic: Redis, ioredis `enableAutoPipelining: true`",
    cause:
      "the same scripts; ioredis sends the commands issued in one event-loop turn (by concurrent deliveries) in one socket write.",
  },
  "redis-no-untrack": {
    label: "diagnostic: Redis without the job untrack",
    cause:
      "claim and complete only (the store stripped of `untrack`, so it is no job tracking store and recovery would not work): what the third round trip costs.",
  },
  "redis-unpaired": {
    label: "diagnostic: Redis, complete and untrack as two scripts",
    cause:
      "the store through a `{ runScript }` adapter, which it never pairs: the complete and the untrack sent together as two scripts, as on Redis Cluster, where the tracked jobs have their own slot: two round trips, three commands.",
  },
  postgres: {
    label: "Postgres store (`createPostgresIdempotencyStore`, pg)",
    cause:
      "one statement per step on a pooled connection (claim upsert, complete upsert, untrack delete); the claim and the complete each commit, and a commit waits for the WAL flush.",
  },
  sqlite: {
    label: "SQLite (`createSqliteIdempotencyStore`, better-sqlite3, a file)",
    cause:
      "in the receiver's process and synchronous: the claim is a `BEGIN IMMEDIATE` … `COMMIT` write transaction (3 statements), complete and untrack autocommit writes; WAL with `synchronous = FULL`, so each commit that writes fsyncs the WAL, and the event loop waits for it. More connections cannot overlap that wait.",
  },
  mysql: {
    label: "MySQL (`createMysqlIdempotencyStore`, mysql2, MariaDB)",
    cause:
      "four statements per delivery on a pooled connection: the claim is an `INSERT … ON DUPLICATE KEY UPDATE` and a `SELECT` of the row (to tell claimed from held), then complete and untrack; InnoDB makes every commit durable (redo log flushed per commit at `innodb_flush_log_at_trx_commit = 1`).",
  },
  dynamodb: {
    label: "DynamoDB (`createDynamoDbIdempotencyStore`, dynalite)",
    cause:
      "one HTTP request per step (conditional `UpdateItem` claim, `PutItem` complete, `DeleteItem` untrack), each built, SigV4-signed and parsed by the AWS SDK in the receiver's process (most of its CPU), then served by dynalite (in memory, its own process). Against AWS each request also crosses the network, a few ms.",
  },
  "sqlite-tx": {
    label: "SQLite transactional handlers (`createTransactionalHandlers`)",
    cause:
      "one write transaction per delivery in the receiver's process: `BEGIN IMMEDIATE`, the event's row, the handler, the done mark, `COMMIT` (a WAL fsync), then the untrack; synchronous, deliveries take turns on the connection.",
  },
  "mysql-tx": {
    label: "MySQL transactional handlers (`createTransactionalHandlers`)",
    cause:
      "ten round trips per delivery on a pooled connection: `wait_timeout` set, `GET_LOCK`, `SET TRANSACTION ISOLATION LEVEL READ COMMITTED`, `START TRANSACTION`, the event's row, the done mark, `COMMIT` (durable), `RELEASE_LOCK`, `wait_timeout` restored, then the untrack.",
  },
  "workerd-memory": {
    label: "workerd: memory (default store, baseline)",
    runtime: "workerd",
    cause:
      "the Hono adapter in a Worker with the core's memory store: a `Map` in the isolate; what is left is workerd's HTTP, Web Crypto verification and parsing.",
  },
  "durable-object": {
    label: "workerd: Durable Object (`createDurableObjectIdempotencyStore`)",
    runtime: "workerd",
    cause:
      "one Durable Object `stub.fetch` per step, a JSON RPC to the one object instance: the claim, then the complete and the untrack sent together (the core runs them concurrently). The object runs its calls one at a time and answers once its writes are stored (workerd's output gate), so the deliveries of every connection queue there: the claim and the complete each a `get` and a `put` of the key and its expiry entry, the untrack a `delete`; the write, not the hop, is most of a call. Here the object and its storage (local SQLite) share the Worker's workerd process and thread; on Cloudflare each call also crosses to the object's location.",
  },
  d1: {
    label: "workerd: D1 (`createD1IdempotencyStore`)",
    runtime: "workerd",
    cause:
      "one D1 call per step: the claim a `batch()` of three statements (a sweep of up to 8 expired keys, the conditional upsert, the holder's `SELECT`) run as one transaction, then the complete and the untrack, one statement `run()` each, sent together. Miniflare's D1 is SQLite in an object of the same workerd process, one query at a time, and a call costs about as much whether it writes or only reads: the cost is D1's path per call, not the SQL. On Cloudflare each call goes to the database's primary.",
  },
};

export const DEFAULT_STORES = [
  "memory",
  "redis",
  "postgres",
  "sqlite",
  "mysql",
  "dynamodb",
  "workerd-memory",
  "durable-object",
  "d1",
];
/** Whether `variant` runs in workerd (then its baseline is `workerd-memory`). */
const inWorkerd = (variant) => STORE_VARIANTS[variant]?.runtime === "workerd";
const baselineOf = (variant) => (inWorkerd(variant) ? "workerd-memory" : "memory");
const list = (text) =>
  text
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);

/** The settings of a run: `options` over the environment over the defaults. */
export function storesSettings(options = {}, env = process.env) {
  const number = (name, fallback) => Number(env[name] ?? fallback);
  const settings = {
    stores: env.BENCH_STORES ? list(env.BENCH_STORES) : DEFAULT_STORES,
    connections: env.BENCH_STORES_CONNECTIONS
      ? list(env.BENCH_STORES_CONNECTIONS).map(Number)
      : [1, 10, 50, 200],
    headline: number("BENCH_STORES_HEADLINE", 10),
    rounds: number("BENCH_STORES_ROUNDS", 4),
    curveRounds: number("BENCH_STORES_CURVE_ROUNDS", 2),
    seconds: number("BENCH_STORES_SECONDS", 2),
    warmupSeconds: number("BENCH_STORES_WARMUP_SECONDS", 1),
    instances: number("BENCH_STORES_INSTANCES", 2),
    poolMax: number("BENCH_POOL_MAX", 10),
    // E.g. BENCH_STORES_CPU_PROF=.profiles: every receiver writes a CPU profile there on exit.
    serverExecArgv: env.BENCH_STORES_CPU_PROF
      ? ["--cpu-prof", `--cpu-prof-dir=${env.BENCH_STORES_CPU_PROF}`]
      : [],
    redisUrl: env.REDIS_URL ?? "redis://127.0.0.1:6379",
    databaseUrl: env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test",
    mysqlUrl: env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306",
    ...options,
  };
  if (!settings.stores.includes("memory")) settings.stores = ["memory", ...settings.stores];
  for (const store of settings.stores) {
    if (!(store in STORE_VARIANTS)) {
      throw new Error(
        `stores bench: unknown store ${store} (BENCH_STORES takes ${Object.keys(STORE_VARIANTS).join(", ")})`,
      );
    }
  }
  if (settings.stores.some(inWorkerd) && !settings.stores.includes("workerd-memory")) {
    const first = settings.stores.findIndex(inWorkerd);
    settings.stores = settings.stores.toSpliced(first, 0, "workerd-memory");
  }
  if (!settings.connections.includes(settings.headline)) {
    settings.connections = [...settings.connections, settings.headline].sort((a, b) => a - b);
  }
  for (const [name, value] of Object.entries(settings)) {
    const values = Array.isArray(value) ? value : [value];
    if (values.some((v) => typeof v === "number" && !(Number.isFinite(v) && v > 0))) {
      throw new Error(`stores bench: ${name} must be positive numbers, got ${value}`);
    }
  }
  return settings;
}

/** Forks `script` and resolves once it reports `ready`: `{ child, pid, port, request(), close() }`. */
function startChild(script, args, env, execArgv = []) {
  const child = fork(script, args, {
    env: { ...process.env, ...env },
    execArgv,
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const name = [script.split("/").slice(-2).join("/"), ...args].join(" ");
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready`));
    });
    child.on("message", function onReady(message) {
      if (message?.type !== "ready") return;
      clearTimeout(timer);
      child.off("message", onReady);
      child.removeAllListeners("exit");
      resolve({
        child,
        pid: child.pid,
        port: message.port,
        /** Sends `message` and resolves the first answer whose type is in `answers`. */
        request: (message, answers, timeoutMs) =>
          new Promise((done, fail) => {
            const timeout = setTimeout(() => {
              child.off("message", onAnswer);
              fail(new Error(`${name}: no answer to ${message.type} within ${timeoutMs} ms`));
            }, timeoutMs);
            function onAnswer(answer) {
              if (!answers.includes(answer?.type)) return;
              clearTimeout(timeout);
              child.off("message", onAnswer);
              done(answer);
            }
            child.on("message", onAnswer);
            child.send(message);
          }),
        close: () =>
          new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
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

async function runLoad(load, url, seconds, connections) {
  const answer = await load.request(
    { type: "run", url, seconds, connections },
    ["result", "failed"],
    (seconds + 60) * 1000,
  );
  if (answer.type === "failed") throw new Error(`load run on ${url} failed: ${answer.message}`);
  return answer;
}

const statsOf = (server) => server.stats();

/**
 * The stats once the deliveries a run left in flight are done (autocannon stops without
 * waiting for them), so they neither overlap the next run nor escape this one's counts.
 */
async function settle(server) {
  let last = await statsOf(server);
  for (let i = 0; i < 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = await statsOf(server);
    if (now.handled === last.handled && now.calls === last.calls) return now;
    last = now;
  }
  return last;
}

/** A new event (its own id and job id), about 1 KiB. */
function newEventBody() {
  const tag = randomBytes(8).toString("hex");
  return createEventBody(1024, `evt_check_${tag}`).replace(
    '"jobId":"job_01JBENCH"',
    `"jobId":"job_check_${tag}"`,
  );
}

/** Forged → 401, valid → 200, the same again → 200 duplicate, and the handler ran once. */
async function checkServer(server) {
  const body = newEventBody();
  const post = async (signature) => {
    const response = await fetch(server.url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "mappa-signature": signature },
    });
    return { status: response.status, text: await response.text() };
  };
  const before = await statsOf(server);
  const forged = await post(await signBody(`${body} `));
  const valid = await post(await signBody(body));
  const again = await post(await signBody(body));
  const after = await statsOf(server);
  const ok =
    forged.status === 401 &&
    valid.status === 200 &&
    !valid.text.includes('"duplicate":true') &&
    again.status === 200 &&
    again.text.includes('"duplicate":true') &&
    after.handled - before.handled === 1;
  if (!ok) {
    throw new Error(
      `${server.variant}: forged → ${forged.status}, valid → ${valid.status} ${valid.text}, again → ${again.status} ${again.text}, handler runs ${after.handled - before.handled}`,
    );
  }
}

/** Creates what the variants need (prefix, schema, database, files, table); `close()` removes it. */
async function prepareStores(settings, tag, log) {
  const needs = (name) => settings.stores.some((s) => s === name || s.startsWith(`${name}-`));
  const env = { BENCH_POOL_MAX: String(settings.poolMax) };
  const services = {};
  // The database's own process, where there is one to read the CPU time of (/proc).
  const servicePids = {};
  const cleanups = [];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error) => log(`stores cleanup: ${error.message}`));
    }
  };
  try {
    if (needs("redis")) {
      const { Redis } = await import("ioredis");
      const redis = new Redis(settings.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await redis.connect();
      const prefix = `mappa-bench-stores-${tag}`;
      Object.assign(env, { BENCH_REDIS_URL: settings.redisUrl, BENCH_PREFIX: prefix });
      const info = await redis.info("server");
      const persistence = await redis.config("GET", "appendonly");
      services.redis = `Redis ${/redis_version:(\S+)/.exec(info)?.[1]}, appendonly ${persistence[1]}`;
      servicePids.redis = Number(/process_id:(\d+)/.exec(info)?.[1]);
      cleanups.push(async () => {
        // Every key of the prefix: the events' and the tracked jobs'.
        let cursor = "0";
        let removed = 0;
        for (let pass = 0; pass < 1_000_000; pass++) {
          const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 5000);
          if (keys.length > 0) removed += await redis.unlink(...keys);
          cursor = next;
          if (cursor === "0") break;
        }
        log(`stores: removed ${removed} Redis keys of ${prefix}`);
        await redis.quit();
      });
    }
    if (needs("postgres")) {
      const { default: pg } = await import("pg");
      const { migrate } = await import("@mappa-webhooks/postgres");
      const pool = new pg.Pool({ connectionString: settings.databaseUrl, max: 2 });
      pool.on("error", () => {});
      const schema = `mappa_bench_stores_${tag}`;
      cleanups.push(async () => {
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await pool.end();
      });
      await migrate({ pool, schema });
      const { rows } = await pool.query(
        "SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sync, current_setting('fsync') AS fsync",
      );
      services.postgres = `PostgreSQL ${rows[0].version}, synchronous_commit ${rows[0].sync}, fsync ${rows[0].fsync}`;
      Object.assign(env, { DATABASE_URL: settings.databaseUrl, BENCH_SCHEMA: schema });
    }
    if (needs("mysql")) {
      const { default: mysql } = await import("mysql2/promise");
      const { migrate } = await import("@mappa-webhooks/mysql");
      const admin = await mysql.createConnection(settings.mysqlUrl);
      const database = `mappa_bench_stores_${tag}`;
      cleanups.push(async () => {
        await admin.query(`DROP DATABASE IF EXISTS \`${database}\``);
        await admin.end();
      });
      await admin.query(`CREATE DATABASE \`${database}\``);
      const url = new URL(settings.mysqlUrl);
      url.pathname = `/${database}`;
      const pool = mysql.createPool({ uri: url.href, connectionLimit: 1 });
      await migrate({ pool });
      await pool.end();
      const [rows] = await admin.query(
        "SELECT VERSION() AS version, @@innodb_flush_log_at_trx_commit AS flush, @@log_bin AS binlog",
      );
      services.mysql = `${rows[0].version}, innodb_flush_log_at_trx_commit ${rows[0].flush}, binary log ${rows[0].binlog ? "on" : "off"}`;
      env.BENCH_MYSQL_URL = url.href;
    }
    if (needs("sqlite")) {
      const dir = mkdtempSync(join(tmpdir(), "mappa-bench-stores-"));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      let version;
      try {
        const { default: Database } = await import("better-sqlite3");
        const probe = new Database(":memory:");
        version = probe.prepare("SELECT sqlite_version() AS v").get().v;
        probe.close();
      } catch (error) {
        // On Node 20 a fresh install has no compiled better-sqlite3 (pnpm skips its build):
        // leave SQLite out of this run and say how to include it, rather than fail the run.
        const fix =
          "compile it with `node packages/sqlite/scripts/build-better-sqlite3.mjs` (a few minutes)";
        log(
          `stores: SQLite left out: better-sqlite3 does not load (${error.message.split("\n")[0]}); ${fix}`,
        );
        services.sqlite = `left out of this run: better-sqlite3 does not load here; ${fix}`;
        settings.stores = settings.stores.filter((variant) => !variant.startsWith("sqlite"));
      }
      if (version !== undefined) {
        services.sqlite = `SQLite ${version} (better-sqlite3), WAL, synchronous FULL, files in ${tmpdir()}`;
        env.BENCH_SQLITE_DIR = dir;
      }
    }
    if (needs("dynamodb")) {
      // The SDK's notice that its 2027 releases need Node 22, once per process.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
      const dynalite = await startChild(DYNALITE, [], {});
      cleanups.push(() => dynalite.close());
      const { DynamoDBClient } = await import("@aws-sdk/client-dynamodb");
      const { ensureTable } = await import("@mappa-webhooks/dynamodb");
      const endpoint = `http://127.0.0.1:${dynalite.port}`;
      const client = new DynamoDBClient({
        endpoint,
        region: "local",
        credentials: { accessKeyId: "local", secretAccessKey: "local" },
      });
      const tableName = `mappa-bench-stores-${tag}`;
      await ensureTable({ client, tableName });
      client.destroy();
      services.dynamodb = "dynalite (in memory, its own process)";
      servicePids.dynamodb = dynalite.pid;
      Object.assign(env, { BENCH_DYNAMODB_ENDPOINT: endpoint, BENCH_TABLE: tableName });
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { env, services, servicePids, close };
}

const summary = (values) => ({
  median: median(values),
  p25: quantile(values, 0.25),
  p75: quantile(values, 0.75),
});

/**
 * Runs the stores benchmark and resolves its result (for {@link renderStores}); `log` hears the
 * progress. `options` override the environment (see {@link storesSettings}).
 *
 * @example
 * ```js
 * import { renderStores, runStores } from "./stores.mjs";
 * const stores = await runStores(console.error, { stores: ["memory", "redis"], seconds: 1 });
 * console.log(renderStores(stores));
 * ```
 */
export async function runStores(log = () => {}, options = {}) {
  const settings = storesSettings(options);
  const tag = `${process.pid}_${randomBytes(3).toString("hex")}`;
  const started = performance.now();
  const loadAtStart = loadavg();
  const runs =
    settings.stores.length *
    settings.connections.reduce(
      (sum, c) => sum + (c === settings.headline ? settings.rounds : settings.curveRounds),
      0,
    );
  log(
    `stores: ${settings.stores.join(", ")}; ${runs} runs of ${settings.seconds} s (about ${Math.ceil((runs * (settings.seconds + 0.3) + (settings.stores.filter((v) => !inWorkerd(v)).length * settings.instances + settings.stores.filter(inWorkerd).length) * (settings.warmupSeconds + 1)) / 60)} min)`,
  );
  const prepared = await prepareStores(settings, tag, log);
  const servers = [];
  let load;
  // Bundling and starting workerd takes a few seconds: it overlaps the Node servers' start.
  const workerdVariants = settings.stores.filter(inWorkerd);
  const starting = workerdVariants.length === 0 ? undefined : startWorkerd();
  // Settled now and awaited below: a failure is thrown there, and never left unhandled.
  starting?.catch(() => {});
  let workerd;
  try {
    load = await startChild(LOAD, [], {});
    for (let i = 0; i < settings.instances; i++) {
      for (const variant of settings.stores.filter((v) => !inWorkerd(v))) {
        const env = { ...prepared.env };
        if (variant.startsWith("sqlite")) {
          env.BENCH_SQLITE_FILE = join(prepared.env.BENCH_SQLITE_DIR, `${variant}-${i}.db`);
        }
        const server = await startChild(SERVER, [variant], env, settings.serverExecArgv);
        servers.push({
          ...server,
          variant,
          instance: i,
          url: `http://127.0.0.1:${server.port}${WEBHOOK_PATH}`,
          stats: () => server.request({ type: "stats" }, ["stats"], 10_000),
        });
      }
    }
    if (starting !== undefined) {
      workerd = await starting;
      prepared.services.workerd = workerd.service;
      // One workerd serves every route, in every round (`instance` undefined).
      for (const variant of workerdVariants) {
        servers.push({
          variant,
          pid: workerd.pid,
          url: workerd.urlOf(variant),
          stats: () => workerd.stats(variant),
        });
      }
    }
    for (const server of servers) {
      await checkServer(server);
      await runLoad(load, server.url, settings.warmupSeconds, settings.headline);
    }
    log(`stores: ${servers.length} servers checked and warmed up`);
    const levels = [];
    let round = 0;
    for (const connections of settings.connections) {
      const roundCount = connections === settings.headline ? settings.rounds : settings.curveRounds;
      const rounds = [];
      for (let r = 0; r < roundCount; r++, round++) {
        const set = servers.filter(
          (s) => s.instance === undefined || s.instance === round % settings.instances,
        );
        const results = {};
        for (let k = 0; k < set.length; k++) {
          const server = set[(round + k) % set.length];
          const servicePid = prepared.servicePids[server.variant.split("-")[0]];
          const before = await statsOf(server);
          const cpuBefore = procCpuMs(server.pid);
          const serviceBefore = servicePid === undefined ? undefined : procCpuMs(servicePid);
          const result = await runLoad(load, server.url, settings.seconds, connections);
          const after = await settle(server);
          const cpuAfter = procCpuMs(server.pid);
          const serviceAfter = servicePid === undefined ? undefined : procCpuMs(servicePid);
          const handled = after.handled - before.handled;
          // Failed requests are kept and shown (a store timing out at 200 connections is a
          // result); a handler run missing for an answered delivery would mean a duplicate.
          const answered = result.total - result.non2xx;
          if (handled < answered || handled > result.total + connections) {
            throw new Error(
              `${server.variant} at ${connections} connections: ${answered} deliveries answered 2xx but ${handled} handler runs (every request is a new event)`,
            );
          }
          result.failed = result.non2xx + result.errors + result.timeouts;
          result.cpuUsPerRequest =
            cpuBefore === undefined ? Number.NaN : ((cpuAfter - cpuBefore) * 1000) / handled;
          result.callsPerDelivery = (after.calls - before.calls) / handled;
          // The Redis server's (all its clients) or dynalite's CPU time per delivery.
          result.serviceCpuUsPerRequest =
            serviceBefore === undefined || serviceAfter === undefined
              ? Number.NaN
              : ((serviceAfter - serviceBefore) * 1000) / handled;
          // workerd's stores: how long the Worker waited for one call of each step, in ms.
          if (after.steps !== undefined) {
            result.stepMs = {};
            for (const [step, { calls: n, ms }] of Object.entries(after.steps)) {
              const earlier = before.steps[step] ?? { calls: 0, ms: 0 };
              if (n > earlier.calls) result.stepMs[step] = (ms - earlier.ms) / (n - earlier.calls);
            }
          }
          if (after.kinds !== undefined) {
            const perDelivery = Object.entries(after.kinds).map(([kind, n]) => [
              kind,
              (n - (before.kinds[kind] ?? 0)) / handled,
            ]);
            result.callsByKind = Object.fromEntries(perDelivery.filter(([, n]) => n > 0));
          }
          results[server.variant] = result;
        }
        rounds.push(results);
        log(`stores: ${connections} connections, round ${r + 1}/${roundCount}`);
      }
      levels.push({
        connections,
        rounds: roundCount,
        results: settings.stores.map((variant) => {
          const of = (field) => median(rounds.map((r) => r[variant][field]));
          return {
            variant,
            label: STORE_VARIANTS[variant].label,
            requestsPerSec: of("requestsPerSec"),
            latencyP50Ms: of("latencyP50Ms"),
            latencyP99Ms: of("latencyP99Ms"),
            cpuUsPerRequest: of("cpuUsPerRequest"),
            callsPerDelivery: of("callsPerDelivery"),
            serviceCpuUsPerRequest: of("serviceCpuUsPerRequest"),
            failed: rounds.reduce((sum, r) => sum + r[variant].failed, 0),
            // With BENCH_TRACE_CALLS=1: the last round's calls per delivery by kind.
            callsByKind: rounds.at(-1)[variant].callsByKind,
            // workerd's stores: ms the Worker waited per call of each step (median of rounds).
            ...(rounds[0][variant].stepMs === undefined
              ? {}
              : {
                  stepMs: Object.fromEntries(
                    Object.keys(rounds[0][variant].stepMs).map((step) => [
                      step,
                      median(rounds.map((r) => r[variant].stepMs?.[step] ?? Number.NaN)),
                    ]),
                  ),
                }),
            // The Express memory receiver's, or for a workerd variant workerd's memory one's.
            vsMemory: summary(
              rounds.map((r) => r[variant].requestsPerSec / r[baselineOf(variant)].requestsPerSec),
            ),
            // workerd's memory receiver against the Express one, for context (not a target).
            ...(variant === "workerd-memory"
              ? {
                  vsExpressMemory: summary(
                    rounds.map((r) => r[variant].requestsPerSec / r.memory.requestsPerSec),
                  ),
                }
              : {}),
          };
        }),
      });
    }
    return {
      settings: {
        stores: settings.stores,
        connections: settings.connections,
        headline: settings.headline,
        rounds: settings.rounds,
        curveRounds: settings.curveRounds,
        seconds: settings.seconds,
        instances: settings.instances,
        poolMax: settings.poolMax,
        bodyBytes: 1024,
      },
      services: prepared.services,
      versions: Object.fromEntries(storesVersions()),
      seconds: (performance.now() - started) / 1000,
      // 1-minute load average of the machine (2 cores here) as the run started and ended.
      loadAverage: { start: loadAtStart[0], end: loadavg()[0] },
      levels,
    };
  } finally {
    await Promise.all(servers.map((server) => server.close?.()));
    await load?.close();
    await (workerd ?? (await starting?.catch(() => undefined)))?.close();
    await prepared.close();
  }
}

const ratioCell = (r) => `${formatRatio(r.median)} [${formatRatio(r.p25)}–${formatRatio(r.p75)}]`;
const ms = (value) => (Number.isFinite(value) ? `${value.toFixed(value < 10 ? 2 : 1)} ms` : "n/a");
const us = (value) => (Number.isFinite(value) ? `${value.toFixed(0)} µs` : "n/a");
const calls = (value) => (Number.isFinite(value) ? value.toFixed(2) : "n/a");

/** The Redis target of the issue: at least 0.7× the memory receiver at 10 connections. */
export const REDIS_TARGET = 0.7;

/**
 * The markdown section of a {@link runStores} result: the headline table, the curve over the
 * connection counts, and a line per store on what its cost per delivery is made of.
 *
 * @example
 * ```js
 * process.stderr.write(renderStores(await runStores()));
 * ```
 */
export function renderStores(result) {
  const { settings, levels } = result;
  const headline = levels.find((level) => level.connections === settings.headline);
  const memory = headline.results.find((r) => r.variant === "memory");
  const workerdMemory = headline.results.find((r) => r.variant === "workerd-memory");
  const row = (r) =>
    `| ${r.label}${r.failed > 0 ? ` (**${r.failed} failed**)` : ""} | ${ratioCell(r.vsMemory)} | ${formatInteger(r.requestsPerSec)} | ${ms(r.latencyP50Ms)} | ${ms(r.latencyP99Ms)} | ${us(r.cpuUsPerRequest)} | ${calls(r.callsPerDelivery)} |`;
  const lines = [
    "## Stores: the receiver with each idempotency store, over HTTP",
    "",
    `Express + \`@mappa-webhooks/express\`, a no-op handler, every request a **new** event (unique id and job id, ${settings.bodyBytes} B, signed when sent), so every delivery claims, runs the handler and completes. Each store in ${settings.instances} server processes used in alternate rounds, the load generator (autocannon) in another; rounds interleaved, each run ${settings.seconds} s; the ratio is to the memory receiver of the same round, median [p25–p75] of ${settings.rounds} rounds at ${settings.headline} connections and of ${settings.curveRounds} at the others. Latencies are medians over the rounds; server CPU is the receiver process's own time per request (the database's is not in it); store calls are what one delivery sent to the driver, counted in the receiver. Measured in ${Math.round(result.seconds)} s${result.loadAverage === undefined ? "" : `, 1-minute load average ${result.loadAverage.start.toFixed(1)} at the start and ${result.loadAverage.end.toFixed(1)} at the end`}.`,
    "",
    `### ${settings.headline} connections`,
    "",
    "| store | vs memory | req/s | p50 | p99 | server CPU / request | store calls / delivery |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...headline.results.filter((r) => !inWorkerd(r.variant)).map(row),
    "",
  ];
  const redis = headline.results.find((r) => r.variant === "redis");
  if (redis !== undefined) {
    const met = redis.vsMemory.median >= REDIS_TARGET;
    lines.push(
      `Target, Redis ≥ ${REDIS_TARGET.toFixed(2)}× the memory receiver at ${settings.headline} connections: **${met ? "met" : "missed"}** (${ratioCell(redis.vsMemory)}).`,
      "",
    );
  }
  if (workerdMemory !== undefined) {
    const context = workerdMemory.vsExpressMemory;
    lines.push(
      `### Cloudflare stores, in workerd (${settings.headline} connections)`,
      "",
      `The Hono adapter (\`@mappa-webhooks/hono\`) in one Worker on one workerd (Miniflare, offline; Miniflare's own entry Worker bypassed), a route per store, run in every round, the same no-op handler, load and checks as above, interleaved in the same rounds; the ratio is to that Worker's memory route of the same round. workerd CPU is that whole process's time per request: the Worker, the Durable Object and D1 all run in it, the object's and D1's storage being local SQLite files (on Cloudflare the object and the database run elsewhere, and every call crosses the network). Store calls are the Durable Object \`stub.fetch\`es or D1 \`batch()\`/statement runs of one delivery, counted in the Worker.`,
      "",
      "| store | vs workerd memory | req/s | p50 | p99 | workerd CPU / request | store calls / delivery |",
      "| --- | --- | --- | --- | --- | --- | --- |",
      ...headline.results.filter((r) => inWorkerd(r.variant)).map(row),
      "",
      `For context, not a target: workerd's memory receiver answered ${formatInteger(workerdMemory.requestsPerSec)} req/s, ${ratioCell(context)} the Express memory receiver's ${formatInteger(memory.requestsPerSec)} in the same rounds.`,
      "",
    );
  }
  lines.push(
    "### By connections",
    "",
    `req/s, ratio to memory (median of the rounds) and p50 / p99 latency${workerdMemory === undefined ? "" : "; the workerd rows' ratio is to workerd's memory receiver"}.`,
    "",
    `| store | ${levels.map((l) => `${l.connections} connection${l.connections === 1 ? "" : "s"}`).join(" | ")} |`,
    `| --- | ${levels.map(() => "---").join(" | ")} |`,
    ...settings.stores.map((variant) => {
      const cells = levels.map((level) => {
        const r = level.results.find((x) => x.variant === variant);
        const ratio = variant === baselineOf(variant) ? "" : ` (${formatRatio(r.vsMemory.median)})`;
        const failed = r.failed > 0 ? ` (**${r.failed} failed**)` : "";
        return `${formatInteger(r.requestsPerSec)}${ratio}, ${ms(r.latencyP50Ms)} / ${ms(r.latencyP99Ms)}${failed}`;
      });
      return `| ${STORE_VARIANTS[variant].label} | ${cells.join(" | ")} |`;
    }),
    "",
    "### Where each store's cost comes from",
    "",
    ...headline.results.map((r) => {
      const base = headline.results.find((x) => x.variant === baselineOf(r.variant));
      const cpu = inWorkerd(r.variant) ? "workerd CPU" : "server CPU";
      const extra =
        r.variant === base.variant
          ? `${us(r.cpuUsPerRequest)} of ${cpu} per request`
          : `${calls(r.callsPerDelivery)} store calls per delivery, ${cpu} ${us(r.cpuUsPerRequest)} per request (${base.variant} ${us(base.cpuUsPerRequest)})${Number.isFinite(r.serviceCpuUsPerRequest) ? ` (and ${us(r.serviceCpuUsPerRequest)} of ${r.variant.startsWith("redis") ? "the Redis server's" : "dynalite's"})` : ""}, p50 ${ms(r.latencyP50Ms)} against ${ms(base.latencyP50Ms)}`;
      const steps = levels
        .filter((level) => level.connections === 1 || level.connections === settings.headline)
        .map((level) => {
          const stepMs = level.results.find((x) => x.variant === r.variant).stepMs ?? {};
          const main = ["claim", "complete", "untrack"].filter((step) => step in stepMs);
          return main.length === 0
            ? undefined
            : `${main.map((step) => `${step} ${ms(stepMs[step])}`).join(", ")} at ${level.connections} connection${level.connections === 1 ? "" : "s"}`;
        })
        .filter(Boolean);
      const waits =
        steps.length === 0
          ? ""
          : ` The Worker waited per call (on its clock, which moves on I/O; the complete and the untrack overlap): ${steps.join("; ")}.`;
      return `- **${r.label}**: ${STORE_VARIANTS[r.variant].cause} At ${settings.headline} connections: ${extra}.${waits}`;
    }),
    "",
    `Services: ${Object.entries(result.services)
      .map(([name, text]) => `${name}: ${text}`)
      .join("; ")}.`,
    "",
  );
  return lines.join("\n");
}

/** The version of a package the bench depends on. */
export function storesVersions() {
  const dir = fileURLToPath(new URL("./node_modules/", import.meta.url));
  return [
    "@mappa-webhooks/redis",
    "@mappa-webhooks/postgres",
    "@mappa-webhooks/sqlite",
    "@mappa-webhooks/mysql",
    "@mappa-webhooks/dynamodb",
    "@mappa-webhooks/cloudflare",
    "ioredis",
    "pg",
    "better-sqlite3",
    "mysql2",
    "@aws-sdk/client-dynamodb",
    "dynalite",
    "miniflare",
    "wrangler",
  ].map((name) => {
    try {
      return [name, JSON.parse(readFileSync(join(dir, name, "package.json"), "utf8")).version];
    } catch {
      return [name, "?"];
    }
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runStores((line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.stderr.write(`\n${renderStores(result)}`);
}
