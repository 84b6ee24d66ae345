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
      // Two primary keys and four indexes of our own, none cut short into a clash.
      expect(indexes.rows).toHaveLength(6);
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
      expect(tables?.rows[0].n).toBe(2);
    } finally {
      await pools[0]?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await Promise.all(pools.map((pool) => pool.end()));
    }
  });
});
