// Every command in README.md, docs/*.md and examples/**/README.md is run or checked here, so the docs cannot drift
// from the product:
// - `mailroute check|render|route` (however it is invoked: mailroute, npx mailroute, node bin/mailroute.js, npm run
//   mailroute --, docker run IMAGE with its -v mounts) runs for real on this checkout, in the doc's own workspace
//   (YAML blocks marked `<!-- docs-check: file PATH -->` are written there first), and a `console` block's shown
//   output must equal what it prints;
// - `mailroute relay|operator` flags go through the relay's and the operator's own parsers; `queue`, `probe`, `demo`
//   must be known subcommands;
// - `npm run X` / `npm start` / `npm test` must be package.json scripts, `node FILE` must name a file;
// - `helm install` is rendered with `helm template` and the same flags (a shown error must be the one helm gives);
// - `docker build` needs the Dockerfile;
// - whatever needs a cluster, a running relay, a registry or minutes of benchmark (kubectl, helm test/uninstall,
//   swaks, curl, docker push, strace ...) must sit in a block annotated `<!-- docs-check: cluster|relay|registry|
//   manual REASON|tested-by PATH -->`; it is syntax-checked (`bash -n`) and listed, and kubectl's subcommand must be
//   a real one. Any command that fits none of these fails the test.
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseOperatorConfig } from '../../operator/config.ts';
import { parseRelayConfig } from '../../relay/config.ts';
import { CHART_DIR, findTools, KUBE_VERSION, REPO_ROOT } from '../helm/tools.ts';
import {
  commandsOf,
  fencedBlocks,
  isShellBlock,
  segments,
  splitEnv,
  type Annotation,
  type Block,
  type Command,
} from './extract.ts';

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
};
const BIN = join(REPO_ROOT, 'bin', 'mailroute.js');
const tools = findTools();

function docFiles(): string[] {
  const files = [
    'README.md',
    ...readdirSync(join(REPO_ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(REPO_ROOT, dir), { withFileTypes: true })) {
      if (e.isDirectory()) walk(`${dir}/${e.name}`);
      else if (e.name === 'README.md') files.push(`${dir}/${e.name}`);
    }
  };
  walk('examples');
  return files.sort();
}

const KUBECTL_SUBCOMMANDS = new Set([
  'get',
  'describe',
  'apply',
  'create',
  'delete',
  'wait',
  'exec',
  'run',
  'port-forward',
  'logs',
  'scale',
  'rollout',
  'label',
  'annotate',
  'auth',
  'edit',
  'patch',
  'explain',
]);
/** Programs that only make sense against a cluster, a relay, a registry or a long run: annotation required. */
const NEEDS: Record<string, Annotation['kind'][]> = {
  kubectl: ['cluster'],
  swaks: ['relay', 'cluster'],
  curl: ['relay', 'cluster'],
  printf: ['relay', 'cluster', 'manual'],
  nc: ['relay', 'cluster'],
  strace: ['manual'],
  pgrep: ['manual'],
  for: ['manual', 'cluster'],
  done: ['manual', 'cluster'],
  echo: ['manual', 'cluster'],
};

type Verdict = { how: 'ran' | 'checked' | 'listed'; detail: string } | { how: 'failed'; detail: string };

interface Workspace {
  dir: string;
  /** docker -v mounts of the command being run: [path in the container, path on this machine]. */
  mounts?: [string, string][];
}

const temps: string[] = [];
afterAll(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

/**
 * The folder a doc's commands run in: a temp dir where the checkout's examples/, charts/ and crds/ are reachable
 * (symlinks) and the doc's `file` blocks are written, so a command may create files (`cp -r examples/demo ...`)
 * without touching the checkout.
 */
function workspaceFor(blocks: Block[]): Workspace {
  const dir = mkdtempSync(join(tmpdir(), 'mailroute-docs-'));
  temps.push(dir);
  for (const d of ['examples', 'charts', 'crds']) symlinkSync(join(REPO_ROOT, d), join(dir, d));
  for (const b of blocks) {
    if (b.annotation?.kind !== 'file') continue;
    const path = join(dir, b.annotation.path);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `${b.body.join('\n')}\n`);
  }
  return { dir };
}

