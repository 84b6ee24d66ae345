import "reflect-metadata";
import type { ConformanceApp } from "@mappa-webhooks/conformance";
import {
  Body,
  Controller,
  HttpCode,
  type INestApplication,
  Module,
  Post,
  type Type,
} from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { ExpressAdapter, type NestExpressApplication } from "@nestjs/platform-express";
import { FastifyAdapter, type NestFastifyApplication } from "@nestjs/platform-fastify";
import {
  type MappaEvent as Event,
  MappaEvent,
  type MappaNestOptions,
  MappaWebhook,
  MappaWebhookModule,
} from "../src/index.js";

export type Platform = "express" | "fastify";

/** An ordinary JSON route beside the webhook. */
@Controller("api")
export class EchoController {
  @Post("echo")
  @HttpCode(200)
  echo(@Body() body: unknown) {
    return { echo: body };
  }
}

/** The webhook endpoint as the README shows it. */
@Controller("webhooks")
export class WebhooksController {
  static seen: Event[] = [];

  @Post("mappa")
  @MappaWebhook()
  receive(@MappaEvent() event: Event) {
    WebhooksController.seen.push(event);
  }
}

export interface StartOptions {
  platform: Platform;
  module: Type<unknown>;
  rawBody?: boolean;
  /** On Fastify, the content types whose raw bytes Nest keeps besides JSON. */
  fastifyBodyParsers?: string[];
  /** On Fastify, the server's routing options. */
  fastify?: { caseSensitive?: boolean; ignoreTrailingSlash?: boolean };
}

/** Starts a Nest app on 127.0.0.1:0. */
export async function startNest(
  options: StartOptions,
): Promise<ConformanceApp & { app: INestApplication; baseUrl: string }> {
  const rawBody = options.rawBody ?? true;
  let app: INestApplication;
  if (options.platform === "express") {
    app = await NestFactory.create<NestExpressApplication>(options.module, new ExpressAdapter(), {
      rawBody,
      logger: false,
      abortOnError: false,
    });
  } else {
    const fastify = await NestFactory.create<NestFastifyApplication>(
      options.module,
      new FastifyAdapter(options.fastify),
      { rawBody, logger: false, abortOnError: false },
    );
    for (const type of options.fastifyBodyParsers ?? []) fastify.useBodyParser(type);
    app = fastify;
  }
  await app.listen(0, "127.0.0.1");
  const baseUrl = (await app.getUrl())
    .replace("[::1]", "127.0.0.1")
    .replace("localhost", "127.0.0.1");
  return {
    app,
    baseUrl,
    webhookUrl: `${baseUrl}/webhooks/mappa`,
    jsonUrl: `${baseUrl}/api/echo`,
    close: () => app.close(),
  };
}

/** A root module with the webhook module configured from `options`. */
export function appModule(
  options: MappaNestOptions,
  controllers: Array<Type<unknown>> = [WebhooksController, EchoController],
): Type<unknown> {
  @Module({ imports: [MappaWebhookModule.forRoot(options)], controllers })
  class AppModule {}
  return AppModule;
}
