// A client written from /work/shared/mappa-api.md alone (sections cited), the way @mappa-ai/conduit
// 0.2.2 talks to Mappa: headers, error mapping, strict response checks, SSE framing and reconnects,
// and webhook verification. The tests drive the emulator through it, so they check the document.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

// ---------- §3 errors ----------

export class ConduitError extends Error {
  override name = "ConduitError";
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
    readonly details?: unknown,
    readonly requestId?: string,
  ) {
    super(message);
  }
}
export class AuthError extends ConduitError {
  override name = "AuthError";
}
export class ValidationError extends ConduitError {
  override name = "ValidationError";
}
export class InsufficientCreditsError extends ConduitError {
  override name = "InsufficientCreditsError";
  required = 0;
  available = 0;
}
export class RateLimitError extends ConduitError {
  override name = "RateLimitError";
  retryAfterMs: number | undefined;
}
export class ApiError extends ConduitError {
  override name = "ApiError";
}

function errorFromResponse(
  status: number,
  body: unknown,
  requestId: string,
  retryAfter: string | null,
): ConduitError {
  // "an object-valued `error` is used if present, otherwise the root"
  const root =
    typeof body === "object" && body !== null ? (body as Record<string, unknown>) : undefined;
  const chosen =
    root !== undefined && typeof root.error === "object" && root.error !== null
      ? (root.error as Record<string, unknown>)
      : root;
  const message =
    typeof body === "string"
      ? body
      : typeof chosen?.message === "string"
        ? chosen.message
        : `Request failed with status ${status}`;
  const details =
    typeof body === "string"
      ? body
      : chosen !== undefined && "details" in chosen
        ? chosen.details
        : body;
  const code = typeof chosen?.code === "string" ? chosen.code : "conduit_error";
  if (status === 401 || status === 403)
    return new AuthError(code, message, status, details, requestId);
  if (status === 422) return new ValidationError(code, message, status, details, requestId);
  if (status === 402 && code === "insufficient_credits") {
    const error = new InsufficientCreditsError(code, message, status, details, requestId);
    const d = (details ?? {}) as Record<string, unknown>;
    const inner = (d.details ?? {}) as Record<string, unknown>;
    error.required = Number(d.required ?? inner.required ?? 0);
    error.available = Number(d.available ?? inner.available ?? 0);
    return error;
  }
  if (status === 429) {
    const error = new RateLimitError(code, message, status, details, requestId);
    const seconds = retryAfter === null ? Number.NaN : Number(retryAfter);
    error.retryAfterMs = Number.isFinite(seconds) ? seconds * 1000 : undefined;
    return error;
  }
  return new ApiError(code, message, status, details, requestId);
}

// ---------- strict shape checks (§1 "Validation", §5–§10) ----------

type Check = (value: unknown, path: string) => void;
const fail = (path: string, what: string): never => {
  throw new ConduitError("invalid_response", `${path}: expected ${what}`);
};
const str: Check = (v, p) => {
  if (typeof v !== "string") fail(p, "string");
};
const num: Check = (v, p) => {
  if (typeof v !== "number" || !Number.isFinite(v)) fail(p, "number");
};
const int: Check = (v, p) => {
  if (!Number.isInteger(v)) fail(p, "integer");
};
const bool: Check = (v, p) => {
  if (typeof v !== "boolean") fail(p, "boolean");
};
const datetime: Check = (v, p) => {
  // "ISO-8601 ending in Z (fractional seconds are fine)"
  if (typeof v !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(v))
    fail(p, "datetime ending in Z");
};
const nullable =
  (check: Check): Check =>
  (v, p) => {
    if (v !== null) check(v, p);
  };
const literal =
  (...values: unknown[]): Check =>
  (v, p) => {
    if (!values.includes(v)) fail(p, values.map((x) => JSON.stringify(x)).join("|"));
  };
const array =
  (item: Check, min = 0): Check =>
  (v, p) => {
    if (!Array.isArray(v) || v.length < min) fail(p, `array of >= ${min}`);
    for (const [i, x] of (v as unknown[]).entries()) item(x, `${p}[${i}]`);
  };
