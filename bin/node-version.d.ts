// Types of bin/node-version.js (plain JavaScript so that it runs before any TypeScript import).
export declare const MIN_NODE: string;
export declare function nodeVersionProblem(version: string): string | undefined;
