// The GitOps example (examples/gitops): the workflow's `mailroute check` step, run for real on the example repository
// and on a broken copy of it, with the workflow's own sed turning problems into GitHub annotations.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT, run } from './tools.ts';

const EXAMPLE = join(REPO_ROOT, 'examples', 'gitops');
const workflow = parseYaml(readFileSync(join(EXAMPLE, '.github', 'workflows', 'check.yaml'), 'utf8')) as {
  env: Record<string, string>;
  jobs: Record<string, { steps: { name?: string; run?: string; uses?: string }[] }>;
};
const steps = workflow.jobs.check!.steps;
const checkStep = steps.find((s) => s.name === 'mailroute check')!;
/** The sed program the workflow uses to turn `file: ...` lines into ::error annotations. */
const sedScript = /sed -nE '([^']+)'/.exec(checkStep.run ?? '')?.[1];

async function check(repo: string): Promise<{ code: number; out: string }> {
  // What `docker run -w /repo IMAGE check -f $MANIFESTS` runs, with this checkout's bin instead of the image's.
  const r = await run(
    process.execPath,
    [join(REPO_ROOT, 'bin', 'mailroute.js'), 'check', '-f', workflow.env.MANIFESTS!],
    {
      cwd: repo,
    },
  );
  return { code: r.code, out: r.stdout + r.stderr };
}

describe('GitOps example workflow', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'mailroute-gitops-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('checks out the repository and runs mailroute check from the image on the manifests folder', () => {
    expect(steps[0]!.uses).toMatch(/^actions\/checkout@/);
    expect(checkStep.run).toContain('"$MAILROUTE_IMAGE"');
    expect(checkStep.run).toContain('check -f "$MANIFESTS"');
    expect(workflow.env.MANIFESTS).toBe('mail');
    expect(sedScript).toBeDefined();
  });

  it('passes on the example repository', async () => {
    const r = await check(EXAMPLE);
    expect(r.out).toContain('ok: 2 objects');
    expect(r.code).toBe(0);
  });

  it('fails on a broken manifest, and the workflow annotates the file', async () => {
    const repo = join(tmp, 'repo');
    cpSync(EXAMPLE, repo, { recursive: true });
    const file = join(repo, 'mail', 'example-com.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('secondary: zoho', 'secondary: zoho2'));
    const r = await check(repo);
    expect(r.code).toBe(1);
    writeFileSync(join(tmp, 'check.txt'), r.out);
    const sed = await run('sed', ['-nE', sedScript!, join(tmp, 'check.txt')]);
    expect(sed.code).toBe(0);
    expect(sed.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^::error file=mail\/example-com\.yaml::DeliveryPolicy\/example-com: spec\.secondary: .*zoho2/,
      ),
    ]);
  });
});

describe('GitOps example workflow: the routing change of a pull request', () => {
  const diffStep = steps.find((s) => s.name === 'Routing change')!;
  const tmp = mkdtempSync(join(tmpdir(), 'mailroute-gitops-diff-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  /**
   * Runs the step's own script with bash -e (as GitHub does) in a git repository with a base and a head commit.
   * `docker` is a shim on PATH that runs this checkout's bin with the -v mounts mapped to the host paths, which is
   * what `docker run IMAGE diff ...` does in the image.
   */
  async function runStep(
    edit: (file: string) => void,
  ): Promise<{ code: number; out: string; summary: string; output: string }> {
    const repo = join(tmp, `repo-${Math.random().toString(36).slice(2)}`);
    const runner = `${repo}-runner`;
    cpSync(EXAMPLE, repo, { recursive: true });
    mkdirSync(runner);
    const git = async (...args: string[]) => {
      const r = await run('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
        cwd: repo,
      });
      if (r.code !== 0) throw new Error(r.stderr);
      return r.stdout.trim();
    };
    await git('init', '-q');
    await git('add', '-A');
    await git('commit', '-qm', 'base');
    const base = await git('rev-parse', 'HEAD');
    edit(join(repo, 'mail', 'example-com.yaml'));
    await git('commit', '-qam', 'head');
    const bin = join(runner, 'bin');
    mkdirSync(bin);
    writeFileSync(
      join(bin, 'docker'),
      `#!/bin/bash
# docker run --rm -v SRC:DST[:ro]... IMAGE ARGS...: maps DST back to SRC in ARGS and runs mailroute
shift; maps=()
while [ "$1" = --rm ] || [ "$1" = -v ]; do
  if [ "$1" = -v ]; then IFS=: read -r src dst _ <<< "$2"; maps+=("$src" "$dst"); shift; fi
  shift
done
shift # the image
args=()
for a in "$@"; do
  for ((i = 0; i < \${#maps[@]}; i += 2)); do a="\${a/#\${maps[i+1]}/\${maps[i]}}"; done
  args+=("$a")
done
exec "${process.execPath}" "${join(REPO_ROOT, 'bin', 'mailroute.js')}" "\${args[@]}"
`,
      { mode: 0o755 },
    );
    const script = (diffStep.run ?? '').replace('${{ github.event.pull_request.base.sha }}', base);
    const summary = join(runner, 'summary.md');
    const output = join(runner, 'output');
    writeFileSync(summary, '');
    writeFileSync(output, '');
    const r = await run('bash', ['-e', '-c', script], {
      cwd: repo,
      env: {
        PATH: `${bin}:${process.env.PATH ?? ''}`,
        MAILROUTE_IMAGE: workflow.env.MAILROUTE_IMAGE!,
        MANIFESTS: workflow.env.MANIFESTS!,
        GITHUB_WORKSPACE: repo,
        RUNNER_TEMP: runner,
        GITHUB_STEP_SUMMARY: summary,
        GITHUB_OUTPUT: output,
      },
    });
    return {
      code: r.code,
      out: r.stdout + r.stderr,
      summary: readFileSync(summary, 'utf8'),
      output: readFileSync(output, 'utf8'),
    };
  }

  it('runs mailroute diff on base and head, writes the markdown to the summary and flags the change', async () => {
    expect(diffStep.run).toContain('diff -f "/base/$MANIFESTS" --to "/head/$MANIFESTS"');
    const r = await runStep((file) =>
      writeFileSync(file, readFileSync(file, 'utf8').replace('scope: All', 'scope: TestRecipients')),
    );
    expect(r.out).not.toContain('mailroute diff:');
    expect(r.code).toBe(0);
    expect(r.output).toBe('changed=1\n');
    expect(r.summary).toMatch(/^### mailroute routing diff\n/);
    expect(r.summary).toContain('| dual.scope | `All` | `TestRecipients` |');
    // sampled: the everyone-else address, which loses its copy
    expect(r.summary).toContain(
      '| `someone@example.com` | primary google -> someone@example.com (Notify), copy zoho -> someone@example.com.zoho-test.example (Suppress) | primary google -> someone@example.com (Notify) |',
    );
  });

  it('a head that does not load fails the step', async () => {
    const r = await runStep((file) =>
      writeFileSync(file, readFileSync(file, 'utf8').replace('mode: Dual', 'mode: Sideways')),
    );
    expect(r.code).toBe(2);
    expect(r.out).toContain('mail/example-com.yaml: DeliveryPolicy/example-com: spec.mode: must be one of');
    expect(r.summary).toBe('');
  });
});
