/**
 * The inspector page's script, bundled on its own for the browser (tsup inlines the bundle into
 * the page). It shares its types with the server. Everything from a delivery is written with
 * `textContent`, never parsed as HTML. The list is updated row by row: a new delivery adds one
 * row, an update replaces one, a dropped delivery removes one; only a (re)connection builds the
 * whole list, from GET /api/deliveries.
 */

import type { ForwardResult } from "./forward.js";
import type { FreshCurl, InspectorDetail, InspectorInfo } from "./server.js";
import type { DeliverySummary, LatestAnswer, Replay, Verdict } from "./store.js";

type Summary = DeliverySummary;
type Detail = InspectorDetail;
type Info = InspectorInfo;
type Answer = ForwardResult & { signature?: Replay["signature"] };

const byId = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const el = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { text?: string; className?: string; attrs?: Record<string, string> } = {},
  children: Array<Node | string> = [],
): HTMLElementTagNameMap[K] => {
  const node = document.createElement(tag);
  if (props.text !== undefined) node.textContent = props.text;
  if (props.className !== undefined) node.className = props.className;
  for (const [name, value] of Object.entries(props.attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
};

const rows = byId<HTMLTableSectionElement>("rows");
const empty = byId<HTMLParagraphElement>("empty");
const count = byId<HTMLSpanElement>("count");
const live = byId<HTMLDivElement>("live");
const connection = byId<HTMLParagraphElement>("connection");
const detail = byId<HTMLElement>("detail");
const route = byId<HTMLParagraphElement>("route");

const deliveries = new Map<string, Summary>();
let order: string[] = [];
let selected: string | undefined;
let info: Info | undefined;
let shown: Detail | undefined;

const time = (iso: string) => {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleTimeString([], { hour12: false });
};
const verdictText = (v: Verdict): string => {
  if (v.ok && v.duplicate === true) return "↺ duplicate";
  if (v.ok) return v.event?.known === false ? "✓ valid (unknown type)" : "✓ valid";
  return `✗ ${v.status} rejected`;
};
const failedCheck = (v: Verdict) => (v.ok ? "" : `failed check: ${v.check ?? v.code ?? "?"}`);
const verdictClass = (v: Verdict) => (v.ok ? (v.duplicate ? "dup" : "ok") : "bad");
/** `200`, `200 duplicate`, `500 body_already_parsed`, `unreachable (…)`: an app's answer. */
const answerText = (answer: LatestAnswer): string => {
  if (answer.status === undefined) return `unreachable (${answer.error ?? "error"})`;
  if (answer.duplicate === true) return `${answer.status} duplicate`;
  return answer.code === undefined ? String(answer.status) : `${answer.status} ${answer.code}`;
};
const appText = (s: Summary): string => {
  if (s.pending) return "waiting…";
  if (s.app === undefined) return info?.forwardTo === undefined ? "—" : "not sent";
  return `${answerText(s.app)}${s.app.replay === undefined ? "" : ` · replay ${s.app.replay}`}`;
};
const appClass = (s: Summary) =>
  s.app === undefined
    ? ""
    : s.app.status === undefined || s.app.status >= 300
      ? "bad"
      : s.app.duplicate === true
        ? "dup"
        : "ok";
const latencyText = (s: Summary) => (s.app === undefined ? "—" : `${s.app.latencyMs} ms`);
const announce = (text: string) => {
  live.textContent = "";
  // A fresh text node each time, so screen readers read a repeated message again.
  setTimeout(() => {
    live.textContent = text;
  }, 50);
};
const describe = (s: Summary) =>
  `${s.type ?? "not an event"}, ${s.verdict.ok ? verdictText(s.verdict).replace(/^[✓↺] /, "") : `rejected, ${failedCheck(s.verdict)}`}${
    s.app?.status !== undefined ? `, app answered ${s.app.status}` : ""
  }`;

const renderRow = (s: Summary): HTMLTableRowElement => {
  const link = el("a", {
    text: s.type ?? "(not an event)",
    attrs: { href: `#/deliveries/${s.id}`, "data-id": s.id },
  });
  if (s.id === selected) link.setAttribute("aria-current", "true");
  const row = el("tr", { attrs: { "data-id": s.id } }, [
    el("td", { className: "time" }, [
      el("time", { text: time(s.receivedAt), attrs: { datetime: s.receivedAt } }),
    ]),
    el("td", { className: "type" }, [link]),
    el("td", { className: "mono", text: s.eventId ?? "—" }),
    el("td", {}, [
      el("span", {
        className: `verdict ${verdictClass(s.verdict)}`,
        text: verdictText(s.verdict),
      }),
      s.verdict.ok ? "" : el("span", { className: "check", text: failedCheck(s.verdict) }),
    ]),
    el("td", {}, [el("span", { className: `verdict ${appClass(s)}`, text: appText(s) })]),
    el("td", { className: "num latency", text: latencyText(s) }),
  ]);
  if (s.id === selected) row.classList.add("selected");
  return row;
};

// The list, newest first: `order` holds the ids in the rows' order, `rowOf` each one's row.
const rowOf = new Map<string, HTMLTableRowElement>();

const updateCount = () => {
  empty.hidden = order.length > 0;
  count.textContent = `(${order.length})`;
};

/** Where a delivery received at `receivedAt` goes: newest first, usually index 0. */
const positionOf = (receivedAt: string): number => {
  let low = 0;
  let high = order.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    const other = deliveries.get(order[mid] as string)?.receivedAt ?? "";
    if (other > receivedAt) low = mid + 1;
    else high = mid;
  }
  return low;
};

/** Adds or replaces one delivery's row; nothing else in the list is touched. */
const upsert = (s: Summary) => {
  const old = rowOf.get(s.id);
  deliveries.set(s.id, s);
  const row = renderRow(s);
  rowOf.set(s.id, row);
  if (old !== undefined) {
    const focused = old.contains(document.activeElement);
    old.replaceWith(row);
    if (focused) row.querySelector<HTMLAnchorElement>("a[data-id]")?.focus();
    return;
  }
  const index = positionOf(s.receivedAt);
  const next = order[index];
  order.splice(index, 0, s.id);
  rows.insertBefore(row, next === undefined ? null : (rowOf.get(next) ?? null));
  updateCount();
};

const removeRow = (id: string) => {
  const row = rowOf.get(id);
  if (row === undefined) return;
  row.remove();
  rowOf.delete(id);
  deliveries.delete(id);
  // The oldest is the one dropped: search from the end.
  const index = order.lastIndexOf(id);
  if (index !== -1) order.splice(index, 1);
  updateCount();
};

/** The whole list at once, on a (re)connection (newest first). */
const renderAll = (list: Summary[]) => {
  deliveries.clear();
  rowOf.clear();
  order = [];
  const sorted = [...list].sort((a, b) =>
    a.receivedAt === b.receivedAt ? 0 : a.receivedAt > b.receivedAt ? -1 : 1,
  );
  const fragment = document.createDocumentFragment();
  for (const s of sorted) {
    deliveries.set(s.id, s);
    order.push(s.id);
    const row = renderRow(s);
    rowOf.set(s.id, row);
    fragment.append(row);
  }
  rows.replaceChildren(fragment);
  updateCount();
};

/** Moves the selection mark from one row to another, touching those two rows only. */
const select = (id: string | undefined) => {
  const previous = selected === undefined ? undefined : rowOf.get(selected);
  previous?.classList.remove("selected");
  previous?.querySelector("a[data-id]")?.removeAttribute("aria-current");
  selected = id;
  const row = id === undefined ? undefined : rowOf.get(id);
  row?.classList.add("selected");
  row?.querySelector("a[data-id]")?.setAttribute("aria-current", "true");
};

const api = async <T>(path: string, init?: RequestInit): Promise<T> => {
  const response = await fetch(path, init);
  const body = (await response.json()) as T & { message?: string };
  if (!response.ok) throw new Error(body.message ?? `HTTP ${response.status}`);
  return body;
};

// The last action's outcome, kept across re-renders of the same delivery.
let lastStatus: { id: string; text: string } | undefined;
const status = (text: string) => {
  if (selected !== undefined) lastStatus = { id: selected, text };
  const line = document.getElementById("action-status");
  if (line !== null) line.textContent = text;
};

const section = (title: string, id: string, ...children: Array<Node | string>) =>
  el("section", { attrs: { "aria-labelledby": id } }, [
    el("h3", { text: title, attrs: { id } }),
    ...children,
  ]);

/** A 2xx answer whose JSON says `"duplicate": true`: the app did not take the event again. */
const isDuplicate = (answer: Answer): boolean => {
  if (answer.status === undefined || answer.status < 200 || answer.status >= 300) return false;
  try {
    return (JSON.parse(answer.body ?? "") as { duplicate?: unknown } | null)?.duplicate === true;
  } catch {
    return false;
  }
};

const answerList = (answer: Answer) =>
  el("dl", { className: "pairs" }, [
    el("dt", { text: "URL" }),
    el("dd", { className: "mono", text: answer.url }),
    el("dt", { text: "Status" }),
    el("dd", {
      className:
        answer.status !== undefined && answer.status < 300
          ? isDuplicate(answer)
            ? "dup"
            : "ok"
          : "bad",
      text:
        answer.status === undefined
          ? `unreachable: ${answer.error ?? "network error"}`
          : isDuplicate(answer)
            ? `${answer.status} duplicate: the app already had this event and did not take it again`
            : String(answer.status),
    }),
    el("dt", { text: "Latency" }),
    el("dd", { text: `${answer.latencyMs} ms` }),
    ...(answer.body === undefined || answer.body === ""
      ? []
      : [el("dt", { text: "Body" }), el("dd", {}, [el("pre", { text: answer.body })])]),
  ]);

const renderDetail = (d: Detail) => {
  const focusedId =
    detail.contains(document.activeElement) && document.activeElement?.id
      ? document.activeElement.id
      : undefined;
  shown = d;
  const s = d.summary;
  const v = s.verdict;
  const heading = el("h2", {
    text: `${s.type ?? "Not an event"} ${s.eventId ?? ""}`.trim(),
    attrs: { id: "detail-title", tabindex: "-1" },
  });
  const verdict = el("p", { className: "summary" }, [
    el("span", { className: `verdict big ${verdictClass(v)}`, text: verdictText(v) }),
    v.ok ? "" : ` ${v.code ?? ""} — ${failedCheck(v)}`,
    v.duplicateOf === undefined
      ? ""
      : el("span", {}, [
          " of ",
          el("a", {
            text: "the first delivery",
            attrs: { href: `#/deliveries/${v.duplicateOf}` },
          }),
        ]),
    el("br"),
    el("span", {
      className: "muted",
      text: `${d.method} ${d.path} · received ${new Date(s.receivedAt).toLocaleString()} · ${d.bodyBytes} bytes${s.loaded ? " · loaded from a file" : ""}`,
    }),
  ]);
  // The same answer, status and latency as the list's row: the latest, a replay's included.
  const latest =
    s.app === undefined
      ? undefined
      : el("p", { attrs: { id: "latest-answer" } }, [
          s.app.replay === undefined
            ? "The app answered "
            : `Replay ${s.app.replay}: the app answered `,
          el("span", { className: `verdict ${appClass(s)}`, text: answerText(s.app) }),
          ` in ${s.app.latencyMs} ms`,
          s.app.duplicate === true
            ? ": a duplicate, it already had this event and did not take it again (no handler ran)."
            : ".",
        ]);

  const replay = el("button", {
    text: "Replay to the app",
    attrs: { type: "button", id: "replay", "aria-describedby": "replay-note" },
  });
  if (!d.replay.possible) replay.disabled = true;
  replay.addEventListener("click", () => void doReplay(s.id));
  const copy = el("button", { text: "Copy as curl", attrs: { type: "button", id: "copy" } });
  copy.addEventListener("click", () => void doCopy(d.curl, "original"));
  // The original signature is refused after the tolerance (5 minutes): sign a copy now.
  const copyFresh = d.freshCurl
    ? el("button", {
        text: "Copy as curl, freshly signed",
        attrs: { type: "button", id: "copy-fresh" },
      })
    : undefined;
  copyFresh?.addEventListener("click", () => void doCopyFresh(s.id));
  const actions = el("div", { className: "actions" }, [
    replay,
    copy,
    ...(copyFresh === undefined ? [] : [copyFresh]),
    el("a", {
      className: "button",
      text: "Download delivery",
      attrs: { href: `/api/deliveries/${s.id}/download`, download: "", id: "download" },
    }),
    el("a", {
      className: "button",
      text: "Download raw body",
      attrs: { href: `/api/deliveries/${s.id}/body`, download: "" },
    }),
  ]);
  const replayNote = el("p", {
    className: "muted",
    attrs: { id: "replay-note" },
    text: d.replay.possible
      ? d.replay.signature === "fresh"
        ? "Replay sends the same bytes to the app with a fresh signature (the secret is known)."
        : "Replay sends the same bytes with the original signature (no configured secret signed it)."
      : (d.replay.reason ?? "Replay is not available."),
  });

  const checks = el(
    "ol",
    { className: "checks" },
    d.explanation.checks.map((check) =>
      el("li", { className: check.ok === true ? "ok" : check.ok === false ? "bad" : "skip" }, [
        el("span", {
          className: "mark",
          text: check.ok === true ? "✓" : check.ok === false ? "✗" : "–",
          attrs: { "aria-hidden": "true" },
        }),
        el("span", {
          className: "sr-only",
          text: check.ok === true ? "passed: " : check.ok === false ? "failed: " : "not checked: ",
        }),
        el("strong", { text: check.label }),
        `: ${check.detail}`,
      ]),
    ),
  );
  const notes = d.explanation.notes.map((note) =>
    el("p", { className: "hint" }, [el("strong", { text: "Hint: " }), note]),
  );
  const conclusion = el("p", {
    className: d.explanation.valid ? "ok" : "bad",
    text: d.explanation.valid
      ? "✓ valid: a receiver would accept this delivery"
      : `✗ not valid${v.code === undefined ? "" : `: ${v.code}`}`,
  });

  const headers = el("table", { className: "headers" }, [
    el("caption", { className: "sr-only", text: "Request headers as received" }),
    el("thead", {}, [
      el("tr", {}, [
        el("th", { text: "Name", attrs: { scope: "col" } }),
        el("th", { text: "Value", attrs: { scope: "col" } }),
      ]),
    ]),
    el(
      "tbody",
      {},
      d.headers.map(([name, value]) =>
        el("tr", {}, [
          el("th", { className: "mono", text: name, attrs: { scope: "row" } }),
          el("td", { className: "mono", text: value }),
        ]),
      ),
    ),
  ]);

  const curl = el("details", {}, [
    el("summary", { text: "The curl command" }),
    el("pre", { text: d.curl, attrs: { id: "curl" } }),
  ]);

  const parts: Array<Node> = [
    heading,
    verdict,
    ...(latest === undefined ? [] : [latest]),
    actions,
    replayNote,
    el("p", { attrs: { id: "action-status", role: "status" } }),
    curl,
    section(
      "Signature check, step by step",
      "h-checks",
      el("p", {
        className: "muted",
        text: `As of the moment it arrived (t=${d.explanation.now}), with a ${d.explanation.toleranceSec} s tolerance.`,
      }),
      checks,
      ...notes,
      conclusion,
    ),
  ];
  if (d.forward !== undefined)
    parts.push(section("The app's answer", "h-answer", answerList(d.forward)));
  if (d.replays.length > 0) {
    parts.push(
      section(
        `Replays (${d.replays.length})`,
        "h-replays",
        el(
          "ol",
          { className: "replays" },
          d.replays.map((r) =>
            el("li", {}, [
              el("p", {
                text: `${time(r.at)} · ${r.signature === "fresh" ? "fresh signature" : "original signature"}`,
              }),
              answerList(r),
            ]),
          ),
        ),
      ),
    );
  }
  parts.push(
    section("Headers", "h-headers", headers),
    section(
      "Body",
      "h-body",
      el("p", {
        className: "muted",
        text:
          d.pretty === null
            ? "Shown as received."
            : "Pretty-printed for reading; the app received the exact bytes (Download raw body).",
      }),
      el("pre", { className: "body", text: d.pretty ?? d.bodyText, attrs: { tabindex: "0" } }),
    ),
  );
  const back = el("a", { text: "← All deliveries", className: "back", attrs: { href: "#/" } });
  detail.replaceChildren(back, ...parts);
  detail.hidden = false;
  if (lastStatus?.id === s.id) status(lastStatus.text);
  if (focusedId !== undefined) document.getElementById(focusedId)?.focus();
};

const openDetail = async (id: string, focus: boolean) => {
  select(id);
  try {
    const d = await api<Detail>(`/api/deliveries/${encodeURIComponent(id)}`);
    if (selected !== id) return;
    renderDetail(d);
    if (focus) byId("detail-title").focus();
  } catch (error) {
    detail.replaceChildren(
      el("h2", { text: "Delivery not found", attrs: { id: "detail-title", tabindex: "-1" } }),
      el("p", {
        text: `${(error as Error).message}. Only the last ${info?.keep ?? "N"} deliveries are kept.`,
      }),
    );
    detail.hidden = false;
  }
};

const doReplay = async (id: string) => {
  const button = document.getElementById("replay") as HTMLButtonElement | null;
  if (button !== null) button.disabled = true;
  status("Replaying…");
  try {
    const r = await api<Answer>(`/api/deliveries/${encodeURIComponent(id)}/replay`, {
      method: "POST",
      headers: { "x-mappa-inspector": "replay" },
    });
    const text =
      r.status === undefined
        ? `Replay failed: the app is unreachable (${r.error ?? "network error"}).`
        : isDuplicate(r)
          ? `Replayed (${r.signature} signature): the app answered ${r.status} duplicate in ${r.latencyMs} ms: it already had this event and did not take it again (no handler ran).`
          : `Replayed (${r.signature} signature): the app answered ${r.status} in ${r.latencyMs} ms.`;
    await openDetail(id, false);
    status(text);
    announce(text);
  } catch (error) {
    status(`Replay failed: ${(error as Error).message}`);
  } finally {
    const again = document.getElementById("replay") as HTMLButtonElement | null;
    if (again !== null && shown?.replay.possible === true) again.disabled = false;
  }
};

const doCopy = async (text: string, signature: "original" | "fresh") => {
  try {
    await navigator.clipboard.writeText(text);
    status(
      signature === "fresh"
        ? "Copied the curl command, signed now: it is accepted for the next 5 minutes."
        : "Copied the curl command.",
    );
  } catch {
    const pre = document.getElementById("curl");
    if (pre !== null) pre.textContent = text;
    const details = document.querySelector("details");
    if (details !== null) details.open = true;
    if (pre !== null) window.getSelection()?.selectAllChildren(pre);
    status("The clipboard is not available here: the command is selected, press Ctrl+C.");
  }
};

const doCopyFresh = async (id: string) => {
  try {
    const fresh = await api<FreshCurl>(`/api/deliveries/${encodeURIComponent(id)}/curl`, {
      method: "POST",
      headers: { "x-mappa-inspector": "curl" },
    });
    await doCopy(fresh.curl, "fresh");
  } catch (error) {
    status(`Could not sign a fresh copy: ${(error as Error).message}`);
  }
};

const routeTo = () => {
  const match = /^#\/deliveries\/([\w-]+)$/.exec(location.hash);
  if (match?.[1] !== undefined) {
    void openDetail(match[1], true);
    return;
  }
  const previous = selected;
  select(undefined);
  shown = undefined;
  detail.hidden = true;
  detail.replaceChildren();
  if (previous !== undefined) {
    rowOf.get(previous)?.querySelector<HTMLAnchorElement>("a[data-id]")?.focus();
  }
};

// Arrow keys and j/k move between deliveries; Escape goes back to the list.
document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target as HTMLElement;
  if (target.closest("input, textarea, select")) return;
  const inList = target.closest("#rows") !== null;
  const down = event.key === "ArrowDown" || event.key === "j";
  const up = event.key === "ArrowUp" || event.key === "k";
  if ((down || up) && (inList || event.key === "j" || event.key === "k") && order.length > 0) {
    // The neighbouring row, not a scan of the whole list.
    const current = inList ? target.closest("tr") : null;
    const next =
      current === null
        ? rows.firstElementChild
        : ((down ? current.nextElementSibling : current.previousElementSibling) ?? current);
    next?.querySelector<HTMLAnchorElement>("a[data-id]")?.focus();
    event.preventDefault();
  } else if (event.key === "Escape" && selected !== undefined) {
    location.hash = "#/";
    event.preventDefault();
  }
});
window.addEventListener("hashchange", routeTo);

