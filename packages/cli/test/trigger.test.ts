import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { verifySignature } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type Running, recordingServer, run, SECRET, startListen } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "mappa-cli-trigger-"));
let listener: Running;
let listenUrl: string;
const cleanup: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  ({ listener, url: listenUrl } = await startListen());
});
afterAll(async () => {
  await listener.stop();
  await Promise.all(cleanup.map((close) => close()));
});

async function server(statuses: number[]) {
  const started = await recordingServer(statuses);
  cleanup.push(started.close);
  return started;
}

describe("trigger against listen", () => {
  it("delivers a signed event the receiver verifies and prints", async () => {
    const from = listener.lines.length;
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      listenUrl,
      "--secret",
      SECRET,
      "--id",
      "evt_cli_one",
    ]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`report.completed evt_cli_one → POST ${listenUrl}`);
    expect(result.stdout).toMatch(/✓ attempt 1\/5 {2}200 {2}\d+ ms/);
    expect(result.stdout).toMatch(/✓ delivered on attempt 1/);
    const line = await listener.waitFor(/report\.completed evt_cli_one/, from);
    expect(line).toMatch(/✓ 200 report\.completed evt_cli_one/);
    await listener.waitFor(/job=cm\w+ {2}report=cm\w+ {2}status=completed/, from);
  });

  it("merges --data into the event and takes the secret from MAPPA_WEBHOOK_SECRET", async () => {
    const from = listener.lines.length;
    const result = await run(
      [
        "trigger",
        "report.failed",
        "--url",
        listenUrl,
        "--data",
        '{"jobId":"job_42","error":{"code":"audio_too_short"}}',
      ],
      { env: { MAPPA_WEBHOOK_SECRET: SECRET } },
    );
    expect(result.code).toBe(0);
    await listener.waitFor(/job=job_42 {2}status=failed {2}error=audio_too_short/, from);
  });

  it("shows a duplicate as already handled", async () => {
    const args = [
      "trigger",
      "matching.completed",
      "--url",
      listenUrl,
      "--secret",
      SECRET,
      "--id",
      "evt_cli_dup",
    ];
    expect((await run(args)).code).toBe(0);
    const from = listener.lines.length;
    expect((await run(args)).code).toBe(0);
    expect(await listener.waitFor(/evt_cli_dup/, from)).toMatch(
      /↺ 200 matching\.completed evt_cli_dup {2}duplicate/,
    );
  });

  it("with the wrong secret, follows the whole time-scaled schedule and exits 1 when abandoned", async () => {
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      listenUrl,
      "--secret",
      "whsec_wrong",
      "--time-scale",
      "0.0005",
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout.match(/✗ attempt \d\/5 {2}401 signature_mismatch/g)).toHaveLength(5);
    expect(result.stdout).toContain("next attempt in 5 s (time-scaled to 3 ms)");
    expect(result.stdout).toContain("next attempt in 30 min (time-scaled to 900 ms)");
    expect(result.stdout).toContain(
      "✗ abandoned after 5 attempts: Mappa would give up on this event",
    );
    expect(result.stdout + result.stderr).not.toContain("whsec_wrong");
  });
});

describe("trigger delivery", () => {
  it("retries non-2xx answers with the same body and a fresh valid signature each time", async () => {
    const target = await server([500, 503, 200]);
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      target.url,
      "--secret",
      SECRET,
      "--time-scale",
      "0.001",
    ]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/✗ attempt 1\/5 {2}500 handler_failed/);
    expect(result.stdout).toMatch(/✗ attempt 2\/5 {2}503 handler_failed/);
    expect(result.stdout).toMatch(/✓ attempt 3\/5 {2}200/);
    expect(result.stdout).toContain("✓ delivered on attempt 3");
    expect(target.received).toHaveLength(3);
    expect(new Set(target.received.map((r) => r.body)).size).toBe(1);
    for (const request of target.received) {
      await expect(
        verifySignature({ payload: request.body, headers: request.headers, secret: SECRET }),
      ).resolves.toMatchObject({ ok: true });
    }
  });

  it("--no-retry sends once and exits 1 on failure", async () => {
    const target = await server([500]);
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      target.url,
      "--secret",
      SECRET,
      "--no-retry",
    ]);
    expect(result.code).toBe(1);
    expect(target.received).toHaveLength(1);
    expect(result.stdout).toContain("✗ attempt 1/1  500 handler_failed");
    expect(result.stdout).toContain("✗ abandoned after 1 attempt (--no-retry)");
  });

  it("--json prints one report with the event and every attempt", async () => {
    const target = await server([500, 200]);
    const result = await run([
      "trigger",
      "matching.failed",
      "--url",
      target.url,
      "--secret",
      SECRET,
      "--time-scale",
      "0",
      "--json",
    ]);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({
      url: target.url,
      delivered: true,
      abandoned: false,
      unreachable: false,
      event: {
        type: "matching.failed",
        data: { status: "failed", error: { code: "insufficient_credits" } },
      },
    });
    expect(report.attempts.map((a: { status: number }) => a.status)).toEqual([500, 200]);
    expect(report.attempts[1].scheduledAtMs).toBe(5_000);
    expect(JSON.parse(target.received[0]?.body ?? "")).toEqual(report.event);
  });

  it("reads --data-file and sends unknown types with --allow-unknown", async () => {
    const target = await server([200]);
    const file = join(dir, "data.json");
    writeFileSync(file, '{"progress":0.5}');
    const result = await run([
      "trigger",
      "report.progress",
      "--allow-unknown",
      "--url",
      target.url,
      "--secret",
      SECRET,
      "--data-file",
      file,
    ]);
    expect(result.code).toBe(0);
    const sent = JSON.parse(target.received[0]?.body ?? "");
    expect(sent).toMatchObject({
      type: "report.progress",
      data: { progress: 0.5, jobId: expect.any(String) },
    });
  });

  it("exits 2 with a clear message when the URL cannot be reached", async () => {
    const port = await freePort();
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      `http://127.0.0.1:${port}/webhooks/mappa`,
      "--secret",
      SECRET,
      "--time-scale",
      "0.0001",
    ]);
    expect(result.code).toBe(2);
    expect(result.stdout.match(/connection refused \(ECONNREFUSED\)/g)).toHaveLength(5);
    expect(result.stderr).toContain(
      `could not reach http://127.0.0.1:${port}/webhooks/mappa: connection refused (ECONNREFUSED). Is the receiver running`,
    );
  });

  it("gives up on an attempt after --timeout", async () => {
    const { createServer } = await import("node:http");
    const hanging = createServer(() => {});
    hanging.listen(0, "127.0.0.1");
    await new Promise((resolve) => hanging.once("listening", resolve));
    cleanup.push(async () => {
      hanging.closeAllConnections();
      hanging.close();
    });
    const { port } = hanging.address() as { port: number };
    const result = await run([
      "trigger",
      "report.completed",
      "--url",
      `http://127.0.0.1:${port}/x`,
      "--secret",
      SECRET,
      "--no-retry",
      "--timeout",
      "200",
    ]);
    expect(result.code).toBe(2);
    expect(result.stdout).toContain("timed out (TIMEOUT)");
  });
});