const any: Check = () => {};
/** An object with `required` and `optional` keys; `strict` rejects any other key. */
const object =
  (required: Record<string, Check>, optional: Record<string, Check> = {}, strict = false): Check =>
  (v, p) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) fail(p, "object");
    const o = v as Record<string, unknown>;
    for (const [k, c] of Object.entries(required)) {
      if (!(k in o)) fail(`${p}.${k}`, "present");
      c(o[k], `${p}.${k}`);
    }
    for (const [k, c] of Object.entries(optional))
      if (k in o && o[k] !== undefined) c(o[k], `${p}.${k}`);
    if (strict)
      for (const k of Object.keys(o))
        if (!(k in required) && !(k in optional)) fail(`${p}.${k}`, "no such key (strict)");
  };

const uploadFields = {
  mediaId: str,
  contentType: str,
  label: str,
  createdByUserId: str,
  workspaceId: str,
  createdAt: str,
  createdByApiKeyId: nullable(str),
  source: literal("NOTETAKER", "MANUAL_UPLOAD", "PLAYGROUND", "SDK"),
};
const uploadOptional = { sizeBytes: nullable(int), durationSeconds: nullable(num) };
export const checkUpload = object(uploadFields, uploadOptional);
export const checkFile = object(
  {
    ...uploadFields,
    createdAt: datetime,
    hasReports: bool,
    lastUsedAt: nullable(datetime),
    processingStatus: literal("PENDING", "PROCESSING", "COMPLETED", "FAILED"),
    retention: object({
      locked: bool,
      expiresAt: nullable(datetime),
      daysRemaining: nullable(int),
    }),
  },
  uploadOptional,
);
export const checkFileList = object({
  files: array(checkFile),
  hasMore: bool,
  nextCursor: nullable(str),
});
export const checkReceipt = object(
  { jobId: str, status: literal("queued", "running") },
  { stage: str, estimatedWaitSec: num },
);

const STAGES = [
  "uploaded",
  "queued",
  "transcoding",
  "extracting",
  "scoring",
  "rendering",
  "finalizing",
];
export const checkJob = object(
  {
    id: str,
    createdAt: str,
    updatedAt: str,
    type: literal("report.generate", "matching.generate"),
    status: literal("queued", "running", "succeeded", "failed", "canceled"),
  },
  {
    stage: literal(...STAGES),
    progress: num,
    reportId: str,
    matchingId: str,
    error: object({ code: str, message: str }, { details: any, retryable: bool }),
    usage: object(
      { creditsUsed: num, creditsNetUsed: num },
      { creditsDiscounted: num, durationMs: num, modelVersion: str },
    ),
    credits: object({
      reservedCredits: nullable(num),
      reservationStatus: nullable(literal("active", "released", "applied")),
    }),
    releasedCredits: nullable(num),
  },
);

