// A small YAML reader for the deploy files (no YAML parser is installed): block mappings and sequences,
// plain / single- / double-quoted scalars, flow sequences of scalars, empty {} and [], block literals (| and
// |-), comments and `---` documents. Anything else (anchors, aliases, tags, flow mappings with content,
// folded scalars) is an error naming the line, so a deploy file cannot silently be read wrong.

interface Line {
  no: number;
  indent: number;
  text: string;
}

export class YamlError extends Error {}

function stripComment(s: string): string {
  let q: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (q) {
      if (c === "\\" && q === '"') i++;
      else if (c === q) q = null;
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s[,:{-]/.test(s[i - 1] as string)) q = c;
    } else if (c === "#" && (i === 0 || /\s/.test(s[i - 1] as string))) {
      return s.slice(0, i).trimEnd();
    }
  }
  return s.trimEnd();
}

function scalar(raw: string, no: number): unknown {
  const s = raw.trim();
  if (s === "" || s === "~" || s === "null") return null;
  if (s === "true") return true;
  if (s === "false") return false;
  if (/^[&*!]/.test(s)) throw new YamlError(`line ${no}: anchors, aliases and tags are not supported`);
  if (s.startsWith('"')) {
    try {
      return JSON.parse(s);
    } catch {
      throw new YamlError(`line ${no}: bad double-quoted string ${s}`);
    }
  }
  if (s.startsWith("'")) {
    if (!s.endsWith("'") || s.length < 2) throw new YamlError(`line ${no}: bad single-quoted string`);
    return s.slice(1, -1).replace(/''/g, "'");
  }
  if (s === "[]") return [];
  if (s === "{}") return {};
  if (s.startsWith("[")) {
    if (!s.endsWith("]")) throw new YamlError(`line ${no}: unterminated flow sequence`);
    return splitFlow(s.slice(1, -1), no).map((x) => scalar(x, no));
  }
  if (s.startsWith("{")) throw new YamlError(`line ${no}: flow mappings are not supported`);
  if (s === "|" || s === "|-" || s === ">" || s === ">-")
    throw new YamlError(`line ${no}: misplaced block scalar`);
  if (/^-?(0|[1-9][0-9]*)$/.test(s)) return Number(s);
  if (/^-?[0-9]+\.[0-9]+$/.test(s)) return Number(s);
  return s;
}

