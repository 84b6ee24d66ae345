import { describeConformance } from "@mappa-webhooks/conformance";
import express from "express";
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
  return listen(app);
});
