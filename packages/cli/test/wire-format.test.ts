// The events the CLI generates (trigger, in every shape; the demo), captured over real HTTP and
// checked against Mappa's wire format with the testing kit's independent rules, then parsed by
// the core.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MAPPA_EVENT_TYPES, parseEvent, verifySignature } from "@mappa-webhooks/core";
import { afterAll, describe, expect, it } from "vitest";
import {
  WIRE_SHAPES,
  type WireShape,
  wireBodyProblems,
  wireShapeOf,
} from "../../testing/test/wire-format.js";
import { DEMO, recordingServer, run, SECRET } from "./helpers.js";

const cleanup: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  await Promise.all(cleanup.map((close) => close()));
});

/** The core parses `body` as the event it is: known for known types, every field as sent. */
function expectParsed(body: string, event: Record<string, unknown>) {
  const parsed = parseEvent(body);
  const known = (MAPPA_EVENT_TYPES as readonly string[]).includes(event.type as string);
  expect(parsed).toMatchObject({ known, type: event.type, data: event.data });
  expect([parsed.id, parsed.createdAt, parsed.timestamp]).toEqual([
    event.id,
    event.createdAt,
    event.timestamp,
  ]);
  expect(parsed.occurredAt).toBe(event.createdAt ?? event.timestamp);
}

describe("trigger sends bodies that follow the wire format", () => {
  const types = [...MAPPA_EVENT_TYPES, "report.progress"];
  const cases = WIRE_SHAPES.flatMap((shape) =>
    types.map((type) => [type, shape] as [string, WireShape]),
  );

  it.each(cases)("%s in the %s shape", async (type, shape) => {
    const target = await recordingServer([200]);
    cleanup.push(target.close);
    const result = await run([
      "trigger",
      type,
      "--allow-unknown",
      "--url",
      target.url,
      "--secret",
      SECRET,
      "--shape",
      shape,
      "--no-retry",
    ]);
    expect(result.code).toBe(0);
    expect(target.received).toHaveLength(1);
    const request = target.received[0] as { body: string; headers: Record<string, unknown> };
    const checked = wireBodyProblems(request.body, shape);
    expect(checked.problems).toEqual([]);
    await expect(
      verifySignature({
        payload: request.body,
        headers: request.headers as Record<string, string>,
        secret: SECRET,
      }),
    ).resolves.toMatchObject({ ok: true });
    expectParsed(request.body, checked.event as Record<string, unknown>);
  });

  it("keeps to the format when --data overrides the defaults", async () => {
    const target = await recordingServer([200]);
    cleanup.push(target.close);
    const result = await run([
      "trigger",
      "report.failed",
      "--url",
      target.url,
      "--secret",
      SECRET,
      "--data",
      '{"jobId":"job_1","error":{"code":"audio_too_short"}}',
      "--no-retry",
    ]);
    expect(result.code).toBe(0);
    const body = target.received[0]?.body ?? "";
    expect(wireBodyProblems(body, "current").problems).toEqual([]);
    expect(JSON.parse(body).data).toMatchObject({
      jobId: "job_1",
      status: "failed",
      error: { code: "audio_too_short", message: expect.any(String) },
    });
  });
});

describe("the demo sends bodies that follow the wire format", () => {
  it("every delivery of the story is a current-shape event", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mappa-demo-wire-"));
    const record = join(dir, "bodies.jsonl");
    const receiver = fileURLToPath(new URL("./recording-receiver.mjs", import.meta.url));
    const result = await run(["--receiver", receiver], {
      script: DEMO,
      env: { RECORD_FILE: record },
      timeoutMs: 90_000,
    });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const bodies = readFileSync(record, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as string);
    // Six steps: completed, failed, tampered, replayed, duplicate (twice), outage (attempts
    // that reached the restarted receiver).
    expect(bodies.length).toBeGreaterThanOrEqual(7);
    for (const body of bodies) {
      const checked = wireBodyProblems(body, "current");
      expect({ body, problems: checked.problems }).toEqual({ body, problems: [] });
      expect(wireShapeOf(checked.event)).toBe("current");
      expectParsed(body, checked.event as Record<string, unknown>);
    }
    const types = new Set(bodies.map((body) => (JSON.parse(body) as { type: string }).type));
    expect([...types].sort()).toEqual(["matching.completed", "report.completed", "report.failed"]);
  });
});
