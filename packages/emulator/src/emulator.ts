import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { MappaWebhookError } from "@mappa-webhooks/core";
import { type ClockMode, EmulatorClock } from "./clock.js";
import { createHandler, type ServerContext } from "./server.js";
import { apiKeyIdOf, EmulatorState } from "./state.js";
import type {
  Entity,
  Job,
  JobPlan,
  Matching,
  MediaFile,
  Report,
  WebhookAttempt,
  WebhookDelivery,
  WebhookShape,
} from "./types.js";
import { DEFAULT_WEBHOOK_TIMEOUT_MS, MAPPA_RETRY_SCHEDULE_MS, WebhookSender } from "./webhooks.js";

/**
 * Options of {@link startMappaEmulator}. Every one is optional.
 *
 * @example
 * ```ts
 * const options: MappaEmulatorOptions = { clock: "manual", secret: "whsec_test", apiKey: "test_key" };
 * ```
 */
export interface MappaEmulatorOptions {
  /** Port to listen on. Default 0: a free one (read `emulator.url`). */
  port?: number;
  /** Interface to bind. Default `127.0.0.1` (loopback only). */
  host?: string;
  /** The webhook signing secret. Default `whsec_emulator`. */
  secret?: string;
  /** Accept only this `Mappa-Api-Key` (others get 401). Default: any non-empty key. */
  apiKey?: string;
  /**
   * `"real"` (default): the clock runs by itself, `1 / timeScale` times faster than the wall
   * clock. `"manual"`: it moves only when you call `advance(ms)`, for tests.
   */
  clock?: ClockMode;
  /** Speeds the `"real"` clock up: `0.01` runs a 150 s report in 1.5 s and the 36-min retry schedule in 21 s. Default 1. */
  timeScale?: number;
  /** The webhook wire shape. Default `"current"` (conduit-signature); `"guide"` and `"mappa-node-1.2"` sign with mappa-signature. */
  shape?: WebhookShape;
  /** Put the signature in this header instead of the shape's own. */
  signatureHeader?: string;
  /** Waits before each webhook attempt (emulator-clock ms). Default Mappa's: 0, 5 s, 30 s, 5 min, 30 min. */
  retrySchedule?: readonly number[];
  /** How long one webhook attempt may take, in wall-clock ms. Default 30 000. */
  webhookTimeoutMs?: number;
  /** Webhook requests in flight at once; the others wait for a free slot. Default 32. */
  maxConcurrentWebhooks?: number;
  /** Emulator-clock ms between SSE heartbeats. Default 15 000. */
  heartbeatMs?: number;
  /** Credit balance; a job that costs more gets 402 insufficient_credits. Default `null`: unlimited. */
  credits?: number | null;
  /** Jobs (with their reports) kept; the oldest finished ones go first. Default 10 000. */
  maxJobs?: number;
  /** Webhook delivery records kept; the oldest finished ones go first. Default 10 000. */
  maxDeliveries?: number;
  /** Largest upload accepted by POST /v1/files, in bytes. Default 100 MiB. */
  maxUploadBytes?: number;
  /** Days an unlocked file is kept (on the emulator's clock). Default 30. */
  fileRetentionDays?: number;
  /** Unix ms used for signature timestamps. Default `Date.now` (receivers check the real clock). */
  signatureNow?: () => number;
  /** The `fetch` webhooks are sent with. Default the global one. */
  fetch?: typeof fetch;
  /** Called after every webhook attempt (the CLI prints them). */
  onWebhookAttempt?: (delivery: WebhookDelivery, attempt: WebhookAttempt) => void;
}

/**
 * A running emulator, from {@link startMappaEmulator}.
 *
 * @example
 * ```ts
 * const emulator: MappaEmulator = await startMappaEmulator({ clock: "manual" });
 * await emulator.advance(150_000);
 * await emulator.close();
 * ```
 */
