import { once } from "node:events";
import { request as httpRequest, type OutgoingHttpHeaders } from "node:http";
import { connect } from "node:net";

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
 * every byte. With `paceAfterBytes` the client paces itself past that many bytes (a chunk per
 * timer turn), so how many bytes go out before the answer depends on the server reacting, not
 * on how much CPU the server gets compared with the client on a busy machine. Pacing leaves
 * more writes after an early answer, so more chances of the TCP reset that can discard it: only
 * a caller that tolerates resets should pace.
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
  paceAfterBytes = Number.POSITIVE_INFINITY,
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
  const timeout = setTimeout(() => req.destroy(new Error("streaming test timed out")), 90_000);
  try {
    while (bytesWritten < maxBytes && !answered && !req.destroyed) {
      bytesWritten += chunk.byteLength;
      if (!req.write(chunk)) {
        // Wait for room, or for the server to answer / close.
        await Promise.race([once(req, "drain").catch(() => {}), done]);
      }
      if (bytesWritten > paceAfterBytes) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    if (!answered && !req.destroyed) req.end();
    await done;
  } finally {
    clearTimeout(timeout);
    req.destroy();
  }
  return { status, bytesWritten, answeredEarly };
}

/** A request whose body stops part-way: what is sent, and how much of the body. */
export interface PartialBodyOptions {
  /** Request headers; `content-length` is set to the whole body's length unless `chunked`. */
  headers: Record<string, string>;
  /** The whole body the headers promise. */
  body: string | Uint8Array;
  /** How many bytes of the body are sent before the client stops. */
  sentBytes: number;
  /** Send the body with chunked transfer encoding instead of a `content-length`. */
  chunked?: boolean;
}

