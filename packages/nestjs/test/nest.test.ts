import "reflect-metadata";
import { send } from "@mappa-webhooks/conformance";
import { signPayload } from "@mappa-webhooks/core";
import { Controller, Inject, Injectable, Module, Post } from "@nestjs/common";
import { afterEach, describe, expect, it } from "vitest";
import {
  type MappaEvent as Event,
  MappaEvent,
  type MappaNestContext,
  type MappaNestOptions,
  MappaWebhook,
  MappaWebhookModule,
  MappaWebhookService,
} from "../src/index.js";
import { appModule, type Platform, startNest, WebhooksController } from "./apps.js";

const secret = "whsec_nest_tests";
let sequence = 0;

async function delivery(type = "report.completed") {
  sequence += 1;
  const id = `evt_nest_${sequence}_${Date.now().toString(36)}`;
  const body = JSON.stringify({
    id,
    type,
    createdAt: "2026-01-17T12:05:00.000Z",
    data: { jobId: `job_${sequence}`, reportId: `rep_${sequence}`, status: "completed" },
  });
  const signature = await signPayload({ payload: body, secret });
  return {
    id,
    body,
    headers: { "content-type": "application/json", "mappa-signature": signature },
  };
}

/** A route away from the module's path: its body goes through Nest's own parsers. */
@Controller("integrations")
class ElsewhereController {
  static seen: string[] = [];

  @Post("mappa")
  @MappaWebhook()
  receive(@MappaEvent() event: Event) {
    ElsewhereController.seen.push(event.id ?? "");
    return { stored: event.id };
  }
}

/** A controller whose method fails once per event, then succeeds. */
@Controller("flaky")
class FlakyController {
  static failed = new Set<string>();
  static effects: string[] = [];

  @Post("mappa")
  @MappaWebhook()
  receive(@MappaEvent() event: Event) {
    const id = event.id ?? "";
    if (!FlakyController.failed.has(id)) {
      FlakyController.failed.add(id);
      throw new Error("database unavailable");
    }
    FlakyController.effects.push(id);
  }
}

/** Stands in for @nestjs/config: a module that provides the secret. */
const SETTINGS = Symbol("SETTINGS");
@Injectable()
class Settings {
  readonly mappaSecret = secret;
}
@Module({ providers: [{ provide: SETTINGS, useClass: Settings }], exports: [SETTINGS] })
class SettingsModule {}

