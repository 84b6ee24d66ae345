import { createSignedDelivery, createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Running, run, SECRET, start, startListen } from "./helpers.js";

let listener: Running;
let url: string;
const others: Running[] = [];

beforeAll(async () => {
  ({ listener, url } = await startListen());
});
afterAll(async () => {
  await listener.stop();
  await Promise.all(others.map((other) => other.stop()));
});

async function post(target: string, body: string, headers: Record<string, string>) {
  const response = await fetch(target, { method: "POST", body, headers });
  return { status: response.status, body: await response.text() };
}

describe("listen", () => {
  it("prints where it listens first", () => {
    expect(listener.lines[0]).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+\/webhooks\/mappa$/);
  });

  it("verifies and pretty-prints a delivery with its key data", async () => {
    const from = listener.lines.length;
    const event = createTestEvent("report.completed", {
      data: { jobId: "job_7", reportId: "rep_7" },
    });
    const { body, headers } = await createSignedDelivery(event, { secret: SECRET });
    expect(await post(url, body, headers)).toEqual({ status: 200, body: '{"received":true}' });
    expect(await listener.waitFor((line) => line.includes(event.id), from)).toMatch(
      new RegExp(`^\\d\\d:\\d\\d:\\d\\d ✓ 200 report\\.completed ${event.id}$`),
    );
    await listener.waitFor(/^ +job=job_7 {2}report=rep_7 {2}status=succeeded$/, from);
  });

  it("accepts an unknown event type and says so", async () => {
    const from = listener.lines.length;
    const event = createTestEvent("report.progress");
    const { body, headers } = await createSignedDelivery(event, { secret: SECRET });
    expect((await post(url, body, headers)).status).toBe(200);
    expect(await listener.waitFor(/report\.progress/, from)).toContain(
      "unknown type: accepted and ignored",
    );
  });

  const rejections: Array<
    [string, () => Promise<{ body: string; headers: Record<string, string> }>, number, RegExp[]]
  > = [
    [
      "a tampered body",
      async () => {
        const signed = await createSignedDelivery(createTestEvent("report.completed"), {
          secret: SECRET,
        });
        return { ...signed, body: signed.body.replace("completed", "complete!") };
      },
      401,
      [
        /✗ 401 signature_mismatch {2}✗ signature matches the body/,
        /No v1 signature matches the body/,
      ],
    ],
    [
      "a re-formatted body, with the hint",
      async () => {
        const event = createTestEvent("report.completed");
        const signed = await createSignedDelivery(event, { secret: SECRET });
        return { ...signed, body: JSON.stringify(event, null, 2) };
      },
      401,
      [/signature_mismatch/, /hint: The body looks re-formatted/],
    ],
    [
      "an old signature",
      () =>
        createSignedDelivery(createTestEvent("report.failed"), {
          secret: SECRET,
          timestamp: Math.floor(Date.now() / 1000) - 3_600,
        }),
      401,
      [
        /✗ 401 timestamp_outside_tolerance {2}✗ timestamp within tolerance/,
        /The signature timestamp is 3600 s in the past/,
      ],
    ],
    [
      "no signature header",
      async () => ({ body: JSON.stringify(createTestEvent("report.completed")), headers: {} }),
      401,
      [/✗ 401 missing_signature {2}✗ signature header present/],
    ],
    [
      "a malformed header",
      async () => ({ body: "{}", headers: { "mappa-signature": "v1=abc" } }),
      401,
      [/✗ 401 malformed_signature {2}✗ signature header well-formed/, /there is no `t` entry/],
    ],
    [
      "a signed body that is not JSON",
      async () => ({
        body: "not json",
        headers: { "mappa-signature": await signPayload({ payload: "not json", secret: SECRET }) },
      }),
      400,
      [/✗ 400 invalid_json {2}✗ body is JSON/],
    ],
    [
      "a signed event missing its fields",
      async () =>
        createSignedDelivery(
          createTestEvent("report.completed", { data: { reportId: undefined } }),
          { secret: SECRET },
        ),
      400,
      [/✗ 400 invalid_event {2}✗ body is a Mappa event/, /needs a string `data\.reportId`/],
    ],
  ];

  it.each(rejections)(
    "rejects %s and shows the failed check",
    async (_name, make, status, expected) => {
      const from = listener.lines.length;
      const { body, headers } = await make();
      expect((await post(url, body, headers)).status).toBe(status);
      for (const pattern of expected) await listener.waitFor(pattern, from);
    },
  );

  it("answers 405 to another method and 404 to another path", async () => {
    let from = listener.lines.length;
    expect((await fetch(url)).status).toBe(405);
    await listener.waitFor(/✗ 405 method_not_allowed {2}✗ method is POST/, from);
    from = listener.lines.length;
    const other = new URL("/other", url).href;
    expect((await fetch(other, { method: "POST", body: "{}" })).status).toBe(404);
    await listener.waitFor(/✗ 404 POST \/other \(webhooks go to POST \/webhooks\/mappa\)/, from);
  });

  it("prints JSON lines with --json, on a custom path, with several secrets", async () => {
    const json = await startListen(["--json", "--path", "/hooks", "--secret", "whsec_new"]);
    others.push(json.listener);
    expect(JSON.parse(json.listener.lines[0] ?? "")).toEqual({ kind: "listening", url: json.url });
    expect(json.url).toMatch(/\/hooks$/);
    const event = createTestEvent("matching.failed");
    const good = await createSignedDelivery(event, { secret: "whsec_new" });
    expect((await post(json.url, good.body, good.headers)).status).toBe(200);
    const bad = await createSignedDelivery(event, { secret: "whsec_other" });
    expect((await post(json.url, bad.body, bad.headers)).status).toBe(401);
    const lines = await Promise.all([
      json.listener.waitFor(/"status":200/, 1),
      json.listener.waitFor(/"status":401/, 1),
    ]);
    const [ok, rejected] = lines.map((line) => JSON.parse(line));
    expect(ok).toMatchObject({
      kind: "delivery",
      ok: true,
      duplicate: false,
      event: {
        id: event.id,
        type: "matching.failed",
        known: true,
        idempotencyKey: `~job:matching.failed:${event.data.jobId}`,
        createdAt: event.createdAt,
        timestamp: event.timestamp,
        occurredAt: event.createdAt,
      },
    });
    expect(rejected).toMatchObject({
      kind: "delivery",
      ok: false,
      status: 401,
      error: { code: "signature_mismatch", check: "signature matches the body" },
    });
    expect(rejected.error.message).toMatch(
      /^No v1 signature matches the body under the configured secrets\./,
    );
    expect((await post(json.url, good.body, good.headers)).status).toBe(200);
    const again = JSON.parse(await json.listener.waitFor(/"duplicate":true/, 1));
    expect(again).toMatchObject({ ok: true, duplicate: true, event: { id: event.id } });
  });

  it("reads the secret from MAPPA_WEBHOOK_SECRET and stops cleanly on SIGTERM", async () => {
    const fromEnv = start(["listen", "--port", "0"], { MAPPA_WEBHOOK_SECRET: "whsec_env" });
    others.push(fromEnv);
    const line = await fromEnv.waitFor(/listening on/);
    const target = line.replace("listening on ", "");
    const signed = await createSignedDelivery(createTestEvent("report.completed"), {
      secret: "whsec_env",
    });
    expect((await post(target, signed.body, signed.headers)).status).toBe(200);
    expect(await fromEnv.stop()).toBe(0);
    expect(fromEnv.lines.join("\n") + fromEnv.stderr()).not.toContain("whsec_env");
  });
});

