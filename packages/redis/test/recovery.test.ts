// Issue 20 across processes: two receiver processes share one Redis store (one prefix), and
// each can also run createMappaRecovery's reconcile() (a control route of the fixture) against
// the emulator, which runs here on its manual clock and is Mappa's API and webhook sender. Real
// HTTP over loopback everywhere. Recovery's clock is the emulator's: the test passes its `now`
// with every control call. Each job's handler effect is counted in Redis (INCR per job id).
import { randomBytes } from "node:crypto";
import type { MappaRecoveryOutcome } from "@mappa-webhooks/core";
import { type MappaEmulator, startMappaEmulator } from "@mappa-webhooks/emulator";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisIdempotencyStore, type RedisIdempotencyStore } from "../src/index.js";
import { type Child, connect, deleteKeys, SECRET, startFixture, uniquePrefix } from "./helpers.js";

const API_KEY = "k_recovery_redis";
const MIN = 60_000;
/** A report takes ~150 s on the emulator; Mappa's retry schedule is 35 min 35 s after it. */
const REPORT_MS = 150_000;
const SCHEDULE_MS = 2_135_000;
const GRACE_MS = 45 * MIN;
/** A webhook whose first attempt comes after recovery ran (past the grace). */
const LATE_MS = GRACE_MS + 10 * MIN;

const prefix = uniquePrefix("recovery");
let redis: Redis;
let store: RedisIdempotencyStore;
let mappa: MappaEmulator;
let mediaId: string;
const children: Child[] = [];
const receivers: { name: string; base: string; webhookUrl: string }[] = [];

beforeAll(async () => {
  redis = connect();
  await redis.ping();
  store = createRedisIdempotencyStore({ client: redis, prefix: `${prefix}:idem` });
  mappa = await startMappaEmulator({ clock: "manual", secret: SECRET, apiKey: API_KEY });
  const started = ["a", "b"].map((instance) => {
    const child = startFixture("recovery-receiver.mjs", {
      PORT: "0",
      MAPPA_WEBHOOK_SECRET: SECRET,
      PREFIX: prefix,
      INSTANCE: instance,
      MAPPA_API_URL: mappa.url,
      MAPPA_API_KEY: API_KEY,
      HANDLER_DELAY_MS: "20",
    });
    children.push(child);
    return { instance, child };
  });
  for (const { instance, child } of started) {
    const [, base] = await child.waitForLine(/^listening on (http:\/\/127\.0\.0\.1:\d+)$/, 30_000);
    receivers.push({ name: instance, base: base as string, webhookUrl: `${base}/webhooks/mappa` });
  }
  const form = new FormData();
  form.append("file", new Blob([new Uint8Array(32)], { type: "application/octet-stream" }), "call");
  form.append("label", "call");
  const upload = await api("POST", "/v1/files", { form });
  mediaId = (upload as { mediaId: string }).mediaId;
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill()));
  await mappa?.close();
  if (redis !== undefined) {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  }
});

