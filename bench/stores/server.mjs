// One receiver of the stores benchmark in its own process: `node stores/server.mjs <variant>`.
// Express + @mappa-webhooks/express with a no-op handler and the variant's idempotency store
// spread into the receiver options. Listens on 127.0.0.1:0, reports `{ type: "ready", port }`
// over IPC, answers `{ type: "stats" }` with `{ handled, calls }` (handler runs, and calls the
// store made to its database so far), exits when the parent disconnects.
//
// Variants (STORE_VARIANTS in ../stores.mjs has their labels):
//   memory      the default in-memory store (the baseline)
//   redis       createRedisIdempotencyStore, ioredis client            (BENCH_REDIS_URL, BENCH_PREFIX)
//   redis-autopipeline  diagnostic: the same with ioredis `enableAutoPipelining: true`
//   redis-no-untrack    diagnostic: the same without the job untrack (no recovery)
//   redis-unpaired      diagnostic: the complete and the untrack as two scripts (as on Cluster)
//   postgres    createPostgresIdempotencyStore, pg Pool                (DATABASE_URL, BENCH_SCHEMA)
//   sqlite      createSqliteIdempotencyStore, better-sqlite3 on a file (BENCH_SQLITE_FILE)
//   mysql       createMysqlIdempotencyStore, mysql2 Pool               (BENCH_MYSQL_URL: with the database)
//   dynamodb    createDynamoDbIdempotencyStore, DynamoDBClient         (BENCH_DYNAMODB_ENDPOINT, BENCH_TABLE)
//   sqlite-tx   sqlite createTransactionalHandlers (the done mark in the handler's transaction)
//   mysql-tx    mysql createTransactionalHandlers
// Env: BENCH_POOL_MAX (10), connections of the pg and mysql2 pools; BENCH_TRACE_CALLS=1 also
// counts the calls by kind.
//
// `calls` counts, in this process, what reaches the driver: ioredis `evalsha`/`eval`, pg
// `client.query`, mysql2 `query`/`execute` on its connections, DynamoDB `client.send`, and
// better-sqlite3 statement runs and `exec` (BEGIN, COMMIT). A counter increment per call.
import { mappaWebhook } from "@mappa-webhooks/express";
import express from "express";
import { SECRET, WEBHOOK_PATH } from "../lib/fixtures.mjs";

const [variant] = process.argv.slice(2);
const env = process.env;
const POOL_MAX = Number(env.BENCH_POOL_MAX ?? 10);

let handled = 0;
let calls = 0;
// BENCH_TRACE_CALLS=1: calls by what they were (the SQL's first words, the command), for `stats`.
const byKind = env.BENCH_TRACE_CALLS === "1" ? new Map() : undefined;
const kindOf = (name, self, first) => {
  const text =
    self?.source ?? (typeof first === "string" ? first : (first?.sql ?? first?.constructor?.name));
  return `${name} ${String(text ?? "")
    .replace(/\s+/g, " ")
    .slice(0, 48)}`;
};
const count = (owner, name) => {
  const original = owner[name];
  owner[name] = function counted(...args) {
    calls++;
    if (byKind !== undefined) {
      const kind = kindOf(name, this, args[0]);
      byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    }
    return original.apply(this, args);
  };
};
const handlers = {
  "report.completed": () => {
    handled++;
  },
};
const closers = [];

async function sqliteDatabase() {
  const { default: Database } = await import("better-sqlite3");
  const database = new Database(env.BENCH_SQLITE_FILE);
  const prepare = database.prepare.bind(database);
  database.prepare = (sql) => {
    const statement = prepare(sql);
    for (const name of ["run", "get", "all"]) count(statement, name);
    return statement;
  };
  count(database, "exec");
  closers.push(() => database.close());
  return database;
}

async function mysqlPool() {
  const { default: mysql } = await import("mysql2/promise");
  const pool = mysql.createPool({ uri: env.BENCH_MYSQL_URL, connectionLimit: POOL_MAX });
  // Every query of the promise pool and of its connections runs on a core connection.
  pool.pool.on("connection", (connection) => {
    count(connection, "query");
    count(connection, "execute");
  });
  closers.push(() => pool.end());
  return pool;
}

