import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schemaSql } from "../src/index.js";
import { createTestDatabase, DATABASE_URL, type TestDatabase, uniqueSchema } from "./helpers.js";

// The built executable, as `npx mappa-webhooks-postgres` runs it.
const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("cli");
});

afterAll(async () => {
  await db.drop();
});

function cli(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, DATABASE_URL: undefined, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const at = () => ["--database-url", DATABASE_URL, "--schema", db.schema];

async function seedFailed(keys: string[]): Promise<void> {
  for (const key of keys) {
    await db.pool.query(
      `INSERT INTO "${db.schema}".events (key, event_id, type, payload, status, attempts, last_error)
       VALUES ($1, $1, 'report.completed', '{}', 'failed', 10, 'boom')`,
      [key],
    );
  }
}

describe("mappa-webhooks-postgres", () => {
  it("prints help with exit 0, and usage errors with exit 2", async () => {
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^mappa-webhooks-postgres: /);
    for (const command of ["migrate", "stats", "failed", "replay", "prune"]) {
      expect(help.stdout).toContain(`  ${command}`);
    }
    for (const args of [
      [],
      ["frobnicate"],
      ["stats", "--nope"],
      ["replay"],
      ["replay", "k", "--all"],
      ["prune", "--days", "x"],
      ["failed", "--limit", "0"],
    ]) {
      const result = await cli([...args, "--database-url", DATABASE_URL]);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr).toMatch(
        /^error: .*\nRun mappa-webhooks-postgres --help for usage\.\n$/,
      );
    }
    const noDatabase = await cli(["stats"]);
    expect(noDatabase.code).toBe(2);
    expect(noDatabase.stderr).toMatch(/--database-url <url> or set DATABASE_URL/);
  });

  it("migrate --print prints the shipped schema.sql; migrate creates the tables (twice is fine)", async () => {
    const printed = await cli(["migrate", "--print"]);
    expect(printed.code).toBe(0);
    const shipped = readFileSync(new URL("../sql/schema.sql", import.meta.url), "utf8");
    expect(`${printed.stdout}`).toBe(shipped);
    expect(shipped).toBe(schemaSql());

    const schema = uniqueSchema("cli_migrate");
    try {
      for (let run = 0; run < 2; run++) {
        const migrated = await cli([
          "migrate",
          "--database-url",
          DATABASE_URL,
          "--schema",
          schema,
          "--json",
        ]);
        expect(migrated.code).toBe(0);
        expect(JSON.parse(migrated.stdout)).toEqual({ migrated: true, schema });
      }
      const tables = await db.pool.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
        [schema],
      );
      expect(tables.rows.map((row: { table_name: string }) => row.table_name)).toEqual([
        "events",
        "idempotency",
        "tracked_jobs",
      ]);
    } finally {
      await db.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });

  it("lists failed events, replays some or all, and reports keys that are not failed with exit 1", async () => {
    await seedFailed(["evt_cli_1", "evt_cli_2", "evt_cli_3"]);
    const listed = await cli(["failed", ...at(), "--json"]);
    expect(listed.code).toBe(0);
    const failed = JSON.parse(listed.stdout).failed as Array<{ key: string; attempts: number }>;
    expect(failed.map((event) => event.key).sort()).toEqual([
      "evt_cli_1",
      "evt_cli_2",
      "evt_cli_3",
    ]);
    expect(failed[0]?.attempts).toBe(10);
    const text = await cli(["failed", ...at()]);
    expect(text.stdout).toMatch(/^3 failed events \(newest first\):/);
    expect(text.stdout).toContain("boom");

    const one = await cli(["replay", "evt_cli_1", ...at(), "--json"]);
    expect(one.code).toBe(0);
    expect(JSON.parse(one.stdout)).toEqual({ replayed: ["evt_cli_1"], notFailed: [] });
    const again = await cli(["replay", "evt_cli_1", "evt_cli_2", ...at()]);
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(/^Replayed 1 event: evt_cli_2\./);
    expect(again.stderr).toMatch(/Not parked as failed \(left alone\): evt_cli_1/);
    const all = await cli(["replay", "--all", ...at(), "--json"]);
    expect(JSON.parse(all.stdout)).toEqual({ replayed: ["evt_cli_3"], notFailed: [] });
    const stats = await cli(["stats", ...at(), "--json"]);
    expect(JSON.parse(stats.stdout)).toEqual({ pending: 3, done: 0, failed: 0 });
    const pending = await db.pool.query(
      `SELECT attempts FROM "${db.schema}".events WHERE key = 'evt_cli_3'`,
    );
    expect(pending.rows[0].attempts).toBe(0);
  });

  it("prunes done events older than --days", async () => {
    await db.pool.query(
      `INSERT INTO "${db.schema}".events (key, type, payload, status, done_at)
       VALUES ('evt_cli_old', 't', '{}', 'done', now() - interval '20 days')`,
    );
    const kept = await cli(["prune", ...at(), "--json"]);
    expect(JSON.parse(kept.stdout)).toEqual({ events: 0, idempotencyKeys: 0 });
    const pruned = await cli(["prune", "--days", "14", ...at()]);
    expect(pruned.code).toBe(0);
    expect(pruned.stdout).toMatch(/^Deleted 1 done event older than 14 days/);
  });

  it("exits 1 with the fix when the database is unreachable or not migrated", async () => {
    const down = await cli(["stats", "--database-url", "postgres://postgres@127.0.0.1:1/test"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^error: .*ECONNREFUSED/);
    const missing = await cli([
      "failed",
      "--database-url",
      DATABASE_URL,
      "--schema",
      `${db.schema}_x`,
      "--json",
    ]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stderr).error).toMatch(/mappa-webhooks-postgres migrate/);
    // One prefix, the package's.
    expect(JSON.parse(missing.stderr).error).toMatch(
      /^@mappa-webhooks\/postgres: listFailed failed: /,
    );
    expect(down.stderr).toMatch(/^error: @mappa-webhooks\/postgres: countEvents failed: /);
  });

  it("refuses a connection string that is not a URL, numbers that are not decimal, and empty names, with exit 2", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["stats", "--database-url", "not a url"], /must be a postgres:\/\/ URL.*got "not a url"/],
      [["stats", "--database-url", "mysql://root@127.0.0.1/test"], /must be a postgres:\/\/ URL/],
      [
        ["prune", "--days", "0x10", "--database-url", DATABASE_URL],
        /--days needs a number.*"0x10"/,
      ],
      [["prune", "--days", "1e3", "--database-url", DATABASE_URL], /--days needs a number.*"1e3"/],
      [
        ["failed", "--limit", "0x10", "--database-url", DATABASE_URL],
        /--limit needs a whole number.*"0x10"/,
      ],
      [["stats", "--schema", "", "--database-url", DATABASE_URL], /"" is not a usable name/],
      [["migrate", "--print", "--events-table", ""], /"" is not a usable name/],
    ];
    for (const [args, message] of cases) {
      const result = await cli(args);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr, args.join(" ")).toMatch(message);
      expect(result.stderr, args.join(" ")).toMatch(
        /^error: [^@].*\nRun mappa-webhooks-postgres --help for usage\.\n$/,
      );
    }
    const env = await cli(["stats"], { DATABASE_URL: "not a url" });
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/DATABASE_URL\) must be a postgres:\/\/ URL/);
  });
});
