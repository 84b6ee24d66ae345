import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type Explanation, explainDelivery } from "./checks.js";
import { endToEnd, type ForwardResult, type HeaderPairs } from "./forward.js";
import { inspectorPage } from "./page.js";
import {
  type DeliveryRecord,
  type DeliveryStore,
  type DeliverySummary,
  type Replay,
  summarize,
  toJsonLine,
} from "./store.js";

/** The header the page sends with a replay: a cross-site form or `fetch` cannot send it. */
export const INSPECTOR_HEADER = "x-mappa-inspector";

export interface InspectorOptions {
  store: DeliveryStore;
  secrets: readonly string[];
  toleranceSec?: number;
  receivingUrl: string;
  forwardTo?: URL;
  /** Replays a delivery to the app; resolves with the app's answer. */
  replay?: (record: DeliveryRecord) => Promise<Replay>;
  /**
   * A fresh signature header for this delivery's body, made now with the secret that signed it,
   * or undefined when none of the secrets did (a replay then carries the original one).
   */
  resign: (record: DeliveryRecord) => Promise<{ name: string; value: string } | undefined>;
}

/**
 * A stream whose reader has not taken this much yet is cut off (its page reconnects and gets a
 * fresh list): a reader that never reads must not grow the process without bound.
 */
export const MAX_STREAM_BACKLOG_BYTES = 4 * 1024 * 1024;

/** Where the inspector receives and forwards, as the page shows it. */
export interface InspectorInfo {
  receivingUrl: string;
  keep: number;
  forwardTo?: string;
}

/** One delivery as the page shows it (`GET /api/deliveries/<id>`). */
export interface InspectorDetail {
  summary: DeliverySummary;
  method: string;
  path: string;
  headers: HeaderPairs;
  bodyText: string;
  bodyBytes: number;
  pretty: string | null;
  explanation: Explanation;
  /** The app's answer to the delivery itself (the latest one, replays included, is `summary.app`). */
  forward?: ForwardResult;
  replays: Replay[];
  /** The delivery as curl, with its original signature. */
  curl: string;
  /** A freshly signed copy can be had from `POST /api/deliveries/<id>/curl`. */
  freshCurl: boolean;
  replay: { possible: boolean; signature: "fresh" | "original"; reason?: string };
}

/** `POST /api/deliveries/<id>/curl`: the delivery as curl, signed now. */
export interface FreshCurl {
  signature: "fresh";
  curl: string;
}

/** Single-quotes a string for a POSIX shell. */
function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * The delivery as a curl command: the same method, end-to-end headers and exact body; with
 * `signature`, that header's value replaced (a fresh signature, so it outlives the tolerance).
 */
export function curlCommand(
  record: DeliveryRecord,
  target: string,
  signature?: { name: string; value: string },
): string {
  const lines = [`curl -sS -X ${record.method} ${shellQuote(target)}`];
  let replaced = false;
  for (const [name, value] of endToEnd(record.headers)) {
    if (signature !== undefined && name.toLowerCase() === signature.name) {
      if (replaced) continue;
      replaced = true;
      lines.push(`  -H ${shellQuote(`${name}: ${signature.value}`)}`);
      continue;
    }
    lines.push(`  -H ${shellQuote(`${name}: ${value}`)}`);
  }
  if (signature !== undefined && !replaced) {
    lines.push(`  -H ${shellQuote(`${signature.name}: ${signature.value}`)}`);
  }
  lines.push(`  --data-binary ${shellQuote(record.body.toString("utf8"))}`);
  return lines.join(" \\\n");
}

function pretty(body: Buffer): string | null {
  try {
    return JSON.stringify(JSON.parse(body.toString("utf8")), null, 2);
  } catch {
    return null;
  }
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  res.end(JSON.stringify(value));
}

function isLoopbackHost(host: string): boolean {
  return (
    host === "localhost" ||
    host === "::1" ||
    host === "[::1]" ||
    /^127\.\d+\.\d+\.\d+$/.test(host) ||
    host.endsWith(".localhost")
  );
}

/**
 * The inspector: a page and a small JSON + Server-Sent Events API, on its own server so the
 * receiving port (what a tunnel exposes) never serves it.
 */
