import { randomUUID } from "node:crypto";
import { appendFile, readFile, stat } from "node:fs/promises";
import { readAnswerBody } from "../answers.js";
import type { ForwardResult, HeaderPairs } from "./forward.js";

/** The verdict of our own verification, as a receiver built on @mappa-webhooks answers. */
export interface Verdict {
  ok: boolean;
  /** The status a receiver built on @mappa-webhooks answers. */
  status: number;
  duplicate?: boolean;
  /** The delivery that first carried this event, while it is still kept. */
  duplicateOf?: string;
  code?: string;
  /** The check that failed, in words. */
  check?: string;
  message?: string;
  hint?: string;
  event?: {
    id?: string;
    type: string;
    known: boolean;
    idempotencyKey?: string;
    /** Each as Mappa sent it; `occurredAt` is `createdAt`, else `timestamp`. */
    createdAt?: string;
    timestamp?: string;
    occurredAt?: string;
    data?: Record<string, string>;
  };
}

/** A replay to the app, from the inspector. */
export interface Replay extends ForwardResult {
  signature: "fresh" | "original";
}

/** One delivery as the inspector keeps it, and as one line of a `--save` file. */
export interface DeliveryRecord {
  id: string;
  receivedAt: string;
  method: string;
  /** Path and query as received. */
  path: string;
  /** Header pairs in the order and spelling they arrived. */
  headers: HeaderPairs;
  body: Buffer;
  verdict: Verdict;
  /** The app's answer, when forwarding; absent while it is pending. */
  forward?: ForwardResult;
  /** True while the app has not answered yet. */
  pending?: boolean;
  replays: Replay[];
  /** Came from `--load`. */
  loaded?: boolean;
  /** Signed with one of the secrets (at its own time): only these are saved unless asked. */
  signed?: boolean;
}

/** The app's latest answer to a delivery: to the delivery itself, or to its last replay. */
export interface LatestAnswer {
  status?: number;
  error?: string;
  latencyMs: number;
  /** The app answered 2xx `{"duplicate":true}`: it already had the event, took it not again. */
  duplicate?: true;
  /** From the app's JSON error answer, e.g. `body_already_parsed`. */
  code?: string;
  /** Which replay answered (1 = the first), absent for the delivery's own answer. */
  replay?: number;
}

/** What the live list shows for one delivery (and the detail, for the same answer). */
export interface DeliverySummary {
  id: string;
  receivedAt: string;
  type: string | undefined;
  eventId: string | undefined;
  verdict: Verdict;
  pending: boolean;
  app?: LatestAnswer;
  replays: number;
  loaded: boolean;
}

/** The app's latest answer, as the list and the detail both show it. */
function latestAnswer(record: DeliveryRecord): LatestAnswer | undefined {
  const last = record.replays.at(-1) ?? record.forward;
  if (last === undefined) return undefined;
  const body = readAnswerBody(last.body);
  const ok = last.status !== undefined && last.status >= 200 && last.status < 300;
  return {
    latencyMs: last.latencyMs,
    ...(last.status === undefined ? {} : { status: last.status }),
    ...(last.error === undefined ? {} : { error: last.error }),
    ...(ok && body.duplicate ? { duplicate: true as const } : {}),
    ...(!ok && body.error !== undefined ? { code: body.error } : {}),
    ...(record.replays.length === 0 ? {} : { replay: record.replays.length }),
  };
}

export function summarize(record: DeliveryRecord): DeliverySummary {
  const app = latestAnswer(record);
  return {
    id: record.id,
    receivedAt: record.receivedAt,
    type: record.verdict.event?.type ?? eventTypeOf(record.body),
    eventId: record.verdict.event?.id ?? eventIdOf(record.body),
    verdict: record.verdict,
    pending: record.pending === true,
    ...(app === undefined ? {} : { app }),
    replays: record.replays.length,
    loaded: record.loaded === true,
  };
}

/** Best effort for a body that did not verify: the `type` it claims, if it is JSON. */
function peek(body: Buffer): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(body.toString("utf8")) as unknown;
    return typeof value === "object" && value !== null
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
function eventTypeOf(body: Buffer): string | undefined {
  const type = peek(body)?.type;
  return typeof type === "string" ? type : undefined;
}
function eventIdOf(body: Buffer): string | undefined {
  const id = peek(body)?.id;
  return typeof id === "string" ? id : undefined;
}