function requestHead(url: URL, options: PartialBodyOptions, total: number): string {
  const lines = [`POST ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
  for (const [name, value] of Object.entries(options.headers)) lines.push(`${name}: ${value}`);
  lines.push(options.chunked ? "transfer-encoding: chunked" : `content-length: ${total}`);
  return `${lines.join("\r\n")}\r\n\r\n`;
}

function chunk(bytes: Uint8Array, chunked: boolean | undefined): Buffer {
  if (!chunked) return Buffer.from(bytes);
  return Buffer.concat([
    Buffer.from(`${bytes.byteLength.toString(16)}\r\n`),
    Buffer.from(bytes),
    Buffer.from("\r\n"),
  ]);
}

/**
 * A client that goes away mid-body: over a raw TCP connection it sends the request head and the
 * first `sentBytes` of the body, waits `pauseMs` (so the server is reading), then destroys the
 * socket. Resolves once the socket is closed; whatever the server answers is never read.
 *
 * @example
 * ```ts
 * await abortMidBody(url, { headers: { "mappa-signature": header }, body, sentBytes: body.length / 2 });
 * ```
 */
export async function abortMidBody(
  url: string,
  options: PartialBodyOptions & { pauseMs?: number },
): Promise<void> {
  const target = new URL(url);
  const body = typeof options.body === "string" ? Buffer.from(options.body) : options.body;
  const socket = connect(Number(target.port), target.hostname);
  socket.on("error", () => {});
  await once(socket, "connect");
  socket.write(requestHead(target, options, body.byteLength));
  socket.write(chunk(body.subarray(0, options.sentBytes), options.chunked));
  await new Promise((resolve) => setTimeout(resolve, options.pauseMs ?? 100));
  const closed = once(socket, "close");
  socket.destroy();
  await closed;
}

/** What a client whose body stalled saw. */
export interface StalledResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Bytes of the body the client had sent when the answer came. */
  bytesSent: number;
  /** Milliseconds from the first body byte to the answer. */
  elapsedMs: number;
}

/**
 * A client whose body never completes: it sends the head and the first `sentBytes` of the body,
 * then either stalls (sends nothing more) or, with `dripMs`, sends one more byte every `dripMs`
 * (never the last one). Resolves with the server's answer; rejects after `timeoutMs` (default
 * 15 s) without one. The connection is destroyed either way.
 *
 * @example
 * ```ts
 * const result = await stallMidBody(url, { headers, body, sentBytes: 10 });
 * expect(result.status).toBe(408);
 * ```
 */
export async function stallMidBody(
  url: string,
  options: PartialBodyOptions & { dripMs?: number; timeoutMs?: number },
): Promise<StalledResult> {
  const body = typeof options.body === "string" ? Buffer.from(options.body) : options.body;
  const headers: OutgoingHttpHeaders = { ...options.headers };
  if (options.chunked) headers["transfer-encoding"] = "chunked";
  else headers["content-length"] = body.byteLength;
  const req = httpRequest(url, { method: "POST", headers, agent: false });
  const timeoutMs = options.timeoutMs ?? 15_000;
  let bytesSent = 0;
  let answered = false;
  let drip: ReturnType<typeof setInterval> | undefined;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  const started = Date.now();
  try {
    return await new Promise<StalledResult>((resolve, reject) => {
      deadline = setTimeout(
        () => reject(new Error(`no answer within ${timeoutMs} ms to a stalled body`)),
        timeoutMs,
      );
      req.on("error", (error) => {
        if (!answered) reject(error);
      });
      req.on("response", (res) => {
        answered = true;
        const elapsedMs = Date.now() - started;
        const sentWhenAnswered = bytesSent;
        const parts: Buffer[] = [];
        res.on("data", (part: Buffer) => parts.push(part));
        const finish = () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts).toString("utf8"),
            bytesSent: sentWhenAnswered,
            elapsedMs,
          });
        res.on("end", finish);
        res.on("error", finish);
      });
      req.write(body.subarray(0, options.sentBytes));
      bytesSent = options.sentBytes;
      if (options.dripMs !== undefined) {
        drip = setInterval(() => {
          // Bounded: the last byte is never sent, so the body never completes.
          if (answered || req.destroyed || bytesSent >= body.byteLength - 1) return;
          req.write(body.subarray(bytesSent, bytesSent + 1));
          bytesSent += 1;
        }, options.dripMs);
      }
    });
  } finally {
    clearInterval(drip);
    clearTimeout(deadline);
    req.destroy();
  }
}

/** What a raw-socket client saw after declaring a body over the limit. */
export interface DeclaredOversizedResult {
  /** The status of the answer's status line, 0 when no answer arrived. */
  status: number;
  /** Everything the client read, head and body. */
  received: string;
  /** The error the socket ended with (EPIPE, ECONNRESET), if any; writes after the answer may fail. */
  socketError?: string;
}

/**
 * Over a raw TCP connection, declares a `content-length` of `declaredBytes` (over the limit),
 * then keeps sending the body in `chunkBytes` pieces as fast as the socket takes them until the
 * server answers or the connection ends, reading everything the server sends. A server that
 * closes its socket while the body is still arriving makes the kernel reset the connection,
 * and the reset can discard the answer before the client read it: this is what that race looks
 * like from the sender's side.
 *
 * @example
 * ```ts
 * const result = await sendDeclaredOversized(url, { "mappa-signature": header }, 4 * 1024 * 1024);
 * expect(result.status).toBe(413);
 * ```
 */
export async function sendDeclaredOversized(
  url: string,
  headers: Record<string, string>,
  declaredBytes: number,
  options: { chunkBytes?: number; timeoutMs?: number } = {},
): Promise<DeclaredOversizedResult> {
  const { chunkBytes = 16 * 1024, timeoutMs = 30_000 } = options;
  const target = new URL(url);
  const socket = connect(Number(target.port), target.hostname);
  let received = "";
  let socketError: string | undefined;
  let answered = false;
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("error", (error: NodeJS.ErrnoException) => {
    socketError = error.code ?? error.message;
  });
  socket.setEncoding("latin1").on("data", (text: string) => {
    received += text;
    if (received.includes("\r\n\r\n")) answered = true;
  });
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  try {
    await Promise.race([once(socket, "connect"), closed]);
    const lines = [
      `POST ${target.pathname}${target.search} HTTP/1.1`,
      `host: ${target.host}`,
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
      `content-length: ${declaredBytes}`,
    ];
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    const piece = Buffer.alloc(chunkBytes, 0x61);
    // Bounded by the declared bytes: like curl or Node's http client, the whole body is sent
    // even when the answer arrives first.
    for (let sent = 0; sent < declaredBytes && !socket.destroyed; sent += chunkBytes) {
      const more = socket.write(piece.subarray(0, Math.min(chunkBytes, declaredBytes - sent)));
      if (!more) await Promise.race([once(socket, "drain").catch(() => {}), closed]);
      else await new Promise((resolve) => setImmediate(resolve));
    }
    // Give the answer time to arrive, then read to the end of the connection.
    await Promise.race([closed, waitUntil(() => answered, timeoutMs)]);
    if (answered) {
      socket.end();
      await closed;
    }
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(received)?.[1] ?? 0);
  return socketError === undefined ? { status, received } : { status, received, socketError };
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
}
