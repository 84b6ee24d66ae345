// Astro (server output or an adapter): src/pages/webhooks/mappa.ts
import type { APIRoute } from "astro";
import { webhooks } from "./receiver.js";

export const prerender = false;
export const POST: APIRoute = ({ request }) => webhooks.handleRequest(request);
