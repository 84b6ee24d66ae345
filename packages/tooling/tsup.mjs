// One build recipe for every published package: dual ESM + CJS with per-format types.
import { defineConfig } from "tsup";

/**
 * @param {{ entry: string[] | Record<string, string>, platform?: "node" | "neutral", external?: string[], esbuildPlugins?: import("tsup").Options["esbuildPlugins"], outDir?: string, dts?: boolean, banner?: import("tsup").Options["banner"], format?: ("esm" | "cjs")[] }} options
 */
export function packageConfig(options) {
  return defineConfig({
    entry: options.entry,
    format: options.format ?? ["esm", "cjs"],
    dts: options.dts ?? true,
    sourcemap: true,
    clean: options.outDir === undefined,
    outDir: options.outDir ?? "dist",
    target: options.platform === "node" ? "node20" : "es2022",
    platform: options.platform ?? "neutral",
    treeshake: true,
    splitting: false,
    external: options.external ?? [],
    esbuildPlugins: options.esbuildPlugins ?? [],
    banner: options.banner,
  });
}
