import { randomBytes } from "node:crypto";
import { signPayload } from "@mappa-webhooks/core";
import type { EmulatorClock } from "./clock.js";
import type { WebhookAttempt, WebhookDelivery, WebhookFaults, WebhookShape } from "./types.js";

/**
 * Mappa's webhook retry schedule: the wait before each attempt in ms, each measured from the end
 * of the previous attempt (immediately, then 5 s, 30 s, 5 min, 30 min; abandoned after the fifth
 * failure). The same schedule as `MAPPA_RETRY_SCHEDULE_MS` of `@mappa-webhooks/testing`, which
 * its tests check stays equal.
 *
 * @example
 * ```ts
 * const total = MAPPA_RETRY_SCHEDULE_MS.reduce((a, b) => a + b, 0); // 2_135_000 ms
 * ```
 */
export const MAPPA_RETRY_SCHEDULE_MS: readonly number[] = Object.freeze([
  0, 5_000, 30_000, 300_000, 1_800_000,
]);

/** How long one webhook attempt may take, in wall-clock ms, unless `webhookTimeoutMs` says otherwise. */
export const DEFAULT_WEBHOOK_TIMEOUT_MS = 30_000;

const MAX_RESPONSE_CHARS = 2_000;
const MAX_ATTEMPTS_KEPT = 100;
const WRONG_SECRET = "whsec_emulator_wrong_secret";

/** A fresh id like Mappa's: a prefix and 24 random base-36 characters. */
export function newId(prefix: string): string {
  const bytes = randomBytes(24);
  let out = "";
  for (const byte of bytes) out += "0123456789abcdefghijklmnopqrstuvwxyz"[byte % 36];
  return `${prefix}_${out}`;
}

/** The signature header each shape's SDK reads. */
export function signatureHeaderFor(shape: WebhookShape): string {
  return shape === "current" ? "conduit-signature" : "mappa-signature";
}

/** The event body in one of the three wire shapes of mappa-wire-format.md, fields in Mappa's order. */
export function buildEventBody(
  shape: WebhookShape,
  id: string,
  type: string,
  at: string,
  data: Record<string, unknown>,
): Record<string, unknown> {
  switch (shape) {
    case "guide":
      return {
        id,
        type,
        createdAt: at,
        data: data.status === "succeeded" ? { ...data, status: "completed" } : data,
      };
    case "mappa-node-1.2":
      return { type, timestamp: at, data };
    default:
      return { id, type, createdAt: at, timestamp: at, data };
  }
}

export interface WebhookSenderOptions {
  secret: string;
  shape: WebhookShape;
  schedule: readonly number[];
  timeoutMs: number;
  signatureHeader: string | undefined;
  maxDeliveries: number;
  /** Webhook requests in flight at once; the rest wait their turn (a real sender's pool). */
  maxConcurrent: number;
  /** Unix ms for signature timestamps (default Date.now: receivers check the real clock). */
  signatureNow: () => number;
  fetch: typeof fetch;
  onAttempt: ((delivery: WebhookDelivery, attempt: WebhookAttempt) => void) | undefined;
}

interface DeliveryState {
  record: WebhookDelivery;
  faults: WebhookFaults;
  held: boolean;
}

const iso = (ms: number): string => new Date(ms).toISOString();

function countOf(value: number | "all" | undefined): number {
  if (value === "all") return Number.POSITIVE_INFINITY;
  return value ?? 0;
}

/** Sends, retries, records and resends the emulator's webhook deliveries. */
export class WebhookSender {
  private readonly states = new Map<string, DeliveryState>();
  private held: DeliveryState[] = [];
  private sending = 0;
  private readonly waitingToSend: (() => void)[] = [];

  constructor(
    private readonly clock: EmulatorClock,
    private readonly options: WebhookSenderOptions,
  ) {}