const section: Check = (v, p) => {
  const kind = (v as { kind?: unknown } | null)?.kind;
  if (kind === "paragraph") object({ kind: str, title: str, content: str }, {}, true)(v, p);
  else if (kind === "traits")
    object({ kind: str, title: str, phrases: array(str, 3) }, {}, true)(v, p);
  else if (kind === "actions")
    object(
      { kind: str, title: str, items: array(object({ title: str, context: str }, {}, true)) },
      {},
      true,
    )(v, p);
  else fail(`${p}.kind`, "paragraph|traits|actions");
  if (kind === "traits" && (v as { phrases: unknown[] }).phrases.length !== 3)
    fail(`${p}.phrases`, "3 phrases");
};
export const checkReportJsonV2 = object(
  {
    schemaVersion: literal(2),
    template: str,
    title: str,
    summary: str,
    sections: array(section, 1),
    meta: object(
      {
        prompt: object({ labels: array(str), name: str, version: str }, {}, true),
        render: object(
          { attempts: num, model: str, provider: literal("openai", "anthropic") },
          {},
          true,
        ),
      },
      {},
      true,
    ),
  },
  {},
  true,
);
// §6: strict; jobId and label optional but not nullable
export const checkReport = object(
  {
    id: str,
    createdAt: str,
    output: object({ template: str }, {}, true),
    media: object({}, { mediaId: str, url: str }, true),
  },
  {
    jobId: str,
    label: str,
    entity: object({ id: str, label: nullable(str) }, {}, true),
    markdown: nullable(str),
    json: nullable(checkReportJsonV2),
    provenance: object({ behaviorMapId: str, baselineSampleIds: array(str, 1) }, {}, true),
  },
  true,
);
const selector = object(
  { strategy: str, on_miss: literal("fallback_dominant", "error") },
  { timerange: any, entity_id: str, hint: str, speaker_index: int },
);
const source: Check = (v, p) => {
  const type = (v as { type?: unknown } | null)?.type;
  if (type === "entity_id") object({ type: str, entityId: str }, {}, true)(v, p);
  else if (type === "media_target") object({ type: str, mediaId: str, selector }, {}, true)(v, p);
  else fail(`${p}.type`, "entity_id|media_target");
};
const member = object({ source }, { entityId: str, resolvedLabel: nullable(str) }, true);
// §7: strict
export const checkMatching = object(
  {
    id: str,
    createdAt: str,
    context: str,
    output: object({ template: literal("matching") }, {}, true),
    target: member,
    group: array(member, 1),
  },
  {
    jobId: str,
    label: str,
    markdown: nullable(str),
    json: nullable(
      object(
        {
          schemaVersion: literal(1),
          title: str,
          summary: str,
          sections: array(object({ section_title: str, section_content: any }, {}, true), 1),
        },
        {},
        true,
      ),
    ),
  },
  true,
);
export const checkEntity = object({
  id: str,
  label: nullable(str),
  createdAt: datetime,
  lastSeenAt: nullable(datetime),
  mediaCount: num,
});
export const checkEntityList = object({
  entities: array(checkEntity),
  cursor: nullable(str),
  hasMore: bool,
});

// ---------- §1, §2: requests ----------

export interface ClientOptions {
  baseUrl: string;
  apiKey: string;
}

export interface CallOptions {
  json?: unknown;
  form?: FormData;
  idempotencyKey?: string;
  requestId?: string;
  headers?: Record<string, string>;
}

export interface CallResult<T> {
  status: number;
  body: T;
  requestId: string;
  headers: Headers;
}

const hex32 = () => randomBytes(16).toString("hex");

