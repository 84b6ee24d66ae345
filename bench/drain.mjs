// Drain benchmark: how fast inbox workers (`createInboxWorker` of @mappa-webhooks/postgres) take
// and handle events as the backlog grows (1k, 10k, 100k pending), next to a done table of 1M
// rows (as loaded, and right after `inbox.prune(...)` deleted them), and per added worker
// process (1, 2, 4).
//
// Every measurement: worker processes (postgres/worker.mjs, 4 slots each by default) start on
// an empty inbox and LISTEN; one `INSERT … SELECT generate_series` then stores the backlog
// (valid 1 KiB `report.completed` events as `createInbox` stores them) and NOTIFYs at its
// commit. Each event's handler writes one effect row, stamped with `clock_timestamp()`, in the
// event's transaction. The rate is read from those stamps over a fixed window of events (e.g.
// effects 500 to 5,500), not from the whole backlog, so the 100k case stays short and start-up
// is left out. Then the workers stop, exactly-once is checked (effect rows = distinct events =
// done events, no stray effect, nothing failed) and the rows of the measurement are removed.
// Scenarios run in interleaved rounds (each round in a rotated order); every ratio is taken
// against its baseline of the same round, and the result is the median over the rounds.
//
// At the end the worker's take statement (recorded from a real worker, text and values) is
// EXPLAIN (ANALYZE, BUFFERS)ed with 1k pending and an empty done table, with 100k pending next
// to the done table and the pruned one, right after 50k events were handled, and with 100k
// events waiting for a retry: which index it uses and what one take costs.
//
// `node drain.mjs` (quick, ~2 min): 100k done rows, windows of 800 and 1,500 events, 2 rounds.
// BENCH_DRAIN_FULL=1 (~5 min): 1M done rows, windows of 800 and 2,500 events, 5 rounds.
// Env: DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_DRAIN_FULL,
// BENCH_DRAIN_ROUNDS, BENCH_DRAIN_DONE_ROWS, BENCH_DRAIN_WINDOW (the long window's events),
// BENCH_DRAIN_CONCURRENCY (slots per worker process, 4), BENCH_DRAIN_BATCH (batchSize, 1).
// JSON on stdout, the markdown section on stderr.
import { randomBytes } from "node:crypto";
import os from "node:os";
import { createInbox, migrate } from "@mappa-webhooks/postgres";
import pg from "pg";
import {
  checkExactlyOnce,
  cleanUp,
  countEffects,
  createEffects,
  eventKey,
  explainStatement,
  loadEvents,
  recordWorkerStatements,
  tableCounters,
  windowRate,
} from "./drain/sql.mjs";
import { startWorkers } from "./drain/workers.mjs";
import { formatInteger, formatRatio, median, quantile } from "./lib/stats.mjs";

const DRAIN_DEADLINE_MS = 300_000;
const POLL_MS = 100;
const EXPLAIN_REPEAT = 11;

/** The settings of a quick run (`pnpm bench`) and of a full one (`BENCH_DRAIN_FULL=1`). */
export const DRAIN_MODES = Object.freeze({
  quick: { rounds: 2, doneRows: 100_000, shortWindow: [100, 800], longWindow: [150, 1500] },
  full: { rounds: 5, doneRows: 1_000_000, shortWindow: [100, 800], longWindow: [250, 2500] },
});

/** Options of {@link runDrain} from the environment (see the header). */
export function drainOptionsFromEnv(env = process.env) {
  const mode = env.BENCH_DRAIN_FULL === "1" ? "full" : "quick";
  const base = DRAIN_MODES[mode];
  const number = (name, fallback) => (env[name] === undefined ? fallback : Number(env[name]));
  const long = number("BENCH_DRAIN_WINDOW", base.longWindow[1]);
  return {
    mode,
    databaseUrl: env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test",
    rounds: number("BENCH_DRAIN_ROUNDS", base.rounds),
    doneRows: number("BENCH_DRAIN_DONE_ROWS", base.doneRows),
    shortWindow: base.shortWindow,
    longWindow: [Math.max(base.longWindow[0], Math.round(long / 10)), long],
    concurrency: number("BENCH_DRAIN_CONCURRENCY", 4),
    batchSize: number("BENCH_DRAIN_BATCH", 1),
  };
}

/**
 * The scenarios. `table`: which done table the inbox has (`empty`, `done`: `doneRows` handled
 * events, `pruned`: the same after `inbox.prune`); `windows`: which rates are read.
 */
