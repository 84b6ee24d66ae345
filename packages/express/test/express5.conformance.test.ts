import { describeAdapterExports, describeConformance } from "@mappa-webhooks/conformance";
import express, { type NextFunction, type Request, type Response } from "express";
import * as adapterModule from "../src/index.js";
import { mappaWebhook } from "../src/index.js";
import { listen } from "./helpers.js";

describeConformance("Express 5", async (options) => {
  const app = express();
  app.use(mappaWebhook(options));
  // The JSON parser a real app has, after the webhook middleware.
  app.use(express.json());
  app.post("/api/echo", (req, res) => {
    res.json({ echo: req.body });
  });
  // Anything that reached Express's own error handling (whose default page has a stack trace).
  const frameworkErrors: unknown[] = [];
  app.use((error: unknown, _req: Request, _res: Response, next: NextFunction) => {
    frameworkErrors.push(error);
    next(error);
  });
  return { ...(await listen(app)), frameworkErrors: () => frameworkErrors };
});

describeAdapterExports(
  "@mappa-webhooks/express",
  adapterModule,
  new URL("../src/index.ts", import.meta.url),
);
