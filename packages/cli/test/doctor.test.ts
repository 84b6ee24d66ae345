// `doctor` against real servers on loopback that each misbehave one way, and a healthy one (the
// Express example). Certificates are made here with the openssl CLI.
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createMappaWebhooks,
  readBodyWithLimit,
  verifySignature,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unusualJson } from "../src/doctor/probe.js";
import { freePort, run, SECRET } from "./helpers.js";
import { type AppProcess, EXPRESS_EXAMPLE, startApp } from "./inspector-helpers.js";

interface Check {
  id: string;
  status: "pass" | "fail" | "warn" | "skip";
  summary: string;
  fix?: string;
}
interface Report {
  ok: boolean;
  problems: number;
  eventType: string;
  checks: Check[];
}

const dir = mkdtempSync(join(tmpdir(), "mappa-doctor-"));
const servers: Server[] = [];
let app: AppProcess;

type Behaviour = (
  req: IncomingMessage,
  body: Buffer,
) => Promise<WebhookResponse | { status: number; body: string }>;

/** A receiver built on the core: what a correct endpoint answers. */
function correct(): Behaviour {
  const webhooks = createMappaWebhooks({ secret: SECRET });
  return (req, body) =>
    webhooks.handle({ method: req.method ?? "GET", headers: req.headers, rawBody: body });
}

async function serve(behaviour: Behaviour, tls?: { key: string; cert: string }): Promise<string> {
  const handler = async (req: IncomingMessage, res: import("node:http").ServerResponse) => {
    const body = Buffer.from(await readBodyWithLimit(req, 1024 * 1024));
    const answer = await behaviour(req, body);
    res.writeHead(answer.status, { "content-type": "application/json" });
    res.end(answer.body);
  };
  const server =
    tls === undefined
      ? createHttpServer((req, res) => void handler(req, res))
      : createHttpsServer(tls, (req, res) => void handler(req, res));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  servers.push(server);
  const { port } = server.address() as AddressInfo;
  return `${tls === undefined ? "http" : "https"}://127.0.0.1:${port}/webhooks/mappa`;
}

async function doctor(
  args: string[],
): Promise<{ code: number | null; report: Report; stderr: string }> {
  const result = await run(["doctor", ...args, "--json"], { timeoutMs: 60_000 });
  return { code: result.code, report: JSON.parse(result.stdout) as Report, stderr: result.stderr };
}

const statuses = (report: Report) =>
  Object.fromEntries(report.checks.map((check) => [check.id, check.status]));
const failing = (report: Report) =>
  report.checks.filter((check) => check.status === "fail").map((check) => check.id);
const check = (report: Report, id: string) => report.checks.find((c) => c.id === id) as Check;