export function createConduitClient(options: ClientOptions) {
  const base = options.baseUrl.replace(/\/+$/, "");

  async function call<T = unknown>(
    method: string,
    path: string,
    call: CallOptions = {},
  ): Promise<CallResult<T>> {
    const requestId = call.requestId ?? `req_${hex32()}`;
    const headers: Record<string, string> = {
      "Mappa-Api-Key": options.apiKey,
      "X-Request-Id": requestId,
    };
    if (call.idempotencyKey !== undefined) headers["Idempotency-Key"] = call.idempotencyKey;
    let body: BodyInit | undefined;
    if (call.form !== undefined) body = call.form;
    else if (call.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(call.json);
    }
    Object.assign(headers, call.headers);
    const response = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
    });
    const echoed = response.headers.get("x-request-id") ?? requestId;
    const type = response.headers.get("content-type") ?? "";
    const text = await response.text();
    let parsed: unknown = text;
    if (type.includes("application/json")) {
      try {
        parsed = JSON.parse(text);
      } catch {
        if (response.ok)
          throw new ConduitError("transport_error", "2xx with unparseable JSON", response.status);
      }
    }
    if (!response.ok)
      throw errorFromResponse(response.status, parsed, echoed, response.headers.get("retry-after"));
    if (!type.includes("application/json"))
      throw new ConduitError("invalid_response", "not JSON", response.status);
    return {
      status: response.status,
      body: parsed as T,
      requestId: echoed,
      headers: response.headers,
    };
  }

  const checked = async <T>(check: Check, promise: Promise<CallResult<unknown>>): Promise<T> => {
    const result = await promise;
    check(result.body, "$");
    return result.body as T;
  };
  const id = encodeURIComponent;

  return {
    call,
    // §5 files: multipart with exactly `file` and `label`; the label loses every trailing .ext
    upload: (
      bytes: Uint8Array,
      label = "Uploaded file",
      contentType = "application/octet-stream",
      idempotencyKey?: string,
    ) => {
      const form = new FormData();
      form.append(
        "file",
        new Blob([bytes as Uint8Array<ArrayBuffer>], { type: contentType }),
        label,
      );
      form.append("label", label.replace(/(\.[^.]+)+$/, ""));
      return checked<Record<string, unknown> & { mediaId: string }>(
        checkUpload,
        call("POST", "/v1/files", {
          form,
          ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
        }),
      );
    },
    getFile: (mediaId: string) =>
      checked<Record<string, unknown> & { retention: { locked: boolean } }>(
        checkFile,
        call("GET", `/v1/files/${id(mediaId)}`),
      ),
    listFiles: (q: { limit?: number; cursor?: string; includeDeleted?: boolean } = {}) =>
      checked<{
        files: { mediaId: string; deletedAt?: string }[];
        hasMore: boolean;
        nextCursor: string | null;
      }>(
        checkFileList,
        call(
          "GET",
          `/v1/files?limit=${q.limit ?? 20}&includeDeleted=${q.includeDeleted ? "true" : "false"}${q.cursor === undefined ? "" : `&cursor=${id(q.cursor)}`}`,
        ),
      ),
    setRetentionLock: (mediaId: string, lock: boolean) =>
      checked<{ mediaId: string; retentionLock: boolean; message: string }>(
        object({ mediaId: str, retentionLock: bool, message: str }),
        call("PATCH", `/v1/files/${id(mediaId)}/retention`, { json: { lock } }),
      ),
    deleteFile: (mediaId: string) =>
      checked<{ deleted: true; mediaId: string }>(
        object({ deleted: literal(true), mediaId: str }),
        call("DELETE", `/v1/files/${id(mediaId)}`),
      ),
    // §6: reports.create always sends an Idempotency-Key (the caller's or idem_<32 hex>)
    createReport: (body: Record<string, unknown>, idempotencyKey = `idem_${hex32()}`) =>
      checked<{ jobId: string; status: string; stage?: string; estimatedWaitSec?: number }>(
        checkReceipt,
        call("POST", "/v1/reports/jobs", { json: body, idempotencyKey }),
      ),
    getReport: (reportId: string) =>
      checked<Record<string, unknown>>(checkReport, call("GET", `/v1/reports/${id(reportId)}`)),
    reportByJob: async (jobId: string) => {
      const { body } = await call("GET", `/v1/reports/by-job/${id(jobId)}`);
      if (body === null) return null;
      checkReport(body, "$");
      return body as Record<string, unknown>;
    },
    createMatching: (body: Record<string, unknown>, idempotencyKey = `idem_${hex32()}`) =>
      checked<{ jobId: string; status: string }>(
        checkReceipt,
        call("POST", "/v1/matching/jobs", { json: body, idempotencyKey }),
      ),
    getMatching: (matchingId: string) =>
      checked<Record<string, unknown>>(
        checkMatching,
        call("GET", `/v1/matching/${id(matchingId)}`),
      ),
    matchingByJob: async (jobId: string) => {
      const { body } = await call("GET", `/v1/matching/by-job/${id(jobId)}`);
      if (body === null) return null;
      checkMatching(body, "$");
      return body as Record<string, unknown>;
    },
    getJob: (jobId: string) =>
      checked<
        Record<string, unknown> & {
          status: string;
          reportId?: string;
          matchingId?: string;
          error?: { code: string; message: string };
        }
      >(checkJob, call("GET", `/v1/jobs/${id(jobId)}`)),
    cancelJob: (jobId: string) =>
      checked<Record<string, unknown> & { status: string }>(
        checkJob,
        call("POST", `/v1/jobs/${id(jobId)}/cancel`),
      ),
    getEntity: (entityId: string) =>
      checked<Record<string, unknown>>(checkEntity, call("GET", `/v1/entities/${id(entityId)}`)),
    listEntities: (q: { limit?: number; cursor?: string } = {}) =>
      checked<{ entities: { id: string }[]; cursor: string | null; hasMore: boolean }>(
        checkEntityList,
        call(
          "GET",
          `/v1/entities?limit=${q.limit ?? 20}${q.cursor === undefined ? "" : `&cursor=${id(q.cursor)}`}`,
        ),
      ),
    updateEntity: (entityId: string, body: Record<string, unknown>) =>
      checked<{ id: string; label: string | null }>(
        checkEntity,
        call("PATCH", `/v1/entities/${id(entityId)}`, { json: body }),
      ),
    stream: (jobId: string, opts: { lastEventId?: string; signal?: AbortSignal } = {}) =>
      openStream(base, options.apiKey, jobId, opts),
    wait: (
      jobId: string,
      opts: { sleep?: (ms: number) => Promise<void>; onConnect?: () => void } = {},
    ) => wait(base, options.apiKey, jobId, opts),
  };
}

