// A loopback HTTP front door for Lambda handlers: a real node:http server on 127.0.0.1 that
// reads each real HTTP request, turns it into the event one AWS source would send (REST API,
// HTTP API payload 2.0, function URL, ALB with or without multi-value headers), invokes the
// handler in-process with a Lambda context, and writes the result back the way that source
// reads it (ALB reads only `multiValueHeaders` when they are on, only `headers` when off).
// It is not AWS: it reproduces the documented event and result shapes, so the adapter is
// exercised over real HTTP with everything a client can send (chunked bodies, any headers).
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ConformanceApp } from "@mappa-webhooks/conformance";
import type { ALBEvent, APIGatewayProxyEvent, APIGatewayProxyEventV2, Context } from "aws-lambda";

export type EventSource = "rest" | "http-v2" | "function-url" | "alb" | "alb-multi";

/** How the source decides whether to base64-encode the body. */
export type BodyEncoding = "text" | "binary" | "by-content-type";

// biome-ignore lint/suspicious/noExplicitAny: the handler under test takes every event shape
export type AnyLambdaHandler = (event: any, context: Context) => Promise<any>;

/** AWS caps a synchronous Lambda payload at 6 MB; the front door answers 413 past that. */
const FRONT_DOOR_LIMIT = 6 * 1024 * 1024;

const TEXT_TYPES =
  /^(text\/|application\/(json|javascript|xml|x-www-form-urlencoded)\b)|\+(json|xml)\b/i;

function encodeBody(bytes: Buffer, contentType: string | undefined, encoding: BodyEncoding) {
  if (bytes.byteLength === 0) return { body: null, isBase64Encoded: false };
  const binary =
    encoding === "binary" ||
    (encoding === "by-content-type" && !TEXT_TYPES.test(contentType ?? ""));
  // As text, the source hands over the bytes decoded as UTF-8 (lossy for non-UTF-8 bytes).
  return binary
    ? { body: bytes.toString("base64"), isBase64Encoded: true }
    : { body: bytes.toString("utf8"), isBase64Encoded: false };
}

/** Header names as the client sent them (`rawHeaders`), for the sources that keep the case. */
function rawHeaderPairs(req: IncomingMessage): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    pairs.push([req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string]);
  }
  return pairs;
}

