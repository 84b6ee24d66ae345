import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jobIdFor } from "../src/queue.js";
import { type Child, connect, deleteKeys, startScript, uniquePrefix, waitFor } from "./helpers.js";

// The examples/redis-scale-out scripts as a user runs them: two instances, then `send`.
const exampleDir = fileURLToPath(new URL("../../../examples/redis-scale-out/", import.meta.url));
const prefix = uniquePrefix("example");
const SECRET = "whsec_example";
let redis: Redis;
const children: Child[] = [];

beforeAll(async () => {
  redis = connect();
  await redis.ping();
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill()));
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

async function startTwo(mode: string): Promise<{ two: Child; urls: string[] }> {
  const two = startScript(`${exampleDir}start-two.js`, {
    PORT: "0",
    MAPPA_WEBHOOK_SECRET: SECRET,
    KEY_PREFIX: `${prefix}:${mode}`,
    MODE: mode,
  });
  children.push(two);
  const urls: string[] = [];
  for (const name of ["a", "b"]) {
    const pattern = new RegExp(`^${name} \\| listening on (http://127\\.0\\.0\\.1:\\d+)$`);
    const [, base] = await two.waitForLine(pattern, 30_000);
    urls.push(`${base}/webhooks/mappa`);
  }
  return { two, urls };
}

async function send(urls: string[], env: Record<string, string> = {}): Promise<string[]> {
  const sender = startScript(
    `${exampleDir}send-duplicates.js`,
    { MAPPA_WEBHOOK_SECRET: SECRET, ...env },
    urls,
  );
  children.push(sender);
  expect(await sender.exited).toBe(0);
  return sender.output.filter((line) => line.includes(" → "));
}

describe("examples/redis-scale-out", () => {
  it("two instances handle an event sent to both once, and serve /api/echo", async () => {
    const { two, urls } = await startTwo("inline");
    const answers = await send(urls);
    expect(answers).toHaveLength(4);
    expect(answers.filter((line) => line.endsWith('200 {"received":true}'))).toHaveLength(1);
    expect(
      answers.filter((line) => / → (409 |200 \{"received":true,"duplicate":true\})/.test(line)),
    ).toHaveLength(3);
    await waitFor(
      () => two.output.some((line) => line.includes("[mappa] report.completed")),
      30_000,
    );
    // The instances log the event's key: a known event's is its job outcome, not its id.
    const handled = () =>
      two.output.flatMap((line) => {
        const match = /^[ab] \| \[mappa\] report\.completed (~job:report\.completed:\w+) /.exec(
          line,
        );
        return match ? [match[1]] : [];
      });
    expect(handled()).toHaveLength(1);

    const echo = await fetch(urls[0]?.replace("/webhooks/mappa", "/api/echo") as string, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ hello: "world" }),
    });
    expect(await echo.json()).toEqual({ echo: { hello: "world" } });

    // mappa-node 1.2.x sends no id: the instances dedupe on the same `~job:<type>:<jobId>`.
    const idless = await send(urls, { EVENT_SHAPE: "mappa-node-1.2" });
    expect(idless.filter((line) => line.endsWith('200 {"received":true}'))).toHaveLength(1);
    await waitFor(() => handled().length >= 2, 30_000);
    // One more line, for the new event's job (the sender makes a new jobId each run).
    expect(handled()).toHaveLength(2);
    expect(new Set(handled()).size).toBe(2);

    // Other methods on the webhook path: 405 in JSON, as the README says, not Express' HTML 404.
    for (const method of ["GET", "PUT", "DELETE"]) {
      const other = await fetch(urls[0] as string, { method });
      expect(other.status).toBe(405);
      expect(other.headers.get("content-type")).toMatch(/^application\/json/);
      expect(await other.json()).toMatchObject({ error: "method_not_allowed" });
    }
    console.log(
      `[example] inline: ${answers.map((line) => line.split(" → ")[1]?.slice(0, 40)).join(" | ")}`,
    );
  });

  it("in queue mode, the receivers enqueue and the worker handles the event once", async () => {
    const { two, urls } = await startTwo("queue");
    const worker = startScript(`${exampleDir}worker.js`, { KEY_PREFIX: `${prefix}:queue` });
    children.push(worker);
    await worker.waitForLine(/^worker ready/, 30_000);
    const answers = await send(urls);
    expect(answers.filter((line) => line.endsWith('200 {"received":true}'))).toHaveLength(1);
    const [, key] = await worker.waitForLine(
      /^\[mappa\] report\.completed (~job:report\.completed:\w+) report=\w+/,
      30_000,
    );
    // The job id is the key with `:` encoded (see jobIdFor).
    const queued = two.output.filter((line) =>
      /\[mappa\] report\.completed ~job:report\.completed:\w+ queued as job/.test(line),
    );
    expect(queued).toHaveLength(1);
    expect(queued[0]).toContain(`${key} queued as job ${jobIdFor(key as string)} `);
    expect(worker.output.filter((line) => line.startsWith("[mappa]"))).toHaveLength(1);
  });
});