/** The mailroute arguments of a command, however the docs invoke it, with docker -v mounts mapped to host paths. */
function mailrouteArgs(argv: string[], ws: Workspace): string[] | undefined {
  const [a0, a1, a2, a3] = argv;
  if (a0 === 'mailroute') return argv.slice(1);
  if (a0 === 'npx' && a1 === 'mailroute') return argv.slice(2);
  if (a0 === 'node' && (a1 === 'bin/mailroute.js' || a1 === '/app/bin/mailroute.js')) return argv.slice(2);
  if (a0 === 'npm' && a1 === 'run' && a2 === 'mailroute' && a3 === '--') return argv.slice(4);
  if (a0 === 'docker' && a1 === 'run') {
    const mounts: [string, string][] = [];
    let i = 2;
    for (; i < argv.length && argv[i]!.startsWith('-'); i++) {
      const flag = argv[i]!;
      if (flag === '-v' || flag === '--volume') {
        const [src = '', dst = ''] = argv[++i]!.split(':');
        mounts.push([dst, src.replace(/^\$PWD|^\$\{PWD\}/, ws.dir)]);
      } else if (flag === '-e' || flag === '--env' || flag === '-w') i++;
    }
    const image = argv[i];
    if (image === undefined || !/mailroute/.test(image)) return undefined;
    ws.mounts = mounts;
    return argv.slice(i + 1).map((a) => {
      for (const [dst, src] of mounts)
        if (a === dst || a.startsWith(`${dst}/`)) return src + a.slice(dst.length);
      return a;
    });
  }
  return undefined;
}

function runMailroute(args: string[], cmd: Command, ws: Workspace): Verdict {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'diff':
    case 'check':
    case 'render':
    case 'route': {
      // The live routing needs a cluster: such a block must say so (and is listed, not run); two manifest sets are
      // compared offline like the other commands.
      if (sub === 'diff' && rest.includes('--cluster'))
        return cmd.annotation?.kind === 'cluster'
          ? { how: 'listed', detail: 'diff --cluster (cluster)' }
          : { how: 'failed', detail: 'mailroute diff --cluster needs a `docs-check: cluster` block' };
      // One pipe for stdout and stderr, so warnings and results appear in the order a terminal shows them.
      const r = spawnSync('/bin/sh', ['-c', 'exec "$@" 2>&1', 'sh', process.execPath, BIN, ...args], {
        cwd: ws.dir,
        encoding: 'utf8',
        timeout: 60_000,
      });
      // A container prints its own paths: map the host side of each mount back to the path the doc shows.
      let actual = r.stdout.trimEnd();
      for (const [dst, src] of ws.mounts ?? []) actual = actual.split(src).join(dst);
      ws.mounts = undefined;
      const problems = cmd.output.length > 0 && /^\d+ problems?$/.test(cmd.output.at(-1)!.trim());
      if (cmd.output.length > 0 && actual !== cmd.output.join('\n').trimEnd())
        return { how: 'failed', detail: `prints:\n${actual}\nbut the doc shows:\n${cmd.output.join('\n')}` };
      // diff exits like diff(1): 0 no change, 1 changes; 2 is an error
      const ok = sub === 'diff' ? r.status === 0 || r.status === 1 : r.status === (problems ? 1 : 0);
      if (!ok) return { how: 'failed', detail: `exit ${String(r.status)}: ${actual}` };
      return { how: 'ran', detail: cmd.output.length > 0 ? 'output as shown' : 'exit 0' };
    }
    case 'relay': {
      const p = parseRelayConfig(rest, {});
      return p.ok === true
        ? { how: 'checked', detail: 'relay flags parse' }
        : { how: 'failed', detail: `relay: ${p.ok === false ? p.error : 'help'}` };
    }
    case 'operator': {
      const p = parseOperatorConfig(rest, {});
      return p.ok === true
        ? { how: 'checked', detail: 'operator flags parse' }
        : { how: 'failed', detail: `operator: ${p.ok === false ? p.error : 'help'}` };
    }
    case 'queue':
      return ['list', 'show', 'stats', 'flush', 'reroute', 'delete'].includes(rest[0] ?? '')
        ? { how: 'checked', detail: `queue ${rest[0]!}` }
        : { how: 'failed', detail: `unknown queue subcommand ${rest[0] ?? '(none)'}` };
    case 'probe':
    case 'preflight':
    case 'demo':
      return { how: 'checked', detail: `${sub} is a subcommand` };
    case undefined:
    default:
      return { how: 'failed', detail: `unknown mailroute subcommand ${sub ?? '(none)'}` };
  }
}

