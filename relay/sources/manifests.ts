// --manifests DIR: the YAML a cluster would get (MailDomain, DeliveryPolicy, TestRecipient, and v1 Secrets that
// satisfy authSecretRef), compiled with the routing core and watched. A change that does not parse or validate
// keeps the last good table; cross-object compile issues are logged and the objects concerned are left out, as the
// operator does.
import { readFile, stat } from 'node:fs/promises';
import { relative } from 'node:path';
import type { Logger } from 'pino';
import { compile } from '../../routing/compile.ts';
import {
  formatManifestError,
  mergeParsed,
  parseManifestText,
  type ParsedManifests,
} from '../../routing/parse.ts';
import { createPolledSource, type LoadOutcome } from './polled.ts';
import type { Credentials, RoutingSource } from './types.ts';
import { listFiles } from './watcher.ts';

export const MANIFEST_FILE = (name: string): boolean => /\.(ya?ml|json)$/i.test(name);

/** Reads and compiles every manifest file under dir (sorted, recursive). Pure apart from reading the files. */
export async function loadManifestsDir(
  dir: string,
  clock: () => Date = () => new Date(),
): Promise<LoadOutcome> {
  let isDir = false;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) return { ok: false, errors: [`${dir}: no such folder`] };
  const files = (await listFiles(dir, MANIFEST_FILE)).map((f) => f.path);
  const parts: ParsedManifests[] = [];
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    parts.push(parseManifestText(text, relative(dir, file) || file));
  }
  const merged = mergeParsed(parts);
  if (merged.errors.length > 0) return { ok: false, errors: merged.errors.map(formatManifestError) };
  const result = compile(merged.objects);
  const secrets = new Map<string, Credentials>();
  for (const s of merged.secrets) {
    const username = s.data['username'];
    const password = s.data['password'];
    if (username !== undefined && password !== undefined)
      secrets.set(`${s.namespace}/${s.name}`, { username, password });
  }
  const warnings = result.issues.map(
    (i) =>
      `${merged.origins.get(`${i.kind}/${i.namespace}/${i.name}`) ?? dir}: ${i.kind}/${i.name}: ${i.field}: ${i.message} (${i.reason})`,
  );
  return {
    ok: true,
    warnings,
    snapshot: { table: result.table, revision: result.revision, secrets, loadedAt: clock(), origin: dir },
  };
}

export function createManifestsSource(opts: {
  dir: string;
  logger: Logger;
  clock?: () => Date;
  pollMs?: number;
}): RoutingSource {
  return createPolledSource({
    kind: 'manifests',
    path: opts.dir,
    filter: MANIFEST_FILE,
    load: () => loadManifestsDir(opts.dir, opts.clock),
    logger: opts.logger,
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
  });
}
