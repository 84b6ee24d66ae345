import { byteLength, errorMessage, MAX_KEY_BYTES, type RpcRequest } from "./protocol.js";

/** The part of a Durable Object's storage the object uses (`ctx.storage`, KV or SQLite-backed). */
export interface DurableObjectStorageLike {
  get<T = unknown>(key: string): Promise<T | undefined>;
  put<T>(entries: Record<string, T>): Promise<void>;
  delete(keys: string[]): Promise<number>;
  list<T = unknown>(options?: {
    start?: string;
    startAfter?: string;
    end?: string;
    prefix?: string;
    limit?: number;
  }): Promise<Map<string, T>>;
  getAlarm(): Promise<number | null>;
  setAlarm(scheduledTime: number): Promise<void>;
}

/** The Durable Object state workerd passes to the constructor (`ctx`). */
export interface DurableObjectStateLike {
  readonly storage: DurableObjectStorageLike;
}

interface Entry {
  token: string;
  completed: boolean;
  expiresAt: number;
}

/** Event keys, tracked jobs and the expiry index, each under its own prefix. */
const KEY = "k:";
const JOB = "j:";
const EXPIRY = "e:";
/** Expired keys deleted per alarm run; a full batch schedules the next run at once. */
const SWEEP_BATCH = 500;

const expiryKey = (expiresAt: number, key: string) =>
  `${EXPIRY}${String(Math.max(0, Math.floor(expiresAt))).padStart(16, "0")}:${key}`;

class BadRequest extends Error {}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

const isString = (value: unknown): value is string => typeof value === "string" && value !== "";
const isPositive = (value: unknown): value is number =>
  typeof value === "number" && Number.isFinite(value) && value > 0;
const isTime = (value: unknown): value is number =>
  typeof value === "number" && Number.isFinite(value);

function checkKey(name: string, value: unknown): string {
  if (!isString(value)) throw new BadRequest(`${name} must be a non-empty string.`);
  if (byteLength(value) > MAX_KEY_BYTES) {
    throw new BadRequest(`${name} is longer than ${MAX_KEY_BYTES} UTF-8 bytes.`);
  }
  return value;
}

/**
 * The Durable Object behind `createDurableObjectIdempotencyStore`. Export it from your Worker
 * and bind it (wrangler.toml `[[durable_objects.bindings]]`, plus a migration naming the class):
 *
 * ```ts
 * export { MappaIdempotencyObject } from "@mappa-webhooks/cloudflare";
 * ```
 *
 * Its storage keeps each event key's claim (owner token, lease expiry) or completed mark
 * (expiry), and the tracked jobs of recovery, listed in job id order. A Durable Object runs one
 * request at a time per instance, and this one also queues its calls, so every claim is a
 * read-then-write no other call interleaves with. Expired keys count as free when read, and an
 * alarm deletes them from storage.
 */
export class MappaIdempotencyObject {
  readonly #storage: DurableObjectStorageLike;
  #queue: Promise<unknown> = Promise.resolve();
  /** The alarm set, as far as this instance knows (undefined: not read yet). */
  #alarmAt: number | null | undefined;

  constructor(state: DurableObjectStateLike, _env?: unknown) {
    this.#storage = state.storage;
  }

  /** Answers the store's JSON RPC: POST `{ op, ... }` → `{ result }` or `{ error }`. */
  async fetch(request: Request): Promise<Response> {
    if (request.method !== "POST") {
      return json(405, { error: "POST a JSON call, e.g. { op: 'claim', key, leaseMs }." });
    }
    let call: RpcRequest;
    try {
      call = (await request.json()) as RpcRequest;
    } catch {
      return json(400, { error: "the body is not JSON." });
    }
    try {
      const result = await this.#serialized(() => this.#run(call));
      return json(200, { result: result ?? null });
    } catch (error) {
      if (error instanceof BadRequest) return json(400, { error: error.message });
      return json(500, { error: errorMessage(error) });
    }
  }

  /** Deletes expired keys, then sets the alarm for the next one to expire. */
  async alarm(): Promise<void> {
    await this.#serialized(() => this.#sweep());
  }

