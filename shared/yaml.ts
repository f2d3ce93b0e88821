// A small YAML writer for JSON data (documents such as docs/asyncapi.yaml): block mappings and sequences,
// plain scalars where YAML reads them back as the same string, JSON-quoted strings otherwise, `|-` blocks for
// multi-line text and one-line flow sequences for short lists of scalars. Objects named in `anchors` are
// written once (&name) and referred to after that (*name). No dependency; what it writes is YAML 1.2.
export interface YamlOptions {
  /** Objects written in full once and as an alias after that, by name. */
  anchors?: Map<object, string>;
  /** Lines at most this wide for flow sequences of scalars. Default 100. */
  flowWidth?: number;
}

const INDENT = "  ";
/** Strings YAML 1.1 or 1.2 would read as something else (booleans, null, numbers). */
const RESERVED =
  /^(?:true|false|yes|no|on|off|y|n|null|~|[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?|0x[0-9a-f]+|0o[0-7]+|[-+]?\.inf|\.nan)$/i;
/** A plain scalar: starts with a letter, digit, '/', '_' or '$', holds no ": ", " #", or flow indicators. */
const PLAIN = /^[A-Za-z0-9_/$][A-Za-z0-9_ ./$'()+=@*<>,;?!&%^~-]*$/;

function scalarText(value: string): string {
  const plain =
    PLAIN.test(value) && !RESERVED.test(value) && !value.endsWith(" ") && !/[:#]|, |\s{2}/.test(value);
  return plain ? value : quoted(value);
}

/** Double-quoted (JSON escapes), or single-quoted when that needs fewer escapes (as Biome and Prettier write). */
function quoted(value: string): string {
  const double = value.split('"').length - 1;
  const single = value.split("'").length - 1;
  if (double > single && !/[\u0000-\u001f\u007f\\]/.test(value)) return `'${value.replaceAll("'", "''")}'`;
  return JSON.stringify(value);
}

function keyText(key: string): string {
  return /^[A-Za-z0-9_$][A-Za-z0-9_.$/-]*$/.test(key) && !RESERVED.test(key) ? key : JSON.stringify(key);
}

function isScalar(v: unknown): boolean {
  return v === null || typeof v !== "object";
}

/** A scalar as YAML; in a flow sequence a string holding ',' is quoted (it would end the item). */
function scalar(v: unknown, flow = false): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "string") return flow && v.includes(",") ? quoted(v) : scalarText(v);
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new TypeError(`not JSON: ${v}`);
    return String(v);
  }
  if (typeof v === "boolean") return String(v);
  throw new TypeError(`not JSON: ${typeof v}`);
}

/** Multi-line text as a `|-` block, when YAML gives the exact string back that way. */
function blockLines(v: unknown): string[] | null {
  if (typeof v !== "string" || !v.includes("\n")) return null;
  if (/[\r\t]/.test(v) || /^[ \n]/.test(v) || / \n| $/.test(v) || v.endsWith("\n")) return null;
  return v.split("\n");
}

/** A value as YAML: what goes on its own line after "key:" or "-" (inline), and the block lines under it. */
interface Node {
  inline: string | null;
  /** Lines relative to the node's own indentation. */
  block: string[];
}

const indented = (lines: string[]) => lines.map((l) => (l === "" ? "" : `${INDENT}${l}`));

export function toYaml(value: unknown, opts: YamlOptions = {}): string {
  const flowWidth = opts.flowWidth ?? 100;
  const written = new Set<object>();

  /** `column`: where the node's block lines start; `at`: where its inline text would start. */
  const node = (v: unknown, column: number, at: number): Node => {
    if (isScalar(v)) {
      const block = blockLines(v);
      return block ? { inline: "|-", block } : { inline: scalar(v), block: [] };
    }
    const obj = v as object;
    const anchor = opts.anchors?.get(obj);
    if (anchor !== undefined && written.has(obj)) return { inline: `*${anchor}`, block: [] };
    if (anchor !== undefined) written.add(obj);
    const tag = anchor === undefined ? null : `&${anchor}`;
    if (Array.isArray(obj)) {
      const flow = `[${obj.every(isScalar) ? obj.map((x) => scalar(x, true)).join(", ") : ""}]`;
      if (obj.length === 0 || (obj.every(isScalar) && at + flow.length <= flowWidth)) {
        return { inline: tag ? `${tag} ${flow}` : flow, block: [] };
      }
      return { inline: tag, block: obj.flatMap((item) => entry("-", item, column)) };
    }
    const entries = Object.entries(obj).filter(([, x]) => x !== undefined);
    if (entries.length === 0) return { inline: tag ? `${tag} {}` : "{}", block: [] };
    return { inline: tag, block: entries.flatMap(([k, x]) => entry(`${keyText(k)}:`, x, column)) };
  };

  /** "key: value" or "- value", with the value's block below it (a sequence item's mapping starts on its line). */
  const entry = (head: string, v: unknown, column: number): string[] => {
    const n = node(v, column + INDENT.length, column + head.length + 1);
    if (n.inline !== null) return [`${head} ${n.inline}`, ...indented(n.block)];
    if (head === "-") return [`- ${n.block[0]}`, ...indented(n.block.slice(1))];
    return [head, ...indented(n.block)];
  };

  const root = node(value, 0, 0);
  const lines = root.inline !== null ? [root.inline, ...root.block] : root.block;
  return `${lines.join("\n")}\n`;
}
