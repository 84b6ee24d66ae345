// Issue 20: createMappaRecovery proven against the emulator. Real HTTP over loopback: the
// emulator is Mappa's API and sends the webhooks, a node:http server runs the core receiver,
// and recovery asks GET /v1/jobs/:id. Time is the emulator's manual clock, never a sleep.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createMappaRecovery,
  createMappaWebhooks,
  createMemoryIdempotencyStore,
  type MappaEvent,
  type MappaRecoveryOptions,
  type MappaWebhookError,
} from "@mappa-webhooks/core";
import { afterEach, describe, expect, it } from "vitest";
import { type MappaEmulator, type MappaEmulatorOptions, startMappaEmulator } from "../src/index.js";
import { createConduitClient } from "./conduit-client.js";
import { reportBody } from "./helpers.js";

const SECRET = "whsec_recovery_test";
const API_KEY = "k_recovery";
const MIN = 60_000;
/** A report takes 150 s; Mappa's retry schedule 35 min 35 s after it. */
const REPORT_MS = 150_000;
const SCHEDULE_MS = 2_135_000;
const GRACE_MS = 45 * MIN;

let emulator: MappaEmulator | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await emulator?.close();
  emulator = undefined;
});

interface Run {
  type: string;
  jobId: string;
  recovered: boolean;
  data: Record<string, unknown>;
}

/** Handlers for the four known types that record every run (per job id too). */
function recorder(gate?: () => Promise<void>) {
  const runs: Run[] = [];
  const perJob = new Map<string, number>();
  let entered: () => void = () => {};
  const firstEntered = new Promise<void>((resolve) => {
    entered = resolve;
  });
  const record = async (event: MappaEvent) => {
    if (!event.known) return;
    entered();
    if (gate !== undefined) await gate();
    const { jobId } = event.data;
    runs.push({
      type: event.type,
      jobId,
      recovered: event.recovered,
      data: event.data as unknown as Record<string, unknown>,
    });
    perJob.set(jobId, (perJob.get(jobId) ?? 0) + 1);
  };
  const on = {
    "report.completed": record,
    "report.failed": record,
    "matching.completed": record,
    "matching.failed": record,
  };
  return { runs, perJob, on, firstEntered };
}

