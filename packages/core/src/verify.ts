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

/** A plain base-10 integer: digits only, at least one. */
function isDigits(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 48 || code > 57) return false;
  }
  return true;
}

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

/** A signature header's parts, as {@link parseSignatureHeader} reads them. */
export interface ParsedSignatureHeader {
  /** The `t` entry as sent (digits only). */
  timestampText: string;
  /** The `t` entry: unix seconds when the sender signed. */
  timestamp: number;
  /** Every `v1` entry, in order (other schemes are ignored). */
  signatures: string[];
}
type ParsedHeader = ParsedSignatureHeader;

/** Normalises and checks the configured secret(s); a mistake here is the developer's to fix. */
let lastSecret: string | undefined;
let lastSecretList: readonly string[] = [];

export function normalizeSecrets(secret: unknown): readonly string[] {
  // The common call passes the same one string every time: reuse its list.
  if (typeof secret === "string" && secret === lastSecret) return lastSecretList;
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
  if (typeof secret === "string") {
    lastSecret = secret;
    lastSecretList = list as readonly string[];
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
    const name = names === undefined ? raw : raw.toLowerCase();
    const value = readHeader(headers, name);
    // An empty or blank header counts as missing; a visible first character settles it cheaply.
    if (value !== undefined && (value.charCodeAt(0) > 32 || /\S/.test(value)))
      return { name, value };
  }
  return undefined;
}

function malformed(what: string): MappaWebhookError {
  return new MappaWebhookError(
    "malformed_signature",
    `The signature header is malformed: ${what}. Expected \`t=<unix seconds>,v1=<hex HMAC-SHA256>\`; make sure the header reaches this server unchanged.`,
  );
}

const isSpace = (code: number) => code === 32 || code === 9;

/**
 * Reads a `mappa-signature` header value, `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, exactly as
 * {@link verifySignature} does: spaces around entries are allowed, unknown schemes ignored.
 * Throws a `MappaWebhookError` with code `malformed_signature` (saying what is wrong) otherwise.
 * It checks the shape only: use {@link verifySignature} to check the signature itself.
 *
 * @example
 * ```ts
 * import { parseSignatureHeader } from "@mappa-webhooks/core";
 *
 * const { timestamp, signatures } = parseSignatureHeader("t=1768651500,v1=5d4e0c…");
 * console.log(`signed at ${new Date(timestamp * 1000).toISOString()}, ${signatures.length} v1 signature(s)`);
 * ```
 */
// Hand-rolled rather than split/trim: this runs on every delivery, and the allocations of the
// obvious version cost more than the HMAC of a small body.
export function parseSignatureHeader(value: string): ParsedSignatureHeader {
  if (value.length > MAX_SIGNATURE_HEADER_LENGTH) {
    throw malformed(`it is longer than ${MAX_SIGNATURE_HEADER_LENGTH} characters`);
  }
  // What Mappa sends, `t=<digits>,v1=<64 hex>`, is recognised without the general loop.
  if (value.charCodeAt(0) === 116 /* t */ && value.charCodeAt(1) === 61 /* = */) {
    const comma = value.indexOf(",", 2);
    if (comma > 2 && value.length === comma + 68 && value.startsWith("v1=", comma + 1)) {
      const timestampText = value.slice(2, comma);
      if (isDigits(timestampText)) {
        return {
          timestampText,
          timestamp: Number(timestampText),
          signatures: [value.slice(comma + 4)],
        };
      }
    }
  }
  let timestampText: string | undefined;
  const signatures: string[] = [];
  let pos = 0;
  while (pos <= value.length) {
    let end = value.indexOf(",", pos);
    if (end === -1) end = value.length;
    let from = pos;
    let to = end;
    pos = end + 1;
    while (from < to && isSpace(value.charCodeAt(from))) from++;
    while (to > from && isSpace(value.charCodeAt(to - 1))) to--;
    if (from === to) continue; // an empty entry, e.g. a trailing comma
    const eq = value.indexOf("=", from);
    if (eq <= from || eq >= to) throw malformed("an entry is not a key=value pair");
    let keyEnd = eq;
    while (keyEnd > from && isSpace(value.charCodeAt(keyEnd - 1))) keyEnd--;
    let valueStart = eq + 1;
    while (valueStart < to && isSpace(value.charCodeAt(valueStart))) valueStart++;
    const keyLength = keyEnd - from;
    const first = value.charCodeAt(from);
    if (keyLength === 1 && first === 116 /* t */) {
      if (timestampText !== undefined) throw malformed("`t` is given more than once");
      timestampText = value.slice(valueStart, to);
    } else if (
      keyLength === 2 &&
      first === 118 /* v */ &&
      value.charCodeAt(from + 1) === 49 /* 1 */
    ) {
      signatures.push(value.slice(valueStart, to));
    }
    // Other schemes (v0, v2, ...) are ignored so the sender can add new ones.
  }
  if (timestampText === undefined) throw malformed("there is no `t` entry");
  if (!isDigits(timestampText)) throw malformed("`t` is not a whole number of seconds");
  if (signatures.length === 0) throw malformed("there is no `v1` entry");
  return { timestampText, timestamp: Number(timestampText), signatures };
}

