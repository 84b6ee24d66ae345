import { afterEach, describe, expect, it } from "vitest";
import { type MappaEmulator, type MappaEmulatorOptions, startMappaEmulator } from "../src/index.js";
import {
  ApiError,
  AuthError,
  checkReportJsonV2,
  createConduitClient,
  InsufficientCreditsError,
  RateLimitError,
  ValidationError,
} from "./conduit-client.js";
import { reportBody, startReceiver } from "./helpers.js";

const DAY = 86_400_000;
let emulator: MappaEmulator | undefined;
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
  for (const c of cleanups.splice(0)) await c();
});

async function setup(options: MappaEmulatorOptions = {}, apiKey = "test_key") {
  emulator = await startMappaEmulator({ clock: "manual", ...options });
  return { emulator, client: createConduitClient({ baseUrl: emulator.url, apiKey }) };
}

const audio = new Uint8Array(2048).fill(7);

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("files", () => {
  it("uploads multipart, gets, lists newest first with cursors, locks retention, deletes", async () => {
    const { client } = await setup();
    const first = await client.upload(audio, "call.final.wav", "audio/wav");
    expect(first.label).toBe("call");
    expect(first.contentType).toBe("audio/wav");
    expect(first.sizeBytes).toBe(2048);
    expect(first.source).toBe("SDK");
    expect(typeof first.createdByApiKeyId).toBe("string");
    const second = await client.upload(audio, "b");
    const third = await client.upload(audio, "c");

    const file = await client.getFile(first.mediaId);
    expect(file).toMatchObject({
      hasReports: false,
      processingStatus: "COMPLETED",
      retention: { locked: false, daysRemaining: 30 },
    });

    const page1 = await client.listFiles({ limit: 2 });
    expect(page1.files.map((f) => f.mediaId)).toEqual([third.mediaId, second.mediaId]);
    expect(page1.hasMore).toBe(true);
    const page2 = await client.listFiles({ limit: 2, cursor: page1.nextCursor as string });
    expect(page2.files.map((f) => f.mediaId)).toEqual([first.mediaId]);
    expect(page2).toMatchObject({ hasMore: false, nextCursor: null });

    expect(await client.setRetentionLock(first.mediaId, true)).toMatchObject({
      mediaId: first.mediaId,
      retentionLock: true,
    });
    expect((await client.getFile(first.mediaId)).retention).toEqual({
      locked: true,
      expiresAt: null,
      daysRemaining: null,
    });

    expect(await client.deleteFile(second.mediaId)).toEqual({
      deleted: true,
      mediaId: second.mediaId,
    });
    // the gone shape is flat: {"error":"gone",…}, so the SDK's code is conduit_error (§3)
    const gone = await rejection(client.getFile(second.mediaId));
    expect(gone).toBeInstanceOf(ApiError);
    expect(gone).toMatchObject({ status: 410, code: "conduit_error" });
    expect((gone as ApiError).details).toMatchObject({ error: "gone" });
    expect((await client.listFiles()).files.map((f) => f.mediaId)).toEqual([
      third.mediaId,
      first.mediaId,
    ]);
    const withDeleted = await client.listFiles({ includeDeleted: true });
    expect(withDeleted.files.map((f) => f.mediaId)).toEqual([
      third.mediaId,
      second.mediaId,
      first.mediaId,
    ]);
    expect(withDeleted.files[1]?.deletedAt).toMatch(/Z$/);
  });

  it("expires unlocked files at the end of their retention on the emulator's clock", async () => {
    const { emulator, client } = await setup({ fileRetentionDays: 2 });
    const kept = await client.upload(audio, "kept");
    const expiring = await client.upload(audio, "expiring");
    await client.setRetentionLock(kept.mediaId, true);
    await emulator.advance(DAY);
    expect((await client.getFile(expiring.mediaId)).retention).toMatchObject({
      locked: false,
      daysRemaining: 1,
    });
    await emulator.advance(DAY);
    expect(await rejection(client.getFile(expiring.mediaId))).toMatchObject({ status: 410 });
    expect((await client.getFile(kept.mediaId)).retention.locked).toBe(true);
  });

  it("rejects a non-multipart upload (415) and a form without a file (422)", async () => {
    const { client } = await setup();
    const wrongType = await rejection(client.call("POST", "/v1/files", { json: { file: "x" } }));
    expect(wrongType).toMatchObject({ status: 415, code: "unsupported_media_type" });
    const form = new FormData();
    form.append("label", "only a label");
    expect(await rejection(client.call("POST", "/v1/files", { form }))).toBeInstanceOf(
      ValidationError,
    );
  });

  it("replays an upload with the same Idempotency-Key and refuses other bytes under it", async () => {
    const { client, emulator } = await setup();
    const a = await client.upload(audio, "a", "audio/wav", "key-1");
    const b = await client.upload(audio, "a", "audio/wav", "key-1");
    expect(b.mediaId).toBe(a.mediaId);
    expect(emulator.files()).toHaveLength(1);
    const conflict = await rejection(client.upload(new Uint8Array(3), "a", "audio/wav", "key-1"));
    expect(conflict).toMatchObject({ status: 409, code: "idempotency_key_reused" });
  });
});

