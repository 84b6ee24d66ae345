import type { MappaEvent, MappaKnownEvent, MappaUnknownEvent } from "@mappa-webhooks/core";
import { type Context, type ExecutionContext, Hono } from "hono";
import { describe, expectTypeOf, it } from "vitest";
import { type MappaWebhookEnv, type MappaWebhookVariables, mappaWebhook } from "../src/index.js";

describe("types", () => {
  it("types c.get('mappaEvent') through the app's Variables", () => {
    const app = new Hono<{ Variables: MappaWebhookVariables }>();
    app.post("/webhooks/mappa", mappaWebhook({ secret: "s", mode: "next" }), (c) => {
      expectTypeOf(c.get("mappaEvent")).toEqualTypeOf<MappaEvent>();
      return c.text("ok");
    });
  });

  it("infers the variable from the middleware in a route chain, without declaring it", () => {
    const app = new Hono();
    app.post("/webhooks/mappa", mappaWebhook({ secret: "s", mode: "next" }), (c) => {
      const event = c.get("mappaEvent");
      expectTypeOf(event).toEqualTypeOf<MappaEvent>();
      if (event.known && event.type === "report.failed") {
        expectTypeOf(event.data.error.code).toBeString();
      }
      return c.text("ok");
    });
    const chained = new Hono().use("/webhooks/mappa", mappaWebhook({ secret: "s" }));
    chained.get("/after", (c) => {
      expectTypeOf(c.get("mappaEvent")).toEqualTypeOf<MappaEvent>();
      return c.text("ok");
    });
  });

  it("merges with an app's own env", () => {
    type AppEnv = { Bindings: { MAPPA_WEBHOOK_SECRET: string } } & MappaWebhookEnv;
    const app = new Hono<AppEnv>();
    app.get("/", (c) => {
      expectTypeOf(c.env.MAPPA_WEBHOOK_SECRET).toBeString();
      expectTypeOf(c.var.mappaEvent).toEqualTypeOf<MappaEvent>();
      return c.text("ok");
    });
  });

  it("compiles the README's Workers pattern (secret from the bindings, one app per isolate)", () => {
    type Bindings = { MAPPA_WEBHOOK_SECRET: string };
    const createApp = (secret: string) =>
      new Hono<{ Bindings: Bindings }>().post("/webhooks/mappa", mappaWebhook({ secret }));
    let app: ReturnType<typeof createApp> | undefined;
    const worker = {
      fetch(request: Request, env: Bindings, ctx: ExecutionContext) {
        app ??= createApp(env.MAPPA_WEBHOOK_SECRET);
        return app.fetch(request, env, ctx);
      },
    };
    expectTypeOf(worker.fetch).returns.toEqualTypeOf<Response | Promise<Response>>();
  });

  it("narrows each handler's event by type and passes the Hono context", () => {
    mappaWebhook({
      secret: "s",
      on: {
        "report.completed": (event, c) => {
          expectTypeOf(event).toEqualTypeOf<MappaKnownEvent<"report.completed">>();
          expectTypeOf(event.data.reportId).toBeString();
          expectTypeOf(c).toEqualTypeOf<Context>();
        },
        "matching.completed": (event) => {
          expectTypeOf(event.data.matchingId).toBeString();
          // @ts-expect-error matchingId is a string
          const asNumber: number = event.data.matchingId;
          void asNumber;
        },
      },
      onUnknown: (event) => expectTypeOf(event).toEqualTypeOf<MappaUnknownEvent>(),
    });
  });

  it("rejects unknown event types in `on` and unknown modes", () => {
    mappaWebhook({
      secret: "s",
      // @ts-expect-error not a Mappa event type
      on: { "report.deleted": () => {} },
    });
    // @ts-expect-error mode is "respond" or "next"
    mappaWebhook({ secret: "s", mode: "later" });
  });
});