  /** Creates the event for a finished job and schedules its first attempt. */
  enqueue(input: {
    jobId: string;
    type: WebhookDelivery["type"];
    url: string;
    headers: Record<string, string>;
    data: Record<string, unknown>;
    faults: WebhookFaults;
    shape?: WebhookShape;
  }): WebhookDelivery {
    const shape = input.shape ?? this.options.shape;
    const eventId = newId("evt");
    const now = iso(this.clock.now());
    const body = JSON.stringify(buildEventBody(shape, eventId, input.type, now, input.data));
    const record: WebhookDelivery = {
      eventId,
      jobId: input.jobId,
      type: input.type,
      url: input.url,
      shape,
      body,
      headers: { ...input.headers },
      state: "scheduled",
      attempts: [],
      nextAttemptAt: null,
      createdAt: now,
    };
    const state: DeliveryState = {
      record,
      faults: input.faults,
      held: input.faults.reorder === true,
    };
    this.states.set(eventId, state);
    this.evict();
    if (state.held) this.held.push(state);
    else
      this.scheduleAttempt(state, 0, (input.faults.delayMs ?? 0) + (this.options.schedule[0] ?? 0));
    return record;
  }

  /** Every delivery, oldest first. */
  list(filter: { jobId?: string | undefined } = {}): WebhookDelivery[] {
    const out: WebhookDelivery[] = [];
    for (const { record } of this.states.values()) {
      if (filter.jobId === undefined || record.jobId === filter.jobId) out.push(record);
    }
    return out;
  }

  get(eventId: string): WebhookDelivery | undefined {
    return this.states.get(eventId)?.record;
  }

  /** Sends the event once more now, outside the schedule (same id and body, fresh signature). */
  resend(eventId: string): Promise<WebhookAttempt> | undefined {
    const state = this.states.get(eventId);
    if (state === undefined) return undefined;
    return this.clock.track(
      this.send(state, "resend", undefined).then((attempt) => {
        if (attempt.ok) state.record.state = "delivered";
        this.notify(state.record, attempt);
        return attempt;
      }),
    );
  }

  /** Sends every event held back by a `reorder` fault now. */
  releaseHeld(): void {
    const held = this.held;
    this.held = [];
    for (const state of held) {
      state.held = false;
      this.scheduleAttempt(state, 0, state.faults.delayMs ?? 0);
    }
  }

  clear(): void {
    this.states.clear();
    this.held = [];
  }

  /** Tells `onAttempt` once the attempt's consequences (state, next attempt) are recorded. */
  private notify(record: WebhookDelivery, attempt: WebhookAttempt): void {
    try {
      this.options.onAttempt?.(record, attempt);
    } catch {
      // a logging callback must never break a delivery
    }
  }

  private scheduleAttempt(state: DeliveryState, index: number, delayMs: number): void {
    const { record } = state;
    record.state = index === 0 ? "scheduled" : "retrying";
    record.nextAttemptAt = iso(this.clock.now() + delayMs);
    this.clock.schedule(delayMs, () => {
      this.clock.track(this.runAttempt(state, index));
    });
  }

  private async runAttempt(state: DeliveryState, index: number): Promise<void> {
    const { record, faults } = state;
    record.state = "sending";
    record.nextAttemptAt = null;
    let fault: WebhookAttempt["fault"];
    if (index < countOf(faults.drop)) fault = "drop";
    else if (index < countOf(faults.drop) + countOf(faults.fail)) fault = "fail";
    const attempt = await this.send(state, "scheduled", fault);
    // Another event went out: events held back to arrive out of order follow it now.
    if (index === 0 && this.held.length > 0) this.releaseHeld();
    if (attempt.ok) {
      record.state = "delivered";
      this.notify(record, attempt);
      if (faults.duplicate) this.notify(record, await this.send(state, "duplicate", undefined));
      this.evict();
      return;
    }
    const next = index + 1;
    if (next < this.options.schedule.length) {
      this.scheduleAttempt(state, next, this.options.schedule[next] as number);
      this.notify(record, attempt);
    } else {
      record.state = "abandoned";
      this.notify(record, attempt);
      this.evict();
    }
  }