const describeRoute = () => {
  if (info === undefined) return;
  route.replaceChildren(
    "Receiving on ",
    el("code", { text: info.receivingUrl }),
    ...(info.forwardTo === undefined
      ? [" (not forwarding: start listen with --forward-to <url> to reach your app)"]
      : [" → forwarding to ", el("code", { text: info.forwardTo })]),
    `. The last ${info.keep} deliveries are kept.`,
  );
  const example = document.getElementById("example");
  if (example !== null)
    example.textContent = `npx @mappa-webhooks/cli trigger report.completed --url ${info.receivingUrl}`;
};

let snapshotSeen = false;
// On every (re)connection the stream says it is ready; the list is then fetched as JSON, and the
// changes that arrived meanwhile are applied after it (each is idempotent: an upsert or a remove).
let queued: Array<() => void> | undefined = [];
/** Runs a change now, or once the list being fetched is shown. */
const whenListed = (apply: () => void) => {
  if (queued === undefined) apply();
  else queued.push(apply);
};
const stream = new EventSource("/api/stream");
stream.addEventListener("open", () => {
  connection.textContent = "Live";
  connection.className = "conn ok";
});
stream.addEventListener("error", () => {
  connection.textContent = "Disconnected: reconnecting… (is listen still running?)";
  connection.className = "conn bad";
  // A reconnection starts again from a fresh list; changes wait for it.
  queued = queued ?? [];
});
stream.addEventListener("ready", () => {
  queued = queued ?? [];
  void (async () => {
    let data: { info: Info; deliveries: Summary[] };
    try {
      data = await api<{ info: Info; deliveries: Summary[] }>("/api/deliveries");
    } catch {
      return; // The stream's error handler shows it; EventSource reconnects.
    }
    info = data.info;
    describeRoute();
    const focused = (document.activeElement as HTMLElement | null)?.getAttribute("data-id");
    renderAll(data.deliveries);
    if (selected !== undefined) select(selected);
    if (focused !== null && focused !== undefined) {
      rowOf.get(focused)?.querySelector<HTMLAnchorElement>("a[data-id]")?.focus();
    }
    const changes = queued ?? [];
    queued = undefined;
    for (const apply of changes) apply();
    if (!snapshotSeen) {
      snapshotSeen = true;
      routeTo();
    }
  })();
});
const change = (kind: "delivery" | "update", s: Summary) => {
  const before = deliveries.get(s.id);
  upsert(s);
  // One announcement per delivery, once the app's answer (if any) is known.
  const arrived =
    (kind === "delivery" && !s.pending) ||
    (kind === "update" && before?.pending === true && !s.pending);
  if (arrived) announce(`New delivery: ${describe(s)}`);
  if (s.id === selected && kind === "update") void openDetail(s.id, false);
};
const onChange = (kind: "delivery" | "update") => (message: Event) => {
  const s = JSON.parse((message as MessageEvent<string>).data) as Summary;
  whenListed(() => change(kind, s));
};
stream.addEventListener("delivery", onChange("delivery"));
stream.addEventListener("update", onChange("update"));
stream.addEventListener("remove", (message) => {
  const { id } = JSON.parse((message as MessageEvent<string>).data) as { id: string };
  whenListed(() => removeRow(id));
});
