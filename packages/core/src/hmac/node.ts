import { createHmac } from "node:crypto";
import type { HmacEngine } from "./types.js";

export const hmacEngine: HmacEngine = {
  name: "node",
  digest(secret, prefix, body) {
    return createHmac("sha256", secret).update(prefix).update(body).digest();
  },
};
