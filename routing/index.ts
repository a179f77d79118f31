// The routing core's public surface. Everything here is pure except loadManifests (reads files; it lives in
// cli/manifests.ts and is re-exported for the relay's --manifests source).
export * from './model.ts';
export type * from './types.ts';
export { ADDRESS, CRD_DEFINITIONS, DOMAIN, DNS_LABEL } from './crd-schema.ts';
export { parseAddress, type ParsedAddress } from './address.ts';
export { canonicalJson, sha256Hex } from './canonical.ts';
export {
  compile,
  objectRef,
  Reasons,
  tableRevision,
  type CompileNotice,
  type CompileResult,
  type Reason,
} from './compile.ts';
export { compileGrants, patternMatches, type Grants } from './grants.ts';
export { buildCrd, buildCrds } from './crds.ts';
export {
  formatManifestError,
  mergeParsed,
  objectKey,
  parseManifestText,
  type ManifestError,
  type ParsedManifests,
} from './parse.ts';
export {
  buildIndex,
  formatReply,
  noPolicyReply,
  planToJson,
  Replies,
  resolve,
  verificationNeeded,
  type PlanJson,
  type RoutingIndex,
} from './resolve.ts';
export { DEFAULT_NAMESPACE, validateObject, type FieldError, type ValidateResult } from './validate.ts';
export { loadManifests } from '../cli/manifests.ts';
