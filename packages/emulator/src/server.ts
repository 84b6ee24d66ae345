import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isMappaWebhookError, readBodyWithLimit } from "@mappa-webhooks/core";
import type { EmulatorClock } from "./clock.js";
import type { EmulatorState, JobRecord, StreamEvent } from "./state.js";
import type { JobPlan, MediaFile } from "./types.js";
import {
  type Issue,
  intParam,
  isObject,
  type Json,
  matchingSource,
  optionalLabel,
  targetSelector,
  webhookSpec,
} from "./validate.js";
import type { WebhookSender } from "./webhooks.js";

/** Thrown by a route to answer with an error in the documented shape. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const notFound = (what: string, id: string): ApiFailure =>
  new ApiFailure(404, "not_found", `${what} ${id} was not found.`);

const validation = (issues: Issue[]): ApiFailure =>
  new ApiFailure(
    422,
    "validation_error",
    `The request is invalid: ${issues.map((i) => `${i.path} ${i.message}`).join("; ")}.`,
    { issues },
  );

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

interface IdempotencyEntry {
  hash: string;
  reply: Promise<Reply>;
}

export interface ServerContext {
  clock: EmulatorClock;
  state: EmulatorState;
  webhooks: WebhookSender;
  apiKey: string | undefined;
  maxUploadBytes: number;
  maxIdempotencyKeys: number;
  heartbeatMs: number;
  /** Requests left to answer 429, and the Retry-After to send. */
  rateLimit: { remaining: number; retryAfterSec: number };
  /** The control API's own operations (shared with the programmatic handle). */
  control: {
    planJob(jobId: string, plan: JobPlan): unknown;
    planNext(count: number, plan: JobPlan): void;
    reset(): void;
    dropStreams(jobId?: string): number;
    summary(): unknown;
  };
  streams: Set<{ jobId: string; close(): void }>;
}

const JSON_TYPE = "application/json; charset=utf-8";

function requestId(req: IncomingMessage): string {
  const given = req.headers["x-request-id"];
  const value = Array.isArray(given) ? given[0] : given;
  if (typeof value === "string" && value !== "" && value.length <= 200 && !/[\r\n]/.test(value))
    return value;
  return `req_${randomBytes(16).toString("hex")}`;
}

function write(res: ServerResponse, reply: Reply, id: string | undefined): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(reply.body === undefined ? null : reply.body);
  res.writeHead(reply.status, {
    "content-type": JSON_TYPE,
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    ...(id === undefined ? {} : { "x-request-id": id }),
    ...reply.headers,
  });
  res.end(text);
}

function failureReply(error: ApiFailure): Reply {
  const body =
    error.code === "gone"
      ? { error: "gone", message: error.message, ...(error.details as Json) }
      : {
          error: {
            code: error.code,
            message: error.message,
            ...(error.details === undefined ? {} : { details: error.details }),
          },
        };
  return { status: error.status, body, headers: error.headers };
}

async function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  try {
    return await readBodyWithLimit(req, limit, { timeoutMs: 60_000 });
  } catch (error) {
    if (isMappaWebhookError(error) && error.code === "payload_too_large") {
      throw new ApiFailure(413, "payload_too_large", `The body is larger than ${limit} bytes.`);
    }
    throw new ApiFailure(400, "bad_request", "The request body could not be read.");
  }
}

async function readJson(req: IncomingMessage, { optional = false } = {}): Promise<Json> {
  const bytes = await readBody(req, 1024 * 1024);
  const text = Buffer.from(bytes).toString("utf8");
  if (text.trim() === "") {
    if (optional) return {};
    throw new ApiFailure(422, "validation_error", "The request needs a JSON body.", { issues: [] });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ApiFailure(
      400,
      "invalid_json",
      "The body is not valid JSON; send Content-Type: application/json with a JSON object.",
    );
  }
  if (!isObject(value))
    throw new ApiFailure(422, "validation_error", "The body must be a JSON object.", {
      issues: [],
    });
  return value;
}

