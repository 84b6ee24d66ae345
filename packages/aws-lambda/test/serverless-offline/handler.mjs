// The function serverless-offline runs: this package's build, logging each handled event.
import { createMappaWebhookHandler } from "../../dist/index.js";

export const handler = createMappaWebhookHandler({
  secret: process.env.MAPPA_WEBHOOK_SECRET,
  on: {
    "report.completed": (event, { event: lambdaEvent }) => {
      const source = lambdaEvent.version === "2.0" ? "http-api" : "rest-api";
      console.log(`[mappa] ${source} ${event.id} note=${JSON.stringify(event.data.note ?? null)}`);
    },
  },
});
