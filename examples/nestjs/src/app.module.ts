import { MappaWebhookModule } from "@mappa-webhooks/nestjs";
import { Module, type OnApplicationShutdown } from "@nestjs/common";
import { EchoController } from "./echo.controller.js";
import { idempotencyStore } from "./store.js";
import { WebhooksController } from "./webhooks.controller.js";

let closeStore: (() => Promise<void>) | undefined;

@Module({
  imports: [
    // The factory opens the store (src/store.ts: SQLite by default) before the app listens.
    // With injected config: forRootAsync({ imports: [ConfigModule], inject: [ConfigService], ... }).
    MappaWebhookModule.forRootAsync({
      useFactory: async () => {
        const { close, ...store } = await idempotencyStore();
        closeStore = close;
        return {
          secret: process.env.MAPPA_WEBHOOK_SECRET ?? "",
          ...store,
          onError: (error, info) => {
            console.error(`[mappa:error] ${error.code} in ${info.phase}: ${error.message}`);
          },
        };
      },
    }),
  ],
  controllers: [WebhooksController, EchoController],
})
export class AppModule implements OnApplicationShutdown {
  async onApplicationShutdown() {
    await closeStore?.();
  }
}
