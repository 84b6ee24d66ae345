// SQL of the drain benchmark: bulk loads of valid stored events, the effects table, the
// measurement window, and the take query as the worker really sends it (recorded, then
// EXPLAINed).
import { createInboxWorker } from "@mappa-webhooks/postgres";
import pg from "pg";
import { createEventBody } from "../lib/fixtures.mjs";

const TEMPLATE = JSON.parse(createEventBody(1024));
const RECORD_TIMEOUT_MS = 30_000;

/** `"schema".name`, for the benchmark's own (plain) schema names. */
export const table = (schema, name) => `"${schema}".${name}`;

/**
 * One `INSERT … SELECT generate_series` of `count` events as `createInbox` stores them: key =
 * the event's idempotency key (`~job:report.completed:<jobId>`), its id, its type, the payload
 * (a 1 KiB `report.completed` of Mappa's wire shape, its own jobId and reportId). Rows get
 * distinct `run_at`/`received_at` 1 ms apart, oldest first, as if they had arrived one by one.
 * `status: "pending"` sends one NOTIFY at the commit; `status: "done"` stores handled events
 * (`done_at` `ageDays` ago), e.g. for `prune`.
 */
export async function loadEvents(pool, schema, { tag, count, status, ageDays = 0 }) {
  const channel = `${schema}.events`;
  const done = status === "done";
  const result = await pool.query(
    `WITH stored AS (
       INSERT INTO ${table(schema, "events")}
              (key, event_id, type, payload, status, attempts, run_at, received_at, done_at, updated_at)
       SELECT '~job:report.completed:job_' || $1 || '_' || n, 'evt_' || $1 || '_' || n,
              'report.completed',
              json_build_object('id', 'evt_' || $1 || '_' || n, 'type', 'report.completed',
                                'createdAt', $3::text, 'timestamp', $3::text,
                                'data', $4::jsonb || jsonb_build_object('jobId', 'job_' || $1 || '_' || n,
                                                                       'reportId', 'rep_' || $1 || '_' || n)),
              $5, $6::int, at, at, CASE WHEN $6::int > 0 THEN at END, at
         FROM generate_series(1, $2::int) AS n,
              LATERAL (SELECT now() - $7::double precision * interval '1 day'
                              - ($2::int - n) * interval '1 millisecond' AS at) AS times
       RETURNING 1)
     SELECT count(*)::int AS n, ${done ? "''" : "pg_notify($8, '')"} AS notified FROM stored`,
    [
      tag,
      count,
      TEMPLATE.createdAt,
      JSON.stringify(TEMPLATE.data),
      status,
      done ? 1 : 0,
      ageDays,
    ].concat(done ? [] : [channel]),
  );
  return result.rows[0].n;
}

/** The effects table: one row per handled event, stamped when the handler wrote it. */
export async function createEffects(pool, schema) {
  await pool.query(
    `CREATE TABLE ${table(schema, "effects")} (
       id bigserial PRIMARY KEY,
       event_key text NOT NULL,
       at timestamptz NOT NULL DEFAULT clock_timestamp())`,
  );
}

/** Effect rows so far. */
export async function countEffects(pool, schema) {
  const result = await pool.query(`SELECT count(*)::int AS n FROM ${table(schema, "effects")}`);
  return result.rows[0].n;
}

/**
 * Events per second over the `count` effects after the first `skip` (by their write time):
 * `count` divided by the time from effect `skip` to effect `skip + count`; and how many of
 * those effects name distinct events.
 */
export async function windowRate(pool, schema, skip, count) {
  const result = await pool.query(
    `WITH ordered AS (
       SELECT event_key, at, row_number() OVER (ORDER BY at, id) - 1 AS i
         FROM ${table(schema, "effects")}),
     bounds AS (SELECT $1::bigint AS first, $1::bigint + $2::bigint AS last)
     SELECT extract(epoch FROM max(at) FILTER (WHERE i = last) - max(at) FILTER (WHERE i = first))::float8 AS seconds,
            count(DISTINCT event_key) FILTER (WHERE i >= first AND i < last)::int AS distinct_keys
       FROM ordered, bounds`,
    [skip, count],
  );
  const { seconds, distinct_keys: distinctKeys } = result.rows[0];
  if (seconds === null) throw new Error(`fewer than ${skip + count + 1} effects to measure`);
  return { seconds, eventsPerSec: count / seconds, distinctKeys };
}

