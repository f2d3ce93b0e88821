// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are shell code, where ${...} is shell syntax
// Shell completion scripts for bash, zsh and fish, generated from the command table (command-table.ts) and the
// global flags (globals.ts): commands, each command's flags (per sub-target where they differ), sub-targets, and
// the values of a few flags (files, --scope, --method).
import { LOG_LEVELS } from "../../shared/log.ts";
import type { Options } from "./args.ts";
import { COMMANDS, type CommandSpec } from "./command-table.ts";
import { GLOBAL_OPTIONS } from "./globals.ts";

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof SHELLS)[number];

/** Flags whose value is a file or directory (completed as paths). */
const FILE_FLAGS = new Set(["creds", "config", "fleet", "events", "component", "sysfs-root"]);
/** Commands whose arguments are files (`decode FILE`, `chaos SCENARIO.json`). */
const FILE_ARGS = ["decode", "chaos"];
/** Flags whose values are a fixed list. */
const VALUE_LISTS: Record<string, readonly string[]> = {
  scope: ["io", "full"],
  method: ["cxl", "sbr", "vfio"],
  "log-level": LOG_LEVELS,
  topology: ["single", "switch"],
};

interface Flag {
  name: string;
  takesValue: boolean;
  short?: string;
}

function flagsOf(options: Options): Flag[] {
  return Object.entries(options).map(([name, o]) => ({
    name,
    takesValue: o.type === "string",
    ...(o.short ? { short: o.short } : {}),
  }));
}

const commands = () => Object.entries(COMMANDS) as Array<[string, CommandSpec]>;
const globals = () => flagsOf(GLOBAL_OPTIONS);
const long = (flags: Flag[]) => flags.map((f) => `--${f.name}`);
const globalWords = () => [...long(globals()), ...globals().flatMap((f) => (f.short ? [`-${f.short}`] : []))];

/** Every flag that takes a value (to skip its value when looking for the command and its target). */
function valueFlags(): string[] {
  const all = new Set<string>();
  for (const f of globals()) if (f.takesValue) all.add(`--${f.name}`);
  for (const [, spec] of commands()) {
    const sets = [spec.options, ...Object.values(spec.targets ?? {})];
    for (const set of sets) for (const f of flagsOf(set)) if (f.takesValue) all.add(`--${f.name}`);
  }
  return [...all].sort();
}

/** The flags of a command with a target ("" = none chosen yet: the command's own). */
function cases(spec: CommandSpec): Array<{ target: string; flags: string[] }> {
  const own = long(flagsOf(spec.options));
  const targets = Object.entries(spec.targets ?? {});
  return [
    { target: "", flags: own },
    ...targets.map(([t, extra]) => ({ target: t, flags: [...own, ...long(flagsOf(extra))] })),
  ];
}

const fileFlagWords = () => [...FILE_FLAGS].map((f) => `--${f}`);

export function completionScript(shell: Shell): string {
  switch (shell) {
    case "bash":
      return bash();
    case "zsh":
      return zsh();
    case "fish":
      return fish();
  }
}

function bash(): string {
  const out: string[] = [];
  out.push("# bash completion for cxlrc: source <(cxlrc completion bash)");
  out.push("_cxlrc() {");
  out.push('  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"');
  out.push(`  local globals="${globalWords().join(" ")}"`);
  out.push('  local cmd="" target="" i w flags="" targets=""');
  out.push("  for ((i = 1; i < COMP_CWORD; i++)); do");
  out.push('    w="${COMP_WORDS[i]}"');
  out.push('    case "$w" in');
  out.push(`      ${valueFlags().join("|")}) ((i++)); continue ;;`);
  out.push("      -*) continue ;;");
  out.push("    esac");
  out.push('    if [[ -z "$cmd" ]]; then cmd="$w"; elif [[ -z "$target" ]]; then target="$w"; fi');
  out.push("  done");
  out.push('  case "$prev" in');
  out.push(`    ${fileFlagWords().join("|")}) COMPREPLY=($(compgen -f -- "$cur")); return ;;`);
  for (const [flag, values] of Object.entries(VALUE_LISTS)) {
    out.push(`    --${flag}) COMPREPLY=($(compgen -W "${values.join(" ")}" -- "$cur")); return ;;`);
  }
  out.push(`    ${valueFlags().join("|")}) return ;;`);
  out.push("  esac");
  out.push('  case "$cmd" in');
  out.push(
    `    "") COMPREPLY=($(compgen -W "${Object.keys(COMMANDS).join(" ")} $globals" -- "$cur")); return ;;`,
  );
  for (const [name, spec] of commands()) {
    const targets = Object.keys(spec.targets ?? {});
    const byTarget = cases(spec);
    if (targets.length === 0) {
      out.push(`    ${name}) flags="${byTarget[0]!.flags.join(" ")}" ;;`);
      continue;
    }
    out.push(`    ${name})`);
    out.push(`      targets="${targets.join(" ")}"`);
    out.push('      case "$target" in');
    for (const c of byTarget.slice(1)) out.push(`        ${c.target}) flags="${c.flags.join(" ")}" ;;`);
    out.push(`        *) flags="${byTarget[0]!.flags.join(" ")}" ;;`);
    out.push("      esac ;;");
  }
  out.push("  esac");
  out.push('  if [[ "$cur" == -* ]]; then');
  out.push('    COMPREPLY=($(compgen -W "$flags $globals" -- "$cur"))');
  out.push('  elif [[ -n "$targets" && -z "$target" ]]; then');
  out.push('    COMPREPLY=($(compgen -W "$targets" -- "$cur"))');
  out.push("  else");
  out.push('    COMPREPLY=($(compgen -f -- "$cur"))');
  out.push("  fi");
  out.push("}");
  out.push("complete -F _cxlrc cxlrc");
  return `${out.join("\n")}\n`;
}

