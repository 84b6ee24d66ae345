/**
 * The public types of the emulator: Mappa's REST objects as mappa-api.md describes them, and the
 * emulator's own control types (job plans, webhook faults, delivery records).
 */

/** A job's status. */
export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "canceled";

/** A job's stage; a running job goes through them in this order. */
export type JobStage =
  | "uploaded"
  | "queued"
  | "transcoding"
  | "extracting"
  | "scoring"
  | "rendering"
  | "finalizing";

/** A job's error, as `GET /v1/jobs/:id` returns it. */
export interface JobError {
  code: string;
  message: string;
  details?: unknown;
  retryable?: boolean;
}

/**
 * A job as `GET /v1/jobs/:id` returns it.
 *
 * @example
 * ```ts
 * const job: Job = await (await fetch(`${emulator.url}/v1/jobs/${jobId}`, { headers })).json();
 * if (job.status === "succeeded") console.log(job.reportId);
 * ```
 */
export interface Job {
  id: string;
  type: "report.generate" | "matching.generate";
  status: JobStatus;
  stage?: JobStage;
  /** 0 to 1. */
  progress?: number;
  createdAt: string;
  updatedAt: string;
  label?: string;
  reportId?: string;
  matchingId?: string;
  error?: JobError;
  usage?: {
    creditsUsed: number;
    creditsNetUsed: number;
    creditsDiscounted?: number;
    durationMs?: number;
    modelVersion?: string;
  };
  credits?: {
    reservedCredits: number | null;
    reservationStatus: "active" | "released" | "applied" | null;
  };
  releasedCredits?: number | null;
}

/**
 * A stored file, as `GET /v1/files/:id` returns it.
 *
 * @example
 * ```ts
 * const file: MediaFile = emulator.files()[0];
 * console.log(file.mediaId, file.retention.expiresAt);
 * ```
 */
export interface MediaFile {
  mediaId: string;
  contentType: string;
  label: string;
  createdByUserId: string;
  createdByApiKeyId: string | null;
  workspaceId: string;
  source: "NOTETAKER" | "MANUAL_UPLOAD" | "PLAYGROUND" | "SDK";
  createdAt: string;
  sizeBytes: number;
  durationSeconds: number | null;
  hasReports: boolean;
  lastUsedAt: string | null;
  processingStatus: "PENDING" | "PROCESSING" | "COMPLETED" | "FAILED";
  retention: { locked: boolean; expiresAt: string | null; daysRemaining: number | null };
  /** When the file was deleted (or its retention ran out); only listed with `includeDeleted`. */
  deletedAt?: string;
}

/**
 * An entity (a person recognised across recordings).
 *
 * @example
 * ```ts
 * const entity: Entity = emulator.addEntity({ label: "Alice" });
 * ```
 */
export interface Entity {
  id: string;
  label: string | null;
  createdAt: string;
  lastSeenAt: string | null;
  mediaCount: number;
}

/** A target selector on the wire (snake_case), for reports and media targets of matchings. */
export interface TargetSelector {
  strategy: "dominant" | "timerange" | "entity_id" | "magic_hint" | "speaker_index";
  on_miss: "fallback_dominant" | "error";
  timerange?: { start_seconds: number | null; end_seconds: number | null };
  entity_id?: string;
  hint?: string;
  speaker_index?: number;
}

/** A matching source: an entity, or a speaker in a file. */
export type MatchingSource =
  | { type: "entity_id"; entityId: string }
  | { type: "media_target"; mediaId: string; selector: TargetSelector };

/**
 * A report, as `GET /v1/reports/:id` returns it (the strict shape: no other keys).
 *
 * @example
 * ```ts
 * const report: Report | undefined = emulator.report(reportId);
 * console.log(report?.markdown);
 * ```
 */
export interface Report {
  id: string;
  createdAt: string;
  jobId: string;
  label?: string;
  output: { template: string };
  media: { mediaId: string };
  entity?: { id: string; label: string | null };
  markdown: string | null;
  json: ReportJsonV2 | null;
  provenance?: { behaviorMapId: string; baselineSampleIds: string[] };
}

/** A section of a v2 report. */
export type ReportSection =
  | { kind: "paragraph"; title: string; content: string }
  | { kind: "traits"; title: string; phrases: [string, string, string] }
  | { kind: "actions"; title: string; items: { title: string; context: string }[] };

/** The strict v2 JSON of a report. */
export interface ReportJsonV2 {
  schemaVersion: 2;
  template: string;
  title: string;
  summary: string;
  sections: ReportSection[];
  meta: {
    prompt: { labels: string[]; name: string; version: string };
    render: { attempts: number; model: string; provider: "openai" | "anthropic" };
  };
}

/**
 * A matching, as `GET /v1/matching/:id` returns it (strict).
 *
 * @example
 * ```ts
 * const matching: Matching | undefined = emulator.matching(matchingId);
 * ```
 */
export interface Matching {
  id: string;
  createdAt: string;
  jobId: string;
  label?: string;
  context: "behavioral_compatibility";
  output: { template: "matching" };
  target: { source: MatchingSource; entityId?: string; resolvedLabel?: string | null };
  group: { source: MatchingSource; entityId?: string; resolvedLabel?: string | null }[];
  markdown: string | null;
  json: {
    schemaVersion: 1;
    title: string;
    summary: string;
    sections: { section_title: string; section_content: unknown }[];
  } | null;
}

