// The receiver every recipe shares: one per process, created at module load.
import { createMappaWebhooks } from "@mappa-webhooks/core";

export const webhooks = createMappaWebhooks({
  secret: process.env.MAPPA_WEBHOOK_SECRET ?? "",
  on: {
    "report.completed": async (event) => {
      console.log(`report ${event.data.reportId} is ready`);
    },
    "report.failed": (event) => {
      console.warn(`job ${event.data.jobId} failed: ${event.data.error.code}`);
    },
  },
});
