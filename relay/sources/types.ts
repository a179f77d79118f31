// Where the relay's routing table comes from. Every source (manifests folder, routing file, and the ConfigMap source
// the operator adds) yields whole snapshots; the relay swaps them in atomically. A source that fails to load a new
// version keeps the last good one and reports why.
import type { RoutingTable } from '../../routing/model.ts';

export interface Credentials {
  username: string;
  password: string;
}

export interface RoutingSnapshot {
  table: RoutingTable;
  /** sha256 of the canonical JSON of the table */
  revision: string;
  /** Secrets known to this source, by "namespace/name" (standalone: Secrets in the manifests folder). */
  secrets: ReadonlyMap<string, Credentials>;
  loadedAt: Date;
  /** What it was loaded from, for logs: a folder, a file, a ConfigMap. */
  origin: string;
}

export interface SourceError {
  at: Date;
  /** One line per problem, e.g. "mail.yaml: MailDomain/example: spec.servers[0].port: must be <= 65535". */
  errors: string[];
}

export interface RoutingSource {
  readonly kind: string;
  /** Loads the first version and starts watching. Resolves even when the first load failed (current() is undefined). */
  start(): Promise<void>;
  current(): RoutingSnapshot | undefined;
  /** The problems of the last load attempt that failed, cleared by a good load. */
  lastError(): SourceError | undefined;
  /** Called after every swap to a new revision. Returns an unsubscribe function. */
  onChange(listener: (snapshot: RoutingSnapshot) => void): () => void;
  close(): Promise<void>;
}
