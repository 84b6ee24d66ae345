// The examples send their test delivery with this CLI (`pnpm send` in an example's folder):
// each script must reach the receiver with a signed event in the current wire shape.
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { verifySignature } from "@mappa-webhooks/core";
import { afterAll, describe, expect, it } from "vitest";
import { wireBodyProblems } from "../../testing/test/wire-format.js";
import { recordingServer, SECRET, testEnv } from "./helpers.js";

const EXAMPLES = ["express", "fastify", "hono", "koa", "nestjs", "next"];
/** The examples whose server keeps handled events in `mappa-webhooks.db` in their folder. */
const SQLITE_EXAMPLES = ["express", "fastify", "hono", "koa", "nestjs"];
const cleanup: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  await Promise.all(cleanup.map((close) => close()));
});

async function pnpmSend(dir: string, env: Record<string, string>, extra: string[] = []) {
  const child = spawn("pnpm", ["run", "--silent", "send", ...extra], {
    cwd: dir,
    env: testEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 45_000);
  const [code] = (await once(child, "close")) as [number | null];
  clearTimeout(timer);
  return { code, output };
}

describe("the examples' send scripts", () => {
  it.each(EXAMPLES)(
    "examples/%s: `pnpm send` triggers a signed current-shape event",
    async (name) => {
      const dir = fileURLToPath(new URL(`../../../examples/${name}/`, import.meta.url));
      const scripts = (
        JSON.parse(readFileSync(`${dir}package.json`, "utf8")) as {
          scripts: Record<string, string>;
        }
      ).scripts;
      expect(scripts.send).toMatch(/^mappa-webhooks trigger report\.completed --url /);
      const target = await recordingServer([200]);
      cleanup.push(target.close);
      const port = new URL(target.url).port;
      const result = await pnpmSend(dir, { PORT: port, MAPPA_WEBHOOK_SECRET: SECRET }, [
        "--no-retry",
      ]);
      expect(result.output).toContain(`→ POST http://127.0.0.1:${port}/webhooks/mappa`);
      expect(result.code).toBe(0);
      expect(target.received).toHaveLength(1);
      const request = target.received[0] as { body: string; headers: Record<string, unknown> };
      expect(wireBodyProblems(request.body, "current").problems).toEqual([]);
      await expect(
        verifySignature({
          payload: request.body,
          headers: request.headers as Record<string, string>,
          secret: SECRET,
        }),
      ).resolves.toMatchObject({ ok: true });
    },
  );
});

describe("the examples' SQLite store", () => {
  it.each(SQLITE_EXAMPLES)(
    "examples/%s: git ignores mappa-webhooks.db and its WAL companions",
    (name) => {
      const dir = fileURLToPath(new URL(`../../../examples/${name}/`, import.meta.url));
      const files = ["mappa-webhooks.db", "mappa-webhooks.db-wal", "mappa-webhooks.db-shm"];
      // Prints each ignored path (given relative to the folder), whether it exists or not.
      const ignored = execFileSync("git", ["check-ignore", ...files], {
        cwd: dir,
        encoding: "utf8",
      });
      expect(ignored.trim().split("\n")).toEqual(files);
      const pkg = JSON.parse(readFileSync(`${dir}package.json`, "utf8")) as {
        dependencies: Record<string, string>;
      };
      expect(pkg.dependencies).toMatchObject({
        "@mappa-webhooks/sqlite": "workspace:*",
        "better-sqlite3": expect.stringMatching(/^~?12\./),
      });
    },
  );
});