// ---------- §9 SSE ----------

export interface SseEvent {
  id: string | undefined;
  event: string;
  data: unknown;
}

/** Opens the stream and yields events framed as §9 says: LF only, id/event/data, trimmed, no-data events dropped. */
export async function* openStream(
  base: string,
  apiKey: string,
  jobId: string,
  opts: { lastEventId?: string; signal?: AbortSignal },
): AsyncGenerator<SseEvent> {
  const headers: Record<string, string> = {
    Accept: "text/event-stream",
    "Cache-Control": "no-cache",
    "Mappa-Api-Key": apiKey,
    "X-Request-Id": `req_${hex32()}`,
  };
  if (opts.lastEventId !== undefined) headers["Last-Event-ID"] = opts.lastEventId;
  const response = await fetch(`${base}/v1/jobs/${encodeURIComponent(jobId)}/stream`, {
    headers,
    ...(opts.signal === undefined ? {} : { signal: opts.signal }),
  });
  if (!response.ok) {
    const type = response.headers.get("content-type") ?? "";
    const text = await response.text();
    throw errorFromResponse(
      response.status,
      type.includes("application/json") ? JSON.parse(text) : text,
      response.headers.get("x-request-id") ?? "",
      response.headers.get("retry-after"),
    );
  }
  if (response.body === null) return;
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let boundary = buffer.indexOf("\n\n");
    while (boundary !== -1) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      boundary = buffer.indexOf("\n\n");
      let id: string | undefined;
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? "" : line.slice(colon + 1).trim();
        if (field === "id") id = value;
        else if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (data.length === 0) continue;
      yield { id, event, data: JSON.parse(data.join("\n")) };
    }
  }
}

const checkStatusEvent = object({ status: str, job: checkJob }, { stage: str, progress: num });
const checkStageEvent = object({ stage: str, job: checkJob }, { progress: num });
const checkTerminalEvent = object(
  { status: literal("succeeded", "failed", "canceled"), job: checkJob },
  { reportId: str, matchingId: str, error: object({ code: str, message: str }) },
);
const checkHeartbeat = object({ timestamp: any });

/**
 * `handle.wait()` per §9: reconnects with Last-Event-ID after an early close; a status, stage or
 * terminal event resets the counter; 3 failed connections in a row throw StreamError. Reads
 * `data.job.status`. The sleeps are injected so tests never wait on the wall clock.
 */
