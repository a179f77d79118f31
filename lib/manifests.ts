// Loads `-f PATH...` arguments: files, or directories (their *.yaml / *.yml / *.json files, recursively, in
// sorted order) of multi-document YAML. Shared by check/render/route and the relay's --manifests source.
import { constants as fsConstants, type Stats } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
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
import { secretOptedIn, SMTP_AUTH_LABEL, SMTP_AUTH_LABEL_VALUE } from '../routing/secret-opt-in.ts';
import { objectName } from '../routing/validate.ts';

const MANIFEST_FILE = /\.(ya?ml|json)$/i;

/** Input bounds: a 50 MB manifest took `check` 53 s and 2.7 GB. Raised with --max-manifest-size/--max-manifests-total. */
export interface ManifestLimits {
  /** Largest manifest file, in bytes (default 4 MiB). */
  maxFileBytes: number;
  /** Largest sum of all manifest files read at once, in bytes (default 16 MiB). */
  maxTotalBytes: number;
}

export const DEFAULT_MANIFEST_LIMITS: Readonly<ManifestLimits> = Object.freeze({
  maxFileBytes: 4 * 1024 * 1024,
  maxTotalBytes: 16 * 1024 * 1024,
});

/** "4 MiB", "512 KiB", "17 bytes" */
function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