  private async send(
    state: DeliveryState,
    kind: WebhookAttempt["kind"],
    fault: WebhookAttempt["fault"],
  ): Promise<WebhookAttempt> {
    const { record, faults } = state;
    const attemptNumber = (record.attempts.at(-1)?.attempt ?? 0) + 1;
    const at = iso(this.clock.now());
    let signatureTimestamp = Math.floor(this.options.signatureNow() / 1000);
    let signatureFault: WebhookAttempt["fault"];
    if (faults.staleTimestampSec !== undefined) {
      signatureTimestamp -= faults.staleTimestampSec;
      signatureFault = "stale-timestamp";
    }
    let secret = this.options.secret;
    if (faults.wrongSecret) {
      secret = typeof faults.wrongSecret === "string" ? faults.wrongSecret : WRONG_SECRET;
      signatureFault = "wrong-secret";
    }
    const attempt: WebhookAttempt = {
      attempt: attemptNumber,
      kind,
      at,
      signatureTimestamp,
      ok: false,
      latencyMs: 0,
    };
    const recordAttempt = (): WebhookAttempt => {
      record.attempts.push(attempt);
      if (record.attempts.length > MAX_ATTEMPTS_KEPT) record.attempts.splice(1, 1);
      return attempt;
    };
    if (fault === "drop") {
      attempt.fault = "drop";
      attempt.error = "dropped by the emulator (drop fault): the receiver never saw this attempt";
      attempt.errorCode = "DROPPED";
      return recordAttempt();
    }
    const resolvedFault = fault ?? signatureFault;
    if (resolvedFault !== undefined) attempt.fault = resolvedFault;
    const signature = await signPayload({
      payload: record.body,
      secret,
      timestamp: signatureTimestamp,
    });
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": "mappa-webhooks-emulator",
      ...record.headers,
      [this.options.signatureHeader ?? signatureHeaderFor(record.shape)]: signature,
    };
    // One turn in the sender's pool: a burst of finished jobs (1,000 at once in a test) must
    // not open 1,000 sockets and overflow the receiver's accept queue.
    if (this.sending >= this.options.maxConcurrent) {
      await new Promise<void>((resolve) => this.waitingToSend.push(resolve));
    }
    this.sending++;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.options.timeoutMs);
    const started = performance.now();
    try {
      const response = await this.options.fetch(record.url, {
        method: "POST",
        body: record.body,
        headers,
        redirect: "manual",
        signal: controller.signal,
      });
      const text = await response.text();
      attempt.status = response.status;
      attempt.ok = response.status >= 200 && response.status < 300 && fault !== "fail";
      if (text !== "") attempt.responseBody = text.slice(0, MAX_RESPONSE_CHARS);
    } catch (error) {
      if (timedOut) {
        attempt.error = `no complete answer within ${this.options.timeoutMs} ms`;
        attempt.errorCode = "TIMEOUT";
      } else {
        const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
        const code = (cause as { code?: unknown } | undefined)?.code;
        attempt.error = cause instanceof Error ? cause.message : String(cause);
        attempt.errorCode = typeof code === "string" ? code : "NETWORK_ERROR";
      }
    } finally {
      clearTimeout(timer);
      this.sending--;
      this.waitingToSend.shift()?.();
    }
    attempt.latencyMs = Math.round((performance.now() - started) * 100) / 100;
    return recordAttempt();
  }

  /** Keeps at most `maxDeliveries` records, dropping the oldest finished ones first. */
  private evict(): void {
    const excess = this.states.size - this.options.maxDeliveries;
    if (excess <= 0) return;
    let removed = 0;
    for (const [id, state] of this.states) {
      if (removed >= excess) break;
      if (state.record.state === "delivered" || state.record.state === "abandoned") {
        this.states.delete(id);
        removed++;
      }
    }
  }
}
