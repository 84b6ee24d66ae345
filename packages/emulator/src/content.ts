import type { Matching, MatchingSource, Report, ReportJsonV2 } from "./types.js";

/** Readable messages for the error codes Mappa's jobs fail with; others get a generic one. */
const ERROR_MESSAGES: Record<string, string> = {
  target_not_found: "Could not identify the target speaker in the recording.",
  audio_too_short: "The recording is too short to analyse.",
  no_speech_detected: "No speech was detected in the recording.",
  unsupported_media: "The file's format is not supported.",
  insufficient_credits: "The account has no credits left for this job.",
  internal_error: "The job failed unexpectedly; retrying may help.",
};

/** The message for an error code. */
export function messageFor(code: string): string {
  return ERROR_MESSAGES[code] ?? `The job failed with ${code}.`;
}

const TEMPLATE_TITLES: Record<string, string> = {
  general_report: "General report",
  sales_playbook: "Sales playbook",
};

/** A report's markdown and strict v2 JSON, built from what the job was asked for. */
export function buildReport(input: {
  id: string;
  jobId: string;
  createdAt: string;
  template: string;
  mediaId: string;
  label?: string | undefined;
  entity?: { id: string; label: string | null } | undefined;
}): Report {
  const title = `${TEMPLATE_TITLES[input.template] ?? input.template}${input.label ? `: ${input.label}` : ""}`;
  const who = input.entity?.label ?? "The speaker";
  const summary = `${who} speaks with a calm, structured delivery and asks clarifying questions before committing.`;
  const json: ReportJsonV2 = {
    schemaVersion: 2,
    template: input.template,
    title,
    summary,
    sections: [
      { kind: "paragraph", title: "Overview", content: summary },
      {
        kind: "traits",
        title: "Traits",
        phrases: ["Methodical", "Curious", "Diplomatic"],
      },
      {
        kind: "actions",
        title: "Next steps",
        items: [
          { title: "Lead with the agenda", context: "They respond well to a clear structure." },
          {
            title: "Leave room for questions",
            context: "They check understanding before agreeing.",
          },
        ],
      },
    ],
    meta: {
      prompt: { labels: ["emulator"], name: input.template, version: "1" },
      render: { attempts: 1, model: "emulator-1", provider: "openai" },
    },
  };
  const markdown = [
    `# ${title}`,
    "",
    summary,
    "",
    "## Traits",
    "",
    "- Methodical",
    "- Curious",
    "- Diplomatic",
    "",
    "## Next steps",
    "",
    "1. **Lead with the agenda**: they respond well to a clear structure.",
    "2. **Leave room for questions**: they check understanding before agreeing.",
    "",
  ].join("\n");
  const report: Report = {
    id: input.id,
    createdAt: input.createdAt,
    jobId: input.jobId,
    output: { template: input.template },
    media: { mediaId: input.mediaId },
    markdown,
    json,
    provenance: { behaviorMapId: `bm_${input.id}`, baselineSampleIds: [`bs_${input.id}`] },
  };
  if (input.label !== undefined) report.label = input.label;
  if (input.entity !== undefined) report.entity = input.entity;
  return report;
}

/** A matching's markdown and v1 JSON. */
export function buildMatching(input: {
  id: string;
  jobId: string;
  createdAt: string;
  label?: string | undefined;
  target: { source: MatchingSource; entityId?: string; resolvedLabel?: string | null };
  group: { source: MatchingSource; entityId?: string; resolvedLabel?: string | null }[];
}): Matching {
  const title = `Behavioral compatibility${input.label ? `: ${input.label}` : ""}`;
  const summary = `Compatibility of the target with ${input.group.length} ${input.group.length === 1 ? "person" : "people"}.`;
  const matching: Matching = {
    id: input.id,
    createdAt: input.createdAt,
    jobId: input.jobId,
    context: "behavioral_compatibility",
    output: { template: "matching" },
    target: input.target,
    group: input.group,
    markdown: `# ${title}\n\n${summary}\n`,
    json: {
      schemaVersion: 1,
      title,
      summary,
      sections: input.group.map((member, index) => ({
        section_title: member.resolvedLabel ?? `Member ${index + 1}`,
        section_content: { score: Math.round(100 - ((index * 37) % 60)) / 100 },
      })),
    },
  };
  if (input.label !== undefined) matching.label = input.label;
  return matching;
}