async function api(method: string, path: string, body: { json?: unknown; form?: FormData } = {}) {
  const headers: Record<string, string> = {
    "Mappa-Api-Key": API_KEY,
    "Idempotency-Key": `idem_${randomBytes(16).toString("hex")}`,
  };
  if (body.json !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${mappa.url}${path}`, {
    method,
    headers,
    ...(body.form !== undefined
      ? { body: body.form }
      : body.json !== undefined
        ? { body: JSON.stringify(body.json) }
        : {}),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** Creates a report job whose webhook goes to `webhookUrl`; resolves its job id. */
async function createReport(webhookUrl: string): Promise<string> {
  const receipt = await api("POST", "/v1/reports/jobs", {
    json: {
      media: { mediaId },
      output: { template: "general_report" },
      target: { strategy: "dominant", on_miss: "error" },
      webhook: { url: webhookUrl },
    },
  });
  return receipt.jobId as string;
}

interface ReconcileAnswer {
  checked: number;
  counts: Record<MappaRecoveryOutcome, number>;
  jobs: { jobId: string; outcome: string; status?: string; type?: string }[];
  apiError?: string;
}

async function control<T>(
  receiver: (typeof receivers)[number],
  route: "track" | "reconcile",
  options: { mode?: "grace" | "poll"; body?: unknown } = {},
): Promise<T> {
  const query = `now=${mappa.now()}&mode=${options.mode ?? "grace"}`;
  const response = await fetch(`${receiver.base}/control/${route}?${query}`, {
    method: "POST",
    body: JSON.stringify(options.body ?? null),
  });
  const text = await response.text();
  if (!response.ok)
    throw new Error(`${receiver.name} /control/${route}: ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

const track = (receiver: (typeof receivers)[number], jobIds: string[]) =>
  control<{ tracked: number }>(receiver, "track", { body: jobIds });
const reconcile = (receiver: (typeof receivers)[number], mode: "grace" | "poll" = "grace") =>
  control<ReconcileAnswer>(receiver, "reconcile", { mode });

async function effects(jobIds: string[]): Promise<number[]> {
  if (jobIds.length === 0) return [];
  const values = await redis.mget(...jobIds.map((jobId) => `${prefix}:effect:${jobId}`));
  return values.map((value) => Number(value ?? 0));
}

async function runsOf(jobId: string): Promise<string[]> {
  return redis.lrange(`${prefix}:runs:${jobId}`, 0, -1);
}

const trackedIds = async () => (await store.tracked({ limit: 10_000 })).map((job) => job.jobId);

const duplicateBody = { received: true, duplicate: true };

describe("recovery across two processes sharing Redis", { timeout: 120_000 }, () => {
  it("webhook first, then recovery: the recovered outcome is a duplicate, one effect per job", async () => {
    const [a, b] = receivers as [(typeof receivers)[0], (typeof receivers)[0]];
    mappa.planNext(1, { outcome: { status: "failed", error: { code: "audio_too_short" } } });
    const jobs: string[] = [];
    for (let i = 0; i < 6; i++) jobs.push(await createReport((i % 2 === 0 ? a : b).webhookUrl));
    await track(b, jobs.slice(0, 3));
    await track(a, jobs.slice(3));
    expect(new Set(await trackedIds())).toEqual(new Set(jobs));

    await mappa.advance(REPORT_MS);
    for (const jobId of jobs)
      expect(mappa.deliveries({ jobId })[0]?.state, jobId).toBe("delivered");
    expect(await effects(jobs)).toEqual(jobs.map(() => 1));
    // The webhook path marked each outcome handled and untracked its job.
    expect(await trackedIds()).toEqual([]);
    await mappa.advance(GRACE_MS);
    expect((await reconcile(a)).checked).toBe(0);
    expect((await reconcile(b)).checked).toBe(0);

    // Tracked again (an untrack lost, say): the other process's recovery finds each handled.
    await track(a, jobs.slice(0, 3));
    await track(b, jobs.slice(3));
    const [ra, rb] = [await reconcile(b), await reconcile(a)];
    expect(ra.checked + rb.checked).toBe(6);
    expect(ra.counts.duplicate + rb.counts.duplicate).toBe(6);
    const types = [...ra.jobs, ...rb.jobs].map((job) => job.type).sort();
    expect(types).toEqual([
      "report.completed",
      "report.completed",
      "report.completed",
      "report.completed",
      "report.completed",
      "report.failed",
    ]);
    expect(await effects(jobs)).toEqual(jobs.map(() => 1));
    for (const jobId of jobs) expect((await runsOf(jobId))[0]).toMatch(/^[ab] webhook report\./);
    expect(await trackedIds()).toEqual([]);
  });

  it("recovery first, then the webhook (resent by hand, or late): a duplicate, one effect per job", async () => {
    const [a, b] = receivers as [(typeof receivers)[0], (typeof receivers)[0]];
    const lost: string[] = [];
    const late: string[] = [];
    for (let i = 0; i < 4; i++) {
      const jobId = await createReport((i % 2 === 0 ? a : b).webhookUrl);
      mappa.planJob(jobId, { webhook: { drop: "all" } });
      lost.push(jobId);
    }
    mappa.planNext(1, { outcome: { status: "failed", error: { code: "audio_too_short" } } });
    for (let i = 0; i < 4; i++) {
      const jobId = await createReport((i % 2 === 0 ? b : a).webhookUrl);
      mappa.planJob(jobId, { webhook: { delayMs: LATE_MS } });
      late.push(jobId);
    }
    const all = [...lost, ...late];
    await track(a, all.slice(0, 4));
    await track(b, all.slice(4));

    await mappa.advance(REPORT_MS + SCHEDULE_MS);
    for (const jobId of lost) {
      const [delivery] = mappa.deliveries({ jobId });
      expect(delivery?.state, jobId).toBe("abandoned");
      expect(delivery?.attempts).toHaveLength(5);
    }
    expect(await effects(all)).toEqual(all.map(() => 0));
    // Inside the grace: the webhook may still come.
    const early = await reconcile(a);
    expect(early.counts.waiting).toBe(8);
    expect(await effects(all)).toEqual(all.map(() => 0));

    await mappa.advance(GRACE_MS - SCHEDULE_MS);
    const report = await reconcile(b);
    expect(report.checked).toBe(8);
    expect(report.counts.recovered).toBe(8);
    expect(report.jobs.filter((job) => job.type === "report.failed")).toHaveLength(1);
    expect(await effects(all)).toEqual(all.map(() => 1));
    for (const jobId of all)
      expect(await runsOf(jobId)).toEqual([expect.stringMatching(/^b recovery report\./)]);
    expect(await trackedIds()).toEqual([]);

    // A lost webhook resent by hand reaches the process that did not recover it: a duplicate.
    for (const jobId of lost) {
      const attempt = await mappa.resend(mappa.deliveries({ jobId })[0]?.eventId as string);
      expect(attempt.status, jobId).toBe(200);
      expect(JSON.parse(attempt.responseBody as string)).toEqual(duplicateBody);
    }
    // The late webhooks arrive after recovery ran: duplicates too.
    await mappa.advance(LATE_MS - GRACE_MS);
    await mappa.settle();
    for (const jobId of late) {
      const [delivery] = mappa.deliveries({ jobId });
      expect(delivery?.state, jobId).toBe("delivered");
      expect(delivery?.attempts.map((attempt) => attempt.status)).toEqual([200]);
      expect(JSON.parse(delivery?.attempts[0]?.responseBody as string)).toEqual(duplicateBody);
    }
    expect(await effects(all)).toEqual(all.map(() => 1));
    expect((await reconcile(a)).checked).toBe(0);
  });

  it("webhooks and both processes' reconcile() at the same moment: one effect per job", async () => {
    const [a, b] = receivers as [(typeof receivers)[0], (typeof receivers)[0]];
    const jobs: string[] = [];
    for (let i = 0; i < 30; i++) {
      if (i % 5 === 4) {
        mappa.planNext(1, { outcome: { status: "failed", error: { code: "audio_too_short" } } });
      }
      const jobId = await createReport((i % 2 === 0 ? a : b).webhookUrl);
      mappa.planJob(jobId, { webhook: { delayMs: 1_000 } });
      jobs.push(jobId);
    }
    // Each job is tracked by the process its webhook does not go to.
    await track(
      a,
      jobs.filter((_, i) => i % 2 === 1),
    );
    await track(
      b,
      jobs.filter((_, i) => i % 2 === 0),
    );
    await mappa.advance(REPORT_MS); // every job ended, no webhook sent yet

    // The webhooks go out while both processes reconcile in poll mode (no grace).
    const [, ra, rb] = await Promise.all([
      mappa.advance(1_000),
      reconcile(a, "poll"),
      reconcile(b, "poll"),
    ]);
    // Then Mappa's retries (of the 409s) and a second run finish whatever was in flight.
    await mappa.advance(SCHEDULE_MS);
    const [again] = await Promise.all([reconcile(a, "poll"), reconcile(b, "poll")]);
    expect(again.counts.failed).toBe(0);
    for (const jobId of jobs) {
      expect(mappa.deliveries({ jobId })[0]?.state, jobId).toBe("delivered");
    }
    expect(await effects(jobs)).toEqual(jobs.map(() => 1));
    expect(await trackedIds()).toEqual([]);
    const runs = (await Promise.all(jobs.map(runsOf))).flat();
    expect(runs).toHaveLength(30);
    const attempts = jobs.flatMap((jobId) => mappa.deliveries({ jobId })[0]?.attempts ?? []);
    console.log(
      `[recovery-concurrent redis] ${JSON.stringify({
        jobs: jobs.length,
        byWebhook: runs.filter((run) => run.includes(" webhook ")).length,
        byRecovery: runs.filter((run) => run.includes(" recovery ")).length,
        byInstance: {
          a: runs.filter((r) => r.startsWith("a ")).length,
          b: runs.filter((r) => r.startsWith("b ")).length,
        },
        firstRun: { a: ra.counts, b: rb.counts },
        webhookAnswers: attempts
          .map((attempt) => attempt.status)
          .reduce<Record<string, number>>((acc, status) => {
            acc[String(status)] = (acc[String(status)] ?? 0) + 1;
            return acc;
          }, {}),
      })}`,
    );
  });
});

describe("recovery soak across two processes sharing Redis", { timeout: 170_000 }, () => {
  it("500 jobs, 30% of webhooks lost for good, 20% late after recovery ran: each outcome once", async () => {
    const started = performance.now();
    const [a, b] = receivers as [(typeof receivers)[0], (typeof receivers)[0]];
    const JOBS = 500;
    const kind = new Map<string, "lost" | "late" | "normal">();
    const jobs: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      if (i % 7 === 3) {
        mappa.planNext(1, { outcome: { status: "failed", error: { code: "audio_too_short" } } });
      }
      const jobId = await createReport((i % 2 === 0 ? a : b).webhookUrl);
      const k = i % 10 < 3 ? "lost" : i % 10 < 5 ? "late" : "normal";
      if (k === "lost") mappa.planJob(jobId, { webhook: { drop: "all" } });
      if (k === "late") mappa.planJob(jobId, { webhook: { delayMs: LATE_MS } });
      kind.set(jobId, k);
      jobs.push(jobId);
    }
    const ofKind = (k: string) => jobs.filter((jobId) => kind.get(jobId) === k);
    expect(ofKind("lost")).toHaveLength(150);
    expect(ofKind("late")).toHaveLength(100);
    await track(
      a,
      jobs.filter((_, i) => i % 2 === 1),
    );
    await track(
      b,
      jobs.filter((_, i) => i % 2 === 0),
    );

    await mappa.advance(REPORT_MS + SCHEDULE_MS);
    for (const jobId of ofKind("lost")) {
      expect(mappa.deliveries({ jobId })[0]?.state, jobId).toBe("abandoned");
    }
    const byWebhook = (await effects(jobs)).reduce((sum, n) => sum + n, 0);
    expect(byWebhook).toBe(250);

    // Past the grace: both processes reconcile at once, round after round, until nothing is left.
    await mappa.advance(GRACE_MS - SCHEDULE_MS);
    const totals: Record<string, number> = {};
    let rounds = 0;
    for (; rounds < 10 && (await trackedIds()).length > 0; rounds++) {
      const reports = await Promise.all([reconcile(a), reconcile(b)]);
      for (const report of reports) {
        for (const [outcome, n] of Object.entries(report.counts)) {
          totals[outcome] = (totals[outcome] ?? 0) + n;
        }
      }
    }
    expect(await trackedIds()).toEqual([]);
    expect(totals.recovered).toBe(250);
    expect(totals.failed ?? 0).toBe(0);
    expect(totals.api_error ?? 0).toBe(0);

    // The late webhooks arrive now, and a third of the lost ones are resent by hand.
    await mappa.advance(LATE_MS - GRACE_MS);
    const resent = ofKind("lost").filter((_, i) => i % 3 === 0);
    const resends = await Promise.all(
      resent.map((jobId) => mappa.resend(mappa.deliveries({ jobId })[0]?.eventId as string)),
    );
    await mappa.settle();
    const lateAnswers = ofKind("late").map(
      (jobId) => mappa.deliveries({ jobId })[0]?.attempts.map((attempt) => attempt.status) ?? [],
    );
    expect(new Set(lateAnswers.map((statuses) => JSON.stringify(statuses)))).toEqual(
      new Set(["[200]"]),
    );
    const bodies = [
      ...ofKind("late").map((jobId) => mappa.deliveries({ jobId })[0]?.attempts[0]?.responseBody),
      ...resends.map((attempt) => attempt.responseBody),
    ];
    for (const body of bodies) expect(JSON.parse(body as string)).toEqual(duplicateBody);

    const counts = await effects(jobs);
    const runs = await Promise.all(jobs.map(runsOf));
    const recovered = jobs.filter((_, i) => runs[i]?.[0]?.includes(" recovery ") === true);
    expect(new Set(recovered)).toEqual(new Set([...ofKind("lost"), ...ofKind("late")]));
    const summary = {
      jobs: JOBS,
      lostForGood: ofKind("lost").length,
      late: ofKind("late").length,
      handledByWebhook: byWebhook,
      recovered: recovered.length,
      reconcileRounds: rounds,
      reconcileTotals: totals,
      lateDuplicates: lateAnswers.length,
      resentDuplicates: resends.length,
      failedOutcomes: runs.filter((r) => r[0]?.endsWith("report.failed")).length,
      byInstance: {
        a: runs.filter((r) => r[0]?.startsWith("a ")).length,
        b: runs.filter((r) => r[0]?.startsWith("b ")).length,
      },
      effectsOnce: counts.filter((n) => n === 1).length,
      missing: counts.filter((n) => n === 0).length,
      doubled: counts.filter((n) => n > 1).length,
      ms: Math.round(performance.now() - started),
    };
    console.log(`[recovery-soak redis] ${JSON.stringify(summary)}`);
    expect(summary.missing).toBe(0);
    expect(summary.doubled).toBe(0);
    expect(summary.effectsOnce).toBe(JOBS);
    expect(summary.failedOutcomes).toBeGreaterThan(0);
    expect(summary.byInstance.a).toBeGreaterThan(0);
    expect(summary.byInstance.b).toBeGreaterThan(0);
  });
});
