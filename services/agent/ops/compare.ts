// Field-by-field comparison of a saved register against its read-back. Which fields count comes from the
// table: the configurable ones (RW, RWL, RWO: configMask), minus any the caller excludes (Commit).
import type { Mismatch } from "../../../shared/bus/agent-contract.ts";
import type { FieldDef, FieldValue, RegisterDef } from "../../../shared/cxl/regdef.ts";
import { getField } from "../../../shared/cxl/regdef.ts";

export type { Mismatch };

const CONFIG_ACCESS = new Set(["RW", "RWL", "RWO"]);

export function configFields(def: RegisterDef, exclude: readonly string[] = []): FieldDef[] {
  return def.fields.filter((f) => CONFIG_ACCESS.has(f.access) && !exclude.includes(f.name));
}

function value(f: FieldDef, raw: number): FieldValue {
  const v = getField(raw, f);
  return f.hi === f.lo ? v !== 0 : v;
}

/** Every configurable field whose read-back differs from the saved value. */
export function compareRegister(
  register: string,
  def: RegisterDef,
  expected: number,
  actual: number,
  domain: Mismatch["domain"],
  exclude: readonly string[] = [],
): Mismatch[] {
  const out: Mismatch[] = [];
  for (const f of configFields(def, exclude)) {
    const e = value(f, expected);
    const a = value(f, actual);
    if (e !== a) out.push({ register, field: f.name, expected: e, actual: a, domain });
  }
  return out;
}

/** One named field (RO status bits such as Committed) against what it must read. */
export function expectField(
  register: string,
  def: RegisterDef,
  fieldName: string,
  expected: FieldValue,
  actual: number,
  domain: Mismatch["domain"],
): Mismatch[] {
  const f = def.fields.find((x) => x.name === fieldName);
  if (!f) throw new Error(`register ${def.name} has no field ${fieldName}`);
  const a = value(f, actual);
  return a === expected ? [] : [{ register, field: f.name, expected, actual: a, domain }];
}
