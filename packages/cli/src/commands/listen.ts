import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createMappaWebhooks,
  createMemoryIdempotencyStore,
  type MappaWebhooks,
  readBodyWithLimit,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import { EXIT_OK, parseCommandArgs, readNumber, readSecrets, UsageError } from "../args.js";
import { CHECK_FOR_CODE, formatKeyData, keyData, plainMessage } from "../explain.js";
import { colorEnabled, createStyle, type Style } from "../output.js";

export const LISTEN_HELP = `Receive webhooks locally: verify and pretty-print every delivery, offline.

Usage
  mappa-webhooks listen [options]

Options
  --port <n>           Port to listen on, 0 for any free one (default 4242)
  --host <host>        Interface to bind (default 127.0.0.1)
  --path <path>        Webhook path (default /webhooks/mappa)
  --secret <secret>    Signing secret (default: $MAPPA_WEBHOOK_SECRET); repeat it to accept
                       several while rotating
  --tolerance <s>      Allowed clock difference in seconds (default 300)
  --json               Print one JSON object per line instead of the readable view
  -h, --help           Show this help

Every delivery is answered the way a real receiver built on @mappa-webhooks answers it:
200 when it verifies (duplicates included), 401 for a signature problem, 400 for a body that is
not an event. A rejected delivery is shown with the check that failed, the reason and a hint.

Example
  mappa-webhooks listen --port 4242 &
  mappa-webhooks trigger report.completed --url http://127.0.0.1:4242/webhooks/mappa`;

const OPTIONS = {
  port: { type: "string" },
  host: { type: "string" },
  path: { type: "string" },
  secret: { type: "string", multiple: true },
  tolerance: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

interface Printer {
  listening(url: string): void;
  delivery(result: WebhookResponse, request: { method: string; path: string }): void;
  notFound(method: string, path: string, webhookPath: string): void;
}

function clock(): string {
  return new Date().toISOString().slice(11, 19);
}

function humanPrinter(style: Style): Printer {
  const write = (line: string) => process.stdout.write(`${line}\n`);
  return {
    listening(url) {
      write(`listening on ${url}`);
      write(
        style.dim(
          `Send a test event: mappa-webhooks trigger report.completed --url ${url}\nPress Ctrl+C to stop.`,
        ),
      );
    },
    delivery(result, request) {
      const time = style.dim(clock());
      const { event, error } = result;
      if (error === undefined && event !== undefined) {
        const duplicate = result.duplicate === true;
        const mark = duplicate ? style.yellow("↺") : style.green("✓");
        const id = event.id ?? "(no id)";
        const note = duplicate
          ? style.yellow("  duplicate: already handled, handlers not run again")
          : event.known
            ? ""
            : style.yellow("  unknown type: accepted and ignored");
        write(
          `${time} ${mark} ${style.green(String(result.status))} ${style.bold(event.type)} ${id}${note}`,
        );
        const data = formatKeyData(keyData(event));
        if (data !== "") write(`           ${style.dim(data)}`);
        return;
      }
      if (error === undefined) {
        write(`${time} ${style.red("✗")} ${result.status} ${request.method} ${request.path}`);
        return;
      }
      write(
        `${time} ${style.red("✗")} ${style.red(String(result.status))} ${style.bold(error.code)}  ${style.red(`✗ ${CHECK_FOR_CODE[error.code]}`)}`,
      );
      write(`           ${plainMessage(error)}`);
      if (error.hint !== undefined) write(`           ${style.yellow(`hint: ${error.hint}`)}`);
    },
    notFound(method, path, webhookPath) {
      write(
        `${style.dim(clock())} ${style.red("✗")} 404 ${method} ${path} ${style.dim(`(webhooks go to POST ${webhookPath})`)}`,
      );
    },
  };
}

function jsonPrinter(): Printer {
  const write = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
  return {
    listening(url) {
      write({ kind: "listening", url });
    },
    delivery(result, request) {
      const { event, error } = result;
      write({
        kind: "delivery",
        time: new Date().toISOString(),
        method: request.method,
        path: request.path,
        status: result.status,
        ok: result.status >= 200 && result.status < 300,
        duplicate: result.duplicate === true,
        ...(event === undefined
          ? {}
          : {
              event: {
                id: event.id,
                type: event.type,
                known: event.known,
                createdAt: event.createdAt,
                idempotencyKey: event.idempotencyKey,
                data: event.data,
              },
            }),
        ...(error === undefined
          ? {}
          : {
              error: {
                code: error.code,
                check: CHECK_FOR_CODE[error.code],
                message: plainMessage(error),
                ...(error.hint === undefined ? {} : { hint: error.hint }),
              },
            }),
      });
    },
    notFound(method, path) {
      write({ kind: "not_found", time: new Date().toISOString(), method, path, status: 404 });
    },
  };
}

async function answer(
  webhooks: MappaWebhooks,
  webhookPath: string,
  printer: Printer,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const method = req.method ?? "GET";
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  if (path !== webhookPath) {
    printer.notFound(method, path, webhookPath);
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: "not_found", message: `Webhooks go to POST ${webhookPath}` }));
    return;
  }
  let result: WebhookResponse;
  try {
    const rawBody = await readBodyWithLimit(req, webhooks.maxBodyBytes);
    result = await webhooks.handle({ method, headers: req.headers, rawBody });
  } catch (error) {
    result = webhooks.errorResponse(error);
  }
  printer.delivery(result, { method, path });
  res.writeHead(result.status, result.headers);
  res.end(result.body);
}

export async function listen(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("listen", argv, OPTIONS, 0);
  if (values.help) {
    process.stdout.write(`${LISTEN_HELP}\n`);
    return EXIT_OK;
  }
  const port =
    readNumber("listen", "port", values.port, { min: 0, max: 65_535, integer: true }) ?? 4242;
  const toleranceSec = readNumber("listen", "tolerance", values.tolerance, { min: 0 });
  const host = values.host ?? "127.0.0.1";
  const webhookPath = values.path ?? "/webhooks/mappa";
  if (!webhookPath.startsWith("/")) {
    throw new UsageError(`--path must start with "/", got "${webhookPath}"`, "listen");
  }
  const secrets = readSecrets("listen", values.secret);
  const webhooks = createMappaWebhooks({
    secret: secrets,
    // Remembers handled events, so a re-sent event shows as a duplicate, as a real receiver sees it.
    idempotency: createMemoryIdempotencyStore(),
    ...(toleranceSec === undefined ? {} : { toleranceSec }),
  });
  const printer = values.json
    ? jsonPrinter()
    : humanPrinter(createStyle(colorEnabled(process.stdout)));

  const server = createServer((req, res) => {
    answer(webhooks, webhookPath, printer, req, res).catch((error: unknown) => {
      process.stderr.write(`listen: ${error instanceof Error ? error.message : String(error)}\n`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  server.listen(port, host);
  try {
    await Promise.race([
      once(server, "listening"),
      once(server, "error").then(([error]) => Promise.reject(error)),
    ]);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "EADDRINUSE") {
      throw new UsageError(
        `port ${port} is already in use; pick another with --port (0 for any free one)`,
        "listen",
      );
    }
    if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND" || code === "EACCES") {
      throw new UsageError(`cannot listen on ${host}:${port} (${code})`, "listen");
    }
    throw error;
  }
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  printer.listening(`http://${shownHost}:${address.port}${webhookPath}`);

  await new Promise<void>((resolve) => {
    const stop = () => {
      server.closeAllConnections();
      server.close(() => resolve());
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  return EXIT_OK;
}
