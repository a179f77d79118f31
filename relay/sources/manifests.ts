// --manifests DIR: the YAML a cluster would get (MailDomain, DeliveryPolicy, TestRecipient, and v1 Secrets that
// satisfy authSecretRef), compiled with the routing core and watched. A change that does not parse or validate
// keeps the last good table; cross-object compile issues are logged and the objects concerned are left out, as the
// operator does.
import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { loadAndCompile } from '../../cli/manifests.ts';
import { createPolledSource, type LoadOutcome } from './polled.ts';
import type { Credentials, RoutingSource } from './types.ts';

export const MANIFEST_FILE = (name: string): boolean => /\.(ya?ml|json)$/i.test(name);

/** Reads and compiles every manifest file under dir with the routing core's loader (the same as `mailroute check`). */
export async function loadManifestsDir(
  dir: string,
  clock: () => Date = () => new Date(),
): Promise<LoadOutcome> {
  let isDir: boolean;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) return { ok: false, errors: [`${dir}: no such folder`] };
  const compiled = await loadAndCompile([dir]);
  if (compiled.errorLines.length > 0) return { ok: false, errors: compiled.errorLines };
  const secrets = new Map<string, Credentials>();
  for (const s of compiled.loaded.secrets) {
    const username = s.data['username'];
    const password = s.data['password'];
    if (username !== undefined && password !== undefined)
      secrets.set(`${s.namespace}/${s.name}`, { username, password });
  }
  return {
    ok: true,
    warnings: compiled.issueLines,
    snapshot: {
      table: compiled.result.table,
      revision: compiled.result.revision,
      secrets,
      loadedAt: clock(),
      origin: dir,
    },
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
    required: { flag: '--manifests', kind: 'directory' },
    filter: MANIFEST_FILE,
    load: () => loadManifestsDir(opts.dir, opts.clock),
    logger: opts.logger,
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
  });
}