function zsh(): string {
  const out: string[] = [];
  out.push("#compdef cxlrc");
  out.push("# zsh completion for cxlrc: source <(cxlrc completion zsh), or save it as _cxlrc in your $fpath");
  out.push("_cxlrc() {");
  out.push(`  local -a globals=(${globalWords().join(" ")})`);
  out.push("  local -a flags targets");
  out.push('  local cmd="" target="" w');
  out.push("  local -i i");
  out.push("  for (( i = 2; i < CURRENT; i++ )); do");
  out.push("    w=${words[i]}");
  out.push("    case $w in");
  out.push(`      (${valueFlags().join("|")}) (( i++ )); continue ;;`);
  out.push("      (-*) continue ;;");
  out.push("    esac");
  out.push("    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $target ]]; then target=$w; fi");
  out.push("  done");
  out.push("  case ${words[CURRENT-1]} in");
  out.push(`    (${fileFlagWords().join("|")}) _files; return ;;`);
  for (const [flag, values] of Object.entries(VALUE_LISTS)) {
    out.push(`    (--${flag}) compadd -- ${values.join(" ")}; return ;;`);
  }
  out.push(`    (${valueFlags().join("|")}) return ;;`);
  out.push("  esac");
  out.push("  case $cmd in");
  out.push(`    ('') compadd -- ${Object.keys(COMMANDS).join(" ")} $globals; return ;;`);
  for (const [name, spec] of commands()) {
    const targets = Object.keys(spec.targets ?? {});
    const byTarget = cases(spec);
    if (targets.length === 0) {
      out.push(`    (${name}) flags=(${byTarget[0]!.flags.join(" ")}) ;;`);
      continue;
    }
    out.push(`    (${name})`);
    out.push(`      targets=(${targets.join(" ")})`);
    out.push("      case $target in");
    for (const c of byTarget.slice(1)) out.push(`        (${c.target}) flags=(${c.flags.join(" ")}) ;;`);
    out.push(`        (*) flags=(${byTarget[0]!.flags.join(" ")}) ;;`);
    out.push("      esac ;;");
  }
  out.push("  esac");
  out.push("  if [[ ${words[CURRENT]} == -* ]]; then");
  out.push("    compadd -- $flags $globals");
  out.push("  elif (( ${#targets} )) && [[ -z $target ]]; then");
  out.push("    compadd -- $targets");
  out.push("  else");
  out.push("    _files");
  out.push("  fi");
  out.push("}");
  out.push(
    'if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then _cxlrc "$@"; else compdef _cxlrc cxlrc; fi',
  );
  return `${out.join("\n")}\n`;
}

/** A fish single-quoted string. */
const fq = (s: string) => `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;

function fishFlag(f: Flag, condition: string | null): string {
  const parts = ["complete -c cxlrc"];
  if (condition) parts.push(`-n ${fq(condition)}`);
  if (f.short) parts.push(`-s ${f.short}`);
  parts.push(`-l ${f.name}`);
  if (f.takesValue) {
    if (FILE_FLAGS.has(f.name)) parts.push("-r -F");
    else if (VALUE_LISTS[f.name]) parts.push(`-x -a ${fq(VALUE_LISTS[f.name]!.join(" "))}`);
    else parts.push("-x");
  }
  return parts.join(" ");
}

function fish(): string {
  const names = Object.keys(COMMANDS).join(" ");
  const out: string[] = [
    "# fish completion for cxlrc: cxlrc completion fish > ~/.config/fish/completions/cxlrc.fish",
    "complete -c cxlrc -f",
    `complete -c cxlrc -n ${fq(`__fish_seen_subcommand_from ${FILE_ARGS.join(" ")}`)} -F`,
  ];
  for (const f of globals()) out.push(fishFlag(f, null));
  for (const [name, spec] of commands()) {
    out.push(
      `complete -c cxlrc -n ${fq(`not __fish_seen_subcommand_from ${names}`)} -a ${name} -d ${fq(spec.summary)}`,
    );
  }
  for (const [name, spec] of commands()) {
    const inCmd = `__fish_seen_subcommand_from ${name}`;
    const targets = Object.keys(spec.targets ?? {});
    if (targets.length > 0) {
      out.push(
        `complete -c cxlrc -n ${fq(`${inCmd}; and not __fish_seen_subcommand_from ${targets.join(" ")}`)} -a ${fq(targets.join(" "))}`,
      );
    }
    for (const f of flagsOf(spec.options)) out.push(fishFlag(f, inCmd));
    for (const [t, extra] of Object.entries(spec.targets ?? {})) {
      for (const f of flagsOf(extra)) out.push(fishFlag(f, `${inCmd}; and __fish_seen_subcommand_from ${t}`));
    }
  }
  return `${out.join("\n")}\n`;
}
