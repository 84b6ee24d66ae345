import { isMappaWebhookError, MappaWebhookError } from "./errors.js";
import type { MappaEvent } from "./events.js";
import { type MappaEventType, RECOVERED_FIELD } from "./events.js";
import { createLogWriter, failureLine } from "./log.js";
import {
  createMappaWebhooks,
  type MappaWebhooks,
  type MappaWebhooksOptions,
  type WebhookResponse,
} from "./pipeline.js";
import { isJobTrackingStore, type JobTrackingStore } from "./recovery-store.js";
import { signPayload } from "./verify.js";

/** Mappa's API, where `GET /v1/jobs/:id` is asked by default. */
export const DEFAULT_MAPPA_API_URL = "https://api.mappa.ai";

/**
 * Mappa's whole retry schedule (0 s, 5 s, 30 s, 5 min, 30 min: 35 min 35 s), five attempts
 * of up to 30 s each, and a margin: 45 minutes after a job ended its webhook is given up.
 */
export const DEFAULT_RECOVERY_GRACE_MS = 45 * 60 * 1000;
/** A job queued or running this long after its creation is reported as stuck. Default 2 h. */
export const DEFAULT_STUCK_AFTER_MS = 2 * 60 * 60 * 1000;
/** Jobs one `reconcile()` looks at, at most (one API call each). */
export const DEFAULT_RECOVERY_BATCH = 100;

/**
 * A job as `GET /v1/jobs/:id` returns it (and as conduit's `primitives.jobs.get` resolves it);
 * only these fields are read, any other is ignored.
 */
export interface MappaJob {
  id?: string;
  /** `report.generate` or `matching.generate`. */
  type?: string;
  /** `queued`, `running`, `succeeded`, `failed` or `canceled`. */
  status: string;
  createdAt?: string;
  updatedAt?: string;
  reportId?: string;
  matchingId?: string;
  error?: { code?: string; message?: string } | null;
}

/** Options of {@link createMappaRecovery}: the receiver's own options, plus how to ask Mappa. */
export interface MappaRecoveryOptions<TContext = unknown>
  extends Omit<MappaWebhooksOptions<TContext>, "idempotency" | "ack"> {
  /**
   * The receiver's store: the same object (or the same Redis / Postgres) the webhook receiver
   * uses, so both paths claim one key per job outcome. It must track jobs (every store of this
   * project does).
   */
  idempotency: MappaWebhooksOptions<TContext>["idempotency"];
  /** Your Mappa API key (sent as `Mappa-Api-Key`). Needed unless `fetchJob` is given. */
  apiKey?: string;
  /** Mappa's API. Default `https://api.mappa.ai`; point it at the emulator in tests. */
  baseUrl?: string;
  /**
   * Fetches one job instead of the built-in `GET /v1/jobs/:id`, e.g. conduit's
   * `conduit.primitives.jobs.get` as is. A thrown error with `status: 404` means the job is
   * unknown; `status` 429 with `retryAfterMs` pauses recovery.
   */
  fetchJob?: (jobId: string) => Promise<MappaJob>;
  /** The fetch used by the built-in `fetchJob`. Default the global `fetch`. */
  fetch?: typeof fetch;
  /** How long after a job ended before recovery handles it. Default 45 min; 0 for poll mode. */
  graceMs?: number;
  /** A job queued or running longer than this after creation is reported stuck. Default 2 h. */
  stuckAfterMs?: number;
  /** Most jobs looked at per `reconcile()`. Default 100. */
  batchSize?: number;
  /** The clock in unix milliseconds (compared with the job's times). Default `Date.now`. */
  clock?: () => number;
  /** Passed to handlers as their second argument for recovered events. */
  context?: TContext;
}

/** What happened to one tracked job in a `reconcile()`. */
export type MappaRecoveryOutcome =
  /** Its outcome ran through the handlers now. */
  | "recovered"
  /** Its outcome had already been handled (by its webhook or another recovery). */
  | "duplicate"
  /** Ended, but less than `graceMs` ago: its webhook may still come. */
  | "waiting"
  /** Still queued or running. */
  | "running"
  /** Queued or running for longer than `stuckAfterMs`. Kept tracked. */
  | "stuck"
  /** Canceled: there is no outcome to handle. Untracked. */
  | "canceled"
  /**
   * The API answered 404 for it (untracked), or it ended but the API's answer names no report or
   * matching to build an event from (kept tracked).
   */
  | "unknown"
  /** Another delivery of the same outcome is being handled right now. Kept tracked. */
  | "in_flight"
  /** A handler (or the store) failed; tried again next run. Kept tracked. */
  | "failed"
  /** The API could not be asked (down, 401, 429): this job and the rest of the batch wait. */
  | "api_error";

