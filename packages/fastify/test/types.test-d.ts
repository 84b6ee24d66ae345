import type { MappaEvent, ReportFailedEvent } from "@mappa-webhooks/core";
import Fastify, { type FastifyReply, type FastifyRequest } from "fastify";
import { describe, expectTypeOf, it } from "vitest";
import { type MappaFastifyContext, mappaWebhookPlugin } from "../src/index.js";

describe("types", () => {
  it("narrows each handler's event and gives it the request and reply", async () => {
    const app = Fastify();
    await app.register(mappaWebhookPlugin, {
      secret: "whsec_x",
      path: "/hooks",
      on: {
        "report.failed": (event, context) => {
          expectTypeOf(event).toEqualTypeOf<ReportFailedEvent>();
          expectTypeOf(event.data.error.code).toBeString();
          expectTypeOf(context).toEqualTypeOf<MappaFastifyContext>();
          expectTypeOf(context.request).toEqualTypeOf<FastifyRequest>();
          expectTypeOf(context.reply).toEqualTypeOf<FastifyReply>();
        },
        "matching.completed": (event) => {
          expectTypeOf(event.data.matchingId).toBeString();
          // @ts-expect-error matching.completed has no reportId
          event.data.reportId.toUpperCase();
        },
      },
    });
  });

  it("rejects unknown event types and a missing secret", async () => {
    const app = Fastify();
    // @ts-expect-error not an event type
    await app.register(mappaWebhookPlugin, { secret: "whsec_x", on: { "report.done": () => {} } });
    // @ts-expect-error secret is required
    await app.register(mappaWebhookPlugin, { path: "/hooks" });
  });

  it("types request.mappaEvent through declaration merging", () => {
    const app = Fastify();
    app.addHook("onResponse", async (request) => {
      expectTypeOf(request.mappaEvent).toEqualTypeOf<MappaEvent | null | undefined>();
      const event = request.mappaEvent;
      if (event?.known && event.type === "report.completed") {
        expectTypeOf(event.data.reportId).toBeString();
      }
    });
  });
});
