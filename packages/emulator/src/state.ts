import { createHash } from "node:crypto";
import type { EmulatorClock } from "./clock.js";
import { buildMatching, buildReport, messageFor } from "./content.js";
import type {
  Entity,
  Job,
  JobOutcome,
  JobPlan,
  JobStage,
  Matching,
  MatchingSource,
  MediaFile,
  Report,
  TargetSelector,
} from "./types.js";
import { newId, type WebhookSender } from "./webhooks.js";

/** The running stages, in order, with their share of a job's duration and progress at their start. */
export const RUNNING_STAGES: readonly { stage: JobStage; share: number; progress: number }[] = [
  { stage: "transcoding", share: 0.1, progress: 0.05 },
  { stage: "extracting", share: 0.27, progress: 0.15 },
  { stage: "scoring", share: 0.27, progress: 0.4 },
  { stage: "rendering", share: 0.23, progress: 0.65 },
  { stage: "finalizing", share: 0.1, progress: 0.9 },
];
const QUEUED_SHARE = 0.03;

/** About 150 s per report, 60 s per matching, on the emulator's clock. */
export const DEFAULT_REPORT_LATENCY_MS = 150_000;
export const DEFAULT_MATCHING_LATENCY_MS = 60_000;
const REPORT_CREDITS = 5;
const MATCHING_CREDITS = 3;
const DAY_MS = 86_400_000;

/** One event of a job's SSE stream. */
export interface StreamEvent {
  id: number;
  event: "status" | "stage" | "terminal";
  data: Record<string, unknown>;
}

export interface ReportRequest {
  kind: "report";
  mediaId: string;
  template: string;
  target: TargetSelector;
  label?: string | undefined;
  entityLabel?: string | undefined;
}

export interface MatchingRequest {
  kind: "matching";
  target: MatchingSource;
  group: MatchingSource[];
  label?: string | undefined;
}

export interface JobRecord {
  job: Job;
  request: ReportRequest | MatchingRequest;
  plan: JobPlan;
  webhook: { url: string; headers: Record<string, string> } | undefined;
  events: StreamEvent[];
  listeners: Set<(event: StreamEvent) => void>;
  cancelTimer: (() => void) | undefined;
  /** When the pending step was scheduled, and its share of the latency (to re-plan it). */
  stepStartedAt: number;
  stepShare: number;
  cost: number;
  stageIndex: number;
}

export interface FileRecord {
  file: MediaFile;
  deletedAt: number | undefined;
  expiresAt: number | null;
}

export interface StateOptions {
  credits: number | null;
  maxJobs: number;
  fileRetentionDays: number;
  apiKeyId: (key: string) => string | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const clone = <T>(value: T): T => structuredClone(value);

function failOutcomeFromLabel(label: string | undefined): JobOutcome | undefined {
  const match = label === undefined ? null : /^fail:(.+)$/.exec(label);
  if (match === null) return undefined;
  return { status: "failed", error: { code: (match[1] as string).trim() } };
}

/** Everything the emulator stores, and the job lifecycle on the emulator's clock. */
export class EmulatorState {
  readonly jobs = new Map<string, JobRecord>();
  readonly files = new Map<string, FileRecord>();
  readonly entities = new Map<string, Entity>();
  readonly reports = new Map<string, Report>();
  readonly matchings = new Map<string, Matching>();
  readonly reportByJob = new Map<string, string>();
  readonly matchingByJob = new Map<string, string>();
  credits: number | null;
  private nextPlans: { remaining: number; plan: JobPlan }[] = [];

  constructor(
    private readonly clock: EmulatorClock,
    private readonly webhooks: WebhookSender,
    private readonly options: StateOptions,
  ) {
    this.credits = options.credits;
  }

  // ---------- files ----------

  addFile(input: {
    contentType: string;
    label: string;
    sizeBytes: number;
    apiKey: string;
  }): MediaFile {
    const now = this.clock.now();
    const expiresAt = now + this.options.fileRetentionDays * DAY_MS;
    const file: MediaFile = {
      mediaId: newId("media"),
      contentType: input.contentType,
      label: input.label,
      createdByUserId: "user_emulator",
      createdByApiKeyId: this.options.apiKeyId(input.apiKey),
      workspaceId: "ws_emulator",
      source: "SDK",
      createdAt: iso(now),
      sizeBytes: input.sizeBytes,
      durationSeconds: null,
      hasReports: false,
      lastUsedAt: null,
      processingStatus: "COMPLETED",
      retention: {
        locked: false,
        expiresAt: iso(expiresAt),
        daysRemaining: this.options.fileRetentionDays,
      },
    };
    this.files.set(file.mediaId, { file, deletedAt: undefined, expiresAt });
    return clone(file);
  }