function splitFlow(s: string, no: number): string[] {
  const out: string[] = [];
  let cur = "";
  let q: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (q) {
      cur += c;
      if (c === "\\" && q === '"') cur += s[++i] ?? "";
      else if (c === q) q = null;
    } else if (c === '"' || c === "'") {
      q = c;
      cur += c;
    } else if (c === "[" || c === "{") {
      throw new YamlError(`line ${no}: nested flow collections are not supported`);
    } else if (c === ",") {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  if (cur.trim() !== "") out.push(cur);
  return out.map((x) => x.trim());
}

/** `key: rest` → [key, rest]; null when the line is not a mapping entry. */
function splitKey(text: string): [string, string] | null {
  let key: string;
  let rest: string;
  if (text.startsWith('"') || text.startsWith("'")) {
    const q = text[0] as string;
    let i = 1;
    while (i < text.length && text[i] !== q) i += text[i] === "\\" && q === '"' ? 2 : 1;
    const after = text.slice(i + 1);
    if (!after.startsWith(":")) return null;
    key = String(scalar(text.slice(0, i + 1), 0));
    rest = after.slice(1);
    if (rest !== "" && !/^\s/.test(rest)) return null;
  } else {
    const m = /^([^\s:#[\]{},][^:#]*?|[^\s:#[\]{},]):(\s|$)(.*)$/.exec(text);
    if (!m) return null;
    key = (m[1] as string).trim();
    rest = m[3] as string;
  }
  return [key, rest.trim()];
}

class Parser {
  private i = 0;
  constructor(
    private readonly lines: Line[],
    private readonly raw: string[],
  ) {}

  parseDocument(): unknown {
    if (this.lines.length === 0) return null;
    const v = this.block((this.lines[0] as Line).indent);
    if (this.i < this.lines.length) {
      throw new YamlError(`line ${(this.lines[this.i] as Line).no}: unexpected indentation`);
    }
    return v;
  }

  private block(indent: number): unknown {
    const first = this.lines[this.i] as Line;
    if (first.text === "-" || first.text.startsWith("- ")) return this.sequence(indent);
    return this.mapping(indent);
  }

  private value(rest: string, parentIndent: number, no: number): unknown {
    if (rest === "|" || rest === "|-") return this.literal(parentIndent, rest === "|-", no);
    if (rest === ">" || rest === ">-") throw new YamlError(`line ${no}: folded scalars are not supported`);
    if (rest !== "") return scalar(rest, no);
    const next = this.lines[this.i];
    if (!next || next.indent <= parentIndent) {
      // A sequence may sit at the same indent as its key.
      if (next && next.indent === parentIndent && (next.text === "-" || next.text.startsWith("- "))) {
        return this.sequence(parentIndent);
      }
      return null;
    }
    return this.block(next.indent);
  }

  private mapping(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    while (this.i < this.lines.length) {
      const l = this.lines[this.i] as Line;
      if (l.indent < indent) break;
      if (l.indent > indent) throw new YamlError(`line ${l.no}: unexpected indentation`);
      if (l.text === "-" || l.text.startsWith("- ")) break;
      const kv = splitKey(l.text);
      if (!kv) throw new YamlError(`line ${l.no}: expected "key: value", got ${JSON.stringify(l.text)}`);
      const [k, rest] = kv;
      if (k === "<<") throw new YamlError(`line ${l.no}: merge keys are not supported`);
      if (k in out) throw new YamlError(`line ${l.no}: duplicate key ${JSON.stringify(k)}`);
      this.i++;
      out[k] = this.value(rest, indent, l.no);
    }
    return out;
  }

  private sequence(indent: number): unknown[] {
    const out: unknown[] = [];
    while (this.i < this.lines.length) {
      const l = this.lines[this.i] as Line;
      if (l.indent !== indent || !(l.text === "-" || l.text.startsWith("- "))) {
        if (l.indent > indent) throw new YamlError(`line ${l.no}: unexpected indentation`);
        break;
      }
      const item = l.text === "-" ? "" : l.text.slice(2);
      const itemIndent = indent + 2 + (item.length - item.trimStart().length);
      const body = item.trimStart();
      if (body === "") {
        this.i++;
        out.push(this.value("", indent, l.no));
      } else if (!body.startsWith("[") && splitKey(body) !== null) {
        // "- key: value" starts a mapping whose keys sit at the column of "key".
        this.lines[this.i] = { no: l.no, indent: itemIndent, text: body };
        out.push(this.mapping(itemIndent));
      } else {
        this.i++;
        out.push(this.value(body, indent, l.no));
      }
    }
    return out;
  }

  private literal(parentIndent: number, strip: boolean, no: number): string {
    // Block literal: raw lines (comments are content) more indented than the parent.
    const startNo = no; // 1-based line number of the key
    const body: string[] = [];
    let j = startNo; // index into raw of the next line
    let blockIndent = -1;
    while (j < this.raw.length) {
      const r = this.raw[j] as string;
      if (r.trim() === "") {
        body.push("");
        j++;
        continue;
      }
      const ind = r.length - r.trimStart().length;
      if (ind <= parentIndent) break;
      if (blockIndent < 0) blockIndent = ind;
      if (ind < blockIndent) break;
      body.push(r.slice(blockIndent));
      j++;
    }
    while (body.length > 0 && body[body.length - 1] === "") body.pop();
    // Skip the parsed lines that belong to the literal.
    while (this.i < this.lines.length && (this.lines[this.i] as Line).no <= j) this.i++;
    const text = body.join("\n");
    return strip ? text : `${text}\n`;
  }
}

/** Every document of a YAML file. */
export function parseYamlDocuments(text: string): unknown[] {
  const raw = text.split("\n");
  const docs: Line[][] = [[]];
  const docRaw: Array<{ start: number }> = [{ start: 0 }];
  raw.forEach((r, idx) => {
    if (/^---\s*$/.test(r)) {
      docs.push([]);
      docRaw.push({ start: idx + 1 });
      return;
    }
    if (/^\t/.test(r)) throw new YamlError(`line ${idx + 1}: tabs are not allowed for indentation`);
    const t = stripComment(r);
    if (t.trim() === "") return;
    (docs[docs.length - 1] as Line[]).push({
      no: idx + 1,
      indent: t.length - t.trimStart().length,
      text: t.trim(),
    });
  });
  return docs.filter((d) => d.length > 0).map((d) => new Parser(d, raw).parseDocument());
}

export function parseYaml(text: string): unknown {
  const docs = parseYamlDocuments(text);
  if (docs.length !== 1) throw new YamlError(`expected one document, found ${docs.length}`);
  return docs[0];
}
