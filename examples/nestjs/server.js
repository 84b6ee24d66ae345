// Runs the TypeScript app in src/ directly (tsx compiles it on the fly): no build step.
import { register } from "tsx/esm/api";

register({ tsconfig: new URL("./tsconfig.json", import.meta.url).pathname });
await import("./src/main.ts");
