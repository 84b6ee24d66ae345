import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  type Child,
  createPool,
  DATABASE_URL,
  keyOf,
  startScript,
  uniqueSchema,
  waitFor,
  webhookUrlOf,
} from "./helpers.js";

// examples/postgres-inbox as a user runs it, events sent with the `mappa-webhooks` CLI and
// failures replayed with `mappa-webhooks-postgres`.
const exampleDir = fileURLToPath(new URL("../../../examples/postgres-inbox/", import.meta.url));
const TRIGGER = fileURLToPath(new URL("../../cli/dist/cli.js", import.meta.url));
const ADMIN = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const SECRET = "whsec_example";
const schema = uniqueSchema("example");
const pool = createPool();
const children: Child[] = [];

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
});

function run(script: string, args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, MAPPA_WEBHOOK_SECRET: SECRET, DATABASE_URL },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.on("close", (code) => resolve({ code, stdout }));
  });
}

function startExample(env: Record<string, string>): Child {
  const child = startScript(
    `${exampleDir}server.js`,
    { PORT: "0", MAPPA_WEBHOOK_SECRET: SECRET, MAPPA_SCHEMA: schema, ...env },
    [],
    exampleDir,
  );
  children.push(child);
  return child;
}

const trigger = async (type: string, url: string, id?: string) => {
  const result = await run(TRIGGER, [
    "trigger",
    type,
    "--url",
    url,
    "--no-retry",
    "--json",
    ...(id === undefined ? [] : ["--id", id]),
  ]);
  return { code: result.code, report: JSON.parse(result.stdout) };
};

describe("examples/postgres-inbox", () => {
  it("stores, handles, survives a kill -9, parks a failing event and replays it", async () => {
    const first = startExample({ FAIL_TYPES: "report.failed", MAX_ATTEMPTS: "2", RETRY_MS: "50" });
    const url = await webhookUrlOf(first);
    await first.waitForLine(/^worker ready/, 30_000);

    // The same --id sends the same job's outcome (its jobId follows from the id) again.
    const id = `evt_example_${Date.now()}`;
    const sent = await trigger("report.completed", url, id);
    expect(sent.code).toBe(0);
    expect(sent.report.attempts[0].responseBody).toBe('{"received":true}');
    // Logged by its event id; stored (and listed, replayed) under the key the core derives, the
    // job's outcome.
    const key = keyOf(sent.report.event);
    expect(key).toBe(`~job:report.completed:${sent.report.event.data.jobId}`);
    await first.waitForLine(new RegExp(`^\\[mappa\\] report\\.completed ${id} report=`), 20_000);
    const again = await trigger("report.completed", url, id);
    expect(again.report.duplicate).toBe(true);

    const failing = await trigger("report.failed", url);
    expect(failing.code).toBe(0);
    const failedId = failing.report.event.id as string;
    const failedKey = keyOf(failing.report.event);
    await first.waitForLine(
      new RegExp(`^\\[failed\\] ${failedKey} parked after 2 attempts`),
      20_000,
    );
    const listed = await run(ADMIN, ["failed", "--schema", schema, "--json"]);
    expect(JSON.parse(listed.stdout).failed.map((event: { key: string }) => event.key)).toEqual([
      failedKey,
    ]);

    // Killed without a goodbye; a receiver-only instance stores an event nobody handles yet.
    await first.kill("SIGKILL");
    const receiverOnly = startExample({ ROLE: "receiver" });
    const receiverUrl = await webhookUrlOf(receiverOnly);
    const stored = await trigger("matching.completed", receiverUrl);
    expect(stored.code).toBe(0);
    const storedId = stored.report.event.id as string;
    const storedKey = keyOf(stored.report.event);
    const stats = await run(ADMIN, ["stats", "--schema", schema, "--json"]);
    expect(JSON.parse(stats.stdout)).toEqual({ pending: 1, done: 1, failed: 1 });
    await receiverOnly.kill("SIGKILL");

    // Restarted, fixed: the stored event is handled, and the parked one after a replay.
    const fixed = startExample({});
    await webhookUrlOf(fixed);
    await fixed.waitForLine(new RegExp(`^\\[mappa\\] matching\\.completed ${storedId} `), 20_000);
    const replay = await run(ADMIN, ["replay", failedKey, "--schema", schema]);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(new RegExp(`^Replayed 1 event: ${failedKey}\\.`));
    await fixed.waitForLine(new RegExp(`^\\[mappa\\] report\\.failed ${failedId} error=`), 20_000);
    await waitFor(async () => {
      const done = await run(ADMIN, ["stats", "--schema", schema, "--json"]);
      return done.stdout.trim() === JSON.stringify({ pending: 0, done: 3, failed: 0 });
    }, 20_000);
    const rows = await pool.query(
      `SELECT event_key FROM "${schema}".example_reports ORDER BY event_key`,
    );
    expect(rows.rows.map((row: { event_key: string }) => row.event_key).sort()).toEqual(
      [key, failedKey, storedKey].sort(),
    );
    console.log(`[example] ${fixed.output.filter((line) => line.startsWith("[")).join(" | ")}`);
  });
});
