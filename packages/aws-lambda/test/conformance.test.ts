// The shared conformance suite over real HTTP, through the loopback front door of bridge.ts,
// once per event source. A Lambda gets the whole body from its source, so the streaming limit,
// ack-first (refused on Lambda) and a JSON route beside the webhook do not apply.
//
// The sources hand the body over base64-encoded here (REST API binary media type `*/*`; binary
// bodies for the others), the path that keeps any byte exact: the suite's vectors include a body
// that is not valid UTF-8, which no source can carry as text. Text bodies (what HTTP APIs,
// function URLs and ALBs send for `application/json`) are covered in lambda.test.ts.
import { describeAdapterExports, describeConformance } from "@mappa-webhooks/conformance";
import * as adapterModule from "../src/index.js";
import { createMappaWebhookHandler, type MappaLambdaOptions } from "../src/index.js";
import { type EventSource, serveLambda } from "./bridge.js";

const sources: Array<{ name: string; source: EventSource }> = [
  { name: "API Gateway REST API", source: "rest" },
  { name: "API Gateway HTTP API (payload 2.0)", source: "http-v2" },
  { name: "Lambda function URL", source: "function-url" },
  { name: "ALB target", source: "alb" },
  { name: "ALB target with multi-value headers", source: "alb-multi" },
];

// The source reads the whole body before it invokes the function: a client that stalls or goes
// away mid-body never reaches the handler, so the suite's broken-client checks do not apply.
const capabilities = {
  jsonRoute: false,
  streamingBodyLimit: false,
  ackFirst: false,
  brokenClients: false,
};

for (const { name, source } of sources) {
  describeConformance(
    `AWS Lambda behind ${name}`,
    async (options) =>
      serveLambda(createMappaWebhookHandler(options as MappaLambdaOptions), source, "binary"),
    capabilities,
  );
}

describeAdapterExports(
  "@mappa-webhooks/aws-lambda",
  adapterModule,
  new URL("../src/index.ts", import.meta.url),
);
