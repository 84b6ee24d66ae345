// The page's script: src/inspector/client.ts bundled for the browser at build time (the
// `?bundle` loader in tsup.config.ts), inlined as text.
import clientScript from "./client.ts?bundle";

if (/<\/script/i.test(clientScript)) {
  throw new Error("the inspector's script contains </script, which would end its element early");
}

const STYLE = `
:root {
  color-scheme: light dark;
  --bg: #ffffff; --fg: #1a1d21; --muted: #55606e; --line: #d5dae1; --panel: #f5f7f9;
  --accent: #0b57d0; --ok: #146c2e; --ok-bg: #e3f4e8; --bad: #b3261e; --bad-bg: #fbe9e7;
  --dup: #7a4b00; --dup-bg: #fff1d6; --focus: #0b57d0; --selected: #e8f0fe;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #15181c; --fg: #e6e9ed; --muted: #a2acb8; --line: #343b44; --panel: #1d2127;
    --accent: #8ab4f8; --ok: #7fd49a; --ok-bg: #183524; --bad: #ffb4a9; --bad-bg: #421c18;
    --dup: #f5c46b; --dup-bg: #3b2c0c; --focus: #8ab4f8; --selected: #22324a;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
a { color: var(--accent); }
code, .mono, pre { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 0.9em; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; border-radius: 3px; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
.skip { position: absolute; left: 0.5rem; top: -3rem; background: var(--bg); padding: 0.5rem; }
.skip:focus { top: 0.5rem; }
header { padding: 0.75rem 1.25rem; border-bottom: 1px solid var(--line); background: var(--panel); }
header h1 { font-size: 1.15rem; margin: 0; }
header p { margin: 0.25rem 0 0; color: var(--muted); }
.conn { font-weight: 600; }
.conn.ok { color: var(--ok); } .conn.bad { color: var(--bad); }
main { display: grid; grid-template-columns: minmax(0, 1fr); gap: 0; }
@media (min-width: 1100px) { main.split { grid-template-columns: minmax(0, 11fr) minmax(0, 9fr); } }
section.pane { padding: 1rem 1.25rem; min-width: 0; }
#detail { border-left: 1px solid var(--line); }
#detail-title:focus { outline: none; }
h2 { font-size: 1.05rem; margin: 0 0 0.5rem; overflow-wrap: anywhere; }
h3 { font-size: 0.95rem; margin: 1.25rem 0 0.4rem; }
.help, .muted { color: var(--muted); font-size: 0.9em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { font-size: 0.85em; color: var(--muted); font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
td.mono { overflow-wrap: anywhere; }
td.time { white-space: nowrap; }
tr.selected { background: var(--selected); }
#rows tr:hover { background: var(--panel); }
.verdict { display: inline-block; padding: 0 0.4rem; border-radius: 4px; font-weight: 600; white-space: nowrap; }
.verdict.ok { color: var(--ok); background: var(--ok-bg); }
.verdict.bad { color: var(--bad); background: var(--bad-bg); }
.verdict.dup { color: var(--dup); background: var(--dup-bg); }
.verdict.big { font-size: 1.05em; }
.check { display: block; color: var(--muted); font-size: 0.85em; margin-top: 0.15rem; }
.ok { color: var(--ok); } .bad { color: var(--bad); } dd.dup { color: var(--dup); }
.actions { display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 0.75rem 0 0.25rem; }
button, a.button {
  font: inherit; font-weight: 600; padding: 0.35rem 0.8rem; border-radius: 6px; cursor: pointer;
  border: 1px solid var(--line); background: var(--panel); color: var(--fg); text-decoration: none;
}
button:first-child { background: var(--accent); color: var(--bg); border-color: var(--accent); }
button:disabled { opacity: 0.55; cursor: not-allowed; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 0.6rem; overflow: auto; max-height: 28rem; margin: 0.25rem 0; white-space: pre-wrap; overflow-wrap: anywhere; }
ol.checks { list-style: none; padding: 0; margin: 0; }
ol.checks li { padding: 0.2rem 0; }
ol.checks .mark { display: inline-block; width: 1.3rem; font-weight: 700; }
ol.checks li.skip { color: var(--muted); }
ol.checks li.ok .mark { color: var(--ok); } ol.checks li.bad .mark { color: var(--bad); }
ol.checks li.ok, ol.checks li.bad { color: var(--fg); }
.hint { background: var(--dup-bg); border-radius: 6px; padding: 0.4rem 0.6rem; }
dl.pairs { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.2rem 0.75rem; margin: 0; }
dl.pairs dt { color: var(--muted); } dl.pairs dd { margin: 0; overflow-wrap: anywhere; }
table.headers th { font-weight: 600; white-space: nowrap; }
table.headers td { overflow-wrap: anywhere; }
ol.replays { padding-left: 1.2rem; }
.back { display: inline-block; margin-bottom: 0.5rem; }
#empty code { overflow-wrap: anywhere; }
`;

/** The inspector page: one HTML document with its style and script inline, nothing fetched. */
export function inspectorPage(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<link rel="icon" href="data:,">
<title>Mappa webhooks inspector</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<a class="skip" href="#deliveries">Skip to the deliveries</a>
<header>
  <h1>Mappa webhooks inspector</h1>
  <p id="route">Connecting to mappa-webhooks listen…</p>
  <p id="connection" class="conn" role="status">Connecting…</p>
</header>
<main id="main">
  <section class="pane" aria-labelledby="list-title">
    <h2 id="list-title">Deliveries <span id="count"></span></h2>
    <p class="help">Newest first, live. Tab or ↑/↓ (j/k) move between deliveries, Enter opens one, Escape comes back.</p>
    <table id="deliveries">
      <caption class="sr-only">Deliveries received, newest first</caption>
      <thead><tr>
        <th scope="col">Time</th><th scope="col">Type</th><th scope="col">Event id</th>
        <th scope="col">Verdict</th><th scope="col">App</th><th scope="col">Latency</th>
      </tr></thead>
      <tbody id="rows"></tbody>
    </table>
    <p id="empty">No deliveries yet. Send one: <code id="example">npx @mappa-webhooks/cli trigger report.completed --url …</code></p>
  </section>
  <section id="detail" class="pane" aria-labelledby="detail-title" hidden></section>
</main>
<div id="live" class="sr-only" aria-live="polite" aria-atomic="true"></div>
<script nonce="${nonce}">
${clientScript}
const main = document.getElementById("main");
new MutationObserver(() => main.classList.toggle("split", !document.getElementById("detail").hidden))
  .observe(document.getElementById("detail"), { attributes: true, attributeFilter: ["hidden"] });
</script>
</body>
</html>
`;
}
