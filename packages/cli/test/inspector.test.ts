import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { signPayload, verifySignature } from "@mappa-webhooks/core";
import { createSignedDelivery, createTestEvent } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type Running, recordingServer, run, SECRET, start } from "./helpers.js";
import { eventually, rawRequest, startInspecting } from "./inspector-helpers.js";

interface Summary {
  id: string;
  type?: string;
  eventId?: string;
  verdict: { ok: boolean; status: number; duplicate?: boolean; code?: string; check?: string };
  pending: boolean;
  app?: { status?: number; error?: string; latencyMs: number };
  replays: number;
  loaded: boolean;
}

const dir = mkdtempSync(join(tmpdir(), "mappa-inspector-"));
const running: Running[] = [];
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  await Promise.all(running.map((listener) => listener.stop()));
  await Promise.all(closers.map((close) => close()));
});

async function list(inspector: string): Promise<Summary[]> {
  const response = await fetch(new URL("/api/deliveries", inspector));
  return ((await response.json()) as { deliveries: Summary[] }).deliveries;
}

/** A body laid out with tabs and a final newline, so any re-serialisation would show. */
function oddBody(event: object): string {
  return `${JSON.stringify(event, null, "\t")}\n`;
}

describe("listen --forward-to", () => {
  let app: Awaited<ReturnType<typeof recordingServer>>;
  let listener: Running;
  let url: string;
  let inspector: string;

  beforeAll(async () => {
    app = await recordingServer([200, 500, 200]);
    closers.push(app.close);
    ({ listener, url, inspector } = await startInspecting(["--forward-to", app.url]));
    running.push(listener);
  });

  it("prints where it receives, where it forwards and where the inspector is, each on its own line", () => {
    expect(listener.lines[0]).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+\/webhooks\/mappa$/);
    expect(listener.lines[1]).toBe(`forwarding to ${app.url}`);
    expect(listener.lines[2]).toMatch(/^inspector on http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(new URL(inspector).port).not.toBe(new URL(url).port);
  });

  it("forwards the exact bytes and the original headers, and answers with the app's answer", async () => {
    const from = listener.lines.length;
    const event = createTestEvent("report.completed", { data: { reportId: "rep_fwd" } });
    const body = oddBody(event);
    const signature = await signPayload({ payload: body, secret: SECRET });
    const response = await fetch(`${url}?tenant=7`, {
      method: "POST",
      body,
      headers: {
        "content-type": "application/json",
        "mappa-signature": signature,
        "X-Customer-Header": "static-value",
      },
    });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{"received":true}');
    const received = app.received.at(-1);
    expect(received?.body).toBe(body);
    expect(received?.headers["mappa-signature"]).toBe(signature);
    expect(received?.headers["x-customer-header"]).toBe("static-value");
    expect(received?.headers.host).toBe(new URL(app.url).host);
    const line = await listener.waitFor((l) => l.includes(event.id), from);
    // Forwarding, the sender gets the app's answer: the line shows "verified", not our own 200.
    expect(line).toMatch(
      new RegExp(`✓ verified report\\.completed ${event.id} {2}→ app 200 \\d+ ms$`),
    );
  });

  it("passes on the app's failure status so the sender retries", async () => {
    const from = listener.lines.length;
    const signed = await createSignedDelivery(createTestEvent("report.failed"), { secret: SECRET });
    const response = await fetch(url, {
      method: "POST",
      body: signed.body,
      headers: signed.headers,
    });
    expect(response.status).toBe(500);
    expect(await response.text()).toBe('{"error":"handler_failed"}');
    await listener.waitFor(
      /✓ verified report\.failed evt_\w+ {2}→ app 500 handler_failed \d+ ms$/,
      from,
    );
  });

  it("warns when the app accepts a delivery that does not verify", async () => {
    const from = listener.lines.length;
    const signed = await createSignedDelivery(createTestEvent("report.completed"), {
      secret: "whsec_someone_else",
    });
    const response = await fetch(url, {
      method: "POST",
      body: signed.body,
      headers: signed.headers,
    });
    expect(response.status).toBe(200);
    await listener.waitFor(
      /✗ signature_mismatch {2}✗ signature matches the body {2}→ app 200/,
      from,
    );
    await listener.waitFor(/⚠ the app accepted a delivery whose signature does not verify/, from);
  });

  it("lists every delivery newest first, with the verdict, the failed check and the app's answer", async () => {
    const deliveries = await list(inspector);
    expect(deliveries.map((d) => d.app?.status)).toEqual([200, 500, 200]);
    expect(deliveries[0]?.verdict).toMatchObject({
      ok: false,
      status: 401,
      code: "signature_mismatch",
      check: "signature matches the body",
    });
    expect(deliveries[2]?.verdict).toMatchObject({ ok: true, status: 200 });
    expect(deliveries[2]?.type).toBe("report.completed");
  });

  it("serves nothing but the webhook route on the receiving port", async () => {
    const [first] = await list(inspector);
    const paths = [
      "/",
      "/index.html",
      "/api/deliveries",
      "/api/stream",
      `/api/deliveries/${first?.id}`,
      `/api/deliveries/${first?.id}/download`,
      "/favicon.ico",
    ];
    for (const path of paths) {
      const response = await rawRequest(new URL(path, url).href);
      expect(response.status, path).toBe(404);
      expect(response.body, path).not.toContain(first?.id ?? "?");
    }
    const replay = await rawRequest(new URL(`/api/deliveries/${first?.id}/replay`, url).href, {
      method: "POST",
      headers: { "x-mappa-inspector": "replay" },
    });
    expect(replay.status).toBe(404);
    expect(app.received).toHaveLength(3);
    // While the inspector's own port serves the page with a strict, offline-only policy.
    const page = await rawRequest(inspector);
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["content-security-policy"]).toMatch(
      /^default-src 'none'; script-src 'nonce-/,
    );
    expect(page.body).not.toMatch(/<script[^>]+src=|<link[^>]+stylesheet|https?:\/\/(?!127)/);
  });

  it("answers only to loopback host names (no DNS rebinding)", async () => {
    const port = new URL(inspector).port;
    const evil = await rawRequest(new URL("/api/deliveries", inspector).href, {
      headers: { host: `attacker.example:${port}` },
    });
    expect(evil.status).toBe(403);
    expect(evil.body).not.toContain("report.completed");
    const local = await rawRequest(new URL("/api/deliveries", inspector).href, {
      headers: { host: `localhost:${port}` },
    });
    expect(local.status).toBe(200);
  });

  it("refuses replays from other sites, and replays from the page with a fresh signature", async () => {
    const deliveries = await list(inspector);
    const valid = deliveries[2] as Summary;
    const target = new URL(`/api/deliveries/${valid.id}/replay`, inspector).href;
    const host = new URL(inspector).host;
    // A form or a no-cors fetch from another page cannot send the custom header.
    const plain = await rawRequest(target, { method: "POST", headers: { host } });
    expect(plain.status).toBe(403);
    const foreign = await rawRequest(target, {
      method: "POST",
      headers: { host, origin: "http://attacker.example", "x-mappa-inspector": "replay" },
    });
    expect(foreign.status).toBe(403);
    const viaGet = await rawRequest(target, { headers: { "x-mappa-inspector": "replay" } });
    expect(viaGet.status).toBe(405);
    expect(app.received).toHaveLength(3);

    const before = app.received[0];
    const ok = await rawRequest(target, {
      method: "POST",
      headers: { host, origin: `http://${host}`, "x-mappa-inspector": "replay" },
    });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ status: 200, signature: "fresh" });
    expect(app.received).toHaveLength(4);
    const replayed = app.received[3];
    expect(replayed?.body).toBe(before?.body);
    expect(replayed?.headers["x-customer-header"]).toBe("static-value");
    expect(replayed?.headers["mappa-signature"]).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    await listener.waitFor(/↻ replayed report\.completed evt_\w+ \(fresh signature\) {2}→ app 200/);
    const after = await list(inspector);
    expect(after[2]?.replays).toBe(1);
  });

  it("replays a delivery no secret signed with its original signature", async () => {
    const [forged] = await list(inspector);
    const host = new URL(inspector).host;
    const response = await rawRequest(
      new URL(`/api/deliveries/${forged?.id}/replay`, inspector).href,
      { method: "POST", headers: { host, "x-mappa-inspector": "replay" } },
    );
    expect(JSON.parse(response.body)).toMatchObject({ signature: "original" });
    const sent = app.received.at(-1);
    const original = app.received[2];
    expect(sent?.headers["mappa-signature"]).toBe(original?.headers["mappa-signature"]);
    expect(sent?.body).toBe(original?.body);
  });

  it("explains a delivery step by step exactly as `verify` does", async () => {
    const event = createTestEvent("matching.completed");
    const signed = await createSignedDelivery(event, { secret: SECRET });
    const tampered = signed.body.replace(event.data.matchingId, "cm_tampered");
    await fetch(url, { method: "POST", body: tampered, headers: signed.headers });
    const [latest] = await list(inspector);
    const detail = (await (
      await fetch(new URL(`/api/deliveries/${latest?.id}`, inspector))
    ).json()) as {
      explanation: { now: number; checks: unknown[]; notes: string[]; valid: boolean };
      curl: string;
      pretty: string;
      bodyText: string;
    };
    expect(detail.bodyText).toBe(tampered);
    expect(detail.pretty).toBe(JSON.stringify(JSON.parse(tampered), null, 2));
    const bodyFile = join(dir, "tampered.json");
    writeFileSync(bodyFile, tampered);
    const verified = await run([
      "verify",
      "--json",
      "--secret",
      SECRET,
      "--header",
      signed.headers["mappa-signature"] as string,
      "--body-file",
      bodyFile,
      "--now",
      String(detail.explanation.now),
    ]);
    expect(verified.code).toBe(1);
    const expected = JSON.parse(verified.stdout) as { checks: unknown[]; notes: string[] };
    expect(detail.explanation.valid).toBe(false);
    expect(detail.explanation.checks).toEqual(expected.checks);
    expect(detail.explanation.notes).toEqual(expected.notes);
    expect(detail.curl).toContain(`curl -sS -X POST '${app.url}'`);
    expect(detail.curl).toContain(`-H 'mappa-signature: ${signed.headers["mappa-signature"]}'`);
  });

  it("explains an old capture as `verify` does: the signature checked as of its own time", async () => {
    const event = createTestEvent("report.failed");
    const body = JSON.stringify(event);
    const signedAt = Math.floor(Date.now() / 1000) - 3_600;
    const header = await signPayload({ payload: body, secret: SECRET, timestamp: signedAt });
    await fetch(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "mappa-signature": header },
    });
    const [latest] = await list(inspector);
    const detail = (await (
      await fetch(new URL(`/api/deliveries/${latest?.id}`, inspector))
    ).json()) as { explanation: { now: number; checks: unknown[]; notes: string[] } };
    const bodyFile = join(dir, "old.json");
    writeFileSync(bodyFile, body);
    const verified = await run([
      "verify",
      "--json",
      "--secret",
      SECRET,
      "--header",
      header,
      "--body-file",
      bodyFile,
      "--now",
      String(detail.explanation.now),
    ]);
    const expected = JSON.parse(verified.stdout) as { checks: unknown[]; notes: string[] };
    expect(detail.explanation.checks).toEqual(expected.checks);
    expect(detail.explanation.notes).toEqual(expected.notes);
    expect(expected.checks).toContainEqual(expect.objectContaining({ id: "signature", ok: true }));
    expect(expected.notes.join(" ")).toContain(`--now ${signedAt}`);
  });
});

