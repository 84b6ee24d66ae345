// h3 v2 (and Nitro / Nuxt on h3 v2): the event carries the Fetch Request as `event.req`.
import { defineHandler, H3 } from "h3";
import { webhooks } from "./receiver.js";

export const app = new H3().post(
  "/webhooks/mappa",
  defineHandler((event) => webhooks.handleRequest(event.req)),
);
