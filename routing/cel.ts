// The TypeScript twin of every CEL rule (x-kubernetes-validations) in crd-schema.ts, keyed by the rule text, so
// that offline `check` refuses what the API server would refuse. A unit test asserts the two sets match.
// Each predicate receives the value at the rule's location (self) and, for transition rules, the old value.
import { IDN_RULE, STAGES_ORDER_RULE } from './crd-schema.ts';
import type { DeliveryPolicySpec, MailDomainSpec, ServerSpec } from './types.ts';

export interface CelPredicate {
  /** true: the rule compares against oldSelf and only runs on updates. */
  transition: boolean;
  check: (self: unknown, oldSelf: unknown) => boolean;
}

const md = (self: unknown) => self as MailDomainSpec;
const dp = (self: unknown) => self as DeliveryPolicySpec;
/** A DeliveryPolicy's routing fields: the spec's own or one stage's (the same two rules apply to both). */
const state = (self: unknown) => self as Pick<DeliveryPolicySpec, 'mode' | 'primary' | 'secondary'>;

/** The index of the first stage that does not end strictly after the one before it, or -1 when all do. */
export function firstUnorderedStage(stages: readonly { until: string }[]): number {
  for (let i = 1; i < stages.length; i++) {
    if (!(Date.parse(stages[i]!.until) > Date.parse(stages[i - 1]!.until))) return i;
  }
  return -1;
}

export const CEL_PREDICATES: Readonly<Record<string, CelPredicate>> = {
  'self.servers.all(s, self.servers.exists_one(t, t.name == s.name))': {
    transition: false,
    check: (self) => {
      const names = md(self).servers.map((s) => s.name);
      return new Set(names).size === names.length;
    },
  },
  '!has(self.accounts) || self.accounts.all(a, self.servers.exists(s, s.name == a.server))': {
    transition: false,
    check: (self) => {
      const spec = md(self);
      return (
        spec.accounts === undefined ||
        spec.accounts.every((a) => spec.servers.some((s) => s.name === a.server))
      );
    },
  },
  '!has(self.recipientVerification) || self.servers.exists(s, s.name == self.recipientVerification.server)': {
    transition: false,
    check: (self) => {
      const spec = md(self);
      const rv = spec.recipientVerification;
      return rv === undefined || spec.servers.some((s) => s.name === rv.server);
    },
  },
  "!has(self.authSecretRef) || !has(self.tls) || self.tls != 'None' || (has(self.allowPlaintextAuth) && self.allowPlaintextAuth)":
    {
      transition: false,
      check: (self) => {
        const s = self as ServerSpec;
        return s.authSecretRef === undefined || s.tls !== 'None' || s.allowPlaintextAuth === true;
      },
    },
  [IDN_RULE]: {
    transition: false,
    check: (self) => typeof self === 'string' && /^[ -~]*$/.test(self),
  },
  'self == oldSelf': {
    transition: true,
    check: (self, oldSelf) => self === oldSelf,
  },
  "self.mode == 'Direct' || has(self.secondary)": {
    transition: false,
    check: (self) => state(self).mode === 'Direct' || state(self).secondary !== undefined,
  },
  '!has(self.secondary) || self.secondary != self.primary': {
    transition: false,
    check: (self) => state(self).secondary === undefined || state(self).secondary !== state(self).primary,
  },
  '!has(self.stages) || self.stages.all(s, self.stages.exists_one(t, t.name == s.name))': {
    transition: false,
    check: (self) => {
      const names = (dp(self).stages ?? []).map((s) => s.name);
      return new Set(names).size === names.length;
    },
  },
  // isSorted and exists_one on timestamps: non-decreasing, and no instant twice = strictly increasing.
  [STAGES_ORDER_RULE]: {
    transition: false,
    check: (self) => firstUnorderedStage(dp(self).stages ?? []) === -1,
  },
  "self.name != 'final'": {
    transition: false,
    check: (self) => (self as { name?: unknown }).name !== 'final',
  },
};