describe("listen when the app is down", () => {
  it("answers 502 and says the app is unreachable", async () => {
    const port = await freePort();
    const { listener, url, inspector } = await startInspecting([
      "--forward-to",
      `127.0.0.1:${port}/webhooks/mappa`,
    ]);
    running.push(listener);
    const signed = await createSignedDelivery(createTestEvent("report.completed"), {
      secret: SECRET,
    });
    const response = await fetch(url, {
      method: "POST",
      body: signed.body,
      headers: signed.headers,
    });
    expect(response.status).toBe(502);
    expect(await response.json()).toMatchObject({ error: "app_unreachable" });
    const line = await listener.waitFor(
      /→ app unreachable: connection refused: is the app running on that port\? \(answered 502\)/,
    );
    // Never a ✓ 200 on a line whose sender was answered 502.
    expect(line).toMatch(/ ✓ verified report\.completed /);
    expect(line).not.toMatch(/✓ 200/);
    const [delivery] = await list(inspector);
    expect(delivery?.app).toMatchObject({ error: expect.stringContaining("connection refused") });
  });
});

describe("listen --keep, --save and --load", () => {
  it("keeps the last N deliveries, saves them, and loads them back for replay", async () => {
    const file = join(dir, "session.jsonl");
    const first = await startInspecting(["--keep", "2", "--save", file]);
    running.push(first.listener);
    const events = ["report.completed", "report.failed", "matching.failed"].map((type) =>
      createTestEvent(type),
    );
    for (const event of events) {
      const signed = await createSignedDelivery(event, { secret: SECRET });
      expect(
        (await fetch(first.url, { method: "POST", body: signed.body, headers: signed.headers }))
          .status,
      ).toBe(200);
    }
    const kept = await list(first.inspector);
    expect(kept.map((d) => d.eventId)).toEqual([events[2]?.id, events[1]?.id]);
    const saved = await eventually(
      async () => readFileSync(file, "utf8").trim().split("\n"),
      (lines) => lines.length === 3,
    );
    expect(saved.map((line) => JSON.parse(line).verdict.event.id)).toEqual(events.map((e) => e.id));

    // Without an app there is nothing to replay to.
    const host = new URL(first.inspector).host;
    const noApp = await rawRequest(
      new URL(`/api/deliveries/${kept[0]?.id}/replay`, first.inspector).href,
      {
        method: "POST",
        headers: { host, "x-mappa-inspector": "replay" },
      },
    );
    expect(noApp.status).toBe(409);
    expect(JSON.parse(noApp.body).message).toContain("--forward-to");

    // A downloaded delivery is one line of the same format.
    const download = await fetch(
      new URL(`/api/deliveries/${kept[0]?.id}/download`, first.inspector),
    );
    expect(download.headers.get("content-disposition")).toBe(
      `attachment; filename="delivery-${events[2]?.id}.jsonl"`,
    );
    const line = JSON.parse(await download.text());
    expect(Buffer.from(line.bodyBase64, "base64").toString("utf8")).toBe(JSON.stringify(events[2]));
    expect(await first.listener.stop()).toBe(0);

    const app = await recordingServer([200]);
    closers.push(app.close);
    const second = await startInspecting(["--load", file, "--forward-to", app.url]);
    running.push(second.listener);
    await second.listener.waitFor(
      new RegExp(`^loaded 3 deliveries from ${file.replaceAll("/", "\\/")}$`),
    );
    const loaded = await list(second.inspector);
    expect(loaded.map((d) => d.eventId)).toEqual(events.map((e) => e.id).reverse());
    expect(loaded.every((d) => d.loaded)).toBe(true);
    const replay = await rawRequest(
      new URL(`/api/deliveries/${loaded[2]?.id}/replay`, second.inspector).href,
      {
        method: "POST",
        headers: { host: new URL(second.inspector).host, "x-mappa-inspector": "1" },
      },
    );
    expect(JSON.parse(replay.body)).toMatchObject({ status: 200, signature: "fresh" });
    expect(app.received[0]?.body).toBe(JSON.stringify(events[0]));
  });
});

