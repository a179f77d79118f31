// Picks the routing source for the relay's config. The ConfigMap source (relay/sources/configmap.ts)
// has its own callback API; it is adapted here to RoutingSource so the relay treats every source alike.
import type { Logger } from 'pino';
import type { RoutingTable } from '../../routing/model.ts';
import type { RoutingSourceConfig } from '../config.ts';
import { createRoutingFileSource } from './file.ts';
import { createManifestsSource } from './manifests.ts';
import { SourceState } from './state.ts';
import type { Credentials, RoutingSnapshot, RoutingSource } from './types.ts';

export interface SourceDeps {
  logger: Logger;
  clock?: () => Date;
  pollMs?: number;
}

export function createSource(config: RoutingSourceConfig, deps: SourceDeps): RoutingSource {
  const common = {
    logger: deps.logger,
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.pollMs !== undefined ? { pollMs: deps.pollMs } : {}),
  };
  switch (config.kind) {
    case 'manifests':
      return createManifestsSource({
        dir: config.dir,
        ...common,
        ...(config.limits ? { limits: config.limits } : {}),
      });
    case 'routing-file':
      return createRoutingFileSource({ file: config.file, ...common });
    case 'configmap':
      return createConfigMapRoutingSource(config.namespace, config.name, deps, config.fallbackFile);
  }
}

/**
 * The in-cluster source: the API via the in-cluster (or KUBECONFIG) credentials, the mounted file as fallback.
 * Server credentials come from Secret mailroute-credentials in the same namespace (relay/sources/credentials.ts).
 * When that Secret changes, the snapshot in use is published again with the new credentials and the same table and
 * revision: a new password is used without a new routing revision, and the relay tries the mail deferred for the
 * old one at once (relay/delivery/recovery.ts).
 */
function createConfigMapRoutingSource(
  namespace: string,
  name: string,
  deps: SourceDeps,
  fallbackFromFlag?: string,
): RoutingSource {
  const clock = deps.clock ?? (() => new Date());
  const state = new SourceState();
  let stop: (() => void) | undefined;
  /** Why the ConfigMap source last refused a table (a newer format, a bad shard), and since when; see lastError. */
  let refusal: (() => string | undefined) | undefined;
  let refused: { error: string; at: Date } | undefined;
  let secrets: ReadonlyMap<string, Credentials> = new Map();
  const fallbackFile =
    fallbackFromFlag ??
    process.env['MAILROUTE_ROUTING_FILE_FALLBACK'] ??
    '/etc/mailroute/routing/routing.json';
  const onTable = (table: RoutingTable, revision: string, from: 'api' | 'file'): void => {
    const current: RoutingSnapshot = {
      table,
      revision,
      secrets,
      loadedAt: clock(),
      origin: `${from}:${namespace}/${name}`,
    };
    deps.logger.info({ source: 'configmap', revision, from }, 'routing: table loaded');
    state.publish(current, deps.logger);
  };
  const source = state.source(
    'configmap',
    async () => {
      const { KubeConfig } = await import('@kubernetes/client-node');
      const mod = await import('./configmap.ts');
      const creds = await import('./credentials.ts');
      const { CREDENTIALS_SECRET } = await import('../../contract/credentials-secret.ts');
      const kc = new KubeConfig();
      kc.loadFromDefault();
      // Credentials first: the table that needs them should find them.
      const credWatch = creds.startCredentialsWatch({
        namespace,
        name: CREDENTIALS_SECRET,
        api: creds.credentialsApi(kc),
        onCredentials: (next) => {
          secrets = new Map(next);
          const current = state.current;
          if (current !== undefined) state.publish({ ...current, secrets, loadedAt: clock() }, deps.logger);
        },
        logger: deps.logger,
      });
      await credWatch.start();
      const src = mod.startConfigMapSource({
        namespace,
        name,
        api: mod.configMapApi(kc),
        fallbackFile,
        onTable,
        logger: deps.logger,
      });
      refusal = () => src.status().lastError;
      stop = () => {
        src.stop();
        credWatch.stop();
      };
      const status = await src.start();
      if (status.lastError !== undefined) state.lastError = { at: clock(), errors: [status.lastError] };
    },
    () => stop?.(),
  );
  // The ConfigMap source keeps serving its table when it refuses a later one (a table of a newer format: operator
  // upgraded first): /readyz shows why while it lasts, not only a failure at start.
  return {
    ...source,
    lastError: () => {
      const error = refusal?.();
      if (error === undefined) return source.lastError();
      if (refused?.error !== error) refused = { error, at: clock() };
      return { at: refused.at, errors: [error] };
    },
  };
}

export type { RoutingSource } from './types.ts';