function helmTemplateOf(argv: string[], cmd: Command): Verdict {
  if (!tools.ok) {
    if (process.env.MAILROUTE_REQUIRE_ENVTEST === '1')
      return { how: 'failed', detail: `no helm: ${tools.reason}` };
    return { how: 'listed', detail: `helm install NOT rendered: ${tools.reason}` };
  }
  const [, , release = '', chart = '', ...flags] = argv;
  const r = spawnSync(
    tools.tools.helm,
    ['template', release, join(REPO_ROOT, chart), ...flags, '--kube-version', KUBE_VERSION],
    { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 },
  );
  if (cmd.output.length > 0) {
    // a shown failure: helm template fails with the same message (install prefixes "INSTALLATION FAILED: ")
    const want = cmd.output.map((l) => l.replace('Error: INSTALLATION FAILED: ', 'Error: '));
    const missing = want.filter((l) => !r.stderr.includes(l));
    if (r.status === 0 || missing.length > 0)
      return {
        how: 'failed',
        detail: `helm template ${flags.join(' ')}: exit ${String(r.status)}, lacks ${missing.join(' | ')}:\n${r.stderr}`,
      };
    return { how: 'ran', detail: 'helm template fails with the shown message' };
  }
  if (r.status !== 0) return { how: 'failed', detail: `helm template fails: ${r.stderr}` };
  if (chart !== relative(REPO_ROOT, CHART_DIR))
    return { how: 'failed', detail: `chart ${chart} is not ${relative(REPO_ROOT, CHART_DIR)}` };
  return { how: 'ran', detail: 'helm template renders it' };
}

const KIND_ALIASES: Record<string, string> = {
  svc: 'Service',
  service: 'Service',
  services: 'Service',
  deploy: 'Deployment',
  deployment: 'Deployment',
  deployments: 'Deployment',
  sts: 'StatefulSet',
  statefulset: 'StatefulSet',
  statefulsets: 'StatefulSet',
  lease: 'Lease',
  leases: 'Lease',
  cm: 'ConfigMap',
  configmap: 'ConfigMap',
  configmaps: 'ConfigMap',
  secret: 'Secret',
  secrets: 'Secret',
  pod: 'Pod',
  pods: 'Pod',
  po: 'Pod',
  hpa: 'HorizontalPodAutoscaler',
  pdb: 'PodDisruptionBudget',
  sa: 'ServiceAccount',
  role: 'Role',
  rolebinding: 'RoleBinding',
  clusterrole: 'ClusterRole',
  clusterrolebinding: 'ClusterRoleBinding',
};

let releaseNames: Set<string> | undefined;
/**
 * "Kind/name" of every object a default install (release mailroute in mailroute-system) has: what the chart renders,
 * and what runs create (the routing ConfigMap, the credentials Secret, the Leases, the relay pods 0..maxReplicas-1).
 * Undefined without helm.
 */
function releaseObjects(): Set<string> | undefined {
  if (releaseNames !== undefined || !tools.ok) return releaseNames;
  const r = spawnSync(
    tools.tools.helm,
    ['template', 'mailroute', CHART_DIR, '-n', 'mailroute-system', '--kube-version', KUBE_VERSION],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`helm template: ${r.stderr}`);
  const names = new Set<string>();
  for (const d of parseAllDocuments(r.stdout)) {
    const o = d.toJS() as { kind?: string; metadata?: { name?: string } } | null;
    if (o?.kind !== undefined && o.metadata?.name !== undefined) names.add(`${o.kind}/${o.metadata.name}`);
  }
  names
    .add('ConfigMap/mailroute-routing')
    .add('Secret/mailroute-credentials')
    .add('Lease/mailroute-operator');
  for (let i = 0; i < 6; i++)
    names.add(`Pod/mailroute-relay-${i}`).add(`Lease/mailroute-relay-mailroute-relay-${i}`);
  releaseNames = names;
  return names;
}

/**
 * The objects a kubectl command names in mailroute-system (`get svc NAME`, `get lease/NAME`, `exec POD`) that a
 * default install does not have. Other namespaces hold the user's objects: not checked here.
 */
