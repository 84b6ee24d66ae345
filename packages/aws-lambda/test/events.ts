// Sample events in the shapes AWS documents for each source (API Gateway developer guide:
// "Input format of a Lambda function for proxy integration" and "HTTP API payload format 2.0";
// Lambda developer guide: "Function URL request payload"; Elastic Load Balancing guide:
// "Receive events from the load balancer", with and without multi-value headers), carrying a
// Mappa delivery as their body.
import type { ALBEvent, APIGatewayProxyEvent, APIGatewayProxyEventV2 } from "aws-lambda";

export interface Delivery {
  /** The body exactly as Mappa sent it. */
  bytes: Buffer;
  /** Header names as a client sent them. */
  headers: Record<string, string>;
}

function asBody(bytes: Buffer, base64: boolean) {
  return base64 ? bytes.toString("base64") : bytes.toString("utf8");
}

/** API Gateway REST API, Lambda proxy integration (payload 1.0): header names keep their case. */
export function restApiEvent(
  delivery: Delivery,
  options: { base64?: boolean; method?: string; multiValue?: boolean } = {},
): APIGatewayProxyEvent {
  const headers: Record<string, string> = {
    Accept: "*/*",
    "Accept-Encoding": "gzip, deflate",
    "CloudFront-Forwarded-Proto": "https",
    "CloudFront-Viewer-Country": "US",
    Host: "gy415nuibc.execute-api.us-east-1.amazonaws.com",
    "User-Agent": "Mappa-Webhooks/1.0",
    Via: "1.1 d98420743a69852491bbdea73f7680bd.cloudfront.net (CloudFront)",
    "X-Amz-Cf-Id": "pn-PWIJc6thYnZm5P0NMgOUglL1DYtl0gdeJky8tqsg8iS_sgsKD1A==",
    "X-Amzn-Trace-Id": "Root=1-5e66d96f-7491f09xmpl79d18acf3d050",
    "X-Forwarded-For": "54.240.196.186, 54.182.214.83",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Proto": "https",
    ...delivery.headers,
  };
  const multiValueHeaders: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(headers)) multiValueHeaders[name] = [value];
  const method = options.method ?? "POST";
  const event: APIGatewayProxyEvent = {
    resource: "/webhooks/mappa",
    path: "/webhooks/mappa",
    httpMethod: method,
    headers,
    multiValueHeaders,
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    requestContext: {
      accountId: "123456789012",
      apiId: "gy415nuibc",
      authorizer: undefined,
      domainName: "gy415nuibc.execute-api.us-east-1.amazonaws.com",
      domainPrefix: "gy415nuibc",
      extendedRequestId: "BQGojGyXoAMFhxQ=",
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
        sourceIp: "54.240.196.186",
        user: null,
        userAgent: "Mappa-Webhooks/1.0",
        userArn: null,
      },
      path: "/prod/webhooks/mappa",
      protocol: "HTTP/1.1",
      requestId: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
      requestTime: "17/Jan/2026:12:05:00 +0000",
      requestTimeEpoch: 1768651500000,
      resourceId: "roq9wj",
      resourcePath: "/webhooks/mappa",
      stage: "prod",
    },
    body: delivery.bytes.byteLength === 0 ? null : asBody(delivery.bytes, options.base64 === true),
    isBase64Encoded: options.base64 === true,
  };
  // Events written by hand or by older tooling may lack the multi-value map.
  if (options.multiValue === false)
    delete (event as Partial<APIGatewayProxyEvent>).multiValueHeaders;
  return event;
}

/** API Gateway HTTP API with payload format 1.0: the REST shape plus `version: "1.0"`. */
export function httpApiV1Event(delivery: Delivery, options: { base64?: boolean } = {}) {
  const event = restApiEvent(
    { bytes: delivery.bytes, headers: lowerCased(delivery.headers) },
    options,
  );
  return { version: "1.0", ...event } as APIGatewayProxyEvent & { version: string };
}

function lowerCased(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value;
  return out;
}

