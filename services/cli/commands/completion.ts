// `cxlrc completion bash|zsh|fish`: print the shell's completion script (generated from the command table).
import { parseFlags, takePositionals, takeTarget } from "../args.ts";
import { COMMANDS } from "../command-table.ts";
import { completionScript, SHELLS, type Shell } from "../completion.ts";
import { EXIT } from "../exit.ts";

export const usage = `Usage: cxlrc completion bash|zsh|fish

Print a completion script for the shell: commands, each command's flags, the sub-targets (serve
coordinator|agent, image show, breaker close|status) and the values of a few flags (files, --scope, --method).

Install:
  bash   echo 'source <(cxlrc completion bash)' >> ~/.bashrc
  zsh    echo 'source <(cxlrc completion zsh)' >> ~/.zshrc     (after compinit)
         or: cxlrc completion zsh > "\${fpath[1]}/_cxlrc"
  fish   cxlrc completion fish > ~/.config/fish/completions/cxlrc.fish

Exit codes: 0 printed, 2 a shell it does not know.`;

export async function run(argv: string[]): Promise<number> {
  const { target, rest } = takeTarget("completion", argv, SHELLS, COMMANDS.completion.options, "shell");
  const { positionals } = parseFlags("completion", rest, COMMANDS.completion.options);
  takePositionals("completion", positionals, []);
  process.stdout.write(completionScript(target as Shell));
  return EXIT.ok;
}
