import type { Options } from "tsup";

export interface PackageConfigOptions {
  entry: string[] | Record<string, string>;
  platform?: "node" | "neutral";
  external?: string[];
  esbuildPlugins?: Options["esbuildPlugins"];
  outDir?: string;
  dts?: boolean;
  banner?: Options["banner"];
  format?: ("esm" | "cjs")[];
}
export declare function packageConfig(options: PackageConfigOptions): Options;
