// Nuxt 3/4 on h3 v1: server/api/webhooks/mappa.post.ts (`defineEventHandler` is auto-imported
// there; imported here so the file type-checks on its own).
import { defineEventHandler, toWebRequest } from "h3v1";
import { webhooks } from "./receiver.js";

export default defineEventHandler((event) => webhooks.handleRequest(toWebRequest(event)));
