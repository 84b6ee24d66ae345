// A real Koa app receiving Mappa webhooks beside an ordinary JSON API.

import { bodyParser } from "@koa/bodyparser";
import Router from "@koa/router";
import { mappaWebhook } from "@mappa-webhooks/koa";
import Koa from "koa";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret (e.g. whsec_...).");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

const app = new Koa();

// 1. The webhook first: it verifies the raw bytes, so it must see the body before any parser.
app.use(
  mappaWebhook({
    secret,
    on: {
      "report.completed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} report=${event.data.reportId}`,
        );
      },
      "report.failed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} error=${event.data.error.code}`,
        );
      },
      "matching.completed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} matching=${event.data.matchingId}`,
        );
      },
      "matching.failed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} error=${event.data.error.code}`,
        );
      },
    },
    onUnknown: (event) => {
      console.log(
        `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} (not a known type, ignored)`,
      );
    },
    onError: (error, info) => {
      console.error(`[mappa:error] ${error.code} in ${info.phase}: ${error.message}`);
    },
  }),
);

// 2. The body parsing and routes the rest of the app needs.
app.use(bodyParser());
const router = new Router();
router.post("/api/echo", (ctx) => {
  ctx.body = { echo: ctx.request.body };
});
app.use(router.routes());
app.use(router.allowedMethods());

const server = app.listen(port, host, () => {
  console.log(`listening on http://${host}:${server.address().port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