  /** A file as the API shows it now: retention counted on the clock; a file past it is deleted. */
  viewFile(record: FileRecord): MediaFile {
    const now = this.clock.now();
    if (record.deletedAt === undefined && record.expiresAt !== null && now >= record.expiresAt) {
      record.deletedAt = record.expiresAt;
    }
    const file = clone(record.file);
    file.retention =
      record.expiresAt === null
        ? { locked: true, expiresAt: null, daysRemaining: null }
        : {
            locked: false,
            expiresAt: iso(record.expiresAt),
            daysRemaining: Math.max(0, Math.ceil((record.expiresAt - now) / DAY_MS)),
          };
    if (record.deletedAt !== undefined) file.deletedAt = iso(record.deletedAt);
    return file;
  }

  setRetentionLock(record: FileRecord, lock: boolean): void {
    if (lock) record.expiresAt = null;
    else if (record.expiresAt === null) {
      record.expiresAt = this.clock.now() + this.options.fileRetentionDays * DAY_MS;
    }
    record.file.retention.locked = lock;
  }

  deleteFile(record: FileRecord): void {
    record.deletedAt = this.clock.now();
  }

  // ---------- entities ----------

  addEntity(label: string | null): Entity {
    const entity: Entity = {
      id: newId("ent"),
      label,
      createdAt: iso(this.clock.now()),
      lastSeenAt: null,
      mediaCount: 0,
    };
    this.entities.set(entity.id, entity);
    return clone(entity);
  }

  // ---------- plans and credits ----------

  planNext(count: number, plan: JobPlan): void {
    this.nextPlans.push({ remaining: count, plan });
  }

  planJob(record: JobRecord, plan: JobPlan): void {
    record.plan = { ...record.plan, ...plan };
    // A new latency applies to the stage under way too: its step moves to the new time.
    if (plan.latencyMs !== undefined && record.cancelTimer !== undefined) {
      record.cancelTimer();
      const elapsed = this.clock.now() - record.stepStartedAt;
      const remaining = Math.max(0, plan.latencyMs * record.stepShare - elapsed);
      const task = this.clock.schedule(remaining, () => this.step(record));
      record.cancelTimer = () => task.cancel();
    }
  }

  private takePlan(label: string | undefined): JobPlan {
    let plan: JobPlan = {};
    const queued = this.nextPlans[0];
    if (queued !== undefined) {
      plan = { ...queued.plan };
      queued.remaining--;
      if (queued.remaining <= 0) this.nextPlans.shift();
    }
    const fromLabel = failOutcomeFromLabel(label);
    if (fromLabel !== undefined) plan.outcome = fromLabel;
    return plan;
  }

  /** The credits the next job of this kind would cost, with the queued plan applied. */
  costOf(kind: "report" | "matching"): number {
    return (
      this.nextPlans[0]?.plan.credits ?? (kind === "report" ? REPORT_CREDITS : MATCHING_CREDITS)
    );
  }

  // ---------- jobs ----------

  createJob(request: ReportRequest | MatchingRequest, webhook: JobRecord["webhook"]): JobRecord {
    const now = iso(this.clock.now());
    const plan = this.takePlan(request.label);
    const cost = plan.credits ?? (request.kind === "report" ? REPORT_CREDITS : MATCHING_CREDITS);
    if (this.credits !== null) this.credits -= cost;
    const job: Job = {
      id: newId("job"),
      type: request.kind === "report" ? "report.generate" : "matching.generate",
      status: "queued",
      stage: "queued",
      progress: 0,
      createdAt: now,
      updatedAt: now,
      credits: { reservedCredits: cost, reservationStatus: "active" },
    };
    if (request.label !== undefined) job.label = request.label;
    const record: JobRecord = {
      job,
      request,
      plan,
      webhook,
      events: [],
      listeners: new Set(),
      cancelTimer: undefined,
      stepStartedAt: 0,
      stepShare: 0,
      cost,
      stageIndex: -1,
    };
    this.jobs.set(job.id, record);
    if (request.kind === "report") {
      const file = this.files.get(request.mediaId);
      if (file !== undefined) {
        file.file.hasReports = true;
        file.file.lastUsedAt = now;
      }
    }
    this.emit(record, "status", { status: "queued", stage: "queued", progress: 0 });
    this.scheduleStep(record, QUEUED_SHARE);
    this.evictJobs();
    return record;
  }

