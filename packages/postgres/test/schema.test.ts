import { parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { describe, expect, it } from "vitest";
import {
  createInbox,
  createInboxWorker,
  createPostgresIdempotencyStore,
  migrate,
  quoteIdentifier,
  schemaSql,
} from "../src/index.js";
import { createPool, uniqueSchema, waitFor } from "./helpers.js";

describe("schema and table names", () => {
  it("quotes any name safely and rejects unusable ones", () => {
    expect(quoteIdentifier("events")).toBe('"events"');
    expect(quoteIdentifier('a "b"; DROP TABLE x; --')).toBe('"a ""b""; DROP TABLE x; --"');
    for (const bad of ["", "x\0y", "é".repeat(32)]) {
      expect(() => quoteIdentifier(bad)).toThrow(
        expect.objectContaining({ code: "invalid_options" }),
      );
    }
  });

  it("works end to end with odd schema and table names, long ones included", async () => {
    const pool = createPool();
    const schema = `${uniqueSchema("odd")} "q"`;
    const names = {
      schema,
      eventsTable: `Events; DROP TABLE x -- ${"e".repeat(30)}`,
      idempotencyTable: "Idem Keys",
    };
    try {
      await migrate({ pool, ...names });
      expect(schemaSql(names)).toContain(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)};`);
      const inbox = createInbox({ pool, ...names });
      const worker = createInboxWorker({
        pool,
        ...names,
        pollIntervalMs: 60_000,
        on: { "report.completed": () => {} },
      });
      await worker.ready;
      const event = parseEvent(JSON.stringify(createTestEvent("report.completed")));
      expect(await inbox.store(event)).toBe(true);
      // Woken by NOTIFY on the derived channel (polling is a minute away).
      await waitFor(
        async () => (await inbox.get(event.idempotencyKey as string))?.status === "done",
        20_000,
      );
      await worker.close();
      const store = createPostgresIdempotencyStore({ pool, ...names });
      expect((await store.claim("evt_odd", { leaseMs: 1000 })).status).toBe("claimed");
      const indexes = await pool.query("SELECT indexname FROM pg_indexes WHERE schemaname = $1", [
        schema,
      ]);
      // Three primary keys and four indexes of our own, none cut short into a clash.
      expect(indexes.rows).toHaveLength(7);
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`);
      await pool.end();
    }
  });

  it("lets several processes migrate at the same moment", async () => {
    const schema = uniqueSchema("race");
    const pools = Array.from({ length: 4 }, () => createPool({ max: 1 }));
    try {
      await Promise.all(pools.map((pool) => migrate({ pool, schema })));
      const tables = await pools[0]?.query(
        "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1",
        [schema],
      );
      expect(tables?.rows[0].n).toBe(3);
    } finally {
      await pools[0]?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await Promise.all(pools.map((pool) => pool.end()));
    }
  });

  it("upgrades a schema 1 (before job tracking) by adding the tracked jobs table", async () => {
    const pool = createPool();
    const schema = uniqueSchema("v1");
    try {
      // Schema 1 exactly: today's SQL without the tracked jobs table, marked version 1.
      const v2 = schemaSql({ schema });
      const v1 = v2
        .replace(/-- The jobs createMappaRecovery tracks[\s\S]*?\n\);\n/, "")
        .replace(/schema 2';/, "schema 1';");
      expect(v1).not.toContain("tracked_jobs");
      await pool.query(v1);
      const store = createPostgresIdempotencyStore({ pool, schema });
      expect((await store.claim("evt_v1", { leaseMs: 60_000 })).status).toBe("claimed");
      await expect(store.track("job_v1")).rejects.toMatchObject({
        code: "idempotency_store_failed",
      });

      await migrate({ pool, schema });
      const comment = await pool.query(
        "SELECT obj_description(to_regclass($1), 'pg_class') AS comment",
        [`"${schema}"."events"`],
      );
      expect(comment.rows[0].comment).toBe("@mappa-webhooks/postgres schema 2");
      // The old rows are kept, and jobs are tracked now.
      expect(await store.claim("evt_v1", { leaseMs: 60_000 })).toEqual({ status: "in_flight" });
      await store.track("job_v1", { trackedAt: 1_000 });
      expect(await store.tracked({ limit: 10 })).toEqual([{ jobId: "job_v1", trackedAt: 1_000 }]);
      // Running it again changes nothing.
      await migrate({ pool, schema });
      expect(await store.tracked({ limit: 10 })).toEqual([{ jobId: "job_v1", trackedAt: 1_000 }]);
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`);
      await pool.end();
    }
  });
});
