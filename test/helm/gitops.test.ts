// The GitOps example (examples/gitops): the workflow's `mailroute check` step, run for real on the example repository
// and on a broken copy of it, with the workflow's own sed turning problems into GitHub annotations.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
