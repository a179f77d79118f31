// Loads `-f PATH...` arguments: files, or directories (their *.yaml / *.yml / *.json files, recursively, in
// sorted order) of multi-document YAML. Shared by check/render/route and the relay's --manifests source.
import { isUtf8 } from 'node:buffer';
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
 * A file to read, as listed: its size, inode, mtime and ctime (the relay's folder watcher fingerprints them: ctime
 * so that a chmod or chown of a file that could not be read is seen); stream: named on the command line and not a
 * regular file (a pipe).
 */
export interface ListedFile {
  path: string;
  size: number;
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
  stream?: true;
}

/**
 * Error codes of a read that may succeed later with the same files (a permission fixed on a parent folder, file
 * descriptors exhausted, a flaky network file system): the relay's watcher retries a load that failed with one of
 * them, where its fingerprint of the files may not change. ENOENT, ENOTDIR and ELOOP are left out: they describe
 * the tree (a dangling link, a loop), and a change to the tree changes the fingerprint.
 */
const TRANSIENT_READ_CODES: ReadonlySet<string> = new Set([
  'EACCES',
  'EPERM',
  'EMFILE',
  'ENFILE',
  'EIO',
  'EAGAIN',
  'EBUSY',
  'EINTR',
  'ENOMEM',
  'ESTALE',
  'ETIMEDOUT',
]);

/** Whether a failed read may succeed later with the same files (TRANSIENT_READ_CODES). */
export function isTransientReadError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && TRANSIENT_READ_CODES.has(code);
}

/** "cannot read: EACCES", marked transient when the code is one a retry may cure. */
function cannotRead(file: string, err: unknown): ParsedManifests['errors'][number] {
  return {
    file,
    message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    ...(isTransientReadError(err) ? { transient: true as const } : {}),
  };
}

/** The byte offset of the first byte that is not part of a well-formed UTF-8 sequence, or undefined when all are. */
export function firstInvalidUtf8(bytes: Uint8Array): number | undefined {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] ?? 0;
    if (b < 0x80) {
      i++;
      continue;
    }
    // the length of the sequence and the range its second byte must be in (RFC 3629: no overlongs, no surrogates,
    // nothing above U+10FFFF)
    let len: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k < len; k++) {
      const c = bytes[i + k];
      if (c === undefined) return i;
      if (k === 1 ? c < lo || c > hi : c < 0x80 || c > 0xbf) return i;
    }
    i += len;
  }
  return undefined;
}

/**
 * A manifest file's bytes as text, or why they are not a manifest: UTF-16 (PowerShell 5's `>`, Notepad's "Unicode":
 * a BOM FF FE / FE FF, or NUL bytes) gave "a manifest must be a mapping" on line 1, and bytes that are not UTF-8
 * (Latin-1) became U+FFFD in the field errors. Empty or blank text is an error too: `kubectl get ... -o yaml > f.yaml`
 * empties the file before kubectl writes, and a relay that loaded it then planned mail without the file's objects (its
 * TestRecipient copies were never made). A UTF-8 BOM is fine (the YAML parser skips it). Pure.
 */
export function decodeManifestBytes(bytes: Buffer): { text: string } | { error: string } {
  const utf16Bom =
    bytes.length >= 2 &&
    ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff));
  if (utf16Bom || bytes.includes(0)) return { error: 'UTF-16 text: save it as UTF-8' };
  if (!isUtf8(bytes)) return { error: `not valid UTF-8 (byte offset ${firstInvalidUtf8(bytes) ?? 0})` };
  const text = bytes.toString('utf8');
  if (text.replace(/^\uFEFF/, '').trim() === '')
    return { error: 'empty: delete the file to remove its objects' };
  return { text };
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
    errors.push(cannotRead(path, err));
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
      errors.push(cannotRead(path, err));
      return;
    }
    for (const e of entries) {
      if (e.startsWith('.')) continue; // .git, editor swap files, Kubernetes ..data symlinks of mounted ConfigMaps
      await listFiles(join(path, e), out, errors, false, folders);
    }
  } else if (top && !st.isFile()) {
    // named on the command line: `-f /dev/stdin` reads what a pipe brings, still through the size bound
    out.push({ path, size: 0, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, stream: true });
  } else if (top || MANIFEST_FILE.test(path)) {
    if (st.isFile()) out.push({ path, size: st.size, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
    else errors.push({ file: path, message: `${fileKind(st)}, not a manifest file: not read` });
  }
}

/**
 * A manifest file's bytes, or what stopped it: more than `max` bytes (reading stops there, however far the file goes
 * on), or not a regular file. Opened without blocking and checked again, so a file replaced by a named pipe since it
 * was listed is refused, not waited on.
 */
async function readManifestFile(
  file: ListedFile,
  max: number,
): Promise<{ bytes: Buffer } | { tooBig: number } | { notFile: string }> {
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
      if (bytesRead === 0) return { bytes: Buffer.concat(chunks, total) };
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
      errors.push(cannotRead(file, err));
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
    const decoded = decodeManifestBytes(read.bytes);
    if ('error' in decoded) {
      errors.push({ file, message: decoded.error });
      continue;
    }
    parts.push(parseManifestText(decoded.text, file));
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