// Hex digit values by char code (-1 for anything else), to reject non-hex signatures.
const HEX_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX_VALUES["0123456789abcdef".charCodeAt(i)] = i;
  HEX_VALUES["0123456789ABCDEF".charCodeAt(i)] = i;
}

/**
 * Constant-time check that a received `v1` value (hex, either case) equals the lower-case hex
 * digest. Non-hex characters never match.
 */
function hexMatches(digestHex: string, candidate: string): boolean {
  if (candidate.length !== digestHex.length) return false;
  let diff = 0;
  let invalid = 0;
  for (let i = 0; i < candidate.length; i++) {
    const code = candidate.charCodeAt(i);
    invalid |= code < 128 ? (HEX_VALUES[code] as number) : -1;
    // `| 0x20` folds A-F onto a-f and leaves digits as they are.
    diff |= digestHex.charCodeAt(i) ^ (code | 0x20);
  }
  return diff === 0 && invalid >= 0;
}

/** Compares the digest with every candidate (up to the bound) without stopping early. */
function anySignatureMatches(digestHex: string, signatures: readonly string[]): boolean {
  let match = false;
  const count = Math.min(signatures.length, MAX_SIGNATURES_COMPARED);
  for (let i = 0; i < count; i++) match = hexMatches(digestHex, signatures[i] as string) || match;
  return match;
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
export function verifySignature(params: VerifySignatureParams): Promise<VerifySignatureResult> {
  // Not an async function: on node:crypto every step is synchronous, and settling one promise
  // at the end is measurably cheaper than an async function's machinery on this hot path.
  try {
    const result = verifyNow(params);
    return result instanceof Promise ? result : Promise.resolve(result);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** {@link verifySignature} without the promise when the engine is synchronous. Internal. */
export function verifyNow(
  params: VerifySignatureParams,
): VerifySignatureResult | Promise<VerifySignatureResult> {
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
  const skew = readClock(params.now) - parsed.timestamp;
  if (!(Math.abs(skew) <= tolerance)) {
    const direction = skew > 0 ? `${skew} s in the past` : `${-skew} s in the future`;
    throw new MappaWebhookError(
      "timestamp_outside_tolerance",
      `The signature timestamp is ${direction}, beyond the ${tolerance} s tolerance: a replayed or delayed delivery, or this server's clock is wrong (check NTP).`,
    );
  }

  const body = toSignable(params.payload);
  if (body === undefined) throw mismatch(params.payload, body, secrets);
  const prefix = `${parsed.timestampText}.`;
  for (let s = 0; s < secrets.length; s++) {
    const digest = hmacEngine.digestHex(secrets[s] as string, prefix, body);
    if (typeof digest !== "string") {
      return verifyAsync(digest, s, {
        params,
        secrets,
        parsed,
        body,
        prefix,
        headerName: found.name,
      });
    }
    if (anySignatureMatches(digest, parsed.signatures)) {
      return { ok: true, timestamp: parsed.timestamp, secretIndex: s, headerName: found.name };
    }
  }
  throw mismatch(params.payload, body, secrets);
}

/** The rest of the secrets when the engine is asynchronous (Web Crypto). */
async function verifyAsync(
  first: Promise<string>,
  from: number,
  state: {
    params: VerifySignatureParams;
    secrets: readonly string[];
    parsed: ParsedHeader;
    body: string | Uint8Array;
    prefix: string;
    headerName: string;
  },
): Promise<VerifySignatureResult> {
  const { secrets, parsed, body, prefix } = state;
  for (let s = from; s < secrets.length; s++) {
    const digest =
      s === from ? await first : await hmacEngine.digestHex(secrets[s] as string, prefix, body);
    if (anySignatureMatches(digest, parsed.signatures)) {
      return {
        ok: true,
        timestamp: parsed.timestamp,
        secretIndex: s,
        headerName: state.headerName,
      };
    }
  }
  throw mismatch(state.params.payload, body, secrets);
}

function mismatch(
  payload: unknown,
  body: string | Uint8Array | undefined,
  secrets: readonly string[],
): MappaWebhookError {
  const hint = mismatchHint(payload, body, secrets);
  return new MappaWebhookError(
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
  return `t=${t},v1=${await hmacEngine.digestHex(secret as string, `${t}.`, body)}`;
}