/** One job's line in a {@link MappaRecoveryReport}. */
export interface MappaRecoveryJobResult {
  jobId: string;
  outcome: MappaRecoveryOutcome;
  /** The job's status as the API gave it. */
  status?: string;
  /** The event type recovery built, for `recovered`, `duplicate`, `in_flight` and `failed`. */
  type?: MappaEventType;
  /** Why, for `stuck`, `canceled`, `unknown`, `failed` and `api_error`. */
  error?: MappaWebhookError;
}

/** What one `reconcile()` did. */
export interface MappaRecoveryReport {
  /** Jobs looked at (one API call each, except while paused by a 429). */
  checked: number;
  /** Count per outcome. */
  counts: Record<MappaRecoveryOutcome, number>;
  jobs: MappaRecoveryJobResult[];
  /** Set after a 429: how long (ms) recovery waits before asking again. */
  retryAfterMs?: number;
  /** The API error that stopped the batch, if one did. */
  apiError?: MappaWebhookError;
}

/** The recovery {@link createMappaRecovery} returns. */
export interface MappaRecovery {
  /**
   * Records a job right after creating it (pass the receipt or its `jobId`), so its outcome is
   * handled even if its webhook never arrives.
   */
  track(job: string | { jobId: string }): Promise<void>;
  /** Forgets a job (its outcome is then never recovered). */
  untrack(jobId: string): Promise<void>;
  /** Looks at up to `batchSize` tracked jobs and handles the outcomes Mappa gave up on. */
  reconcile(): Promise<MappaRecoveryReport>;
  /**
   * Runs `reconcile()` now and then every `intervalMs` (longer after a 429) until `stop()`.
   * For long-lived servers; on serverless point a cron at a route helper or the CLI instead.
   */
  start(options?: { intervalMs?: number }): { stop(): Promise<void> };
}

const OUTCOMES: readonly MappaRecoveryOutcome[] = [
  "recovered",
  "duplicate",
  "waiting",
  "running",
  "stuck",
  "canceled",
  "unknown",
  "in_flight",
  "failed",
  "api_error",
];

/** How long the built-in `fetchJob` waits for `GET /v1/jobs/:id` (headers and body). */
const FETCH_JOB_TIMEOUT_MS = 30_000;

/** A failure of the built-in `fetchJob`, with what the API said. */
class JobFetchFailure extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}

function invalidOption(message: string): MappaWebhookError {
  return new MappaWebhookError("invalid_options", `createMappaRecovery: ${message}`);
}

/** Timers take at most 2^31−1 ms; a longer delay fires after 1 ms (a busy loop). */
const MAX_TIMER_MS = 2 ** 31 - 1;

function checkMs(
  value: unknown,
  name: string,
  min: number,
  { unit = "milliseconds", max = Number.MAX_SAFE_INTEGER, where = "createMappaRecovery" } = {},
): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`;
    const shown = typeof value === "string" ? JSON.stringify(value) : String(value);
    throw new MappaWebhookError(
      "invalid_options",
      `${where}: \`${name}\` must be a whole number of ${unit} ${range}, got ${shown}.`,
    );
  }
  return value;
}

