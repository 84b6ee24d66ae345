import { open } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createMappaWebhooks,
  createMemoryIdempotencyStore,
  type MappaWebhooks,
  readBodyWithLimit,
  signPayload,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import { fixFor, readAnswerBody } from "../answers.js";
import {
  EXIT_OK,
  parseCommandArgs,
  RUN,
  readHttpUrl,
  readNumber,
  readSecrets,
  UsageError,
} from "../args.js";
import { CHECK_FOR_CODE, formatKeyData, keyData, plainMessage } from "../explain.js";
import { findSignatureHeader, signingSecret } from "../inspector/checks.js";
import { endToEnd, type ForwardResult, forward, headerPairs } from "../inspector/forward.js";
import { Inspector } from "../inspector/server.js";
import {
  type DeliveryRecord,
  DeliveryStore,
  loadDeliveries,
  newDeliveryId,
  type Replay,
  type Verdict,
} from "../inspector/store.js";
import { colorEnabled, createStyle, jsonText, type Style, safe } from "../output.js";

export const LISTEN_HELP = `Receive webhooks locally: verify every delivery, forward it to your app, inspect it in a browser.

Usage
  ${RUN} listen [options]

Options
  --port <n>              Port to receive on, 0 for any free one (default 4242)
  --host <host>           Interface to receive on (default 127.0.0.1)
  --path <path>           Webhook path (default /webhooks/mappa)
  --secret <secret>       Signing secret (default: $MAPPA_WEBHOOK_SECRET); repeat it to accept
                          several while rotating
  --tolerance <s>         Allowed clock difference in seconds (default 300)
  --forward-to <url>      Forward every delivery to your app (exact bytes, original headers) and
                          answer the sender with the app's answer, e.g. http://127.0.0.1:3000/webhooks/mappa
                          (a bare host:port, localhost:3000/webhooks/mappa, means http://)
  --forward-timeout <ms>  Give up on the app when its whole answer has not arrived after this
                          long, and answer 504 (default 30000)
  --inspector-port <n>    The inspector's port (default: --port + 1; any free one with --port 0)
  --inspector-host <host> The inspector's interface (default 127.0.0.1: only this machine)
  --no-inspector          Do not serve the inspector
  --keep <n>              Deliveries kept for the inspector, oldest dropped first (default 100)
  --save <file.jsonl>     Append deliveries signed with one of the secrets to this file (one JSON
                          object per line)
  --save-unsigned         Save the others too (anyone who finds a tunnel's URL can post them)
  --save-max <MiB>        Stop saving once the file reaches this size (default 100)
  --load <file.jsonl>     Start with the deliveries of a saved file (to look at or replay them)
  --json                  Print one JSON object per line instead of the readable view
  -h, --help              Show this help

Without --forward-to every delivery is answered the way a receiver built on @mappa-webhooks
answers it: 200 when it verifies (duplicates included), 401 for a signature problem, 400 for a
body that is not an event. With --forward-to it is still verified and shown, but the sender gets
the app's status and body (502 when the app cannot be reached), so retries behave as they would
against the app. The receiving port serves the webhook path only; the inspector (a live list,
each delivery's signature check step by step, replay, copy as curl, download) is on its own
port, printed as "inspector on http://127.0.0.1:<port>/".

An app answer that names a known set-up mistake (body_already_parsed: a JSON body parser ran
before the webhook route) is followed by its fix; an app's {"duplicate":true} is shown as a
duplicate (it did not take the event again), for deliveries and replays alike.

Example
  ${RUN} listen --forward-to http://127.0.0.1:3000/webhooks/mappa &
  ${RUN} trigger report.completed --url http://127.0.0.1:4242/webhooks/mappa`;

