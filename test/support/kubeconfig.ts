// A kubeconfig for clients that are meant to fail to reach their API server (nothing listens there, or it is never
// contacted): TLS not verified, a dummy token.

/** A kubeconfig for `server` whose cluster and current context are both named `name`. */
export function unreachableKubeconfig(server: string, name = 'dead'): string {
  return `apiVersion: v1
kind: Config
clusters: [{name: ${name}, cluster: {server: "${server}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ${name}, context: {cluster: ${name}, user: u}}]
current-context: ${name}
`;
}
