// The one table of cxlrc's commands: summary, flags, sub-targets and the module that runs each. main.ts
// dispatches from it, every command parses its flags with the options declared here, and the shell
// completion scripts (completion.ts) are generated from it: a flag cannot exist in one and not the others.
import { BUS_OPTIONS, type Options } from "./args.ts";

export interface CommandModule {
  run(argv: string[]): Promise<number>;
  /** The command's --help text. */
  usage: string;
}

export interface CommandSpec {
  summary: string;
  /** Flags of the command (for a command with targets: those every target takes). */
  options: Options;
  /** Sub-targets (the first argument: `serve coordinator`, `breaker close`), each with its own extra flags. */
  targets?: Readonly<Record<string, Options>>;
  load(): Promise<CommandModule>;
}

/** The flags of a reset request (reset and plan). */
export const REQUEST_OPTIONS = {
  ...BUS_OPTIONS,
  scope: { type: "string" },
  "allow-escalation": { type: "boolean" },
  "mem-clear": { type: "boolean" },
  method: { type: "string" },
  sibling: { type: "string", multiple: true },
  reason: { type: "string" },
  "request-id": { type: "string" },
  deadline: { type: "string" },
  json: { type: "boolean" },
} as const satisfies Options;

/** Flags of both services (`serve coordinator|agent`). */
const SERVE_OPTIONS = {
  config: { type: "string" },
  server: { type: "string" },
  creds: { type: "string" },
  "log-level": { type: "string" },
} as const satisfies Options;

export const COMMANDS = {
  demo: {
    summary: "start here: a whole cxlrc on this machine (bus, coordinator, simulated hosts), a mix of resets",
    options: {
      json: { type: "boolean" },
      "keep-running": { type: "boolean" },
      backend: { type: "string" },
      pace: { type: "string" },
      "no-install": { type: "boolean" },
      "log-level": { type: "string" },
      topology: { type: "string" },
    },
    load: () => import("./commands/demo.ts"),
  },
  reset: {
    summary: "reset a device (io: FLR; full: CXL Reset, SBR, VFIO) and optionally follow it to the end",
    options: { ...REQUEST_OPTIONS, wait: { type: "boolean" }, timeout: { type: "string" } },
    load: () => import("./commands/reset.ts"),
  },
  plan: {
    summary: "dry run of a reset: scope, method, functions, gates, deadlines; touches nothing",
    options: REQUEST_OPTIONS,
    load: () => import("./commands/plan.ts"),
  },
  status: {
    summary: "the fleet: devices per state, leases, the circuit breaker",
    options: { ...BUS_OPTIONS, host: { type: "string" }, json: { type: "boolean" } },
    load: () => import("./commands/status.ts"),
  },
  devices: {
    summary: "every device the coordinator knows: state, lease, scope violations, quarantine",
    options: { ...BUS_OPTIONS, host: { type: "string" }, json: { type: "boolean" } },
    load: () => import("./commands/devices.ts"),
  },
  image: {
    summary: "image show HOST BDF: the last saved image of a function, decoded",
    options: { ...BUS_OPTIONS, verified: { type: "boolean" }, json: { type: "boolean" } },
    targets: { show: {} },
    load: () => import("./commands/image.ts"),
  },
  release: {
    summary: "take a device out of quarantine",
    options: {
      ...BUS_OPTIONS,
      reason: { type: "string" },
      operator: { type: "string" },
      restore: { type: "boolean" },
      json: { type: "boolean" },
    },
    load: () => import("./commands/release.ts"),
  },
  breaker: {
    summary: "the fleet circuit breaker: status, or close it (an operator action)",
    options: { ...BUS_OPTIONS, json: { type: "boolean" } },
    targets: {
      close: { operator: { type: "string" }, reason: { type: "string" } },
      status: {},
    },
    load: () => import("./commands/breaker.ts"),
  },
  watch: {
    summary: "follow the event stream live (or from --since), one line per event; --request: one request",
    options: {
      ...BUS_OPTIONS,
      host: { type: "string" },
      device: { type: "string" },
      request: { type: "string" },
      since: { type: "string" },
      timeout: { type: "string" },
      json: { type: "boolean" },
      heartbeats: { type: "boolean" },
    },
    load: () => import("./commands/watch.ts"),
  },
  serve: {
    summary: "run the coordinator, an agent or the fleet page (config file, CXLRC_* env, flags)",
    options: SERVE_OPTIONS,
    targets: {
      coordinator: {
        id: { type: "string" },
        "metrics-port": { type: "string" },
        "lease-ttl-ms": { type: "string" },
        host: { type: "string", multiple: true },
      },
      agent: {
        host: { type: "string" },
        backend: { type: "string" },
        fleet: { type: "string" },
        "sim-host": { type: "string" },
        "sysfs-root": { type: "string" },
        "heartbeat-ms": { type: "string" },
        "metrics-port": { type: "string" },
      },
      ui: {
        listen: { type: "string" },
      },
    },
    load: () => import("./commands/serve.ts"),
  },
  decode: {
    summary: "decode a config space dump (binary or lspci -x hex)",
    options: {
      json: { type: "boolean" },
      component: { type: "string" },
      all: { type: "boolean" },
      device: { type: "string" },
    },
    load: () => import("./commands/decode.ts"),
  },
  chaos: {
    summary: "run a chaos scenario (kill, pause, break anything mid-reset) and check that nothing was lost",
    options: {
      json: { type: "boolean" },
      seed: { type: "string" },
      events: { type: "string" },
      requests: { type: "boolean" },
      quiet: { type: "boolean" },
      sweep: { type: "boolean" },
    },
    load: () => import("./commands/chaos.ts"),
  },
  completion: {
    summary: "print a shell completion script: completion bash|zsh|fish",
    options: {},
    targets: { bash: {}, zsh: {}, fish: {} },
    load: () => import("./commands/completion.ts"),
  },
} as const satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;

export function commandSpec(name: string): CommandSpec | undefined {
  return Object.hasOwn(COMMANDS, name) ? (COMMANDS as Record<string, CommandSpec>)[name] : undefined;
}

/** The flags a command takes with a target (or with none): the command's own plus the target's. */
export function optionsOf(spec: CommandSpec, target?: string): Options {
  return { ...spec.options, ...(target !== undefined ? spec.targets?.[target] : {}) };
}

/** Every flag a command takes with any of its targets (for completion and for finding flag values). */
export function allOptionsOf(spec: CommandSpec): Options {
  return Object.assign({}, spec.options, ...Object.values(spec.targets ?? {}));
}
