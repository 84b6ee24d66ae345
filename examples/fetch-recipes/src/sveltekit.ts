// SvelteKit: src/routes/webhooks/mappa/+server.ts
import type { RequestHandler } from "@sveltejs/kit";
import { webhooks } from "./receiver.js";

export const POST: RequestHandler = ({ request }) => webhooks.handleRequest(request);