/** "4MiB", "4M", "512KiB", "100000" -> bytes; undefined when it is no size. */
export function parseBytes(s: string): number | undefined {
  const m = /^(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)$/i.exec(s.trim());
  if (!m?.[1]) return undefined;
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  const n = Number(m[1]) * mult;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * A file to read, as listed: its size, inode and mtime (the relay's folder watcher fingerprints them); stream: named
 * on the command line and not a regular file (a pipe).
 */
export interface ListedFile {
  path: string;
  size: number;
  ino: number;
  mtimeMs: number;
  stream?: true;
}

/** What a path that is neither a folder nor a regular file is, for the error that names it. */
function fileKind(st: Stats): string {
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * The manifest files under `path`. Symbolic links are followed (a mounted ConfigMap's files are links), but a folder
 * is read once: a link back to a folder already read (a loop such as `all -> ..`) is an error naming both, where it
 * read the same files again and again. A named pipe or a device with a manifest's name is an error: reading one
 * waited for a writer forever (a relay's reloads with it) or filled memory (/dev/zero).
 */
async function listFiles(
  path: string,
  out: ListedFile[],
  errors: ParsedManifests['errors'],
  top: boolean,
  folders: Map<string, string>,
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
    const id = `${st.dev}:${st.ino}`;
    const seen = folders.get(id);
    if (seen !== undefined) {
      errors.push({ file: path, message: `the folder ${seen} again (a symbolic link): not read twice` });
      return;
    }
    folders.set(id, path);
    let entries: string[];
    try {
      entries = (await readdir(path)).sort();
    } catch (err) {
      errors.push({
        file: path,
        message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      });
      return;
    }
    for (const e of entries) {
      if (e.startsWith('.')) continue; // .git, editor swap files, Kubernetes ..data symlinks of mounted ConfigMaps
      await listFiles(join(path, e), out, errors, false, folders);
    }
  } else if (top && !st.isFile()) {
    // named on the command line: `-f /dev/stdin` reads what a pipe brings, still through the size bound
    out.push({ path, size: 0, ino: st.ino, mtimeMs: st.mtimeMs, stream: true });
  } else if (top || MANIFEST_FILE.test(path)) {
    if (st.isFile()) out.push({ path, size: st.size, ino: st.ino, mtimeMs: st.mtimeMs });
    else errors.push({ file: path, message: `${fileKind(st)}, not a manifest file: not read` });
  }
}

/**
 * A manifest file's text, or what stopped it: more than `max` bytes (reading stops there, however far the file goes
 * on), or not a regular file. Opened without blocking and checked again, so a file replaced by a named pipe since it
 * was listed is refused, not waited on.
 */
async function readManifestFile(
  file: ListedFile,
  max: number,
): Promise<{ text: string } | { tooBig: number } | { notFile: string }> {
  const fh = await open(file.path, fsConstants.O_RDONLY | (file.stream ? 0 : fsConstants.O_NONBLOCK));
  try {
    const st = await fh.stat();
    if (!st.isFile() && file.stream !== true) return { notFile: fileKind(st) };
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(max + 1 - total, 1024 * 1024));
      // a pipe has no positions: read on from where it is
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, file.stream ? null : total);
      if (bytesRead === 0) return { text: Buffer.concat(chunks, total).toString('utf8') };
      chunks.push(chunk.subarray(0, bytesRead));
      total += bytesRead;
      if (total > max) return { tooBig: total };
    }
  } finally {
    await fh.close();
  }
}

/**
 * The manifest files under `paths` as loadManifests reads them (folders recursively and once each, dot-files
 * skipped, sorted), and what cannot be read. The one walk: the relay's folder watcher fingerprints the same list.
 */
export async function listManifestFiles(
  paths: readonly string[],
): Promise<{ files: ListedFile[]; errors: ParsedManifests['errors'] }> {
  const files: ListedFile[] = [];
  const errors: ParsedManifests['errors'] = [];
  const folders = new Map<string, string>();
  for (const p of paths) await listFiles(p, files, errors, true, folders);
  return { files, errors };
}

/**
 * Reads every manifest under `paths`. Never throws for bad input: unreadable paths, YAML errors, unknown kinds
 * and schema errors are returned in `errors`, and the valid objects in `objects` (plus v1 Secrets in `secrets`).
 */
export async function loadManifests(
  paths: readonly string[],
  limits: ManifestLimits = DEFAULT_MANIFEST_LIMITS,
): Promise<ParsedManifests> {
  const { files, errors } = await listManifestFiles(paths);
  const parts: ParsedManifests[] = [];
  let total = 0;
  for (const listed of files) {
    const { path: file, size } = listed;
    const tooBig = (n: number) =>
      `${formatBytes(n)} is more than the ${formatBytes(limits.maxFileBytes)} a manifest file may have (raise it with --max-manifest-size)`;
    if (size > limits.maxFileBytes) {
      errors.push({ file, message: tooBig(size) });
      continue;
    }
    total += size;
    if (total > limits.maxTotalBytes) {
      errors.push({
        file,
        message: `the manifests add up to more than ${formatBytes(limits.maxTotalBytes)} with this file (raise it with --max-manifests-total); this file and the rest were not read`,
      });
      break;
    }
    let read;
    try {
      read = await readManifestFile(listed, limits.maxFileBytes);
    } catch (err) {
      errors.push({ file, message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
      continue;
    }
    if ('notFile' in read) {
      errors.push({ file, message: `${read.notFile}, not a manifest file: not read` });
      continue;
    }
    // the file may have grown since stat()
    if ('tooBig' in read) {
      errors.push({
        file,
        message: `grew past the ${formatBytes(limits.maxFileBytes)} a manifest file may have while it was read (raise it with --max-manifest-size)`,
      });
      continue;
    }
    parts.push(parseManifestText(read.text, file));
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

function formatIssue(issue: CompileIssue, origins: ReadonlyMap<string, string>): string {
  const file = origins.get(objectKey(issue.kind, issue.namespace, issue.name)) ?? '(input)';
  return `${file}: ${objectName(issue.kind, issue.namespace, issue.name)}: ${issue.field}: ${issue.message} (${issue.reason})`;
}

export async function loadAndCompile(
  paths: readonly string[],
  limits: ManifestLimits = DEFAULT_MANIFEST_LIMITS,
): Promise<Compiled> {
  const loaded = await loadManifests(paths, limits);
  const result = compile(loaded.objects, loaded.claims);
  return {
    loaded,
    result,
    errorLines: loaded.errors.map(formatManifestError),
    issueLines: result.issues.map((i) => formatIssue(i, loaded.origins)),
  };
}

/**
 * The credentials an authSecretRef may use in standalone mode ("namespace/name" -> username/password): the Secrets
 * among the manifests that opt in (routing/secret-opt-in.ts, the same rule as in a cluster) and have both keys. A
 * referenced Secret that is there but does not opt in, or lacks a key, gets a warning line (in standalone mode
 * whoever runs the relay wrote the files). Pure.
 */
export function usableSecrets(compiled: Pick<Compiled, 'loaded' | 'result'>): {
  secrets: Map<string, { username: string; password: string }>;
  warnings: string[];
} {
  const referenced = new Set<string>();
  for (const d of Object.values(compiled.result.table.domains))
    for (const s of Object.values(d.servers))
      if (s.authSecretRef) referenced.add(`${s.authSecretRef.namespace}/${s.authSecretRef.name}`);
  const secrets = new Map<string, { username: string; password: string }>();
  const warnings: string[] = [];
  for (const s of compiled.loaded.secrets) {
    const key = `${s.namespace}/${s.name}`;
    const where = objectName('Secret', s.namespace, s.name);
    if (!secretOptedIn(s)) {
      if (referenced.has(key))
        warnings.push(
          `${where}: metadata.labels: not used by authSecretRef without the label ${SMTP_AUTH_LABEL}: "${SMTP_AUTH_LABEL_VALUE}"`,
        );
      continue;
    }
    const username = s.data['username'];
    const password = s.data['password'];
    if (username !== undefined && password !== undefined) secrets.set(key, { username, password });
    else if (referenced.has(key)) warnings.push(`${where}: data: needs the keys username and password`);
  }
  return { secrets, warnings };
}