describe("report jobs", () => {
  it("runs queued → running through the stages → succeeded; the report is readable before the terminal state", async () => {
    const { emulator, client } = await setup();
    const { mediaId } = await client.upload(audio, "call");
    const receipt = await client.createReport(
      reportBody(mediaId, { label: "Q3 call", entityLabel: "Alice" }),
    );
    expect(receipt).toEqual({
      jobId: receipt.jobId,
      status: "queued",
      stage: "queued",
      estimatedWaitSec: 150,
    });
    expect(await client.reportByJob(receipt.jobId)).toBeNull();
    expect(await client.getJob(receipt.jobId)).toMatchObject({
      status: "queued",
      stage: "queued",
      progress: 0,
      label: "Q3 call",
    });

    const seen: string[] = ["queued/queued"];
    for (let t = 0; t < 150; t += 5) {
      await emulator.advance(5_000);
      const job = await client.getJob(receipt.jobId);
      const label = `${job.status}/${job.stage}`;
      if (seen.at(-1) !== label) seen.push(label);
      if (job.stage === "finalizing" && job.status === "running") {
        // before terminal: the report exists, and the job carries no reportId yet (omitted, never null)
        const early = await client.reportByJob(receipt.jobId);
        expect(early).not.toBeNull();
        expect("reportId" in job).toBe(false);
      }
    }
    expect(seen).toEqual([
      "queued/queued",
      "running/transcoding",
      "running/extracting",
      "running/scoring",
      "running/rendering",
      "running/finalizing",
      "succeeded/finalizing",
    ]);
    const job = await client.getJob(receipt.jobId);
    expect(job).toMatchObject({
      status: "succeeded",
      progress: 1,
      usage: { creditsUsed: 5, creditsNetUsed: 5, durationMs: 150_000 },
      credits: { reservedCredits: 5, reservationStatus: "applied" },
    });
    const report = await client.getReport(job.reportId as string);
    expect(report).toMatchObject({
      jobId: receipt.jobId,
      label: "Q3 call",
      media: { mediaId },
      output: { template: "general_report" },
      entity: { label: "Alice" },
    });
    expect(typeof report.markdown).toBe("string");
    expect(() => checkReportJsonV2(report.json, "$.json")).not.toThrow();
    expect(await client.reportByJob(receipt.jobId)).toEqual(report);
    expect((await client.getFile(mediaId)).hasReports).toBe(true);
  });

  it("same Idempotency-Key → same receipt; another body under it → 409; keys are scoped per route", async () => {
    const { emulator, client } = await setup();
    const { mediaId } = await client.upload(audio, "call", "audio/wav", "shared-key");
    const first = await client.createReport(reportBody(mediaId), "shared-key");
    const again = await client.createReport(reportBody(mediaId), "shared-key");
    expect(again).toEqual(first);
    expect(emulator.jobs()).toHaveLength(1);
    // the SDK also puts a caller's key in the body: the same request with it replays too
    const withField = await client.createReport(
      { ...reportBody(mediaId), idempotencyKey: "shared-key" },
      "shared-key",
    );
    expect(withField.jobId).toBe(first.jobId);
    const conflict = await rejection(
      client.createReport(reportBody(mediaId, { label: "other" }), "shared-key"),
    );
    expect(conflict).toBeInstanceOf(ApiError);
    expect(conflict).toMatchObject({ status: 409, code: "idempotency_key_reused" });
    const fresh = await client.createReport(reportBody(mediaId));
    expect(fresh.jobId).not.toBe(first.jobId);
  });

  it("a label fail:<code> fails the job with that code; credits are released", async () => {
    const { emulator, client } = await setup({ credits: 20 });
    const { mediaId } = await client.upload(audio, "call");
    const { jobId } = await client.createReport(
      reportBody(mediaId, { label: "fail:target_not_found" }),
    );
    expect(emulator.credits()).toBe(15);
    await emulator.advance(150_000);
    const job = await client.getJob(jobId);
    expect(job.status).toBe("failed");
    expect(job.error).toEqual({
      code: "target_not_found",
      message: "Could not identify the target speaker in the recording.",
    });
    expect(job).toMatchObject({ credits: { reservationStatus: "released" }, releasedCredits: 5 });
    expect(emulator.credits()).toBe(20);
    expect(await client.reportByJob(jobId)).toBeNull();
  });

  it("planNext and planJob set outcomes and latency per job", async () => {
    const { emulator, client } = await setup();
    const { mediaId } = await client.upload(audio, "call");
    emulator.planNext(2, {
      outcome: {
        status: "failed",
        error: { code: "audio_too_short", message: "Too short." },
        atStage: "transcoding",
      },
      latencyMs: 10_000,
    });
    const a = await client.createReport(reportBody(mediaId));
    const b = await client.createReport(reportBody(mediaId));
    const c = await client.createReport(reportBody(mediaId));
    expect(a.estimatedWaitSec).toBe(10);
    emulator.planJob(c.jobId, { latencyMs: 20_000 });
    await emulator.advance(10_000);
    expect((await client.getJob(a.jobId)).error).toEqual({
      code: "audio_too_short",
      message: "Too short.",
    });
    expect((await client.getJob(b.jobId)).status).toBe("failed");
    expect((await client.getJob(c.jobId)).status).toBe("running");
    await emulator.advance(15_000);
    expect((await client.getJob(c.jobId)).status).toBe("succeeded");
  });

  it("cancels a running job (idempotent on a finished one)", async () => {
    const { emulator, client } = await setup();
    const { mediaId } = await client.upload(audio, "call");
    const { jobId } = await client.createReport(reportBody(mediaId));
    await emulator.advance(30_000);
    const canceled = await client.cancelJob(jobId);
    expect(canceled).toMatchObject({
      status: "canceled",
      credits: { reservationStatus: "released" },
    });
    await emulator.advance(200_000);
    expect((await client.getJob(jobId)).status).toBe("canceled");
    expect((await client.cancelJob(jobId)).status).toBe("canceled");
  });

  it("validates the body with 422 and names the fields", async () => {
    const { client } = await setup();
    const { mediaId } = await client.upload(audio, "call");
    const error = await rejection(
      client.createReport({
        media: { mediaId },
        output: { template: "nope" },
        target: {
          strategy: "timerange",
          on_miss: "error",
          timerange: { start_seconds: 9, end_seconds: 3 },
        },
        label: "",
      }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    const paths = ((error as ValidationError).details as { issues: { path: string }[] }).issues.map(
      (i) => i.path,
    );
    expect(paths).toEqual(["output.template", "target.timerange", "label"]);
    expect(await rejection(client.createReport(reportBody("media_missing")))).toMatchObject({
      status: 404,
      code: "not_found",
    });
    const badJson = await rejection(
      client.call("POST", "/v1/reports/jobs", {
        headers: { "Content-Type": "application/json" },
        form: undefined as never,
        json: undefined,
        idempotencyKey: "k",
      }),
    );
    expect(badJson).toBeInstanceOf(ValidationError);
  });
});

describe("matching jobs and entities", () => {
  it("creates a matching from entities and a media target; strict bodies by id and by job", async () => {
    const { emulator, client } = await setup();
    const alice = emulator.addEntity({ label: "Alice" });
    const bob = emulator.addEntity({ label: "Bob" });
    const { mediaId } = await client.upload(audio, "call");
    const receipt = await client.createMatching({
      context: "behavioral_compatibility",
      target: { type: "entity_id", entityId: alice.id },
      group: [
        { type: "entity_id", entityId: bob.id },
        {
          type: "media_target",
          mediaId,
          selector: { strategy: "speaker_index", on_miss: "error", speaker_index: 1 },
        },
      ],
      label: "team fit",
    });
    expect(await client.matchingByJob(receipt.jobId)).toBeNull();
    await emulator.advance(60_000);
    const job = await client.getJob(receipt.jobId);
    expect(job).toMatchObject({ type: "matching.generate", status: "succeeded" });
    const matching = await client.getMatching(job.matchingId as string);
    expect(matching).toMatchObject({
      context: "behavioral_compatibility",
      label: "team fit",
      target: { entityId: alice.id, resolvedLabel: "Alice" },
    });
    expect(await client.matchingByJob(receipt.jobId)).toEqual(matching);
    const duplicate = await rejection(
      client.createMatching({
        context: "behavioral_compatibility",
        target: { type: "entity_id", entityId: alice.id },
        group: [{ type: "entity_id", entityId: alice.id }],
      }),
    );
    expect(duplicate).toBeInstanceOf(ValidationError);
    const unknown = await rejection(
      client.createMatching({
        context: "behavioral_compatibility",
        target: { type: "entity_id", entityId: "ent_nope" },
        group: [{ type: "entity_id", entityId: bob.id }],
      }),
    );
    expect(unknown).toMatchObject({ status: 404 });
  });

  it("lists entities with cursors, gets and relabels one; a report's speaker becomes an entity", async () => {
    const { emulator, client } = await setup();
    const ids = [
      emulator.addEntity({ label: "A" }).id,
      emulator.addEntity().id,
      emulator.addEntity({ label: "C" }).id,
    ];
    const page1 = await client.listEntities({ limit: 2 });
    expect(page1.entities.map((e) => e.id)).toEqual([ids[2], ids[1]]);
    expect(page1.hasMore).toBe(true);
    const page2 = await client.listEntities({ limit: 2, cursor: page1.cursor as string });
    expect(page2).toMatchObject({ entities: [{ id: ids[0] }], hasMore: false, cursor: null });
    expect(await client.updateEntity(ids[1] as string, { label: "  Bea  " })).toMatchObject({
      label: "Bea",
    });
    expect(await client.updateEntity(ids[1] as string, { label: null })).toMatchObject({
      label: null,
    });
    expect(await client.updateEntity(ids[1] as string, {})).toMatchObject({ label: null });
    expect(
      await rejection(client.updateEntity(ids[1] as string, { label: "x".repeat(65) })),
    ).toBeInstanceOf(ValidationError);
    expect(await rejection(client.getEntity("ent_missing"))).toMatchObject({
      status: 404,
      code: "not_found",
    });
    const { mediaId } = await client.upload(audio, "call");
    const { jobId } = await client.createReport(
      reportBody(mediaId, {
        target: { strategy: "entity_id", on_miss: "error", entity_id: ids[0] },
      }),
    );
    await emulator.advance(150_000);
    const report = await client.reportByJob(jobId);
    expect(report?.entity).toEqual({ id: ids[0], label: "A" });
    expect(await client.getEntity(ids[0] as string)).toMatchObject({ mediaCount: 1 });
  });
});

describe("auth, request ids and errors", () => {
  it("any key by default; 401 without one; only apiKey when it is set", async () => {
    const { emulator } = await setup({ apiKey: "the_key" });
    const good = createConduitClient({ baseUrl: emulator.url, apiKey: "the_key" });
    const bad = createConduitClient({ baseUrl: emulator.url, apiKey: "other" });
    expect((await good.listFiles()).files).toEqual([]);
    const error = await rejection(bad.listFiles());
    expect(error).toBeInstanceOf(AuthError);
    expect(error).toMatchObject({ status: 401, code: "invalid_api_key" });
    const none = await fetch(`${emulator.url}/v1/files`);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ error: { code: "unauthorized" } });
  });

  it("echoes X-Request-Id, generates req_<32 hex> when absent", async () => {
    const { client, emulator } = await setup();
    const result = await client.call("GET", "/v1/files?limit=1&includeDeleted=false", {
      requestId: "req_mine",
    });
    expect(result.requestId).toBe("req_mine");
    const error = await rejection(
      client.call("GET", "/v1/jobs/job_missing", { requestId: "req_err" }),
    );
    expect(error).toMatchObject({ requestId: "req_err", status: 404, code: "not_found" });
    const plain = await fetch(`${emulator.url}/v1/files`, { headers: { "Mappa-Api-Key": "k" } });
    expect(plain.headers.get("x-request-id")).toMatch(/^req_[0-9a-f]{32}$/);
  });

  it("402 insufficient_credits with required and available", async () => {
    const { emulator, client } = await setup({ credits: 7 });
    const { mediaId } = await client.upload(audio, "call");
    await client.createReport(reportBody(mediaId));
    const error = await rejection(client.createReport(reportBody(mediaId), "retry-me"));
    expect(error).toBeInstanceOf(InsufficientCreditsError);
    expect(error).toMatchObject({ required: 5, available: 2 });
    emulator.setCredits(100);
    // a failed create is not remembered: the same key succeeds once credits are there
    expect((await client.createReport(reportBody(mediaId), "retry-me")).status).toBe("queued");
  });

  it("429 with Retry-After for the next N requests", async () => {
    const { emulator, client } = await setup();
    emulator.rateLimit(2, 3);
    for (let i = 0; i < 2; i++) {
      const error = await rejection(client.listFiles());
      expect(error).toBeInstanceOf(RateLimitError);
      expect((error as RateLimitError).retryAfterMs).toBe(3000);
    }
    expect((await client.listFiles()).files).toEqual([]);
  });

  it("unknown paths 404 and wrong methods 405, in the error shape", async () => {
    const { client } = await setup();
    expect(await rejection(client.call("GET", "/v1/nothing"))).toMatchObject({
      status: 404,
      code: "not_found",
    });
    expect(await rejection(client.call("PUT", "/v1/files"))).toMatchObject({
      status: 405,
      code: "method_not_allowed",
    });
    expect(await rejection(client.call("GET", "/v1/files?limit=0"))).toBeInstanceOf(
      ValidationError,
    );
    expect(await rejection(client.call("GET", "/v1/files?cursor=bm9wZQ"))).toBeInstanceOf(
      ValidationError,
    );
  });
});

