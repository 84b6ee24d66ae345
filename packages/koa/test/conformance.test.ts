import { bodyParser } from "@koa/bodyparser";
import Router from "@koa/router";
import { describeAdapterExports, describeConformance } from "@mappa-webhooks/conformance";
import Koa2 from "koa2";
import Koa3 from "koa3";
import * as adapterModule from "../src/index.js";
import { mappaWebhook } from "../src/index.js";
import { listen } from "./helpers.js";

const majors = [
  { name: "Koa 3", Koa: Koa3 },
  { name: "Koa 2", Koa: Koa2 },
];

for (const { name, Koa } of majors) {
  describeConformance(name, async (options) => {
    const app = new Koa();
    app.use(mappaWebhook(options));
    // The body parser and router a real app has, after the webhook middleware.
    app.use(bodyParser());
    const router = new Router();
    router.post("/api/echo", (ctx) => {
      ctx.body = { echo: (ctx.request as { body?: unknown }).body };
    });
    app.use(router.routes());
    return listen(app);
  });
}

describeAdapterExports(
  "@mappa-webhooks/koa",
  adapterModule,
  new URL("../src/index.ts", import.meta.url),
);