describe.each<Platform>(["express", "fastify"])("NestJS on %s", (platform) => {
  const running: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const app of running.splice(0)) await app.close();
  });
  const start = async (...args: Parameters<typeof startNest>) => {
    const app = await startNest(...args);
    running.push(app);
    return app;
  };

  it("takes its options from forRootAsync with an injected provider", async () => {
    const seen: Array<{ id: string | undefined; hasRequest: boolean }> = [];
    @Module({
      imports: [
        MappaWebhookModule.forRootAsync({
          imports: [SettingsModule],
          inject: [SETTINGS],
          useFactory: (settings: Settings) => ({
            secret: settings.mappaSecret,
            on: {
              "report.completed": (event, context: MappaNestContext) => {
                seen.push({ id: event.id, hasRequest: context.request !== undefined });
              },
            },
          }),
        }),
      ],
      controllers: [WebhooksController],
    })
    class AsyncModule {}
    const app = await start({ platform, module: AsyncModule, rawBody: false });
    const d = await delivery();
    const response = await send(app.webhookUrl, { headers: d.headers, body: d.body });
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ received: true });
    expect(seen).toEqual([{ id: d.id, hasRequest: true }]);
    expect(WebhooksController.seen.map((e) => e.id)).toContain(d.id);
    // The service is injectable elsewhere.
    expect(app.app.get(MappaWebhookService).webhooks.maxBodyBytes).toBe(1024 * 1024);
  });

  it("hands the typed event to the controller and answers with what it returns", async () => {
    const app = await start({
      platform,
      module: appModule({ secret }, [ElsewhereController]),
      rawBody: true,
    });
    const d = await delivery();
    const response = await send(`${app.baseUrl}/integrations/mappa`, {
      headers: d.headers,
      body: d.body,
    });
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ stored: d.id });
    const again = await send(`${app.baseUrl}/integrations/mappa`, {
      headers: d.headers,
      body: d.body,
    });
    expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
    expect(ElsewhereController.seen.filter((id) => id === d.id)).toHaveLength(1);
    const forged = await send(`${app.baseUrl}/integrations/mappa`, {
      headers: d.headers,
      body: d.body.replace("rep_", "rex_"),
    });
    expect(forged.status).toBe(401);
    expect(JSON.parse(forged.body)).toEqual({ error: "signature_mismatch" });
  });

  it("answers 500 body_already_parsed, naming rawBody: true, when a route elsewhere lacks raw bytes", async () => {
    const errors: Array<{ code: string; message: string }> = [];
    const options: MappaNestOptions = { secret, onError: (error) => errors.push(error) };
    const app = await start({
      platform,
      module: appModule(options, [ElsewhereController]),
      rawBody: false,
    });
    const d = await delivery();
    const response = await send(`${app.baseUrl}/integrations/mappa`, {
      headers: d.headers,
      body: d.body,
    });
    expect(response.status).toBe(500);
    expect(JSON.parse(response.body)).toEqual({
      error: "body_already_parsed",
      fix: expect.stringContaining("{ rawBody: true }"),
    });
    expect(errors.map((e) => e.code)).toEqual(["body_already_parsed"]);
    expect(errors[0]?.message).toContain("rawBody: true");
    expect(errors[0]?.message).toContain("forRoot({ path })");
  });

  it("reads early every spelling of the path the platform routes to the controller", async () => {
    // Express routes case-insensitively with an optional trailing slash by default; Fastify
    // does when told to. Each spelling reaches the controller, so each must be read early.
    const seen: string[] = [];
    const errors: string[] = [];
    const app = await start({
      platform,
      module: appModule({
        secret,
        on: { "report.completed": (event) => void seen.push(event.id ?? "") },
        onError: (error) => void errors.push(error.code),
      }),
      rawBody: false,
      ...(platform === "fastify"
        ? { fastify: { caseSensitive: false, ignoreTrailingSlash: true } }
        : {}),
    });
    for (const path of ["/webhooks/mappa/", "/WEBHOOKS/MAPPA", "/Webhooks/Mappa/?source=test"]) {
      const d = await delivery();
      const response = await send(`${app.baseUrl}${path}`, { headers: d.headers, body: d.body });
      expect([path, response.status, response.body]).toEqual([path, 200, '{"received":true}']);
      expect(seen).toContain(d.id);
    }
    expect(errors).toEqual([]);
  });

  if (platform === "fastify") {
    it("leaves alone the spellings Fastify does not route (case-sensitive, strict by default)", async () => {
      const app = await start({ platform, module: appModule({ secret }), rawBody: false });
      const d = await delivery();
      const response = await send(`${app.baseUrl}/WEBHOOKS/MAPPA`, {
        headers: d.headers,
        body: d.body,
      });
      expect(response.status).toBe(404);
    });
  }

  it("answers 500 when the controller throws, and 200 on Mappa's retry", async () => {
    const app = await start({
      platform,
      module: appModule({ secret, path: "/flaky/mappa" }, [FlakyController]),
      rawBody: false,
    });
    const d = await delivery();
    const url = `${app.baseUrl}/flaky/mappa`;
    const first = await send(url, { headers: d.headers, body: d.body });
    expect(first.status).toBe(500);
    expect(JSON.parse(first.body)).toEqual({ error: "handler_failed" });
    const retry = await send(url, { headers: d.headers, body: d.body });
    expect(retry.status).toBe(200);
    expect(FlakyController.effects.filter((id) => id === d.id)).toHaveLength(1);
  });

  it('refuses ack: "first" when the app is created', async () => {
    await expect(
      start({
        platform,
        module: appModule({ secret, ack: "first" } as unknown as MappaNestOptions),
      }),
    ).rejects.toMatchObject({ code: "invalid_options" });
  });
});

describe("injection", () => {
  it("exposes the receiver to other providers", async () => {
    @Injectable()
    class Replayer {
      constructor(@Inject(MappaWebhookService) readonly mappa: MappaWebhookService) {}
    }
    @Module({ imports: [MappaWebhookModule.forRoot({ secret })], providers: [Replayer] })
    class ReplayModule {}
    const app = await startNest({ platform: "express", module: ReplayModule });
    try {
      const d = await delivery();
      const event = await app.app.get(Replayer).mappa.webhooks.verifyAndParse({
        headers: d.headers,
        rawBody: d.body,
      });
      expect(event.id).toBe(d.id);
    } finally {
      await app.close();
    }
  });
});