/** A real receiver: createMappaWebhooks behind node:http; `healthy = false` answers 500 without handling. */
async function startApp(options: {
  store: ReturnType<typeof createMemoryIdempotencyStore>;
  on: ReturnType<typeof recorder>["on"];
}) {
  const webhooks = createMappaWebhooks({
    secret: SECRET,
    idempotency: options.store,
    on: options.on,
  });
  const state = { healthy: true, answers: [] as number[] };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (!state.healthy) {
      state.answers.push(500);
      res.writeHead(500, { "content-type": "application/json" }).end('{"error":"db down"}');
      return;
    }
    const answer = await webhooks.handle({
      method: req.method ?? "GET",
      headers: req.headers,
      rawBody: Buffer.concat(chunks),
    });
    state.answers.push(answer.status);
    res.writeHead(answer.status, answer.headers).end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${port}/webhooks/mappa`, state };
}

async function setup(options: MappaEmulatorOptions = {}) {
  const mappa = await startMappaEmulator({ clock: "manual", secret: SECRET, ...options });
  emulator = mappa;
  const client = createConduitClient({ baseUrl: mappa.url, apiKey: options.apiKey ?? API_KEY });
  const { mediaId } = await client.upload(new Uint8Array(32), "call");
  const createReport = async (webhookUrl?: string) =>
    (
      await client.createReport(
        reportBody(mediaId, webhookUrl === undefined ? {} : { webhook: { url: webhookUrl } }),
      )
    ).jobId;
  const createMatching = async (webhookUrl?: string) => {
    const a = mappa.addEntity({ label: "A" });
    const b = mappa.addEntity({ label: "B" });
    const receipt = await client.createMatching({
      context: "behavioral_compatibility",
      target: { type: "entity_id", entityId: a.id },
      group: [{ type: "entity_id", entityId: b.id }],
      ...(webhookUrl === undefined ? {} : { webhook: { url: webhookUrl } }),
    });
    return receipt.jobId;
  };
  return { mappa, client, createReport, createMatching };
}

type Store = ReturnType<typeof createMemoryIdempotencyStore>;

function recovery(
  mappa: MappaEmulator,
  store: Store,
  on: ReturnType<typeof recorder>["on"],
  extra: Partial<MappaRecoveryOptions> = {},
) {
  return createMappaRecovery({
    secret: SECRET,
    idempotency: store,
    on,
    apiKey: API_KEY,
    baseUrl: mappa.url,
    clock: () => mappa.now(),
    ...extra,
  });
}

const trackedIds = async (store: Store) =>
  (await store.tracked({ limit: 10_000 })).map((job) => job.jobId);

describe("recovery against the emulator: the webhook Mappa gave up on", () => {
  it("recovers an abandoned report.completed once; a later resend is a duplicate", async () => {
    const { mappa, createReport } = await setup();
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const app = await startApp({ store, on: handlers.on });
    app.state.healthy = false;
    const errors: MappaWebhookError[] = [];
    const rec = recovery(mappa, store, handlers.on, { onError: (error) => errors.push(error) });

    const jobId = await createReport(app.url);
    await rec.track(jobId);
    await mappa.advance(REPORT_MS + SCHEDULE_MS);
    const [delivery] = mappa.deliveries({ jobId });
    expect(delivery?.state).toBe("abandoned");
    expect(delivery?.attempts.map((a) => a.status)).toEqual([500, 500, 500, 500, 500]);
    expect(handlers.runs).toHaveLength(0);

    // 35.6 min after the job ended: still inside the default 45 min grace.
    const early = await rec.reconcile();
    expect(early.jobs).toEqual([{ jobId, outcome: "waiting", status: "succeeded" }]);
    expect(handlers.runs).toHaveLength(0);

    await mappa.advance(GRACE_MS - SCHEDULE_MS);
    const report = await rec.reconcile();
    expect(report.checked).toBe(1);
    expect(report.counts.recovered).toBe(1);
    expect(report.jobs).toEqual([
      { jobId, outcome: "recovered", status: "succeeded", type: "report.completed" },
    ]);
    const job = mappa.job(jobId);
    expect(job?.reportId).toMatch(/./);
    expect(handlers.runs).toEqual([
      {
        type: "report.completed",
        jobId,
        recovered: true,
        data: { jobId, reportId: job?.reportId, status: "succeeded" },
      },
    ]);
    expect(await trackedIds(store)).toEqual([]);

    // The receiver is healthy again and the webhook is sent by hand: one event, a duplicate.
    app.state.healthy = true;
    const attempt = await mappa.resend(delivery?.eventId as string);
    expect(attempt).toMatchObject({ kind: "resend", status: 200, ok: true });
    expect(JSON.parse(attempt.responseBody as string)).toEqual({ received: true, duplicate: true });
    expect(handlers.runs).toHaveLength(1);
    expect((await rec.reconcile()).checked).toBe(0);
    expect(errors).toEqual([]);
  });

  it("the reverse: the webhook is handled first, recovery then has nothing (or a duplicate) to do", async () => {
    const { mappa, createReport } = await setup();
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const app = await startApp({ store, on: handlers.on });
    const rec = recovery(mappa, store, handlers.on);

    const jobId = await createReport(app.url);
    await rec.track(jobId);
    await mappa.advance(REPORT_MS);
    expect(mappa.deliveries({ jobId })[0]?.state).toBe("delivered");
    expect(handlers.runs).toMatchObject([{ type: "report.completed", jobId, recovered: false }]);
    // The pipeline untracked the job once its outcome was handled.
    expect(await trackedIds(store)).toEqual([]);
    await mappa.advance(GRACE_MS);
    expect((await rec.reconcile()).checked).toBe(0);

    // Tracked again (say an untrack was lost): recovery finds it handled, answers duplicate, untracks.
    await rec.track(jobId);
    const report = await rec.reconcile();
    expect(report.jobs).toEqual([
      { jobId, outcome: "duplicate", status: "succeeded", type: "report.completed" },
    ]);
    expect(await trackedIds(store)).toEqual([]);
    expect(handlers.runs).toHaveLength(1);
  });
});

describe("recovery against the emulator: every outcome", () => {
  it("report.failed, matching.completed, matching.failed, canceled, stuck and unknown jobs", async () => {
    const { mappa, client, createReport, createMatching } = await setup();
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const errors: { error: MappaWebhookError; phase: string }[] = [];
    const rec = recovery(mappa, store, handlers.on, {
      onError: (error, info) => errors.push({ error, phase: info.phase }),
    });

    mappa.planNext(1, {
      outcome: { status: "failed", error: { code: "audio_too_short" }, atStage: "transcoding" },
    });
    const reportFailed = await createReport();
    const matchingDone = await createMatching();
    mappa.planNext(1, { outcome: { status: "failed", error: { code: "target_not_found" } } });
    const matchingFailed = await createMatching();
    const canceled = await createReport();
    mappa.planNext(1, { latencyMs: 3 * 60 * MIN });
    const stuck = await createReport();
    const unknown = "job_nobody_created";
    for (const id of [reportFailed, matchingDone, matchingFailed, canceled, stuck, unknown]) {
      await rec.track(id);
    }
    await mappa.advance(30_000);
    expect((await client.cancelJob(canceled)).status).toBe("canceled");

    await mappa.advance(REPORT_MS + GRACE_MS);
    const report = await rec.reconcile();
    const byJob = new Map(report.jobs.map((job) => [job.jobId, job]));
    expect(report.checked).toBe(6);
    expect(byJob.get(reportFailed)).toEqual({
      jobId: reportFailed,
      outcome: "recovered",
      status: "failed",
      type: "report.failed",
    });
    expect(byJob.get(matchingDone)).toEqual({
      jobId: matchingDone,
      outcome: "recovered",
      status: "succeeded",
      type: "matching.completed",
    });
    expect(byJob.get(matchingFailed)).toMatchObject({
      outcome: "recovered",
      status: "failed",
      type: "matching.failed",
    });
    expect(byJob.get(canceled)).toMatchObject({ outcome: "canceled", status: "canceled" });
    expect(byJob.get(canceled)?.error?.code).toBe("job_not_recoverable");
    expect(byJob.get(stuck)).toEqual({ jobId: stuck, outcome: "running", status: "running" });
    expect(byJob.get(unknown)).toMatchObject({ outcome: "unknown" });
    expect(byJob.get(unknown)?.error?.message).toContain("404");
    expect(report.counts).toMatchObject({ recovered: 3, canceled: 1, running: 1, unknown: 1 });

    const runs = new Map(handlers.runs.map((run) => [run.jobId, run]));
    expect(handlers.runs).toHaveLength(3);
    expect(runs.get(reportFailed)).toEqual({
      type: "report.failed",
      jobId: reportFailed,
      recovered: true,
      data: {
        jobId: reportFailed,
        status: "failed",
        error: { code: "audio_too_short", message: mappa.job(reportFailed)?.error?.message },
      },
    });
    expect(runs.get(matchingDone)).toEqual({
      type: "matching.completed",
      jobId: matchingDone,
      recovered: true,
      data: {
        jobId: matchingDone,
        matchingId: mappa.job(matchingDone)?.matchingId,
        status: "succeeded",
      },
    });
    expect(runs.get(matchingFailed)?.data).toMatchObject({
      status: "failed",
      error: { code: "target_not_found" },
    });
    // Canceled and unknown are untracked; the running job is kept for the next run.
    expect(await trackedIds(store)).toEqual([stuck]);
    expect(errors.map((e) => [e.phase, e.error.code])).toEqual([
      ["recovery", "job_not_recoverable"],
      ["recovery", "job_not_recoverable"],
    ]);

    // Still running two hours after its creation: reported stuck, and kept.
    await mappa.advance(2 * 60 * MIN - (30_000 + REPORT_MS + GRACE_MS) + 1_000);
    const stuckRun = await rec.reconcile();
    expect(stuckRun.jobs).toMatchObject([{ jobId: stuck, outcome: "stuck", status: "running" }]);
    expect(stuckRun.jobs[0]?.error?.message).toContain("stuckAfterMs");
    expect(errors.at(-1)).toMatchObject({
      phase: "recovery",
      error: { code: "job_not_recoverable" },
    });
    expect(await trackedIds(store)).toEqual([stuck]);

    // The stuck job ends after all: its outcome is recovered on a later run.
    await mappa.advance(60 * MIN + GRACE_MS);
    const later = await rec.reconcile();
    expect(later.jobs).toEqual([
      { jobId: stuck, outcome: "recovered", status: "succeeded", type: "report.completed" },
    ]);
    expect(handlers.runs).toHaveLength(4);
    expect(await trackedIds(store)).toEqual([]);
  });
});

/** A loopback proxy in front of the emulator that can be closed (the API is down) and reopened. */
async function startProxy(target: string) {
  let server: Server | undefined;
  let port = 0;
  const open = async () => {
    const s = createServer(async (req, res) => {
      const upstream = await fetch(`${target}${req.url}`, {
        method: req.method ?? "GET",
        headers: req.headers as Record<string, string>,
      });
      const headers: Record<string, string> = {};
      upstream.headers.forEach((value, name) => {
        if (name !== "content-length" && name !== "transfer-encoding") headers[name] = value;
      });
      res.writeHead(upstream.status, headers).end(await upstream.text());
    });
    await new Promise<void>((resolve) => s.listen(port, "127.0.0.1", resolve));
    port = (s.address() as AddressInfo).port;
    server = s;
  };
  const close = () =>
    new Promise<void>((resolve) => {
      const s = server;
      server = undefined;
      if (s === undefined) return resolve();
      s.close(() => resolve());
      s.closeAllConnections();
    });
  await open();
  cleanups.push(close);
  return { url: `http://127.0.0.1:${port}`, open, close };
}

