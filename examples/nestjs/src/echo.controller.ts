import { Body, Controller, HttpCode, Post } from "@nestjs/common";

// An ordinary JSON route: Nest's body parser still parses JSON here.
@Controller("api")
export class EchoController {
  @Post("echo")
  @HttpCode(200)
  echo(@Body() body: unknown) {
    return { echo: body };
  }
}