function retryAfterMsOf(header: string | null): number | undefined {
  if (header === null) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function builtInFetchJob(
  apiKey: string,
  baseUrl: string,
  fetchImpl: typeof fetch,
): (jobId: string) => Promise<MappaJob> {
  const base = baseUrl.replace(/\/+$/, "");
  return async (jobId) => {
    // A hung API must not hang reconcile() (nor the stop() of start() waiting for it).
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_JOB_TIMEOUT_MS);
    let response: Response;
    let text: string;
    try {
      response = await fetchImpl(`${base}/v1/jobs/${encodeURIComponent(jobId)}`, {
        headers: { "Mappa-Api-Key": apiKey, Accept: "application/json" },
        signal: controller.signal,
      });
      text = await response.text();
    } catch (cause) {
      const why = controller.signal.aborted
        ? `no answer within ${FETCH_JOB_TIMEOUT_MS / 1000} s`
        : ((cause as Error)?.message ?? String(cause));
      throw new JobFetchFailure(`could not reach ${base} (${why})`, undefined, undefined);
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) {
      let code = "";
      try {
        const body = JSON.parse(text) as { error?: { code?: string } | string; code?: string };
        code = typeof body.error === "object" ? (body.error?.code ?? "") : (body.code ?? "");
      } catch {
        // not JSON: the status says enough
      }
      throw new JobFetchFailure(
        `GET /v1/jobs/${jobId} answered ${response.status}${code ? ` ${code}` : ""}`,
        response.status,
        retryAfterMsOf(response.headers.get("retry-after")),
      );
    }
    try {
      return JSON.parse(text) as MappaJob;
    } catch {
      throw new JobFetchFailure(
        `GET /v1/jobs/${jobId} answered a body that is not JSON`,
        502,
        undefined,
      );
    }
  };
}

function eventTypeFor(job: MappaJob): "report" | "matching" | undefined {
  if (job.type === "report.generate" || job.reportId !== undefined) return "report";
  if (job.type === "matching.generate" || job.matchingId !== undefined) return "matching";
  return undefined;
}

/** The body the webhook of this finished job would have carried, marked as recovered. */
function recoveredBody(
  jobId: string,
  job: MappaJob,
  kind: "report" | "matching",
): {
  type: MappaEventType;
  body: string;
} {
  const at = job.updatedAt ?? job.createdAt ?? new Date().toISOString();
  if (job.status === "succeeded") {
    const type = `${kind}.completed` as const;
    const data =
      kind === "report"
        ? { jobId, reportId: job.reportId, status: "succeeded" }
        : { jobId, matchingId: job.matchingId, status: "succeeded" };
    return {
      type,
      body: JSON.stringify({
        id: `recovered_${jobId}`,
        type,
        createdAt: at,
        timestamp: at,
        data,
        [RECOVERED_FIELD]: true,
      }),
    };
  }
  const type = `${kind}.failed` as const;
  const error = {
    code: job.error?.code ?? "unknown_error",
    message: job.error?.message ?? "The job failed.",
  };
  return {
    type,
    body: JSON.stringify({
      id: `recovered_${jobId}`,
      type,
      createdAt: at,
      timestamp: at,
      data: { jobId, status: "failed", error },
      [RECOVERED_FIELD]: true,
    }),
  };
}

function emptyCounts(): Record<MappaRecoveryOutcome, number> {
  const counts = {} as Record<MappaRecoveryOutcome, number>;
  for (const outcome of OUTCOMES) counts[outcome] = 0;
  return counts;
}

/**
 * Handles every finished job's outcome once, whether or not its webhook ever arrived. Give it
 * the receiver's own options (handlers, `onUnknown`, `onError`, and the same idempotency
 * store) and your API key; `track(jobId)` each job you create; run `reconcile()` now and then
 * (`start()`, a cron route, or `mappa-webhooks recover`). A tracked job that ended more than
 * `graceMs` ago without its outcome handled is fetched from `GET /v1/jobs/:id`, built into the
 * event its webhook would have carried (`event.recovered === true`) and run through the same
 * pipeline: the webhook and recovery claim one key per job outcome, so handlers run once.
 *
 * @example
 * ```ts
 * import { createMappaRecovery, createMappaWebhooks, createMemoryIdempotencyStore } from "@mappa-webhooks/core";
 *
 * const store = createMemoryIdempotencyStore();
 * const options = {
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   idempotency: store,
 *   on: { "report.completed": (event) => console.log(`report ready ${event.data.reportId}`) },
 * };
 * const webhooks = createMappaWebhooks(options);
 * const recovery = createMappaRecovery({ ...options, apiKey: process.env.MAPPA_API_KEY! });
 * recovery.start({ intervalMs: 5 * 60_000 });
 * // after creating a job:
 * await recovery.track(receipt.jobId);
 * ```
 */
