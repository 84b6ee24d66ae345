import { EXIT_OK, EXIT_USAGE, RUN, UsageError } from "./args.js";
import { DOCTOR_HELP, doctor } from "./commands/doctor.js";
import { EMULATOR_HELP, emulator } from "./commands/emulator.js";
import { LISTEN_HELP, listen } from "./commands/listen.js";
import { RECOVER_HELP, recover } from "./commands/recover.js";
import { TRIGGER_HELP, trigger } from "./commands/trigger.js";
import { VERIFY_HELP, verify } from "./commands/verify.js";
import { colorEnabled, createStyle } from "./output.js";

declare const __CLI_VERSION__: string;
export const VERSION: string = typeof __CLI_VERSION__ === "string" ? __CLI_VERSION__ : "0.0.0";

export const HELP = `mappa-webhooks: send, receive, inspect and explain Mappa webhooks locally, and check a deployed endpoint.

Usage
  ${RUN} <command> [options]

Run it as \`${RUN} <command>\`: npx uses the project's copy once it is installed
(\`npm install --save-dev @mappa-webhooks/cli\`), and fetches it otherwise. In package.json
scripts its bin is \`mappa-webhooks\`. The unscoped npm package "mappa-webhooks" is not this tool.

Commands
  trigger <event-type>  Send a realistic signed event to a URL, retrying like Mappa
  listen                Receive deliveries locally: verify, forward to your app, inspect in a browser
  verify                Explain why a captured delivery does or does not verify
  doctor <url>          Check a deployed endpoint before Mappa delivers to it
  emulator              Run a local Mappa API that creates jobs and sends their webhooks
  recover               Recover job outcomes whose webhook never arrived (a recovery route, or job ids)

Options
  -h, --help            Show help (also: ${RUN} <command> --help)
  -v, --version         Show the version

The secret comes from --secret or the MAPPA_WEBHOOK_SECRET environment variable.
Add --json to any command for output a script can read.

Examples
  ${RUN} listen --forward-to http://127.0.0.1:3000/webhooks/mappa
  ${RUN} trigger report.completed --url http://127.0.0.1:4242/webhooks/mappa
  ${RUN} verify --header "t=…,v1=…" --body-file body.json
  ${RUN} doctor https://api.example.com/webhooks/mappa`;

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<number>; help: string }> = {
  trigger: { run: trigger, help: TRIGGER_HELP },
  listen: { run: listen, help: LISTEN_HELP },
  verify: { run: verify, help: VERIFY_HELP },
  doctor: { run: doctor, help: DOCTOR_HELP },
  emulator: { run: emulator, help: EMULATOR_HELP },
  recover: { run: recover, help: RECOVER_HELP },
};

/** Runs the CLI and resolves with the exit code; errors are printed, never thrown. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const style = createStyle(colorEnabled(process.stderr));
  try {
    if (name === undefined || name === "-h" || name === "--help" || name === "help") {
      const topic = name === "help" ? rest[0] : undefined;
      const command = topic === undefined ? undefined : COMMANDS[topic];
      process.stdout.write(`${command?.help ?? HELP}\n`);
      return name === undefined ? EXIT_USAGE : EXIT_OK;
    }
    if (name === "-v" || name === "--version") {
      process.stdout.write(`${VERSION}\n`);
      return EXIT_OK;
    }
    const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (command === undefined) {
      throw new UsageError(
        `unknown command "${name}"; commands: ${Object.keys(COMMANDS).join(", ")}`,
      );
    }
    return await command.run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      const helpCommand = error.command === undefined ? "--help" : `${error.command} --help`;
      process.stderr.write(
        `${style.red("error:")} ${error.message}\n${style.dim(`Run \`${RUN} ${helpCommand}\` for usage.`)}\n`,
      );
      return EXIT_USAGE;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${style.red("error:")} ${message}\n`);
    return EXIT_USAGE;
  }
}