/** JSON with sorted keys, so two bodies that differ only in key order hash the same. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (isObject(value)) {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

const hashOf = (text: string | Uint8Array): string =>
  createHash("sha256").update(text).digest("hex");

const ROUTES: { method: string; pattern: RegExp; name: string }[] = [
  { method: "POST", pattern: /^\/v1\/files$/, name: "files.upload" },
  { method: "GET", pattern: /^\/v1\/files$/, name: "files.list" },
  { method: "GET", pattern: /^\/v1\/files\/([^/]+)$/, name: "files.get" },
  { method: "DELETE", pattern: /^\/v1\/files\/([^/]+)$/, name: "files.delete" },
  { method: "PATCH", pattern: /^\/v1\/files\/([^/]+)\/retention$/, name: "files.retention" },
  { method: "POST", pattern: /^\/v1\/reports\/jobs$/, name: "reports.create" },
  { method: "GET", pattern: /^\/v1\/reports\/by-job\/([^/]+)$/, name: "reports.byJob" },
  { method: "GET", pattern: /^\/v1\/reports\/([^/]+)$/, name: "reports.get" },
  { method: "POST", pattern: /^\/v1\/matching\/jobs$/, name: "matching.create" },
  { method: "GET", pattern: /^\/v1\/matching\/by-job\/([^/]+)$/, name: "matching.byJob" },
  { method: "GET", pattern: /^\/v1\/matching\/([^/]+)$/, name: "matching.get" },
  { method: "GET", pattern: /^\/v1\/jobs\/([^/]+)$/, name: "jobs.get" },
  { method: "POST", pattern: /^\/v1\/jobs\/([^/]+)\/cancel$/, name: "jobs.cancel" },
  { method: "GET", pattern: /^\/v1\/jobs\/([^/]+)\/stream$/, name: "jobs.stream" },
  { method: "GET", pattern: /^\/v1\/entities$/, name: "entities.list" },
  { method: "GET", pattern: /^\/v1\/entities\/([^/]+)$/, name: "entities.get" },
  { method: "PATCH", pattern: /^\/v1\/entities\/([^/]+)$/, name: "entities.update" },
];

/** Routes whose answers replay for a repeated Idempotency-Key (keys are scoped per route and API key). */
const IDEMPOTENT = new Set([
  "files.upload",
  "files.delete",
  "reports.create",
  "matching.create",
  "jobs.cancel",
]);

function decodeId(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ApiFailure(400, "bad_request", "The id in the path is not valid percent-encoding.");
  }
}

/** A page of `items` (newest first) after `cursor`: cursors are the base64url of the last id. */
function page<T>(
  items: T[],
  idOf: (item: T) => string,
  limit: number,
  cursor: string | null,
): { items: T[]; next: string | null } {
  let start = 0;
  if (cursor !== null) {
    const after = Buffer.from(cursor, "base64url").toString("utf8");
    const index = items.findIndex((item) => idOf(item) === after);
    if (index === -1)
      throw new ApiFailure(
        422,
        "invalid_cursor",
        "The cursor is unknown or expired; start again without one.",
        { issues: [{ path: "cursor", message: "is unknown" }] },
      );
    start = index + 1;
  }
  const slice = items.slice(start, start + limit);
  const hasMore = start + limit < items.length;
  const last = slice.at(-1);
  return {
    items: slice,
    next: hasMore && last !== undefined ? Buffer.from(idOf(last)).toString("base64url") : null,
  };
}

