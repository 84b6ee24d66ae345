// A copy of the core's node:crypto `verifySignature` (packages/core/src/verify.ts at the time
// of writing: same checks, same order, same errors) with the changes recommended in
// BENCHMARKS.md, each behind a switch so its effect can be measured on its own. Nothing uses
// it but prototype/measure.mjs: it exists to size a fix before it is made in the core.
//
// Switches:
//   straight     no closures allocated per call: the one-secret synchronous path runs
//                straight through, and the mismatch error is built only when needed
//   bufferHex    compare through `Buffer.from(hex, "hex")` + `timingSafeEqual` (native) after a
//                64-hex-digit check, instead of the JS table loop
//   secretBytes  the secret's UTF-8 bytes encoded once per secret, not by createHmac per call
//   hexDigest    let node:crypto produce the hex digest (`digest("hex")`) and compare it with
//                each v1 string in constant time (case-folded), instead of a byte digest
//                compared through a JS table loop
//   headerFast   recognise the canonical `t=<digits>,v1=<64 chars>` header with a prefix
//                check, one indexOf and two slices; anything else takes the full parser
import { createHmac, timingSafeEqual } from "node:crypto";
import { MappaWebhookError, readHeader } from "@mappa-webhooks/core";

const DEFAULT_TOLERANCE_SEC = 300;
const DEFAULT_SIGNATURE_HEADERS = ["mappa-signature", "conduit-signature"];
const MAX_SIGNATURE_HEADER_LENGTH = 8 * 1024;
const MAX_SIGNATURES_COMPARED = 8;
const T_PATTERN = /^\d+$/;
const HEX64 = /^[0-9a-fA-F]{64}$/;

function normalizeSecrets(secret) {
  const list = typeof secret === "string" ? [secret] : Array.isArray(secret) ? secret : undefined;
  if (list === undefined || list.length === 0) {
    throw new MappaWebhookError("missing_secret", "No webhook secret is configured.");
  }
  for (const s of list) {
    if (typeof s !== "string" || s.length === 0) {
      throw new MappaWebhookError("missing_secret", "A configured webhook secret is empty.");
    }
  }
  return list;
}

function readSignatureHeader(headers, names) {
  const list =
    names === undefined ? DEFAULT_SIGNATURE_HEADERS : typeof names === "string" ? [names] : names;
  for (const raw of list) {
    const name = names === undefined ? raw : raw.toLowerCase();
    const value = readHeader(headers, name);
    if (value !== undefined && /\S/.test(value)) return { name, value };
  }
  return undefined;
}

function malformed(what) {
  return new MappaWebhookError(
    "malformed_signature",
    `The signature header is malformed: ${what}.`,
  );
}

const isSpace = (code) => code === 32 || code === 9;

// The core's hand-rolled parser, unchanged.
function parseSignatureHeader(value) {
  if (value.length > MAX_SIGNATURE_HEADER_LENGTH) throw malformed("too long");
  let timestampText;
  const signatures = [];
  let pos = 0;
  while (pos <= value.length) {
    let end = value.indexOf(",", pos);
    if (end === -1) end = value.length;
    let from = pos;
    let to = end;
    pos = end + 1;
    while (from < to && isSpace(value.charCodeAt(from))) from++;
    while (to > from && isSpace(value.charCodeAt(to - 1))) to--;
    if (from === to) continue;
    const eq = value.indexOf("=", from);
    if (eq <= from || eq >= to) throw malformed("an entry is not a key=value pair");
    let keyEnd = eq;
    while (keyEnd > from && isSpace(value.charCodeAt(keyEnd - 1))) keyEnd--;
    let valueStart = eq + 1;
    while (valueStart < to && isSpace(value.charCodeAt(valueStart))) valueStart++;
    const keyLength = keyEnd - from;
    const first = value.charCodeAt(from);
    if (keyLength === 1 && first === 116) {
      if (timestampText !== undefined) throw malformed("`t` is given more than once");
      timestampText = value.slice(valueStart, to);
    } else if (keyLength === 2 && first === 118 && value.charCodeAt(from + 1) === 49) {
      signatures.push(value.slice(valueStart, to));
    }
  }
  if (timestampText === undefined) throw malformed("there is no `t` entry");
  if (!T_PATTERN.test(timestampText)) throw malformed("`t` is not a whole number of seconds");
  if (signatures.length === 0) throw malformed("there is no `v1` entry");
  return { timestampText, timestamp: Number(timestampText), signatures };
}

const HEX_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX_VALUES["0123456789abcdef".charCodeAt(i)] = i;
  HEX_VALUES["0123456789ABCDEF".charCodeAt(i)] = i;
}

// The core's one-pass constant-time compare, unchanged.
function digestMatchesHexTable(digest, hex) {
  if (hex.length !== 2 * digest.byteLength) return false;
  let diff = 0;
  let invalid = 0;
  for (let i = 0; i < digest.byteLength; i++) {
    const a = hex.charCodeAt(2 * i);
    const b = hex.charCodeAt(2 * i + 1);
    const hi = a < 128 ? HEX_VALUES[a] : -1;
    const lo = b < 128 ? HEX_VALUES[b] : -1;
    invalid |= hi | lo;
    diff |= digest[i] ^ (((hi << 4) | lo) & 255);
  }
  return diff === 0 && invalid >= 0;
}

function digestMatchesHexBuffer(digest, hex) {
  if (!HEX64.test(hex)) return false;
  return timingSafeEqual(digest, Buffer.from(hex, "hex"));
}