  estimatedWaitSec(record: JobRecord): number {
    return Math.round(this.latencyOf(record) / 1000);
  }

  private latencyOf(record: JobRecord): number {
    return (
      record.plan.latencyMs ??
      (record.request.kind === "report" ? DEFAULT_REPORT_LATENCY_MS : DEFAULT_MATCHING_LATENCY_MS)
    );
  }

  private scheduleStep(record: JobRecord, share: number): void {
    record.stepStartedAt = this.clock.now();
    record.stepShare = share;
    const task = this.clock.schedule(this.latencyOf(record) * share, () => this.step(record));
    record.cancelTimer = () => task.cancel();
  }

  /** Moves a job to its next stage, or ends it, following its plan's outcome. */
  private step(record: JobRecord): void {
    record.cancelTimer = undefined;
    const outcome = record.plan.outcome ?? { status: "succeeded" };
    const current = RUNNING_STAGES[record.stageIndex];
    // The stage that just ran may be the one the plan ends the job in.
    if (
      current !== undefined &&
      outcome.status === "failed" &&
      (outcome.atStage ?? "scoring") === current.stage
    ) {
      this.finish(record, outcome);
      return;
    }
    record.stageIndex++;
    const next = RUNNING_STAGES[record.stageIndex];
    if (next === undefined) {
      this.finish(record, { status: "succeeded" });
      return;
    }
    if (outcome.status === "canceled" && (outcome.atStage ?? "scoring") === next.stage) {
      this.cancel(record);
      return;
    }
    const job = record.job;
    job.stage = next.stage;
    job.progress = next.progress;
    job.updatedAt = iso(this.clock.now());
    if (record.stageIndex === 0) {
      job.status = "running";
      this.emit(record, "status", {
        status: "running",
        stage: next.stage,
        progress: next.progress,
      });
    } else {
      this.emit(record, "stage", { stage: next.stage, progress: next.progress });
    }
    // The result is readable from the last stage on: before the terminal event and the webhook.
    if (next.stage === "finalizing" && outcome.status === "succeeded") this.createResult(record);
    this.scheduleStep(record, next.share);
  }

  private createResult(record: JobRecord): void {
    const now = iso(this.clock.now());
    const request = record.request;
    if (request.kind === "report") {
      const entity = this.entityForReport(request);
      const report = buildReport({
        id: newId("rep"),
        jobId: record.job.id,
        createdAt: now,
        template: request.template,
        mediaId: request.mediaId,
        label: request.label,
        entity: { id: entity.id, label: entity.label },
      });
      this.reports.set(report.id, report);
      this.reportByJob.set(record.job.id, report.id);
    } else {
      const resolve = (source: MatchingSource) => {
        if (source.type !== "entity_id") return { source };
        const entity = this.entities.get(source.entityId);
        return { source, entityId: source.entityId, resolvedLabel: entity?.label ?? null };
      };
      const matching = buildMatching({
        id: newId("mat"),
        jobId: record.job.id,
        createdAt: now,
        label: request.label,
        target: resolve(request.target),
        group: request.group.map(resolve),
      });
      this.matchings.set(matching.id, matching);
      this.matchingByJob.set(record.job.id, matching.id);
    }
  }

  private entityForReport(request: ReportRequest): Entity {
    const now = iso(this.clock.now());
    const existing =
      request.target.strategy === "entity_id" && request.target.entity_id !== undefined
        ? this.entities.get(request.target.entity_id)
        : undefined;
    const entity = existing ?? this.entities.get(this.addEntity(request.entityLabel ?? null).id);
    const stored = entity as Entity;
    stored.mediaCount++;
    stored.lastSeenAt = now;
    return stored;
  }

