import { MappaWebhookError } from "./errors.js";
import { type HeadersInput, readHeader } from "./headers.js";
import { hmacEngine } from "./hmac/engine.js";
import type { RawBody } from "./hmac/types.js";

/** Seconds a signature's timestamp may differ from the clock, in the past or the future. */
export const DEFAULT_TOLERANCE_SEC = 300;
/** Header names read when none are given: Mappa's, then the newer API's name for the same scheme. */
export const DEFAULT_SIGNATURE_HEADERS: readonly string[] = [
  "mappa-signature",
  "conduit-signature",
];
/** A longer signature header is rejected before it is parsed. */
export const MAX_SIGNATURE_HEADER_LENGTH = 8 * 1024;
/** How many `v1` entries of one header are compared at most. */
export const MAX_SIGNATURES_COMPARED = 8;

const T_PATTERN = /^\d+$/;
const HEX64 = /^[0-9a-fA-F]{64}$/;

/** A webhook secret, or several while one is being rotated out (any of them may match). */
export type SecretInput = string | readonly string[];

/** A clock in unix seconds: a fixed value or a function read on every call. */
export type ClockInput = number | (() => number);

/** Arguments of {@link verifySignature}; the names match the Mappa SDK's verifier. */
export interface VerifySignatureParams {
  /** The raw request body exactly as received: a string, a Buffer/Uint8Array or an ArrayBuffer. */
  payload: RawBody;
  /** The request headers: a Fetch `Headers` or a plain object (any name case). */
  headers: HeadersInput;
  /** The endpoint's signing secret, or a list during rotation. Used verbatim as the HMAC key. */
  secret: SecretInput;
  /** Allowed clock difference in seconds, both directions. Default 300. */
  toleranceSec?: number;
  /** The current time in unix seconds, for tests. Default: the system clock. */
  now?: ClockInput;
  /** Header name(s) to read, lower case. Default: `mappa-signature`, then `conduit-signature`. */
  headerName?: string | readonly string[];
}

/** What a successful verification tells. */
export interface VerifySignatureResult {
  ok: true;
  /** The signature's timestamp (unix seconds). */
  timestamp: number;
  /** Index of the secret that matched; a non-zero index means an older secret is still in use. */
  secretIndex: number;
  /** The header the signature was read from. */
  headerName: string;
}

interface ParsedHeader {
  timestampText: string;
  timestamp: number;
  signatures: string[];
}

/** Normalises and checks the configured secret(s); a mistake here is the developer's to fix. */
export function normalizeSecrets(secret: unknown): readonly string[] {
  const list = typeof secret === "string" ? [secret] : Array.isArray(secret) ? secret : undefined;
  if (list === undefined || list.length === 0) {
    throw new MappaWebhookError(
      "missing_secret",
      "No webhook secret is configured. Pass `secret` (a string, or a list of strings while rotating), e.g. `secret: process.env.MAPPA_WEBHOOK_SECRET`.",
    );
  }
  for (const s of list) {
    if (typeof s !== "string" || s.length === 0) {
      throw new MappaWebhookError(
        "missing_secret",
        "A configured webhook secret is empty or not a string. Check that MAPPA_WEBHOOK_SECRET (or what you pass as `secret`) is set.",
      );
    }
  }
  return list as readonly string[];
}

export function readClock(now: ClockInput | undefined): number {
  if (now === undefined) return Math.floor(Date.now() / 1000);
  return typeof now === "function" ? now() : now;
}

function readSignatureHeader(
  headers: HeadersInput,
  names: string | readonly string[] | undefined,
): { name: string; value: string } | undefined {
  const list =
    names === undefined ? DEFAULT_SIGNATURE_HEADERS : typeof names === "string" ? [names] : names;
  for (const raw of list) {
    const name = raw.toLowerCase();
    const value = readHeader(headers, name);
    if (value !== undefined && value.trim() !== "") return { name, value };
  }
  return undefined;
}

function malformed(what: string): MappaWebhookError {
  return new MappaWebhookError(
    "malformed_signature",
    `The signature header is malformed: ${what}. Expected \`t=<unix seconds>,v1=<hex HMAC-SHA256>\`; make sure the header reaches this server unchanged.`,
  );
}

