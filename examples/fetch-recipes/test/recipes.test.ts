// The recipes that can run here, run as written: Bun.serve and Elysia on Bun, Deno.serve on
// Deno (binaries from npm), each checked over real HTTP on 127.0.0.1.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { send } from "@mappa-webhooks/conformance";
import { signPayload } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const secret = "whsec_fetch_recipes";
const bun = join(root, "node_modules/@oven/bun-linux-x64/bin/bun");
const deno = join(root, "node_modules/@deno/linux-x64-glibc/deno");

const recipes = [
  // `getStatus`: the route takes every method (the receiver answers 405), or only POST (the
  // framework answers 404 itself).
  { name: "Bun.serve (bun/server.ts)", command: bun, args: ["bun/server.ts"], getStatus: 405 },
  { name: "Elysia on Bun (src/elysia.ts)", command: bun, args: ["bun/elysia.ts"], getStatus: 404 },
  {
    name: "Deno.serve (deno/server.ts)",
    command: deno,
    args: ["run", "--allow-net=127.0.0.1", "--allow-env", "--allow-read", "deno/server.ts"],
    getStatus: 405,
  },
];

describe.each(recipes)("$name", ({ command, args, getStatus }) => {
  let child: ChildProcess | undefined;
  let baseUrl = "";
  beforeAll(async () => {
    child = spawn(command, args, {
      cwd: root,
      env: {
        ...process.env,
        PORT: "0",
        HOST: "127.0.0.1",
        MAPPA_WEBHOOK_SECRET: secret,
        NO_COLOR: "1",
        DENO_NO_UPDATE_CHECK: "1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    baseUrl = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line:\n${output}`)), 30_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString("utf8");
        const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (match?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child?.stdout?.on("data", onData);
      child?.stderr?.on("data", onData);
      child?.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code}:\n${output}`));
      });
    });
  }, 60_000);
  afterAll(async () => {
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.on("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
  });

  it("answers a signed delivery 200, a duplicate as such, a forgery 401, and GET", async () => {
    const id = `evt_recipe_${Date.now().toString(36)}`;
    const body = JSON.stringify({
      id,
      type: "report.completed",
      createdAt: "2026-01-17T12:05:00.000Z",
      data: { jobId: `job_${id}`, reportId: "rep_r", status: "completed", note: "東京 🎉" },
    });
    const headers = {
      "content-type": "application/json",
      "mappa-signature": await signPayload({ payload: body, secret }),
    };
    const url = `${baseUrl}/webhooks/mappa`;
    const first = await send(url, { headers, body });
    expect({ status: first.status, body: JSON.parse(first.body) }).toEqual({
      status: 200,
      body: { received: true },
    });
    const again = await send(url, { headers, body });
    expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
    const forged = await send(url, { headers, body: body.replace("rep_r", "rep_x") });
    expect(forged.status).toBe(401);
    expect(JSON.parse(forged.body)).toEqual({ error: "signature_mismatch" });
    const get = await send(url, { method: "GET" });
    expect(get.status).toBe(getStatus);
    if (getStatus === 405) expect(get.headers.allow).toBe("POST");
  });
});