export interface MappaEmulator {
  /** `http://127.0.0.1:<port>`: the SDK's `baseUrl`. */
  readonly url: string;
  readonly port: number;
  /** The webhook signing secret. */
  readonly secret: string;
  /** Emulator-clock now, unix ms. */
  now(): number;
  /** Moves the clock by `ms`, running every stage, retry and heartbeat due on the way, and waits for the webhooks they send. */
  advance(ms: number): Promise<void>;
  /** Waits until nothing is due and every webhook attempt started has been answered. */
  settle(): Promise<void>;
  /** Advances until no task is left (every job ended, every retry done). Close SSE streams first: heartbeats never end. */
  runAll(): Promise<void>;
  /** A job, as GET /v1/jobs/:id returns it. */
  job(jobId: string): Job | undefined;
  /** Every job, oldest first. */
  jobs(): Job[];
  report(reportId: string): Report | undefined;
  matching(matchingId: string): Matching | undefined;
  files(): MediaFile[];
  /** Adds an entity (for matching jobs). */
  addEntity(input?: { label?: string | null }): Entity;
  /** Sets how one job ends, how long it runs and its webhook faults (parts already past are not redone). */
  planJob(jobId: string, plan: JobPlan): Job;
  /** The same plan for the next `count` jobs created. */
  planNext(count: number, plan: JobPlan): void;
  /** Sets the credit balance (`null`: unlimited). */
  setCredits(balance: number | null): void;
  /** The credit balance (`null`: unlimited). */
  credits(): number | null;
  /** The next `count` API requests are answered 429 with `Retry-After: retryAfterSec`. */
  rateLimit(count: number, retryAfterSec?: number): void;
  /** Webhook deliveries, oldest first, optionally for one job. */
  deliveries(filter?: { jobId?: string }): WebhookDelivery[];
  delivery(eventId: string): WebhookDelivery | undefined;
  /** Sends an event once more now (same id and body, fresh signature) and resolves with the attempt. */
  resend(eventId: string): Promise<WebhookAttempt>;
  /** Sends the events held back by `reorder` faults now. */
  releaseHeld(): void;
  /** Open SSE streams (all, or one job's). */
  openStreams(jobId?: string): number;
  /** Closes open SSE streams (all, or one job's) without a terminal event, as a dropped connection. */
  dropStreams(jobId?: string): number;
  /** Forgets every job, file, entity, plan and delivery. */
  reset(): void;
  /** Stops the server: open streams are closed, queued work is dropped. */
  close(): Promise<void>;
}

function invalid(message: string): MappaWebhookError {
  return new MappaWebhookError("invalid_options", `emulator: ${message}`);
}

function positive(
  name: string,
  value: number | undefined,
  fallback: number,
  { allowZero = false } = {},
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== "number" ||
    !Number.isFinite(value) ||
    value < 0 ||
    (!allowZero && value === 0)
  ) {
    throw invalid(
      `\`${name}\` must be a number ${allowZero ? ">=" : ">"} 0, got ${String(value)}.`,
    );
  }
  return value;
}

/**
 * Starts a local Mappa: the REST API of mappa-api.md (files, report and matching jobs, jobs and
 * their SSE stream, reports, matchings, entities), the job lifecycle on a clock you control, and
 * signed webhooks with Mappa's retry schedule and injectable faults. Bound to 127.0.0.1.
 *
 * @example
 * ```ts
 * import { startMappaEmulator } from "@mappa-webhooks/emulator";
 *
 * const emulator = await startMappaEmulator({ clock: "manual", secret: "whsec_test" });
 * const headers = { "Mappa-Api-Key": "any", "Content-Type": "application/json" };
 * const form = new FormData();
 * form.append("file", new Blob([new Uint8Array(1024)]), "call");
 * form.append("label", "call");
 * const { mediaId } = await (await fetch(`${emulator.url}/v1/files`, { method: "POST", body: form, headers: { "Mappa-Api-Key": "any" } })).json();
 * const { jobId } = await (await fetch(`${emulator.url}/v1/reports/jobs`, {
 *   method: "POST", headers, body: JSON.stringify({
 *     media: { mediaId }, output: { template: "general_report" },
 *     target: { strategy: "dominant", on_miss: "error" },
 *     webhook: { url: "http://127.0.0.1:3000/webhooks/mappa" },
 *   }),
 * })).json();
 * await emulator.advance(150_000); // the job succeeds; its webhook is sent and answered
 * console.log(emulator.deliveries({ jobId })[0]?.state); // "delivered"
 * await emulator.close();
 * ```
 */
