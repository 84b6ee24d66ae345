import { once } from "node:events";
import { request as httpRequest, type OutgoingHttpHeaders } from "node:http";

/** A response as the client saw it. */
export interface SentResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** What to send; `chunks` sends the body with chunked transfer encoding, in those pieces. */
export interface SendOptions {
  method?: string;
  headers?: OutgoingHttpHeaders;
  body?: string | Uint8Array;
  chunks?: ReadonlyArray<string | Uint8Array>;
  timeoutMs?: number;
}

/**
 * Sends one request with node:http so headers, content length and chunking are exactly what
 * the test says (no default content type, no re-encoding).
 *
 * @example
 * ```ts
 * const response = await send(url, { headers: { "mappa-signature": header }, chunks: [a, b] });
 * expect(response.status).toBe(200);
 * ```
 */
export function send(url: string, options: SendOptions = {}): Promise<SentResponse> {
  const { method = "POST", headers = {}, body, chunks, timeoutMs = 10_000 } = options;
  return new Promise((resolve, reject) => {
    const finalHeaders: OutgoingHttpHeaders = { ...headers };
    if (
      chunks === undefined &&
      body !== undefined &&
      finalHeaders["content-length"] === undefined
    ) {
      finalHeaders["content-length"] = Buffer.byteLength(body);
    }
    if (chunks !== undefined) finalHeaders["transfer-encoding"] = "chunked";
    const req = httpRequest(url, { method, headers: finalHeaders, agent: false });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timed out: ${method} ${url}`)));
    req.on("error", reject);
    req.on("response", (res) => {
      const parts: Buffer[] = [];
      res.on("data", (part: Buffer) => parts.push(part));
      res.on("error", reject);
      res.on("end", () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts).toString("utf8"),
        });
      });
    });
    if (chunks !== undefined) {
      for (const chunk of chunks) req.write(chunk);
      req.end();
    } else {
      req.end(body);
    }
  });
}

/** What happened when a client streamed far more than the limit. */
export interface OversizedResult {
  /** The answer's status, 0 when the connection ended without one. */
  status: number;
  /** Bytes the client handed to the socket before the answer came (or the connection ended). */
  bytesWritten: number;
  /** The client was still sending when the answer came. */
  answeredEarly: boolean;
}

/**
 * Streams a chunked body of up to `maxBytes` (bounded) and stops as soon as the server answers
 * and closes the connection. A server that reads the whole body before answering would take
 * every byte.
 *
 * @example
 * ```ts
 * const result = await streamOversized(url, { "mappa-signature": "t=1,v1=00" }, 32 * 1024 * 1024);
 * expect(result).toMatchObject({ status: 413, answeredEarly: true });
 * ```
 */
export async function streamOversized(
  url: string,
  headers: OutgoingHttpHeaders,
  maxBytes: number,
  chunkBytes = 64 * 1024,
): Promise<OversizedResult> {
  const req = httpRequest(url, {
    method: "POST",
    headers: { ...headers, "transfer-encoding": "chunked" },
    agent: false,
  });
  let status = 0;
  let answered = false;
  let bytesWritten = 0;
  let answeredEarly = false;
  const done = new Promise<void>((resolve) => {
    req.on("response", (res) => {
      status = res.statusCode ?? 0;
      answered = true;
      answeredEarly = bytesWritten < maxBytes;
      res.resume();
      res.on("end", resolve);
      res.on("error", () => resolve());
    });
    // A server that stops reading may reset the connection once it answered.
    req.on("error", () => resolve());
    req.on("close", () => resolve());
  });
  const chunk = Buffer.alloc(chunkBytes, 0x61);
  const timeout = setTimeout(() => req.destroy(new Error("streaming test timed out")), 15_000);
  try {
    while (bytesWritten < maxBytes && !answered && !req.destroyed) {
      bytesWritten += chunk.byteLength;
      if (!req.write(chunk)) {
        // Wait for room, or for the server to answer / close.
        await Promise.race([once(req, "drain").catch(() => {}), done]);
      }
    }
    if (!answered && !req.destroyed) req.end();
    await done;
  } finally {
    clearTimeout(timeout);
    req.destroy();
  }
  return { status, bytesWritten, answeredEarly };
}
