// Memory benchmark: a 100 MiB request to each adapter configured with a 1 MiB limit must be
// answered 413 without the server buffering it. The body is generated on the fly (one 64 KiB
// chunk written again and again, honouring backpressure), sent chunked (no length to check
// up front) and, separately, with a declared Content-Length. Sending stops as soon as the
// server answers or closes the connection, or after the deadline. (The sender may be a few MiB
// ahead of the server by then: that much sits in socket buffers.) The server's RSS comes from
// /proc/<pid>/status (sampled every few ms while the request runs) or, elsewhere, from the
// server itself over IPC.
import net from "node:net";
import { createEventBody, signBody, WEBHOOK_PATH } from "./lib/fixtures.mjs";
import { procMemory, startServer } from "./lib/processes.mjs";

export const MEMORY_BODY_BYTES = 100 * 1024 * 1024;
export const MEMORY_LIMIT_BYTES = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, "x");
const DEADLINE_MS = Number(process.env.BENCH_MEMORY_DEADLINE_MS ?? 30_000);
const SAMPLE_EVERY_MS = 5;
const ATTEMPTS = 3;

/**
 * Sends up to MEMORY_BODY_BYTES over a raw socket; resolves `{ status, sentBytes, ms, outcome }`.
 * A raw socket, not node:http's client: a server that answers early and closes makes the next
 * write fail with EPIPE, and node:http then reports the error and drops the answer it got.
 */
function sendHuge(url, signature, chunked) {
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect(Number(port), hostname);
    let sentBytes = 0;
    let received = "";
    let finished = false;
    const finish = (outcome) => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      socket.destroy();
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(received)?.[1];
      resolve({
        status: status === undefined ? undefined : Number(status),
        sentBytes,
        ms: performance.now() - started,
        outcome: status === undefined ? outcome : "answered",
      });
    };
    const deadline = setTimeout(() => finish("deadline"), DEADLINE_MS);
    // The first bytes back are the answer; keep reading until the status line is complete.
    socket.on("data", (data) => {
      received += data.toString("latin1");
      if (received.includes("\r\n")) finish("answered");
    });
    socket.on("error", () => finish("closed before answering"));
    socket.on("close", () => finish("closed before answering"));
    const framing = chunked ? "transfer-encoding: chunked" : `content-length: ${MEMORY_BODY_BYTES}`;
    socket.write(
      `POST ${pathname} HTTP/1.1\r\nhost: ${hostname}:${port}\r\ncontent-type: application/json\r\n` +
        `mappa-signature: ${signature}\r\n${framing}\r\n\r\n`,
    );
    const chunkHead = `${CHUNK.length.toString(16)}\r\n`;
    const pump = () => {
      while (!finished && sentBytes < MEMORY_BODY_BYTES) {
        sentBytes += CHUNK.length;
        if (chunked) socket.write(chunkHead);
        const more = socket.write(CHUNK);
        if (chunked) socket.write("\r\n");
        if (!more) {
          socket.once("drain", pump);
          return;
        }
      }
      if (!finished && chunked) socket.write("0\r\n\r\n");
    };
    socket.once("connect", pump);
  });
}

async function warmUp(server) {
  const body = createEventBody(1024);
  for (let i = 0; i < 50; i++) {
    const response = await fetch(`${server.url}${WEBHOOK_PATH}`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "mappa-signature": await signBody(body) },
    });
    await response.arrayBuffer();
  }
}

async function rssOf(server) {
  return procMemory(server.pid)?.rss ?? (await server.rss());
}

async function measure(framework, chunked) {
  const server = await startServer(framework, "adapter", {
    BENCH_MAX_BODY_BYTES: String(MEMORY_LIMIT_BYTES),
  });
  try {
    await warmUp(server);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const before = await rssOf(server);
    let peak = before;
    const sampler = setInterval(() => {
      const now = procMemory(server.pid)?.rss;
      if (now !== undefined && now > peak) peak = now;
    }, SAMPLE_EVERY_MS);
    const body = createEventBody(1024);
    // A server that closes right after answering, with request bytes still unread, makes its
    // kernel send a reset, and a reset can reach the client before the answer is read. Such a
    // run is retried (at most ATTEMPTS in all) and counted: the sender may miss the 413 too.
    let result;
    let resets = 0;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      result = await sendHuge(`${server.url}${WEBHOOK_PATH}`, await signBody(body), chunked);
      if (result.status !== undefined || result.outcome === "deadline") break;
      resets++;
    }
    clearInterval(sampler);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = await rssOf(server);
    peak = Math.max(peak, after);
    return {
      framework,
      transfer: chunked ? "chunked" : "content-length",
      ...result,
      resets,
      rssBefore: before,
      rssGrowth: after - before,
      peakGrowth: peak - before,
    };
  } finally {
    await server.close();
  }
}

/** The whole memory benchmark; `log` receives progress lines. */
export async function runMemory(frameworks = ["express", "fastify", "hono"], log = () => {}) {
  const out = [];
  for (const framework of frameworks) {
    for (const chunked of [true, false]) {
      const result = await measure(framework, chunked);
      out.push(result);
      log(`memory ${framework} ${result.transfer}: ${result.status ?? result.outcome}`);
    }
  }
  return {
    bodyBytes: MEMORY_BODY_BYTES,
    limitBytes: MEMORY_LIMIT_BYTES,
    rssSource: procMemory(process.pid) ? "/proc/<pid>/status VmRSS" : "process.memoryUsage().rss",
    results: out,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runMemory(undefined, (line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