const OPTIONS = {
  port: { type: "string" },
  host: { type: "string" },
  path: { type: "string" },
  secret: { type: "string", multiple: true },
  tolerance: { type: "string" },
  "forward-to": { type: "string" },
  "forward-timeout": { type: "string" },
  "inspector-port": { type: "string" },
  "inspector-host": { type: "string" },
  "no-inspector": { type: "boolean" },
  keep: { type: "string" },
  save: { type: "string" },
  "save-unsigned": { type: "boolean" },
  "save-max": { type: "string" },
  load: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** How many replays of one delivery are kept. */
const MAX_REPLAYS = 20;

interface Printer {
  listening(url: string, forwardTo: URL | undefined): void;
  inspector(url: string, exposed: boolean): void;
  loaded(count: number, file: string): void;
  delivery(record: DeliveryRecord, forwarding: boolean): void;
  replay(record: DeliveryRecord, replay: Replay): void;
  notFound(method: string, path: string, webhookPath: string): void;
  saveFull(file: string, maxBytes: number): void;
}

function clock(): string {
  return new Date().toISOString().slice(11, 19);
}

/** `200`, `200 duplicate`, `500 body_already_parsed`: the app's answer, safe to print. */
function answerText(answer: ForwardResult): string {
  if (answer.status === undefined) return safe(`unreachable: ${answer.error ?? "network error"}`);
  const body = readAnswerBody(answer.body);
  if (answer.status >= 200 && answer.status < 300 && body.duplicate)
    return `${answer.status} duplicate`;
  return body.error === undefined || answer.status < 300
    ? String(answer.status)
    : `${answer.status} ${safe(body.error)}`;
}

/** The fix for what the app's error answer names (its own `fix`, or body_already_parsed). */
function answerFix(answer: ForwardResult | undefined): string | undefined {
  if (answer?.status === undefined || answer.status < 300) return undefined;
  const body = readAnswerBody(answer.body);
  const fix = fixFor(body);
  return fix === undefined ? undefined : safe(`${body.error ?? `app ${answer.status}`}: ${fix}`);
}

const isDuplicate = (answer: ForwardResult | undefined) =>
  answer?.status !== undefined &&
  answer.status >= 200 &&
  answer.status < 300 &&
  readAnswerBody(answer.body).duplicate;

/** A warning when the app's answer and our verification disagree. */
function disagreement(record: DeliveryRecord): string | undefined {
  const status = record.forward?.status;
  if (status === undefined) return undefined;
  const appAccepted = status >= 200 && status < 300;
  if (!record.verdict.ok && appAccepted && record.verdict.status === 401) {
    return "the app accepted a delivery whose signature does not verify: it does not check signatures";
  }
  if (record.verdict.ok && status === 401) {
    return "the app rejected a delivery that verifies: a different secret in the app, or it verifies a re-serialised body";
  }
  return undefined;
}

function humanPrinter(style: Style): Printer {
  const write = (line: string) => process.stdout.write(`${line}\n`);
  const appPart = (answer: ForwardResult | undefined, sent: number) => {
    if (answer === undefined) return "";
    const text = answerText(answer);
    if (answer.status === undefined) {
      return `  → app ${style.red(text)} ${style.dim(`(answered ${sent})`)}`;
    }
    const status = answer.status < 300 ? style.green(text) : style.red(text);
    return `  → app ${status} ${style.dim(`${answer.latencyMs} ms`)}`;
  };
  const hintLines = (answer: ForwardResult | undefined) => {
    const fix = answerFix(answer);
    if (fix !== undefined) write(`           ${style.yellow(`hint: ${fix}`)}`);
    if (isDuplicate(answer)) {
      write(
        `           ${style.dim("the app already had this event: it did not take it again (handled before, or stored for a worker)")}`,
      );
    }
  };
  return {
    listening(url, forwardTo) {
      write(`listening on ${url}`);
      if (forwardTo !== undefined) write(`forwarding to ${forwardTo.href}`);
    },
    inspector(url, exposed) {
      write(`inspector on ${url}`);
      if (exposed) {
        write(
          style.yellow(
            "warning: the inspector is reachable from other machines: anyone who can reach it can read payloads and fire replays",
          ),
        );
      }
    },
    loaded(count, file) {
      write(style.dim(`loaded ${count} deliver${count === 1 ? "y" : "ies"} from ${file}`));
    },
    delivery(record, forwarding) {
      const time = style.dim(clock());
      const { verdict } = record;
      const app = forwarding ? appPart(record.forward, sentStatus(record)) : "";
      // Forwarding, the sender gets the app's answer: our own status would only mislead.
      if (verdict.ok && verdict.event !== undefined) {
        const duplicate = verdict.duplicate === true;
        const mark = duplicate ? style.yellow("↺") : style.green("✓");
        const id = safe(verdict.event.id ?? "(no id)");
        const note = duplicate
          ? style.yellow(
              forwarding
                ? "  duplicate: this event was delivered before"
                : "  duplicate: already received, handlers not run again",
            )
          : verdict.event.known
            ? ""
            : style.yellow("  unknown type: accepted and ignored");
        const status = forwarding ? "verified" : String(verdict.status);
        write(
          `${time} ${mark} ${style.green(status)} ${style.bold(safe(verdict.event.type))} ${id}${note}${app}`,
        );
        const data = formatKeyData(verdict.event.data ?? {});
        if (data !== "") write(`           ${style.dim(safe(data))}`);
      } else if (verdict.code === undefined) {
        const status = forwarding ? "" : ` ${verdict.status}`;
        write(
          `${time} ${style.red("✗")}${status} ${safe(record.method)} ${safe(record.path)}${app}`,
        );
      } else {
        const status = forwarding ? "" : ` ${style.red(String(verdict.status))}`;
        write(
          `${time} ${style.red("✗")}${status} ${style.bold(verdict.code)}  ${style.red(`✗ ${verdict.check}`)}${app}`,
        );
        write(`           ${safe(verdict.message ?? "")}`);
        if (verdict.hint !== undefined)
          write(`           ${style.yellow(`hint: ${safe(verdict.hint)}`)}`);
      }
      if (forwarding) hintLines(record.forward);
      const warning = disagreement(record);
      if (warning !== undefined) write(`           ${style.yellow(`⚠ ${warning}`)}`);
    },
    replay(record, replay) {
      const type = safe(record.verdict.event?.type ?? "delivery");
      const text = answerText(replay);
      const status =
        replay.status !== undefined && replay.status < 300 ? style.green(text) : style.red(text);
      write(
        `${style.dim(clock())} ↻ replayed ${style.bold(type)} ${safe(record.verdict.event?.id ?? record.id)} (${replay.signature} signature)  → app ${status} ${style.dim(`${replay.latencyMs} ms`)}`,
      );
      hintLines(replay);
    },
    notFound(method, path, webhookPath) {
      write(
        `${style.dim(clock())} ${style.red("✗")} 404 ${safe(method)} ${safe(path)} ${style.dim(`(webhooks go to POST ${webhookPath})`)}`,
      );
    },
    saveFull(file, maxBytes) {
      write(
        style.yellow(
          `warning: ${file} reached ${Number((maxBytes / 1024 / 1024).toFixed(2))} MiB (--save-max): later deliveries are not saved`,
        ),
      );
    },
  };
}

function forwardJson(answer: ForwardResult) {
  return {
    url: answer.url,
    latencyMs: answer.latencyMs,
    ...(answer.status === undefined ? {} : { status: answer.status }),
    ...(isDuplicate(answer) ? { duplicate: true } : {}),
    ...(answer.error === undefined ? {} : { error: answer.error, errorCode: answer.errorCode }),
    ...(answerFix(answer) === undefined ? {} : { fix: answerFix(answer) }),
  };
}

function jsonPrinter(): Printer {
  const write = (value: unknown) => process.stdout.write(`${jsonText(value)}\n`);
  return {
    listening(url, forwardTo) {
      write({
        kind: "listening",
        url,
        ...(forwardTo === undefined ? {} : { forwardTo: forwardTo.href }),
      });
    },
    inspector(url) {
      write({ kind: "inspector", url });
    },
    loaded(count, file) {
      write({ kind: "loaded", count, file });
    },
    delivery(record) {
      const { verdict } = record;
      const warning = disagreement(record);
      write({
        kind: "delivery",
        id: record.id,
        time: record.receivedAt,
        method: record.method,
        path: record.path,
        status: verdict.status,
        ok: verdict.ok,
        duplicate: verdict.duplicate === true,
        ...(verdict.event === undefined ? {} : { event: verdict.event }),
        ...(verdict.code === undefined
          ? {}
          : {
              error: {
                code: verdict.code,
                check: verdict.check,
                message: verdict.message,
                ...(verdict.hint === undefined ? {} : { hint: verdict.hint }),
              },
            }),
        ...(record.forward === undefined
          ? {}
          : { forward: forwardJson(record.forward), answered: sentStatus(record) }),
        ...(warning === undefined ? {} : { warning }),
      });
    },
    replay(record, replay) {
      write({
        kind: "replay",
        id: record.id,
        time: replay.at,
        signature: replay.signature,
        ...forwardJson(replay),
      });
    },
    notFound(method, path) {
      write({ kind: "not_found", time: new Date().toISOString(), method, path, status: 404 });
    },
    saveFull(file, maxBytes) {
      write({ kind: "save_full", file, maxBytes });
    },
  };
}

/** What the sender was answered when the delivery was forwarded. */
function sentStatus(record: DeliveryRecord): number {
  const answer = record.forward;
  if (answer === undefined) return record.verdict.status;
  if (answer.status !== undefined) return answer.status;
  return answer.errorCode === "TIMEOUT" ? 504 : 502;
}

function verdictOf(result: WebhookResponse): Verdict {
  const ok = result.status >= 200 && result.status < 300;
  const verdict: Verdict = { ok, status: result.status };
  if (result.duplicate === true) verdict.duplicate = true;
  const { event, error } = result;
  if (event !== undefined) {
    verdict.event = {
      type: event.type,
      known: event.known,
      data: keyData(event),
      ...(event.id === undefined ? {} : { id: event.id }),
      ...(event.idempotencyKey === undefined ? {} : { idempotencyKey: event.idempotencyKey }),
      ...(event.createdAt === undefined ? {} : { createdAt: event.createdAt }),
      ...(event.timestamp === undefined ? {} : { timestamp: event.timestamp }),
      ...(event.occurredAt === undefined ? {} : { occurredAt: event.occurredAt }),
    };
  }
  if (error !== undefined) {
    verdict.code = error.code;
    verdict.check =
      (CHECK_FOR_CODE as Record<string, string | undefined>)[error.code] ?? error.code;
    verdict.message = plainMessage(error);
    if (error.hint !== undefined) verdict.hint = error.hint;
  }
  return verdict;
}

interface Context {
  webhooks: MappaWebhooks;
  webhookPath: string;
  printer: Printer;
  store: DeliveryStore;
  forwardTo: URL | undefined;
  forwardTimeoutMs: number;
  secrets: readonly string[];
}

function forwardTarget(base: URL, requestPath: string): URL {
  const target = new URL(base.href);
  const search = new URL(requestPath, "http://localhost").search;
  if (target.search === "" && search !== "") target.search = search;
  return target;
}

async function receive(ctx: Context, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? "GET";
  const requestPath = req.url ?? "/";
  const path = new URL(requestPath, "http://localhost").pathname;
  if (path !== ctx.webhookPath) {
    ctx.printer.notFound(method, path, ctx.webhookPath);
    res.writeHead(404, { "content-type": "application/json" });
    res.end(
      JSON.stringify({ error: "not_found", message: `Webhooks go to POST ${ctx.webhookPath}` }),
    );
    return;
  }
  const { webhooks } = ctx;
  let body = Buffer.alloc(0);
  let result: WebhookResponse;
  let bodyRead = false;
  try {
    const raw = await readBodyWithLimit(req, webhooks.maxBodyBytes, {
      timeoutMs: webhooks.bodyTimeoutMs,
    });
    body = Buffer.from(raw);
    bodyRead = true;
    result = await webhooks.handle({ method, headers: req.headers, rawBody: body });
  } catch (error) {
    result = webhooks.errorResponse(error);
  }
  const record: DeliveryRecord = {
    id: newDeliveryId(),
    receivedAt: new Date().toISOString(),
    method,
    path: requestPath,
    headers: headerPairs(req.rawHeaders),
    body,
    verdict: verdictOf(result),
    replays: [],
    signed:
      result.status < 300 ||
      (await signingSecret(body, headerPairs(req.rawHeaders), ctx.secrets)) !== undefined,
  };
  const key = record.verdict.event?.idempotencyKey;
  if (key !== undefined) {
    const first = ctx.store.firstCarrier(key, record.id);
    if (first !== undefined && record.verdict.duplicate === true)
      record.verdict.duplicateOf = first;
  }
  const forwarding = ctx.forwardTo !== undefined && method === "POST" && bodyRead;
  if (forwarding) record.pending = true;
  ctx.store.add(record);

  if (!forwarding || ctx.forwardTo === undefined) {
    ctx.printer.delivery(record, false);
    res.writeHead(result.status, result.headers);
    res.end(result.body);
    await ctx.store.update(record);
    return;
  }

  const answer = await forward({
    url: forwardTarget(ctx.forwardTo, requestPath),
    method,
    headers: record.headers,
    body,
    timeoutMs: ctx.forwardTimeoutMs,
  });
  const { raw, ...kept } = answer;
  record.forward = kept;
  delete record.pending;
  ctx.printer.delivery(record, true);
  if (answer.status === undefined) {
    const status = sentStatus(record);
    res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
    res.end(
      JSON.stringify({
        error: status === 504 ? "app_timeout" : "app_unreachable",
        message: `mappa-webhooks listen could not get an answer from ${answer.url}: ${answer.error ?? "network error"}`,
      }),
    );
  } else {
    const flat: string[] = [];
    for (const [name, value] of endToEnd(answer.headers ?? [])) flat.push(name, value);
    const answerBody = raw ?? Buffer.alloc(0);
    flat.push("Content-Length", String(answerBody.byteLength));
    res.writeHead(answer.status, flat);
    res.end(answerBody);
  }
  await ctx.store.update(record);
}

async function bind(server: Server, port: number, host: string): Promise<AddressInfo> {
  server.listen(port, host);
  await Promise.race([
    new Promise((resolve) => server.once("listening", resolve)),
    new Promise((_, reject) => server.once("error", reject)),
  ]);
  return server.address() as AddressInfo;
}

function listenError(error: unknown, what: string, host: string, port: number, flag: string) {
  const code = (error as { code?: string }).code;
  if (code === "EADDRINUSE") {
    return new UsageError(
      `${what}port ${port} is already in use; pick another with ${flag} (0 for any free one)`,
      "listen",
    );
  }
  if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND" || code === "EACCES") {
    return new UsageError(`cannot listen on ${host}:${port} (${code})`, "listen");
  }
  return error;
}

