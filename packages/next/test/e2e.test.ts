// End to end: a real `next build` of examples/next, served by a real `next start` (and by the
// example's `pnpm start` script), receiving signed deliveries on a Node.js-runtime route, an
// Edge-runtime route and a Pages Router API route. Built once per run, into its own folder.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { send, stallMidBody } from "@mappa-webhooks/conformance";
import { signPayload } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const exampleDir = fileURLToPath(new URL("../../../examples/next/", import.meta.url));
const DIST_DIR = ".next-e2e";
const distPath = join(exampleDir, DIST_DIR);
const nextBin = createRequire(join(exampleDir, "package.json")).resolve("next/dist/bin/next");
const SECRET = "whsec_next_e2e_9f2c";

const ROUTES = {
  node: "/webhooks/mappa",
  edge: "/webhooks/mappa-edge",
  pages: "/api/webhooks/mappa-pages",
} as const;

/** The environment of the child processes: no test-runner NODE_ENV, no telemetry. */
function childEnv(extra: Record<string, string>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    NEXT_TELEMETRY_DISABLED: "1",
  };
  delete env.NODE_ENV;
  for (const key of Object.keys(env)) if (key.startsWith("VITEST")) delete env[key];
  return { ...env, NEXT_DIST_DIR: DIST_DIR, ...extra };
}

interface Running {
  child: ChildProcess;
  output: string[];
}