export function createMappaRecovery<TContext = unknown>(
  options: MappaRecoveryOptions<TContext>,
): MappaRecovery {
  if (options === null || typeof options !== "object") {
    throw invalidOption(
      "takes the receiver's options plus `apiKey`, e.g. `{ secret, idempotency: store, on, apiKey }`.",
    );
  }
  const store = options.idempotency;
  if (!isJobTrackingStore(store)) {
    throw invalidOption(
      "`idempotency` must be the receiver's own store, and one that tracks jobs (createMemoryIdempotencyStore(), or the store of @mappa-webhooks/redis, postgres, sqlite, mysql or dynamodb): create it once and pass the same store to createMappaWebhooks and createMappaRecovery.",
    );
  }
  const tracking: JobTrackingStore = store;
  let fetchJob = options.fetchJob;
  if (fetchJob !== undefined && typeof fetchJob !== "function") {
    throw invalidOption(
      "`fetchJob` must be a function (jobId) => Promise<job>, e.g. conduit.primitives.jobs.get.",
    );
  }
  if (fetchJob === undefined) {
    if (typeof options.apiKey !== "string" || options.apiKey === "") {
      throw invalidOption(
        "pass `apiKey` (your Mappa API key, e.g. process.env.MAPPA_API_KEY) or `fetchJob`.",
      );
    }
    const baseUrl = options.baseUrl ?? DEFAULT_MAPPA_API_URL;
    if (typeof baseUrl !== "string" || !/^https?:\/\//.test(baseUrl)) {
      throw invalidOption(`\`baseUrl\` must be an http(s) URL, got ${String(baseUrl)}.`);
    }
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") {
      throw invalidOption("no global `fetch` here: pass `fetch` (Node 20+ has one).");
    }
    fetchJob = builtInFetchJob(options.apiKey, baseUrl, fetchImpl);
  }
  const fetchOne = fetchJob;
  const graceMs = checkMs(options.graceMs, "graceMs", 0) ?? DEFAULT_RECOVERY_GRACE_MS;
  const stuckAfterMs = checkMs(options.stuckAfterMs, "stuckAfterMs", 1) ?? DEFAULT_STUCK_AFTER_MS;
  const batchSize =
    checkMs(options.batchSize, "batchSize", 1, { unit: "jobs" }) ?? DEFAULT_RECOVERY_BATCH;
  const clock = options.clock ?? Date.now;
  if (typeof clock !== "function")
    throw invalidOption("`clock` must be a function returning unix ms (like `Date.now`).");

  const {
    apiKey: _apiKey,
    baseUrl: _baseUrl,
    fetchJob: _fetchJob,
    fetch: _fetch,
    graceMs: _graceMs,
    stuckAfterMs: _stuck,
    batchSize: _batch,
    clock: _clock,
    context,
    ...receiverOptions
  } = options;
  // Recovered events always wait for their handlers: an answer is only a report here.
  const receiver: MappaWebhooks<TContext> = createMappaWebhooks<TContext>({
    ...receiverOptions,
    idempotency: store,
    ack: "after-handlers",
  });
  const headerNames = options.headerName ?? "mappa-signature";
  const headerName =
    typeof headerNames === "string" ? headerNames : (headerNames[0] ?? "mappa-signature");
  const secret = typeof options.secret === "string" ? options.secret : (options.secret[0] ?? "");

  // The receiver's logger: one line per job recovery cannot handle and per API or store failure
  // (a failing handler is logged by the pipeline itself).
  const log = createLogWriter({ logger: options.logger, logLevel: options.logLevel });
  const tell = (error: MappaWebhookError, status: number, event?: MappaEvent) => {
    const line = failureLine("recovery", status, error, event);
    if (error.code === "job_not_recoverable") log.warn(line);
    else log.error(line);
    try {
      options.onError?.(
        error,
        event === undefined ? { phase: "recovery", status } : { phase: "recovery", status, event },
      );
    } catch {
      // onError never turns recovery into a crash
    }
  };

  let cursor: string | undefined;
  let pausedUntil = 0;

  const receiverNowSec = (): number => {
    const now = options.now;
    if (typeof now === "number") return now;
    if (typeof now === "function") return now();
    return Math.floor(Date.now() / 1000);
  };

  async function dispatch(
    jobId: string,
    job: MappaJob,
    kind: "report" | "matching",
  ): Promise<MappaRecoveryJobResult> {
    const { type, body } = recoveredBody(jobId, job, kind);
    const signature = await signPayload({ secret, payload: body, timestamp: receiverNowSec() });
    const response: WebhookResponse = await receiver.handle({
      method: "POST",
      headers: { [headerName]: signature, "content-type": "application/json" },
      rawBody: body,
      context: context as TContext,
    });
    const base = { jobId, status: job.status, type };
    if (response.status >= 200 && response.status < 300) {
      await tracking
        .untrack(jobId)
        .catch((error: unknown) => tell(storeError(error), 200, response.event));
      return { ...base, outcome: response.duplicate === true ? "duplicate" : "recovered" };
    }
    if (response.error?.code === "event_in_flight") return { ...base, outcome: "in_flight" };
    // The pipeline already told onError why.
    return response.error === undefined
      ? { ...base, outcome: "failed" }
      : { ...base, outcome: "failed", error: response.error };
  }

  function storeError(cause: unknown): MappaWebhookError {
    return isMappaWebhookError(cause)
      ? cause
      : new MappaWebhookError(
          "idempotency_store_failed",
          `recovery could not untrack a job: ${(cause as Error)?.message ?? String(cause)}. It is looked at again next run; a handled outcome's key still makes that a duplicate.`,
          { cause },
        );
  }

  /** Untracks a job that has no outcome to handle; a store failure is reported, not thrown. */
  async function untrackQuietly(jobId: string): Promise<void> {
    try {
      await tracking.untrack(jobId);
    } catch (error) {
      tell(storeError(error), 503);
    }
  }

  function notRecoverable(
    jobId: string,
    outcome: "canceled" | "unknown" | "stuck",
    message: string,
    status?: string,
  ): MappaRecoveryJobResult {
    const error = new MappaWebhookError("job_not_recoverable", message);
    tell(error, error.status);
    return status === undefined ? { jobId, outcome, error } : { jobId, outcome, status, error };
  }

  async function look(jobId: string): Promise<MappaRecoveryJobResult | MappaWebhookError> {
    let job: MappaJob;
    try {
      job = await fetchOne(jobId);
    } catch (cause) {
      const status = (cause as { status?: unknown })?.status;
      if (status === 404) {
        await untrackQuietly(jobId);
        return notRecoverable(
          jobId,
          "unknown",
          `recovery: Mappa's API does not know job ${jobId} (404), so it was untracked. Check that it was created with this API key and base URL.`,
        );
      }
      const retryAfter = (cause as { retryAfterMs?: unknown })?.retryAfterMs;
      if (status === 429) {
        pausedUntil =
          clock() + (typeof retryAfter === "number" && retryAfter >= 0 ? retryAfter : 60_000);
      }
      const hint =
        status === 401 || status === 403
          ? " Check the API key (MAPPA_API_KEY) recovery was given."
          : status === 429
            ? " Recovery pauses for the Retry-After the API sent."
            : " The next run tries again.";
      return new MappaWebhookError(
        "mappa_api_failed",
        `recovery could not fetch job ${jobId}: ${(cause as Error)?.message ?? String(cause)}.${hint}`,
        { cause },
      );
    }
    if (job === null || typeof job !== "object" || typeof job.status !== "string") {
      return new MappaWebhookError(
        "mappa_api_failed",
        `recovery could not read job ${jobId}: the API (or fetchJob) answered ${job === null || typeof job !== "object" ? String(job) : "a job without a string `status`"}, not a job. The next run tries again.`,
      );
    }
    const status = job.status;
    const now = clock();
    if (status === "canceled") {
      await untrackQuietly(jobId);
      return notRecoverable(
        jobId,
        "canceled",
        `recovery: job ${jobId} was canceled, so it has no outcome to handle; it was untracked.`,
        status,
      );
    }
    if (status === "succeeded" || status === "failed") {
      const endedAt = Date.parse(job.updatedAt ?? job.createdAt ?? "");
      // graceMs 0 (poll mode) never waits, even for a job whose end the API's clock puts ahead of ours.
      if (graceMs > 0 && !Number.isNaN(endedAt) && now - endedAt < graceMs)
        return { jobId, outcome: "waiting", status };
      const kind = eventTypeFor(job);
      if (
        kind === undefined ||
        (status === "succeeded" &&
          (kind === "report" ? job.reportId : job.matchingId) === undefined)
      ) {
        return notRecoverable(
          jobId,
          "unknown",
          `recovery: job ${jobId} ended ${status} but the API's answer names no report or matching, so no event can be built; it stays tracked.`,
          status,
        );
      }
      return dispatch(jobId, job, kind);
    }
    const createdAt = Date.parse(job.createdAt ?? "");
    if (!Number.isNaN(createdAt) && now - createdAt > stuckAfterMs) {
      return notRecoverable(
        jobId,
        "stuck",
        `recovery: job ${jobId} is still ${status} ${Math.round((now - createdAt) / 60_000)} min after its creation (stuckAfterMs is ${stuckAfterMs}); it stays tracked.`,
        status,
      );
    }
    return { jobId, outcome: "running", status };
  }

  async function reconcile(): Promise<MappaRecoveryReport> {
    const report: MappaRecoveryReport = { checked: 0, counts: emptyCounts(), jobs: [] };
    const wait = pausedUntil - clock();
    if (wait > 0) {
      report.retryAfterMs = wait;
      return report;
    }
    let batch = await tracking.tracked({
      limit: batchSize,
      ...(cursor === undefined ? {} : { after: cursor }),
    });
    if (batch.length < batchSize && cursor !== undefined) {
      // Wrap around: the rest of the batch from the start.
      const seen = new Set(batch.map((job) => job.jobId));
      const more = await tracking.tracked({ limit: batchSize - batch.length });
      batch = batch.concat(more.filter((job) => !seen.has(job.jobId)));
    }
    for (let index = 0; index < batch.length; index++) {
      const { jobId } = batch[index] as { jobId: string };
      report.checked++;
      const result = await look(jobId);
      if (isMappaWebhookError(result)) {
        // The API is down, refuses the key or asks to slow down: the rest of the batch waits.
        report.apiError = result;
        tell(result, result.status);
        for (const rest of batch.slice(index)) {
          report.jobs.push({ jobId: rest.jobId, outcome: "api_error", error: result });
          report.counts.api_error++;
        }
        const wait = pausedUntil - clock();
        if (wait > 0) report.retryAfterMs = wait;
        cursor = index === 0 ? cursor : (batch[index - 1] as { jobId: string }).jobId;
        return report;
      }
      report.jobs.push(result);
      report.counts[result.outcome]++;
      cursor = jobId;
    }
    if (batch.length < batchSize) cursor = undefined;
    return report;
  }

  return {
    async track(job) {
      const jobId = typeof job === "string" ? job : job?.jobId;
      if (typeof jobId !== "string" || jobId === "") {
        throw new MappaWebhookError(
          "invalid_options",
          "recovery.track takes the job id (a non-empty string) or the receipt of reports.create / matching.create (with `jobId`).",
        );
      }
      await tracking.track(jobId, { trackedAt: clock() });
    },
    untrack: (jobId) => tracking.untrack(jobId),
    reconcile,
    start(startOptions = {}) {
      const intervalMs =
        checkMs(startOptions?.intervalMs, "intervalMs", 1, {
          max: MAX_TIMER_MS,
          where: "recovery.start",
        }) ?? 5 * 60 * 1000;
      let stopped = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let running: Promise<unknown> = Promise.resolve();
      const tick = () => {
        running = reconcile()
          .catch((error: unknown) =>
            tell(
              isMappaWebhookError(error)
                ? error
                : new MappaWebhookError(
                    "idempotency_store_failed",
                    `recovery could not read its tracked jobs: ${(error as Error)?.message ?? String(error)}.`,
                    { cause: error },
                  ),
              503,
            ),
          )
          .then((result) => {
            if (stopped) return;
            const pause = (result as MappaRecoveryReport | undefined)?.retryAfterMs ?? 0;
            // A long Retry-After is waited in steps: reconcile() stays paused until it is over.
            timer = setTimeout(tick, Math.min(Math.max(intervalMs, pause), MAX_TIMER_MS));
            (timer as { unref?: () => void }).unref?.();
          });
      };
      tick();
      return {
        async stop() {
          stopped = true;
          if (timer !== undefined) clearTimeout(timer);
          await running;
        },
      };
    },
  };
}
