// kubeconform needs one JSON schema per kind, named <kind><-group-prefix>-<version>.json (its default layout). We
// build them offline from two sources, since openapi2jsonschema is Python and the network is out of reach:
//  - the Kubernetes kinds from the OpenAPI v3 documents a real kube-apiserver serves (/openapi/v3/...);
//  - our kinds from crds/*.yaml (openAPIV3Schema of each served version).
// "Strict" as in kubeconform's -strict schemas: every object schema that lists properties gets
// additionalProperties: false, so an unknown field is an error. Pure functions; the caller does the I/O.

type Json = Record<string, unknown>;

export interface OpenApiV3Document {
  components?: { schemas?: Record<string, Json> };
}

interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

/** kubeconform's file name for a kind: deployment-apps-v1.json, service-v1.json, maildomain-mailroute-v1alpha1.json */
function schemaFileName(gvk: GroupVersionKind): string {
  const suffix = gvk.group === '' ? `-${gvk.version}` : `-${gvk.group.split('.')[0]}-${gvk.version}`;
  return `${gvk.kind.toLowerCase()}${suffix}.json`.toLowerCase();
}

/** The OpenAPI v3 path that documents an apiVersion: v1 -> api/v1, apps/v1 -> apis/apps/v1. */
export function openApiPath(apiVersion: string): string {
  return apiVersion.includes('/') ? `apis/${apiVersion}` : `api/${apiVersion}`;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Deep copy with kubeconform's strictness and JSON-schema spellings of the Kubernetes extensions:
 * additionalProperties: false where properties are listed (unless x-kubernetes-preserve-unknown-fields),
 * x-kubernetes-int-or-string -> integer or string, $ref into #/definitions.
 */
function strictify(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(strictify);
  if (!isObject(schema)) return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === '$ref' && typeof v === 'string') out[k] = v.replace('#/components/schemas/', '#/definitions/');
    else if (k === 'properties' && isObject(v))
      out[k] = Object.fromEntries(Object.entries(v).map(([p, s]) => [p, strictify(s)]));
    else if (k === 'default' || k === 'example' || k === 'enum') out[k] = v;
    else out[k] = strictify(v);
  }
  if (out['x-kubernetes-int-or-string'] === true) {
    delete out.type;
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  }
  if (
    isObject(out.properties) &&
    out.additionalProperties === undefined &&
    out['x-kubernetes-preserve-unknown-fields'] !== true
  )
    out.additionalProperties = false;
  return out;
}

function refsOf(schema: unknown, into: Set<string>): void {
  if (Array.isArray(schema)) for (const s of schema) refsOf(s, into);
  else if (isObject(schema)) {
    for (const [k, v] of Object.entries(schema)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/'))
        into.add(v.slice('#/components/schemas/'.length));
      else refsOf(v, into);
    }
  }
}

/** One standalone schema file per kind found in the documents (a schema with x-kubernetes-group-version-kind). */
export function schemasFromOpenApi(docs: OpenApiV3Document[]): Map<string, Json> {
  const all = new Map<string, Json>();
  for (const d of docs) for (const [name, s] of Object.entries(d.components?.schemas ?? {})) all.set(name, s);
  const files = new Map<string, Json>();
  for (const [name, schema] of all) {
    const gvks = schema['x-kubernetes-group-version-kind'];
    if (!Array.isArray(gvks) || gvks.length !== 1) continue; // skips shared kinds like DeleteOptions
    const gvk = gvks[0] as GroupVersionKind;
    // Reachable definitions only: a Deployment's file does not carry the whole API.
    const reachable = new Set<string>();
    const queue = [name];
    while (queue.length > 0) {
      const n = queue.pop()!;
      if (reachable.has(n)) continue;
      reachable.add(n);
      const s = all.get(n);
      if (s === undefined) throw new Error(`OpenAPI: ${name} refers to missing ${n}`);
      const refs = new Set<string>();
      refsOf(s, refs);
      queue.push(...refs);
    }
    const definitions = Object.fromEntries([...reachable].sort().map((n) => [n, strictify(all.get(n))]));
    files.set(schemaFileName(gvk), {
      $schema: 'http://json-schema.org/draft-07/schema#',
      ...(strictify(schema) as Json),
      definitions,
    });
  }
  return files;
}

interface CrdLike {
  kind?: unknown;
  spec?: {
    group?: string;
    names?: { kind?: string };
    versions?: { name: string; served?: boolean; schema?: { openAPIV3Schema?: unknown } }[];
  };
}

/** One schema file per served version of each CustomResourceDefinition. */
export function schemasFromCrds(crds: unknown[]): Map<string, Json> {
  const files = new Map<string, Json>();
  for (const c of crds as CrdLike[]) {
    if (c.kind !== 'CustomResourceDefinition') continue;
    const group = c.spec?.group ?? '';
    const kind = c.spec?.names?.kind ?? '';
    for (const v of c.spec?.versions ?? []) {
      if (v.served === false || v.schema?.openAPIV3Schema === undefined) continue;
      files.set(schemaFileName({ group, version: v.name, kind }), {
        $schema: 'http://json-schema.org/draft-07/schema#',
        ...(strictify(v.schema.openAPIV3Schema) as Json),
      });
    }
  }
  return files;
}
