import type { ReportCompletedEvent } from "@mappa-webhooks/core";
import type {
  ALBEvent,
  ALBHandler,
  ALBResult,
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2,
  APIGatewayProxyHandler,
  APIGatewayProxyHandlerV2,
  APIGatewayProxyResult,
  APIGatewayProxyStructuredResultV2,
  LambdaFunctionURLHandler,
} from "aws-lambda";
import { describe, expectTypeOf, it } from "vitest";
import { createMappaWebhookHandler, type MappaLambdaContext } from "../src/index.js";

const handler = createMappaWebhookHandler({
  secret: "whsec_x",
  on: {
    "report.completed": (event, context) => {
      expectTypeOf(event).toEqualTypeOf<ReportCompletedEvent>();
      expectTypeOf(context).toEqualTypeOf<MappaLambdaContext>();
    },
  },
});

describe("types", () => {
  it("returns the result shape of each source", () => {
    expectTypeOf(handler({} as ALBEvent)).resolves.toEqualTypeOf<ALBResult>();
    expectTypeOf(
      handler({} as APIGatewayProxyEventV2),
    ).resolves.toEqualTypeOf<APIGatewayProxyStructuredResultV2>();
    expectTypeOf(
      handler({} as APIGatewayProxyEvent),
    ).resolves.toEqualTypeOf<APIGatewayProxyResult>();
  });

  it("is assignable to the handler types of @types/aws-lambda", () => {
    const v2: APIGatewayProxyHandlerV2 = handler;
    const url: LambdaFunctionURLHandler = handler;
    const alb: ALBHandler = handler;
    const rest: APIGatewayProxyHandler = handler;
    expectTypeOf([v2, url, alb, rest]).toBeArray();
  });

  it('rejects ack: "first" and unknown event types', () => {
    // @ts-expect-error Lambda freezes after the answer: ack-first is not offered
    createMappaWebhookHandler({ secret: "whsec_x", ack: "first" });
    // @ts-expect-error not an event type
    createMappaWebhookHandler({ secret: "whsec_x", on: { "report.done": () => {} } });
  });
});
