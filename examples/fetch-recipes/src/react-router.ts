// React Router (framework mode, formerly Remix): app/routes/webhooks.mappa.ts
import type { ActionFunctionArgs } from "react-router";
import { webhooks } from "./receiver.js";

export function action({ request }: ActionFunctionArgs): Promise<Response> {
  return webhooks.handleRequest(request);
}
