// `recover` against the emulator as Mappa's API: job ids sent to a real receiver as signed
// outcomes, and a deployed recovery route called with its token.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createMappaRecovery,
  createMappaWebhooks,
  createMemoryIdempotencyStore,
  createRecoveryEndpoint,
  type MappaEvent,
} from "@mappa-webhooks/core";
import { type MappaEmulator, startMappaEmulator } from "@mappa-webhooks/emulator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run, SECRET } from "./helpers.js";

const TOKEN = "cron_secret_for_recover_0123";

let emulator: MappaEmulator;
const servers: Server[] = [];

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function readBody(req: import("node:http").IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** An app on the core: its handlers record what they ran, its store deduplicates. */
async function startApp() {
  const handled: MappaEvent[] = [];
  const store = createMemoryIdempotencyStore();
  const options = {
    secret: SECRET,
    idempotency: store,
    logger: false as const,
    on: {
      "report.completed": (event: MappaEvent) => void handled.push(event),
      "report.failed": (event: MappaEvent) => void handled.push(event),
    },
  };
  const webhooks = createMappaWebhooks(options);
  const recovery = createMappaRecovery({
    ...options,
    apiKey: "k",
    baseUrl: emulator.url,
    graceMs: 0,
  });
  const endpoint = createRecoveryEndpoint(recovery, { token: TOKEN });
  const url = await listen(
    createServer(async (req, res) => {
      const answer =
        req.url === "/api/mappa-recovery"
          ? await endpoint({ method: req.method ?? "GET", headers: req.headers })
          : await webhooks.handle({
              method: req.method ?? "GET",
              headers: req.headers,
              rawBody: await readBody(req),
            });
      res.writeHead(answer.status, answer.headers).end(answer.body);
    }),
  );
  return { url, handled, recovery };
}

async function api(path: string, init: RequestInit = {}) {
  const response = await fetch(`${emulator.url}${path}`, {
    ...init,
    headers: { "Mappa-Api-Key": "k", ...(init.headers as Record<string, string>) },
  });
  return (await response.json()) as Record<string, unknown>;
}

/** A report job whose webhook goes nowhere (a closed port): only recovery can bring it. */
async function finishedJob(): Promise<string> {
  const form = new FormData();
  form.append("file", new Blob([new Uint8Array(64)], { type: "audio/wav" }), "call.wav");
  const file = await api("/v1/files", { method: "POST", body: form });
  const job = await api("/v1/reports/jobs", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Idempotency-Key": `k_${Math.random()}` },
    body: JSON.stringify({
      media: { mediaId: file.mediaId },
      output: { template: "general_report" },
      target: { strategy: "dominant", on_miss: "error" },
      webhook: { url: "http://127.0.0.1:9/webhooks/mappa" },
    }),
  });
  await emulator.advance(150_000);
  return job.jobId as string;
}

beforeAll(async () => {
  emulator = await startMappaEmulator({ clock: "manual", secret: "whsec_unused" });
});
afterAll(async () => {
  for (const server of servers) server.close();
  await emulator?.close();
});

describe("recover <job-id>... --url", () => {
  it("sends each ended job's outcome once; a second run is a duplicate; unknown ids are reported", async () => {
    const app = await startApp();
    const jobId = await finishedJob();
    const args = [
      "recover",
      jobId,
      "job_nobody_knows",
      "--url",
      `${app.url}/webhooks/mappa`,
      "--secret",
      SECRET,
      "--api-key",
      "k",
      "--base-url",
      emulator.url,
    ];
    const first = await run(args);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`✓ ${jobId}  report.completed sent, your app answered 200`);
    expect(first.stdout).toMatch(/job_nobody_knows {2}.*404/);
    expect(app.handled).toHaveLength(1);
    expect(app.handled[0]).toMatchObject({
      type: "report.completed",
      recovered: true,
      data: { jobId, status: "succeeded" },
    });

    const again = await run([...args, "--json"]);
    expect(again.code, again.stderr).toBe(0);
    const report = JSON.parse(again.stdout) as { ok: boolean; jobs: unknown[] };
    expect(report.ok).toBe(true);
    const outcomes = Object.fromEntries(
      (report.jobs as { jobId: string; outcome: string }[]).map((job) => [job.jobId, job.outcome]),
    );
    expect(outcomes).toEqual({ [jobId]: "duplicate", job_nobody_knows: "unknown" });
    expect(app.handled).toHaveLength(1);
  });

  it("exits 1 naming your app's answer when it refuses the outcome", async () => {
    const app = await startApp();
    const jobId = await finishedJob();
    const result = await run([
      "recover",
      jobId,
      "--url",
      `${app.url}/webhooks/mappa`,
      "--secret",
      "whsec_not_the_apps",
      "--api-key",
      "k",
      "--base-url",
      emulator.url,
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/✗ .*your app answered 401/);
    expect(app.handled).toEqual([]);
  });

  it("exits 1 when Mappa's API refuses the key", async () => {
    const strict = await startMappaEmulator({ clock: "manual", apiKey: "right" });
    try {
      const result = await run([
        "recover",
        "job_1",
        "--url",
        "http://127.0.0.1:9/webhooks/mappa",
        "--secret",
        SECRET,
        "--api-key",
        "wrong",
        "--base-url",
        strict.url,
      ]);
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/API key/);
    } finally {
      await strict.close();
    }
  });
});

describe("recover --endpoint", () => {
  it("calls the app's recovery route with the token and prints its report", async () => {
    const app = await startApp();
    const jobId = await finishedJob();
    await app.recovery.track(jobId);
    const ok = await run(["recover", "--endpoint", `${app.url}/api/mappa-recovery`], {
      env: { CRON_SECRET: TOKEN },
    });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`${jobId}  recovered  report.completed`);
    expect(ok.stdout).toContain("✓ checked 1 job(s): 1 recovered");
    expect(app.handled).toHaveLength(1);

    const refused = await run([
      "recover",
      "--endpoint",
      `${app.url}/api/mappa-recovery`,
      "--token",
      "not_the_token_at_all",
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/401.*token/);
  });

  it("says what is missing, with exit 2", async () => {
    const none = await run(["recover"]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--endpoint .*or job ids and --url/);
    const both = await run(["recover", "j1", "--endpoint", "http://127.0.0.1:9/x"]);
    expect(both.code).toBe(2);
    const noToken = await run(["recover", "--endpoint", "http://127.0.0.1:9/x"], {
      env: { CRON_SECRET: undefined, MAPPA_RECOVERY_TOKEN: undefined },
    });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toMatch(/CRON_SECRET/);
  });
});
