import {
  type MappaEvent as CoreMappaEvent,
  createMappaWebhooks,
  MappaWebhookError,
  type MappaWebhooks,
  type MappaWebhooksOptions,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import {
  canAnswer,
  DEFAULT_WEBHOOK_PATH,
  lingerAfterEarlyAnswer,
  type NodeWebhookRequest,
  type NodeWebhookResponse,
  type PathMatchOptions,
  readNodeRequestBody,
  webhookPathMatcher,
  writeNodeResponse,
} from "@mappa-webhooks/core/node";
import {
  applyDecorators,
  type CallHandler,
  createParamDecorator,
  type DynamicModule,
  type ExecutionContext,
  HttpCode,
  HttpException,
  Inject,
  Injectable,
  type InjectionToken,
  Module,
  type ModuleMetadata,
  type NestInterceptor,
  type OptionalFactoryDependency,
  UseInterceptors,
} from "@nestjs/common";
import { HttpAdapterHost } from "@nestjs/core";
import { from, lastValueFrom, type Observable } from "rxjs";

// The event types and the error class, so apps need no direct dependency on the core.
export {
  isMappaWebhookError,
  type MappaEventType,
  type MappaHandlerMap,
  type MappaKnownEvent,
  type MappaUnknownEvent,
  MappaWebhookError,
  type MappaWebhooksOptions,
} from "@mappa-webhooks/core";

/**
 * A verified Mappa event: a union narrowed by `type` (`report.completed`, `report.failed`,
 * `matching.completed`, `matching.failed`, or an unknown type with `known: false`).
 *
 * @example
 * ```ts
 * handle(@MappaEvent() event: MappaEvent) {
 *   if (event.known && event.type === "report.completed") console.log(event.data.reportId);
 * }
 * ```
 */
export type MappaEvent = CoreMappaEvent;

/**
 * What handlers given in the module's `on` option receive as their second argument.
 *
 * @example
 * ```ts
 * MappaWebhookModule.forRoot({
 *   secret,
 *   on: { "report.failed": (event, { request }) => console.warn(event.data.error.code) },
 * });
 * ```
 */
export interface MappaNestContext {
  /** The platform's request (Express `Request` or Fastify `FastifyRequest`). */
  request: unknown;
  /** The platform's response (Express `Response` or Fastify `FastifyReply`). */
  response: unknown;
  /** Nest's execution context of the controller method. */
  executionContext: ExecutionContext;
}

/**
 * Options of {@link MappaWebhookModule}: the core's options (`secret`, `on`, `onUnknown`,
 * `onError`, `idempotency`, `maxBodyBytes`, `bodyTimeoutMs`, `toleranceSec`, ...). Controller
 * methods decorated with {@link MappaWebhook} run after the `on` handlers, as part of the same
 * delivery. `ack: "first"` is not offered: the controller method is the handler.
 *
 * @example
 * ```ts
 * const options: MappaNestOptions = { secret: process.env.MAPPA_WEBHOOK_SECRET!, maxBodyBytes: 256 * 1024 };
 * ```
 */
export interface MappaNestOptions extends MappaWebhooksOptions<MappaNestContext> {
  ack?: "after-handlers";
  /**
   * The path(s) of your webhook route(s), as requested (global prefix included). Default
   * `/webhooks/mappa`. POSTs to these paths are read by the module itself, before Nest's body
   * parsers, so the exact bytes reach the verifier and every failure gets the same answer as in
   * every other adapter (413 while streaming, 408, 405 for other methods). Routes elsewhere
   * need the app created with `rawBody: true`. `false` turns the early read off.
   */
  path?: string | readonly string[] | false;
}

/**
 * `forRootAsync` options: a factory with its injected dependencies, as Nest's own modules take.
 *
 * @example
 * ```ts
 * MappaWebhookModule.forRootAsync({
 *   imports: [ConfigModule],
 *   inject: [ConfigService],
 *   useFactory: (config: ConfigService) => ({ secret: config.getOrThrow("MAPPA_WEBHOOK_SECRET") }),
 * });
 * ```
 */
export interface MappaNestAsyncOptions extends Pick<ModuleMetadata, "imports"> {
  // biome-ignore lint/suspicious/noExplicitAny: Nest factories take whatever they inject
  useFactory: (...args: any[]) => MappaNestOptions | Promise<MappaNestOptions>;
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
  /** Register the module globally (default true), so every module's controllers can use it. */
  isGlobal?: boolean;
}

/**
 * The injection token of the module's options.
 *
 * @example
 * ```ts
 * constructor(@Inject(MAPPA_WEBHOOK_OPTIONS) private readonly options: MappaNestOptions) {}
 * ```
 */
export const MAPPA_WEBHOOK_OPTIONS: unique symbol = Symbol("MAPPA_WEBHOOK_OPTIONS");

const RAW_BODY_MISSING =
  "The request body was parsed before the Mappa webhook interceptor could read its raw bytes, so the signature cannot be checked. Give the route's path to `MappaWebhookModule.forRoot({ path })` (default `/webhooks/mappa`) so the module reads the body first, or create the app with `NestFactory.create(AppModule, { rawBody: true })`.";

/** What the early read leaves on a request it took over. */
const EARLY = Symbol.for("@mappa-webhooks/nestjs:early");

interface EarlyRead {
  /** Fastify: the body headers hidden from Fastify's parsers, put back before the handler. */
  hidden?: Record<string, string | string[] | undefined>;
}

/** The parts of a platform request the interceptor reads. */
interface PlatformRequest {
  method: string;
  headers: Record<string, string | string[] | undefined>;
  rawBody?: unknown;
  body?: unknown;
  /** Fastify's underlying Node request. */
  raw?: NodeRequest;
  mappaEvent?: CoreMappaEvent;
}

type NodeRequest = NodeWebhookRequest & { url?: string };

/** The parts of a Fastify instance the early read uses. */
interface FastifyLike {
  initialConfig?: {
    caseSensitive?: boolean;
    ignoreTrailingSlash?: boolean;
    routerOptions?: { caseSensitive?: boolean; ignoreTrailingSlash?: boolean };
  };
  addHook(
    name: "onRequest",
    hook: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>,
  ): unknown;
  addHook(name: "preValidation", hook: (request: FastifyRequestLike) => Promise<void>): unknown;
}

interface FastifyRequestLike extends PlatformRequest {
  url: string;
  raw: NodeRequest;
}

interface FastifyReplyLike {
  raw: NodeWebhookResponse;
  code(status: number): FastifyReplyLike;
  headers(headers: Record<string, string>): FastifyReplyLike;
  send(body: string): FastifyReplyLike;
}

function nodeRequestOf(request: PlatformRequest): NodeRequest {
  // Fastify wraps the Node request; Express's request is one.
  return (request.raw ?? request) as unknown as NodeRequest;
}

/** How Express matches paths: its `case sensitive routing` and `strict routing` settings. */
function expressRouting(app: unknown): PathMatchOptions {
  const settings = app as { get?: (name: string) => unknown } | undefined;
  const get = (name: string) =>
    typeof settings?.get === "function" ? settings.get(name) === true : false;
  return { caseSensitive: get("case sensitive routing"), strict: get("strict routing") };
}

/** How Fastify matches paths: `caseSensitive` (default true), `ignoreTrailingSlash` (false). */
function fastifyRouting(fastify: FastifyLike): PathMatchOptions {
  const config = fastify.initialConfig ?? {};
  const router = config.routerOptions ?? {};
  const caseSensitive = router.caseSensitive ?? config.caseSensitive ?? true;
  const ignoreTrailingSlash = router.ignoreTrailingSlash ?? config.ignoreTrailingSlash ?? false;
  return { caseSensitive, strict: !ignoreTrailingSlash };
}

/**
 * The receiver behind the module: the core's `createMappaWebhooks` with the module's options.
 * Inject it to verify or handle deliveries yourself.
 *
 * @example
 * ```ts
 * constructor(@Inject(MappaWebhookService) private readonly mappa: MappaWebhookService) {}
 * ```
 */
@Injectable()
export class MappaWebhookService {
  /** The core receiver (`handle`, `verifyAndParse`, `on`, `onAny`, ...). */
  readonly webhooks: MappaWebhooks<MappaNestContext>;
  private readonly controllers = new WeakMap<MappaNestContext, () => Promise<unknown>>();

  constructor(
    @Inject(MAPPA_WEBHOOK_OPTIONS) options: MappaNestOptions,
    @Inject(HttpAdapterHost) adapterHost: HttpAdapterHost,
  ) {
    if (options !== null && typeof options === "object" && (options.ack as string) === "first") {
      throw new MappaWebhookError(
        "invalid_options",
        '`ack: "first"` is not offered by @mappa-webhooks/nestjs: the controller method is the handler, and it runs before the answer. Keep the default.',
      );
    }
    const { path = DEFAULT_WEBHOOK_PATH, ...coreOptions } = options ?? ({} as MappaNestOptions);
    this.webhooks = createMappaWebhooks<MappaNestContext>(coreOptions);
    // The controller method runs last, as one more handler of the delivery.
    this.webhooks.onAny(async (_event, context) => {
      await this.controllers.get(context)?.();
    });
    if (path !== false) this.installEarlyRead(adapterHost, new Set([path].flat()));
  }

  /**
   * Registers, while the app is being created (before Nest adds its body parsers), a hook that
   * reads POST bodies on the webhook paths itself and answers what fails before the route would.
   */
  private installEarlyRead(adapterHost: HttpAdapterHost, paths: ReadonlySet<string>): void {
    const adapter = adapterHost?.httpAdapter as
      | { getType(): string; getInstance(): unknown; use(handler: unknown): unknown }
      | undefined;
    if (adapter === undefined) return;
    const type = adapter.getType();
    // The paths are matched as the platform routes them to the controller, so every spelling
    // that reaches the controller is read here first.
    if (type === "express") {
      const matches = webhookPathMatcher(paths, expressRouting(adapter.getInstance()));
      adapter.use(
        (req: NodeRequest & PlatformRequest, res: NodeWebhookResponse, next: () => void) => {
          if (!matches(req.url)) return next();
          this.earlyRead(req, req).then(
            (failure) => {
              if (failure === undefined) next();
              else writeNodeResponse(req, res, failure);
            },
            () => next(),
          );
        },
      );
    } else if (type === "fastify") {
      const fastify = adapter.getInstance() as FastifyLike;
      const matches = webhookPathMatcher(paths, fastifyRouting(fastify));
      fastify.addHook("onRequest", async (request, reply) => {
        if (!matches(request.url)) return;
        const failure = await this.earlyRead(request, request.raw as NodeRequest);
        if (failure !== undefined) {
          if (!canAnswer(reply.raw, failure)) return reply;
          lingerAfterEarlyAnswer(request.raw);
          reply.code(failure.status).headers(failure.headers).send(failure.body);
          return reply;
        }
        const early = (request as unknown as Record<symbol, EarlyRead>)[EARLY];
        if (early !== undefined && request.method.toUpperCase() === "POST") {
          // Fastify parses by content type before the handler: with the body already read, hide
          // the body headers so it goes straight to the route, and put them back right after.
          const headers = request.headers;
          early.hidden = {
            "content-type": headers["content-type"],
            "content-length": headers["content-length"],
            "transfer-encoding": headers["transfer-encoding"],
          };
          delete headers["content-type"];
          delete headers["transfer-encoding"];
          headers["content-length"] = "0";
        }
        return undefined;
      });
      fastify.addHook("preValidation", async (request) => {
        const early = (request as unknown as Record<symbol, EarlyRead>)[EARLY];
        if (early?.hidden === undefined) return;
        for (const [name, value] of Object.entries(early.hidden)) {
          if (value === undefined) delete request.headers[name];
          else request.headers[name] = value;
        }
        delete early.hidden;
      });
    }
  }

  /** Reads the body of a webhook request early; resolves with the answer when it failed. */
  private async earlyRead(
    request: PlatformRequest,
    stream: NodeRequest,
  ): Promise<WebhookResponse | undefined> {
    if (request.method.toUpperCase() !== "POST") {
      return this.webhooks.handle({
        method: request.method,
        headers: request.headers,
        rawBody: "",
      });
    }
    try {
      const bytes = await readNodeRequestBody(stream, this.webhooks, {
        consumedMessage: RAW_BODY_MISSING,
      });
      request.rawBody = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      (request as unknown as Record<symbol, EarlyRead>)[EARLY] = {};
      return undefined;
    } catch (error) {
      return this.webhooks.errorResponse(error);
    }
  }

  /** Reads the raw body of a platform request within the limits, or throws a typed error. */
  async rawBodyOf(request: PlatformRequest): Promise<Uint8Array> {
    if (Buffer.isBuffer(request.rawBody)) return request.rawBody;
    if (Buffer.isBuffer(request.body)) return request.body;
    return readNodeRequestBody(nodeRequestOf(request), this.webhooks, {
      consumedMessage: RAW_BODY_MISSING,
      // Fastify parsed the body (`request.body` is set) without keeping the raw bytes.
      consumed: request.raw !== undefined && request.body !== undefined,
    });
  }

  /**
   * Runs one delivery through the core with `controller` as its last handler. Resolves with the
   * core's answer and what the controller returned.
   */
  async receive(
    executionContext: ExecutionContext,
    controller: () => Promise<unknown>,
  ): Promise<{ response: WebhookResponse; returned: unknown }> {
    const http = executionContext.switchToHttp();
    const request = http.getRequest<PlatformRequest>();
    const context: MappaNestContext = {
      request,
      response: http.getResponse<unknown>(),
      executionContext,
    };
    if (request.method.toUpperCase() !== "POST") {
      const response = await this.webhooks.handle({
        method: request.method,
        headers: request.headers,
        rawBody: "",
      });
      return { response, returned: undefined };
    }
    let rawBody: Uint8Array;
    try {
      rawBody = await this.rawBodyOf(request);
    } catch (error) {
      return { response: this.webhooks.errorResponse(error), returned: undefined };
    }
    let returned: unknown;
    this.controllers.set(context, async () => {
      returned = await controller();
    });
    const response = await this.webhooks.handle({
      method: request.method,
      headers: request.headers,
      rawBody,
      context,
      onVerified: (event) => {
        request.mappaEvent = event;
      },
    });
    return { response, returned };
  }
}

/**
 * The interceptor behind {@link MappaWebhook}: verifies the delivery, deduplicates it, runs the
 * module's `on` handlers and then the controller method, and answers with the core's status and
 * JSON body (a controller's own return value replaces `{"received":true}`). Failures are thrown
 * as `HttpException`s carrying the core's status and body.
 *
 * @example
 * ```ts
 * @UseInterceptors(MappaWebhookInterceptor)
 * @HttpCode(200)
 * @Post("webhooks/mappa")
 * receive(@MappaEvent() event: MappaEvent) {}
 * ```
 */
@Injectable()
export class MappaWebhookInterceptor implements NestInterceptor {
  constructor(
    @Inject(MappaWebhookService) private readonly service: MappaWebhookService,
    @Inject(HttpAdapterHost) private readonly adapterHost: HttpAdapterHost,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return from(this.answer(context, next));
  }

  private async answer(context: ExecutionContext, next: CallHandler): Promise<unknown> {
    const { response, returned } = await this.service.receive(context, () =>
      lastValueFrom(next.handle(), { defaultValue: undefined }),
    );
    const adapter = this.adapterHost.httpAdapter;
    const reply = context.switchToHttp().getResponse<unknown>();
    for (const [name, value] of Object.entries(response.headers)) {
      adapter.setHeader(reply, name, value);
    }
    const body = JSON.parse(response.body) as Record<string, unknown>;
    if (response.status !== 200) throw new HttpException(body, response.status);
    return returned === undefined || response.duplicate === true ? body : returned;
  }
}

/**
 * Makes a controller method Mappa's webhook endpoint: answers 200 (not Nest's default 201 for
 * POST) and runs the delivery through {@link MappaWebhookInterceptor}. The method runs only for
 * new, verified events; read the event with {@link MappaEvent}. A throw answers 500, so Mappa
 * retries.
 *
 * @example
 * ```ts
 * @Controller("webhooks")
 * export class WebhooksController {
 *   @Post("mappa")
 *   @MappaWebhook()
 *   receive(@MappaEvent() event: MappaEvent) {
 *     if (event.type === "report.completed") console.log(event.data.reportId);
 *   }
 * }
 * ```
 */
export function MappaWebhook(): MethodDecorator & ClassDecorator {
  return applyDecorators(HttpCode(200), UseInterceptors(MappaWebhookInterceptor));
}

/**
 * Parameter decorator: the verified Mappa event of the delivery (on a {@link MappaWebhook}
 * method).
 *
 * @example
 * ```ts
 * receive(@MappaEvent() event: MappaEvent) { ... }
 * ```
 */
export const MappaEvent: () => ParameterDecorator = createParamDecorator(
  (_data: unknown, context: ExecutionContext) =>
    context.switchToHttp().getRequest<PlatformRequest>().mappaEvent,
);

/**
 * The module: `forRoot(options)` or `forRootAsync({ imports, inject, useFactory })`. Global by
 * default, so {@link MappaWebhook} works in every module's controllers.
 *
 * @example
 * ```ts
 * @Module({
 *   imports: [MappaWebhookModule.forRoot({ secret: process.env.MAPPA_WEBHOOK_SECRET! })],
 *   controllers: [WebhooksController],
 * })
 * export class AppModule {}
 * ```
 */
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest module is a class with static forRoot methods
export class MappaWebhookModule {
  /**
   * The module with static options.
   *
   * @example
   * ```ts
   * MappaWebhookModule.forRoot({ secret: process.env.MAPPA_WEBHOOK_SECRET! });
   * ```
   */
  static forRoot(options: MappaNestOptions & { isGlobal?: boolean }): DynamicModule {
    const { isGlobal = true, ...receiverOptions } = options;
    return {
      module: MappaWebhookModule,
      global: isGlobal,
      providers: [
        { provide: MAPPA_WEBHOOK_OPTIONS, useValue: receiverOptions },
        MappaWebhookService,
        MappaWebhookInterceptor,
      ],
      exports: [MAPPA_WEBHOOK_OPTIONS, MappaWebhookService, MappaWebhookInterceptor],
    };
  }

  /**
   * The module with options from a factory (e.g. `ConfigService`).
   *
   * @example
   * ```ts
   * MappaWebhookModule.forRootAsync({
   *   imports: [ConfigModule],
   *   inject: [ConfigService],
   *   useFactory: (config: ConfigService) => ({ secret: config.getOrThrow("MAPPA_WEBHOOK_SECRET") }),
   * });
   * ```
   */
  static forRootAsync(options: MappaNestAsyncOptions): DynamicModule {
    return {
      module: MappaWebhookModule,
      global: options.isGlobal ?? true,
      imports: options.imports ?? [],
      providers: [
        {
          provide: MAPPA_WEBHOOK_OPTIONS,
          useFactory: options.useFactory,
          inject: options.inject ?? [],
        },
        MappaWebhookService,
        MappaWebhookInterceptor,
      ],
      exports: [MAPPA_WEBHOOK_OPTIONS, MappaWebhookService, MappaWebhookInterceptor],
    };
  }
}