export async function startMappaEmulator(
  options: MappaEmulatorOptions = {},
): Promise<MappaEmulator> {
  if (options === null || typeof options !== "object") throw invalid("options must be an object.");
  const mode = options.clock ?? "real";
  if (mode !== "real" && mode !== "manual") throw invalid('`clock` must be "real" or "manual".');
  const timeScale = positive("timeScale", options.timeScale, 1);
  const shape = options.shape ?? "current";
  if (shape !== "current" && shape !== "guide" && shape !== "mappa-node-1.2") {
    throw invalid('`shape` must be "current", "guide" or "mappa-node-1.2".');
  }
  const secret = options.secret ?? "whsec_emulator";
  if (typeof secret !== "string" || secret === "")
    throw invalid("`secret` must be a non-empty string.");
  if (
    options.apiKey !== undefined &&
    (typeof options.apiKey !== "string" || options.apiKey === "")
  ) {
    throw invalid("`apiKey` must be a non-empty string (or left out to accept any key).");
  }
  const schedule = options.retrySchedule ?? MAPPA_RETRY_SCHEDULE_MS;
  if (
    !Array.isArray(schedule) ||
    schedule.length === 0 ||
    !schedule.every((ms) => typeof ms === "number" && Number.isFinite(ms) && ms >= 0)
  ) {
    throw invalid("`retrySchedule` must be a non-empty list of waits in ms (numbers >= 0).");
  }
  const credits =
    options.credits === undefined || options.credits === null
      ? null
      : positive("credits", options.credits, 0, { allowZero: true });
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw invalid("`port` must be an integer from 0 to 65535.");
  const fetchImpl = options.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== "function")
    throw invalid("no global fetch in this runtime; pass `fetch`.");

  const clock = new EmulatorClock({ mode, timeScale });
  const maxJobs = positive("maxJobs", options.maxJobs, 10_000);
  const webhooks = new WebhookSender(clock, {
    secret,
    shape,
    schedule,
    timeoutMs: positive("webhookTimeoutMs", options.webhookTimeoutMs, DEFAULT_WEBHOOK_TIMEOUT_MS),
    signatureHeader: options.signatureHeader?.toLowerCase(),
    maxDeliveries: positive("maxDeliveries", options.maxDeliveries, 10_000),
    maxConcurrent: positive("maxConcurrentWebhooks", options.maxConcurrentWebhooks, 32),
    signatureNow: options.signatureNow ?? Date.now,
    fetch: fetchImpl,
    onAttempt: options.onWebhookAttempt,
  });
  const state = new EmulatorState(clock, webhooks, {
    credits,
    maxJobs,
    fileRetentionDays: positive("fileRetentionDays", options.fileRetentionDays, 30),
    apiKeyId: apiKeyIdOf,
  });
  const streams: ServerContext["streams"] = new Set();
  const rateLimit = { remaining: 0, retryAfterSec: 1 };

  const planJob = (jobId: string, plan: JobPlan): Job => {
    const record = state.jobs.get(jobId);
    if (record === undefined) throw invalid(`no job ${jobId}.`);
    state.planJob(record, plan);
    return structuredClone(record.job);
  };
  const dropStreams = (jobId?: string): number => {
    let dropped = 0;
    for (const s of [...streams]) {
      if (jobId === undefined || s.jobId === jobId) {
        s.close();
        dropped++;
      }
    }
    return dropped;
  };
  const reset = (): void => {
    dropStreams();
    state.reset();
    webhooks.clear();
  };

  const handler = createHandler({
    clock,
    state,
    webhooks,
    apiKey: options.apiKey,
    maxUploadBytes: positive("maxUploadBytes", options.maxUploadBytes, 100 * 1024 * 1024),
    maxIdempotencyKeys: maxJobs * 2,
    heartbeatMs: positive("heartbeatMs", options.heartbeatMs, 15_000),
    rateLimit,
    streams,
    control: {
      planJob: (jobId, plan) => {
        const record = state.jobs.get(jobId);
        if (record === undefined)
          return { error: { code: "not_found", message: `Job ${jobId} was not found.` } };
        return planJob(jobId, plan);
      },
      planNext: (count, plan) => state.planNext(count, plan),
      reset,
      dropStreams,
      summary: () => ({
        now: new Date(clock.now()).toISOString(),
        clock: mode,
        timeScale,
        pendingTasks: clock.pendingTasks(),
        jobs: state.jobs.size,
        deliveries: webhooks.list().length,
        streams: streams.size,
        credits: state.credits,
      }),
    },
  });
  const server = createServer((req, res) => {
    handler(req, res).catch(() => res.destroy());
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) =>
      reject(
        invalid(
          `cannot listen on ${options.host ?? "127.0.0.1"}:${port}: ${(error as Error).message}`,
        ),
      ),
    );
    server.listen(port, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  let closing: Promise<void> | undefined;

  return {
    url,
    port: address.port,
    secret,
    now: () => clock.now(),
    advance: (ms) => clock.advance(ms),
    settle: () => clock.settle(),
    runAll: () => clock.runAll(),
    job: (jobId) => {
      const record = state.jobs.get(jobId);
      return record === undefined ? undefined : structuredClone(record.job);
    },
    jobs: () => [...state.jobs.values()].map((r) => structuredClone(r.job)),
    report: (id) => state.reports.get(id),
    matching: (id) => state.matchings.get(id),
    files: () => [...state.files.values()].map((r) => state.viewFile(r)),
    addEntity: (input = {}) => state.addEntity(input.label ?? null),
    planJob,
    planNext: (count, plan) => {
      if (!Number.isInteger(count) || count < 1)
        throw invalid("planNext(count, plan) needs a whole count >= 1.");
      state.planNext(count, plan);
    },
    setCredits: (balance) => {
      state.credits =
        balance === null ? null : positive("balance", balance, 0, { allowZero: true });
    },
    credits: () => state.credits,
    rateLimit: (count, retryAfterSec = 1) => {
      rateLimit.remaining = positive("count", count, 0, { allowZero: true });
      rateLimit.retryAfterSec = positive("retryAfterSec", retryAfterSec, 1, { allowZero: true });
    },
    deliveries: (filter = {}) => webhooks.list(filter),
    delivery: (eventId) => webhooks.get(eventId),
    resend: (eventId) => {
      const attempt = webhooks.resend(eventId);
      if (attempt === undefined)
        return Promise.reject(invalid(`no delivery with event id ${eventId}.`));
      return attempt;
    },
    releaseHeld: () => webhooks.releaseHeld(),
    openStreams: (jobId) =>
      [...streams].filter((s) => jobId === undefined || s.jobId === jobId).length,
    dropStreams,
    reset,
    close: () => {
      closing ??= (async () => {
        dropStreams();
        clock.close();
        await clock.drain();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })();
      return closing;
    },
  };
}
