import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";

/** Headers that describe one connection, not the message: never passed on (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
]);

export type HeaderPairs = Array<[string, string]>;

/** Header pairs as received (`rawHeaders`), in order and with their original spelling. */
export function headerPairs(raw: readonly string[]): HeaderPairs {
  const pairs: HeaderPairs = [];
  for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i] as string, raw[i + 1] as string]);
  return pairs;
}

/** The pairs worth passing on: hop-by-hop headers (and those `Connection` names) removed. */
export function endToEnd(pairs: HeaderPairs): HeaderPairs {
  const named = new Set<string>();
  for (const [name, value] of pairs) {
    if (name.toLowerCase() === "connection") {
      for (const token of value.split(",")) named.add(token.trim().toLowerCase());
    }
  }
  return pairs.filter(([name]) => {
    const lower = name.toLowerCase();
    return !HOP_BY_HOP.has(lower) && !named.has(lower);
  });
}

/** What the app answered to a forwarded delivery, or why it could not be reached. */
export interface ForwardResult {
  url: string;
  at: string;
  latencyMs: number;
  status?: number;
  headers?: HeaderPairs;
  /** The answer's body as text for display, cut at {@link SHOWN_ANSWER_BYTES}. */
  body?: string;
  /** The answer's exact bytes (up to {@link MAX_ANSWER_BYTES}), to pass back; never stored. */
  raw?: Buffer;
  /** Network failure: a short reason and its code (ECONNREFUSED, TIMEOUT, …). */
  error?: string;
  errorCode?: string;
}

/** How much of the app's answer is passed back to the sender. */
export const MAX_ANSWER_BYTES = 1024 * 1024;
/** How much of it the inspector keeps for display. */
export const SHOWN_ANSWER_BYTES = 16 * 1024;

const REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused: is the app running on that port?",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host lookup failed",
  ECONNRESET: "the app closed the connection",
  EHOSTUNREACH: "host unreachable",
  TIMEOUT: "no answer in time",
};

/**
 * Sends the exact body with the original end-to-end headers (optionally with a replaced
 * signature header) to `url`, and reads the app's answer. Never rejects. `timeoutMs` bounds the
 * whole exchange, connect to the answer's last byte: an app that drips bytes or streams forever
 * is cut off then, as one that never answers.
 */
export function forward(options: {
  url: URL;
  method: string;
  headers: HeaderPairs;
  body: Uint8Array;
  timeoutMs: number;
  /** Replace this header's value (a fresh signature for a replay). */
  replace?: { name: string; value: string };
}): Promise<ForwardResult> {
  const { url, body } = options;
  const at = new Date().toISOString();
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const flat: string[] = [];
  let replaced = false;
  for (const [name, value] of endToEnd(options.headers)) {
    if (options.replace !== undefined && name.toLowerCase() === options.replace.name) {
      if (replaced) continue;
      replaced = true;
      flat.push(name, options.replace.value);
      continue;
    }
    flat.push(name, value);
  }
  if (options.replace !== undefined && !replaced)
    flat.push(options.replace.name, options.replace.value);
  flat.push("Host", url.host, "Content-Length", String(body.byteLength));

  return new Promise((resolve) => {
    let settled = false;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const done = (result: Omit<ForwardResult, "url" | "at" | "latencyMs">) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve({ url: url.href, at, latencyMs: elapsed(), ...result });
    };
    const fail = (code: string, message?: string) =>
      done({ errorCode: code, error: REASONS[code] ?? message ?? code });
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const req = send(url, { method: options.method, headers: flat, agent: false }, (res) =>
      readAnswer(res).then(
        (raw) =>
          done({
            status: res.statusCode ?? 0,
            headers: headerPairs(res.rawHeaders),
            body: raw.subarray(0, SHOWN_ANSWER_BYTES).toString("utf8"),
            raw,
          }),
        (error: unknown) => fail(codeOf(error), String(error)),
      ),
    );
    deadline = setTimeout(() => {
      fail("TIMEOUT");
      req.destroy();
    }, options.timeoutMs);
    req.on("error", (error) => fail(codeOf(error), error.message));
    req.end(body);
  });
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : "NETWORK_ERROR";
}

function readAnswer(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on("data", (chunk: Buffer) => {
      if (size < MAX_ANSWER_BYTES) chunks.push(chunk);
      size += chunk.byteLength;
    });
    res.on("end", () => resolve(Buffer.concat(chunks).subarray(0, MAX_ANSWER_BYTES)));
    res.on("error", reject);
    res.on("aborted", () => reject(Object.assign(new Error("aborted"), { code: "ECONNRESET" })));
  });
}
