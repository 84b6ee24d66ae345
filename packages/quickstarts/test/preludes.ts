// What each README's excerpts take from the reader's own code (the app they mount on, the
// secret, their handlers, the raw body they read) or from the quick start above them. Global
// declarations, one script per README, typed with the installed packages' own types.
const common = `
declare const secret: string;
/** The reader's handlers: typed with \`MappaHandlerMap\`, usable with any adapter. */
declare const on: import("@mappa-webhooks/core").MappaHandlerMap;
declare const idempotency: import("@mappa-webhooks/core").IdempotencyStore;
declare const rawBody: Uint8Array;
declare const payload: string;
declare const headers: Headers;
`;

const express = `
declare const app: import("express").Express;
declare const mappaWebhook: typeof import("@mappa-webhooks/express").mappaWebhook;
`;

export const PRELUDES: Record<string, string> = {
  "README.md": `${common}${express}
declare const saveReport: (reportId: string) => Promise<void>;
`,
  "packages/core/README.md": `${common}
/** The reader's Mappa SDK client (conduit). */
declare const mappa: { reports: { create(input: object): Promise<{ jobId: string }> } };
/** The receiver's options, as in the recovery excerpt above. */
declare const options: import("@mappa-webhooks/core").MappaWebhooksOptions & {
  idempotency: import("@mappa-webhooks/core").IdempotencyStore;
};
`,
  "packages/express/README.md": `${common}${express}`,
  "packages/fastify/README.md": `${common}
declare const app: import("fastify").FastifyInstance;
declare const mappaWebhookPlugin: typeof import("@mappa-webhooks/fastify").mappaWebhookPlugin;
declare const usSecret: string;
declare const euSecret: string;
`,
  "packages/hono/README.md": `${common}
declare const Hono: typeof import("hono").Hono;
declare const mappaWebhook: typeof import("@mappa-webhooks/hono").mappaWebhook;
/** Cloudflare's, from @cloudflare/workers-types. */
interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
  passThroughOnException(): void;
  props: unknown;
}
`,
  "packages/koa/README.md": `${common}
declare const app: import("koa");
declare const mappaWebhook: typeof import("@mappa-webhooks/koa").mappaWebhook;
declare const Router: typeof import("@koa/router").default;
declare const router: import("@koa/router").default;
`,
  "packages/nestjs/README.md": `${common}
declare const MappaWebhookModule: typeof import("@mappa-webhooks/nestjs").MappaWebhookModule;
declare const NestFactory: typeof import("@nestjs/core").NestFactory;
declare class AppModule {}
/** From @nestjs/config. */
declare class ConfigModule {}
declare class ConfigService {
  getOrThrow<T = string>(key: string): T;
}
`,
  "packages/emulator/README.md": `${common}
/** The reader's code under test. */
declare const app: {
  requestReport(options: { mappaBaseUrl: string }): Promise<string>;
  orderStatus(jobId: string): Promise<string>;
};
declare const mappa: import("@mappa-webhooks/emulator").MappaEmulator;
declare const jobId: string;
`,
  "packages/mysql/README.md": `${common}${express}
declare const handlers: import("@mappa-webhooks/core").MappaHandlerMap;
declare const pool: import("mysql2/promise").Pool;
`,
  "packages/sqlite/README.md": `${common}${express}
declare const handlers: import("@mappa-webhooks/core").MappaHandlerMap;
`,
  "packages/aws-lambda/README.md": `${common}
/** The receiver's options, shared with recovery. */
declare const options: import("@mappa-webhooks/core").MappaWebhooksOptions & {
  idempotency: import("@mappa-webhooks/core").IdempotencyStore;
};
`,
  "packages/next/README.md": `${common}
declare const createMappaWebhookHandler: typeof import("@mappa-webhooks/next").createMappaWebhookHandler;
/** The receiver's options, shared with recovery. */
declare const options: import("@mappa-webhooks/core").MappaWebhooksOptions & {
  idempotency: import("@mappa-webhooks/core").IdempotencyStore;
};
`,
  "packages/dynamodb/README.md": `${common}
/** The reader's AWS CDK stack, and the part of aws-cdk-lib/aws-dynamodb the excerpt uses. */
declare const stack: unknown;
declare namespace dynamodb {
  class Table {
    constructor(scope: unknown, id: string, props: object);
  }
  const AttributeType: { STRING: "S" };
  const BillingMode: { PAY_PER_REQUEST: "PAY_PER_REQUEST" };
}
`,
  "packages/postgres/README.md": `${common}${express}
declare const pool: import("pg").Pool;
declare const saveReport: (client: import("pg").PoolClient, reportId: string) => Promise<void>;
`,
  "packages/redis/README.md": `${common}${express}
declare const connection: { host: string; port: number };
declare const saveReport: (reportId: string) => Promise<void>;
/** A node-redis client. */
declare const client: {
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
};
declare const createRedisIdempotencyStore: typeof import("@mappa-webhooks/redis").createRedisIdempotencyStore;
`,
  "packages/testing/README.md": `${common}
declare const beforeAll: typeof import("vitest").beforeAll;
declare const afterAll: typeof import("vitest").afterAll;
declare const it: typeof import("vitest").it;
declare const expect: typeof import("vitest").expect;
declare const createTestEvent: typeof import("@mappa-webhooks/testing").createTestEvent;
/** An app with a Fetch handler (Hono, ...). */
declare const app: {
  fetch(request: Request): Response | Promise<Response>;
  /** The reader's code under test (the emulator excerpt). */
  requestReport(options: { mappaBaseUrl: string }): Promise<string>;
};
declare const fastify: import("fastify").FastifyInstance;
/** supertest's request(). */
declare function request(app: unknown): {
  post(path: string): {
    set(headers: Record<string, string>): { send(body: string): { expect(status: number): Promise<unknown> } };
  };
};
`,
};
