// Types of figures.js for the TypeScript benches.
export function recording (argv?: readonly string[]): boolean
export function withoutRecord (argv?: readonly string[]): string[]
export function recordFigures (name: string, tables: string, command: string): void
export function renderReadme (): void
