import type { MappaEvent, MatchingFailedEvent, ReportCompletedEvent } from "@mappa-webhooks/core";
import express, { type Request, type RequestHandler, type Response } from "express";
import { describe, expectTypeOf, it } from "vitest";
import { type MappaExpressContext, mappaWebhook, rawBodySaver } from "../src/index.js";

describe("types", () => {
  it("narrows each handler's event and gives it the request and response", () => {
    mappaWebhook({
      secret: "whsec_x",
      on: {
        "report.completed": (event, context) => {
          expectTypeOf(event).toEqualTypeOf<ReportCompletedEvent>();
          expectTypeOf(event.data.reportId).toBeString();
          expectTypeOf(context).toEqualTypeOf<MappaExpressContext>();
          expectTypeOf(context.req).toEqualTypeOf<Request>();
          expectTypeOf(context.res).toEqualTypeOf<Response>();
        },
        "matching.failed": (event) => {
          expectTypeOf(event).toEqualTypeOf<MatchingFailedEvent>();
          expectTypeOf(event.data.error.code).toBeString();
          // @ts-expect-error matching.failed has no reportId
          event.data.reportId.toUpperCase();
        },
      },
    });
  });

  it("rejects unknown event types in the handler map and a missing secret", () => {
    // @ts-expect-error not an event type
    mappaWebhook({ secret: "whsec_x", on: { "report.done": () => {} } });
    // @ts-expect-error secret is required
    mappaWebhook({ path: "/hooks" });
    // @ts-expect-error mode is "respond" or "next"
    mappaWebhook({ secret: "whsec_x", mode: "later" });
    mappaWebhook({ secret: "whsec_x", mode: "next" });
  });

  it("returns a request handler usable with app.use and routes", () => {
    const middleware = mappaWebhook({ secret: "whsec_x", path: "/hooks" });
    expectTypeOf(middleware).toEqualTypeOf<RequestHandler>();
    const app = express();
    app.use(middleware);
    app.post("/hooks", middleware);
  });

  it("types req.mappaEvent and req.rawBody through declaration merging", () => {
    const app = express();
    app.use((req, _res, next) => {
      expectTypeOf(req.mappaEvent).toEqualTypeOf<MappaEvent | undefined>();
      expectTypeOf(req.rawBody).toEqualTypeOf<Buffer | undefined>();
      if (req.mappaEvent?.known && req.mappaEvent.type === "report.completed") {
        expectTypeOf(req.mappaEvent.data.reportId).toBeString();
      }
      next();
    });
  });

  it("fits express.json's verify hook", () => {
    express.json({ verify: rawBodySaver });
    express.raw({ verify: rawBodySaver });
  });
});