/** The HTTP side of the emulator: Mappa's /v1 API and the /_emulator control API. */
export function createHandler(ctx: ServerContext) {
  const idempotency = new Map<string, IdempotencyEntry>();

  function authenticate(req: IncomingMessage): string {
    const header = req.headers["mappa-api-key"];
    const key = Array.isArray(header) ? header[0] : header;
    if (key === undefined || key === "") {
      throw new ApiFailure(
        401,
        "unauthorized",
        "Missing Mappa-Api-Key header: send your API key in it (no Bearer prefix).",
      );
    }
    if (ctx.apiKey !== undefined && key !== ctx.apiKey) {
      throw new ApiFailure(
        401,
        "invalid_api_key",
        "The API key in Mappa-Api-Key is not valid for this emulator.",
      );
    }
    return key;
  }

  function job(id: string): JobRecord {
    const record = ctx.state.jobs.get(id);
    if (record === undefined) throw notFound("Job", id);
    return record;
  }

  function liveFile(id: string) {
    const record = ctx.state.files.get(id);
    if (record === undefined) throw notFound("File", id);
    const view = ctx.state.viewFile(record);
    if (view.deletedAt !== undefined) {
      throw new ApiFailure(410, "gone", `File ${id} was deleted.`, { deletedAt: view.deletedAt });
    }
    return record;
  }

  function receipt(record: JobRecord): Reply {
    return {
      status: 202,
      body: {
        jobId: record.job.id,
        status: record.job.status,
        stage: record.job.stage,
        estimatedWaitSec: ctx.state.estimatedWaitSec(record),
      },
    };
  }

  function chargeable(kind: "report" | "matching"): void {
    const cost = ctx.state.costOf(kind);
    const available = ctx.state.credits;
    if (available !== null && available < cost) {
      throw new ApiFailure(
        402,
        "insufficient_credits",
        `Need ${cost} credits, ${available} available: add credits (emulator.setCredits) and retry.`,
        { required: cost, available },
      );
    }
  }

  /** Parses an upload; its hash covers the parts, not the boundary (a retry may pick another). */
  async function parseUpload(
    req: IncomingMessage,
    bytes: Uint8Array,
  ): Promise<{ contentType: string; label: string; sizeBytes: number; hash: string }> {
    const type = req.headers["content-type"] ?? "";
    if (!/^multipart\/form-data/i.test(type)) {
      throw new ApiFailure(
        415,
        "unsupported_media_type",
        "POST /v1/files takes multipart/form-data with a `file` part and a `label` part.",
      );
    }
    let form: FormData;
    try {
      // Node's own multipart parser (undici, the engine behind fetch): no dependency to add.
      form = await new Response(bytes as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": type },
      }).formData();
    } catch {
      throw new ApiFailure(
        400,
        "invalid_multipart",
        "The multipart body could not be parsed; check the boundary in Content-Type.",
      );
    }
    const file = form.get("file");
    const issues: Issue[] = [];
    if (file === null || typeof file === "string")
      issues.push({ path: "file", message: "must be a file part" });
    const labelPart = form.get("label");
    const label =
      typeof labelPart === "string" && labelPart !== ""
        ? labelPart
        : file !== null && typeof file !== "string"
          ? file.name || "Uploaded file"
          : "Uploaded file";
    if (label.length > 256)
      issues.push({ path: "label", message: "must be at most 256 characters" });
    if (issues.length > 0) throw validation(issues);
    const blob = file as File;
    const content = new Uint8Array(await blob.arrayBuffer());
    const contentType = blob.type || "application/octet-stream";
    const hash = createHash("sha256")
      .update(`${contentType}\n${label}\n${blob.name}\n`)
      .update(content)
      .digest("hex");
    return { contentType, label, sizeBytes: blob.size, hash };
  }

  function createReport(body: Json): Reply {
    const issues: Issue[] = [];
    const media = body.media;
    const mediaId =
      isObject(media) && typeof media.mediaId === "string" && media.mediaId !== ""
        ? media.mediaId
        : undefined;
    if (mediaId === undefined) issues.push({ path: "media.mediaId", message: "is required" });
    const output = body.output;
    const template = isObject(output) ? output.template : undefined;
    if (template !== "sales_playbook" && template !== "general_report") {
      issues.push({
        path: "output.template",
        message: 'must be "sales_playbook" or "general_report"',
      });
    }
    if (
      isObject(output) &&
      output.templateParams !== undefined &&
      !isObject(output.templateParams)
    ) {
      issues.push({ path: "output.templateParams", message: "must be an object" });
    }
    const target = targetSelector(issues, "target", body.target);
    const label = optionalLabel(issues, "label", body.label);
    const entityLabel = optionalLabel(issues, "entityLabel", body.entityLabel);
    const webhook = webhookSpec(issues, body.webhook);
    if (issues.length > 0 || target === undefined) throw validation(issues);
    liveFile(mediaId as string);
    chargeable("report");
    const record = ctx.state.createJob(
      {
        kind: "report",
        mediaId: mediaId as string,
        template: template as string,
        target,
        label,
        entityLabel,
      },
      webhook,
    );
    return receipt(record);
  }

  function createMatching(body: Json): Reply {
    const issues: Issue[] = [];
    if (body.context !== "behavioral_compatibility") {
      issues.push({ path: "context", message: 'must be "behavioral_compatibility"' });
    }
    const target = matchingSource(issues, "target", body.target);
    const group = Array.isArray(body.group)
      ? body.group.map((s, i) => matchingSource(issues, `group[${i}]`, s))
      : [];
    if (!Array.isArray(body.group) || body.group.length === 0) {
      issues.push({ path: "group", message: "must be a list of at least one source" });
    }
    const label = optionalLabel(issues, "label", body.label);
    const webhook = webhookSpec(issues, body.webhook);
    const ids = [target, ...group].flatMap((s) => (s?.type === "entity_id" ? [s.entityId] : []));
    if (new Set(ids).size !== ids.length)
      issues.push({ path: "group", message: "repeats an entity id" });
    if (issues.length > 0 || target === undefined || group.some((s) => s === undefined))
      throw validation(issues);
    const sources = [target, ...group] as NonNullable<typeof target>[];
    for (const source of sources) {
      if (source.type === "entity_id" && !ctx.state.entities.has(source.entityId))
        throw notFound("Entity", source.entityId);
      if (source.type === "media_target") liveFile(source.mediaId);
    }
    chargeable("matching");
    const record = ctx.state.createJob(
      { kind: "matching", target, group: group as NonNullable<typeof target>[], label },
      webhook,
    );
    return receipt(record);
  }

  /** Runs an idempotent route once per (API key, route, key); replays its 2xx answer after. */
  async function idempotent(
    route: string,
    apiKey: string,
    key: string | undefined,
    hash: string,
    run: () => Promise<Reply>,
  ): Promise<Reply> {
    if (key === undefined) return run();
    const scope = `${hashOf(apiKey)}\n${route}\n${key}`;
    const existing = idempotency.get(scope);
    if (existing !== undefined) {
      if (existing.hash !== hash) {
        throw new ApiFailure(
          409,
          "idempotency_key_reused",
          `Idempotency-Key "${key}" was already used with a different request body on this route; use a new key for a new request.`,
        );
      }
      return existing.reply;
    }
    const reply = run();
    idempotency.set(scope, { hash, reply });
    try {
      const settled = await reply;
      // Only a success is remembered: a 402 or a 429 may succeed when retried with the same key.
      if (settled.status >= 300) idempotency.delete(scope);
      return settled;
    } catch (error) {
      idempotency.delete(scope);
      throw error;
    } finally {
      while (idempotency.size > ctx.maxIdempotencyKeys) {
        const oldest = idempotency.keys().next().value as string;
        idempotency.delete(oldest);
      }
    }
  }

  async function api(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    id: string,
  ): Promise<Reply | undefined> {
    const apiKey = authenticate(req);
    if (ctx.rateLimit.remaining > 0) {
      ctx.rateLimit.remaining--;
      const after = ctx.rateLimit.retryAfterSec;
      throw new ApiFailure(
        429,
        "rate_limited",
        `Too many requests: retry after ${after} s.`,
        undefined,
        { "retry-after": String(after) },
      );
    }
    const method = req.method ?? "GET";
    const path = url.pathname.replace(/\/+$/, "") || "/";
    let matched: { name: string; params: string[] } | undefined;
    let pathKnown = false;
    for (const route of ROUTES) {
      const m = route.pattern.exec(path);
      if (m === null) continue;
      pathKnown = true;
      if (route.method === method) {
        matched = { name: route.name, params: m.slice(1).map(decodeId) };
        break;
      }
    }
    if (matched === undefined) {
      if (pathKnown)
        throw new ApiFailure(405, "method_not_allowed", `${method} is not allowed on ${path}.`);
      throw new ApiFailure(404, "not_found", `No such endpoint: ${method} ${path}.`);
    }
    const [p1 = ""] = matched.params;
    const keyHeader = req.headers["idempotency-key"];
    const headerKey = Array.isArray(keyHeader) ? keyHeader[0] : keyHeader;
    const q = url.searchParams;

    if (IDEMPOTENT.has(matched.name)) {
      const bytes =
        matched.name === "files.upload" ? await readBody(req, ctx.maxUploadBytes) : undefined;
      const body =
        bytes === undefined
          ? await readJson(req, {
              optional: matched.name !== "reports.create" && matched.name !== "matching.create",
            })
          : {};
      const key =
        headerKey ?? (typeof body.idempotencyKey === "string" ? body.idempotencyKey : undefined);
      const { idempotencyKey: _ignored, ...rest } = body;
      const parsed = bytes === undefined ? undefined : await parseUpload(req, bytes);
      const hash = parsed?.hash ?? hashOf(`${p1}\n${canonical(rest)}`);
      return idempotent(matched.name, apiKey, key === "" ? undefined : key, hash, async () => {
        switch (matched.name) {
          case "files.upload":
            if (parsed === undefined) throw new Error("unreachable: an upload is always parsed");
            return {
              status: 201,
              body: ctx.state.addFile({ ...parsed, apiKey }) satisfies MediaFile,
            };
          case "files.delete": {
            const record = liveFile(p1);
            ctx.state.deleteFile(record);
            return { status: 200, body: { deleted: true, mediaId: p1 } };
          }
          case "reports.create":
            return createReport(body);
          case "matching.create":
            return createMatching(body);
          default: {
            const record = job(p1);
            ctx.state.cancel(record);
            return { status: 200, body: record.job };
          }
        }
      });
    }

    switch (matched.name) {
      case "files.list": {
        const issues: Issue[] = [];
        const limit = intParam(issues, "limit", q.get("limit"), { min: 1, max: 100, fallback: 20 });
        const includeDeleted = q.get("includeDeleted") === "true";
        if (issues.length > 0) throw validation(issues);
        const all = [...ctx.state.files.values()].reverse().map((r) => ctx.state.viewFile(r));
        const visible = includeDeleted ? all : all.filter((f) => f.deletedAt === undefined);
        const { items, next } = page(visible, (f) => f.mediaId, limit, q.get("cursor"));
        return { status: 200, body: { files: items, hasMore: next !== null, nextCursor: next } };
      }
      case "files.get":
        return { status: 200, body: ctx.state.viewFile(liveFile(p1)) };
      case "files.retention": {
        const body = await readJson(req);
        if (typeof body.lock !== "boolean")
          throw validation([{ path: "lock", message: "must be true or false" }]);
        const record = liveFile(p1);
        ctx.state.setRetentionLock(record, body.lock);
        return {
          status: 200,
          body: {
            mediaId: p1,
            retentionLock: body.lock,
            message: body.lock
              ? "Retention lock enabled: the file is kept until unlocked."
              : "Retention lock removed: the file expires at the end of its retention period.",
          },
        };
      }
      case "reports.get": {
        const report = ctx.state.reports.get(p1);
        if (report === undefined) throw notFound("Report", p1);
        return { status: 200, body: report };
      }
      case "reports.byJob": {
        const record = job(p1);
        if (record.request.kind !== "report") throw notFound("Report job", p1);
        const reportId = ctx.state.reportByJob.get(p1);
        return {
          status: 200,
          body: reportId === undefined ? null : (ctx.state.reports.get(reportId) ?? null),
        };
      }
      case "matching.get": {
        const matching = ctx.state.matchings.get(p1);
        if (matching === undefined) throw notFound("Matching", p1);
        return { status: 200, body: matching };
      }
      case "matching.byJob": {
        const record = job(p1);
        if (record.request.kind !== "matching") throw notFound("Matching job", p1);
        const matchingId = ctx.state.matchingByJob.get(p1);
        return {
          status: 200,
          body: matchingId === undefined ? null : (ctx.state.matchings.get(matchingId) ?? null),
        };
      }
      case "jobs.get":
        return { status: 200, body: job(p1).job };
      case "jobs.stream":
        stream(req, res, job(p1), id, q.get("timeout"));
        return undefined;
      case "entities.list": {
        const issues: Issue[] = [];
        const limit = intParam(issues, "limit", q.get("limit"), { min: 1, max: 100, fallback: 20 });
        if (issues.length > 0) throw validation(issues);
        const all = [...ctx.state.entities.values()].reverse();
        const { items, next } = page(all, (e) => e.id, limit, q.get("cursor"));
        return { status: 200, body: { entities: items, cursor: next, hasMore: next !== null } };
      }
      case "entities.get": {
        const entity = ctx.state.entities.get(p1);
        if (entity === undefined) throw notFound("Entity", p1);
        return { status: 200, body: entity };
      }
      default: {
        const entity = ctx.state.entities.get(p1);
        if (entity === undefined) throw notFound("Entity", p1);
        const body = await readJson(req, { optional: true });
        if (body.label !== undefined) {
          if (body.label === null) entity.label = null;
          else if (
            typeof body.label === "string" &&
            body.label.trim().length >= 1 &&
            body.label.trim().length <= 64
          ) {
            entity.label = body.label.trim();
          } else
            throw validation([
              {
                path: "label",
                message: "must be null or a string of 1 to 64 characters (trimmed)",
              },
            ]);
        }
        return { status: 200, body: entity };
      }
    }
  }

  /** GET /v1/jobs/:id/stream: the current status, a replay after Last-Event-ID, live events, heartbeats. */
  function stream(
    req: IncomingMessage,
    res: ServerResponse,
    record: JobRecord,
    id: string,
    timeoutParam: string | null,
  ): void {
    let timeoutMs: number | undefined;
    if (timeoutParam !== null) {
      const value = Number(timeoutParam);
      if (!Number.isInteger(value) || value < 1 || value > 300_000) {
        throw validation([
          { path: "timeout", message: "must be an integer number of ms from 1 to 300000" },
        ]);
      }
      timeoutMs = value;
    }
    const lastHeader = req.headers["last-event-id"];
    const lastText = Array.isArray(lastHeader) ? lastHeader[0] : lastHeader;
    const lastId =
      lastText !== undefined && /^\d+$/.test(lastText.trim()) ? Number(lastText.trim()) : undefined;
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-request-id": id,
      "x-accel-buffering": "no",
    });
    res.flushHeaders();
    let closed = false;
    let lastSent = lastId ?? record.events.at(-1)?.id ?? 0;
    const send = (eventId: number, name: string, data: unknown): void => {
      if (closed) return;
      res.write(`id: ${eventId}\nevent: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const timers: { cancel(): void }[] = [];
    let heartbeat: { cancel(): void } | undefined;
    const handle = {
      jobId: record.job.id,
      close: () => finish(true),
    };
    const finish = (destroy = false): void => {
      if (closed) return;
      closed = true;
      record.listeners.delete(listener);
      for (const t of timers) t.cancel();
      heartbeat?.cancel();
      ctx.streams.delete(handle);
      if (destroy) res.destroy();
      else res.end();
    };
    const listener = (event: StreamEvent): void => {
      if (event.id <= lastSent) return;
      lastSent = event.id;
      send(event.id, event.event, event.data);
      if (event.event === "terminal") finish();
    };
    ctx.streams.add(handle);
    req.on("close", () => finish());
    res.on("error", () => finish());
    // 1. the current status, under the id the client already holds (or the latest)
    const job = record.job;
    send(lastSent, "status", {
      status: job.status,
      ...(job.stage === undefined ? {} : { stage: job.stage }),
      ...(job.progress === undefined ? {} : { progress: job.progress }),
      job,
    });
    // 2. what the client missed; 3. a finished job ends with its terminal event
    const terminal = record.events.find((e) => e.event === "terminal");
    for (const event of record.events) {
      if (event.id > lastSent) listener(event);
      if (closed) return;
    }
    if (terminal !== undefined) {
      send(terminal.id, terminal.event, terminal.data);
      finish();
      return;
    }
    record.listeners.add(listener);
    const beat = (): void => {
      send(lastSent, "heartbeat", { timestamp: new Date(ctx.clock.now()).toISOString() });
      heartbeat = ctx.clock.schedule(ctx.heartbeatMs, beat);
    };
    heartbeat = ctx.clock.schedule(ctx.heartbeatMs, beat);
    if (timeoutMs !== undefined) timers.push(ctx.clock.schedule(timeoutMs, () => finish()));
  }

  async function controlRoute(req: IncomingMessage, url: URL): Promise<Reply> {
    const method = req.method ?? "GET";
    const path = url.pathname.replace(/\/+$/, "");
    const body = method === "GET" ? {} : await readJson(req, { optional: true });
    const number = (name: string, value: unknown, min = 0): number => {
      if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
        throw validation([{ path: name, message: `must be a number >= ${min}` }]);
      }
      return value;
    };
    const at = (pattern: RegExp): string | undefined => {
      const found = pattern.exec(path)?.[1];
      return found === undefined ? undefined : decodeId(found);
    };
    const deliveryId = at(/^\/_emulator\/deliveries\/([^/]+)$/);
    const resendId = at(/^\/_emulator\/deliveries\/([^/]+)\/resend$/);
    const planId = at(/^\/_emulator\/jobs\/([^/]+)\/plan$/);
    if (method === "GET" && path === "/_emulator")
      return { status: 200, body: ctx.control.summary() };
    if (method === "POST" && path === "/_emulator/clock/advance") {
      await ctx.clock.advance(number("ms", body.ms));
      return { status: 200, body: ctx.control.summary() };
    }
    if (method === "POST" && path === "/_emulator/settle") {
      await ctx.clock.settle();
      return { status: 200, body: ctx.control.summary() };
    }
    if (method === "GET" && path === "/_emulator/deliveries") {
      return {
        status: 200,
        body: {
          deliveries: ctx.webhooks.list({ jobId: url.searchParams.get("jobId") ?? undefined }),
        },
      };
    }
    if (method === "GET" && deliveryId !== undefined) {
      const delivery = ctx.webhooks.get(deliveryId);
      if (delivery === undefined) throw notFound("Delivery", deliveryId);
      return { status: 200, body: delivery };
    }
    if (method === "POST" && resendId !== undefined) {
      const attempt = await ctx.webhooks.resend(resendId);
      if (attempt === undefined) throw notFound("Delivery", resendId);
      return { status: 200, body: attempt };
    }
    if (method === "POST" && path === "/_emulator/deliveries/release-held") {
      ctx.webhooks.releaseHeld();
      return { status: 200, body: { released: true } };
    }
    if (method === "POST" && planId !== undefined) {
      return { status: 200, body: ctx.control.planJob(planId, body as JobPlan) };
    }
    if (method === "POST" && path === "/_emulator/plan-next") {
      const { count = 1, ...plan } = body;
      ctx.control.planNext(number("count", count, 1), plan as JobPlan);
      return { status: 200, body: { planned: count } };
    }
    if (method === "PUT" && path === "/_emulator/credits") {
      ctx.state.credits = body.balance === null ? null : number("balance", body.balance);
      return { status: 200, body: { balance: ctx.state.credits } };
    }
    if (method === "POST" && path === "/_emulator/rate-limit") {
      ctx.rateLimit.remaining = number("count", body.count ?? 1, 0);
      ctx.rateLimit.retryAfterSec = number("retryAfterSec", body.retryAfterSec ?? 1, 0);
      return { status: 200, body: { ...ctx.rateLimit } };
    }
    if (method === "POST" && path === "/_emulator/streams/drop") {
      const dropped = ctx.control.dropStreams(
        typeof body.jobId === "string" ? body.jobId : undefined,
      );
      return { status: 200, body: { dropped } };
    }
    if (method === "POST" && path === "/_emulator/reset") {
      ctx.control.reset();
      return { status: 200, body: { reset: true } };
    }
    throw new ApiFailure(
      404,
      "not_found",
      `No such control endpoint: ${method} ${path}. See the emulator's README for /_emulator routes.`,
    );
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const id = requestId(req);
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://emulator.local");
    } catch {
      write(
        res,
        failureReply(new ApiFailure(400, "bad_request", "The request target is not a valid URL.")),
        id,
      );
      return;
    }
    try {
      const reply = url.pathname.startsWith("/_emulator")
        ? await controlRoute(req, url)
        : await api(req, res, url, id);
      if (reply !== undefined) write(res, reply, id);
    } catch (error) {
      if (error instanceof ApiFailure) {
        write(res, failureReply(error), id);
      } else if (error instanceof RangeError || isMappaWebhookError(error)) {
        write(res, failureReply(new ApiFailure(422, "validation_error", error.message)), id);
      } else {
        write(
          res,
          failureReply(
            new ApiFailure(
              500,
              "internal_error",
              "The emulator failed to handle this request; see its console for the cause.",
            ),
          ),
          id,
        );
        console.error("@mappa-webhooks/emulator:", error);
      }
    }
  };
}
