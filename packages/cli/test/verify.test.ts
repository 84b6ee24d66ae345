import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { beforeAll, describe, expect, it } from "vitest";
import { run, SECRET } from "./helpers.js";

const T = 1_768_651_500; // 2026-01-17T12:05:00Z
const dir = mkdtempSync(join(tmpdir(), "mappa-cli-verify-"));
const event = createTestEvent("report.completed", {
  id: "evt_capture",
  createdAt: "2026-01-17T12:05:00.000Z",
});
const body = JSON.stringify(event);
const bodyFile = join(dir, "body.json");
const newlineFile = join(dir, "body-newline.json");
const notEventFile = join(dir, "not-event.json");
const notEventBody = '{"hello":"world"}';
let header: string;
let notEventHeader: string;

beforeAll(async () => {
  writeFileSync(bodyFile, body);
  writeFileSync(newlineFile, `${body}\n`);
  writeFileSync(notEventFile, notEventBody);
  header = await signPayload({ payload: body, secret: SECRET, timestamp: T });
  notEventHeader = await signPayload({ payload: notEventBody, secret: SECRET, timestamp: T });
});

const verify = (args: string[], options: Parameters<typeof run>[1] = {}) =>
  run(["verify", ...args], options);

describe("verify", () => {
  it("explains a valid capture check by check and exits 0", async () => {
    const result = await verify([
      "--secret",
      SECRET,
      "--header",
      header,
      "--body-file",
      bodyFile,
      "--now",
      String(T + 12),
    ]);
    expect(result.code).toBe(0);
    expect(result.stdout.split("\n")).toEqual([
      `Checking against t=${T + 12} with a 300 s tolerance`,
      "  ✓ signature header present: mappa-signature",
      `  ✓ header well-formed: t=${T}, 1 v1 signature`,
      "  ✓ timestamp within tolerance: 12 s in the past (tolerance 300 s)",
      "  ✓ signature matches the body: under secret #1",
      "  ✓ body is a Mappa event: report.completed evt_capture",
      "✓ valid: a receiver would accept this delivery",
      "",
    ]);
  });

  it("names the secret that matched while rotating, and accepts a pasted header line", async () => {
    const result = await verify([
      "--secret",
      "whsec_new",
      "--secret",
      SECRET,
      "--header",
      `mappa-signature: ${header}`,
      "--body-file",
      bodyFile,
      "--now",
      "2026-01-17T12:05:00Z",
    ]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(
      "✓ signature matches the body: under secret #2 of 2 (an older secret is still in use)",
    );
    expect(result.stdout).toContain("✓ timestamp within tolerance: exactly now");
  });

  it("fails on the wrong secret at the signature check", async () => {
    const result = await verify([
      "--secret",
      "whsec_wrong",
      "--header",
      header,
      "--body-file",
      bodyFile,
      "--now",
      String(T),
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("✓ timestamp within tolerance");
    expect(result.stdout).toContain(
      "✗ signature matches the body: No v1 signature matches the body under the configured secret.",
    );
    expect(result.stdout).toContain("✗ not valid: signature_mismatch");
    expect(result.stdout + result.stderr).not.toContain("whsec_wrong");
  });

  it("explains an old capture: outside the tolerance, the signature itself checked as of its own time", async () => {
    const result = await verify([
      "--secret",
      SECRET,
      "--header",
      header,
      "--body-file",
      bodyFile,
      "--now",
      String(T + 3_600),
    ]);
    expect(result.code).toBe(1);
    const lines = result.stdout.split("\n");
    expect(lines.slice(3, 5)).toEqual([
      "  ✗ timestamp within tolerance: The signature timestamp is 3600 s in the past, beyond the 300 s tolerance: a replayed or delayed delivery, or this server's clock is wrong (check NTP).",
      `  ✓ signature matches the body: under secret #1, as of its own time (t=${T})`,
    ]);
    expect(result.stdout).not.toContain("not checked");
    expect(lines.filter((line) => line.includes("hint:"))).toEqual([
      `  hint: The signature itself matches: the delivery is genuine, but it was signed 3600 s in the past, beyond the 300 s tolerance, so a receiver refuses it as a possible replay (or a clock is wrong). To check a saved capture, pass --now ${T} (when it was signed) or a larger --tolerance.`,
    ]);
    expect(result.stdout).toContain("✗ not valid: timestamp_outside_tolerance\n");
    // Both fixes the hint names work.
    const asOfThen = await verify([
      "--secret",
      SECRET,
      "--header",
      header,
      "--body-file",
      bodyFile,
      "--now",
      String(T),
    ]);
    expect(asOfThen.code).toBe(0);
    const wider = await verify([
      "--secret",
      SECRET,
      "--header",
      header,
      "--body-file",
      bodyFile,
      "--now",
      String(T + 3_600),
      "--tolerance",
      "4000",
    ]);
    expect(wider.code).toBe(0);
    expect(wider.stdout).toContain("3600 s in the past (tolerance 4000 s)");
  });

  it("says when an old capture does not match at its own time either", async () => {
    const result = await verify([
      "--secret",
      "whsec_wrong",
      "--header",
      header,
      "--body-file",
      bodyFile,
      "--now",
      String(T + 3_600),
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(
      `  ✗ signature matches the body: as of its own time (t=${T}): No v1 signature matches the body under the configured secret.`,
    );
    expect(result.stdout).not.toContain("genuine");
    expect(result.stdout).toContain("✗ not valid: timestamp_outside_tolerance, signature_mismatch");
  });

  it("puts the final-newline cause alone, without the generic re-serialisation hint", async () => {
    const result = await verify([
      "--secret",
      SECRET,
      "--header",
      header,
      "--body-file",
      newlineFile,
      "--now",
      String(T),
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("✗ signature matches the body");
    expect(result.stdout.split("\n").filter((line) => line.includes("hint:"))).toEqual([
      "  hint: The signature matches the body WITHOUT the file's final newline: an editor or `echo` added it. The delivery itself is genuine; save the body without a trailing newline (printf '%s' …).",
    ]);
    expect(result.stdout).not.toContain("re-serialised");
  });

  it("finds the final newline of an old capture too, and names both fixes", async () => {
    const crlfFile = join(dir, "body-crlf.json");
    writeFileSync(crlfFile, `${body}\r\n`);
    const result = await verify([
      "--secret",
      SECRET,
      "--header",
      header,
      "--body-file",
      crlfFile,
      "--now",
      String(T + 3_600),
      "--json",
    ]);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout);
    expect(report.notes).toHaveLength(2);
    expect(report.notes[0]).toMatch(
      /^The signature matches the body WITHOUT the file's final newline/,
    );
    expect(report.notes[1]).toMatch(
      new RegExp(`^The signature itself matches \\(without the final newline\\).*--now ${T}`),
    );
  });

  it("keeps the generic hint when a trailing newline is not the cause", async () => {
    const result = await verify([
      "--secret",
      "whsec_wrong",
      "--header",
      header,
      "--body-file",
      newlineFile,
      "--now",
      String(T),
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).not.toContain("WITHOUT the file's final newline");
    expect(result.stdout).toContain("re-serialised by a JSON parser");
  });

  it("stops at a malformed or empty header and skips the later checks", async () => {
    const malformed = await verify([
      "--secret",
      SECRET,
      "--header",
      "t=abc,v1=00",
      "--body-file",
      bodyFile,
    ]);
    expect(malformed.code).toBe(1);
    expect(malformed.stdout).toContain("✓ signature header present");
    expect(malformed.stdout).toContain(
      "✗ header well-formed: The signature header is malformed: `t` is not a whole number of seconds.",
    );
    expect(malformed.stdout).toContain("– timestamp within tolerance: not checked");
    const empty = await verify(["--secret", SECRET, "--header", "", "--body-file", bodyFile]);
    expect(empty.code).toBe(1);
    expect(empty.stdout).toContain("✗ signature header present: No signature header");
    expect(empty.stdout).toContain("– header well-formed: not checked");
  });

  it("checks that the body is an event even when the signature is right", async () => {
    const result = await verify([
      "--secret",
      SECRET,
      "--header",
      notEventHeader,
      "--body-file",
      notEventFile,
      "--now",
      String(T),
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("✓ signature matches the body");
    expect(result.stdout).toContain(
      "✗ body is a Mappa event: The body is JSON but not a Mappa event: `type` is not a non-empty string.",
    );
    expect(result.stdout).toContain("✗ not valid: invalid_event");
  });

  it("reads the body from standard input with --body-file - and the secret from the environment", async () => {
    const result = await verify(["--header", header, "--body-file", "-", "--now", String(T)], {
      input: body,
      env: { MAPPA_WEBHOOK_SECRET: SECRET },
    });
    expect(result.code).toBe(0);
  });

  it("prints the checks as JSON", async () => {
    const good = await verify([
      "--secret",
      SECRET,
      "--header",
      header,
      "--body-file",
      bodyFile,
      "--now",
      String(T + 5),
      "--json",
    ]);
    expect(good.code).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({
      valid: true,
      now: T + 5,
      toleranceSec: 300,
      timestamp: T,
      skewSec: 5,
      secretIndex: 0,
      event: {
        id: "evt_capture",
        type: "report.completed",
        known: true,
        createdAt: "2026-01-17T12:05:00.000Z",
        timestamp: "2026-01-17T12:05:00.000Z",
        data: { status: "succeeded" },
      },
    });
    const bad = await verify([
      "--secret",
      SECRET,
      "--header",
      header,
      "--body-file",
      bodyFile,
      "--now",
      String(T - 400),
      "--json",
    ]);
    expect(bad.code).toBe(1);
    const report = JSON.parse(bad.stdout);
    expect(report).toMatchObject({
      valid: false,
      skewSec: -400,
      error: { code: "timestamp_outside_tolerance" },
    });
    expect(report.checks.map((c: { id: string; ok: boolean | null }) => [c.id, c.ok])).toEqual([
      ["header_present", true],
      ["header_well_formed", true],
      ["timestamp", false],
      ["signature", true],
      ["event", true],
    ]);
    expect(report.checks[3].detail).toBe(`under secret #1, as of its own time (t=${T})`);
    expect(report.error.message).toContain("400 s in the future");
    expect(report.notes[0]).toContain("signed 400 s in the future");
  });
});

describe("verify input errors (exit 2)", () => {
  const cases: Array<[string, string[], RegExp]> = [
    [
      "no secret",
      ["--header", "t=1,v1=00", "--body-file", "x"],
      /no webhook secret: pass --secret <secret> or set MAPPA_WEBHOOK_SECRET/,
    ],
    ["no --header", ["--secret", SECRET, "--body-file", "x"], /--header is required/],
    ["no --body-file", ["--secret", SECRET, "--header", "t=1,v1=00"], /--body-file is required/],
    [
      "a missing body file",
      ["--secret", SECRET, "--header", "t=1,v1=00", "--body-file", "/nonexistent/body"],
      /cannot read --body-file \/nonexistent\/body: no such file/,
    ],
    [
      "a bad --now",
      ["--secret", SECRET, "--header", "t=1", "--body-file", "x", "--now", "yesterday"],
      /--now must be unix seconds or an ISO date, got "yesterday"/,
    ],
    [
      "a bad --tolerance",
      ["--secret", SECRET, "--header", "t=1", "--body-file", "x", "--tolerance", "-"],
      /--tolerance must be a number >= 0/,
    ],
    ["--header without a value", ["--secret", SECRET, "--header"], /--header needs a value/],
    ["an unknown flag", ["--sig", "x"], /unknown flag --sig/],
  ];
  it.each(cases)("rejects %s", async (_name, args, message) => {
    const result = await verify(args);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain("Run `npx @mappa-webhooks/cli verify --help` for usage.");
  });
});