function start(args: string[], env: Record<string, string>): Running {
  // Its own process group, so stopping it also stops any worker Next forks.
  const child = spawn(process.execPath, args, {
    cwd: exampleDir,
    // Next's types declare NODE_ENV as always set; the child must not inherit vitest's "test".
    env: childEnv(env) as NodeJS.ProcessEnv,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const collect = (chunk: Buffer) => output.push(...chunk.toString("utf8").split("\n"));
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  return { child, output };
}

async function stop(running: Running | undefined): Promise<void> {
  const child = running?.child;
  if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(-child.pid, "SIGTERM");
  const timer = setTimeout(() => {
    if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, "SIGKILL");
  }, 5_000);
  await exited;
  clearTimeout(timer);
}

async function run(args: string[]): Promise<{ code: number | null; output: string }> {
  const running = start(args, {});
  const code = await new Promise<number | null>((resolve) => running.child.once("exit", resolve));
  return { code, output: running.output.join("\n") };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Polls until `check` holds, every 100 ms, for at most `timeoutMs`. */
async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number) {
  for (let waited = 0; waited <= timeoutMs; waited += 100) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not ready within ${timeoutMs} ms`);
}

let sequence = 0;
function eventBody(type = "report.completed"): { id: string; body: string } {
  const id = `evt_e2e_${Date.now().toString(36)}_${++sequence}`;
  const data =
    type === "report.completed"
      ? { jobId: `job_${id}`, reportId: `rep_${id}`, status: "succeeded" }
      : { jobId: `job_${id}` };
  const sentAt = new Date().toISOString();
  return { id, body: JSON.stringify({ id, type, createdAt: sentAt, timestamp: sentAt, data }) };
}

async function deliver(url: string, body: string, signedBody = body) {
  const response = await fetch(url, {
    method: "POST",
    body,
    headers: {
      "content-type": "application/json",
      "mappa-signature": await signPayload({ payload: signedBody, secret: SECRET }),
    },
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

/** Every JavaScript file under `dir`. */
function jsFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".js"))
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

const NODE_CRYPTO = /node:crypto|require\(["']crypto["']\)|from\s*["']crypto["']/;

let buildMs = 0;
let buildOutput = "";
let server: Running | undefined;
let origin = "";

beforeAll(async () => {
  rmSync(distPath, { recursive: true, force: true });
  const started = Date.now();
  const build = await run([nextBin, "build"]);
  buildMs = Date.now() - started;
  buildOutput = build.output;
  if (build.code !== 0) throw new Error(`next build failed:\n${build.output}`);
  console.log(`next build of examples/next took ${(buildMs / 1000).toFixed(1)} s`);

  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  server = start([nextBin, "start", "-H", "127.0.0.1", "-p", String(port)], {
    MAPPA_WEBHOOK_SECRET: SECRET,
  });
  await waitUntil(async () => {
    if (server?.child.exitCode !== null) throw new Error(server?.output.join("\n"));
    return fetch(`${origin}/`).then(
      (response) => response.ok,
      () => false,
    );
  }, 30_000);
  // `next build` takes 1–2 min alone and over 5 min on a CI machine busy with other packages'
  // builds and installs; the bound is for a hang, not for speed.
}, 900_000);

afterAll(async () => {
  await stop(server);
});

describe("next build", () => {
  it("bundles the Edge route without node:crypto, on Web Crypto", () => {
    const manifest = JSON.parse(
      readFileSync(join(distPath, "server", "middleware-manifest.json"), "utf8"),
    ) as { functions: Record<string, { files: string[] }> };
    const edgeRoute = manifest.functions["/webhooks/mappa-edge/route"];
    expect(edgeRoute).toBeDefined();
    const files = (edgeRoute?.files ?? []).filter((file) => file.endsWith(".js"));
    const sources = files.map((file) => readFileSync(join(distPath, file), "utf8"));
    for (const [index, source] of sources.entries()) {
      expect(source, files[index]).not.toMatch(NODE_CRYPTO);
    }
    const withVerifier = sources.filter((source) => source.includes("mappa-signature"));
    expect(withVerifier.length).toBeGreaterThan(0);
    expect(withVerifier.some((source) => source.includes('crypto.subtle.importKey("raw"'))).toBe(
      true,
    );
    // Every edge chunk on disk, not only the ones the manifest lists.
    for (const path of jsFiles(join(distPath, "server", "edge"))) {
      expect(readFileSync(path, "utf8"), path).not.toMatch(NODE_CRYPTO);
    }
  });

  it("bundles the Node.js route with the node:crypto build (the check can see it)", () => {
    const nodeChunks = jsFiles(join(distPath, "server", "chunks")).map((path) =>
      readFileSync(path, "utf8"),
    );
    expect(
      nodeChunks.some(
        (source) => source.includes("mappa-signature") && source.includes("createHmac"),
      ),
    ).toBe(true);
  });

  it("builds the Edge route, with Next's deprecation warning for the Edge runtime", () => {
    // The example leads with the Node.js runtime; the Edge route stays supported and tested.
    expect(buildOutput).toMatch(/Edge Runtime is deprecated/);
  });

  it("took a reasonable time", () => {
    expect(existsSync(join(distPath, "BUILD_ID"))).toBe(true);
    expect(buildMs).toBeLessThan(240_000);
  });
});

describe.each(Object.entries(ROUTES))("next start, %s route", (runtime, path) => {
  const url = () => `${origin}${path}`;
  const logged = (id: string) =>
    (server?.output ?? []).filter((line) => line.trim() === `[mappa] report.completed ${id}`);
  const rejections = () =>
    (server?.output ?? []).filter((line) => line.startsWith("[mappa:error] signature_mismatch"));

  it("answers 200 to a signed delivery and handles it", async () => {
    const { id, body } = eventBody();
    expect(await deliver(url(), body)).toEqual({ status: 200, json: { received: true } });
    await waitUntil(() => logged(id).length === 1, 5_000);
  });

  it("handles a duplicate delivery once", async () => {
    const { id, body } = eventBody();
    expect((await deliver(url(), body)).status).toBe(200);
    expect(await deliver(url(), body)).toEqual({
      status: 200,
      json: { received: true, duplicate: true },
    });
    await waitUntil(() => logged(id).length >= 1, 5_000);
    expect(logged(id)).toHaveLength(1);
  });

  it("answers 401 to a tampered body without handling it, and logs the rejection", async () => {
    const { id, body } = eventBody();
    const tampered = body.replace(`rep_${id}`, `rep_${id}x`);
    const before = rejections().length;
    expect(await deliver(url(), tampered, body)).toEqual({
      status: 401,
      json: { error: "signature_mismatch" },
    });
    expect(logged(id)).toHaveLength(0);
    await waitUntil(() => rejections().length > before, 5_000);
  });

  it("answers 400 to a signed body that is not JSON", async () => {
    const result = await deliver(url(), "{not json");
    expect(result.status).toBe(400);
    expect(result.json.error).toBe("invalid_json");
  });

  it("answers 200 to an unknown event type", async () => {
    const { body } = eventBody("voice.cloned");
    expect(await deliver(url(), body)).toEqual({ status: 200, json: { received: true } });
  });

  it.each(["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])(
    "answers %s with the JSON 405 and Allow: POST",
    async (method) => {
      const response = await send(url(), { method });
      expect(response.status).toBe(405);
      expect(response.headers.allow).toBe("POST");
      expect(JSON.parse(response.body)).toMatchObject({ error: "method_not_allowed" });
    },
  );

  const timeouts = () =>
    (server?.output ?? []).filter((line) => line.startsWith("[mappa:error] body_timeout"));
  const stall = async (timeoutMs: number) => {
    const { body } = eventBody();
    return stallMidBody(url(), {
      headers: {
        "content-type": "application/json",
        "mappa-signature": await signPayload({ payload: body, secret: SECRET }),
      },
      body,
      sentBytes: 10,
      timeoutMs,
    });
  };

  if (runtime === "edge") {
    // `next start` sends an Edge route's answer only once the request body has fully arrived:
    // the deadline fires and is reported, but the 408 waits for the sender to finish or leave.
    it("reports a stalled body at the 10 s deadline; Next holds the answer until the sender leaves", async () => {
      const before = timeouts().length;
      await expect(stall(15_000)).rejects.toThrow(/no answer within 15000 ms/);
      expect(timeouts()).toHaveLength(before + 1);
    }, 30_000);
  } else {
    it("answers a body that stalls with 408 after the default 10 s deadline", async () => {
      const before = timeouts().length;
      const result = await stall(30_000);
      expect(result.status).toBe(408);
      expect(JSON.parse(result.body)).toMatchObject({ error: "body_timeout" });
      await waitUntil(() => timeouts().length === before + 1, 5_000);
    }, 40_000);
  }
});

describe("next start, the rest of the example", () => {
  it("serves the page and the JSON route", async () => {
    const page = await fetch(`${origin}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("Mappa webhooks with Next.js");
    const echo = await fetch(`${origin}/api/echo`, {
      method: "POST",
      body: JSON.stringify({ hello: ["world"] }),
      headers: { "content-type": "application/json" },
    });
    expect(await echo.json()).toEqual({ echo: { hello: ["world"] } });
  });
});

describe("pnpm start (start.mjs) with PORT=0", () => {
  let example: Running | undefined;
  afterAll(() => stop(example));

  it("prints the listening line with the real port and receives deliveries", async () => {
    example = start(["start.mjs"], { PORT: "0", MAPPA_WEBHOOK_SECRET: SECRET });
    let listening: string | undefined;
    await waitUntil(() => {
      if (example?.child.exitCode !== null) throw new Error(example?.output.join("\n"));
      listening = example.output.find((line) => line.startsWith("listening on "));
      return listening !== undefined;
    }, 30_000);
    expect(listening).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+$/);
    expect(example.output.filter((line) => line.startsWith("listening on "))).toHaveLength(1);
    const base = (listening as string).slice("listening on ".length);
    expect(base).not.toMatch(/:0$/);
    for (const path of Object.values(ROUTES)) {
      const { id, body } = eventBody();
      expect(await deliver(`${base}${path}`, body)).toEqual({
        status: 200,
        json: { received: true },
      });
      await waitUntil(
        () =>
          (example?.output ?? []).some((line) => line.trim() === `[mappa] report.completed ${id}`),
        5_000,
      );
    }
  });
});