  #serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #run(call: RpcRequest): Promise<unknown> {
    if (call === null || typeof call !== "object") throw new BadRequest("the body is not a call.");
    const now = (value: unknown) => (isTime(value) ? value : Date.now());
    switch (call.op) {
      case "claim": {
        const key = checkKey("key", call.key);
        if (!isPositive(call.leaseMs)) throw new BadRequest("leaseMs must be a positive number.");
        const at = now(call.now);
        const entry = await this.#storage.get<Entry>(KEY + key);
        if (entry !== undefined && entry.expiresAt > at) {
          return { status: entry.completed ? "completed" : "in_flight" };
        }
        const token = crypto.randomUUID();
        await this.#write(key, { token, completed: false, expiresAt: at + call.leaseMs }, entry);
        return { status: "claimed", token };
      }
      case "complete": {
        const key = checkKey("key", call.key);
        if (!isString(call.token)) throw new BadRequest("token must be a non-empty string.");
        if (!isPositive(call.ttlMs)) throw new BadRequest("ttlMs must be a positive number.");
        const entry = await this.#storage.get<Entry>(KEY + key);
        // Unconditional, as in every store: the effect happened even if the lease ran out.
        const expiresAt = now(call.now) + call.ttlMs;
        await this.#write(key, { token: call.token, completed: true, expiresAt }, entry);
        return null;
      }
      case "release": {
        const key = checkKey("key", call.key);
        const entry = await this.#storage.get<Entry>(KEY + key);
        if (entry !== undefined && !entry.completed && entry.token === call.token) {
          await this.#storage.delete([KEY + key, expiryKey(entry.expiresAt, key)]);
        }
        return null;
      }
      case "renew": {
        const key = checkKey("key", call.key);
        if (!isPositive(call.leaseMs)) throw new BadRequest("leaseMs must be a positive number.");
        const entry = await this.#storage.get<Entry>(KEY + key);
        if (entry === undefined || entry.completed || entry.token !== call.token) return false;
        const expiresAt = now(call.now) + call.leaseMs;
        await this.#write(key, { ...entry, expiresAt }, entry);
        return true;
      }
      case "track": {
        const jobId = checkKey("jobId", call.jobId);
        if (call.trackedAt !== undefined && !isTime(call.trackedAt)) {
          throw new BadRequest("trackedAt must be a number of milliseconds.");
        }
        const existing = await this.#storage.get<number>(JOB + jobId);
        if (existing === undefined) {
          await this.#storage.put({ [JOB + jobId]: Math.round(call.trackedAt ?? now(call.now)) });
        }
        return null;
      }
      case "untrack": {
        const jobId = checkKey("jobId", call.jobId);
        await this.#storage.delete([JOB + jobId]);
        return null;
      }
      case "tracked": {
        if (!Number.isInteger(call.limit) || call.limit < 1) {
          throw new BadRequest("limit must be a positive integer.");
        }
        if (call.after !== undefined && typeof call.after !== "string") {
          throw new BadRequest("after must be a string.");
        }
        const rows = await this.#storage.list<number>({
          prefix: JOB,
          limit: call.limit,
          ...(call.after === undefined ? {} : { startAfter: JOB + call.after }),
        });
        return [...rows].map(([id, trackedAt]) => ({ jobId: id.slice(JOB.length), trackedAt }));
      }
      case "size": {
        let size = 0;
        let startAfter: string | undefined;
        for (;;) {
          const page = await this.#storage.list({
            prefix: KEY,
            limit: 1000,
            ...(startAfter === undefined ? {} : { startAfter }),
          });
          size += page.size;
          if (page.size < 1000) return size;
          startAfter = [...page.keys()].pop();
        }
      }
      default:
        throw new BadRequest(
          `unknown op ${JSON.stringify((call as { op?: unknown }).op)}: one of claim, complete, release, renew, track, untrack, tracked, size.`,
        );
    }
  }

  /** Writes a key's entry and its expiry index entry (replacing the old one), then the alarm. */
  async #write(key: string, entry: Entry, old: Entry | undefined): Promise<void> {
    const index = expiryKey(entry.expiresAt, key);
    await this.#storage.put<Entry | string>({ [KEY + key]: entry, [index]: key });
    if (old !== undefined) {
      const oldIndex = expiryKey(old.expiresAt, key);
      if (oldIndex !== index) await this.#storage.delete([oldIndex]);
    }
    await this.#schedule(entry.expiresAt);
  }

  async #schedule(at: number): Promise<void> {
    if (this.#alarmAt === undefined) this.#alarmAt = await this.#storage.getAlarm();
    if (this.#alarmAt === null || at < this.#alarmAt) {
      await this.#storage.setAlarm(at);
      this.#alarmAt = at;
    }
  }

  async #sweep(): Promise<void> {
    const now = Date.now();
    const due = await this.#storage.list<string>({
      prefix: EXPIRY,
      end: expiryKey(now + 1, ""),
      limit: SWEEP_BATCH,
    });
    const deletions: string[] = [];
    for (const [index, key] of due) {
      deletions.push(index);
      const entry = await this.#storage.get<Entry>(KEY + key);
      if (entry !== undefined && entry.expiresAt <= now) deletions.push(KEY + key);
    }
    for (let i = 0; i < deletions.length; i += 128) {
      await this.#storage.delete(deletions.slice(i, i + 128));
    }
    this.#alarmAt = null;
    if (due.size === SWEEP_BATCH) {
      await this.#schedule(now);
      return;
    }
    const [next] = await this.#storage.list<string>({ prefix: EXPIRY, limit: 1 });
    if (next !== undefined) {
      const expiresAt = Number(next[0].slice(EXPIRY.length, EXPIRY.length + 16));
      await this.#schedule(expiresAt);
    }
  }
}