/**
 * How a job ends.
 *
 * @example
 * ```ts
 * const outcome: JobOutcome = { status: "failed", error: { code: "audio_too_short" } };
 * ```
 */
export type JobOutcome =
  | { status: "succeeded" }
  | {
      status: "failed";
      /** `message` defaults to a readable sentence for known codes. */
      error: { code: string; message?: string; details?: unknown; retryable?: boolean };
      /** The stage the job fails in. Default `scoring`. */
      atStage?: Exclude<JobStage, "uploaded" | "queued">;
    }
  | {
      status: "canceled";
      /** The stage the job is canceled in. Default `scoring`. */
      atStage?: Exclude<JobStage, "uploaded" | "queued">;
    };

/**
 * Faults to inject into a job's webhook deliveries.
 *
 * @example
 * ```ts
 * // every attempt dropped: the event is abandoned after Mappa's five attempts
 * emulator.planJob(jobId, { webhook: { drop: "all" } });
 * ```
 */
export interface WebhookFaults {
  /** The first N attempts are never sent (a lost connection); `"all"`: every attempt. */
  drop?: number | "all";
  /** The first N attempts are sent but count as failed whatever the answer (a lost reply). */
  fail?: number | "all";
  /** After the delivery succeeds, the same event (same id, same body) is sent once more. */
  duplicate?: boolean;
  /** Held back until the next job's event has been sent, then sent: two events out of order. */
  reorder?: boolean;
  /** Emulator-clock ms to wait before the first attempt. */
  delayMs?: number;
  /** Sign with a wrong secret (`true`: a fixed wrong one; a string: that one). */
  wrongSecret?: boolean | string;
  /** Sign with a timestamp this many seconds in the past (default tolerance is 300 s). */
  staleTimestampSec?: number;
}

/**
 * What the emulator does with a job: its outcome, how long it runs, its credit cost, and faults
 * in its webhook deliveries.
 *
 * @example
 * ```ts
 * emulator.planNext(3, { outcome: { status: "failed", error: { code: "target_not_found" } } });
 * emulator.planJob(jobId, { latencyMs: 1_000, webhook: { duplicate: true } });
 * ```
 */
export interface JobPlan {
  outcome?: JobOutcome;
  /** Emulator-clock ms from creation to the end. Default ~150 s for a report, ~60 s for a matching. */
  latencyMs?: number;
  /** Credits the job costs. Default 5 for a report, 3 for a matching. */
  credits?: number;
  webhook?: WebhookFaults;
}

/** Which wire shape the emulator's webhooks use (see mappa-wire-format.md). */
export type WebhookShape = "current" | "guide" | "mappa-node-1.2";

/**
 * One attempt to deliver a webhook.
 *
 * @example
 * ```ts
 * const statuses = emulator.deliveries()[0]?.attempts.map((a: WebhookAttempt) => a.status ?? a.errorCode);
 * ```
 */
export interface WebhookAttempt {
  /** 1 for the first attempt of the schedule; duplicates and resends continue the count. */
  attempt: number;
  /** `scheduled` (the retry schedule), `duplicate` (a duplicate fault) or `resend` (manual). */
  kind: "scheduled" | "duplicate" | "resend";
  /** When it was sent, on the emulator's clock (ISO 8601). */
  at: string;
  /** The `t` of its signature (real unix seconds unless a stale timestamp was injected). */
  signatureTimestamp: number;
  /** The receiver's HTTP status, when it answered. */
  status?: number;
  /** True when the attempt counts as delivered. */
  ok: boolean;
  /** Wall-clock ms from sending to the end of the answer. */
  latencyMs: number;
  /** The answer's body (first 2,000 characters). */
  responseBody?: string;
  /** Why there was no answer. */
  error?: string;
  /** `ECONNREFUSED`, `TIMEOUT`, `DROPPED` (a drop fault), ... */
  errorCode?: string;
  /** The fault injected into this attempt, if any. */
  fault?: "drop" | "fail" | "wrong-secret" | "stale-timestamp";
}

/**
 * A webhook event and every attempt to deliver it.
 *
 * @example
 * ```ts
 * await emulator.advance(200_000);
 * const [delivery] = emulator.deliveries({ jobId });
 * expect(delivery?.state).toBe("delivered");
 * ```
 */
export interface WebhookDelivery {
  /** The event id (`evt_…`), the same on every attempt; kept even for the id-less shape. */
  eventId: string;
  jobId: string;
  type: "report.completed" | "report.failed" | "matching.completed" | "matching.failed";
  url: string;
  shape: WebhookShape;
  /** The exact body sent on every attempt. */
  body: string;
  /** Extra headers from the job's `webhook.headers`. */
  headers: Record<string, string>;
  state: "scheduled" | "sending" | "retrying" | "delivered" | "abandoned";
  attempts: WebhookAttempt[];
  /** When the next scheduled attempt is due (emulator clock, ISO), or null. */
  nextAttemptAt: string | null;
  createdAt: string;
}
