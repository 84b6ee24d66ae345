// createMappaRecovery (issue 20): options, batches and the cursor, a user's fetchJob, onError,
// start()/stop() on fake timers, and the built-in GET /v1/jobs/:id over real loopback HTTP.
// The emulator-backed end-to-end proofs live in packages/emulator/test/recovery.test.ts.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  createMappaRecovery,
  createMemoryIdempotencyStore,
  DEFAULT_RECOVERY_BATCH,
  jobOutcomeKey,
  type MappaErrorInfo,
  type MappaEvent,
  type MappaJob,
  type MappaRecoveryOptions,
  MappaWebhookError,
} from "../src/index.js";

const SECRET = "whsec_recovery_core_test";
const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const MIN = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();

function creationError(create: () => unknown): MappaWebhookError {
  try {
    create();
  } catch (error) {
    if (error instanceof MappaWebhookError) return error;
    throw error;
  }
  throw new Error("expected the call to throw");
}

/** A finished report job as GET /v1/jobs/:id (and conduit's primitives.jobs.get) returns it. */
function succeeded(id: string, endedAt = T0): MappaJob {
  return {
    id,
    type: "report.generate",
    status: "succeeded",
    createdAt: iso(endedAt - 150_000),
    updatedAt: iso(endedAt),
    reportId: `rep_${id}`,
  };
}

function running(id: string, createdAt = T0): MappaJob {
  return {
    id,
    type: "report.generate",
    status: "running",
    createdAt: iso(createdAt),
    updatedAt: iso(createdAt),
  };
}

/** conduit 0.2.2's errors: ApiError {status, code}, AuthError (401), RateLimitError {retryAfterMs}. */
class ConduitLikeError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** A world of jobs and a user's fetchJob over it, recording each call. */
function world(now = { ms: T0 + 60 * MIN }) {
  const jobs = new Map<string, MappaJob | Error>();
  const calls: string[] = [];
  const fetchJob = async (jobId: string): Promise<MappaJob> => {
    calls.push(jobId);
    const job = jobs.get(jobId);
    if (job === undefined) throw new ConduitLikeError("not_found", "Job not found", 404);
    if (job instanceof Error) throw job;
    return job;
  };
  return { jobs, calls, fetchJob, now, clock: () => now.ms };
}

function setup(extra: Partial<MappaRecoveryOptions> = {}) {
  const w = world();
  const store = createMemoryIdempotencyStore();
  const runs: MappaEvent[] = [];
  const errors: { error: MappaWebhookError; info: MappaErrorInfo }[] = [];
  const record = (event: MappaEvent) => {
    runs.push(event);
  };
  const options: MappaRecoveryOptions = {
    secret: SECRET,
    idempotency: store,
    on: {
      "report.completed": record,
      "report.failed": record,
      "matching.completed": record,
      "matching.failed": record,
    },
    fetchJob: w.fetchJob,
    clock: w.clock,
    onError: (error, info) => errors.push({ error, info }),
    ...extra,
  };
  const recovery = createMappaRecovery(options);
  return { ...w, store, runs, errors, recovery, options };
}

const trackedIds = async (store: ReturnType<typeof createMemoryIdempotencyStore>) =>
  (await store.tracked({ limit: 10_000 })).map((job) => job.jobId);

