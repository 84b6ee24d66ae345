// The Elysia recipe (src/elysia.ts) served by Bun.
import { app } from "../src/elysia.js";

app.listen({ port: Number(process.env.PORT ?? 3000), hostname: process.env.HOST ?? "127.0.0.1" });
console.log(`listening on http://${app.server?.hostname}:${app.server?.port}`);
