import { MappaWebhookError } from "./errors.js";

/** Requests larger than this are answered 413 unless `maxBodyBytes` says otherwise. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** How long reading a body may take before the answer is 408, unless `bodyTimeoutMs` says otherwise. */
export const DEFAULT_BODY_TIMEOUT_MS = 10_000;

/** Options of {@link readBodyWithLimit}. */
export interface ReadBodyOptions {
  /**
   * Reject with `body_timeout` when the whole body has not arrived within this many
   * milliseconds (a stalled or slow-drip sender). Default: no deadline.
   */
  timeoutMs?: number | undefined;
}

/** The error for a body that did not arrive in time. */
export function bodyTimeout(timeoutMs: number): MappaWebhookError {
  return new MappaWebhookError(
    "body_timeout",
    `The request body did not arrive within ${timeoutMs} ms, so reading it was abandoned. Raise \`bodyTimeoutMs\` if senders on slow links need longer.`,
  );
}

/** The error for a client that went away before its body was complete. */
export function requestAborted(cause?: unknown): MappaWebhookError {
  return new MappaWebhookError(
    "request_aborted",
    "The client closed the request before its body was complete; nothing was handled.",
    cause === undefined ? {} : { cause },
  );
}

/** The error for a body over the limit; adapters use it when their framework detects it. */
export function payloadTooLarge(limit: number): MappaWebhookError {
  return new MappaWebhookError(
    "payload_too_large",
    `The request body is larger than ${limit} bytes. Raise \`maxBodyBytes\` if Mappa's events for you are legitimately this large.`,
  );
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** The parts of a Node `Readable` (such as `IncomingMessage`) the reader uses. */
interface NodeReadable {
  on(event: string, listener: (...args: never[]) => void): unknown;
  off(event: string, listener: (...args: never[]) => void): unknown;
  pause(): unknown;
  readableEnded?: boolean;
  destroyed?: boolean;
}

function isNodeStream(source: unknown): source is NodeReadable {
  const stream = source as Partial<NodeReadable>;
  return (
    typeof stream.on === "function" &&
    typeof stream.pause === "function" &&
    typeof stream.off === "function"
  );
}

// Plain 'data'/'end' listeners rather than an async iterator: this runs for every delivery and
// the iterator's promise per chunk measurably costs throughput. On overflow the stream is paused,
// not destroyed: destroying the request would reset the socket before the 413 is written.
function readNodeStream(
  stream: NodeReadable,
  limit: number,
  timeoutMs: number | undefined,
): Promise<Uint8Array> {
  if (stream.readableEnded === true) {
    return Promise.reject(
      new MappaWebhookError(
        "body_already_parsed",
        "The request stream was already read to its end, so its raw bytes are gone. Read the body before any body parser runs.",
      ),
    );
  }
  // The client left before we started reading: no 'close' will come again to tell us.
  if (stream.destroyed === true) return Promise.reject(requestAborted());
  return new Promise((resolve, reject) => {
    let chunks: Uint8Array[] = [];
    let total = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const cleanup = () => {
      if (timer !== undefined) clearTimeout(timer);
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      stream.off("close", onClose);
    };
    const onData = (chunk: Uint8Array | string) => {
      const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
      total += bytes.byteLength;
      if (total > limit) {
        cleanup();
        stream.pause();
        reject(payloadTooLarge(limit));
        return;
      }
      chunks.push(bytes);
    };
    const onEnd = () => {
      cleanup();
      resolve(concat(chunks, total));
    };
    // A stream error while reading a request body is the client going away (ECONNRESET,
    // "aborted"); a body parser's errors never reach here because the bytes are read first.
    const onError = (error: unknown) => {
      cleanup();
      reject(requestAborted(error));
    };
    const onClose = () => {
      cleanup();
      reject(requestAborted());
    };
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        cleanup();
        chunks = []; // let the partial body be collected now, not when the socket closes
        stream.pause();
        reject(bodyTimeout(timeoutMs));
      }, timeoutMs);
    }
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onError);
    stream.on("close", onClose);
  });
}

/**
 * Reads a body to the end, stopping as soon as it exceeds `limit` bytes (the rest is never
 * buffered). Takes a Fetch `ReadableStream` or any async iterable of bytes, such as a Node
 * `IncomingMessage` (left open on an early stop, so the caller can still answer 413 or 408).
 * Rejects with `payload_too_large`, `body_timeout` (past `options.timeoutMs`) or
 * `request_aborted` (the client went away mid-body).
 *
 * @example
 * ```ts
 * const raw = await readBodyWithLimit(req, 1024 * 1024, { timeoutMs: 10_000 }); // Node request
 * ```
 */
export function readBodyWithLimit(
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array | string> | null | undefined,
  limit: number = DEFAULT_MAX_BODY_BYTES,
  options: ReadBodyOptions = {},
): Promise<Uint8Array> {
  if (source == null) return Promise.resolve(new Uint8Array(0));
  const timeoutMs = options.timeoutMs;
  if (isNodeStream(source) && typeof (source as ReadableStream).getReader !== "function") {
    return readNodeStream(source, limit, timeoutMs);
  }
  const reading = readIterable(source, limit);
  if (timeoutMs === undefined) return reading.promise;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reading.cancel();
      reject(bodyTimeout(timeoutMs));
    }, timeoutMs);
    reading.promise.then(
      (bytes) => {
        clearTimeout(timer);
        resolve(bytes);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

function readIterable(
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array | string>,
  limit: number,
): { promise: Promise<Uint8Array>; cancel: () => void } {
  let cancelled = false;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const cancel = () => {
    cancelled = true;
    reader?.cancel().catch(() => {});
  };
  const promise = (async () => {
    const chunks: Uint8Array[] = [];
    let total = 0;
    const take = (chunk: Uint8Array | string): boolean => {
      const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
      total += bytes.byteLength;
      if (total > limit) return false;
      chunks.push(bytes);
      return true;
    };
    if (typeof (source as ReadableStream).getReader === "function") {
      reader = (source as ReadableStream<Uint8Array>).getReader();
      for (;;) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (error) {
          // A Fetch body errors when the client disconnects mid-body.
          throw requestAborted(error);
        }
        if (cancelled) return new Uint8Array(0);
        if (result.done) break;
        if (!take(result.value)) {
          reader.cancel().catch(() => {});
          throw payloadTooLarge(limit);
        }
      }
    } else {
      try {
        for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
          if (cancelled) return new Uint8Array(0);
          if (!take(chunk)) throw payloadTooLarge(limit);
        }
      } catch (error) {
        if (error instanceof MappaWebhookError) throw error;
        throw requestAborted(error);
      }
    }
    return concat(chunks, total);
  })();
  // The deadline may have answered already; a later failure has nobody left to hear it.
  promise.catch(() => {});
  return { promise, cancel };
}
