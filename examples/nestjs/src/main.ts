import "reflect-metadata";
import { NestFactory } from "@nestjs/core";
import { AppModule } from "./app.module.js";

if (!process.env.MAPPA_WEBHOOK_SECRET) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret (e.g. whsec_...).");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

const app = await NestFactory.create(AppModule, { logger: ["error", "warn"] });
app.enableShutdownHooks();
await app.listen(port, host);
const address = app.getHttpServer().address() as { port: number };
console.log(`listening on http://${host}:${address.port}`);