describe("listen input errors (exit 2)", () => {
  it("reports a port in use", async () => {
    const port = new URL(url).port;
    const result = await run(["listen", "--port", port, "--secret", SECRET]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      `port ${port} is already in use; pick another with --port (0 for any free one)`,
    );
  });

  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    [
      "no secret",
      ["--port", "0"],
      {},
      /no webhook secret: pass --secret <secret> or set MAPPA_WEBHOOK_SECRET/,
    ],
    [
      "a non-numeric port",
      ["--port", "http", "--secret", SECRET],
      {},
      /--port must be a whole number from 0 to 65535, got "http"/,
    ],
    [
      "a port out of range",
      ["--port", "70000", "--secret", SECRET],
      {},
      /--port must be a whole number from 0 to 65535/,
    ],
    [
      "a path without a slash",
      ["--path", "hooks", "--secret", SECRET],
      {},
      /--path must start with "\/"/,
    ],
    [
      "a bad tolerance",
      ["--tolerance", "x", "--secret", SECRET],
      {},
      /--tolerance must be a number >= 0/,
    ],
    ["an unknown flag", ["--verbose"], {}, /unknown flag --verbose/],
    ["a stray argument", ["now"], {}, /unexpected argument: now/],
  ];
  it.each(cases)("rejects %s", async (_name, args, env, message) => {
    const result = await run(["listen", ...args], { env });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain("Run `npx @mappa-webhooks/cli listen --help` for usage.");
  });
});