function unknownReleaseObjects(argv: readonly string[], sub: string): string[] {
  const nsAt = argv.findIndex((w) => w === '-n' || w === '--namespace');
  const ns = nsAt >= 0 ? argv[nsAt + 1] : argv.find((w) => w.startsWith('--namespace='))?.slice(12);
  if (ns !== 'mailroute-system') return [];
  const known = releaseObjects();
  if (known === undefined) return [];
  const words = argv
    .slice(1)
    .filter(
      (w, i, a) => !w.startsWith('-') && !['-n', '--namespace', '-o', '-l', '-c'].includes(a[i - 1] ?? ''),
    );
  const rest = words.slice(words.indexOf(sub) + 1);
  const refs: string[] = [];
  if (sub === 'exec' || sub === 'port-forward' || sub === 'logs') {
    const target = rest[0];
    if (target !== undefined && !target.startsWith('$'))
      refs.push(target.includes('/') ? target : `pod/${target}`);
  } else if (
    ['get', 'describe', 'delete', 'scale', 'wait', 'edit', 'patch'].includes(sub) &&
    rest.length > 0
  ) {
    const [first, ...names] = rest;
    if (first!.includes('/')) refs.push(...rest.filter((w) => w.includes('/')));
    else if (!first!.includes(',')) refs.push(...names.map((n) => `${first!}/${n}`));
  }
  return refs.filter((ref) => {
    const [type = '', name = ''] = ref.split('/');
    const kind = KIND_ALIASES[type.toLowerCase()];
    return kind !== undefined && !known.has(`${kind}/${name}`);
  });
}

