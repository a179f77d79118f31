// Plain JavaScript on purpose: bin/mailroute.js runs this check before it imports any TypeScript source, so an older
// Node gets a clear message instead of ERR_UNKNOWN_FILE_EXTENSION ".ts".

/** The oldest Node.js that runs mailroute (package.json "engines"): type stripping without a flag, and its APIs. */
export const MIN_NODE = '24.11.0';

/**
 * Why this Node.js cannot run mailroute, or undefined when it can.
 * @param {string} version process.versions.node, e.g. "20.20.2"
 * @returns {string | undefined}
 */
export function nodeVersionProblem(version) {
  const have = version.split('.').map((n) => Number.parseInt(n, 10));
  const need = MIN_NODE.split('.').map((n) => Number.parseInt(n, 10));
  for (let i = 0; i < need.length; i++) {
    const h = have[i] ?? 0;
    const n = need[i] ?? 0;
    if (h > n) return undefined;
    if (h < n) {
      return (
        `mailroute needs Node.js ${MIN_NODE} or newer; this is Node.js ${version} (${process.execPath}).\n` +
        'It runs its TypeScript sources directly, which older versions cannot. From a checkout, run it through npm, ' +
        'which uses the Node 24 pinned in devDependencies:\n' +
        '  npm ci\n' +
        '  npx mailroute check -f DIR        (or: npm run mailroute -- check -f DIR)\n' +
        'or use the image: docker run --rm -v "$PWD:/work:ro" IMAGE check -f /work/DIR\n'
      );
    }
  }
  return undefined;
}