describe("recovery against the emulator: API errors lose nothing", () => {
  it("a refused API key is an api_error for the batch; the next run with the right key recovers", async () => {
    const { mappa, createReport } = await setup({ apiKey: API_KEY });
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const errors: MappaWebhookError[] = [];
    const wrong = recovery(mappa, store, handlers.on, {
      apiKey: "k_revoked",
      graceMs: 0,
      onError: (error) => errors.push(error),
    });
    const jobs = [await createReport(), await createReport()];
    for (const id of jobs) await wrong.track(id);
    await mappa.advance(REPORT_MS);

    const refused = await wrong.reconcile();
    expect(refused.counts.api_error).toBe(2);
    expect(refused.apiError?.code).toBe("mappa_api_failed");
    expect(refused.apiError?.message).toContain("401");
    expect(refused.apiError?.message).toContain("API key");
    expect(errors.map((e) => e.code)).toEqual(["mappa_api_failed"]);
    expect(handlers.runs).toHaveLength(0);
    expect((await trackedIds(store)).sort()).toEqual([...jobs].sort());

    const right = recovery(mappa, store, handlers.on, { graceMs: 0 });
    const report = await right.reconcile();
    expect(report.counts.recovered).toBe(2);
    expect(handlers.runs.map((r) => r.jobId).sort()).toEqual([...jobs].sort());
    expect(await trackedIds(store)).toEqual([]);
  });

  it("the API down (its server closed) is an api_error; the same recovery works once it is back", async () => {
    const { mappa, createReport } = await setup();
    const proxy = await startProxy(mappa.url);
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const errors: MappaWebhookError[] = [];
    const rec = recovery(mappa, store, handlers.on, {
      baseUrl: proxy.url,
      graceMs: 0,
      onError: (error) => errors.push(error),
    });
    const jobs = [await createReport(), await createReport(), await createReport()];
    for (const id of jobs) await rec.track(id);
    await mappa.advance(REPORT_MS);

    // Through the proxy first: it works.
    const first = await rec.reconcile();
    expect(first.counts.recovered).toBe(3);
    const more = [await createReport(), await createReport()];
    for (const id of more) await rec.track(id);
    await mappa.advance(REPORT_MS);

    await proxy.close();
    const down = await rec.reconcile();
    expect(down.checked).toBe(1); // the first call failed: the rest of the batch waits
    expect(down.counts.api_error).toBe(2);
    expect(down.apiError?.message).toContain("could not reach");
    expect(down.retryAfterMs).toBeUndefined();
    expect(errors.map((e) => e.code)).toEqual(["mappa_api_failed"]);
    expect((await trackedIds(store)).sort()).toEqual([...more].sort());
    expect(handlers.runs).toHaveLength(3);

    await proxy.open();
    const back = await rec.reconcile();
    expect(back.counts.recovered).toBe(2);
    expect(handlers.runs).toHaveLength(5);
    expect(await trackedIds(store)).toEqual([]);
  });

  it("a 429 with Retry-After pauses recovery for that long on its clock", async () => {
    const { mappa, createReport } = await setup();
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const rec = recovery(mappa, store, handlers.on, { graceMs: 0 });
    const jobs = [await createReport(), await createReport()];
    for (const id of jobs) await rec.track(id);
    await mappa.advance(REPORT_MS);

    mappa.rateLimit(1, 120);
    const limited = await rec.reconcile();
    expect(limited.counts.api_error).toBe(2);
    expect(limited.retryAfterMs).toBe(120_000);
    expect(limited.apiError?.message).toContain("429");

    // Inside the pause nothing is asked (the emulator would answer now: the limit is used up).
    await mappa.advance(119_999);
    const paused = await rec.reconcile();
    expect(paused).toMatchObject({ checked: 0, jobs: [], retryAfterMs: 1 });
    expect(handlers.runs).toHaveLength(0);

    await mappa.advance(1);
    const resumed = await rec.reconcile();
    expect(resumed.retryAfterMs).toBeUndefined();
    expect(resumed.counts.recovered).toBe(2);
    expect(handlers.runs).toHaveLength(2);
    expect(await trackedIds(store)).toEqual([]);
  });
});

