// TypeScript types of the three resources, derived from the schemas in crd-schema.ts (one source of truth).
// A field with a schema default is required in the derived type: the API server (and validateObject offline)
// applies defaults before anyone reads the object.
import type {
  deliveryPolicySpecSchema,
  deliveryPolicyStatusSchema,
  domainClaimSpecSchema,
  mailDomainSpecSchema,
  mailDomainStatusSchema,
  serverSchema,
  testRecipientSpecSchema,
  testRecipientStatusSchema,
} from './crd-schema.ts';
import type { API_VERSION } from './model.ts';

type Simplify<T> = { [K in keyof T]: T[K] } & {};

type RequiredKeys<S> = S extends { required: readonly (infer R)[] } ? R : never;

type ObjectFrom<P, R> = Simplify<
  {
    -readonly [K in keyof P as K extends R ? K : P[K] extends { default: unknown } ? K : never]: FromSchema<
      P[K]
    >;
  } & {
    -readonly [
      K in keyof P as K extends R ? never : P[K] extends { default: unknown } ? never : K
    ]?: FromSchema<P[K]>;
  }
>;

/** The subset of JSON Schema our CRDs use: object/properties/required, array/items, string (enum), integer, boolean. */
type FromSchema<S> = S extends { enum: readonly (infer E)[] }
  ? E
  : S extends { type: 'string' }
    ? string
    : S extends { type: 'integer' | 'number' }
      ? number
      : S extends { type: 'boolean' }
        ? boolean
        : S extends { type: 'array'; items: infer I }
          ? FromSchema<I>[]
          : S extends { type: 'object'; properties: infer P }
            ? ObjectFrom<P, RequiredKeys<S>>
            : unknown;

export type MailDomainSpec = FromSchema<typeof mailDomainSpecSchema>;
type MailDomainStatus = FromSchema<typeof mailDomainStatusSchema>;
export type ServerSpec = FromSchema<typeof serverSchema>;
export type DeliveryPolicySpec = FromSchema<typeof deliveryPolicySpecSchema>;
type DeliveryPolicyStatus = FromSchema<typeof deliveryPolicyStatusSchema>;
export type TestRecipientSpec = FromSchema<typeof testRecipientSpecSchema>;
type TestRecipientStatus = FromSchema<typeof testRecipientStatusSchema>;
type DomainClaimSpec = FromSchema<typeof domainClaimSpecSchema>;

/** The metadata fields mailroute reads. Other metadata (labels, annotations, uid, ...) is kept as is. */
interface ObjectMeta {
  name: string;
  /** "default" when a manifest has none. */
  namespace: string;
  /** 0 for a manifest that never went through an API server. */
  generation?: number;
  /** RFC 3339; absent for a manifest that never went through an API server. */
  creationTimestamp?: string;
  [key: string]: unknown;
}

interface Resource<K extends string, Spec, Status> {
  apiVersion: typeof API_VERSION;
  kind: K;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Status;
}

export type MailDomain = Resource<'MailDomain', MailDomainSpec, MailDomainStatus>;
export type DeliveryPolicy = Resource<'DeliveryPolicy', DeliveryPolicySpec, DeliveryPolicyStatus>;
export type TestRecipient = Resource<'TestRecipient', TestRecipientSpec, TestRecipientStatus>;
export type MailrouteObject = MailDomain | DeliveryPolicy | TestRecipient;

/** Cluster-scoped: metadata has no namespace. */
export interface DomainClaim {
  apiVersion: typeof API_VERSION;
  kind: 'DomainClaim';
  metadata: {
    name: string;
    namespace?: undefined;
    generation?: number;
    creationTimestamp?: string;
    [key: string]: unknown;
  };
  spec: DomainClaimSpec;
}

/** Anything a manifest file may hold besides Secrets. */
export type ManifestObject = MailrouteObject | DomainClaim;

/** A core v1 Secret found among manifests (standalone mode resolves authSecretRef with it). Values are decoded. */
export interface SecretObject {
  namespace: string;
  name: string;
  /** stringData merged over base64-decoded data. */
  data: Record<string, string>;
  /** metadata.labels (string values only); routing/secret-opt-in.ts decides whether the Secret may be used. */
  labels: Record<string, string>;
  /** The Secret's type, when given. */
  type?: string;
}
