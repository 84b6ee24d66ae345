// Elysia: `parse: "none"` keeps the body unread, so the exact bytes reach the verifier.
import { Elysia } from "elysia";
import { webhooks } from "./receiver.js";

export const app = new Elysia().post(
  "/webhooks/mappa",
  ({ request }) => webhooks.handleRequest(request),
  { parse: "none" },
);
