// Pure helpers of the docs check (test/docs/commands.test.ts): the fenced shell blocks of a Markdown file, the
// commands in them (with the output a `console` block shows after each), the `<!-- docs-check: ... -->`
// annotations, and a small shell tokenizer. No I/O.

/** What a `<!-- docs-check: KIND [ARG] -->` line right above a fence says about the block. */
export type Annotation =
  | { kind: 'cluster' } // needs a Kubernetes cluster (kubectl, helm install/test/uninstall)
  | { kind: 'relay' } // needs a running relay (swaks, curl to the demo)
  | { kind: 'registry' } // needs an image registry or a Docker engine
  | { kind: 'manual'; why: string } // benchmark recipes and other long runs: checked for syntax only
  | { kind: 'tested-by'; path: string } // a test runs exactly this (the file must exist)
  | { kind: 'file'; path: string }; // a YAML block: the file the commands after it read

const ANNOTATION_KINDS = ['cluster', 'relay', 'registry', 'manual', 'tested-by', 'file'] as const;

export interface Block {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  body: string[];
  annotation?: Annotation;
}

export interface Command {
  file: string;
  line: number;
  /** The command with continuation lines joined and a trailing comment removed. */
  text: string;
  /** Lines a `console` block shows after the command (its expected output); empty when none is shown. */
  output: string[];
  annotation?: Annotation;
}

const SHELL_LANGS = new Set(['sh', 'console', 'bash', 'shell']);

function parseAnnotation(text: string): Annotation {
  const [kind = '', ...rest] = text.trim().split(/\s+/);
  const arg = rest.join(' ');
  switch (kind) {
    case 'cluster':
    case 'relay':
    case 'registry':
      return { kind };
    case 'manual':
      if (arg === '') throw new Error('docs-check: manual needs a reason');
      return { kind, why: arg };
    case 'tested-by':
    case 'file':
      if (arg === '') throw new Error(`docs-check: ${kind} needs a path`);
      return { kind, path: arg };
    default:
      throw new Error(`docs-check: unknown annotation "${kind}" (known: ${ANNOTATION_KINDS.join(', ')})`);
  }
}

/** Every fenced block, with the annotation of the line above it (blank lines between are allowed). */
export function fencedBlocks(file: string, markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  let pending: Annotation | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const note = /^<!--\s*docs-check:\s*(.*?)\s*-->\s*$/.exec(line);
    if (note) {
      pending = parseAnnotation(note[1]!);
      continue;
    }
    const fence = /^(`{3,})(\S*)/.exec(line);
    if (!fence) {
      if (line.trim() !== '') pending = undefined;
      continue;
    }
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !lines[j]!.startsWith(fence[1]!)) body.push(lines[j++]!);
    blocks.push({ file, line: i + 1, lang: fence[2]!, body, ...(pending ? { annotation: pending } : {}) });
    pending = undefined;
    i = j;
  }
  return blocks;
}

export function isShellBlock(b: Block): boolean {
  return SHELL_LANGS.has(b.lang);
}

/** Removes an unquoted ` # comment` at the end of a command. */
function stripComment(cmd: string): string {
  let quote: string | undefined;
  for (let i = 0; i < cmd.length; i++) {
    const c = cmd[i]!;
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"') i++;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '\\') i++;
    else if (c === '#' && (i === 0 || /\s/.test(cmd[i - 1]!))) return cmd.slice(0, i).trimEnd();
  }
  return cmd.trimEnd();
}

/** The commands of a shell block. `console`: lines after `$ `, the lines below them are output. `sh`: every line. */
export function commandsOf(b: Block): Command[] {
  const out: Command[] = [];
  const base = { file: b.file, ...(b.annotation ? { annotation: b.annotation } : {}) };
  const consoleBlock = b.lang === 'console';
  for (let i = 0; i < b.body.length; i++) {
    let line = b.body[i]!;
    if (consoleBlock) {
      if (!line.startsWith('$ ')) {
        const last = out.at(-1);
        if (last === undefined)
          throw new Error(`${b.file}:${b.line + 1 + i}: console output before any "$ " command`);
        last.output.push(line);
        continue;
      }
      line = line.slice(2);
    } else if (line.trim() === '' || line.trim().startsWith('#')) continue;
    const start = i;
    let text = line;
    while (text.endsWith('\\') && i + 1 < b.body.length) text = `${text.slice(0, -1)} ${b.body[++i]!.trim()}`;
    out.push({ ...base, line: b.line + 1 + start, text: stripComment(text), output: [] });
  }
  for (const c of out) while (c.output.length > 0 && c.output.at(-1)!.trim() === '') c.output.pop();
  return out;
}

export interface Segment {
  /** Words of one simple command, quotes removed. */
  words: string[];
}

/**
 * Splits a command line at unquoted `|`, `||`, `&&`, `;` and `&` into simple commands and their words (quotes
 * removed, `$(...)` kept whole as part of a word). Enough for the commands the docs show; not a full shell.
 */
export function segments(cmd: string): Segment[] {
  const segs: Segment[] = [];
  let words: string[] = [];
  let word = '';
  let inWord = false;
  const endWord = (): void => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  const endSeg = (): void => {
    endWord();
    if (words.length > 0) segs.push({ words });
    words = [];
  };
  for (let i = 0; i < cmd.length; i++) {
    const c = cmd[i]!;
    if (c === "'") {
      const j = cmd.indexOf("'", i + 1);
      if (j < 0) throw new Error(`unterminated ' in: ${cmd}`);
      word += cmd.slice(i + 1, j);
      inWord = true;
      i = j;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < cmd.length && cmd[j] !== '"'; j++) {
        if (cmd[j] === '\\' && j + 1 < cmd.length) {
          j++;
          word += cmd[j]!;
        } else word += cmd[j]!;
      }
      if (j >= cmd.length) throw new Error(`unterminated " in: ${cmd}`);
      inWord = true;
      i = j;
    } else if (c === '$' && cmd[i + 1] === '(') {
      let depth = 0;
      let j = i + 1;
      for (; j < cmd.length; j++) {
        if (cmd[j] === '(') depth++;
        else if (cmd[j] === ')' && --depth === 0) break;
      }
      word += cmd.slice(i, j + 1);
      inWord = true;
      i = j;
    } else if (c === '\\' && i + 1 < cmd.length) {
      word += cmd[++i]!;
      inWord = true;
    } else if (/\s/.test(c)) endWord();
    else if (c === '|' || c === ';' || c === '&') {
      if ((c === '|' || c === '&') && cmd[i + 1] === c) i++;
      endSeg();
    } else {
      word += c;
      inWord = true;
    }
  }
  endSeg();
  return segs;
}

/** Leading `NAME=value` words of a simple command (its environment) and the rest. */
export function splitEnv(words: readonly string[]): { env: Record<string, string>; argv: string[] } {
  const env: Record<string, string> = {};
  let i = 0;
  for (; i < words.length; i++) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(words[i]!);
    if (!m) break;
    env[m[1]!] = m[2]!;
  }
  return { env, argv: words.slice(i) };
}