describe("recovery against the emulator: poll mode", () => {
  it("graceMs 0 hands a finished job's outcome to local handlers with no webhook URL reachable", async () => {
    const { mappa, createReport } = await setup();
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const rec = recovery(mappa, store, handlers.on, { graceMs: 0 });
    const noWebhook = await createReport();
    mappa.planNext(1, { outcome: { status: "failed", error: { code: "audio_too_short" } } });
    const unreachable = await createReport("http://127.0.0.1:9/webhooks/mappa");
    await rec.track(noWebhook);
    await rec.track({ jobId: unreachable });

    await mappa.advance(1_000);
    const before = await rec.reconcile();
    expect(before.counts.running).toBe(2);
    expect(handlers.runs).toHaveLength(0);

    await mappa.advance(REPORT_MS);
    const report = await rec.reconcile();
    expect(report.counts.recovered).toBe(2);
    const runs = new Map(handlers.runs.map((run) => [run.jobId, run]));
    expect(runs.get(noWebhook)).toMatchObject({ type: "report.completed", recovered: true });
    expect(runs.get(unreachable)).toMatchObject({ type: "report.failed", recovered: true });
    expect(mappa.deliveries({ jobId: noWebhook })).toEqual([]);
    expect(await trackedIds(store)).toEqual([]);
  });
});