  private finish(record: JobRecord, outcome: JobOutcome): void {
    const job = record.job;
    const now = this.clock.now();
    job.updatedAt = iso(now);
    const durationMs = Math.round(now - Date.parse(job.createdAt));
    if (outcome.status === "succeeded") {
      job.status = "succeeded";
      job.stage = "finalizing";
      job.progress = 1;
      job.credits = { reservedCredits: record.cost, reservationStatus: "applied" };
      job.usage = {
        creditsUsed: record.cost,
        creditsNetUsed: record.cost,
        creditsDiscounted: 0,
        durationMs,
        modelVersion: "emulator-1",
      };
      const terminal: Record<string, unknown> = { status: "succeeded" };
      if (record.request.kind === "report") {
        job.reportId = this.reportByJob.get(job.id) as string;
        terminal.reportId = job.reportId;
      } else {
        job.matchingId = this.matchingByJob.get(job.id) as string;
        terminal.matchingId = job.matchingId;
      }
      this.emit(record, "terminal", terminal);
      this.evictJobs();
      this.sendWebhook(record, {
        jobId: job.id,
        ...(job.reportId === undefined
          ? { matchingId: job.matchingId }
          : { reportId: job.reportId }),
        status: "succeeded",
      });
      return;
    }
    if (outcome.status === "failed") {
      const error = {
        code: outcome.error.code,
        message: outcome.error.message ?? messageFor(outcome.error.code),
        ...(outcome.error.details === undefined ? {} : { details: outcome.error.details }),
        ...(outcome.error.retryable === undefined ? {} : { retryable: outcome.error.retryable }),
      };
      job.status = "failed";
      job.error = error;
      this.release(record);
      job.usage = { creditsUsed: 0, creditsNetUsed: 0, durationMs };
      this.emit(record, "terminal", {
        status: "failed",
        error: { code: error.code, message: error.message },
      });
      this.evictJobs();
      this.sendWebhook(record, {
        jobId: job.id,
        status: "failed",
        error: { code: error.code, message: error.message },
      });
    }
  }

  private release(record: JobRecord): void {
    record.job.credits = { reservedCredits: record.cost, reservationStatus: "released" };
    record.job.releasedCredits = record.cost;
    if (this.credits !== null) this.credits += record.cost;
  }

  /** Cancels a job that has not ended; a finished job is left as it is. */
  cancel(record: JobRecord): void {
    const job = record.job;
    if (job.status === "succeeded" || job.status === "failed" || job.status === "canceled") return;
    record.cancelTimer?.();
    record.cancelTimer = undefined;
    job.status = "canceled";
    job.updatedAt = iso(this.clock.now());
    this.release(record);
    this.emit(record, "terminal", { status: "canceled" });
    this.evictJobs();
  }

  private sendWebhook(record: JobRecord, data: Record<string, unknown>): void {
    if (record.webhook === undefined) return;
    const kind = record.request.kind;
    const ok = data.status === "succeeded";
    this.webhooks.enqueue({
      jobId: record.job.id,
      type: `${kind}.${ok ? "completed" : "failed"}`,
      url: record.webhook.url,
      headers: record.webhook.headers,
      data,
      faults: record.plan.webhook ?? {},
    });
  }

  private emit(
    record: JobRecord,
    event: StreamEvent["event"],
    data: Record<string, unknown>,
  ): void {
    const streamEvent: StreamEvent = {
      id: (record.events.at(-1)?.id ?? 0) + 1,
      event,
      data: { ...data, job: clone(record.job) },
    };
    record.events.push(streamEvent);
    for (const listener of [...record.listeners]) listener(streamEvent);
  }

  /** Keeps at most `maxJobs` jobs, dropping the oldest finished ones (and their results) first. */
  private evictJobs(): void {
    let excess = this.jobs.size - this.options.maxJobs;
    if (excess <= 0) return;
    for (const [id, record] of this.jobs) {
      if (excess <= 0) break;
      const status = record.job.status;
      if (status !== "succeeded" && status !== "failed" && status !== "canceled") continue;
      if (record.listeners.size > 0) continue;
      this.jobs.delete(id);
      const reportId = this.reportByJob.get(id);
      if (reportId !== undefined) this.reports.delete(reportId);
      const matchingId = this.matchingByJob.get(id);
      if (matchingId !== undefined) this.matchings.delete(matchingId);
      this.reportByJob.delete(id);
      this.matchingByJob.delete(id);
      excess--;
    }
  }

  /** Forgets everything (jobs, files, entities, results, plans); credits go back to `credits`. */
  reset(): void {
    for (const record of this.jobs.values()) record.cancelTimer?.();
    this.jobs.clear();
    this.files.clear();
    this.entities.clear();
    this.reports.clear();
    this.matchings.clear();
    this.reportByJob.clear();
    this.matchingByJob.clear();
    this.nextPlans = [];
    this.credits = this.options.credits;
  }
}

/** A short, stable id for an API key (never the key itself). */
export function apiKeyIdOf(key: string): string {
  return `key_${createHash("sha256").update(key).digest("hex").slice(0, 16)}`;
}
