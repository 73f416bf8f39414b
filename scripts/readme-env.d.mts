// Types for readme-env.mjs (used by the TypeScript tests).
export interface DocumentedVariable {
  readonly name: string;
  readonly defaultText: string;
  readonly doc: string;
}
export const BEGIN: string;
export const END: string;
export function variablesTable(variables: readonly DocumentedVariable[]): string;
export function withVariablesTable(readme: string, variables: readonly DocumentedVariable[]): string;