export function newDeliveryId(): string {
  return `d_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** The JSON line for a record: the body as base64 (exact bytes) and as text (for reading). */
export function toJsonLine(record: DeliveryRecord): string {
  const { body, pending: _pending, loaded: _loaded, ...rest } = record;
  return JSON.stringify({
    kind: "delivery",
    v: 1,
    ...rest,
    bodyBase64: body.toString("base64"),
    bodyText: body.toString("utf8"),
  });
}

/** A line from a `--save` file or a downloaded delivery, checked field by field. */
export function fromJsonLine(line: string): DeliveryRecord {
  const value = JSON.parse(line) as Record<string, unknown>;
  const fail = (what: string): never => {
    throw new Error(what);
  };
  if (typeof value !== "object" || value === null || value.kind !== "delivery") {
    fail('not a delivery (expected {"kind":"delivery",…})');
  }
  const text = (name: string) =>
    typeof value[name] === "string" ? (value[name] as string) : fail(`"${name}" is not a string`);
  const id = text("id");
  const receivedAt = text("receivedAt");
  const method = text("method");
  const path = text("path");
  const headers = value.headers;
  if (
    !Array.isArray(headers) ||
    !headers.every(
      (pair) =>
        Array.isArray(pair) &&
        pair.length === 2 &&
        typeof pair[0] === "string" &&
        typeof pair[1] === "string",
    )
  ) {
    fail('"headers" is not a list of [name, value] pairs');
  }
  const verdict = value.verdict as Verdict | undefined;
  if (typeof verdict !== "object" || verdict === null || typeof verdict.status !== "number") {
    fail('"verdict" is missing');
  }
  const record: DeliveryRecord = {
    id,
    receivedAt,
    method,
    path,
    headers: headers as HeaderPairs,
    body: Buffer.from(text("bodyBase64"), "base64"),
    verdict: verdict as Verdict,
    replays: Array.isArray(value.replays) ? (value.replays as Replay[]) : [],
    loaded: true,
  };
  if (typeof value.forward === "object" && value.forward !== null) {
    record.forward = value.forward as ForwardResult;
  }
  if (typeof value.signed === "boolean") record.signed = value.signed;
  return record;
}

type Listener = (kind: "delivery" | "update" | "remove", record: DeliveryRecord) => void;

/** Where `--save` appends, and its bounds. */
export interface SaveOptions {
  file: string;
  /** Also save deliveries no secret signed (`--save-unsigned`). */
  unsigned: boolean;
  /** No line is appended that would take the file beyond this size (`--save-max`). */
  maxBytes: number;
  /** Called once, when the first line does not fit. */
  onFull: () => void;
}

/** The last `keep` deliveries, newest first, with listeners for the live view. */
export class DeliveryStore {
  private readonly records: DeliveryRecord[] = [];
  private readonly listeners = new Set<Listener>();
  /** Idempotency key → the first delivery that carried it (bounded). */
  private readonly firstByKey = new Map<string, string>();
  /** The save file's size, as far as this process knows. */
  private savedBytes = 0;
  private full = false;

  constructor(
    readonly keep: number,
    private readonly saveOptions?: SaveOptions,
  ) {}

  /** Reads the save file's current size, so `maxBytes` bounds the whole file. */
  async openSaveFile(): Promise<void> {
    if (this.saveOptions === undefined) return;
    this.savedBytes = await stat(this.saveOptions.file).then(
      (info) => info.size,
      () => 0,
    );
  }

  list(): readonly DeliveryRecord[] {
    return this.records;
  }

  get(id: string): DeliveryRecord | undefined {
    return this.byId.get(id);
  }

  private readonly byId = new Map<string, DeliveryRecord>();

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Which earlier delivery carried this event, remembering this one if it is the first. */
  firstCarrier(key: string, id: string): string | undefined {
    const first = this.firstByKey.get(key);
    if (first !== undefined) return this.get(first) === undefined ? undefined : first;
    this.firstByKey.set(key, id);
    if (this.firstByKey.size > this.keep * 10) {
      const oldest = this.firstByKey.keys().next().value;
      if (oldest !== undefined) this.firstByKey.delete(oldest);
    }
    return undefined;
  }

  add(record: DeliveryRecord): void {
    this.records.unshift(record);
    this.byId.set(record.id, record);
    this.emit("delivery", record);
    while (this.records.length > this.keep) {
      const dropped = this.records.pop();
      if (dropped !== undefined) {
        this.byId.delete(dropped.id);
        this.emit("remove", dropped);
      }
    }
  }

  /** Loaded records, oldest first in the file; the last line for an id wins. */
  addLoaded(records: DeliveryRecord[]): void {
    const byId = new Map<string, DeliveryRecord>();
    for (const record of records) {
      byId.delete(record.id);
      byId.set(record.id, record);
    }
    for (const record of byId.values()) {
      const key = record.verdict.event?.idempotencyKey;
      if (key !== undefined && record.verdict.duplicate !== true) this.firstCarrier(key, record.id);
      this.add(record);
    }
  }

  /** Tells the live view about a change, and appends the record to the save file when done. */
  async update(record: DeliveryRecord, save = true): Promise<void> {
    this.emit("update", record);
    if (save) await this.save(record);
  }

  /** Appends the record, unless it is unsigned (and not asked for) or the file is full. */
  async save(record: DeliveryRecord): Promise<void> {
    const options = this.saveOptions;
    if (options === undefined || this.full) return;
    if (record.signed !== true && !options.unsigned) return;
    const line = `${toJsonLine(record)}\n`;
    const bytes = Buffer.byteLength(line);
    if (this.savedBytes + bytes > options.maxBytes) {
      this.full = true;
      options.onFull();
      return;
    }
    this.savedBytes += bytes;
    await appendFile(options.file, line);
  }

  private emit(kind: "delivery" | "update" | "remove", record: DeliveryRecord): void {
    for (const listener of this.listeners) listener(kind, record);
  }
}

/** Reads a `--save` file (or a downloaded delivery); a bad line is an error naming it. */
export async function loadDeliveries(file: string): Promise<DeliveryRecord[]> {
  const text = await readFile(file, "utf8");
  const records: DeliveryRecord[] = [];
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const line = (lines[index] as string).trim();
    if (line === "") continue;
    try {
      records.push(fromJsonLine(line));
    } catch (error) {
      const reason = error instanceof SyntaxError ? "not JSON" : (error as Error).message;
      throw new Error(`line ${index + 1}: ${reason}`);
    }
  }
  return records;
}
