// The verification pattern of the Mappa Node SDK (`mappa.webhooks.verifySignature`), rebuilt
// step by step for comparison: header lookup by scanning keys, split-based parsing, a Web
// Crypto key imported on every call, HMAC over the `${t}.${payload}` string, hex encoding and a
// constant-time compare of the two hex strings. The payload is the already decoded string, as
// the SDK takes it.

const encoder = new TextEncoder();

function findHeader(headers, name) {
  const key = Object.keys(headers).find((candidate) => candidate.toLowerCase() === name);
  const value = key === undefined ? undefined : headers[key];
  if (!value) return undefined;
  return Array.isArray(value) ? value[0] : value;
}

function parseSignature(header) {
  const fields = {};
  for (const part of header.split(",")) {
    const [key, value] = part.split("=");
    if (key && value) fields[key.trim()] = value.trim();
  }
  if (!fields.t || !fields.v1) throw new Error("Invalid signature format");
  return { t: fields.t, v1: fields.v1 };
}

function toHex(buffer) {
  let hex = "";
  for (const byte of new Uint8Array(buffer)) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

function equalHex(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** Resolves `{ ok: true }` or rejects, like the SDK. */
export async function mappaSdkVerifySignature({ payload, headers, secret, toleranceSec = 300 }) {
  const header = findHeader(headers, "mappa-signature");
  if (!header) throw new Error("Missing mappa-signature header");
  const { t, v1 } = parseSignature(header);
  const timestamp = Number(t);
  if (!Number.isFinite(timestamp)) throw new Error("Invalid signature timestamp");
  if (Math.abs(Math.floor(Date.now() / 1000) - timestamp) > toleranceSec) {
    throw new Error("Signature timestamp outside tolerance");
  }
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${t}.${payload}`));
  if (!equalHex(toHex(mac), v1)) throw new Error("Invalid signature");
  return { ok: true };
}