function readForwardTo(value: string | undefined): URL | undefined {
  return value === undefined ? undefined : readHttpUrl("listen", "--forward-to", value);
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
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
  const forwardTo = readForwardTo(values["forward-to"]);
  const forwardTimeoutMs =
    readNumber("listen", "forward-timeout", values["forward-timeout"], { min: 1 }) ?? 30_000;
  const inspectorPort =
    readNumber("listen", "inspector-port", values["inspector-port"], {
      min: 0,
      max: 65_535,
      integer: true,
    }) ?? (port === 0 || port === 65_535 ? 0 : port + 1);
  const inspectorHost = values["inspector-host"] ?? "127.0.0.1";
  const keep =
    readNumber("listen", "keep", values.keep, { min: 1, max: 100_000, integer: true }) ?? 100;
  const saveMaxMiB = readNumber("listen", "save-max", values["save-max"], { min: 0.001 }) ?? 100;
  if (values.save === undefined && (values["save-max"] !== undefined || values["save-unsigned"])) {
    throw new UsageError("--save-max and --save-unsigned need --save <file.jsonl>", "listen");
  }
  if (
    values["no-inspector"] &&
    (values["inspector-port"] !== undefined || values["inspector-host"] !== undefined)
  ) {
    throw new UsageError(
      "--no-inspector cannot be combined with --inspector-port/--inspector-host",
      "listen",
    );
  }

  const loaded =
    values.load === undefined
      ? []
      : await loadDeliveries(values.load).catch((error: unknown) => {
          const code = (error as { code?: string }).code;
          throw new UsageError(
            code === "ENOENT"
              ? `cannot read --load ${values.load}: no such file`
              : `cannot load --load ${values.load}: ${(error as Error).message}`,
            "listen",
          );
        });
  if (values.save !== undefined) {
    // Fail now, not at the first delivery, when the file cannot be written.
    const handle = await open(values.save, "a").catch((error: unknown) => {
      throw new UsageError(
        `cannot write --save ${values.save}: ${(error as { code?: string }).code ?? String(error)}`,
        "listen",
      );
    });
    await handle.close();
  }

  const webhooks = createMappaWebhooks({
    secret: secrets,
    // Remembers handled events, so a re-sent event shows as a duplicate, as a real receiver sees it.
    idempotency: createMemoryIdempotencyStore(),
    // listen prints every delivery itself; the receiver's own failure lines would repeat them.
    logger: false,
    ...(toleranceSec === undefined ? {} : { toleranceSec }),
  });
  const printer = values.json
    ? jsonPrinter()
    : humanPrinter(createStyle(colorEnabled(process.stdout)));
  const store = new DeliveryStore(
    keep,
    values.save === undefined
      ? undefined
      : {
          file: values.save,
          unsigned: values["save-unsigned"] === true,
          maxBytes: Math.round(saveMaxMiB * 1024 * 1024),
          onFull: () =>
            printer.saveFull(values.save as string, Math.round(saveMaxMiB * 1024 * 1024)),
        },
  );
  await store.openSaveFile();
  store.addLoaded(loaded);
  const ctx: Context = {
    webhooks,
    webhookPath,
    printer,
    store,
    forwardTo,
    forwardTimeoutMs,
    secrets,
  };

  const server = createServer((req, res) => {
    receive(ctx, req, res).catch((error: unknown) => {
      process.stderr.write(`listen: ${error instanceof Error ? error.message : String(error)}\n`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  let address: AddressInfo;
  try {
    address = await bind(server, port, host);
  } catch (error) {
    throw listenError(error, "", host, port, "--port");
  }
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const receivingUrl = `http://${shownHost}:${address.port}${webhookPath}`;

  /** A fresh signature for a delivery one of the secrets signed, with that secret. */
  const resign = async (record: DeliveryRecord) => {
    const secret = await signingSecret(record.body, record.headers, secrets);
    const found = findSignatureHeader(record.headers);
    if (secret === undefined || found === undefined) return undefined;
    return { name: found.name, value: await signPayload({ payload: record.body, secret }) };
  };
  let inspector: Inspector | undefined;
  let inspectorUrl: string | undefined;
  if (!values["no-inspector"]) {
    const replay =
      forwardTo === undefined
        ? undefined
        : async (record: DeliveryRecord): Promise<Replay> => {
            const replace = await resign(record);
            const answer = await forward({
              url: forwardTarget(forwardTo, record.path),
              method: record.method,
              headers: record.headers,
              body: record.body,
              timeoutMs: forwardTimeoutMs,
              ...(replace === undefined ? {} : { replace }),
            });
            const { raw: _raw, ...kept } = answer;
            const result: Replay = {
              ...kept,
              signature: replace === undefined ? "original" : "fresh",
            };
            record.replays.push(result);
            if (record.replays.length > MAX_REPLAYS) record.replays.shift();
            printer.replay(record, result);
            await store.update(record);
            return result;
          };
    inspector = new Inspector(
      {
        store,
        secrets,
        receivingUrl,
        resign,
        ...(toleranceSec === undefined ? {} : { toleranceSec }),
        ...(forwardTo === undefined ? {} : { forwardTo }),
        ...(replay === undefined ? {} : { replay }),
      },
      inspectorHost,
    );
    try {
      inspectorUrl = await inspector.listen(inspectorPort);
    } catch (error) {
      server.close();
      const wrapped = listenError(
        error,
        "the inspector's ",
        inspectorHost,
        inspectorPort,
        "--inspector-port",
      );
      if (wrapped instanceof UsageError) {
        throw new UsageError(`${wrapped.message}, or pass --no-inspector`, "listen");
      }
      throw wrapped;
    }
  }

  printer.listening(receivingUrl, forwardTo);
  if (inspectorUrl !== undefined) printer.inspector(inspectorUrl, !isLoopback(inspectorHost));
  if (values.load !== undefined) printer.loaded(loaded.length, values.load);
  if (!values.json) {
    process.stdout.write(
      `${createStyle(colorEnabled(process.stdout)).dim(
        `Send a test event: ${RUN} trigger report.completed --url ${receivingUrl}\nPress Ctrl+C to stop.`,
      )}\n`,
    );
  }

  await new Promise<void>((resolve) => {
    const stop = () => {
      inspector?.close();
      server.closeAllConnections();
      server.close(() => resolve());
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  return EXIT_OK;
}