async function wait(
  base: string,
  apiKey: string,
  jobId: string,
  opts: { sleep?: (ms: number) => Promise<void>; onConnect?: () => void },
) {
  const sleep = opts.sleep ?? (async () => {});
  let lastEventId: string | undefined;
  let failures = 0;
  const seen: SseEvent[] = [];
  let connections = 0;
  for (;;) {
    try {
      connections++;
      opts.onConnect?.();
      for await (const event of openStream(
        base,
        apiKey,
        jobId,
        lastEventId === undefined ? {} : { lastEventId },
      )) {
        lastEventId = event.id; // overwritten with each event's id, even when missing
        seen.push(event);
        if (event.event === "status") checkStatusEvent(event.data, "status");
        else if (event.event === "stage") checkStageEvent(event.data, "stage");
        else if (event.event === "heartbeat") {
          checkHeartbeat(event.data, "heartbeat");
          continue;
        } else if (event.event === "terminal") checkTerminalEvent(event.data, "terminal");
        else throw new ConduitError("stream_error", `unexpected event ${event.event}`);
        failures = 0;
        if (event.event === "terminal") {
          const job = (
            event.data as {
              job: {
                status: string;
                reportId?: string;
                matchingId?: string;
                error?: { code: string; message: string };
              };
            }
          ).job;
          return { job, events: seen, connections };
        }
      }
    } catch (error) {
      if (error instanceof ConduitError && error.code === "invalid_response") throw error;
      if (error instanceof ApiError && error.status === 404) throw error;
    }
    failures++;
    if (failures >= 3) throw new ConduitError("stream_error", "StreamError: 3 failed connections");
    await sleep(Math.min(1000 * 2 ** failures, 10_000));
  }
}

// ---------- §11 webhooks ----------

/** Verifies a delivery as conduit does: `t` and `v1` required, duplicate keys rejected, |now − t| ≤ 300 s. */
export function verifyConduitWebhook(
  body: string,
  header: string | undefined,
  secret: string,
  nowSec = Math.floor(Date.now() / 1000),
) {
  verifySignatureScheme(body, header, secret, nowSec);
  return checkEnvelope(body);
}

/** The signature scheme both SDKs share (wire format: "Signature"), without the envelope checks. */
export function verifySignatureScheme(
  body: string,
  header: string | undefined,
  secret: string,
  nowSec = Math.floor(Date.now() / 1000),
): void {
  if (header === undefined) throw new ConduitError("webhook_signature_missing", "missing");
  const parts = new Map<string, string>();
  for (const entry of header.split(",")) {
    const eq = entry.indexOf("=");
    if (eq === -1) throw new ConduitError("webhook_signature_invalid", "entry without =");
    const key = entry.slice(0, eq);
    if (parts.has(key)) throw new ConduitError("webhook_signature_invalid", "duplicate key");
    parts.set(key, entry.slice(eq + 1));
  }
  const t = parts.get("t");
  const v1 = parts.get("v1");
  if (t === undefined || v1 === undefined)
    throw new ConduitError("webhook_signature_invalid", "t and v1 required");
  if (Math.abs(nowSec - Number(t)) > 300)
    throw new ConduitError("webhook_signature_stale", "stale");
  const expected = createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(`${t}.${body}`)
    .digest("hex");
  if (expected.length !== v1.length || !timingSafeEqual(Buffer.from(expected), Buffer.from(v1))) {
    throw new ConduitError("webhook_signature_invalid", "mismatch");
  }
}

function checkEnvelope(body: string) {
  const event = JSON.parse(body) as Record<string, unknown>;
  object({ id: str, type: str, createdAt: str, timestamp: str, data: any })(event, "$");
  if (
    Number.isNaN(Date.parse(event.createdAt as string)) ||
    Number.isNaN(Date.parse(event.timestamp as string))
  ) {
    throw new ConduitError("invalid_webhook_payload", "timestamps must parse");
  }
  const data = event.data;
  switch (event.type) {
    case "report.completed":
      object({ jobId: str, reportId: str, status: literal("succeeded") })(data, "$.data");
      break;
    case "report.failed":
    case "matching.failed":
      object({ jobId: str, status: literal("failed"), error: object({ code: str, message: str }) })(
        data,
        "$.data",
      );
      break;
    case "matching.completed":
      object({ jobId: str, matchingId: str, status: literal("succeeded") })(data, "$.data");
      break;
  }
  return event as {
    id: string;
    type: string;
    createdAt: string;
    timestamp: string;
    data: Record<string, unknown>;
  };
}
