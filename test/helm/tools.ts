// helm and kubeconform for the chart checks: built from Go modules by test/controlplane/build-envtest.sh into
// ~/.cache/mailroute/tools/ (or named by MAILROUTE_HELM / MAILROUTE_KUBECONFORM). Missing tools skip the suites with a
// loud notice, unless MAILROUTE_REQUIRE_ENVTEST=1 (CI), which turns them into failures.
import { runProcess, type RunResult } from '../support/process.ts';
import { existsSync, mkdtempSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

export type { RunResult };

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CHART_DIR = join(REPO_ROOT, 'charts', 'mailroute');
export const ALL_FEATURES_VALUES = join(CHART_DIR, 'ci', 'all-features-values.yaml');
export const KUBE_VERSION = '1.34.4';

export interface Tools {
  helm: string;
  kubeconform: string;
}

export type ToolsLookup = { ok: true; tools: Tools } | { ok: false; reason: string };

function toolsDir(): string {
  return join(process.env.MAILROUTE_CACHE_DIR ?? join(homedir(), '.cache', 'mailroute'), 'tools');
}

export function findTools(): ToolsLookup {
  const helm = process.env.MAILROUTE_HELM ?? join(toolsDir(), 'helm');
  const kubeconform = process.env.MAILROUTE_KUBECONFORM ?? join(toolsDir(), 'kubeconform');
  const missing = [helm, kubeconform].filter((p) => !existsSync(p));
  if (missing.length > 0) return { ok: false, reason: `missing ${missing.join(' and ')}` };
  return { ok: true, tools: { helm, kubeconform } };
}

/** Flux's kstatus as a CLI (test/helm/build-kstatus.sh); undefined when not built. */
export function findKstatus(): string | undefined {
  const p = process.env.MAILROUTE_KSTATUS ?? join(toolsDir(), 'kstatus');
  return existsSync(p) ? p : undefined;
}

const HOW_TO_GET_TOOLS =
  'run `npm run envtest` (test/controlplane/build-envtest.sh builds helm and kubeconform from Go modules into ' +
  '~/.cache/mailroute/tools/), or set MAILROUTE_HELM and MAILROUTE_KUBECONFORM';

/** describe() that gets helm and kubeconform, or skips loudly (fails under MAILROUTE_REQUIRE_ENVTEST=1). */
export function describeWithTools(name: string, fn: (tools: Tools) => void): void {
  const found = findTools();
  if (found.ok) {
    describe(name, () => fn(found.tools));
    return;
  }
  if (process.env.MAILROUTE_REQUIRE_ENVTEST === '1') {
    describe(name, () => {
      it('has helm and kubeconform (MAILROUTE_REQUIRE_ENVTEST=1)', () => {
        throw new Error(`MAILROUTE_REQUIRE_ENVTEST=1 but ${found.reason}; ${HOW_TO_GET_TOOLS}`);
      });
    });
    return;
  }
  console.warn(
    `\n${'!'.repeat(100)}\n!! SKIPPING "${name}": ${found.reason}\n!! To run it: ${HOW_TO_GET_TOOLS}.\n` +
      `!! Set MAILROUTE_REQUIRE_ENVTEST=1 to make this a failure.\n${'!'.repeat(100)}\n`,
  );
  describe.skip(name, () => fn({ helm: '', kubeconform: '' }));
}

/** Helm's own state (repositories, cache) goes to a temp dir, never to the user's home. */
const helmHome = mkdtempSync(join(tmpdir(), 'mailroute-helm-home-'));
const HELM_ENV = {
  HELM_CACHE_HOME: join(helmHome, 'cache'),
  HELM_CONFIG_HOME: join(helmHome, 'config'),
  HELM_DATA_HOME: join(helmHome, 'data'),
};

/** Runs a tool with helm's state in a temp dir, from the repository root; never throws on a non-zero exit. */
export function run(
  bin: string,
  args: string[],
  opts: { stdin?: string; env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runProcess(bin, args, { ...opts, cwd: opts.cwd ?? REPO_ROOT, env: { ...HELM_ENV, ...opts.env } });
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

/** All objects of a multi-document YAML stream (empty documents dropped). */
export function parseObjects(yamlText: string): K8sObject[] {
  return parseAllDocuments(yamlText)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null && typeof o === 'object');
}

/** `helm template` of the chart; throws with helm's message when it fails. */
export async function helmTemplate(
  tools: Tools,
  args: string[] = [],
  release = 'mr',
  namespace = 'mailroute-system',
): Promise<string> {
  const r = await run(tools.helm, [
    'template',
    release,
    CHART_DIR,
    '--namespace',
    namespace,
    '--kube-version',
    KUBE_VERSION,
    ...args,
  ]);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}