/**
 * Constant-time equality of the lower-case hex digest and a received v1 value, accepting
 * upper-case hex digits as the table compare does and rejecting any non-hex character.
 */
function hexDigestMatches(digestHex, hex) {
  if (hex.length !== digestHex.length) return false;
  let diff = 0;
  let invalid = 0;
  for (let i = 0; i < hex.length; i++) {
    const c = hex.charCodeAt(i);
    invalid |= c < 128 ? HEX_VALUES[c] : -1;
    // `| 0x20` folds A-F onto a-f and leaves digits as they are.
    diff |= digestHex.charCodeAt(i) ^ (c | 0x20);
  }
  return diff === 0 && invalid >= 0;
}

function parseHeaderFast(value) {
  // The canonical `t=<digits>,v1=<64 chars>`: one signature, no spaces, nothing else.
  if (value.charCodeAt(0) === 116 && value.charCodeAt(1) === 61) {
    const comma = value.indexOf(",", 2);
    if (comma > 2 && value.length === comma + 68 && value.startsWith("v1=", comma + 1)) {
      const timestampText = value.slice(2, comma);
      if (T_PATTERN.test(timestampText)) {
        return {
          timestampText,
          timestamp: Number(timestampText),
          signatures: [value.slice(comma + 4)],
        };
      }
    }
  }
  return parseSignatureHeader(value);
}

const secretBytesCache = new Map();
function secretBytesOf(secret) {
  let bytes = secretBytesCache.get(secret);
  if (bytes === undefined) {
    if (secretBytesCache.size >= 16) secretBytesCache.clear();
    bytes = Buffer.from(secret, "utf8");
    secretBytesCache.set(secret, bytes);
  }
  return bytes;
}

function toSignable(payload) {
  if (typeof payload === "string" || payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) {
    return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  return undefined;
}

function mismatch(secrets) {
  return new MappaWebhookError(
    "signature_mismatch",
    `No v1 signature matches the body under the configured secret${secrets.length > 1 ? "s" : ""}.`,
  );
}

/** Builds `verifySignature` with the chosen switches (see the top of this file). */
export function createVerifier({
  straight = false,
  bufferHex = false,
  secretBytes = false,
  hexDigest = false,
  headerFast = false,
} = {}) {
  const tableOrBuffer = bufferHex ? digestMatchesHexBuffer : digestMatchesHexTable;
  const digestMatchesHex = hexDigest ? hexDigestMatches : tableOrBuffer;
  const digestEncoding = hexDigest ? "hex" : undefined;
  const keyOf = secretBytes ? secretBytesOf : (secret) => secret;
  const parseHeader = headerFast ? parseHeaderFast : parseSignatureHeader;

  function checkedHeader(params) {
    const secrets = normalizeSecrets(params.secret);
    const found = readSignatureHeader(params.headers, params.headerName);
    if (found === undefined)
      throw new MappaWebhookError("missing_signature", "No signature header.");
    const parsed = parseHeader(found.value);
    const tolerance = params.toleranceSec ?? DEFAULT_TOLERANCE_SEC;
    const now = params.now === undefined ? Math.floor(Date.now() / 1000) : params.now;
    const skew = (typeof now === "function" ? now() : now) - parsed.timestamp;
    if (!(Math.abs(skew) <= tolerance)) {
      throw new MappaWebhookError("timestamp_outside_tolerance", "Outside the tolerance.");
    }
    return { secrets, found, parsed };
  }

  // The core's shape: closures per call.
  function verifyWithClosures(params) {
    const { secrets, found, parsed } = checkedHeader(params);
    const body = toSignable(params.payload);
    if (body === undefined) throw mismatch(secrets);
    const prefix = `${parsed.timestampText}.`;
    const matches = (digest) => {
      let match = false;
      const count = Math.min(parsed.signatures.length, MAX_SIGNATURES_COMPARED);
      for (let i = 0; i < count; i++)
        match = digestMatchesHex(digest, parsed.signatures[i]) || match;
      return match;
    };
    const ok = (secretIndex) => ({
      ok: true,
      timestamp: parsed.timestamp,
      secretIndex,
      headerName: found.name,
    });
    const trySecret = (index) => {
      for (let s = index; s < secrets.length; s++) {
        const digest = createHmac("sha256", keyOf(secrets[s]))
          .update(prefix)
          .update(body)
          .digest(digestEncoding);
        if (matches(digest)) return ok(s);
      }
      throw mismatch(secrets);
    };
    return trySecret(0);
  }

  // Straight through: no per-call closures.
  function verifyStraight(params) {
    const { secrets, found, parsed } = checkedHeader(params);
    const body = toSignable(params.payload);
    if (body === undefined) throw mismatch(secrets);
    const prefix = `${parsed.timestampText}.`;
    const { signatures } = parsed;
    const count = Math.min(signatures.length, MAX_SIGNATURES_COMPARED);
    for (let s = 0; s < secrets.length; s++) {
      const digest = createHmac("sha256", keyOf(secrets[s]))
        .update(prefix)
        .update(body)
        .digest(digestEncoding);
      let match = false;
      for (let i = 0; i < count; i++) match = digestMatchesHex(digest, signatures[i]) || match;
      if (match) {
        return { ok: true, timestamp: parsed.timestamp, secretIndex: s, headerName: found.name };
      }
    }
    throw mismatch(secrets);
  }

  const verifyNow = straight ? verifyStraight : verifyWithClosures;
  return function verifySignature(params) {
    try {
      return Promise.resolve(verifyNow(params));
    } catch (error) {
      return Promise.reject(error);
    }
  };
}
