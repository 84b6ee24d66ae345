import Router from "@koa/router";
import type { MatchingFailedEvent, ReportCompletedEvent } from "@mappa-webhooks/core";
import Koa, { type Context, type Middleware } from "koa";
import { describe, expectTypeOf, it } from "vitest";
import { type MappaEvent, type MappaKoaOptions, mappaWebhook } from "../src/index.js";

describe("types", () => {
  it("narrows each handler's event and gives it Koa's ctx", () => {
    mappaWebhook({
      secret: "whsec_x",
      on: {
        "report.completed": (event, ctx) => {
          expectTypeOf(event).toEqualTypeOf<ReportCompletedEvent>();
          expectTypeOf(event.data.reportId).toBeString();
          expectTypeOf(ctx).toEqualTypeOf<Context>();
        },
        "matching.failed": (event) => {
          expectTypeOf(event).toEqualTypeOf<MatchingFailedEvent>();
          // @ts-expect-error matching.failed has no reportId
          event.data.reportId.toUpperCase();
        },
      },
    });
  });

  it("rejects unknown event types, a missing secret and an unknown mode", () => {
    // @ts-expect-error not an event type
    mappaWebhook({ secret: "whsec_x", on: { "report.done": () => {} } });
    // @ts-expect-error secret is required
    mappaWebhook({ path: "/hooks" });
    // @ts-expect-error mode is "respond" or "next"
    mappaWebhook({ secret: "whsec_x", mode: "later" });
    const options: MappaKoaOptions = { secret: "whsec_x", mode: "next", bodyTimeoutMs: 5_000 };
    expectTypeOf(mappaWebhook(options)).toEqualTypeOf<Middleware>();
  });

  it("mounts on an app and a router, and types ctx.state.mappaEvent", () => {
    const app = new Koa();
    app.use(mappaWebhook({ secret: "whsec_x" }));
    const router = new Router();
    router.post("/hooks/mappa", mappaWebhook({ secret: "whsec_x" }), (ctx) => {
      expectTypeOf(ctx.state.mappaEvent).toEqualTypeOf<MappaEvent | undefined>();
    });
  });
});