describe("createMappaRecovery options", () => {
  const store = createMemoryIdempotencyStore();
  const base = { secret: SECRET, idempotency: store, apiKey: "k" };

  it("refuses what it cannot use, with invalid_options and a message naming the fix", () => {
    const cases: [unknown, RegExp][] = [
      [undefined, /takes the receiver's options plus `apiKey`/],
      [null, /takes the receiver's options/],
      [{ secret: SECRET, apiKey: "k" }, /`idempotency` must be the receiver's own store/],
      [{ ...base, idempotency: false }, /one that tracks jobs/],
      [
        {
          ...base,
          idempotency: {
            claim: async () => ({ status: "claimed", token: "t" }),
            complete: async () => {},
            release: async () => {},
          },
        },
        /createMemoryIdempotencyStore\(\)/,
      ],
      [{ ...base, apiKey: undefined }, /pass `apiKey`.*or `fetchJob`/],
      [{ ...base, apiKey: "" }, /pass `apiKey`/],
      [{ ...base, fetchJob: "conduit" }, /`fetchJob` must be a function.*primitives\.jobs\.get/],
      [
        { ...base, baseUrl: "api.mappa.ai" },
        /`baseUrl` must be an http\(s\) URL, got api\.mappa\.ai/,
      ],
      [{ ...base, graceMs: -1 }, /`graceMs` must be a whole number of milliseconds ≥ 0, got -1/],
      [{ ...base, graceMs: 1.5 }, /`graceMs`.*got 1\.5/],
      [{ ...base, graceMs: "45m" }, /`graceMs`.*got "45m"/],
      [{ ...base, stuckAfterMs: 0 }, /`stuckAfterMs` must be a whole number of milliseconds ≥ 1/],
      [{ ...base, batchSize: 0 }, /`batchSize` must be a whole number of jobs ≥ 1, got 0/],
      [{ ...base, batchSize: Number.NaN }, /`batchSize`.*got NaN/],
      [{ ...base, clock: 123 }, /`clock` must be a function returning unix ms/],
    ];
    for (const [options, message] of cases) {
      const error = creationError(() =>
        createMappaRecovery(options as MappaRecoveryOptions<unknown>),
      );
      expect(error.code, String(message)).toBe("invalid_options");
      expect(error.message).toMatch(/^@mappa-webhooks: createMappaRecovery: /);
      expect(error.message).toMatch(message);
    }
  });

  it("checks the receiver's own options too (a missing secret fails at creation)", () => {
    const error = creationError(() =>
      createMappaRecovery({ idempotency: store, apiKey: "k" } as unknown as MappaRecoveryOptions),
    );
    expect(error.code).toBe("missing_secret");
  });

  it("needs no apiKey when fetchJob is given, and checks track() and start() arguments", async () => {
    const recovery = createMappaRecovery({
      secret: SECRET,
      idempotency: createMemoryIdempotencyStore(),
      fetchJob: async () => running("job_1"),
    });
    for (const bad of ["", undefined, { jobId: "" }, {}]) {
      await expect(recovery.track(bad as string)).rejects.toMatchObject({
        code: "invalid_options",
        message: expect.stringContaining("recovery.track takes the job id"),
      });
    }
    for (const intervalMs of [0, -5, 1.5, 2 ** 31]) {
      const error = creationError(() => recovery.start({ intervalMs }));
      expect(error.code).toBe("invalid_options");
      expect(error.message).toMatch(
        /^@mappa-webhooks: recovery\.start: `intervalMs` must be a whole number of milliseconds/,
      );
      expect(error.message).toContain(String(2 ** 31 - 1));
    }
  });
});

describe("reconcile(): batches and the cursor", () => {
  it("looks at batchSize jobs per run in job id order and wraps around to the start", async () => {
    const { recovery, jobs, calls } = setup({ batchSize: 2 });
    for (const id of ["job_a", "job_b", "job_c", "job_d", "job_e"]) {
      jobs.set(id, running(id, T0 + 59 * MIN));
      await recovery.track(id);
    }
    const runs: string[][] = [];
    for (let i = 0; i < 5; i++) {
      const report = await recovery.reconcile();
      expect(report.checked).toBe(2);
      expect(report.counts.running).toBe(2);
      runs.push(report.jobs.map((job) => job.jobId));
    }
    expect(runs).toEqual([
      ["job_a", "job_b"],
      ["job_c", "job_d"],
      ["job_e", "job_a"],
      ["job_b", "job_c"],
      ["job_d", "job_e"],
    ]);
    expect(calls).toEqual(runs.flat());
  });

  it("keeps its place when jobs are untracked or added between runs, and never repeats within a run", async () => {
    const { recovery, jobs, store } = setup({ batchSize: 3 });
    for (const id of ["job_1", "job_2", "job_3", "job_4"]) {
      jobs.set(id, running(id, T0 + 59 * MIN));
      await recovery.track(id);
    }
    expect((await recovery.reconcile()).jobs.map((j) => j.jobId)).toEqual([
      "job_1",
      "job_2",
      "job_3",
    ]);
    await recovery.untrack("job_4");
    await store.track("job_0");
    jobs.set("job_0", running("job_0", T0 + 59 * MIN));
    // After job_3: nothing left, so from the start: job_0, job_1, job_2.
    expect((await recovery.reconcile()).jobs.map((j) => j.jobId)).toEqual([
      "job_0",
      "job_1",
      "job_2",
    ]);
    // Fewer tracked jobs than batchSize: each once.
    await recovery.untrack("job_0");
    expect((await recovery.reconcile()).jobs.map((j) => j.jobId)).toEqual([
      "job_3",
      "job_1",
      "job_2",
    ]);
    await recovery.untrack("job_1");
    const small = await recovery.reconcile();
    expect(small.jobs.map((j) => j.jobId).sort()).toEqual(["job_2", "job_3"]);
  });

  it("defaults to batches of 100", async () => {
    expect(DEFAULT_RECOVERY_BATCH).toBe(100);
    const { recovery, jobs } = setup();
    for (let i = 0; i < 120; i++) {
      const id = `job_${String(i).padStart(3, "0")}`;
      jobs.set(id, running(id, T0 + 59 * MIN));
      await recovery.track(id);
    }
    expect((await recovery.reconcile()).checked).toBe(100);
    const second = await recovery.reconcile();
    expect(second.checked).toBe(100);
    expect(second.jobs[0]?.jobId).toBe("job_100");
    expect(second.jobs[20]?.jobId).toBe("job_000");
  });
});

describe("reconcile() with a user's fetchJob (conduit's primitives.jobs.get shape)", () => {
  it("recovers finished jobs past graceMs once, waits inside it, and marks events recovered", async () => {
    const { recovery, jobs, runs, store, now } = setup();
    jobs.set("job_done", succeeded("job_done", T0));
    jobs.set("job_recent", succeeded("job_recent", T0 + 30 * MIN));
    jobs.set("job_failed", {
      id: "job_failed",
      type: "matching.generate",
      status: "failed",
      createdAt: iso(T0 - MIN),
      updatedAt: iso(T0),
      error: { code: "target_not_found", message: "No target." },
    });
    for (const id of jobs.keys()) await recovery.track(id);
    const report = await recovery.reconcile();
    const outcome = Object.fromEntries(report.jobs.map((j) => [j.jobId, [j.outcome, j.type]]));
    expect(outcome).toEqual({
      job_done: ["recovered", "report.completed"],
      job_failed: ["recovered", "matching.failed"],
      job_recent: ["waiting", undefined],
    });
    expect(runs.map((e) => [e.type, e.recovered, e.idempotencyKey])).toEqual([
      ["report.completed", true, jobOutcomeKey("report.completed", "job_done")],
      ["matching.failed", true, jobOutcomeKey("matching.failed", "job_failed")],
    ]);
    expect(runs[0]?.data).toEqual({
      jobId: "job_done",
      reportId: "rep_job_done",
      status: "succeeded",
    });
    expect(runs[1]?.data).toEqual({
      jobId: "job_failed",
      status: "failed",
      error: { code: "target_not_found", message: "No target." },
    });
    expect(await trackedIds(store)).toEqual(["job_recent"]);
    now.ms = T0 + 30 * MIN + 45 * MIN;
    const later = await recovery.reconcile();
    expect(later.jobs).toEqual([
      { jobId: "job_recent", outcome: "recovered", status: "succeeded", type: "report.completed" },
    ]);
    // Tracked again: the outcome key says it was handled.
    await recovery.track("job_done");
    expect((await recovery.reconcile()).jobs[0]?.outcome).toBe("duplicate");
    expect(runs).toHaveLength(3);
  });

  it("404 is unknown (untracked), canceled is untracked, stuck is kept; onError hears each", async () => {
    const { recovery, jobs, store, errors, runs } = setup({ stuckAfterMs: 30 * MIN });
    jobs.set("job_canceled", { ...running("job_canceled"), status: "canceled" });
    jobs.set("job_stuck", running("job_stuck", T0));
    jobs.set("job_young", running("job_young", T0 + 50 * MIN));
    for (const id of ["job_canceled", "job_gone", "job_stuck", "job_young"])
      await recovery.track(id);
    const report = await recovery.reconcile();
    expect(report.jobs.map((j) => [j.jobId, j.outcome])).toEqual([
      ["job_canceled", "canceled"],
      ["job_gone", "unknown"],
      ["job_stuck", "stuck"],
      ["job_young", "running"],
    ]);
    expect(await trackedIds(store)).toEqual(["job_stuck", "job_young"]);
    expect(errors.map((e) => [e.error.code, e.info.phase])).toEqual([
      ["job_not_recoverable", "recovery"],
      ["job_not_recoverable", "recovery"],
      ["job_not_recoverable", "recovery"],
    ]);
    expect(errors[2]?.error.message).toContain(
      "60 min after its creation (stuckAfterMs is 1800000)",
    );
    expect(runs).toHaveLength(0);
  });

  it("an auth error stops the batch as api_error, loses nothing, and the next run works", async () => {
    const { recovery, jobs, store, errors, calls } = setup();
    jobs.set("job_1", succeeded("job_1"));
    jobs.set("job_2", succeeded("job_2"));
    await recovery.track("job_1");
    await recovery.track("job_2");
    const refused = new ConduitLikeError("invalid_api_key", "Invalid API key", 401);
    jobs.set("job_1", refused);
    const report = await recovery.reconcile();
    expect(report.checked).toBe(1);
    expect(report.counts.api_error).toBe(2);
    expect(report.jobs.map((j) => j.outcome)).toEqual(["api_error", "api_error"]);
    expect(report.apiError?.code).toBe("mappa_api_failed");
    expect(report.apiError?.message).toContain("Check the API key");
    expect(report.apiError?.cause).toBe(refused);
    expect(calls).toEqual(["job_1"]);
    expect(errors.map((e) => [e.error.code, e.info.phase])).toEqual([
      ["mappa_api_failed", "recovery"],
    ]);
    expect(await trackedIds(store)).toEqual(["job_1", "job_2"]);
    jobs.set("job_1", succeeded("job_1"));
    expect((await recovery.reconcile()).counts.recovered).toBe(2);
    expect(await trackedIds(store)).toEqual([]);
  });

  it("a 429 pauses recovery for retryAfterMs on its clock (60 s without one)", async () => {
    const { recovery, jobs, calls, now } = setup();
    jobs.set("job_1", new ConduitLikeError("rate_limited", "Too many", 429, 5_000));
    await recovery.track("job_1");
    const limited = await recovery.reconcile();
    expect(limited.retryAfterMs).toBe(5_000);
    expect(limited.apiError?.message).toContain("Retry-After");
    now.ms += 4_999;
    expect(await recovery.reconcile()).toEqual({
      checked: 0,
      counts: expect.objectContaining({ api_error: 0, recovered: 0 }),
      jobs: [],
      retryAfterMs: 1,
    });
    expect(calls).toEqual(["job_1"]);
    now.ms += 1;
    jobs.set("job_1", new ConduitLikeError("rate_limited", "Too many", 429));
    expect((await recovery.reconcile()).retryAfterMs).toBe(60_000);
    now.ms += 60_000;
    jobs.set("job_1", succeeded("job_1"));
    expect((await recovery.reconcile()).counts.recovered).toBe(1);
    expect(calls).toEqual(["job_1", "job_1", "job_1"]);
  });

  it("an answer that is not a job is an api_error, not a crash", async () => {
    const { recovery, jobs, store } = setup();
    await recovery.track("job_1");
    for (const bad of [null, "ok", { id: "job_1" }]) {
      jobs.set("job_1", bad as unknown as MappaJob);
      const report = await recovery.reconcile();
      expect(report.counts.api_error).toBe(1);
      expect(report.apiError?.code).toBe("mappa_api_failed");
      expect(report.apiError?.message).toContain("not a job");
    }
    expect(await trackedIds(store)).toEqual(["job_1"]);
  });

  it("a failing handler is `failed` and kept; onError hears it; the next run recovers it", async () => {
    let fail = true;
    const w = world();
    const store = createMemoryIdempotencyStore();
    const errors: [string, string][] = [];
    const seen: string[] = [];
    const recovery = createMappaRecovery({
      secret: SECRET,
      idempotency: store,
      fetchJob: w.fetchJob,
      clock: w.clock,
      on: {
        "report.completed": (event) => {
          if (fail) throw new Error("db down");
          seen.push(event.data.jobId);
        },
      },
      onError: (error, info) => errors.push([error.code, info.phase]),
      logger: false,
    });
    w.jobs.set("job_1", succeeded("job_1"));
    await recovery.track("job_1");
    const report = await recovery.reconcile();
    expect(report.jobs).toMatchObject([
      { jobId: "job_1", outcome: "failed", type: "report.completed" },
    ]);
    expect(report.jobs[0]?.error?.code).toBe("handler_failed");
    expect(errors).toEqual([["handler_failed", "handler"]]);
    expect(await trackedIds(store)).toEqual(["job_1"]);
    fail = false;
    expect((await recovery.reconcile()).counts.recovered).toBe(1);
    expect(seen).toEqual(["job_1"]);
  });

  it("an onError that throws never breaks recovery", async () => {
    const { recovery } = setup({
      onError: () => {
        throw new Error("logger down");
      },
    });
    await recovery.track("job_unknown");
    expect((await recovery.reconcile()).counts.unknown).toBe(1);
  });
});

describe("start() and stop() on fake timers", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("runs now, then every intervalMs; stop() resolves and nothing runs after it", async () => {
    vi.useFakeTimers({ now: T0 });
    const { recovery, jobs, calls } = setup({ clock: () => Date.now() });
    jobs.set("job_1", running("job_1", T0));
    await recovery.track("job_1");
    const loop = recovery.start({ intervalMs: 1_000 });
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(calls).toHaveLength(5);
    await expect(loop.stop()).resolves.toBeUndefined();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls).toHaveLength(5);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("stop() during a run waits for it, then resolves; no run is scheduled after", async () => {
    vi.useFakeTimers({ now: T0 });
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const recovery = createMappaRecovery({
      secret: SECRET,
      idempotency: createMemoryIdempotencyStore(),
      fetchJob: async (id) => {
        calls++;
        await gate;
        return running(id, T0);
      },
    });
    await recovery.track("job_1");
    const loop = recovery.start({ intervalMs: 1_000 });
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(1);
    let stopped = false;
    const stopping = loop.stop().then(() => {
      stopped = true;
    });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(stopped).toBe(true);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("honours a 429's Retry-After over the interval, even a very long one", async () => {
    vi.useFakeTimers({ now: T0 });
    const { recovery, jobs, calls } = setup({ clock: () => Date.now() });
    jobs.set("job_1", new ConduitLikeError("rate_limited", "slow down", 429, 10_000));
    await recovery.track("job_1");
    const loop = recovery.start({ intervalMs: 1_000 });
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toHaveLength(1);
    jobs.set("job_1", running("job_1", T0));
    await vi.advanceTimersByTimeAsync(9_999);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    // Thirty days: beyond a timer's 2^31−1 ms, which would otherwise fire at once, again and again.
    jobs.set("job_1", new ConduitLikeError("rate_limited", "slow down", 429, 30 * 24 * 60 * MIN));
    await vi.advanceTimersByTimeAsync(1_000);
    expect(calls).toHaveLength(3);
    jobs.set("job_1", running("job_1", T0));
    await vi.advanceTimersByTimeAsync(60 * MIN);
    expect(calls).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(30 * 24 * 60 * MIN - 60 * MIN - 1);
    expect(calls).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(4);
    await loop.stop();
  });

  it("a store that fails while listing is reported to onError and the loop goes on", async () => {
    vi.useFakeTimers({ now: T0 });
    const store = createMemoryIdempotencyStore();
    let broken = true;
    const tracked = store.tracked;
    store.tracked = async (options) => {
      if (broken) throw new Error("connection reset");
      return tracked(options);
    };
    const errors: string[] = [];
    const w = world();
    const recovery = createMappaRecovery({
      secret: SECRET,
      idempotency: store,
      fetchJob: w.fetchJob,
      onError: (error) => errors.push(`${error.code}: ${error.message}`),
    });
    w.jobs.set("job_1", running("job_1", T0));
    await recovery.track("job_1");
    const loop = recovery.start({ intervalMs: 1_000 });
    await vi.advanceTimersByTimeAsync(0);
    expect(errors).toEqual([
      "idempotency_store_failed: @mappa-webhooks: recovery could not read its tracked jobs: connection reset.",
    ]);
    broken = false;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(w.calls).toEqual(["job_1"]);
    await loop.stop();
  });
});

describe("the built-in fetchJob: GET /v1/jobs/:id over loopback", () => {
  let server: Server | undefined;
  afterEach(async () => {
    const s = server;
    server = undefined;
    if (s !== undefined) {
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    }
  });

  type Answer = { status: number; body: string; headers?: Record<string, string> };
  async function api(answer: (path: string) => Answer) {
    const requests: { path: string; key: string | undefined }[] = [];
    server = createServer((req, res) => {
      requests.push({ path: req.url ?? "", key: req.headers["mappa-api-key"] as string });
      const a = answer(req.url ?? "");
      res.writeHead(a.status, { "content-type": "application/json", ...a.headers }).end(a.body);
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/`, requests };
  }

  it("sends Mappa-Api-Key, escapes the id, and maps 200, 404, 401, 429 Retry-After and non-JSON", async () => {
    const now = { ms: T0 + 60 * MIN };
    const mapping: Record<string, Answer> = {
      "/v1/jobs/job_ok": { status: 200, body: JSON.stringify(succeeded("job_ok")) },
      "/v1/jobs/job%2Fodd": { status: 200, body: JSON.stringify(running("job/odd", now.ms)) },
    };
    let mode: "normal" | "401" | "429" | "html" = "normal";
    const { url, requests } = await api((path) => {
      if (mode === "401") {
        return { status: 401, body: '{"error":{"code":"invalid_api_key","message":"no"}}' };
      }
      if (mode === "429") {
        return {
          status: 429,
          body: '{"error":{"code":"rate_limited"}}',
          headers: { "retry-after": "7" },
        };
      }
      if (mode === "html") return { status: 200, body: "<html>proxy</html>" };
      return mapping[path] ?? { status: 404, body: '{"error":{"code":"not_found","message":"x"}}' };
    });
    const store = createMemoryIdempotencyStore();
    const runs: string[] = [];
    const recovery = createMappaRecovery({
      secret: SECRET,
      idempotency: store,
      apiKey: "k_live",
      baseUrl: url,
      clock: () => now.ms,
      on: { "report.completed": (event) => void runs.push(event.data.reportId) },
    });
    for (const id of ["job_ok", "job/odd", "job_missing"]) await recovery.track(id);
    const report = await recovery.reconcile();
    expect(report.jobs.map((j) => [j.jobId, j.outcome])).toEqual([
      ["job/odd", "running"],
      ["job_missing", "unknown"],
      ["job_ok", "recovered"],
    ]);
    expect(runs).toEqual(["rep_job_ok"]);
    expect(requests).toEqual([
      { path: "/v1/jobs/job%2Fodd", key: "k_live" },
      { path: "/v1/jobs/job_missing", key: "k_live" },
      { path: "/v1/jobs/job_ok", key: "k_live" },
    ]);

    mode = "401";
    const refused = await recovery.reconcile();
    expect(refused.apiError?.message).toContain("answered 401 invalid_api_key");
    expect(refused.apiError?.message).toContain("Check the API key");

    mode = "html";
    const html = await recovery.reconcile();
    expect(html.apiError?.message).toContain("not JSON");

    mode = "429";
    const limited = await recovery.reconcile();
    expect(limited.retryAfterMs).toBe(7_000);
    expect(limited.apiError?.message).toContain("answered 429 rate_limited");
    const count = requests.length;
    now.ms += 6_000;
    expect((await recovery.reconcile()).retryAfterMs).toBe(1_000);
    expect(requests).toHaveLength(count);
    mode = "normal";
    now.ms += 1_000;
    expect((await recovery.reconcile()).counts.running).toBe(1);
    expect(await trackedIds(store)).toEqual(["job/odd"]);
  });

  it("an API that never answers times out after 30 s: an api_error, and stop() resolves", async () => {
    const hanging: string[] = [];
    server = createServer((req) => {
      hanging.push(req.url ?? ""); // never answered
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const errors: string[] = [];
    const recovery = createMappaRecovery({
      secret: SECRET,
      idempotency: createMemoryIdempotencyStore(),
      apiKey: "k",
      baseUrl: `http://127.0.0.1:${port}`,
      onError: (error) => errors.push(error.message),
    });
    await recovery.track("job_1");
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const loop = recovery.start({ intervalMs: 60_000 });
      while (hanging.length === 0) await new Promise((resolve) => setImmediate(resolve));
      const stopping = loop.stop();
      await vi.advanceTimersByTimeAsync(29_999);
      expect(errors).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      await stopping;
      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain("no answer within 30 s");
      expect(hanging).toEqual(["/v1/jobs/job_1"]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("an API that is down is an api_error naming the URL", async () => {
    const { url } = await api(() => ({ status: 200, body: "{}" }));
    await new Promise<void>((resolve) => {
      server?.close(() => resolve());
      server?.closeAllConnections();
    });
    server = undefined;
    const recovery = createMappaRecovery({
      secret: SECRET,
      idempotency: createMemoryIdempotencyStore(),
      apiKey: "k",
      baseUrl: url,
    });
    await recovery.track("job_1");
    const report = await recovery.reconcile();
    expect(report.counts.api_error).toBe(1);
    expect(report.apiError?.message).toContain(`could not reach ${url.replace(/\/$/, "")}`);
    expect(report.apiError?.message).toContain("The next run tries again.");
  });
});

describe("recovery's log lines", () => {
  it("writes one warn line per job it cannot recover and one error line per API failure, never with logger: false", async () => {
    const lines: { level: string; line: string }[] = [];
    const logger = {
      debug: (line: string) => lines.push({ level: "debug", line }),
      info: (line: string) => lines.push({ level: "info", line }),
      warn: (line: string) => lines.push({ level: "warn", line }),
      error: (line: string) => lines.push({ level: "error", line }),
    };
    const { jobs, recovery } = setup({ logger });
    jobs.set("job_canceled", { ...running("job_canceled"), status: "canceled" });
    jobs.set("job_down", new ConduitLikeError("server_error", "boom", 503));
    await recovery.track("job_canceled");
    await recovery.track("job_down");
    await recovery.reconcile();
    expect(lines).toEqual([
      {
        level: "warn",
        line: expect.stringMatching(
          /^@mappa-webhooks: recovery 422 job_not_recoverable: .*job_canceled was canceled/,
        ),
      },
      {
        level: "error",
        line: expect.stringMatching(/^@mappa-webhooks: recovery 502 mappa_api_failed: .*job_down/),
      },
    ]);

    const quiet = setup({ logger: false });
    const spy = vi.spyOn(console, "error").mockImplementation(() => {});
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    try {
      quiet.jobs.set("job_down", new ConduitLikeError("server_error", "boom", 503));
      await quiet.recovery.track("job_down");
      await quiet.recovery.reconcile();
      expect(spy).not.toHaveBeenCalled();
      expect(warn).not.toHaveBeenCalled();
      expect(quiet.errors).toHaveLength(1);
    } finally {
      spy.mockRestore();
      warn.mockRestore();
    }
  });
});