/**
 * Exactly-once, after the workers stopped: effect rows, distinct events among them, effects of
 * an event that is not done (or does not exist), done events of this load (`tag`) and failed
 * ones. Exactly once means rows = distinct = done, and no stray effect and no failure.
 */
export async function checkExactlyOnce(pool, schema, tag) {
  const effects = await pool.query(
    `SELECT count(*)::int AS rows, count(DISTINCT f.event_key)::int AS distinct_keys,
            count(*) FILTER (WHERE e.key IS NULL OR e.status <> 'done')::int AS stray
       FROM ${table(schema, "effects")} AS f
       LEFT JOIN ${table(schema, "events")} AS e ON e.key = f.event_key`,
  );
  const events = await pool.query(
    `SELECT count(*) FILTER (WHERE status = 'done')::int AS done,
            count(*) FILTER (WHERE status = 'failed')::int AS failed
       FROM ${table(schema, "events")}
      WHERE (status = 'done' AND done_at > now() - interval '1 day') OR status = 'failed'`,
  );
  const { rows, distinct_keys: distinctKeys, stray } = effects.rows[0];
  const { done, failed } = events.rows[0];
  // Keys of this load only: the done table's old rows are weeks old, so not counted above.
  const foreign = await pool.query(
    `SELECT count(*)::int AS n FROM ${table(schema, "effects")} WHERE event_key NOT LIKE $1`,
    [`~job:report.completed:job\\_${tag}\\_%`],
  );
  return {
    rows,
    distinct: distinctKeys,
    done,
    stray: stray + foreign.rows[0].n,
    failed,
    ok:
      rows === distinctKeys &&
      rows === done &&
      stray === 0 &&
      foreign.rows[0].n === 0 &&
      failed === 0,
  };
}

/**
 * Removes what one measurement left: its pending and newly done events, and the effects. Every
 * measurement then starts with a pending index as clean as a TRUNCATEd table's: the dead
 * entries of the removed events would otherwise lie at its head (older `run_at`) and every
 * take of the next measurement would step over them (what VACUUM clears; see the EXPLAIN of
 * "the oldest 50,000 just handled"). The done table's heap and other indexes stay as they are.
 */
export async function cleanUp(pool, schema, { keepsDoneTable }) {
  if (!keepsDoneTable) {
    await pool.query(`TRUNCATE ${table(schema, "events")}, ${table(schema, "effects")}`);
    return;
  }
  // Through the partial indexes (pending; done by done_at): the old done rows stay untouched.
  await pool.query(`DELETE FROM ${table(schema, "events")} WHERE status = 'pending'`);
  await pool.query(
    `DELETE FROM ${table(schema, "events")} WHERE status = 'done' AND done_at > now() - interval '1 day'`,
  );
  await pool.query(`REINDEX INDEX ${table(schema, "events_pending_idx")}`);
  await pool.query(`TRUNCATE ${table(schema, "effects")}`);
}

/** Table counters of the events table (cumulative; subtract two readings). */
export async function tableCounters(pool, schema) {
  const result = await pool.query(
    `SELECT s.n_live_tup::float8 AS live, s.n_dead_tup::float8 AS dead,
            (io.heap_blks_hit + io.heap_blks_read)::float8 AS heap_blocks,
            (coalesce(io.idx_blks_hit, 0) + coalesce(io.idx_blks_read, 0))::float8 AS index_blocks,
            pg_total_relation_size(s.relid)::float8 AS bytes
       FROM pg_stat_user_tables AS s JOIN pg_statio_user_tables AS io USING (relid)
      WHERE s.schemaname = $1 AND s.relname = 'events'`,
    [schema],
  );
  return result.rows[0];
}