// Certificates: a private CA, leaves it signed (valid, expired, for another host), a self-signed one.
const pem = (name: string) => readFileSync(join(dir, name), "utf8");
function openssl(...args: string[]) {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}
function leaf(name: string, san: string, dates: [string, string]) {
  openssl(
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    "/CN=doctor-test",
    "-addext",
    `subjectAltName=${san}`,
  );
  openssl(
    "ca",
    "-batch",
    "-config",
    "ca.cnf",
    "-cert",
    "ca.crt",
    "-keyfile",
    "ca.key",
    "-in",
    `${name}.csr`,
    "-out",
    `${name}.crt`,
    "-startdate",
    dates[0],
    "-enddate",
    dates[1],
    "-notext",
  );
  return { key: pem(`${name}.key`), cert: pem(`${name}.crt`) };
}
const stamp = (date: Date) => `${date.toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;

let valid: { key: string; cert: string };
let expired: { key: string; cert: string };
let otherHost: { key: string; cert: string };
let selfSigned: { key: string; cert: string };

beforeAll(async () => {
  try {
    execFileSync("openssl", ["version"], { stdio: "pipe" });
  } catch {
    throw new Error(
      "the doctor tests make certificates with the openssl CLI: apt-get install -y openssl",
    );
  }
  openssl(
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "30",
    "-subj",
    "/CN=Doctor Test CA",
  );
  mkdirSync(join(dir, "newcerts"));
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  writeFileSync(
    join(dir, "ca.cnf"),
    `[ ca ]\ndefault_ca = test\n[ test ]\ndir = ${dir}\ndatabase = ${dir}/index.txt\nnew_certs_dir = ${dir}/newcerts\nserial = ${dir}/serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\nunique_subject = no\n[ any ]\ncommonName = supplied\n`,
  );
  const now = Date.now();
  const day = 86_400_000;
  valid = leaf("valid", "IP:127.0.0.1", [
    stamp(new Date(now - day)),
    stamp(new Date(now + 30 * day)),
  ]);
  expired = leaf("expired", "IP:127.0.0.1", ["20200101000000Z", "20200102000000Z"]);
  otherHost = leaf("other", "DNS:other.example", [
    stamp(new Date(now - day)),
    stamp(new Date(now + 30 * day)),
  ]);
  openssl(
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "self.key",
    "-out",
    "self.crt",
    "-days",
    "2",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
  );
  selfSigned = { key: pem("self.key"), cert: pem("self.crt") };
  app = await startApp(EXPRESS_EXAMPLE);
});

afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
  await app?.stop();
});

describe("doctor", () => {
  it("passes a healthy endpoint (the Express example), warning only about plain http on this machine", async () => {
    const { code, report, stderr } = await doctor([
      `${app.url}/webhooks/mappa`,
      "--secret",
      SECRET,
    ]);
    expect(stderr).toContain(
      "Sends at most 5 POST requests, each with an event of type doctor.probe, which no typed handler handles",
    );
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    expect(statuses(report)).toEqual({
      https: "warn",
      dns: "pass",
      tcp: "pass",
      tls: "skip",
      unsigned: "pass",
      valid: "pass",
      formatting: "pass",
      replay: "pass",
      duplicate: "pass",
      speed: "pass",
    });
    expect(check(report, "unsigned").summary).toMatch(
      /^It rejects a delivery without a signature \(401 missing_signature in/,
    );
    // The app saw doctor's probes as an unknown type and ran no typed handler.
    expect(
      app.lines.some((line) =>
        /\[mappa\] doctor\.probe evt_\w+ \(not a known type, ignored\)/.test(line),
      ),
    ).toBe(true);
  });

  it("prints a readable checklist and exits 1 when the endpoint is unreachable", async () => {
    const port = await freePort();
    const result = await run([
      "doctor",
      `http://127.0.0.1:${port}/webhooks/mappa`,
      "--secret",
      SECRET,
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(
      `✗ Nothing answers at 127.0.0.1 port ${port}: connection refused: nothing listens on that port`,
    );
    expect(result.stdout).toContain(
      "– Unsigned delivery: not checked, the endpoint is unreachable",
    );
    expect(result.stdout).toMatch(/✗ 1 problem found \(1 warning, 7 not checked\)\n$/);
  });

  it("reports a self-signed certificate, and accepts it with --ca", async () => {
    const url = await serve(correct(), selfSigned);
    const { code, report } = await doctor([url, "--secret", SECRET]);
    expect(code).toBe(1);
    expect(failing(report)).toEqual(["tls"]);
    expect(check(report, "tls").summary).toBe(
      "The HTTPS certificate is not valid: the certificate is self-signed: no public authority vouches for it, so Mappa will not trust it",
    );
    expect(check(report, "unsigned").status).toBe("skip");
    const trusted = await doctor([url, "--secret", SECRET, "--ca", join(dir, "self.crt")]);
    expect(failing(trusted.report)).toEqual([]);
    expect(trusted.code).toBe(0);
  });

  it("passes a certificate from a private CA given with --ca, for every check", async () => {
    const url = await serve(correct(), valid);
    const { code, report } = await doctor([url, "--secret", SECRET, "--ca", join(dir, "ca.crt")]);
    expect(code).toBe(0);
    expect(Object.values(statuses(report)).every((status) => status === "pass")).toBe(true);
    expect(check(report, "tls").summary).toMatch(
      /^The certificate is valid for 127\.0\.0\.1 \(issued by Doctor Test CA, expires in (29|30) days, TLSv1\.3\)$/,
    );
    const untrusted = await doctor([url, "--secret", SECRET]);
    expect(check(untrusted.report, "tls").summary).toMatch(/not trusted|issuer/);
  });

  it("reports an expired certificate and one for another host", async () => {
    const expiredUrl = await serve(correct(), expired);
    const old = await doctor([expiredUrl, "--ca", join(dir, "ca.crt")]);
    expect(old.code).toBe(1);
    expect(check(old.report, "tls").summary).toBe(
      "The HTTPS certificate is not valid: the certificate has expired on 2020-01-02",
    );
    const otherUrl = await serve(correct(), otherHost);
    const wrong = await doctor([otherUrl, "--ca", join(dir, "ca.crt")]);
    expect(wrong.code).toBe(1);
    expect(check(wrong.report, "tls").summary).toBe(
      "The HTTPS certificate is not valid: the certificate is for another host name: it names other.example, not 127.0.0.1",
    );
  });

  it("reports plain http:// for a public host name (checked through --resolve)", async () => {
    const url = new URL(await serve(correct()));
    const { code, report } = await doctor([
      `http://api.example.com:${url.port}/webhooks/mappa`,
      "--resolve",
      `api.example.com:${url.port}:127.0.0.1`,
      "--secret",
      SECRET,
    ]);
    expect(code).toBe(1);
    expect(failing(report)).toEqual(["https"]);
    expect(check(report, "https").summary).toBe(
      "The URL uses plain http://: Mappa delivers only to https:// URLs",
    );
    expect(check(report, "dns").summary).toBe("The host name is taken as 127.0.0.1 (--resolve)");
  });

  it("reports an endpoint that accepts unsigned deliveries", async () => {
    // Checks the signature only when there is one: a common mistake.
    const webhooks = correct();
    const url = await serve(async (req, body) =>
      req.headers["mappa-signature"] === undefined
        ? { status: 200, body: '{"received":true}' }
        : webhooks(req, body),
    );
    const { code, report } = await doctor([url, "--secret", SECRET]);
    expect(code).toBe(1);
    expect(failing(report)).toEqual(["unsigned"]);
    expect(check(report, "unsigned").summary).toBe(
      "It accepts a delivery without a signature (200): anyone who knows the URL can send fake events",
    );
  });

  it("reports an endpoint that verifies a re-serialised body", async () => {
    // Polar's mistake: parse first, then verify JSON.stringify(parsed).
    const url = await serve(async (req, body) => {
      const parsed = JSON.parse(body.toString("utf8")) as unknown;
      try {
        await verifySignature({
          payload: JSON.stringify(parsed),
          headers: req.headers,
          secret: SECRET,
        });
      } catch {
        return { status: 401, body: '{"error":"signature_mismatch"}' };
      }
      return { status: 200, body: '{"received":true}' };
    });
    const { code, report } = await doctor([url, "--secret", SECRET]);
    expect(code).toBe(1);
    expect(failing(report)).toEqual(["formatting"]);
    expect(check(report, "formatting").summary).toBe(
      "It rejects a correctly signed body whose JSON is formatted unusually (401): it verifies a re-serialised body, not the bytes it received",
    );
  });

  it("reports an endpoint that answers 500 to a duplicate", async () => {
    const seen = new Set<string>();
    const webhooks = createMappaWebhooks({ secret: SECRET, idempotency: false });
    const url = await serve(async (req, body) => {
      const result = await webhooks.handle({ method: "POST", headers: req.headers, rawBody: body });
      const id = result.event?.id;
      if (id === undefined) return result;
      if (seen.has(id)) return { status: 500, body: '{"error":"unique_violation"}' };
      seen.add(id);
      return result;
    });
    const { code, report } = await doctor([url, "--secret", SECRET]);
    expect(code).toBe(1);
    expect(failing(report)).toEqual(["duplicate"]);
    expect(check(report, "duplicate").summary).toBe(
      "It fails on a duplicate delivery (500): Mappa retries it, then gives up and reports the event as failed",
    );
  });

  it("reports an endpoint that accepts an old signature", async () => {
    const webhooks = createMappaWebhooks({ secret: SECRET, toleranceSec: 86_400 });
    const url = await serve((req, body) =>
      webhooks.handle({ method: "POST", headers: req.headers, rawBody: body }),
    );
    const { report } = await doctor([url, "--secret", SECRET]);
    expect(failing(report)).toEqual(["replay"]);
  });

  it("reports a slow endpoint", async () => {
    const webhooks = correct();
    const url = await serve(async (req, body) => {
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      return webhooks(req, body);
    });
    const { code, report } = await doctor([url, "--secret", SECRET, "--slow", "1000"]);
    expect(code).toBe(1);
    expect(failing(report)).toEqual(["speed"]);
    expect(check(report, "speed").summary).toMatch(
      /^It answers slowly: the slowest answer took \d+(\.\d)? s \(limit 1 s\), so Mappa may time out and retry$/,
    );
  });

  it("says when a secret is needed, and when the test event will reach real handlers", async () => {
    const url = await serve(correct());
    const bare = await run(["doctor", url]);
    // Not "no problems found (5 not checked)" and exit 0: what was left out, and exit 1.
    expect(bare.code).toBe(1);
    expect(bare.stdout).toContain("Sends 1 POST request with an event of type doctor.probe");
    expect(bare.stdout).toContain(
      "– Signed delivery: not checked, it needs the secret: pass --secret (or set MAPPA_WEBHOOK_SECRET)",
    );
    expect(bare.stdout).not.toContain("no problems found");
    expect(bare.stdout).toContain(
      "✗ not fully checked: 4 checks need the secret (Signed delivery, Unusual JSON formatting, Old signature (replay), Duplicate delivery)",
    );
    expect(bare.stdout).toMatch(/Run again with --secret <the endpoint's signing secret>/);
    const bareJson = await run(["doctor", url, "--json"]);
    expect(bareJson.code).toBe(1);
    expect(JSON.parse(bareJson.stdout)).toMatchObject({
      ok: false,
      problems: 0,
      needsSecret: ["valid", "formatting", "replay", "duplicate"],
    });
    const known = await run(["doctor", url, "--event", "report.completed"], {
      env: { MAPPA_WEBHOOK_SECRET: SECRET },
    });
    expect(known.code).toBe(0);
    expect(known.stdout).toContain(
      "Sends at most 5 POST requests, each with a test report.completed event: your handlers for report.completed WILL run",
    );
  });

  const usage: Array<[string, string[], RegExp]> = [
    ["no URL", [], /which endpoint\? e\.g\. npx @mappa-webhooks\/cli doctor https:\/\//],
    [
      "a URL without a scheme",
      ["api.example.com/hooks"],
      /is not a URL: give http\(s\):\/\/… or host:port\/path/,
    ],
    [
      "a non-http scheme",
      ["ftp://example.com/x"],
      /the URL "ftp:\/\/example\.com\/x" must be http:\/\/ or https:\/\//,
    ],
    [
      "a missing --ca file",
      ["https://127.0.0.1/x", "--ca", "/nonexistent.pem"],
      /cannot read --ca \/nonexistent\.pem: no such file/,
    ],
    [
      "a bad --resolve",
      ["https://127.0.0.1/x", "--resolve", "nope"],
      /--resolve must be host:port:address/,
    ],
    ["a bad --slow", ["https://127.0.0.1/x", "--slow", "fast"], /--slow must be a number >= 1/],
    ["an unknown flag", ["https://127.0.0.1/x", "--insecure"], /unknown flag --insecure/],
  ];
  it.each(usage)("exits 2 for %s", async (_name, args, message) => {
    const result = await run(["doctor", ...args]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain("Run `npx @mappa-webhooks/cli doctor --help` for usage.");
  });
});

describe("doctor's unusually formatted body", () => {
  it("is valid JSON for the same value, with bytes a parse-and-stringify round trip changes", () => {
    const event = createTestEvent("report.failed", {
      data: { error: { code: "x", message: "café / naïve 🎙" } },
    });
    const body = unusualJson(event);
    expect(JSON.parse(body)).toEqual(event);
    expect(JSON.stringify(JSON.parse(body))).not.toBe(body);
    expect(body).toContain("caf\\u00e9 \\u002f na\\u00efve \\ud83c\\udf99");
    expect(body).toMatch(/^\{\n {3}"data" : {2}\{/);
    expect([...body].every((char) => char.charCodeAt(0) < 128)).toBe(true);
  });
});
