// The credentials controller: server-side applies Secret mailroute-credentials (contract/credentials-secret.ts) in
// the operator's namespace with the username/password of every Secret named by an authSecretRef of a MailDomain in
// the routing table. The routing controller calls it after each compile and before it applies the table, so a
// relay has the credentials of a server by the time the table that uses the server reaches it.
import type { RoutingTable } from '../../../routing/model.ts';
import {
  buildCredentialsData,
  credentialsSecret,
  CREDENTIALS_HASH_ANNOTATION,
  CREDENTIALS_SECRET,
  referencedSecrets,
  type SecretKey,
  type SecretLookup,
} from '../../../contract/credentials-secret.ts';
import { serverSideApply } from '../../kube/ssa.ts';
import { withOwners, type OwnerReference } from '../../../contract/owner.ts';
import { describeFailure, type KubeRest } from '../../kube/rest.ts';
import { briefFailure } from '../routing/controller.ts';
import type { Logger } from '../../kube/supervisor.ts';

export interface CredentialsControllerDeps {
  namespace: string;
  rest: KubeRest;
  logger: Logger;
  /** A referenced Secret from the informer cache ("namespace/name"). */
  lookup: (secret: SecretKey) => SecretLookup;
  name?: string;
  /** ownerReferences of the Secret (operator/owner.ts); read at each apply. */
  owners?: () => readonly OwnerReference[];
}

export class CredentialsController {
  private readonly d: CredentialsControllerDeps;
  private referenced = new Set<SecretKey>();
  private appliedHash: string | undefined;
  private lastSkipped = '';

  constructor(deps: CredentialsControllerDeps) {
    this.d = deps;
  }

  /** Whether a Secret event concerns the credentials (it is referenced by the last table). */
  isReferenced(namespace: string, name: string): boolean {
    return this.referenced.has(`${namespace}/${name}`);
  }

  private get path(): string {
    return `/api/v1/namespaces/${this.d.namespace}/secrets/${this.d.name ?? CREDENTIALS_SECRET}`;
  }

  /** Applies the Secret when its data changed, or when someone changed or deleted it (annotation check). */
  async apply(table: RoutingTable): Promise<{ ok: true } | { ok: false; error: string; brief: string }> {
    const refs = referencedSecrets(table);
    this.referenced = new Set(refs);
    const built = buildCredentialsData(refs, this.d.lookup);
    const skipped = JSON.stringify(built.skipped);
    if (skipped !== this.lastSkipped) {
      this.lastSkipped = skipped;
      if (built.skipped.length > 0)
        this.d.logger.warn(
          { skipped: built.skipped },
          'credentials: referenced Secrets left out of mailroute-credentials',
        );
    }
    if (built.hash === this.appliedHash && !(await this.drifted(built.hash))) return { ok: true };
    const r = await serverSideApply(
      this.d.rest,
      this.path,
      withOwners(credentialsSecret(this.d.namespace, built, this.d.name), this.d.owners?.() ?? []),
    );
    if (!r.ok)
      return {
        ok: false,
        error: `apply Secret ${this.d.name ?? CREDENTIALS_SECRET}: ${describeFailure(r)}`,
        brief: briefFailure(r),
      };
    this.appliedHash = built.hash;
    this.d.logger.info(
      {
        secret: `${this.d.namespace}/${this.d.name ?? CREDENTIALS_SECRET}`,
        credentials: refs.length - built.skipped.length,
      },
      'credentials applied',
    );
    return { ok: true };
  }

  private async drifted(hash: string): Promise<boolean> {
    const r = await this.d.rest.request<{ metadata?: { annotations?: Record<string, string> } }>(
      'GET',
      this.path,
      {
        accept: 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1',
      },
    );
    if (r.ok) return r.body.metadata?.annotations?.[CREDENTIALS_HASH_ANNOTATION] !== hash;
    return r.status === 404; // transient errors: keep what we have, the next reconcile checks again
  }
}
