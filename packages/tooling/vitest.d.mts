import type { ViteUserConfig } from "vitest/config";

type Reporters = NonNullable<NonNullable<ViteUserConfig["test"]>["reporters"]>;
export declare function reporters(name: string): Reporters;
export declare function packageTestConfig(
  name: string,
  test?: ViteUserConfig["test"],
): ViteUserConfig;
