// Loads `-f PATH...` arguments: files, or directories (their *.yaml / *.yml / *.json files, recursively, in
// sorted order) of multi-document YAML. Shared by check/render/route and the relay's --manifests source.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { compile, type CompileResult } from '../routing/compile.ts';
import type { CompileIssue } from '../routing/model.ts';
import {
  formatManifestError,
  mergeParsed,
  objectKey,
  parseManifestText,
  type ParsedManifests,
} from '../routing/parse.ts';
import { objectName } from '../routing/validate.ts';

const MANIFEST_FILE = /\.(ya?ml|json)$/i;

async function listFiles(
  path: string,
  out: string[],
  errors: ParsedManifests['errors'],
  top: boolean,
): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    errors.push({
      file: path,
      message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    });
    return;
  }
  if (st.isDirectory()) {
    const entries = (await readdir(path)).sort();
    for (const e of entries) {
      if (e.startsWith('.')) continue; // .git, editor swap files, Kubernetes ..data symlinks of mounted ConfigMaps
      await listFiles(join(path, e), out, errors, false);
    }
  } else if (top || MANIFEST_FILE.test(path)) {
    out.push(path);
  }
}

/**
 * Reads every manifest under `paths`. Never throws for bad input: unreadable paths, YAML errors, unknown kinds
 * and schema errors are returned in `errors`, and the valid objects in `objects` (plus v1 Secrets in `secrets`).
 */
export async function loadManifests(paths: readonly string[]): Promise<ParsedManifests> {
  const errors: ParsedManifests['errors'] = [];
  const files: string[] = [];
  for (const p of paths) await listFiles(p, files, errors, true);
  const parts: ParsedManifests[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      errors.push({ file, message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
      continue;
    }
    parts.push(parseManifestText(text, file));
  }
  const merged = mergeParsed(parts);
  merged.errors.unshift(...errors);
  return merged;
}

// ---------------------------------------------------------------------------------------------------------------
// Shared by check, render and route: load, compile, and the one-line messages.

export interface Compiled {
  loaded: ParsedManifests;
  result: CompileResult;
  /** One line per load error (YAML, unknown kind, schema, CEL). */
  errorLines: string[];
  /** One line per cross-object issue. */
  issueLines: string[];
}

export function formatIssue(issue: CompileIssue, origins: ReadonlyMap<string, string>): string {
  const file = origins.get(objectKey(issue.kind, issue.namespace, issue.name)) ?? '(input)';
  return `${file}: ${objectName(issue.kind, issue.namespace, issue.name)}: ${issue.field}: ${issue.message} (${issue.reason})`;
}

export async function loadAndCompile(paths: readonly string[]): Promise<Compiled> {
  const loaded = await loadManifests(paths);
  const result = compile(loaded.objects);
  return {
    loaded,
    result,
    errorLines: loaded.errors.map(formatManifestError),
    issueLines: result.issues.map((i) => formatIssue(i, loaded.origins)),
  };
}