function verdictOf(cmd: Command, ws: Workspace): Verdict[] {
  const syntax = spawnSync('bash', ['-n', '-c', cmd.text], { encoding: 'utf8' });
  if (syntax.status !== 0) return [{ how: 'failed', detail: `bash -n: ${syntax.stderr}` }];
  const ann = cmd.annotation;
  if (ann?.kind === 'tested-by') {
    return existsSync(join(REPO_ROOT, ann.path))
      ? [{ how: 'listed', detail: `run by ${ann.path}` }]
      : [{ how: 'failed', detail: `tested-by ${ann.path}: no such file` }];
  }
  const out: Verdict[] = [];
  for (const seg of segments(cmd.text)) {
    const { argv } = splitEnv(seg.words);
    if (['do', 'then', 'else'].includes(argv[0] ?? '')) argv.shift(); // the command after a shell keyword
    const prog = argv[0];
    if (prog === undefined) continue; // an assignment only (P=$(...))
    const mr = mailrouteArgs(argv, ws);
    if (mr !== undefined) {
      out.push(
        ann?.kind === 'manual' ? { how: 'listed', detail: 'mailroute (manual)' } : runMailroute(mr, cmd, ws),
      );
      continue;
    }
    if (prog === 'npm' || prog === 'npx') {
      const [, verb, name] = argv;
      if (verb === 'ci')
        out.push(
          existsSync(join(REPO_ROOT, 'package-lock.json'))
            ? { how: 'checked', detail: 'npm ci: package-lock.json' }
            : { how: 'failed', detail: 'no package-lock.json' },
        );
      else if (verb === 'start' || verb === 'test')
        out.push(
          pkg.scripts[verb]
            ? { how: 'checked', detail: `npm ${verb}: ${pkg.scripts[verb]}` }
            : { how: 'failed', detail: `no npm script ${verb}` },
        );
      else if (verb === 'run' && name !== undefined)
        out.push(
          pkg.scripts[name]
            ? { how: 'checked', detail: `npm script ${name}` }
            : { how: 'failed', detail: `no npm script ${name}` },
        );
      else out.push({ how: 'failed', detail: `unclassified npm command ${argv.join(' ')}` });
      continue;
    }
    if (prog === 'cp' && argv.slice(1).every((a) => a.startsWith('-') || !a.startsWith('/'))) {
      // copies within the workspace: run it, so the commands after it find the files
      const r = spawnSync('cp', argv.slice(1), { cwd: ws.dir, encoding: 'utf8' });
      out.push(
        r.status === 0
          ? { how: 'ran', detail: argv.join(' ') }
          : { how: 'failed', detail: `cp: ${r.stderr}` },
      );
      continue;
    }
    if (prog === 'node') {
      const file = argv[1] ?? '';
      out.push(
        existsSync(join(REPO_ROOT, file))
          ? { how: 'checked', detail: `node ${file} exists` }
          : { how: 'failed', detail: `node ${file}: no such file` },
      );
      continue;
    }
    if (prog === 'helm') {
      if (argv[1] === 'install' && ann?.kind !== 'manual') out.push(helmTemplateOf(argv, cmd));
      else
        out.push(
          ann?.kind === 'cluster'
            ? { how: 'listed', detail: `helm ${argv[1] ?? ''} (cluster)` }
            : {
                how: 'failed',
                detail: `helm ${argv[1] ?? ''} needs a cluster: annotate the block <!-- docs-check: cluster -->`,
              },
        );
      continue;
    }
    if (prog === 'docker') {
      if (argv[1] === 'build') {
        const context = argv.at(-1) ?? '.';
        out.push(
          existsSync(join(REPO_ROOT, context, 'Dockerfile'))
            ? { how: 'checked', detail: 'Dockerfile exists' }
            : { how: 'failed', detail: `no Dockerfile in ${context}` },
        );
      } else if (ann?.kind === 'registry')
        out.push({ how: 'listed', detail: `docker ${argv[1] ?? ''} (registry)` });
      else
        out.push({
          how: 'failed',
          detail: `docker ${argv[1] ?? ''}: annotate <!-- docs-check: registry -->`,
        });
      continue;
    }
    if (prog === 'kubectl') {
      const sub = argv
        .slice(1)
        .find((w, i, a) => !w.startsWith('-') && !['-n', '--namespace'].includes(a[i - 1] ?? ''));
      if (sub === undefined || !KUBECTL_SUBCOMMANDS.has(sub)) {
        out.push({ how: 'failed', detail: `kubectl: unknown subcommand ${sub ?? '(none)'}` });
        continue;
      }
      const unknown = unknownReleaseObjects(argv, sub);
      if (unknown.length > 0) {
        out.push({
          how: 'failed',
          detail: `kubectl names objects the chart (release mailroute) does not create: ${unknown.join(', ')}`,
        });
        continue;
      }
    }
    const needs = NEEDS[prog];
    if (needs !== undefined && ann !== undefined && needs.includes(ann.kind)) {
      out.push({
        how: 'listed',
        detail: `${prog} (${ann.kind}${ann.kind === 'manual' ? `: ${ann.why}` : ''})`,
      });
      continue;
    }
    if (ann?.kind === 'manual') {
      out.push({ how: 'listed', detail: `${prog} (manual: ${ann.why})` });
      continue;
    }
    out.push({
      how: 'failed',
      detail: needs
        ? `${prog} needs ${needs.join(' or ')}: annotate the block <!-- docs-check: ${needs[0]!} -->`
        : `unclassified command ${prog}: run it in this test or annotate the block`,
    });
  }
  return out;
}

describe('every command in README.md, docs/ and examples/ runs or is checked', () => {
  const summary: string[] = [];
  afterAll(() => {
    console.log(`docs commands:\n${summary.join('\n')}`);
  });
  for (const file of docFiles()) {
    const blocks = fencedBlocks(file, readFileSync(join(REPO_ROOT, file), 'utf8'));
    const commands = blocks.filter(isShellBlock).flatMap(commandsOf);
    if (commands.length === 0) continue;
    describe(file, () => {
      const ws = workspaceFor(blocks);
      it.each(commands.map((c) => [`${c.file}:${c.line}: ${c.text.slice(0, 100)}`, c] as const))(
        '%s',
        (_name, cmd) => {
          const verdicts = verdictOf(cmd, ws);
          for (const v of verdicts)
            summary.push(`${v.how.padEnd(7)} ${cmd.file}:${cmd.line} ${v.detail.split('\n')[0]!}`);
          expect(verdicts.length, 'no command found').toBeGreaterThan(0);
          const failed = verdicts.filter((v) => v.how === 'failed');
          expect(failed.map((v) => v.detail)).toEqual([]);
        },
      );
    });
  }
});