describe("trigger input errors (exit 2)", () => {
  const url = "http://127.0.0.1:9/webhooks/mappa";
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    [
      "an unknown event type",
      ["report.done", "--url", url, "--secret", SECRET],
      {},
      /unknown event type "report\.done"; known types: report\.completed, report\.failed, matching\.completed, matching\.failed \(pass --allow-unknown/,
    ],
    ["no event type", ["--url", url, "--secret", SECRET], {}, /which event\?/],
    ["no --url", ["report.completed", "--secret", SECRET], {}, /--url is required/],
    ["--url without a value", ["report.completed", "--url"], {}, /--url needs a value/],
    [
      "a URL without a scheme",
      ["report.completed", "--url", "localhost:3000/x", "--secret", SECRET],
      {},
      /must be http:\/\/ or https:\/\//,
    ],
    ["not a URL", ["report.completed", "--url", "::nope", "--secret", SECRET], {}, /is not a URL/],
    [
      "no secret",
      ["report.completed", "--url", url],
      {},
      /no webhook secret: pass --secret <secret> or set MAPPA_WEBHOOK_SECRET/,
    ],
    [
      "an empty secret",
      ["report.completed", "--url", url, "--secret", ""],
      {},
      /--secret is empty/,
    ],
    [
      "invalid JSON in --data",
      ["report.completed", "--url", url, "--secret", SECRET, "--data", "{jobId:1}"],
      {},
      /--data is not valid JSON/,
    ],
    [
      "--data that is not an object",
      ["report.completed", "--url", url, "--secret", SECRET, "--data", "[1]"],
      {},
      /--data must be a JSON object/,
    ],
    [
      "--data and --data-file",
      [
        "report.completed",
        "--url",
        url,
        "--secret",
        SECRET,
        "--data",
        "{}",
        "--data-file",
        "x.json",
      ],
      {},
      /pass --data or --data-file, not both/,
    ],
    [
      "a missing --data-file",
      [
        "report.completed",
        "--url",
        url,
        "--secret",
        SECRET,
        "--data-file",
        "/nonexistent/data.json",
      ],
      {},
      /cannot read --data-file \/nonexistent\/data\.json: no such file/,
    ],
    [
      "a negative --time-scale",
      ["report.completed", "--url", url, "--secret", SECRET, "--time-scale=-1"],
      {},
      /--time-scale must be a number >= 0, got "-1"/,
    ],
    [
      "a flag followed by a dash value",
      ["report.completed", "--url", url, "--time-scale", "-1"],
      {},
      /--time-scale needs a value; for one that starts with "-", write --time-scale=<value>/,
    ],
    [
      "a non-numeric --timeout",
      ["report.completed", "--url", url, "--secret", SECRET, "--timeout", "soon"],
      {},
      /--timeout must be a number >= 1/,
    ],
    [
      "an unknown flag",
      ["report.completed", "--url", url, "--secret", SECRET, "--retries", "3"],
      {},
      /unknown flag --retries/,
    ],
    [
      "an extra argument",
      ["report.completed", "report.failed", "--url", url],
      {},
      /unexpected argument: report\.failed/,
    ],
    [
      "a value for a boolean flag",
      ["report.completed", "--url", url, "--no-retry=yes"],
      {},
      /--no-retry does not take a value/,
    ],
  ];
  it.each(cases)("rejects %s", async (_name, args, env, message) => {
    const result = await run(["trigger", ...args], { env });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain("Run `mappa-webhooks trigger --help` for usage.");
    expect(result.stdout).toBe("");
    expect(result.stderr).not.toContain(SECRET);
  });
});