function scenarios() {
  return [
    { id: "p1k", pending: 1_000, table: "empty", workers: 1, windows: ["short"] },
    { id: "p10k", pending: 10_000, table: "empty", workers: 1, windows: ["short", "long"] },
    { id: "p100k", pending: 100_000, table: "empty", workers: 1, windows: ["short", "long"] },
    { id: "done", pending: 10_000, table: "done", workers: 1, windows: ["long"] },
    { id: "pruned", pending: 10_000, table: "pruned", workers: 1, windows: ["long"] },
    { id: "w2", pending: 10_000, table: "empty", workers: 2, windows: ["long"] },
    { id: "w4", pending: 10_000, table: "empty", workers: 4, windows: ["long"] },
  ];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One measurement: start the workers, store the backlog, read the windows, check, clean up. */
async function measure(pool, options, schemas, scenario, tag) {
  const schema = schemas[scenario.table];
  const windows = { short: options.shortWindow, long: options.longWindow };
  const target = Math.max(...scenario.windows.map((w) => windows[w][0] + windows[w][1])) + 1;
  if (target > scenario.pending) {
    throw new Error(`${scenario.id}: a window of ${target} events needs more pending events`);
  }
  const group = await startWorkers({
    count: scenario.workers,
    schema,
    databaseUrl: options.databaseUrl,
    concurrency: options.concurrency,
    batchSize: options.batchSize,
  });
  let perWorker;
  let before;
  try {
    // The load's own block counts are flushed before the first reading: the difference is
    // the workers' (their backends flush when they exit).
    const loader = await pool.connect();
    try {
      await loadEvents(loader, schema, { tag, count: scenario.pending, status: "pending" });
      await loader.query("SELECT pg_stat_force_next_flush()");
    } finally {
      loader.release();
    }
    before = await tableCounters(pool, schema);
    const deadline = Date.now() + DRAIN_DEADLINE_MS;
    let effects = 0;
    while (effects < target && Date.now() < deadline) {
      await sleep(POLL_MS);
      effects = await countEffects(pool, schema);
    }
    if (effects < target) {
      throw new Error(`${scenario.id}: only ${effects} of ${target} events drained in time`);
    }
    perWorker = await group.stats();
  } finally {
    await group.close();
  }
  // Context, not the measure: blocks read or hit in the events table per event, read before
  // any check below touches the table (the workers' backends flushed their counts at exit).
  const after = await tableCounters(pool, schema);
  const result = { id: scenario.id, tag, rates: {} };
  for (const name of scenario.windows) {
    const [skip, count] = windows[name];
    result.rates[name] = { skip, count, ...(await windowRate(pool, schema, skip, count)) };
    if (result.rates[name].distinctKeys !== count) {
      throw new Error(`${scenario.id}: ${result.rates[name].distinctKeys} distinct of ${count}`);
    }
  }
  result.exactlyOnce = await checkExactlyOnce(pool, schema, tag);
  const handled = result.exactlyOnce.rows;
  result.perWorker = perWorker;
  result.deadTuplesAtStart = before.dead;
  result.blocksPerEvent = {
    heap: (after.heap_blocks - before.heap_blocks) / handled,
    index: (after.index_blocks - before.index_blocks) / handled,
  };
  await cleanUp(pool, schema, { keepsDoneTable: scenario.table !== "empty" });
  return result;
}

/** The schemas: an empty inbox, one beside `doneRows` done events, one where prune deleted them. */
async function prepare(pool, options, prefix, log) {
  const schemas = { empty: `${prefix}_e`, done: `${prefix}_d`, pruned: `${prefix}_p` };
  const setup = {};
  for (const [name, schema] of Object.entries(schemas)) {
    await migrate({ pool, schema });
    await createEffects(pool, schema);
    if (name === "empty") continue;
    const started = performance.now();
    // Handled 60 days ago: `prune({ olderThanDays: 30 })` deletes every one of them.
    await loadEvents(pool, schema, {
      tag: "old",
      count: options.doneRows,
      status: "done",
      ageDays: 60,
    });
    // As autovacuum would leave a table that grew over weeks (visibility map, statistics).
    await pool.query(`VACUUM (ANALYZE) "${schema}".events`);
    setup[name] = { loadSeconds: (performance.now() - started) / 1000 };
    log(`drain: ${formatInteger(options.doneRows)} done rows in ${schema}`);
  }
  const pruneStarted = performance.now();
  const inbox = createInbox({ pool, schema: schemas.pruned });
  const pruned = await inbox.prune({ olderThanDays: 30 });
  setup.pruned.prune = { ...pruned, seconds: (performance.now() - pruneStarted) / 1000 };
  setup.pruned.afterPrune = await tableCounters(pool, schemas.pruned);
  setup.done.size = await tableCounters(pool, schemas.done);
  log(`drain: prune deleted ${formatInteger(pruned.events)} events`);
  return { schemas, setup };
}

/** The take and the lock as `createInboxWorker` sent them before the change that bounds them. */
const beforeChange = {
  take: (text) =>
    text.replace("run_at <= (SELECT clock_timestamp())", "run_at <= clock_timestamp()"),
  lock: (text) => text.replace("status NOT IN ('done', 'failed')", "status = 'pending'"),
};

/**
 * The take statement EXPLAINed in five states, each twice (see `variants`): 1k pending beside an
 * empty done table; 100k pending beside the done table and beside the pruned one; 100k pending
 * whose oldest 50k were just handled (their dead index entries at the head of the pending
 * index, before and after VACUUM); and 100k pending all waiting for a retry (none due: what
 * every idle poll of a worker then costs).
 */
async function explainStates(pool, options, schemas, log) {
  const recorded = await recordWorkerStatements(options.databaseUrl, schemas.empty);
  const stats = ["as loaded", "after ANALYZE", (s) => pool.query(`ANALYZE "${s}".events`)];
  const vacuum = [
    "not vacuumed",
    "after VACUUM",
    (s) => pool.query(`VACUUM (ANALYZE) "${s}".events`),
  ];
  const handleOldest = (schema, count) =>
    pool.query(
      `UPDATE "${schema}".events
          SET status = 'done', attempts = 1, done_at = clock_timestamp(), updated_at = clock_timestamp()
        WHERE key IN (SELECT key FROM "${schema}".events WHERE status = 'pending' ORDER BY run_at LIMIT $1)`,
      [count],
    );
  const states = [
    { id: "p1k-empty", table: "empty", pending: 1_000, variants: stats },
    { id: "p100k-done", table: "done", pending: 100_000, variants: stats },
    { id: "p100k-pruned", table: "pruned", pending: 100_000, variants: stats },
    {
      id: "p100k-handled50k",
      table: "empty",
      pending: 100_000,
      variants: vacuum,
      after: (schema) => handleOldest(schema, 50_000),
    },
    // Due in about an hour, 1 ms apart: a backlog of retries waiting for their backoff.
    { id: "p100k-future", table: "empty", pending: 100_000, ageDays: -1 / 24, variants: vacuum },
  ];
  const results = [];
  for (const state of states) {
    const schema = schemas[state.table];
    await loadEvents(pool, schema, {
      tag: "explain",
      count: state.pending,
      status: "pending",
      ageDays: state.ageDays ?? 0,
    });
    await state.after?.(schema);
    const inSchema = (text) => text.replaceAll(`"${schemas.empty}"`, `"${schema}"`);
    // The lock of the newest pending event: where a taken event sits in the pending index
    // (its lease moved its run_at to the end).
    const statements = {
      take: { ...recorded.take, text: inSchema(recorded.take.text) },
      lock: {
        ...recorded.lock,
        text: inSchema(recorded.lock.text).replace(
          `'${recorded.lock.key}'`,
          `'${eventKey("explain", state.pending)}'`,
        ),
      },
    };
    // The same statements as worker.ts wrote them before their change (a volatile bound on
    // run_at; `status = 'pending'` in the lock), for comparison in the same state.
    const before = {
      take: { ...statements.take, text: beforeChange.take(statements.take.text) },
      lock: { ...statements.lock, text: beforeChange.lock(statements.lock.text) },
    };
    const explainBoth = async () => {
      const result = {
        take: await explainStatement(pool, statements.take, EXPLAIN_REPEAT),
        lock: await explainStatement(pool, statements.lock, EXPLAIN_REPEAT),
      };
      if (before.take.text !== statements.take.text) {
        result.takeBefore = await explainStatement(pool, before.take, EXPLAIN_REPEAT);
      }
      if (before.lock.text !== statements.lock.text) {
        result.lockBefore = await explainStatement(pool, before.lock, EXPLAIN_REPEAT);
      }
      return result;
    };
    const [firstName, secondName, between] = state.variants;
    const first = await explainBoth();
    await between(schema);
    const second = await explainBoth();
    results.push({
      id: state.id,
      table: state.table,
      pending: state.pending,
      variants: [
        { name: firstName, ...first },
        { name: secondName, ...second },
      ],
    });
    await cleanUp(pool, schema, { keepsDoneTable: state.table !== "empty" });
    log(
      `drain: EXPLAIN ${state.id}: take ${first.take.executionMs.toFixed(2)} / ${second.take.executionMs.toFixed(2)} ms, lock ${first.lock.executionMs.toFixed(2)} / ${second.lock.executionMs.toFixed(2)} ms`,
    );
  }
  return {
    take: recorded.take.text.replaceAll(`"${schemas.empty}".`, ""),
    lock: recorded.lock.text.replaceAll(`"${schemas.empty}".`, ""),
    states: results,
  };
}

const summary = (values) => ({
  median: median(values),
  p25: quantile(values, 0.25),
  p75: quantile(values, 0.75),
  min: Math.min(...values),
  max: Math.max(...values),
});

/**
 * Runs the drain benchmark in schemas of its own (dropped after) and returns the raw runs and
 * the summarised rates and ratios; `log` gets progress lines.
 *
 * @example
 * ```js
 * import { renderDrain, runDrain } from "./drain.mjs";
 * const result = await runDrain(console.log, { rounds: 1, doneRows: 10_000 });
 * console.log(renderDrain(result));
 * ```
 */
export async function runDrain(log = () => {}, options = {}) {
  const settings = { ...drainOptionsFromEnv(), ...options };
  const pool = new pg.Pool({ connectionString: settings.databaseUrl, max: 3 });
  pool.on("error", () => {});
  const prefix = `mappa_drain_${process.pid}_${randomBytes(3).toString("hex")}`;
  const started = performance.now();
  const loadAtStart = os.loadavg();
  const allSchemas = ["e", "d", "p"].map((suffix) => `${prefix}_${suffix}`);
  try {
    const server = await pool.query(
      `SELECT version() AS version, current_setting('synchronous_commit') AS synchronous_commit,
              current_setting('autovacuum') AS autovacuum, current_setting('shared_buffers') AS shared_buffers`,
    );
    const { schemas, setup } = await prepare(pool, settings, prefix, log);
    const list = scenarios();
    const runs = [];
    for (let round = 0; round < settings.rounds; round++) {
      const order = list.map((_, k) => list[(round * 3 + k) % list.length]);
      const byId = {};
      for (const scenario of order) {
        const tag = `r${round}${scenario.id}`;
        byId[scenario.id] = await measure(pool, settings, schemas, scenario, tag);
        const rates = Object.entries(byId[scenario.id].rates)
          .map(([name, r]) => `${name} ${formatInteger(r.eventsPerSec)}/s`)
          .join(", ");
        log(`drain round ${round + 1}/${settings.rounds} ${scenario.id}: ${rates}`);
      }
      runs.push(byId);
    }
    const rate = (id, w) => runs.map((r) => r[id].rates[w].eventsPerSec);
    const ratio = (id, w, base) =>
      summary(runs.map((r) => r[id].rates[w].eventsPerSec / r[base].rates[w].eventsPerSec));
    const cell = (id, w, base) => ({ eventsPerSec: median(rate(id, w)), vs: ratio(id, w, base) });
    const context = (id) => ({
      deadTuplesAtStart: median(runs.map((r) => r[id].deadTuplesAtStart)),
      heapBlocksPerEvent: median(runs.map((r) => r[id].blocksPerEvent.heap)),
      indexBlocksPerEvent: median(runs.map((r) => r[id].blocksPerEvent.index)),
      exactlyOnce: runs.every((r) => r[id].exactlyOnce.ok),
      perWorker: runs.map((r) => r[id].perWorker),
    });
    const pending = list
      .filter((s) => s.table === "empty" && s.workers === 1)
      .map((s) => ({
        id: s.id,
        pending: s.pending,
        short: cell(s.id, "short", "p1k"),
        long: s.windows.includes("long") ? cell(s.id, "long", "p10k") : undefined,
        ...context(s.id),
      }));
    const doneTable = ["p10k", "done", "pruned"].map((id) => ({
      id,
      table: list.find((s) => s.id === id).table,
      ...cell(id, "long", "p10k"),
      ...context(id),
    }));
    const workers = ["p10k", "w2", "w4"].map((id) => ({
      id,
      workers: list.find((s) => s.id === id).workers,
      ...cell(id, "long", "p10k"),
      ...context(id),
    }));
    log("drain: EXPLAIN of the take and the lock");
    const explain = await explainStates(pool, settings, schemas, log);
    return {
      settings,
      postgres: server.rows[0],
      machine: { cpus: os.cpus().length, loadAtStart, loadAtEnd: os.loadavg() },
      seconds: (performance.now() - started) / 1000,
      setup,
      pending,
      doneTable,
      workers,
      explain,
      exactlyOnce: runs.every((r) => Object.values(r).every((m) => m.exactlyOnce.ok)),
      runs,
    };
  } finally {
    for (const schema of allSchemas) {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    }
    await pool.end();
  }
}

const ratioText = (vs) =>
  `${formatRatio(vs.median)} [${formatRatio(vs.min)}–${formatRatio(vs.max)}]`;
const mib = (bytes) => `${formatInteger(bytes / (1024 * 1024))} MiB`;
const check = (ok) => (ok ? "yes" : "**no**");

/**
 * The markdown section of BENCHMARKS.md for a {@link runDrain} result.
 *
 * @example
 * ```js
 * process.stdout.write(renderDrain(await runDrain()));
 * ```
 */
export function renderDrain(result) {
  const { settings, postgres, machine, setup } = result;
  const [shortSkip, shortCount] = settings.shortWindow;
  const [longSkip, longCount] = settings.longWindow;
  const done = formatInteger(settings.doneRows);
  const lines = [];
  lines.push(
    "## Postgres: draining with a growing backlog, a large done table, more workers (`node drain.mjs`)",
    "",
    `Run with \`cd bench && ${settings.mode === "full" ? "BENCH_DRAIN_FULL=1 " : ""}node drain.mjs\` (${settings.mode} mode, ${settings.rounds} interleaved rounds, ${Math.round(result.seconds)} s). PostgreSQL ${postgres.version.split(" ")[1]}, \`synchronous_commit = ${postgres.synchronous_commit}\`, \`autovacuum = ${postgres.autovacuum}\`, \`shared_buffers = ${postgres.shared_buffers}\`; ${machine.cpus} cores, load average ${machine.loadAtStart[0].toFixed(1)} at the start and ${machine.loadAtEnd[0].toFixed(1)} at the end.`,
    "",
    `Worker processes (\`createInboxWorker\`, ${settings.concurrency} slots each, \`batchSize\` ${settings.batchSize}) wait on an empty inbox; one \`INSERT … SELECT generate_series\` stores the backlog (valid 1 KiB \`report.completed\` events keyed as \`createInbox\` keys them, \`run_at\` 1 ms apart) and NOTIFYs at its commit. Each handler writes one effect row, stamped by \`clock_timestamp()\`, in the event's transaction. The rate is read from those stamps over a fixed window: effects ${formatInteger(shortSkip)} to ${formatInteger(shortSkip + shortCount)} (${formatInteger(shortCount)} events, what a 1k backlog allows) and effects ${formatInteger(longSkip)} to ${formatInteger(longSkip + longCount)} (${formatInteger(longCount)} events). Ratios are to the baseline of the same round, median [min–max] over the rounds; events/s are medians, for context. After each measurement the workers stop and exactly-once is checked: effect rows = distinct events = done events, no effect of an event that is not done, nothing failed.`,
    "",
    "**Backlog** (1 worker process, empty done table):",
    "",
    `| pending | events/s (${formatInteger(shortCount)}) | vs 1k | events/s (${formatInteger(longCount)}) | vs 10k | exactly once |`,
    "|---:|---:|---:|---:|---:|:---:|",
  );
  for (const row of result.pending) {
    lines.push(
      `| ${formatInteger(row.pending)} | ${formatInteger(row.short.eventsPerSec)} | **${ratioText(row.short.vs)}** | ${row.long ? formatInteger(row.long.eventsPerSec) : "–"} | ${row.long ? ratioText(row.long.vs) : "–"} | ${check(row.exactlyOnce)} |`,
    );
  }
  const tableLabel = {
    empty: "empty",
    done: `${done} done rows (${mib(setup.done.size.bytes)} with indexes, vacuumed)`,
    pruned: `${done} done rows deleted by \`inbox.prune({ olderThanDays: 30 })\` just before (their ${formatInteger(setup.pruned.prune.events)} dead tuples not vacuumed)`,
  };
  lines.push(
    "",
    `**Done table** (10,000 pending, 1 worker process; prune took ${setup.pruned.prune.seconds.toFixed(1)} s for ${formatInteger(setup.pruned.prune.events)} events):`,
    "",
    `| done table | events/s (${formatInteger(longCount)}) | vs empty | heap / index blocks per event | exactly once |`,
    "|---|---:|---:|---:|:---:|",
  );
  for (const row of result.doneTable) {
    lines.push(
      `| ${tableLabel[row.table]} | ${formatInteger(row.eventsPerSec)} | **${ratioText(row.vs)}** | ${row.heapBlocksPerEvent.toFixed(1)} / ${row.indexBlocksPerEvent.toFixed(1)} | ${check(row.exactlyOnce)} |`,
    );
  }
  lines.push(
    "",
    `**Worker processes** (10,000 pending, empty done table, ${settings.concurrency} slots each):`,
    "",
    `| processes | connections | events/s (${formatInteger(longCount)}) | vs 1 process | events per process (last round) | exactly once |`,
    "|---:|---:|---:|---:|---|:---:|",
  );
  for (const row of result.workers) {
    const last = row.perWorker.at(-1) ?? [];
    lines.push(
      `| ${row.workers} | ${row.workers * (settings.concurrency + 1)} | ${formatInteger(row.eventsPerSec)} | **${ratioText(row.vs)}** | ${last.map(formatInteger).join(" / ")} | ${check(row.exactlyOnce)} |`,
    );
  }
  lines.push(
    "",
    `**The take and the lock** (both statements recorded from a real worker: the take, and the lock of the taken event in its own transaction, here of the newest pending event; EXPLAIN (ANALYZE, BUFFERS) in a rolled-back transaction, median of ${EXPLAIN_REPEAT}, no worker running; "as loaded" is right after the bulk insert, with the statistics of before it):`,
    "",
    "| state | variant | take: index | take: time, buffers | take before the change | lock: index | lock: time, buffers | lock before the change: index, time, buffers |",
    "|---|---|---|---:|---:|---|---:|---:|",
  );
  const stateLabel = {
    "p1k-empty": "1,000 pending, empty done table",
    "p100k-done": `100,000 pending, ${done} done rows`,
    "p100k-pruned": `100,000 pending, ${done} done rows pruned`,
    "p100k-handled50k": "100,000 pending, the oldest 50,000 of them just handled",
    "p100k-future": "100,000 pending, none due (all waiting for a retry in ~1 h)",
  };
  const cost = (e) => `${e.executionMs.toFixed(2)} ms, ${formatInteger(e.buffers)}`;
  const indexes = (e) =>
    `${e.indexes.map((i) => `\`${i}\``).join(", ")}${e.seqScan ? ", **seq scan**" : ""}`;
  for (const state of result.explain.states) {
    for (const { name, take, lock, takeBefore, lockBefore } of state.variants) {
      lines.push(
        `| ${stateLabel[state.id]} | ${name} | ${indexes(take)} | ${cost(take)} | ${takeBefore ? cost(takeBefore) : "–"} | ${indexes(lock)} | ${cost(lock)} | ${lockBefore ? `${indexes(lockBefore)}, ${cost(lockBefore)}` : "–"} |`,
      );
    }
  }
  const big = result.explain.states.find((s) => s.id === "p100k-done");
  lines.push(
    "",
    `The take at 100,000 pending beside ${done} done rows (after ANALYZE):`,
    "",
    "```",
    big.variants[1].take.plan,
    "```",
    "",
    "The lock there (as loaded), before the change and now:",
    "",
    "```",
    big.variants[0].lockBefore?.plan ?? "(not measured)",
    "```",
    "",
    "```",
    big.variants[0].lock.plan,
    "```",
    "",
    `Exactly once in every measurement: ${result.exactlyOnce ? "yes" : "**no**"}.`,
  );
  return `${lines.join("\n")}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runDrain((line) => process.stderr.write(`${line}\n`));
  process.stderr.write(`\n${renderDrain(result)}`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