/** The key `loadEvents` gives event `n` of a load tagged `tag`. */
export const eventKey = (tag, n) => `~job:report.completed:job_${tag}_${n}`;

/**
 * Two statements exactly as `createInboxWorker` sends them: the take (text, values and the
 * BEGIN before it) and the lock of the taken event in its own transaction (text; its key
 * literal is `key`). One worker with a recording client handles one event stored in `schema`
 * (whose inbox must be empty), then closes; the schema is emptied again.
 */
export async function recordWorkerStatements(databaseUrl, schema) {
  const seen = [];
  class RecordingClient extends pg.Client {
    query(config, values, callback) {
      if (typeof config === "string") seen.push({ text: config, values });
      return super.query(config, values, callback);
    }
  }
  const setupPool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  setupPool.on("error", () => {});
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, Client: RecordingClient });
  pool.on("error", () => {});
  const isLock = (q) => q.text.includes("ORDER BY key FOR UPDATE");
  try {
    await loadEvents(setupPool, schema, { tag: "record", count: 1, status: "pending" });
    const worker = createInboxWorker({ pool, schema, listen: false, pollIntervalMs: 60_000 });
    try {
      const deadline = Date.now() + RECORD_TIMEOUT_MS;
      while (worker.stats.done < 1 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await worker.close();
    }
    await setupPool.query(`TRUNCATE ${table(schema, "events")}`);
  } finally {
    await Promise.all([pool.end(), setupPool.end()]);
  }
  const take = seen.findIndex((q) => q.text.includes("SKIP LOCKED"));
  const lock = seen.find(isLock);
  if (take < 1 || lock === undefined) throw new Error("the worker's statements were not seen");
  return {
    take: { begin: seen[take - 1].text, text: seen[take].text, values: seen[take].values },
    lock: {
      begin: "BEGIN",
      text: lock.text.slice(lock.text.indexOf("SELECT key, attempts")),
      key: eventKey("record", 1),
    },
  };
}

/** Index names and node types in an EXPLAIN (FORMAT JSON) plan. */
function planNodes(plan, found = []) {
  found.push({
    node: plan["Node Type"],
    index: plan["Index Name"],
    relation: plan["Relation Name"],
    rowsRemoved: plan["Rows Removed by Filter"],
  });
  for (const child of plan.Plans ?? []) planNodes(child, found);
  return found;
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of a recorded statement (`{ begin, text, values }`) in a
 * transaction that is rolled back (the take is an UPDATE, the lock a SELECT … FOR UPDATE),
 * `repeat` times: the median execution time, the indexes the plan used, whether it scanned the
 * events table sequentially, its shared buffers, and the text plan of the last run.
 */
export async function explainStatement(pool, recorded, repeat) {
  const client = await pool.connect();
  try {
    const times = [];
    let nodes = [];
    let buffers = 0;
    for (let i = 0; i < repeat; i++) {
      await client.query(recorded.begin);
      try {
        const result = await client.query(
          `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${recorded.text}`,
          recorded.values,
        );
        const [{ Plan: plan, "Execution Time": ms }] = result.rows[0]["QUERY PLAN"];
        times.push(ms);
        nodes = planNodes(plan);
        buffers = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"];
      } finally {
        await client.query("ROLLBACK");
      }
    }
    await client.query(recorded.begin);
    let text;
    try {
      const result = await client.query(
        `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) ${recorded.text}`,
        recorded.values,
      );
      text = result.rows.map((row) => row["QUERY PLAN"]).join("\n");
    } finally {
      await client.query("ROLLBACK");
    }
    times.sort((a, b) => a - b);
    return {
      executionMs: times[Math.floor(times.length / 2)],
      buffers,
      indexes: [...new Set(nodes.map((n) => n.index).filter(Boolean))],
      seqScan: nodes.some((n) => n.node === "Seq Scan" && n.relation === "events"),
      plan: text,
    };
  } finally {
    client.release();
  }
}