export function lambdaContext(): Context {
  const started = Date.now();
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: "mappa-webhooks",
    functionVersion: "$LATEST",
    invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:mappa-webhooks",
    memoryLimitInMB: "256",
    awsRequestId: randomUUID(),
    logGroupName: "/aws/lambda/mappa-webhooks",
    logStreamName: "2026/01/17/[$LATEST]0123456789abcdef",
    getRemainingTimeInMillis: () => Math.max(0, 30_000 - (Date.now() - started)),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

export function toEvent(
  source: EventSource,
  req: IncomingMessage,
  bytes: Buffer,
  encoding: BodyEncoding,
): APIGatewayProxyEvent | APIGatewayProxyEventV2 | ALBEvent {
  const url = new URL(req.url ?? "/", "http://localhost");
  const method = req.method ?? "GET";
  const pairs = rawHeaderPairs(req);
  const { body, isBase64Encoded } = encodeBody(bytes, req.headers["content-type"], encoding);
  const now = new Date();
  if (source === "rest") {
    // REST APIs keep the header names' case; `headers` holds the last value of each.
    const headers: Record<string, string> = {};
    const multiValueHeaders: Record<string, string[]> = {};
    for (const [name, value] of pairs) {
      headers[name] = value;
      const values = multiValueHeaders[name] ?? [];
      values.push(value);
      multiValueHeaders[name] = values;
    }
    return {
      resource: "/{proxy+}",
      path: url.pathname,
      httpMethod: method,
      headers,
      multiValueHeaders,
      queryStringParameters: null,
      multiValueQueryStringParameters: null,
      pathParameters: { proxy: url.pathname.slice(1) },
      stageVariables: null,
      requestContext: {
        accountId: "123456789012",
        apiId: "gy415nuibc",
        authorizer: undefined,
        protocol: "HTTP/1.1",
        httpMethod: method,
        identity: {
          accessKey: null,
          accountId: null,
          apiKey: null,
          apiKeyId: null,
          caller: null,
          clientCert: null,
          cognitoAuthenticationProvider: null,
          cognitoAuthenticationType: null,
          cognitoIdentityId: null,
          cognitoIdentityPoolId: null,
          principalOrgId: null,
          sourceIp: "127.0.0.1",
          user: null,
          userAgent: req.headers["user-agent"] ?? null,
          userArn: null,
        },
        path: `/prod${url.pathname}`,
        stage: "prod",
        requestId: randomUUID(),
        requestTimeEpoch: now.getTime(),
        resourceId: "roq9wj",
        resourcePath: "/{proxy+}",
      },
      body,
      isBase64Encoded,
    };
  }
  if (source === "http-v2" || source === "function-url") {
    // Payload 2.0: lower-case names, duplicates joined with commas, cookies apart.
    const headers: Record<string, string> = {};
    const cookies: string[] = [];
    for (const [name, value] of pairs) {
      const key = name.toLowerCase();
      if (key === "cookie") {
        cookies.push(...value.split(/;\s*/));
        continue;
      }
      headers[key] = headers[key] === undefined ? value : `${headers[key]},${value}`;
    }
    const functionUrl = source === "function-url";
    const event: APIGatewayProxyEventV2 = {
      version: "2.0",
      routeKey: functionUrl ? "$default" : `${method} ${url.pathname}`,
      rawPath: url.pathname,
      rawQueryString: url.search.slice(1),
      headers,
      requestContext: {
        accountId: functionUrl ? "anonymous" : "123456789012",
        apiId: functionUrl ? "abcdefghijklmnop" : "aaaaaaaaaa",
        domainName: functionUrl
          ? "abcdefghijklmnop.lambda-url.us-east-1.on.aws"
          : "aaaaaaaaaa.execute-api.us-east-1.amazonaws.com",
        domainPrefix: functionUrl ? "abcdefghijklmnop" : "aaaaaaaaaa",
        http: {
          method,
          path: url.pathname,
          protocol: "HTTP/1.1",
          sourceIp: "127.0.0.1",
          userAgent: req.headers["user-agent"] ?? "",
        },
        requestId: randomUUID(),
        routeKey: functionUrl ? "$default" : `${method} ${url.pathname}`,
        stage: "$default",
        time: now.toUTCString(),
        timeEpoch: now.getTime(),
      },
      isBase64Encoded,
    };
    if (cookies.length > 0) event.cookies = cookies;
    if (body !== null) event.body = body;
    return event;
  }
  // ALB: lower-case names; with multi-value headers on, only `multiValueHeaders` is sent.
  const event: ALBEvent = {
    requestContext: {
      elb: {
        targetGroupArn:
          "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/mappa/6d0ecf831eec9f09",
      },
    },
    httpMethod: method,
    path: url.pathname,
    body: body ?? "",
    isBase64Encoded,
  };
  if (source === "alb-multi") {
    const multiValueHeaders: Record<string, string[]> = {};
    for (const [name, value] of pairs) {
      const key = name.toLowerCase();
      multiValueHeaders[key] = [...(multiValueHeaders[key] ?? []), value];
    }
    event.multiValueQueryStringParameters = {};
    event.multiValueHeaders = multiValueHeaders;
  } else {
    const headers: Record<string, string> = {};
    for (const [name, value] of pairs) headers[name.toLowerCase()] = value;
    event.queryStringParameters = {};
    event.headers = headers;
  }
  return event;
}

interface AnyResult {
  statusCode?: number;
  statusDescription?: string;
  headers?: Record<string, string | number | boolean>;
  multiValueHeaders?: Record<string, Array<string | number | boolean>>;
  cookies?: string[];
  body?: string;
  isBase64Encoded?: boolean;
}

/** Writes a handler's result the way the source reads it. */
export function writeResult(source: EventSource, result: AnyResult, res: ServerResponse): void {
  const headers = new Map<string, string[]>();
  const single = source !== "alb-multi" ? (result.headers ?? {}) : {};
  const multi = source === "rest" || source === "alb-multi" ? (result.multiValueHeaders ?? {}) : {};
  for (const [name, value] of Object.entries(single))
    headers.set(name.toLowerCase(), [String(value)]);
  // REST APIs merge both, and `multiValueHeaders` wins for a name in both.
  for (const [name, values] of Object.entries(multi)) {
    headers.set(name.toLowerCase(), values.map(String));
  }
  if (source === "http-v2" || source === "function-url") {
    if (result.cookies !== undefined) headers.set("set-cookie", result.cookies);
  }
  if (source === "alb" || source === "alb-multi") {
    // An ALB answers 502 to a result without a well-formed statusDescription.
    if (!/^\d{3} \S/.test(result.statusDescription ?? "")) {
      res.writeHead(502, { "content-type": "text/plain" }).end("bad statusDescription");
      return;
    }
  }
  const status = result.statusCode ?? 200;
  for (const [name, values] of headers) res.setHeader(name, values);
  const body =
    result.body === undefined
      ? Buffer.alloc(0)
      : Buffer.from(result.body, result.isBase64Encoded === true ? "base64" : "utf8");
  res.statusCode = status;
  res.end(body);
}

async function readAll(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.byteLength;
    if (total > FRONT_DOOR_LIMIT) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Serves `handler` on 127.0.0.1:0 behind the given source's event shape. */
export async function serveLambda(
  handler: AnyLambdaHandler,
  source: EventSource,
  encoding: BodyEncoding = "by-content-type",
): Promise<ConformanceApp & { server: Server; baseUrl: string }> {
  const server = createServer((req, res) => {
    readAll(req)
      .then(async (bytes) => {
        if (bytes === undefined) {
          res.writeHead(413, { connection: "close" }).end();
          return;
        }
        const result = (await handler(
          toEvent(source, req, bytes, encoding),
          lambdaContext(),
        )) as AnyResult;
        writeResult(source, result, res);
      })
      .catch(() => {
        // An invocation error: the front door answers 502, as API Gateway and ALB do.
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end("invocation failed");
      });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    server,
    baseUrl,
    webhookUrl: `${baseUrl}/webhooks/mappa`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