describe("control API over HTTP", () => {
  it("advances the clock, plans jobs, reads and resends deliveries under /_emulator", async () => {
    const receiver = await startReceiver((n) => (n <= 5 ? 503 : 200));
    cleanups.push(receiver.close);
    const { emulator, client } = await setup();
    const post = (path: string, body: unknown = {}) =>
      fetch(`${emulator.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }).then((r) => r.json());
    const { mediaId } = await client.upload(audio, "call");
    const { jobId } = await client.createReport(
      reportBody(mediaId, { webhook: { url: receiver.url } }),
    );
    await post(`/_emulator/jobs/${jobId}/plan`, { latencyMs: 1_000 });
    await post("/_emulator/clock/advance", { ms: 1_000 });
    expect((await client.getJob(jobId)).status).toBe("succeeded");
    await post("/_emulator/clock/advance", { ms: 2_135_000 });
    const { deliveries } = (await (
      await fetch(`${emulator.url}/_emulator/deliveries?jobId=${jobId}`)
    ).json()) as { deliveries: { eventId: string; state: string; attempts: unknown[] }[] };
    expect(deliveries[0]).toMatchObject({ state: "abandoned" });
    expect(deliveries[0]?.attempts).toHaveLength(5);
    const attempt = await post(`/_emulator/deliveries/${deliveries[0]?.eventId}/resend`);
    expect(attempt).toMatchObject({ attempt: 6, kind: "resend", status: 200, ok: true });
    expect(emulator.delivery(deliveries[0]?.eventId as string)?.state).toBe("delivered");
    const summary = await (await fetch(`${emulator.url}/_emulator`)).json();
    expect(summary).toMatchObject({ clock: "manual", jobs: 1, deliveries: 1 });
    expect(await post("/_emulator/clock/advance", { ms: -1 })).toMatchObject({
      error: { code: "validation_error" },
    });
  });
});
