// workerd: the app as a module Worker, bundled by `wrangler deploy --dry-run`.
import { createApp } from "./app.js";

export default createApp("workerd");
