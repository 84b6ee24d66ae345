import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { verifySignature } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  freePort,
  type Running,
  recordingServer,
  run,
  SECRET,
  start,
  startListen,
} from "./helpers.js";

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
    await listener.waitFor(/job=cm\w+ {2}report=cm\w+ {2}status=succeeded/, from);
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

  it("shows a duplicate as a duplicate, in the live view and in --json", async () => {
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
    const first = await run(args);
    expect(first.code).toBe(0);
    expect(first.stdout).not.toContain("duplicate");
    const from = listener.lines.length;
    const again = await run(args);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/✓ attempt 1\/5 {2}200 \(duplicate: already received\) {2}\d+ ms/);
    expect(again.stdout).toMatch(
      /✓ delivered on attempt 1 after [\d.]+ m?s: a duplicate, the receiver already had this event and did not take it again \(handled before, or stored for a worker\)/,
    );
    expect(await listener.waitFor(/evt_cli_dup/, from)).toMatch(
      /↺ 200 matching\.completed evt_cli_dup {2}duplicate/,
    );
    const json = await run([...args, "--json"]);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report).toMatchObject({ delivered: true, duplicate: true });
    expect(report.attempts).toEqual([
      expect.objectContaining({
        status: 200,
        duplicate: true,
        responseBody: '{"received":true,"duplicate":true}',
      }),
    ]);
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
    // After the first failure, once: the likely cause. The waits are short, so no advice on them.
    expect(
      result.stdout.match(
        /hint: the receiver refused the signature: does it use the same secret as --secret/g,
      ),
    ).toHaveLength(1);
    expect(result.stdout).not.toContain("--time-scale 0.01");
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

  it("derives the data's ids from --id, so the same --id is the same job's outcome", async () => {
    const target = await server([200, 200, 200, 200]);
    const send = async (id: string, ...extra: string[]) => {
      const result = await run([
        "trigger",
        "report.completed",
        "--url",
        target.url,
        "--secret",
        SECRET,
        "--no-retry",
        "--id",
        id,
        ...extra,
      ]);
      expect(result.code).toBe(0);
      return JSON.parse(target.received.at(-1)?.body ?? "").data;
    };
    const first = await send("evt_cli_same");
    expect(first).toMatchObject({ jobId: expect.stringMatching(/^cm\w+$/), status: "succeeded" });
    expect(await send("evt_cli_same")).toEqual(first);
    const other = await send("evt_cli_other");
    expect(other.jobId).not.toBe(first.jobId);
    expect(other.reportId).not.toBe(first.reportId);
    expect(await send("evt_cli_same", "--data", '{"jobId":"job_given"}')).toEqual({
      ...first,
      jobId: "job_given",
    });
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
    expect(result.stdout).toContain(
      `hint: nothing answered at http://127.0.0.1:${port}: is the receiver running, and is the URL right?`,
    );
    expect(result.stderr).toContain(
      `could not reach http://127.0.0.1:${port}/webhooks/mappa: connection refused (ECONNREFUSED). Is the receiver running`,
    );
  });

  it("sends the current wire shape by default and an older one with --shape", async () => {
    const target = await server([200]);
    const send = (...extra: string[]) =>
      run(["trigger", "report.completed", "--url", target.url, "--secret", SECRET, ...extra]);
    const current = await send();
    expect(current.code).toBe(0);
    expect(current.stdout).toMatch(/^report\.completed evt_\w+ → POST /);
    const guide = await send("--shape", "guide", "--id", "evt_guide_1");
    expect(guide.stdout).toContain("report.completed evt_guide_1 [guide shape] → POST");
    const node = await send("--shape", "mappa-node-1.2", "--json");
    expect(node.code).toBe(0);
    const [sentCurrent, sentGuide, sentNode] = target.received.map((r) => JSON.parse(r.body));
    expect(Object.keys(sentCurrent)).toEqual(["id", "type", "createdAt", "timestamp", "data"]);
    expect(sentCurrent.data.status).toBe("succeeded");
    expect(Object.keys(sentGuide)).toEqual(["id", "type", "createdAt", "data"]);
    expect(sentGuide).toMatchObject({ id: "evt_guide_1", data: { status: "completed" } });
    expect(Object.keys(sentNode)).toEqual(["type", "timestamp", "data"]);
    expect(sentNode.data.status).toBe("succeeded");
    const report = JSON.parse(node.stdout);
    expect(report).toMatchObject({ shape: "mappa-node-1.2", delivered: true, duplicate: false });
    expect(report.event).toEqual(sentNode);
  });

  it("after the first failure on Mappa's real schedule, says how to shorten it; Ctrl-C stops", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/webhooks/mappa`;
    const trigger = start(["trigger", "report.completed", "--url", url, "--secret", SECRET]);
    cleanup.push(async () => trigger.child.kill("SIGKILL"));
    const hint = await trigger.waitFor(/hint: Mappa's schedule/, 0, 30_000);
    expect(trigger.lines.slice(0, 5)).toEqual([
      expect.stringMatching(/^report\.completed evt_\w+ → POST /),
      expect.stringMatching(
        /^ {2}✗ attempt 1\/5 {2}connection refused \(ECONNREFUSED\) {2}\d+ ms$/,
      ),
      "    next attempt in 5 s",
      `  hint: nothing answered at http://127.0.0.1:${port}: is the receiver running, and is the URL right?`,
      "  hint: Mappa's schedule retries for 35 min 35 s more. To see it all quickly, run again with --time-scale 0.01 (about 21.4 s), or --no-retry to send once; Ctrl-C stops now.",
    ]);
    expect(hint).toContain("--time-scale 0.01");
    const closed = once(trigger.child, "close");
    trigger.child.kill("SIGINT");
    const [code] = (await closed) as [number | null];
    expect(code).toBe(130);
    expect(trigger.lines).toContain(
      "✗ stopped with Ctrl-C after 1 attempt; Mappa would have kept retrying",
    );
  });

  it("with --json, gives that advice on stderr and prints a partial report on Ctrl-C", async () => {
    const port = await freePort();
    const trigger = start([
      "trigger",
      "report.failed",
      "--url",
      `http://127.0.0.1:${port}/webhooks/mappa`,
      "--secret",
      SECRET,
      "--json",
    ]);
    cleanup.push(async () => trigger.child.kill("SIGKILL"));
    const deadline = Date.now() + 30_000;
    while (!trigger.stderr().includes("Ctrl-C stops now") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(trigger.stderr()).toContain("hint: Mappa's schedule retries for 35 min 35 s more.");
    expect(trigger.lines).toEqual([]);
    const closed = once(trigger.child, "close");
    trigger.child.kill("SIGINT");
    const [code] = (await closed) as [number | null];
    expect(code).toBe(130);
    const report = JSON.parse(trigger.lines.join("\n"));
    expect(report).toMatchObject({
      delivered: false,
      interrupted: true,
      shape: "current",
      event: { type: "report.failed" },
    });
    expect(report.attempts).toHaveLength(1);
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
      "a scheme that is not http",
      ["report.completed", "--url", "htp:/bad", "--secret", SECRET],
      {},
      /--url "htp:\/bad" is not an http\(s\) URL/,
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
      "an unknown --shape",
      ["report.completed", "--url", url, "--secret", SECRET, "--shape", "conduit"],
      {},
      /--shape must be one of current, guide, mappa-node-1\.2, got "conduit"/,
    ],
    [
      "--id with the mappa-node-1.2 shape, which has no id",
      [
        "report.completed",
        "--url",
        url,
        "--secret",
        SECRET,
        "--shape",
        "mappa-node-1.2",
        "--id",
        "evt_1",
      ],
      {},
      /--id cannot be used with --shape mappa-node-1\.2: that shape has no id/,
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
    expect(result.stderr).toContain("Run `npx @mappa-webhooks/cli trigger --help` for usage.");
    expect(result.stdout).toBe("");
    expect(result.stderr).not.toContain(SECRET);
  });
});
