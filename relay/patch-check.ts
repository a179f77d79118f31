// The relay's start-up check of the patches it applies to its dependencies (patches/, applied by patch-package in
// postinstall and in the Dockerfile): each patched package lists what is missing (relay/inbound/patched.ts for
// smtp-server, relay/delivery/patched.ts for nodemailer), and the relay refuses to start while anything is.

/** Throws, naming the package, what is missing and how to apply the patch, when `problems` is not empty. */
export function assertPatched(pkg: string, patchFile: string, problems: readonly string[]): void {
  if (problems.length > 0) {
    throw new Error(
      `${pkg} is not patched (missing: ${problems.join('; ')}): apply ${patchFile} with ` +
        '`npx patch-package --error-on-fail`',
    );
  }
}
