// Loading fleets and hosts: from a path (JSON file) or an already parsed object, validated by the schema.
import { readFileSync } from "node:fs";
import { CxlrcError } from "../errors.ts";
import { type Fleet, FleetSchema, formatIssues, HostSchema, type HostSpec } from "./fleet-schema.ts";

/** A fleet from a JSON file path or a parsed object; CxlrcError "bad-input" naming every bad key. */
export function loadFleet(input: string | unknown): Fleet {
  let raw: unknown = input;
  if (typeof input === "string") {
    try {
      raw = JSON.parse(readFileSync(input, "utf8"));
    } catch (e) {
      throw new CxlrcError("bad-input", `cannot read fleet file ${input}`, { path: input }, { cause: e });
    }
  }
  const r = FleetSchema.safeParse(raw);
  if (!r.success) throw new CxlrcError("bad-input", `invalid fleet: ${formatIssues(r.error, "fleet")}`);
  return r.data;
}

/** One host spec (defaults filled in), validated; `root` names it in error messages. */
export function parseHost(input: unknown, root = "host"): HostSpec {
  const r = HostSchema.safeParse(input);
  if (!r.success) throw new CxlrcError("bad-input", `invalid host: ${formatIssues(r.error, root)}`);
  return r.data;
}

/** The bundled demo fleet (shared/sim/fleets/default.json). */
export function defaultFleet(): Fleet {
  return loadFleet(new URL("./fleets/default.json", import.meta.url).pathname);
}
