// The worker's statements keep their plans when the table statistics are stale: recorded
// from a real worker, then EXPLAINed in a table last analyzed while nothing was pending, with a
// backlog stored since. (A lock that read the whole backlog made each event cost O(pending).)

import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInboxWorker } from "../src/index.js";
import { createTestDatabase, DATABASE_URL, type TestDatabase, waitFor } from "./helpers.js";

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Index Cond"?: string;
  Plans?: PlanNode[];
}
const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)];

const store = (db: TestDatabase, status: "pending" | "done", from: number, count: number) =>
  db.pool.query(
    `INSERT INTO "${db.schema}".events (key, event_id, type, payload, status, done_at)
     SELECT 'k' || n, 'evt_' || n, 'report.completed',
            json_build_object('id', 'evt_' || n, 'type', 'report.completed',
                              'data', json_build_object('jobId', 'job_' || n, 'reportId', 'r', 'status', 'succeeded')),
            $1, CASE WHEN $1 = 'done' THEN now() END
       FROM generate_series($2::int, $2::int + $3::int - 1) AS n`,
    [status, from, count],
  );

describe("inbox worker statements", () => {
  let db: TestDatabase;
  const seen: string[] = [];
  beforeAll(async () => {
    db = await createTestDatabase("plans");
    class RecordingClient extends pg.Client {
      // biome-ignore lint/suspicious/noExplicitAny: pg's overloads
      override query(config: any, values?: any, callback?: any): any {
        if (typeof config === "string") seen.push(config);
        return super.query(config, values, callback);
      }
    }
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2, Client: RecordingClient });
    pool.on("error", () => {});
    await store(db, "pending", 0, 1);
    const worker = createInboxWorker({ pool, schema: db.schema, listen: false });
    await waitFor(() => worker.stats.done === 1, 30_000);
    await worker.close();
    await pool.end();
    // Analyzed with nothing pending, then a backlog: the planner believes none is pending.
    await db.pool.query(`TRUNCATE "${db.schema}".events`);
    await store(db, "done", 1, 20_000);
    await db.pool.query(`ANALYZE "${db.schema}".events`);
    await store(db, "pending", 20_001, 5_000);
  });
  afterAll(() => db.drop());

  const explain = async (sql: string, values: unknown[] = []) => {
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      const result = await client.query(`EXPLAIN (FORMAT JSON) ${sql}`, values);
      return nodes(result.rows[0]["QUERY PLAN"][0].Plan);
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  };

  it("lock a taken event through the primary key, not by reading the pending backlog", async () => {
    const batch = seen.find((sql) => sql.includes("ORDER BY key FOR UPDATE")) as string;
    const lock = batch.slice(batch.indexOf("SELECT key, attempts")).replace("'k0'", "'k25000'");
    const scans = (await explain(lock)).filter((n) => n["Index Name"] !== undefined);
    expect(scans.map((n) => n["Index Name"])).toEqual(["events_pkey"]);
  });

  it("bound the take's scan of the pending index by the current time", async () => {
    const take = seen.find((sql) => sql.includes("SKIP LOCKED")) as string;
    const pending = (await explain(take, [1, 10, 2000])).find(
      (n) => n["Index Name"] === "events_pending_idx",
    );
    expect(pending?.["Index Cond"]).toMatch(/run_at <=/);
  });
});