describe('the docs check itself', () => {
  const check = (markdown: string): Verdict[] => {
    const blocks = fencedBlocks('self.md', markdown);
    const ws = workspaceFor(blocks);
    return blocks
      .filter(isShellBlock)
      .flatMap(commandsOf)
      .flatMap((c) => verdictOf(c, ws));
  };

  const failsWith = (verdicts: Verdict[], text: string): void => {
    expect(verdicts[0]?.how).toBe('failed');
    expect(verdicts[0]?.detail).toContain(text);
  };

  it('fails an unclassified command, a cluster command without annotation and an unknown subcommand', () => {
    failsWith(check('```sh\nfrobnicate --all\n```\n'), 'unclassified command frobnicate');
    failsWith(check('```sh\nkubectl get pods\n```\n'), 'kubectl needs cluster');
    failsWith(
      check('<!-- docs-check: cluster -->\n```sh\nkubectl gte pods\n```\n'),
      'unknown subcommand gte',
    );
    failsWith(check('```sh\nmailroute frob\n```\n'), '');
    if (tools.ok) {
      failsWith(
        check(
          '<!-- docs-check: cluster -->\n```sh\nkubectl -n mailroute-system get svc mailroute-relais\n```\n',
        ),
        'svc/mailroute-relais',
      );
      failsWith(
        check(
          '<!-- docs-check: cluster -->\n```sh\nkubectl -n mailroute-system exec mailroute-relay-6 -- true\n```\n',
        ),
        'pod/mailroute-relay-6',
      );
      expect(
        check(
          '<!-- docs-check: cluster -->\n```sh\nkubectl -n mailroute-system get clusterrole mailroute-operator-secrets\n```\n',
        ),
      ).toEqual([{ how: 'listed', detail: 'kubectl (cluster)' }]);
      failsWith(
        check(
          '<!-- docs-check: cluster -->\n```sh\nkubectl -n mailroute-system get clusterrole mailroute-secrets-operator\n```\n',
        ),
        'clusterrole/mailroute-secrets-operator',
      );
    }
    failsWith(check('```sh\nmailroute relay --manifests m --listen nowhere\n```\n'), '--listen');
    failsWith(check('```sh\nnpm run no-such-script\n```\n'), '');
    failsWith(check("```sh\necho 'unterminated\n```\n"), '');
  });

  it('fails when a command prints something other than the doc shows', () => {
    const md =
      '```console\n$ mailroute check -f examples/demo\nok: 9 objects (1 MailDomain), revision 000000000000\n```\n';
    failsWith(check(md), 'but the doc shows');
  });

  it('runs commands on the files a doc declares, in its own workspace', () => {
    const md = [
      '<!-- docs-check: file m/x.yaml -->',
      '```yaml',
      readFileSync(join(REPO_ROOT, 'examples/split-new-primary/mailroute.yaml'), 'utf8').trimEnd(),
      '```',
      '```console',
      '$ npx mailroute check -f m/',
      'ok: 2 objects (1 MailDomain, 1 DeliveryPolicy), revision 9b8da475bcf8',
      '```',
    ].join('\n');
    expect(check(md)).toEqual([{ how: 'ran', detail: 'output as shown' }]);
  });
});

describe('docs/install.md values table', () => {
  it('names only values that exist in charts/mailroute/values.yaml', () => {
    const values = parseYaml(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const has = (path: string): boolean => {
      let v: unknown = values;
      for (const k of path.split('.')) {
        if (typeof v !== 'object' || v === null || !(k in v)) return false;
        v = (v as Record<string, unknown>)[k];
      }
      return true;
    };
    const install = readFileSync(join(REPO_ROOT, 'docs', 'install.md'), 'utf8');
    const section = install.slice(install.indexOf('## 7. Values'), install.indexOf('### Secure defaults'));
    const rows = section.split('\n').filter((l) => l.startsWith('| `'));
    expect(rows.length).toBeGreaterThan(10);
    let prefix = '';
    const missing: string[] = [];
    for (const row of rows) {
      for (const [, key] of row.split('|')[1]!.matchAll(/`([^`]+)`/g)) {
        // `.port` continues the previous key's parent; `a.*` names a subtree
        const full = key!.startsWith('.') ? `${prefix}${key!}` : key!;
        if (!key!.startsWith('.')) prefix = full.slice(0, full.lastIndexOf('.'));
        if (!has(full.replace(/\.\*$/, ''))) missing.push(full);
      }
    }
    expect(missing).toEqual([]);
  });
});
