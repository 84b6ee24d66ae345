import type { IncomingMessage, ServerResponse } from "node:http";
import type { NextApiHandler } from "next";
import type { NextRequest } from "next/server";
import { describe, expectTypeOf, it } from "vitest";
import {
  createMappaPagesHandler,
  createMappaWebhookHandler,
  type MappaKnownEvent,
  type MappaRouteHandler,
  type MappaUnknownEvent,
  type MappaWebhookRouteHandler,
} from "../src/index.js";

describe("types", () => {
  it("returns a route handler Next accepts as POST, and as every other method", () => {
    const POST = createMappaWebhookHandler({ secret: "s" });
    expectTypeOf(POST).toEqualTypeOf<MappaWebhookRouteHandler>();
    expectTypeOf(POST).toExtend<(request: Request) => Promise<Response>>();
    // Next calls it with a NextRequest and a route context.
    type NextRouteHandler = (
      request: NextRequest,
      context: { params: Promise<Record<string, string>> },
    ) => Promise<Response>;
    expectTypeOf(POST).toExtend<NextRouteHandler>();
    const { GET, HEAD, OPTIONS, PUT, PATCH, DELETE } = createMappaWebhookHandler({ secret: "s" });
    for (const handler of [GET, HEAD, OPTIONS, PUT, PATCH, DELETE]) {
      expectTypeOf(handler).toEqualTypeOf<MappaRouteHandler>();
      expectTypeOf(handler).toExtend<NextRouteHandler>();
    }
    // @ts-expect-error not a method Next routes
    createMappaWebhookHandler({ secret: "s" }).CONNECT;
  });

  it("narrows each handler's event by type; the context is the Request", () => {
    createMappaWebhookHandler({
      secret: "s",
      on: {
        "report.completed": (event, request) => {
          expectTypeOf(event).toEqualTypeOf<MappaKnownEvent<"report.completed">>();
          expectTypeOf(event.data.reportId).toBeString();
          expectTypeOf(request).toEqualTypeOf<Request>();
        },
        "report.failed": (event) => {
          expectTypeOf(event.data.error.code).toBeString();
        },
      },
      onUnknown: (event) => expectTypeOf(event).toEqualTypeOf<MappaUnknownEvent>(),
    });
  });

  it("returns an API route Next accepts; handlers get the Node request", () => {
    const handler = createMappaPagesHandler({
      secret: "s",
      on: {
        "matching.completed": (event, req) => {
          expectTypeOf(event.data.matchingId).toBeString();
          expectTypeOf(req).toEqualTypeOf<IncomingMessage>();
        },
      },
    });
    expectTypeOf(handler).toEqualTypeOf<
      (req: IncomingMessage, res: ServerResponse) => Promise<void>
    >();
    expectTypeOf(handler).toExtend<NextApiHandler>();
  });

  it("rejects unknown event types and misspelt options", () => {
    createMappaWebhookHandler({
      secret: "s",
      // @ts-expect-error not a Mappa event type
      on: { "report.deleted": () => {} },
    });
    // @ts-expect-error ack is "after-handlers" or "first"
    createMappaWebhookHandler({ secret: "s", ack: "later" });
    // @ts-expect-error the secret is required
    createMappaPagesHandler({});
  });
});