function parseSignatureHeader(value: string): ParsedHeader {
  if (value.length > MAX_SIGNATURE_HEADER_LENGTH) {
    throw malformed(`it is longer than ${MAX_SIGNATURE_HEADER_LENGTH} characters`);
  }
  let timestampText: string | undefined;
  const signatures: string[] = [];
  for (const part of value.split(",")) {
    const entry = part.trim();
    if (entry === "") continue;
    const eq = entry.indexOf("=");
    if (eq <= 0) throw malformed("an entry is not a key=value pair");
    const key = entry.slice(0, eq).trim();
    const val = entry.slice(eq + 1).trim();
    if (key === "t") {
      if (timestampText !== undefined) throw malformed("`t` is given more than once");
      timestampText = val;
    } else if (key === "v1") {
      signatures.push(val);
    }
    // Other schemes (v0, v2, ...) are ignored so the sender can add new ones.
  }
  if (timestampText === undefined) throw malformed("there is no `t` entry");
  if (!T_PATTERN.test(timestampText)) throw malformed("`t` is not a whole number of seconds");
  if (signatures.length === 0) throw malformed("there is no `v1` entry");
  return { timestampText, timestamp: Number(timestampText), signatures };
}

function hexToBytes(hex: string): Uint8Array | undefined {
  if (!HEX64.test(hex)) return undefined;
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** The payload as something HMAC can take, or undefined when it is not a raw body. */
export function toSignable(payload: unknown): string | Uint8Array | undefined {
  if (typeof payload === "string" || payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) {
    return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  return undefined;
}

const decoder = new TextDecoder();

function edgesOf(body: string | Uint8Array): { head: string; tail: string; length: number } {
  if (typeof body === "string")
    return { head: body.slice(0, 64), tail: body.slice(-2), length: body.length };
  const length = body.byteLength;
  return {
    head: decoder.decode(body.subarray(0, 64)),
    tail: decoder.decode(body.subarray(Math.max(0, length - 2))),
    length,
  };
}

/** A likely cause of a mismatch, from what can be seen without revealing anything. */
function mismatchHint(
  payload: unknown,
  body: string | Uint8Array | undefined,
  secrets: readonly string[],
): string | undefined {
  if (body === undefined) {
    return payload === null || payload === undefined
      ? "The payload is missing: pass the raw request body."
      : "The payload is a parsed object, not the raw body. Pass the body exactly as received (a string or bytes), read before any JSON parser; a re-serialised object never matches.";
  }
  const { head, tail, length } = edgesOf(body);
  if (length === 0) {
    return "The body is empty: a body parser probably consumed the request stream before verification. Verify the raw body.";
  }
  if (head.startsWith("[object Object]")) {
    return "The body is the text `[object Object]`: an object was converted to a string. Pass the raw request body.";
  }
  if (secrets.some((s) => s !== s.trim())) {
    return "A configured secret has leading or trailing whitespace (often a newline from a .env file). The secret is used verbatim: trim it.";
  }
  if (/^\s*[{[]\s*\n/.test(head) || tail.endsWith("\n")) {
    return "The body looks re-formatted (pretty-printed or with a trailing newline) and Mappa sends compact JSON: it was probably re-serialised by a JSON parser. Verify the raw bytes as received.";
  }
  return undefined;
}

/**
 * Verifies a Mappa webhook signature against the raw body. Resolves `{ ok: true, ... }` or
 * rejects with a {@link MappaWebhookError} whose `code` says which check failed, in this order:
 * `missing_signature`, `malformed_signature`, `timestamp_outside_tolerance`, `signature_mismatch`.
 *
 * A drop-in for the Mappa SDK's `webhooks.verifySignature`, which also takes bytes, several
 * `v1` entries and several secrets.
 *
 * @example
 * ```ts
 * import { verifySignature } from "@mappa-webhooks/core";
 *
 * await verifySignature({
 *   payload: rawBody, // string | Uint8Array | ArrayBuffer, exactly as received
 *   headers: req.headers,
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 * });
 * ```
 */
export async function verifySignature(
  params: VerifySignatureParams,
): Promise<VerifySignatureResult> {
  const secrets = normalizeSecrets(params.secret);
  const found = readSignatureHeader(params.headers, params.headerName);
  if (found === undefined) {
    const names = params.headerName ?? DEFAULT_SIGNATURE_HEADERS;
    throw new MappaWebhookError(
      "missing_signature",
      `No signature header (${typeof names === "string" ? names : names.join(" or ")}). Is this request from Mappa, and does a proxy strip the header?`,
    );
  }
  const parsed = parseSignatureHeader(found.value);

  const tolerance = params.toleranceSec ?? DEFAULT_TOLERANCE_SEC;
  const now = readClock(params.now);
  const skew = now - parsed.timestamp;
  if (!(Math.abs(skew) <= tolerance)) {
    const direction = skew > 0 ? `${skew} s in the past` : `${-skew} s in the future`;
    throw new MappaWebhookError(
      "timestamp_outside_tolerance",
      `The signature timestamp is ${direction}, beyond the ${tolerance} s tolerance: a replayed or delayed delivery, or this server's clock is wrong (check NTP).`,
    );
  }

  const body = toSignable(params.payload);
  if (body !== undefined) {
    const expected: Uint8Array[] = [];
    const count = Math.min(parsed.signatures.length, MAX_SIGNATURES_COMPARED);
    for (let i = 0; i < count; i++) {
      const bytes = hexToBytes(parsed.signatures[i] as string);
      if (bytes !== undefined) expected.push(bytes);
    }
    if (expected.length > 0) {
      const prefix = `${parsed.timestampText}.`;
      for (let s = 0; s < secrets.length; s++) {
        const computed = hmacEngine.digest(secrets[s] as string, prefix, body);
        const digest = computed instanceof Uint8Array ? computed : await computed;
        // Compare against every candidate without stopping early.
        let match = false;
        for (const candidate of expected) match = hmacEngine.equal(digest, candidate) || match;
        if (match)
          return { ok: true, timestamp: parsed.timestamp, secretIndex: s, headerName: found.name };
      }
    }
  }
  const hint = mismatchHint(params.payload, body, secrets);
  throw new MappaWebhookError(
    "signature_mismatch",
    `No v1 signature matches the body under the configured secret${secrets.length > 1 ? "s" : ""}. Check the secret is this endpoint's and that the body is the raw bytes as received.`,
    hint === undefined ? {} : { hint },
  );
}

/** Arguments of {@link signPayload}. */
export interface SignPayloadParams {
  /** The exact body that will be sent. */
  payload: RawBody;
  /** The signing secret, used verbatim as the HMAC key. */
  secret: string;
  /** Unix seconds (or a Date) to sign with. Default: now. */
  timestamp?: number | Date;
}

/**
 * Signs a body the way Mappa does and returns the `mappa-signature` header value.
 * For tests and local tools.
 *
 * @example
 * ```ts
 * const body = JSON.stringify(event);
 * const header = await signPayload({ payload: body, secret: "whsec_test" });
 * await fetch(url, { method: "POST", body, headers: { "mappa-signature": header } });
 * ```
 */
export async function signPayload(params: SignPayloadParams): Promise<string> {
  const [secret] = normalizeSecrets(params.secret);
  const body = toSignable(params.payload);
  if (body === undefined) {
    throw new MappaWebhookError(
      "invalid_options",
      "signPayload needs the exact body to send (a string or bytes), not an object: JSON.stringify it first.",
    );
  }
  const ts = params.timestamp;
  const t =
    ts === undefined
      ? Math.floor(Date.now() / 1000)
      : ts instanceof Date
        ? Math.floor(ts.getTime() / 1000)
        : ts;
  if (!Number.isSafeInteger(t) || t < 0) {
    throw new MappaWebhookError(
      "invalid_options",
      "signPayload's `timestamp` must be whole unix seconds or a Date.",
    );
  }
  const computed = hmacEngine.digest(secret as string, `${t}.`, body);
  const digest = computed instanceof Uint8Array ? computed : await computed;
  let hex = "";
  for (const byte of digest) hex += byte.toString(16).padStart(2, "0");
  return `t=${t},v1=${hex}`;
}