describe("listen flags (exit 2)", () => {
  const cases: Array<[string, string[], RegExp]> = [
    [
      "a forward URL that is not http",
      ["--forward-to", "ftp://x"],
      /--forward-to "ftp:\/\/x" must be http:\/\/ or https:\/\//,
    ],
    ["a keep of 0", ["--keep", "0"], /--keep must be a whole number from 1 to 100000/],
    [
      "a missing --load file",
      ["--load", "/nonexistent/session.jsonl"],
      /cannot read --load \/nonexistent\/session\.jsonl: no such file/,
    ],
    [
      "an unwritable --save file",
      ["--save", "/nonexistent/dir/s.jsonl"],
      /cannot write --save \/nonexistent\/dir\/s\.jsonl: ENOENT/,
    ],
  ];
  it.each(cases)("rejects %s", async (_name, args, message) => {
    const result = await run(["listen", "--port", "0", "--secret", SECRET, ...args]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it("names the line of a --load file that is not a delivery", async () => {
    const file = join(dir, "bad.jsonl");
    writeFileSync(file, '{"kind":"delivery"}\n');
    const result = await run(["listen", "--port", "0", "--secret", SECRET, "--load", file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`cannot load --load ${file}: line 1: "id" is not a string`);
  });

  it("reports an inspector port in use, and runs without one on request", async () => {
    const { listener, inspector } = await startInspecting();
    running.push(listener);
    const port = new URL(inspector).port;
    const busy = await run(["listen", "--port", "0", "--secret", SECRET, "--inspector-port", port]);
    expect(busy.code).toBe(2);
    expect(busy.stderr).toContain(
      `the inspector's port ${port} is already in use; pick another with --inspector-port (0 for any free one), or pass --no-inspector`,
    );
    const bare = start(["listen", "--port", "0", "--secret", SECRET, "--no-inspector"]);
    running.push(bare);
    await bare.waitFor(/^Press Ctrl\+C to stop\.$/);
    expect(bare.lines.some((line) => line.startsWith("inspector on"))).toBe(false);
  });
});

describe("copy as curl, freshly signed", () => {
  it("signs an old delivery now, so the copy verifies where the original no longer does", async () => {
    const app = await recordingServer([200]);
    closers.push(app.close);
    const { listener, url, inspector } = await startInspecting(["--forward-to", app.url]);
    running.push(listener);
    const body = JSON.stringify(createTestEvent("report.completed"));
    const old = await signPayload({
      payload: body,
      secret: SECRET,
      timestamp: Math.floor(Date.now() / 1000) - 3_600,
    });
    await fetch(url, { method: "POST", body, headers: { "mappa-signature": old } });
    const [delivery] = await eventually(
      () => list(inspector),
      (all) => all.length === 1 && !all[0]?.pending,
    );
    const detail = JSON.parse(
      (await rawRequest(new URL(`/api/deliveries/${delivery?.id}`, inspector).href)).body,
    ) as { curl: string; freshCurl: boolean };
    expect(detail.freshCurl).toBe(true);
    expect(detail.curl).toContain(`mappa-signature: ${old}`);

    const target = new URL(`/api/deliveries/${delivery?.id}/curl`, inspector).href;
    const host = new URL(inspector).host;
    // Minting a signature is for the page only, as a replay is.
    expect((await rawRequest(target, { method: "POST", headers: { host } })).status).toBe(403);
    expect((await rawRequest(target, { headers: { "x-mappa-inspector": "curl" } })).status).toBe(
      405,
    );
    const fresh = await rawRequest(target, {
      method: "POST",
      headers: { host, "x-mappa-inspector": "curl" },
    });
    expect(fresh.status).toBe(200);
    const { curl } = JSON.parse(fresh.body) as { curl: string };
    const header = /-H 'mappa-signature: (t=\d+,v1=[0-9a-f]{64})'/.exec(curl)?.[1];
    expect(header).toBeDefined();
    expect(header).not.toBe(old);
    expect(curl.match(/mappa-signature/g)).toHaveLength(1);
    await expect(
      verifySignature({
        payload: body,
        headers: { "mappa-signature": header as string },
        secret: SECRET,
      }),
    ).resolves.toMatchObject({ ok: true });
    await expect(
      verifySignature({ payload: body, headers: { "mappa-signature": old }, secret: SECRET }),
    ).rejects.toMatchObject({ code: "timestamp_outside_tolerance" });
  });

  it("is refused for a delivery no secret signed", async () => {
    const { listener, url, inspector } = await startInspecting([]);
    running.push(listener);
    await fetch(url, { method: "POST", body: "{}", headers: { "mappa-signature": "t=1,v1=00" } });
    const [delivery] = await eventually(
      () => list(inspector),
      (all) => all.length === 1,
    );
    const response = await rawRequest(
      new URL(`/api/deliveries/${delivery?.id}/curl`, inspector).href,
      { method: "POST", headers: { host: new URL(inspector).host, "x-mappa-inspector": "curl" } },
    );
    expect(response.status).toBe(409);
    expect(JSON.parse(response.body)).toMatchObject({ error: "no_secret" });
  });
});