/** The receiver options of `variant`, without the secret. */
async function optionsOf() {
  switch (variant) {
    case "memory":
      return { on: handlers };
    case "redis":
    case "redis-autopipeline":
    case "redis-no-untrack":
    case "redis-unpaired": {
      const { Redis } = await import("ioredis");
      const { createRedisIdempotencyStore } = await import("@mappa-webhooks/redis");
      const client = new Redis(env.BENCH_REDIS_URL, {
        lazyConnect: true,
        enableAutoPipelining: variant === "redis-autopipeline",
      });
      await client.connect();
      count(client, "evalsha");
      count(client, "eval");
      closers.push(() => client.quit());
      const store = createRedisIdempotencyStore({ client, prefix: env.BENCH_PREFIX });
      // Diagnostic: without `untrack` the store is no job tracking store, so the receiver
      // skips the third script (what that round trip costs; recovery would then not work).
      if (variant === "redis-no-untrack") {
        return { idempotency: { ...store, untrack: undefined }, on: handlers };
      }
      // Diagnostic: the complete and the untrack as two scripts, as on Redis Cluster (through
      // a `{ runScript }` adapter, which the store never pairs), to show what pairing saves.
      if (variant === "redis-unpaired") {
        const runScript = async (script, keys, args) => {
          try {
            return await client.evalsha(script.sha1, keys.length, ...keys, ...args);
          } catch (error) {
            if (!String(error?.message).startsWith("NOSCRIPT")) throw error;
            return await client.eval(script.source, keys.length, ...keys, ...args);
          }
        };
        const unpaired = createRedisIdempotencyStore({
          client: { runScript },
          prefix: env.BENCH_PREFIX,
        });
        return { idempotency: unpaired, on: handlers };
      }
      return { idempotency: store, on: handlers };
    }
    case "postgres": {
      const { default: pg } = await import("pg");
      const { createPostgresIdempotencyStore } = await import("@mappa-webhooks/postgres");
      const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: POOL_MAX });
      pool.on("error", () => {});
      pool.on("connect", (client) => count(client, "query"));
      closers.push(() => pool.end());
      return {
        idempotency: createPostgresIdempotencyStore({ pool, schema: env.BENCH_SCHEMA }),
        on: handlers,
      };
    }
    case "sqlite": {
      const { createSqliteIdempotencyStore } = await import("@mappa-webhooks/sqlite");
      const idempotency = createSqliteIdempotencyStore({ database: await sqliteDatabase() });
      await idempotency.ready();
      return { idempotency, on: handlers };
    }
    case "sqlite-tx": {
      const { createTransactionalHandlers } = await import("@mappa-webhooks/sqlite");
      const tx = createTransactionalHandlers({ database: await sqliteDatabase(), on: handlers });
      await tx.ready();
      return tx.receiverOptions;
    }
    case "mysql": {
      const { createMysqlIdempotencyStore } = await import("@mappa-webhooks/mysql");
      return {
        idempotency: createMysqlIdempotencyStore({ pool: await mysqlPool() }),
        on: handlers,
      };
    }
    case "mysql-tx": {
      const { createTransactionalHandlers } = await import("@mappa-webhooks/mysql");
      return createTransactionalHandlers({ pool: await mysqlPool(), on: handlers }).receiverOptions;
    }
    case "dynamodb": {
      const { DynamoDBClient } = await import("@aws-sdk/client-dynamodb");
      const { createDynamoDbIdempotencyStore } = await import("@mappa-webhooks/dynamodb");
      const client = new DynamoDBClient({
        endpoint: env.BENCH_DYNAMODB_ENDPOINT,
        region: "local",
        credentials: { accessKeyId: "local", secretAccessKey: "local" },
      });
      count(client, "send");
      closers.push(() => client.destroy());
      return {
        idempotency: createDynamoDbIdempotencyStore({ client, tableName: env.BENCH_TABLE }),
        on: handlers,
      };
    }
    default:
      throw new Error(`unknown store variant ${variant}`);
  }
}

const options = await optionsOf();
const app = express();
app.disable("x-powered-by");
// No log lines: the forged delivery of the start-up check would print one.
app.use(mappaWebhook({ secret: SECRET, logger: false, ...options, path: WEBHOOK_PATH }));
const server = app.listen(0, "127.0.0.1");
await new Promise((resolve, reject) => server.once("listening", resolve).once("error", reject));

process.on("message", (message) => {
  if (message?.type !== "stats") return;
  const kinds = byKind === undefined ? undefined : Object.fromEntries(byKind);
  process.send({ type: "stats", handled, calls, kinds });
});
process.on("disconnect", async () => {
  server.close();
  server.closeAllConnections();
  for (const close of closers) await Promise.resolve(close()).catch(() => {});
  process.exit(0);
});
process.send({ type: "ready", port: server.address().port });
