import { MappaWebhookModule } from "@mappa-webhooks/nestjs";
import { Module } from "@nestjs/common";
import { EchoController } from "./echo.controller.js";
import { WebhooksController } from "./webhooks.controller.js";

@Module({
  imports: [
    // forRootAsync({ imports: [ConfigModule], inject: [ConfigService], useFactory }) works too.
    MappaWebhookModule.forRoot({
      secret: process.env.MAPPA_WEBHOOK_SECRET ?? "",
      onError: (error, info) => {
        console.error(`[mappa:error] ${error.code} in ${info.phase}: ${error.message}`);
      },
    }),
  ],
  controllers: [WebhooksController, EchoController],
})
export class AppModule {}