describe("recovery against the emulator: concurrency", () => {
  it("a webhook arriving while recovery handles the same outcome: one handler run", async () => {
    const { mappa, createReport } = await setup();
    const store = createMemoryIdempotencyStore();
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const handlers = recorder(() => gate);
    const app = await startApp({ store, on: handlers.on });
    const rec = recovery(mappa, store, handlers.on, { graceMs: 0 });
    const jobId = await createReport(app.url);
    mappa.planJob(jobId, { webhook: { delayMs: 10_000 } });
    await rec.track(jobId);
    await mappa.advance(REPORT_MS);

    const reconciling = rec.reconcile();
    await handlers.firstEntered; // recovery's handler runs (and waits)
    await mappa.advance(10_000); // the webhook arrives meanwhile: in flight, retried later
    expect(mappa.deliveries({ jobId })[0]?.attempts[0]?.status).toBe(409);
    open();
    const report = await reconciling;
    expect(report.jobs).toEqual([
      { jobId, outcome: "recovered", status: "succeeded", type: "report.completed" },
    ]);
    await mappa.advance(5_000); // the retry: a duplicate
    const [delivery] = mappa.deliveries({ jobId });
    expect(delivery?.state).toBe("delivered");
    expect(delivery?.attempts.map((a) => a.status)).toEqual([409, 200]);
    expect(handlers.runs).toHaveLength(1);
    expect(await trackedIds(store)).toEqual([]);
  });

  it("webhooks and reconcile at the same moment, for 20 jobs: each outcome handled once", async () => {
    const { mappa, createReport } = await setup();
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const app = await startApp({ store, on: handlers.on });
    const rec = recovery(mappa, store, handlers.on, { graceMs: 0 });
    const jobs: string[] = [];
    for (let i = 0; i < 20; i++) {
      const jobId = await createReport(app.url);
      mappa.planJob(jobId, { webhook: { delayMs: 1_000 } });
      await rec.track(jobId);
      jobs.push(jobId);
    }
    await mappa.advance(REPORT_MS); // every job ended, no webhook sent yet
    const [, report] = await Promise.all([mappa.advance(1_000), rec.reconcile()]);
    expect(report.checked).toBe(20);
    // Then the retries and a second run finish whatever was in flight.
    await mappa.advance(SCHEDULE_MS);
    await rec.reconcile();
    for (const jobId of jobs) expect(handlers.perJob.get(jobId), jobId).toBe(1);
    expect(handlers.runs).toHaveLength(20);
    for (const jobId of jobs) {
      expect(mappa.deliveries({ jobId })[0]?.state, jobId).toBe("delivered");
    }
    expect(await trackedIds(store)).toEqual([]);
  });

  it("two recovery instances sharing one store, reconciling at once: one handler run per job", async () => {
    const { mappa, createReport } = await setup();
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const a = recovery(mappa, store, handlers.on, { graceMs: 0 });
    const b = recovery(mappa, store, handlers.on, { graceMs: 0 });
    const jobs: string[] = [];
    for (let i = 0; i < 20; i++) {
      const jobId = await createReport();
      await (i % 2 === 0 ? a : b).track(jobId);
      jobs.push(jobId);
    }
    await mappa.advance(REPORT_MS);
    const [ra, rb] = await Promise.all([a.reconcile(), b.reconcile()]);
    expect(ra.counts.recovered + rb.counts.recovered).toBe(handlers.runs.length);
    expect(ra.counts.failed + rb.counts.failed).toBe(0);
    // Whatever was in flight elsewhere is found handled on the next run.
    const again = await a.reconcile();
    expect(again.counts.recovered).toBe(0);
    for (const jobId of jobs) expect(handlers.perJob.get(jobId), jobId).toBe(1);
    expect(handlers.runs).toHaveLength(20);
    expect(await trackedIds(store)).toEqual([]);
  });
});