export class Inspector {
  readonly server: Server;
  private readonly streams = new Set<ServerResponse>();
  private port = 0;
  private readonly heartbeat: ReturnType<typeof setInterval>;

  constructor(
    private readonly options: InspectorOptions,
    private readonly bindHost: string,
  ) {
    this.server = createServer((req, res) => {
      this.answer(req, res).catch((error: unknown) => {
        if (!res.headersSent) json(res, 500, { error: "inspector_failed", message: String(error) });
        else res.end();
      });
    });
    options.store.subscribe((kind, record) => {
      const data = kind === "remove" ? { id: record.id } : summarize(record);
      this.broadcast(kind, data);
    });
    this.heartbeat = setInterval(() => {
      for (const stream of this.streams) this.send(stream, ": keep-alive\n\n");
    }, 15_000);
    this.heartbeat.unref();
  }

  /** Listens; resolves with the page's URL. */
  async listen(port: number): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once("error", onError);
      this.server.listen(port, this.bindHost, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    const address = this.server.address() as AddressInfo;
    this.port = address.port;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}/`;
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const stream of this.streams) stream.end();
    this.server.closeAllConnections();
    this.server.close();
  }

  /** Streams that dropped behind (see {@link MAX_STREAM_BACKLOG_BYTES}) and were cut off. */
  dropped = 0;

  /** Writes to one stream, cutting it off when its reader has fallen too far behind. */
  private send(stream: ServerResponse, message: string): void {
    if (stream.writableLength + message.length > MAX_STREAM_BACKLOG_BYTES) {
      this.streams.delete(stream);
      this.dropped++;
      stream.destroy();
      return;
    }
    stream.write(message);
  }

  private broadcast(event: string, data: unknown): void {
    const message = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const stream of this.streams) this.send(stream, message);
  }

  private info(): InspectorInfo {
    return {
      receivingUrl: this.options.receivingUrl,
      keep: this.options.store.keep,
      ...(this.options.forwardTo === undefined ? {} : { forwardTo: this.options.forwardTo.href }),
    };
  }

  /**
   * DNS rebinding guard: a page on another site that makes its own name resolve to 127.0.0.1
   * still sends its own name as Host. Only loopback names (or the address bound) are served.
   */
  private hostAllowed(req: IncomingMessage): boolean {
    const host = req.headers.host;
    if (host === undefined) return false;
    if (!isLoopbackHost(this.bindHost) && this.bindHost !== "localhost") {
      // Bound to a non-loopback interface on purpose: any name may reach it.
      return true;
    }
    let url: URL;
    try {
      url = new URL(`http://${host}`);
    } catch {
      return false;
    }
    return url.port === String(this.port) && isLoopbackHost(url.hostname);
  }

  /** Cross-site guard for state-changing requests: our own header, and our own origin if sent. */
  private sameSite(req: IncomingMessage): boolean {
    if (req.headers[INSPECTOR_HEADER] === undefined) return false;
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    return origin === `http://${req.headers.host}`;
  }

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? "GET";
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (!this.hostAllowed(req)) {
      json(res, 403, {
        error: "forbidden_host",
        message: `The inspector answers only to http://127.0.0.1:${this.port}/ (or localhost).`,
      });
      return;
    }
    if (method === "GET" && path === "/") {
      const nonce = randomBytes(16).toString("base64");
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "content-security-policy": `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      });
      res.end(inspectorPage(nonce));
      return;
    }
    if (method === "GET" && path === "/api/stream") {
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      });
      res.write("retry: 1000\n\n");
      // Changes only: the page then fetches the list itself (GET /api/deliveries). A browser's
      // EventSource parses one multi-megabyte event slowly (40 s for --keep 10000), JSON fast.
      res.write(`event: ready\ndata: ${JSON.stringify(this.info())}\n\n`);
      this.streams.add(res);
      req.on("close", () => this.streams.delete(res));
      return;
    }
    if (method === "GET" && path === "/api/deliveries") {
      json(res, 200, { info: this.info(), deliveries: this.options.store.list().map(summarize) });
      return;
    }
    const match = /^\/api\/deliveries\/([\w-]+)(?:\/(download|body|replay|curl))?$/.exec(path);
    const record = match?.[1] === undefined ? undefined : this.options.store.get(match[1]);
    if (match === null) {
      json(res, 404, { error: "not_found", message: `No such page: ${path}` });
      return;
    }
    if (record === undefined) {
      json(res, 404, {
        error: "not_found",
        message: `No delivery ${match[1]} (only the last ${this.options.store.keep} are kept)`,
      });
      return;
    }
    const action = match[2];
    if (action === "replay" || action === "curl") {
      const what = action === "replay" ? "Replays" : "Freshly signed commands";
      if (method !== "POST") {
        res.setHeader("allow", "POST");
        json(res, 405, { error: "method_not_allowed", message: `Use POST for ${path}.` });
        return;
      }
      if (!this.sameSite(req)) {
        json(res, 403, {
          error: "cross_site",
          message: `${what} are given only to the inspector page (it sends ${INSPECTOR_HEADER}).`,
        });
        return;
      }
      if (action === "curl") {
        const signature = await this.options.resign(record);
        if (signature === undefined) {
          json(res, 409, {
            error: "no_secret",
            message:
              "None of listen's secrets signed this delivery, so it cannot be signed afresh: copy it with its original signature.",
          });
          return;
        }
        const fresh: FreshCurl = {
          signature: "fresh",
          curl: curlCommand(record, this.target(), signature),
        };
        json(res, 200, fresh);
        return;
      }
      if (this.options.replay === undefined) {
        json(res, 409, {
          error: "no_app",
          message: "Nothing to replay to: start listen with --forward-to <your app's URL>.",
        });
        return;
      }
      json(res, 200, await this.options.replay(record));
      return;
    }
    if (method !== "GET") {
      res.setHeader("allow", "GET");
      json(res, 405, { error: "method_not_allowed", message: `Use GET for ${path}.` });
      return;
    }
    const name = (summarize(record).eventId ?? record.id).replace(/[^\w.-]/g, "_");
    if (action === "download") {
      res.writeHead(200, {
        "content-type": "application/x-ndjson; charset=utf-8",
        "content-disposition": `attachment; filename="delivery-${name}.jsonl"`,
        "cache-control": "no-store",
      });
      res.end(`${toJsonLine(record)}\n`);
      return;
    }
    if (action === "body") {
      const type = record.headers.find(([key]) => key.toLowerCase() === "content-type")?.[1];
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-disposition": `attachment; filename="body-${name}${type?.includes("json") ? ".json" : ".txt"}"`,
        "cache-control": "no-store",
      });
      res.end(record.body);
      return;
    }
    json(res, 200, await this.detail(record));
  }

  /** Where a copied curl command sends the delivery: the app, else `listen` itself. */
  private target(): string {
    return this.options.forwardTo?.href ?? this.options.receivingUrl;
  }

  /** Everything the page shows for one delivery (its type is the page's `Detail`). */
  async detail(record: DeliveryRecord): Promise<InspectorDetail> {
    const receivedSec = Math.floor(Date.parse(record.receivedAt) / 1000);
    const explanation = await explainDelivery({
      body: record.body,
      headers: record.headers,
      secrets: this.options.secrets,
      now: Number.isFinite(receivedSec) ? receivedSec : Math.floor(Date.now() / 1000),
      ...(this.options.toleranceSec === undefined
        ? {}
        : { toleranceSec: this.options.toleranceSec }),
    });
    const fresh = (await this.options.resign(record)) !== undefined;
    return {
      summary: summarize(record),
      method: record.method,
      path: record.path,
      headers: record.headers,
      bodyText: record.body.toString("utf8"),
      bodyBytes: record.body.byteLength,
      pretty: pretty(record.body),
      explanation,
      ...(record.forward === undefined ? {} : { forward: record.forward }),
      replays: record.replays,
      curl: curlCommand(record, this.target()),
      freshCurl: fresh,
      replay:
        this.options.replay === undefined
          ? {
              possible: false,
              signature: fresh ? "fresh" : "original",
              reason:
                "Replay needs an app to send to: start listen with --forward-to <your app's URL>.",
            }
          : { possible: true, signature: fresh ? "fresh" : "original" },
    };
  }
}