/** API Gateway HTTP API, payload format 2.0: lower-case header names, cookies apart. */
export function httpApiV2Event(
  delivery: Delivery,
  options: { base64?: boolean; method?: string } = {},
): APIGatewayProxyEventV2 {
  const method = options.method ?? "POST";
  const event: APIGatewayProxyEventV2 = {
    version: "2.0",
    routeKey: "POST /webhooks/mappa",
    rawPath: "/webhooks/mappa",
    rawQueryString: "",
    cookies: ["session=abc123"],
    headers: {
      accept: "*/*",
      "content-length": String(delivery.bytes.byteLength),
      host: "aaaaaaaaaa.execute-api.us-east-1.amazonaws.com",
      "user-agent": "Mappa-Webhooks/1.0",
      "x-amzn-trace-id": "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c",
      "x-forwarded-for": "1.2.3.4",
      "x-forwarded-port": "443",
      "x-forwarded-proto": "https",
      ...lowerCased(delivery.headers),
    },
    requestContext: {
      accountId: "123456789012",
      apiId: "aaaaaaaaaa",
      domainName: "aaaaaaaaaa.execute-api.us-east-1.amazonaws.com",
      domainPrefix: "aaaaaaaaaa",
      http: {
        method,
        path: "/webhooks/mappa",
        protocol: "HTTP/1.1",
        sourceIp: "1.2.3.4",
        userAgent: "Mappa-Webhooks/1.0",
      },
      requestId: "LV7fzho-PHcEJPw=",
      routeKey: "POST /webhooks/mappa",
      stage: "$default",
      time: "17/Jan/2026:12:05:00 +0000",
      timeEpoch: 1768651500000,
    },
    isBase64Encoded: options.base64 === true,
  };
  if (delivery.bytes.byteLength > 0) event.body = asBody(delivery.bytes, options.base64 === true);
  return event;
}

/** Lambda function URL: the payload 2.0 shape, `$default` route, IAM or no authorizer. */
export function functionUrlEvent(
  delivery: Delivery,
  options: { base64?: boolean; method?: string } = {},
): APIGatewayProxyEventV2 {
  const event = httpApiV2Event(delivery, options);
  event.routeKey = "$default";
  event.requestContext.routeKey = "$default";
  event.requestContext.apiId = "abcdefghijklmnopqrstuvwxyz";
  event.requestContext.domainName = "abcdefghijklmnopqrstuvwxyz.lambda-url.us-west-2.on.aws";
  event.requestContext.domainPrefix = "abcdefghijklmnopqrstuvwxyz";
  event.headers.host = "abcdefghijklmnopqrstuvwxyz.lambda-url.us-west-2.on.aws";
  delete event.cookies;
  return event;
}

const TARGET_GROUP =
  "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/lambda-279XGJDqGZ5rsrHC2Fjr/49e9d65c45c6791a";

/** ALB target: lower-case names; `headers` only, or `multiValueHeaders` only when turned on. */
export function albEvent(
  delivery: Delivery,
  options: { base64?: boolean; method?: string; multiValue?: boolean } = {},
): ALBEvent {
  const headers: Record<string, string> = {
    accept: "*/*",
    connection: "keep-alive",
    host: "lambda-alb-123578498.us-east-1.elb.amazonaws.com",
    "user-agent": "Mappa-Webhooks/1.0",
    "x-amzn-trace-id": "Root=1-5c536348-3d683b8b04734faae651f476",
    "x-forwarded-for": "72.12.164.125",
    "x-forwarded-port": "443",
    "x-forwarded-proto": "https",
    ...lowerCased(delivery.headers),
  };
  const event: ALBEvent = {
    requestContext: { elb: { targetGroupArn: TARGET_GROUP } },
    httpMethod: options.method ?? "POST",
    path: "/webhooks/mappa",
    body: asBody(delivery.bytes, options.base64 === true),
    isBase64Encoded: options.base64 === true,
  };
  if (options.multiValue === true) {
    event.multiValueQueryStringParameters = {};
    event.multiValueHeaders = {};
    for (const [name, value] of Object.entries(headers)) event.multiValueHeaders[name] = [value];
  } else {
    event.queryStringParameters = {};
    event.headers = headers;
  }
  return event;
}