describe("recovery against the emulator: soak", () => {
  it("200 jobs, 30% of webhooks lost for good, 20% late after recovery ran: each outcome once", async () => {
    const started = performance.now();
    const { mappa, createReport } = await setup();
    const store = createMemoryIdempotencyStore();
    const handlers = recorder();
    const app = await startApp({ store, on: handlers.on });
    const rec = recovery(mappa, store, handlers.on, { batchSize: 50 });
    const kind = new Map<string, "dropped" | "late" | "normal">();
    const LATE_MS = GRACE_MS + 10 * MIN; // first attempt after recovery already ran
    for (let i = 0; i < 200; i++) {
      if (i % 7 === 3) {
        mappa.planNext(1, { outcome: { status: "failed", error: { code: "audio_too_short" } } });
      }
      const jobId = await createReport(app.url);
      const k = i % 10 < 3 ? "dropped" : i % 10 < 5 ? "late" : "normal";
      if (k === "dropped") mappa.planJob(jobId, { webhook: { drop: "all" } });
      if (k === "late") mappa.planJob(jobId, { webhook: { delayMs: LATE_MS } });
      kind.set(jobId, k);
      await rec.track(jobId);
    }
    const ofKind = (k: string) => [...kind].filter(([, v]) => v === k).map(([id]) => id);
    expect(ofKind("dropped")).toHaveLength(60);
    expect(ofKind("late")).toHaveLength(40);

    await mappa.advance(REPORT_MS + SCHEDULE_MS);
    for (const jobId of ofKind("dropped")) {
      expect(mappa.deliveries({ jobId })[0]?.state).toBe("abandoned");
    }
    const afterWebhooks = handlers.runs.length;
    expect(afterWebhooks).toBe(100);

    await mappa.advance(GRACE_MS - SCHEDULE_MS);
    const totals = { checked: 0, recovered: 0, duplicate: 0, other: 0 };
    for (let run = 0; run < 4; run++) {
      const report = await rec.reconcile();
      totals.checked += report.checked;
      totals.recovered += report.counts.recovered;
      totals.duplicate += report.counts.duplicate;
      totals.other += report.checked - report.counts.recovered - report.counts.duplicate;
    }
    expect(totals).toEqual({ checked: 100, recovered: 100, duplicate: 0, other: 0 });
    expect(await trackedIds(store)).toEqual([]);

    // The late webhooks arrive now, and a third of the lost ones are resent by hand.
    await mappa.advance(LATE_MS - GRACE_MS + REPORT_MS);
    const resent = ofKind("dropped").filter((_, i) => i % 3 === 0);
    const resends = await Promise.all(
      resent.map((jobId) => mappa.resend(mappa.deliveries({ jobId })[0]?.eventId as string)),
    );
    await mappa.settle();
    const lateAnswers = ofKind("late").map(
      (jobId) => mappa.deliveries({ jobId })[0]?.attempts.map((a) => a.status) ?? [],
    );
    expect(new Set(lateAnswers.map((s) => JSON.stringify(s)))).toEqual(new Set(["[200]"]));
    expect(resends.every((attempt) => attempt.status === 200)).toBe(true);
    // Every late or resent webhook was answered as a duplicate of the recovered outcome.
    const bodies = [
      ...ofKind("late").map((jobId) => mappa.deliveries({ jobId })[0]?.attempts[0]?.responseBody),
      ...resends.map((attempt) => attempt.responseBody),
    ];
    for (const body of bodies) {
      expect(JSON.parse(body as string)).toEqual({ received: true, duplicate: true });
    }

    for (const jobId of kind.keys()) expect(handlers.perJob.get(jobId), jobId).toBe(1);
    expect(handlers.runs).toHaveLength(200);
    const recovered = handlers.runs.filter((r) => r.recovered).map((r) => r.jobId);
    expect(new Set(recovered)).toEqual(new Set([...ofKind("dropped"), ...ofKind("late")]));
    const failed = handlers.runs.filter((r) => r.type === "report.failed").length;
    const counts = {
      jobs: kind.size,
      byWebhook: afterWebhooks,
      recovered: recovered.length,
      lateDuplicates: lateAnswers.length,
      resentDuplicates: resends.length,
      failedOutcomes: failed,
      handlerRuns: handlers.runs.length,
      ms: Math.round(performance.now() - started),
    };
    console.log(`recovery soak: ${JSON.stringify(counts)}`);
    expect(failed).toBeGreaterThan(0);
  });
});
