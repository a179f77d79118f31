// mailroute render -f PATH... : prints the compiled RoutingTable as JSON (keys sorted; byte-identical for the same
// input). --compact prints the exact canonical bytes whose sha256 is the revision. Issues go to stderr.
import { canonicalJson, prettyCanonicalJson } from '../../routing/canonical.ts';
import { loadAndCompile } from '../../lib/manifests.ts';
import { fileFlag, filesFrom, guard, limitFlags, limitsFrom, parseFlags } from './offline-common.ts';

const USAGE =
  'usage: mailroute render -f PATH... [--compact] [--strict] [--max-manifest-size 4MiB] [--max-manifests-total 16MiB]\n';

export async function run(argv: string[]): Promise<number> {
  return guard('render', USAGE, async () => {
    const { values } = parseFlags(
      argv,
      {
        ...fileFlag,
        ...limitFlags,
        compact: { type: 'boolean' },
        strict: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      'render',
    );
    if (values.help === true) {
      process.stdout.write(USAGE);
      return 0;
    }
    const { result, errorLines, issueLines } = await loadAndCompile(
      filesFrom(values, 'render'),
      limitsFrom(values, 'render'),
    );
    if (errorLines.length > 0) {
      process.stderr.write(errorLines.map((l) => `${l}\n`).join(''));
      return 1;
    }
    for (const l of issueLines) process.stderr.write(`issue (left out of the table): ${l}\n`);
    if (values.strict === true && issueLines.length > 0) return 1;
    process.stdout.write(
      `${values.compact === true ? canonicalJson(result.table) : prettyCanonicalJson(result.table)}\n`,
    );
    return 0;
  });
}
