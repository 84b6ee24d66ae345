/** `import text from "./file.ts?bundle"`: the file bundled for the browser, as text (tsup.config.ts). */
declare module "*?bundle" {
  const source: string;
  export default source;
}
